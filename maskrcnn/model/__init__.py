"""The model: `detector.MaskRCNN` (preprocess -> backbone -> RPN -> RoI heads -> postprocess) and
its parts, one file each: the trunks and FPN (`backbone`, `efficientnet_lite`, `layers`), the RPN
(`rpn`), the RoI frame (`roi_heads`) and its heads (`box_head`, `mask_head`, `keypoint_head`,
`maskiou_head`, `res5_head`) under the contract in `head_contract`, the fast paths as named module
variants (`fast_variants`, chosen by `fast_inference` and `fast_training`), and `postprocess`."""

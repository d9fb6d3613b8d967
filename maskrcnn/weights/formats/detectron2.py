"""detectron2 Mask R-CNN checkpoints (ResNet / ResNeXt + FPN) -> our layout and config.

Model-zoo files are pickles `{"model": {name: ndarray}, "__author__": ...}` (read with the
restricted unpickler of `maskrcnn.weights.safe_pickle`); checkpoints written by detectron2's
trainer are torch files `{"model": state_dict, "optimizer": ..., "iteration": ...}`. ImageNet
pickles in Detectron's caffe2 naming (`res2_0_branch2a_w`, flagged `matching_heuristics`) are
not mapped: use torchvision's ImageNet trunks (`maskrcnn weights list`) instead.

Class-indexed rows are moved to our label space: detectron2 puts the background LAST in
`cls_score` and has no background row in `bbox_pred` (4 per class) or the mask `predictor`; we
move the background to the front and give the others zero background rows (never read).
The config comes from the shapes (depth, ResNeXt groups and width, classes, mask head) and
detectron2's model-zoo conventions: caffe-style (MSRA) ResNets with the stride in the 1x1 conv
and ResNeXts with it in the 3x3; BGR pixels in 0-255, mean (103.53, 116.28, 123.675), std 1
(ResNeXt: (57.375, 57.12, 58.395)); FrozenBN eps 1e-5; fractional anchors; ROIAlignV2 (aligned,
adaptive sampling); L1 box losses; 1000 RPN proposals per image in training; short side 640-800
in training, 800 at test.

What a config field cannot express, so detections agree with detectron2's closely but not
bit-for-bit: detectron2 resizes the uint8 image with PIL before normalising (we resize the
normalised float tensor), and pastes masks with its own bilinear grid sampling. Its FPN upsamples
by a fixed factor 2 where ours upsamples to the lateral's size: the same on inputs padded to a
multiple of 32, as both pad. Training keeps this package's loss normalisation (detectron2 divides
the RPN losses by the sampling budget, 256 per image, rather than the anchors sampled). C4
checkpoints (`roi_heads.res5`) are refused: their mapping onto `maskrcnn_r50_c4` is not written yet.
"""

from __future__ import annotations

import re

import torch

from ...config import Config, to_dict
from ...errors import CheckpointError
from . import background_first, rename_key

_TRUNK = r"^backbone\.bottom_up\."
# (pattern, replacement) applied in order; the first match wins.
_RULES = [
    (_TRUNK + r"stem\.conv1\.norm\.", "backbone.trunk.bn1."),
    (_TRUNK + r"stem\.conv1\.", "backbone.trunk.conv1."),
    (_TRUNK + r"res(\d)\.(\d+)\.shortcut\.norm\.", lambda m: f"backbone.trunk.layer{int(m[1]) - 1}.{m[2]}.downsample.1."),
    (_TRUNK + r"res(\d)\.(\d+)\.shortcut\.", lambda m: f"backbone.trunk.layer{int(m[1]) - 1}.{m[2]}.downsample.0."),
    (_TRUNK + r"res(\d)\.(\d+)\.conv(\d)\.norm\.", lambda m: f"backbone.trunk.layer{int(m[1]) - 1}.{m[2]}.bn{m[3]}."),
    (_TRUNK + r"res(\d)\.(\d+)\.conv(\d)\.", lambda m: f"backbone.trunk.layer{int(m[1]) - 1}.{m[2]}.conv{m[3]}."),
    (r"^backbone\.fpn_lateral(\d)\.", lambda m: f"backbone.fpn.lateral.{int(m[1]) - 2}.conv."),
    (r"^backbone\.fpn_output(\d)\.", lambda m: f"backbone.fpn.output.{int(m[1]) - 2}.conv."),
    (r"^proposal_generator\.rpn_head\.conv\.", "rpn.head.convs.0.conv."),
    (r"^proposal_generator\.rpn_head\.objectness_logits\.", "rpn.head.objectness."),
    (r"^proposal_generator\.rpn_head\.anchor_deltas\.", "rpn.head.deltas."),
    (r"^roi_heads\.box_head\.fc(\d)\.", lambda m: f"roi_heads.box_head.fcs.{int(m[1]) - 1}."),
    (r"^roi_heads\.box_predictor\.", "roi_heads.box_head."),
    (r"^roi_heads\.mask_head\.mask_fcn(\d)\.", lambda m: f"roi_heads.mask_head.convs.{int(m[1]) - 1}.conv."),
    (r"^roi_heads\.mask_head\.deconv\.", "roi_heads.mask_head.deconv."),
    (r"^roi_heads\.mask_head\.predictor\.", "roi_heads.mask_head.logits."),
]
# Buffers detectron2 may save that are config here (pixel mean/std, anchors), not weights.
_NOT_WEIGHTS = re.compile(r"^(pixel_mean|pixel_std|proposal_generator\.anchor_generator\.)")
_PER_CLASS_ROWS = {"roi_heads.box_head.bbox_pred.": 4, "roi_heads.mask_head.logits.": 1}
_CLS = "roi_heads.box_predictor.cls_score.weight"
_CONV2 = "backbone.bottom_up.res2.0.conv2.weight"


def is_detectron2_state_dict(state) -> bool:
    """FPN models nest the ResNet as `backbone.bottom_up`; C4 models use it as `backbone`."""
    return isinstance(state, dict) and any(
        str(k).startswith(("backbone.bottom_up.", "backbone.stem.")) for k in state
    )


def convert_detectron2(state: dict[str, torch.Tensor], source: str = "checkpoint") -> tuple[dict, dict]:
    """-> (state dict in our layout, config dict for `config_from_checkpoint`)."""
    if any(k.startswith("roi_heads.res5.") for k in state):
        raise CheckpointError(f"{source}: a detectron2 C4 checkpoint (roi_heads.res5); converting "
                              "those is not supported yet, use an FPN checkpoint")  # fmt: skip
    if _CLS not in state or _CONV2 not in state:
        raise CheckpointError(f"{source}: a detectron2 checkpoint without a ResNet trunk and a box "
                              f"predictor ({_CONV2}, {_CLS})")  # fmt: skip
    num_fg = state[_CLS].shape[0] - 1
    out, unknown = {}, []
    for key, value in state.items():
        if _NOT_WEIGHTS.match(key) or key.endswith("num_batches_tracked"):
            continue
        if not any(re.match(pattern, key) for pattern, _ in _RULES):
            unknown.append(key)
            continue
        new = rename_key(key, _RULES)
        out[new] = background_first(new, value, num_fg, _PER_CLASS_ROWS, f"{source}: {key}")
    if unknown:
        shown = ", ".join(unknown[:5]) + (f", ... ({len(unknown) - 5} more)" if len(unknown) > 5 else "")
        raise CheckpointError(f"{source}: detectron2 keys this package has no layer for: {shown}")
    return out, to_dict(detectron2_config(state, source))


def detectron2_config(state: dict, source: str = "checkpoint") -> Config:
    """Our config for a detectron2 Mask R-CNN (or Faster R-CNN) R/X FPN checkpoint."""
    from ...presets import COCO80_CATEGORY_IDS, COCO80_CLASS_NAMES, maskrcnn_r50_fpn

    depth = {3 + 4 + 6 + 3: 50, 3 + 4 + 23 + 3: 101, 3 + 8 + 36 + 3: 152}.get(_num_blocks(state))
    if depth is None:
        raise CheckpointError(f"{source}: backbone is not a ResNet-50/101/152 bottleneck trunk")
    conv2 = state[_CONV2]  # (width, width / groups, 3, 3)
    groups = conv2.shape[0] // conv2.shape[1]
    width = conv2.shape[0] // groups  # per group: 64 for ResNets, 8 for X101-32x8d
    cfg = maskrcnn_r50_fpn()
    cfg.name = f"detectron2_r{depth}_fpn" if groups == 1 else f"detectron2_x{depth}_{groups}x{width}d_fpn"
    m, inp = cfg.model, cfg.input
    b = m.backbone
    b.depth, b.groups, b.width_per_group, b.norm_eps = depth, groups, width, 1e-5
    b.stride_in_1x1 = groups == 1  # MSRA ResNets; detectron2's ResNeXts stride in the 3x3
    inp.channel_order, inp.pixel_scale = "BGR", 255.0
    inp.pixel_mean = (103.530, 116.280, 123.675)
    inp.pixel_std = (1.0, 1.0, 1.0) if groups == 1 else (57.375, 57.120, 58.395)
    inp.min_size = (640, 672, 704, 736, 768, 800)
    detectron2_conventions(cfg)
    m.anchors.round_base = False
    m.rpn.post_nms_topk_train = 1000
    m.rpn.min_box_size = m.box.min_box_size = 0.0
    m.rpn.smooth_l1_beta = m.box.smooth_l1_beta = 0.0  # L1 losses
    m.roi_align.aligned, m.roi_align.sampling_ratio = True, 0
    m.mask.enabled = any(k.startswith("roi_heads.mask_head.") for k in state)
    m.num_classes = state[_CLS].shape[0]
    if m.num_classes == len(COCO80_CLASS_NAMES):  # the model zoo's COCO label space
        m.class_names, m.category_ids = COCO80_CLASS_NAMES, COCO80_CATEGORY_IDS
    else:
        m.class_names, m.category_ids = (), ()
    return cfg


def detectron2_conventions(cfg: Config) -> Config:
    """detectron2's pre- and post-processing (docs/conventions.md); file and line at its commit
    02b5c4e2. Fine-tuning keeps them (they are in the file's config) unless --set changes them."""
    inp, m = cfg.input, cfg.model
    # ResizeShortestEdge.get_output_shape rounds: data/transforms/augmentation_impl.py:198-199
    inp.resize_rounding = "round"
    # ResizeTransform.apply_image: Pillow BILINEAR on the uint8 image, transform.py:109, 117-123
    inp.resize_backend = "pil"
    # ImageList.from_tensors pads to backbone.size_divisibility = 32 for FPN (backbone/fpn.py:113)
    inp.size_divisibility = 32
    # DefaultAnchorGenerator: the backbone's strides 4..64, anchor_generator.py:132, fpn.py:105-109
    m.anchors.strides = (4, 8, 16, 32, 64)
    # find_top_rpn_proposals: boxes.nonempty(min_box_size) = (w > t) & (h > t),
    # proposal_generator/proposal_utils.py:117 and structures/boxes.py:212; MIN_SIZE = 0 (defaults.py:167)
    m.rpn.min_box_size, m.rpn.min_box_strict = 0.0, True
    # detector_postprocess drops detections whose scaled, clipped box is empty (postprocessing.py:55-58)
    m.box.min_box_size, m.box.min_box_strict = 0.0, True
    # paste_masks_in_image samples pixel centres (+0.5) on the float box: layers/mask_ops.py:51-64
    m.mask.aligned = True
    return cfg


def _num_blocks(state: dict) -> int:
    return len({m[1] for k in state if (m := re.match(r"backbone\.bottom_up\.(res\d\.\d+)\.", k))})

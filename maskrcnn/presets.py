"""Named presets: each a function returning a filled `Config`, plus keyword aliases for overrides."""

from __future__ import annotations

from typing import Callable

from .config import Config, ConfigError, set_value

# torchvision's COCO label space: index = COCO category id, "N/A" for unused ids.
COCO_CLASS_NAMES = (
    "__background__", "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train",
    "truck", "boat", "traffic light", "fire hydrant", "N/A", "stop sign", "parking meter",
    "bench", "bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra",
    "giraffe", "N/A", "backpack", "umbrella", "N/A", "N/A", "handbag", "tie", "suitcase",
    "frisbee", "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove",
    "skateboard", "surfboard", "tennis racket", "bottle", "N/A", "wine glass", "cup", "fork",
    "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange", "broccoli", "carrot",
    "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant", "bed", "N/A",
    "dining table", "N/A", "N/A", "toilet", "N/A", "tv", "laptop", "mouse", "remote",
    "keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "N/A",
    "book", "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip


def maskrcnn_r50_fpn() -> Config:
    """torchvision's maskrcnn_resnet50_fpn (v1): its released weights run FrozenBN with eps 0."""
    cfg = Config(name="maskrcnn_r50_fpn")
    cfg.model.class_names = COCO_CLASS_NAMES
    return cfg


def maskrcnn_r50_fpn_v2() -> Config:
    """torchvision's maskrcnn_resnet50_fpn_v2: BatchNorm in FPN and heads, 2-conv RPN head."""
    cfg = maskrcnn_r50_fpn()
    cfg.name = "maskrcnn_r50_fpn_v2"
    m = cfg.model
    m.backbone.norm_eps = 1e-5
    m.backbone.fpn_norm = "bn"
    m.rpn.num_convs = 2  # torchvision's v2 RPN convs keep their bias and have no norm
    m.box.head, m.box.norm = "4conv1fc", "bn"
    m.mask.norm = "bn"
    return cfg


def _resnet_fpn(name: str, depth: int, groups: int = 1, width: int = 64) -> Config:
    cfg = maskrcnn_r50_fpn()
    cfg.name = name
    b = cfg.model.backbone
    b.depth, b.groups, b.width_per_group, b.norm_eps = depth, groups, width, 1e-5
    return cfg


def maskrcnn_c4(name: str, depth: int) -> Config:
    """The paper's ResNet-C4 model (Fig. 4 left, the backbone of its Table 2 ablations): trunk up
    to conv4 (stride 16), a one-map RPN with all 15 anchors (32-512 x 3 ratios) per cell, RoIs
    pooled 14 x 14 -> res5 -> 7 x 7 x 2048, averaged for the box branch and upsampled (deconv
    2x2/2 to 14 x 14 x 256, 1x1 conv) into 14 x 14 masks. 64 sampled RoIs per image and 300
    test proposals, as in the paper."""
    cfg = _resnet_fpn(name, depth)
    m = cfg.model
    m.backbone.kind = "c4"
    m.rpn.pre_nms_topk_train, m.rpn.pre_nms_topk_test = 12000, 6000  # one level holds every anchor
    m.rpn.post_nms_topk_test = 300
    m.box.head, m.box.pooler_resolution, m.box.batch_size_per_image = "avgpool", 14, 64
    m.mask.conv_dims, m.mask.deconv_dim, m.mask.resolution = (), 256, 14
    return cfg


def keypointrcnn_r50_fpn() -> Config:
    """torchvision's keypointrcnn_resnet50_fpn: person boxes + 17 COCO keypoints, no masks; its
    released weights run FrozenBN with eps 0; trains at a random short side in 640..800."""
    cfg = maskrcnn_r50_fpn()
    cfg.name = "keypointrcnn_r50_fpn"
    m = cfg.model
    m.num_classes, m.class_names, m.category_ids = 2, ("__background__", "person"), (0, 1)
    m.mask.enabled = False
    m.keypoint.enabled = True
    cfg.input.min_size = (640, 672, 704, 736, 768, 800)
    return cfg


def maskrcnn_keypoint_r50_fpn() -> Config:
    """Paper Table 4 "keypoint & mask": one person model for boxes, masks and keypoints. No
    released weights exist, so it starts from an ImageNet trunk (FrozenBN eps 1e-5)."""
    cfg = keypointrcnn_r50_fpn()
    cfg.name = "maskrcnn_keypoint_r50_fpn"
    cfg.model.mask.enabled = True
    cfg.model.backbone.norm_eps = 1e-5
    return cfg


def maskrcnn_effl0_fpn() -> Config:
    """EfficientNet-Lite0 FPN, sized for fine-tuning on a CPU from its ImageNet weights
    (maskrcnn[pretrained]): TensorFlow's lite input normalisation ((x - 127) / 128 on 0-255 RGB)
    and BatchNorm eps 1e-3; frozen BatchNorm (batches of a few images estimate no useful
    statistics) and a frozen stride-2 stem; a 128-channel FPN and mask head (at 256 channels
    they cost 4x the 0.4-GFLOP trunk); GroupNorm in the FPN (the trunk's linear-bottleneck
    outputs have standard deviations up to 8: without it the first mask logits are in the
    hundreds); 128 sampled RoIs per image (enough for datasets with
    a few instances per image); the fine-tuning recipe (training/recipes.py) for 20 epochs; input
    size and anchors chosen from the training set's object sizes (training/auto_size.py); the fast
    training step (solver.fast: bf16 autocast where the device has it, channels-last, folded norms:
    ~1.7x the steps of a time budget on a CPU with bf16 instructions); every detection kept
    (model.box.score_thresh 0). No COCO detector exists for it: the classes come from the data."""
    cfg = Config(name="maskrcnn_effl0_fpn")
    m, inp = cfg.model, cfg.input
    b = m.backbone
    b.arch, b.norm, b.norm_eps, b.freeze_at = "efficientnet_lite0", "frozen_bn", 1e-3, 1
    b.fpn_channels, b.fpn_norm, m.mask.conv_dims = 128, "gn", (128,) * 4
    m.rpn.pre_nms_topk_train, m.rpn.post_nms_topk_train, m.box.batch_size_per_image = 1000, 500, 128
    inp.pixel_scale = 255.0
    inp.pixel_mean, inp.pixel_std = (127.0, 127.0, 127.0), (128.0, 128.0, 128.0)
    cfg.solver.recipe, cfg.solver.epochs, cfg.solver.fast = "finetune", 20.0, True
    # Every detection up to detections_per_img: the ones below 0.05 rank after all the others, so
    # COCO AP can only gain (predict filters at its own --score-thresh).
    m.box.score_thresh = 0.0
    inp.min_size, m.anchors.sizes = "auto", "auto"
    return cfg


# mmdetection's 80-class COCO label space: contiguous labels 1..80, background 0.
COCO80_CLASS_NAMES = tuple(n for n in COCO_CLASS_NAMES if n != "N/A")
COCO80_CATEGORY_IDS = tuple(i for i, n in enumerate(COCO_CLASS_NAMES) if n != "N/A")


def msrcnn(name: str, depth: int, groups: int = 1, width: int = 64) -> Config:
    """Mask Scoring R-CNN as mmdetection's ms_rcnn_*_fpn_1x_coco: Mask R-CNN + MaskIoU head, with
    mmdetection's conventions (caffe-style trunk for ResNets, aligned RoIAlign, L1 box losses)."""
    cfg = _resnet_fpn(name, depth, groups, width)
    m, inp = cfg.model, cfg.input
    m.num_classes, m.class_names, m.category_ids = 81, COCO80_CLASS_NAMES, COCO80_CATEGORY_IDS
    m.maskiou.enabled = True
    if groups == 1:  # caffe-style ResNet: BGR in 0-255, mean subtracted only, stride in the 1x1
        inp.channel_order, inp.pixel_scale = "BGR", 255.0
        inp.pixel_mean, inp.pixel_std = (103.530, 116.280, 123.675), (1.0, 1.0, 1.0)
        m.backbone.stride_in_1x1 = True
    else:  # mmdetection's ResNeXt trunks are pytorch-style: RGB in 0-255, ImageNet mean / std
        inp.pixel_scale = 255.0
        inp.pixel_mean, inp.pixel_std = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)
    m.anchors.round_base = False  # mmdetection keeps fractional base anchors
    m.rpn.post_nms_topk_train = 1000
    m.rpn.min_box_size = m.box.min_box_size = 0.0
    m.rpn.smooth_l1_beta = m.box.smooth_l1_beta = 0.0  # L1 losses
    m.roi_align.aligned, m.roi_align.sampling_ratio = True, 0  # level mapping already agrees
    return cfg


PRESETS: dict[str, Callable[[], Config]] = {
    "keypointrcnn_r50_fpn": keypointrcnn_r50_fpn,
    "maskrcnn_keypoint_r50_fpn": maskrcnn_keypoint_r50_fpn,
    "maskrcnn_r50_fpn": maskrcnn_r50_fpn,
    "maskrcnn_r50_fpn_v2": maskrcnn_r50_fpn_v2,
    "maskrcnn_effl0_fpn": maskrcnn_effl0_fpn,
    "maskrcnn_r18_fpn": lambda: _resnet_fpn("maskrcnn_r18_fpn", 18),
    "maskrcnn_r34_fpn": lambda: _resnet_fpn("maskrcnn_r34_fpn", 34),
    "maskrcnn_r101_fpn": lambda: _resnet_fpn("maskrcnn_r101_fpn", 101),
    "maskrcnn_x101_32x4d_fpn": lambda: _resnet_fpn("maskrcnn_x101_32x4d_fpn", 101, 32, 4),
    "maskrcnn_x101_64x4d_fpn": lambda: _resnet_fpn("maskrcnn_x101_64x4d_fpn", 101, 64, 4),
    "maskrcnn_x101_32x8d_fpn": lambda: _resnet_fpn("maskrcnn_x101_32x8d_fpn", 101, 32, 8),
    "maskrcnn_r50_c4": lambda: maskrcnn_c4("maskrcnn_r50_c4", 50),
    "maskrcnn_r101_c4": lambda: maskrcnn_c4("maskrcnn_r101_c4", 101),
    "msrcnn_r50_fpn": lambda: msrcnn("msrcnn_r50_fpn", 50),
    "msrcnn_r101_fpn": lambda: msrcnn("msrcnn_r101_fpn", 101),
    "msrcnn_x101_64x4d_fpn": lambda: msrcnn("msrcnn_x101_64x4d_fpn", 101, 64, 4),
}

# torchvision-style keyword names accepted by load_model / build_model.
ALIASES = {
    "num_classes": "model.num_classes",
    "num_keypoints": "model.keypoint.num_keypoints",
    "class_names": "model.class_names",
    "min_size": "input.min_size",
    "max_size": "input.max_size",
    "image_mean": "input.pixel_mean",
    "image_std": "input.pixel_std",
    "rpn_pre_nms_top_n_test": "model.rpn.pre_nms_topk_test",
    "rpn_post_nms_top_n_test": "model.rpn.post_nms_topk_test",
    "rpn_pre_nms_top_n_train": "model.rpn.pre_nms_topk_train",
    "rpn_post_nms_top_n_train": "model.rpn.post_nms_topk_train",
    "rpn_nms_thresh": "model.rpn.nms_thresh",
    "rpn_score_thresh": "model.rpn.score_thresh",
    "box_score_thresh": "model.box.score_thresh",
    "box_nms_thresh": "model.box.nms_thresh",
    "box_detections_per_img": "model.box.detections_per_img",
    "box_batch_size_per_image": "model.box.batch_size_per_image",
    "roi_align_aligned": "model.roi_align.aligned",
    "sampling_ratio": "model.roi_align.sampling_ratio",
}


def get_preset(name: str) -> Config:
    """A fresh Config of the preset `name` (e.g. "maskrcnn_r50_fpn"; `PRESETS` lists them).

    Raises:
        ConfigError: no preset has that name (the message lists the names).
    """
    if name not in PRESETS:
        raise ConfigError(f"unknown model preset '{name}'; available: {', '.join(PRESETS)}")
    return PRESETS[name]()


def apply_kwargs(cfg: Config, overrides: dict) -> Config:
    """Apply `box_score_thresh=0.0`-style aliases or dotted keys (`model.box.nms_thresh`,
    also spelled `model__box__nms_thresh`)."""
    if "num_classes" in overrides and "class_names" not in overrides:
        cfg.model.class_names = ()  # the preset's names describe another label space
        cfg.model.category_ids = ()
    for key, value in overrides.items():
        dotted = ALIASES.get(key, key.replace("__", "."))
        if isinstance(value, list):
            value = tuple(value)
        if dotted == "input.min_size" and isinstance(value, int):
            value = (value,)
        set_value(cfg, dotted, value, source="load_model")
    return cfg

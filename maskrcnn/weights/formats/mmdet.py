"""mmdetection Mask R-CNN / Mask Scoring R-CNN checkpoints (`{"meta", "state_dict"}`) -> ours.

Keys are renamed, and the class-indexed rows reordered to our label space: mmdetection puts the
background LAST in `fc_cls` and has no background row in `fc_reg`, `conv_logits` or
`fc_mask_iou` (labels 0..K-1 there are our 1..K). We move the background row of `fc_cls` to the
front and give the other layers an all-zero background row (class 0's boxes, mask and IoU are
never read). A class-agnostic `fc_reg` / `conv_logits` is repeated for every class, which
computes the same thing. The matching config comes from the shapes (depth, ResNeXt groups,
classes, MaskIoU head or not) and the checkpoint's `meta` (class names, ResNet style).
"""

from __future__ import annotations

import re

import torch

from ...config import Config, to_dict
from ...errors import CheckpointError
from . import background_first, rename_key

# (pattern, replacement) applied in order; the first match wins. mmdetection's ResNet keeps
# torchvision's names (conv1, bn1, layerN.i.convK/bnK, downsample.0/1).
_RULES = [
    (r"^backbone\.", "backbone.trunk."),
    (r"^neck\.lateral_convs\.(\d+)\.conv\.", r"backbone.fpn.lateral.\1.conv."),
    (r"^neck\.fpn_convs\.(\d+)\.conv\.", r"backbone.fpn.output.\1.conv."),
    (r"^rpn_head\.rpn_conv\.", "rpn.head.convs.0.conv."),
    (r"^rpn_head\.rpn_cls\.", "rpn.head.objectness."),
    (r"^rpn_head\.rpn_reg\.", "rpn.head.deltas."),
    (r"^roi_head\.bbox_head\.shared_fcs\.(\d+)\.", r"roi_heads.box_head.fcs.\1."),
    (r"^roi_head\.bbox_head\.fc_cls\.", "roi_heads.box_head.cls_score."),
    (r"^roi_head\.bbox_head\.fc_reg\.", "roi_heads.box_head.bbox_pred."),
    (r"^roi_head\.mask_head\.convs\.(\d+)\.conv\.", r"roi_heads.mask_head.convs.\1.conv."),
    (r"^roi_head\.mask_head\.upsample\.", "roi_heads.mask_head.deconv."),
    (r"^roi_head\.mask_head\.conv_logits\.", "roi_heads.mask_head.logits."),
    (r"^roi_head\.mask_iou_head\.convs\.(\d+)\.", r"roi_heads.maskiou_head.convs.\1."),
    (r"^roi_head\.mask_iou_head\.fcs\.(\d+)\.", r"roi_heads.maskiou_head.fcs.\1."),
    (r"^roi_head\.mask_iou_head\.fc_mask_iou\.", "roi_heads.maskiou_head.iou."),
]
# our key prefix -> rows per class in that layer
_PER_CLASS_ROWS = {
    "roi_heads.box_head.bbox_pred.": 4,
    "roi_heads.mask_head.logits.": 1,
    "roi_heads.maskiou_head.iou.": 1,
}
_CLS = "roi_head.bbox_head.fc_cls.weight"


def is_mmdet_checkpoint(obj) -> bool:
    """Whether `obj` looks like an mmdetection checkpoint: a dict whose `state_dict` has
    `roi_head.*` keys."""
    return (
        isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict)
        and any(k.startswith("roi_head.") for k in obj["state_dict"])
    )  # fmt: skip


def convert_mmdet(checkpoint: dict, source: str = "checkpoint") -> tuple[dict[str, torch.Tensor], dict]:
    """-> (state dict in our layout, config dict for `config_from_checkpoint`)."""
    state = checkpoint["state_dict"]
    if _CLS not in state or not all(torch.is_tensor(v) for v in state.values()):
        raise CheckpointError(f"{source}: an mmdetection checkpoint without a Shared2FC box head ({_CLS})")
    num_fg = state[_CLS].shape[0] - 1
    out = {}
    for key, value in state.items():
        if key.endswith("num_batches_tracked"):
            continue  # frozen statistics need no counter
        new = rename_key(key, _RULES)
        out[new] = background_first(new, value, num_fg, _PER_CLASS_ROWS, f"{source}: {key}")
    return out, to_dict(mmdet_config(state, checkpoint.get("meta") or {}, source))


def mmdet_config(state: dict, meta: dict, source: str = "checkpoint") -> Config:
    """Our config for an mmdetection Mask (Scoring) R-CNN with a ResNet / ResNeXt FPN."""
    from ...presets import COCO80_CLASS_NAMES, msrcnn

    depth = {3 + 4 + 6 + 3: 50, 3 + 4 + 23 + 3: 101, 3 + 8 + 36 + 3: 152}.get(_num_blocks(state))
    conv2 = state.get("backbone.layer1.0.conv2.weight")
    if depth is None or conv2 is None:
        raise CheckpointError(f"{source}: backbone is not a ResNet-50/101/152 bottleneck trunk")
    groups = conv2.shape[0] // conv2.shape[1]  # (width, width / groups, 3, 3)
    width = conv2.shape[1]  # per group: 64 for ResNets, 4 for the 32x4d / 64x4d ResNeXts
    name = f"mmdet_r{depth}_fpn" if groups == 1 else f"mmdet_x{depth}_{groups}x{width}d_fpn"
    cfg = msrcnn(name, depth, groups, width)
    if _style(meta, groups) == "pytorch" and groups == 1:
        _pytorch_style(cfg)
    mmdet_conventions(cfg)
    m = cfg.model
    m.maskiou.enabled = any(k.startswith("roi_head.mask_iou_head.") for k in state)
    m.num_classes = state[_CLS].shape[0]
    names = tuple(meta.get("CLASSES") or meta.get("dataset_meta", {}).get("classes") or ())
    # Without names, 80 classes are taken to be COCO's, as in mmdetection's model zoo.
    own_names = bool(names) and names != COCO80_CLASS_NAMES[1:]
    if own_names or m.num_classes != len(COCO80_CLASS_NAMES):
        m.class_names = ("__background__", *names) if len(names) == m.num_classes - 1 else ()
        m.category_ids = ()
    return cfg


def mmdet_conventions(cfg: Config) -> Config:
    """mmdetection's pre- and post-processing (docs/conventions.md), for its Mask (Scoring) R-CNN
    configs; quoted expressions are greppable in mmdetection 3.x / mmcv 2.x. Fine-tuning keeps
    them (they are in the file's config) unless --set changes them."""
    inp, m = cfg.input, cfg.model
    # Resize(scale=(1333, 800), keep_ratio=True) -> mmcv.imrescale -> rescale_size / _scale_size
    # (mmcv/image/geometric.py): `int(w * float(scale[0]) + 0.5)`
    inp.resize_rounding = "round"
    # mmcv imresize default backend 'cv2', interpolation 'bilinear' -> cv2.INTER_LINEAR on uint8
    inp.resize_backend = "cv2"
    # DetDataPreprocessor(pad_size_divisor=32) (configs/_base_/models/mask-rcnn_r50_fpn.py;
    # Pad(size_divisor=32) in 2.x pipelines)
    inp.size_divisibility = 32
    # AnchorGenerator(strides=[4, 8, 16, 32, 64]), center_offset 0 (same config file)
    m.anchors.strides = (4, 8, 16, 32, 64)
    # RPNHead._bbox_post_process: `valid_mask = (w > cfg.min_bbox_size) & (h > cfg.min_bbox_size)`,
    # test_cfg.rpn.min_bbox_size=0 (dense_heads/rpn_head.py)
    m.rpn.min_box_size, m.rpn.min_box_strict = 0.0, True
    # BBoxHead._predict_by_feat_single -> multiclass_nms keeps every box with score > score_thr
    # (layers/bbox_nms.py): no size filter, which >= 0 reproduces
    m.box.min_box_size, m.box.min_box_strict = 0.0, False
    # FCNMaskHead: _do_paste_mask samples pixel centres (+ 0.5) on the float box by grid_sample
    # (roi_heads/mask_heads/fcn_mask_head.py), detectron2's paste
    m.mask.aligned = True
    return cfg


def _num_blocks(state: dict) -> int:
    blocks = {m[1] for k in state if (m := re.match(r"backbone\.(layer\d\.\d+)\.", k))}
    return len(blocks)


def _style(meta: dict, groups: int) -> str:
    """mmdetection's ResNet `style` from the config text saved in `meta`; its model zoo's caffe
    ResNets and pytorch ResNeXts otherwise."""
    found = re.search(r"style\s*=\s*['\"](caffe|pytorch)['\"]", str(meta.get("config", "")))
    return found[1] if found else ("caffe" if groups == 1 else "pytorch")


def _pytorch_style(cfg: Config) -> None:
    inp = cfg.input
    inp.channel_order = "RGB"
    inp.pixel_mean, inp.pixel_std = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)
    cfg.model.backbone.stride_in_1x1 = False

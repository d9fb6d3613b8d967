"""torchvision Mask / Keypoint R-CNN state dicts (v1 and v2 layouts, old and new key styles) -> ours."""

from __future__ import annotations

import torch

from . import rename_key

# (pattern, replacement) applied in order; the first match wins.
_RULES = [
    (r"^backbone\.body\.", "backbone.trunk."),
    # FPN: new style inner_blocks.i.0 (conv) / .1 (norm); old style inner_blocks.i.weight
    (r"^backbone\.fpn\.inner_blocks\.(\d+)\.0\.", r"backbone.fpn.lateral.\1.conv."),
    (r"^backbone\.fpn\.inner_blocks\.(\d+)\.1\.", r"backbone.fpn.lateral.\1.norm."),
    (r"^backbone\.fpn\.inner_blocks\.(\d+)\.(weight|bias)$", r"backbone.fpn.lateral.\1.conv.\2"),
    (r"^backbone\.fpn\.layer_blocks\.(\d+)\.0\.", r"backbone.fpn.output.\1.conv."),
    (r"^backbone\.fpn\.layer_blocks\.(\d+)\.1\.", r"backbone.fpn.output.\1.norm."),
    (r"^backbone\.fpn\.layer_blocks\.(\d+)\.(weight|bias)$", r"backbone.fpn.output.\1.conv.\2"),
    # RPN head: conv.j.0 / conv.j.1 (new), conv.weight (old)
    (r"^rpn\.head\.conv\.(\d+)\.0\.", r"rpn.head.convs.\1.conv."),
    (r"^rpn\.head\.conv\.(\d+)\.1\.", r"rpn.head.convs.\1.norm."),
    (r"^rpn\.head\.conv\.(weight|bias)$", r"rpn.head.convs.0.conv.\1"),
    (r"^rpn\.head\.cls_logits\.", "rpn.head.objectness."),
    (r"^rpn\.head\.bbox_pred\.", "rpn.head.deltas."),
    # Box head: v1 fc6/fc7; v2 Sequential(4 x ConvNormAct, Flatten, Linear)
    (r"^roi_heads\.box_head\.fc6\.", "roi_heads.box_head.fcs.0."),
    (r"^roi_heads\.box_head\.fc7\.", "roi_heads.box_head.fcs.1."),
    (r"^roi_heads\.box_head\.(\d+)\.0\.", r"roi_heads.box_head.convs.\1.conv."),
    (r"^roi_heads\.box_head\.(\d+)\.1\.", r"roi_heads.box_head.convs.\1.norm."),
    (r"^roi_heads\.box_head\.5\.", "roi_heads.box_head.fcs.0."),
    (r"^roi_heads\.box_predictor\.", "roi_heads.box_head."),
    # Mask head: mask_head.i.0 / .1 (new), mask_fcn{i+1} (old); predictor into the head
    (r"^roi_heads\.mask_head\.(\d+)\.0\.", r"roi_heads.mask_head.convs.\1.conv."),
    (r"^roi_heads\.mask_head\.(\d+)\.1\.", r"roi_heads.mask_head.convs.\1.norm."),
    (r"^roi_heads\.mask_head\.mask_fcn(\d+)\.", lambda m: f"roi_heads.mask_head.convs.{int(m[1]) - 1}.conv."),
    (r"^roi_heads\.mask_predictor\.conv5_mask\.", "roi_heads.mask_head.deconv."),
    (r"^roi_heads\.mask_predictor\.mask_fcn_logits\.", "roi_heads.mask_head.logits."),
    # Keypoint head: Sequential(conv, ReLU) x 8, so the convs sit at even indices
    (r"^roi_heads\.keypoint_head\.(\d+)\.", lambda m: f"roi_heads.keypoint_head.convs.{int(m[1]) // 2}.conv."),
    (r"^roi_heads\.keypoint_predictor\.kps_score_lowres\.", "roi_heads.keypoint_head.deconv."),
]


def is_torchvision_state_dict(state: dict) -> bool:
    """Whether `state` looks like a torchvision detection model's state dict (`backbone.body.*` keys)."""
    return any(k.startswith("backbone.body.") for k in state)


def convert_torchvision(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename keys; drop BatchNorm's num_batches_tracked (frozen statistics need no counter)."""
    out = {}
    for key, value in state.items():
        if key.endswith("num_batches_tracked"):
            continue
        out[rename_key(key, _RULES)] = value
    return out

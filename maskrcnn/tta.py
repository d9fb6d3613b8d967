"""Test-time augmentation: one image seen at several scales and mirrored, merged as detectron2's
`GeneralizedRCNNWithTTA` merges them.

1. Each view (a short side from `test.tta.scales`, flipped or not) runs the backbone, the RPN and
   the box head; its boxes are mapped back to the image.
2. The union of all views' boxes goes through per-class NMS (the box head's threshold) and keeps
   the best `detections_per_img`; with `box_voting` each kept box becomes the score-weighted mean
   of the boxes of its class that overlap it at IoU >= 0.5.
3. Every view runs the instance heads on the kept boxes (mapped into that view): mask
   probabilities, MaskIoU mask scores and keypoint heatmaps are averaged over the views (a
   flipped view's masks and heatmaps mirrored back, keypoints swapped left <-> right), then
   pasted / decoded as without TTA.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchvision.ops import batched_nms, box_iou

from .data.transforms import COCO_KEYPOINT_FLIP_MAP
from .errors import ConfigError
from .structures import Instances

VOTE_IOU = 0.5


@dataclass
class View:
    """One augmentation and what it computed: its features and the image's size in its pixels."""

    min_size: int
    flip: bool
    features: list
    size: tuple[int, int]  # (h, w) of the resized image
    scale: torch.Tensor  # (4,) view pixels per image pixel, x y x y


def predict_tta(model, image: torch.Tensor, keep_mask_probs: bool = False) -> Instances:
    """(3, H, W) float image in [0, 1] -> Instances at its size, merged over the views."""
    tta = model.cfg.test.tta
    scales = tta.scales or model.cfg.input.min_size[-1:]
    check_tta(model)
    views, found = [], []
    for min_size in scales:
        for flip in (False, True)[: 1 + tta.flip]:
            view, dets = _run_view(model, image, min_size, flip)
            found.append({**_to_image(dets, view), "view": torch.full_like(dets["labels"], len(views)),
                          "view_boxes": dets["boxes"]})
            views.append(view)
    merged = _merge(found, model.cfg.model.box, tta.box_voting)
    averaged = _instance_outputs(model, views, merged)
    # decoded and pasted from the first view's pixels, as plain inference at that size would be
    averaged["boxes"] = _to_view(merged, views[0], 0)
    return model.postprocess([averaged], [views[0].size], [tuple(image.shape[-2:])], keep_mask_probs)[0]


def check_tta(model) -> None:
    """Refuse what TTA cannot merge (one line each)."""
    tta, kp = model.cfg.test.tta, model.cfg.model.keypoint
    if any(s <= 0 for s in tta.scales):
        raise ConfigError(f"test.tta.scales {tta.scales}: every scale must be a positive short side in px")
    if tta.flip and kp.enabled and kp.num_keypoints != len(COCO_KEYPOINT_FLIP_MAP):
        raise ConfigError(f"test.tta.flip with {kp.num_keypoints} keypoints: only COCO's 17 have a known "
                          "left/right map; set test.tta.flip=false")


def _run_view(model, image, min_size: int, flip: bool) -> tuple[View, dict]:
    """Backbone, RPN and box head on one view -> the view and its box detections (view pixels).
    The image is mirrored before the model's own preprocessing (which pads bottom-right)."""
    h, w = image.shape[-2:]
    batch, _ = model.preprocess([image.flip(-1) if flip else image], None, None, min_size=min_size)
    features = model.backbone(batch.tensors)
    proposals, _ = model.rpn(batch, features)
    dets = model.roi_heads.detect_boxes(features, proposals, batch.image_sizes)[0]
    rh, rw = batch.image_sizes[0]
    scale = torch.tensor([rw / w, rh / h, rw / w, rh / h], device=image.device)
    return View(min_size, flip, features, (rh, rw), scale), dets


def _to_image(dets: dict, view: View) -> dict:
    """A view's boxes in the image's pixels."""
    return {**dets, "boxes": _unflip(dets["boxes"], view) / view.scale}


def _to_view(merged: dict, view: View, index: int) -> torch.Tensor:
    """The merged (D, 4) image boxes in view `index`'s pixels; a box found in that view keeps
    the view's own coordinates (no round trip through the image's)."""
    mapped = _unflip(merged["boxes"] * view.scale, view)
    own = (merged["view"] == index)[:, None] & ~merged["voted"][:, None]
    return torch.where(own, merged["view_boxes"], mapped)


def _unflip(boxes: torch.Tensor, view: View) -> torch.Tensor:
    """Mirror (D, 4) boxes across the view's width when it is flipped (its own inverse)."""
    if not view.flip:
        return boxes
    width = view.size[1]
    return torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], dim=1)


def _merge(found: list[dict], box_cfg, box_voting: bool) -> dict:
    """The union of the views' detections -> per-class NMS, best `detections_per_img` first."""
    union = {key: torch.cat([d[key] for d in found]) for key in found[0]}  # boxes (N, 4), scores (N,), ...
    boxes, scores, labels = union["boxes"], union["scores"], union["labels"]
    keep = batched_nms(boxes, scores, labels, box_cfg.nms_thresh)[: box_cfg.detections_per_img]
    merged = {key: value[keep] for key, value in union.items()}
    merged["voted"] = torch.zeros(len(keep), dtype=torch.bool, device=boxes.device)
    if box_voting and len(keep):
        merged["boxes"] = vote(merged["boxes"], merged["labels"], boxes, scores, labels)
        merged["voted"][:] = True
    return merged


def vote(kept: torch.Tensor, kept_labels: torch.Tensor, boxes, scores, labels) -> torch.Tensor:
    """(D, 4) kept boxes -> each the score-weighted mean of the (N, 4) boxes of its class that
    overlap it at IoU >= VOTE_IOU (itself included)."""
    cluster = (box_iou(kept, boxes) >= VOTE_IOU) & (kept_labels[:, None] == labels[None])  # (D, N)
    weight = cluster.to(scores.dtype) * scores[None]
    return (weight @ boxes) / weight.sum(1, keepdim=True)


def _instance_outputs(model, views: list[View], merged: dict) -> dict:
    """Mask probabilities, mask scores and keypoint heatmaps of the merged boxes, averaged over
    the views; in the image's pixels (so postprocess scales by 1)."""
    outputs = []
    for index, view in enumerate(views):
        dets = {key: merged[key] for key in ("scores", "labels")} | {"boxes": _to_view(merged, view, index)}
        outputs.append(_unflip_outputs(model.roi_heads.predict_instances(view.features, [dets])[0], view))
    averaged = {key: merged[key] for key in ("boxes", "scores", "labels")}
    for key in ("mask_probs", "mask_scores", "keypoint_heatmaps"):
        if key in outputs[0]:
            averaged[key] = torch.stack([out[key] for out in outputs]).mean(0)
    return averaged


def _unflip_outputs(out: dict, view: View) -> dict:
    """A flipped view's masks and heatmaps mirrored back (and keypoints swapped left <-> right)."""
    if not view.flip:
        return out
    out = dict(out)
    if "mask_probs" in out:
        out["mask_probs"] = out["mask_probs"].flip(-1)  # (D, M, M), box-relative
    if "keypoint_heatmaps" in out:
        out["keypoint_heatmaps"] = out["keypoint_heatmaps"][:, list(COCO_KEYPOINT_FLIP_MAP)].flip(-1)
    return out

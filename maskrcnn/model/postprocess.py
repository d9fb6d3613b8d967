"""Detections in the pixels of the resized batch -> `Instances` at an image's own size: the one
conversion the PyTorch model (`MaskRCNN.postprocess`) and the ONNX runner (`OnnxPredictor`) run."""

from __future__ import annotations

from functools import partial

import torch

from ..ops.masks import paste_masks
from ..structures import Instances
from .keypoint_head import decode_keypoints


def scale_ratio(w, rw, h, rh, device) -> torch.Tensor:
    """Per-coordinate scale back to the input size, in float32 as torchvision computes it."""
    f32 = torch.float32
    rx = torch.tensor(w, dtype=f32, device=device) / torch.tensor(rw, dtype=f32, device=device)
    ry = torch.tensor(h, dtype=f32, device=device) / torch.tensor(rh, dtype=f32, device=device)
    return torch.stack([rx, ry, rx, ry])


def to_instances(det: dict, resized_size, input_size, class_names, mask_aligned: bool,
                 keep_mask_probs: bool = False, mask_threshold: float = 0.5) -> Instances:
    """One image's detections (boxes (D, 4) in resized pixels, scores, labels, and optionally
    mask_probs (D, M, M), masks (D, >= H, >= W) already pasted, mask_scores, keypoint_heatmaps)
    -> `Instances` at input_size (H, W): boxes scaled, masks pasted (`paste_masks`) and
    thresholded, keypoints decoded (`decode_keypoints`) and scaled."""
    (rh, rw), (h, w) = resized_size, input_size
    ratio = scale_ratio(w, rw, h, rh, det["boxes"].device)
    fields = {"boxes": det["boxes"] * ratio, "scores": det["scores"], "labels": det["labels"]}
    if "mask_probs" in det:
        paste = partial(paste_masks, det["mask_probs"], fields["boxes"], (h, w), aligned=mask_aligned)
        if keep_mask_probs:
            fields["mask_probs"] = paste()
        if "masks" in det:  # pasted in an exported graph, at the batch's largest size
            fields["masks"] = det["masks"][:, :h, :w]
        else:
            fields["masks"] = fields["mask_probs"] > mask_threshold if keep_mask_probs else paste(threshold=mask_threshold)
    if "mask_scores" in det:
        fields["mask_scores"] = det["mask_scores"]  # ranks masks; `scores` still ranks boxes
    if "keypoint_heatmaps" in det:
        keypoints = decode_keypoints(det["keypoint_heatmaps"], det["boxes"])  # (D, K, 3) x, y, score
        keypoints[..., :2] *= ratio[:2]
        fields["keypoints"] = keypoints
    return Instances((h, w), class_names, **fields)

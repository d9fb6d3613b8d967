"""Mask geometry: training targets cropped from GT masks, and RoI masks pasted into images."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.ops import roi_align


def mask_targets(
    gt_masks: torch.Tensor, boxes: torch.Tensor, matched: torch.Tensor, size: int, aligned: bool = False
) -> torch.Tensor:
    """Crop each matched (H, W) GT mask to its box and resample it to (size, size).

    gt_masks (G, H, W) uint8/bool, boxes (P, 4) xyxy, matched (P,) gt index -> (P, size, size).
    `aligned=False` samples half a pixel off (torchvision's crops); True puts cell (i, j)'s centre
    where the box's (i + 0.5) / size fraction falls in pixel coordinates (detectron2's).
    """
    rois = torch.cat([matched.to(boxes)[:, None], boxes], dim=1)
    masks = gt_masks[:, None].to(boxes)
    return roi_align(masks, rois, (size, size), spatial_scale=1.0, sampling_ratio=-1, aligned=aligned)[:, 0]


def paste_masks(
    masks: torch.Tensor, boxes: torch.Tensor, image_size: tuple[int, int], padding: int = 1, aligned: bool = False
) -> torch.Tensor:
    """Paste (N, M, M) mask probabilities into (N, H, W) images, each inside its (N, 4) box.

    `aligned=True`: the M x M cells tile the float box exactly and each pixel centre is sampled
    bilinearly (zero beyond the outer cell centres), the inverse of aligned `mask_targets`.
    `aligned=False` (torchvision's): the mask is padded by one zero pixel on each side and its box grown to match (so edges fade
    out instead of being cut), the box is truncated to integer pixels and the mask is resized
    bilinearly (half-pixel centres) onto it: the same arithmetic as torchvision's per-mask loop,
    here as two batched matrix products (N, H, S) @ (N, S, S) @ (N, S, W).
    """
    m = masks.shape[-1]
    h, w = image_size  # ints, or 0-dim tensors while tracing
    if aligned:
        rows = _aligned_resize_matrix(boxes[:, 1], boxes[:, 3], m, h, masks.dtype)  # (N, H, M)
        cols = _aligned_resize_matrix(boxes[:, 0], boxes[:, 2], m, w, masks.dtype)  # (N, W, M)
        return rows @ masks @ cols.transpose(1, 2)
    padded = F.pad(masks, (padding,) * 4)  # (N, S, S)
    s = m + 2 * padding
    grown = _grow_boxes(boxes, s / m).to(torch.int64)  # truncation, as torchvision
    rows = _resize_matrix(grown[:, 1], grown[:, 3], s, h, masks.dtype)  # (N, H, S)
    cols = _resize_matrix(grown[:, 0], grown[:, 2], s, w, masks.dtype)  # (N, W, S)
    return rows @ padded @ cols.transpose(1, 2)


def _grow_boxes(boxes: torch.Tensor, scale: float) -> torch.Tensor:
    half_w = (boxes[:, 2] - boxes[:, 0]) * 0.5 * scale
    half_h = (boxes[:, 3] - boxes[:, 1]) * 0.5 * scale
    cx = (boxes[:, 2] + boxes[:, 0]) * 0.5
    cy = (boxes[:, 3] + boxes[:, 1]) * 0.5
    return torch.stack((cx - half_w, cy - half_h, cx + half_w, cy + half_h), dim=1)


def _resize_matrix(
    start: torch.Tensor, end: torch.Tensor, src: int, out: int, dtype: torch.dtype
) -> torch.Tensor:
    """(N, out, src) bilinear weights mapping a length-`src` signal onto pixels start..end
    (inclusive) of a length-`out` axis; zero rows outside the span or the image."""
    length = (end - start + 1).clamp(min=1)  # (N,)
    pixel = torch.arange(out, device=start.device)  # (out,)
    local = pixel[None, :] - start[:, None]  # (N, out) position inside the resized mask
    inside = (local >= 0) & (pixel[None, :] <= end[:, None])
    scale = src / length.to(torch.float32)  # (N,) source pixels per output pixel
    pos = ((local.to(torch.float32) + 0.5) * scale[:, None] - 0.5).clamp(min=0)
    lo = pos.to(torch.int64).clamp(max=src - 1)
    hi = torch.where(lo < src - 1, lo + 1, lo)
    frac = (pos - lo.to(pos.dtype)).clamp(0, 1) * inside
    weights = F.one_hot(lo, src) * ((1 - frac) * inside)[..., None]
    weights = weights + F.one_hot(hi, src) * frac[..., None]
    return weights.to(dtype)


def _aligned_resize_matrix(
    start: torch.Tensor, end: torch.Tensor, src: int, out: int, dtype: torch.dtype
) -> torch.Tensor:
    """(N, out, src) bilinear weights sampling a length-`src` signal whose cells tile the float
    span [start, end] at the centres of the `out` pixels (pixel p covers [p, p + 1]); taps
    outside the signal weigh zero, so the mask fades out over the half cell beyond its centres."""
    length = (end - start).clamp(min=1e-6)  # (N,)
    centre = torch.arange(out, device=start.device).to(start.dtype) + 0.5  # (out,)
    pos = (centre[None, :] - start[:, None]) * (src / length)[:, None] - 0.5  # (N, out) in cells
    lo = pos.floor()
    frac = pos - lo
    lo = lo.to(torch.int64)
    weights = 0
    for tap, weight in ((lo, 1 - frac), (lo + 1, frac)):
        valid = (tap >= 0) & (tap < src)
        weights = weights + F.one_hot(tap.clamp(0, src - 1), src) * (weight * valid)[..., None]
    return weights.to(dtype)

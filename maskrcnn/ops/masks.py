"""Mask geometry: training targets cropped from GT masks, and RoI masks pasted into images."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.ops import roi_align


def mask_targets(
    gt_masks: torch.Tensor, boxes: torch.Tensor, matched: torch.Tensor, size: int
) -> torch.Tensor:
    """Crop each matched (H, W) GT mask to its box and resample it to (size, size).

    gt_masks (G, H, W) uint8/bool, boxes (P, 4) xyxy, matched (P,) gt index -> (P, size, size).
    """
    rois = torch.cat([matched.to(boxes)[:, None], boxes], dim=1)
    masks = gt_masks[:, None].to(boxes)
    return roi_align(masks, rois, (size, size), spatial_scale=1.0, sampling_ratio=-1)[:, 0]


def paste_masks(
    masks: torch.Tensor, boxes: torch.Tensor, image_size: tuple[int, int], padding: int = 1
) -> torch.Tensor:
    """Paste (N, M, M) mask probabilities into (N, H, W) images, each inside its (N, 4) box.

    The mask is padded by one zero pixel on each side and its box grown to match (so edges fade
    out instead of being cut), the box is truncated to integer pixels and the mask is resized
    bilinearly (half-pixel centres) onto it: the same arithmetic as torchvision's per-mask loop,
    here as two batched matrix products (N, H, S) @ (N, S, S) @ (N, S, W).
    """
    m = masks.shape[-1]
    h, w = image_size  # ints, or 0-dim tensors while tracing
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

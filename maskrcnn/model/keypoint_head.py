"""Keypoint branch (paper §5): one m x m heatmap per keypoint type, trained as a one-hot mask with
an m²-way softmax; its targets, loss and decoding to image coordinates."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import KeypointHeadConfig
from ..structures import split_per_image
from .head_contract import DeclaresOutputs, Handoff
from .layers import ConvNorm
from .layers import init_layers

_CUBIC_A = -0.75  # the cubic convolution kernel PyTorch's bicubic resize uses
_DECODE_BUDGET = 1 << 24  # resized heatmap values per chunk (64 MB)


class KeypointHead(DeclaresOutputs, nn.Module):
    """(N, C, 14, 14) -> heatmap logits (N, K, 56, 56): 8 x conv3x3 512, deconv 4x4/2, bilinear x2.

    Training returns its loss on the positive RoIs; inference adds `keypoint_heatmaps` (D, K, 56,
    56), which `decode_keypoints` turns into keypoints after the model (and after an ONNX graph).
    """

    def __init__(self, cfg: KeypointHeadConfig, in_channels: int):
        super().__init__()
        self.cfg = cfg
        dims = [in_channels, *cfg.conv_dims]
        self.convs = nn.Sequential(*[ConvNorm(dims[i], dims[i + 1], 3, relu=True) for i in range(len(cfg.conv_dims))])
        self.deconv = nn.ConvTranspose2d(dims[-1], cfg.num_keypoints, 4, stride=2, padding=1)
        init_layers(self, "msra")

    def output_layers(self) -> dict[str, None]:
        """The heatmap deconv: one row per keypoint type, whatever the classes."""
        return {"deconv": None}  # one heatmap per keypoint type, whatever the classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, 14, 14) -> (N, K, 56, 56) heatmap logits (deconv to 28, bilinear x2)."""
        x = self.deconv(self.convs(x))  # (N, K, 28, 28)
        return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)

    def losses(self, x: torch.Tensor, rois, targets: list[dict], handoff: Handoff) -> dict[str, torch.Tensor]:
        """Positive RoIs' features (P, C, 14, 14) -> {"loss_keypoint"}."""
        if any("keypoints" not in t for t in targets):
            raise ValueError("the keypoint head is enabled: every target needs 'keypoints' (N, K, 3) x, y, visibility")
        gt = [t["keypoints"] for t in targets]
        loss = keypoint_loss(self(x), rois.boxes, rois.matched, gt)
        return {"loss_keypoint": loss * self.cfg.loss_weight}

    def predict(self, x: torch.Tensor, detections: list[dict], handoff: Handoff) -> None:
        """Detections' features (D, C, 14, 14) -> adds `keypoint_heatmaps` (Di, K, 56, 56) per image."""
        heatmaps = self(x)  # (D, K, 56, 56)
        for det, h in zip(detections, split_per_image(heatmaps, [d["labels"].shape[0] for d in detections])):
            det["keypoint_heatmaps"] = h


# -- training -----------------------------------------------------------------------------------
def keypoint_targets(keypoints: torch.Tensor, boxes: torch.Tensor, size: int):
    """GT keypoints (P, K, 3) x, y, visibility of each RoI's matched instance, RoIs (P, 4) ->
    (P, K) flat heatmap index y * size + x and (P, K) bool "visible and inside the RoI"."""
    x1, y1, x2, y2 = (boxes[:, i, None] for i in range(4))  # (P, 1) each
    x, y = keypoints[..., 0], keypoints[..., 1]
    col = ((x - x1) * (size / (x2 - x1))).floor().long()
    row = ((y - y1) * (size / (y2 - y1))).floor().long()
    # A keypoint on the far edge belongs to the last cell, not one past it.
    col = torch.where(x == x2, size - 1, col)
    row = torch.where(y == y2, size - 1, row)
    inside = (col >= 0) & (row >= 0) & (col < size) & (row < size)
    valid = inside & (keypoints[..., 2] > 0)
    return (row * size + col) * valid, valid


def keypoint_loss(
    logits: torch.Tensor, boxes: list[torch.Tensor], matched: list[torch.Tensor], gt_keypoints: list[torch.Tensor]
) -> torch.Tensor:
    """Softmax cross-entropy over the M*M positions, averaged over valid (RoI, keypoint) pairs.

    logits (P, K, M, M); per image positive RoIs (Pi, 4), their matched gt index (Pi,) and the
    image's gt keypoints (Gi, K, 3).
    """
    size = logits.shape[-1]
    pairs = [keypoint_targets(kp[m], b, size) for kp, b, m in zip(gt_keypoints, boxes, matched)]
    index = torch.cat([p[0] for p in pairs]).flatten()  # (P * K,)
    valid = torch.cat([p[1] for p in pairs]).flatten()
    if not valid.any():
        return logits.sum() * 0
    return F.cross_entropy(logits.flatten(2).flatten(0, 1)[valid], index[valid])


# -- inference ----------------------------------------------------------------------------------
def decode_keypoints(logits: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Heatmap logits (N, K, M, M), boxes (N, 4) -> (N, K, 3) x, y, score in image coordinates.

    Each heatmap is resized bicubically to its box's size in whole pixels (ceil), its argmax cell
    centre is mapped back into the box, and the resized logit there is the keypoint's score.
    """
    out = logits.new_zeros((len(boxes), logits.shape[1], 3))
    widths = (boxes[:, 2] - boxes[:, 0]).clamp(min=1)
    heights = (boxes[:, 3] - boxes[:, 1]).clamp(min=1)
    out_w, out_h = widths.ceil().long(), heights.ceil().long()
    # Boxes differ in size: resize chunks of similar size together, within a memory budget.
    order = (out_w * out_h).argsort(descending=True)
    start = 0
    while start < len(order):
        first = order[start]
        count = max(1, _DECODE_BUDGET // int(logits.shape[1] * out_w[first] * out_h[first]))
        idx = order[start : start + count]
        col, row, score = _argmax_resized(logits[idx], out_w[idx], out_h[idx])
        out[idx, :, 0] = (col + 0.5) * (widths[idx] / out_w[idx])[:, None] + boxes[idx, 0, None]
        out[idx, :, 1] = (row + 0.5) * (heights[idx] / out_h[idx])[:, None] + boxes[idx, 1, None]
        out[idx, :, 2] = score
        start += count
    return out


def _argmax_resized(logits: torch.Tensor, out_w: torch.Tensor, out_h: torch.Tensor):
    """Argmax of each (M, M) map resized to (out_h[n], out_w[n]) -> column, row (N, K) float and
    the resized value there. The resize is separable: rows (H, M) @ map (M, M) @ cols (M, W)."""
    size = logits.shape[-1]
    w_max, h_max = int(out_w.max()), int(out_h.max())
    cols = _cubic_matrix(out_w, w_max, size, logits.dtype)  # (N, W, M)
    rows = _cubic_matrix(out_h, h_max, size, logits.dtype)  # (N, H, M)
    resized = rows[:, None] @ (logits @ cols[:, None].transpose(-1, -2))  # (N, K, H, W)
    h_idx, w_idx = torch.arange(h_max, device=out_h.device), torch.arange(w_max, device=out_w.device)
    outside = (h_idx[:, None] >= out_h[:, None, None]) | (w_idx >= out_w[:, None, None])  # (N, H, W)
    score, pos = resized.masked_fill_(outside[:, None], float("-inf")).flatten(2).max(dim=2)  # (N, K)
    return (pos % w_max).float(), (pos // w_max).float(), score


def _cubic_matrix(out_sizes: torch.Tensor, length: int, in_size: int, dtype) -> torch.Tensor:
    """(N, length, in_size) weights of a bicubic resize (align_corners=False, edge taps clamped)
    from in_size to each out_sizes[n]; rows at or past out_sizes[n] are zero."""
    out = torch.arange(length, dtype=dtype, device=out_sizes.device)  # (L,)
    scale = in_size / out_sizes.to(dtype)[:, None]  # (N, 1)
    src = scale * (out + 0.5) - 0.5  # (N, L)
    base = src.floor()
    t = src - base
    taps = (base[..., None] + torch.arange(-1, 3, device=t.device)).long().clamp(0, in_size - 1)  # (N, L, 4)
    weights = torch.stack([_cubic_far(t + 1), _cubic_near(t), _cubic_near(1 - t), _cubic_far(2 - t)], -1)
    weights = weights * (out < out_sizes[:, None])[..., None]
    matrix = torch.zeros((*src.shape, in_size), dtype=dtype, device=t.device)
    return matrix.scatter_add_(2, taps, weights)


def _cubic_near(d: torch.Tensor) -> torch.Tensor:
    """Kernel weight at distance d in [0, 1]."""
    return ((_CUBIC_A + 2) * d - (_CUBIC_A + 3)) * d * d + 1


def _cubic_far(d: torch.Tensor) -> torch.Tensor:
    """Kernel weight at distance d in [1, 2]."""
    return ((_CUBIC_A * d - 5 * _CUBIC_A) * d + 8 * _CUBIC_A) * d - 4 * _CUBIC_A

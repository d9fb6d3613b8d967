"""RoIAlign as a sparse matrix product on channels-last features, for the fast training step.

RoIAlign is linear in the features: every output bin is a fixed weighted sum of feature-map
pixels (bilinear weights of its sampling points, averaged). Written as a sparse matrix S of shape
(bins, pixels) with at most 4 * samples non-zeros per row, pooling is `S @ F` with F the features
as (pixels, channels) — a free view of a channels-last map — and its gradient is `S.T @ G`, one
sparse product instead of torchvision's per-sample scatter into an NCHW map. Both products
multiply whole rows of channels, so they run at memory speed with no atomics and no zero-filled
map per thread. Sampling positions, clamping and weights follow torchvision's `roi_align`, so the
result equals it up to float rounding (the sums run in another order). Fixed sampling ratios
only (the presets' 2); `sampling_ratio <= 0` (adaptive) has per-RoI sample counts.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F


def roi_align_sparse(feature: torch.Tensor, rois: torch.Tensor, resolution: int, scale: float,
                     sampling_ratio: int, aligned: bool) -> torch.Tensor:  # fmt: skip
    """feature (B, C, H, W), rois (R, 5) batch index + xyxy -> (R, C, resolution, resolution) fp32."""
    levels = torch.zeros(len(rois), dtype=torch.int64, device=rois.device)
    return roi_align_sparse_levels([feature], rois, levels, [scale], resolution, sampling_ratio, aligned)


def roi_align_sparse_levels(features: list[torch.Tensor], rois: torch.Tensor, levels: torch.Tensor,
                            scales: list[float], resolution: int, sampling_ratio: int,
                            aligned: bool) -> torch.Tensor:  # fmt: skip
    """Each RoI pooled from its level: features [(B, C, Hl, Wl)], rois (R, 5), levels (R,) index
    into features, scales per level -> (R, C, resolution, resolution) fp32, in RoI order.

    One sparse product over the levels' pixels stacked as rows: no per-level pass, no scatter of
    the levels' results back into RoI order (nor its backward)."""
    b, c = features[0].shape[:2]
    if len(rois) == 0:
        return features[0].new_zeros((0, c, resolution, resolution), dtype=torch.float32)
    # per level: height, width, scale and first row in the stacked pixels; gathered per RoI
    sizes = [f.shape[-2:] for f in features]
    pixels = [b * h * w for h, w in sizes]
    starts = [sum(pixels[:i]) for i in range(len(pixels))]
    table = torch.tensor([[h, w, s, o] for (h, w), s, o in zip(sizes, scales, starts)], dtype=torch.float64,
                         device=rois.device)[levels]  # (R, 4)  fmt: skip
    h, w = table[:, 0].long(), table[:, 1].long()
    cols, weights = _sampling_matrix(rois, h, w, table[:, 2].float(), table[:, 3].long(), resolution,
                                     sampling_ratio, aligned)  # fmt: skip
    # (pixels, C) per level: a view of a channels-last map
    flat = torch.cat([f.permute(0, 2, 3, 1).reshape(-1, c).float() for f in features])
    pooled = _SparseProduct.apply(flat, cols, weights, len(rois) * resolution**2)
    return pooled.view(len(rois), resolution, resolution, c).permute(0, 3, 1, 2)


def roi_align_gather_levels(features: list[torch.Tensor], rois: torch.Tensor, levels: torch.Tensor,
                            scales: list[float], resolution: int, sampling_ratio: int,
                            aligned: bool, rows: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
    """Inference form of `roi_align_sparse_levels` in the features' own dtype: each bin is a
    weighted sum of its taps' channel rows (`embedding_bag`, accumulating in fp32 for bf16) of
    `rows`, the maps' `pyramid_rows` (computed here if not given). -> (R, C, res, res) with
    channels-last strides."""
    b, c = features[0].shape[:2]
    dtype = features[0].dtype
    if len(rois) == 0:
        return features[0].new_zeros((0, resolution, resolution, c)).permute(0, 3, 1, 2)
    sizes = [f.shape[-2:] for f in features]
    pixels = [b * h * w for h, w in sizes]
    starts = [sum(pixels[:i]) for i in range(len(pixels))]
    table = torch.tensor([[h, w, s, o] for (h, w), s, o in zip(sizes, scales, starts)], dtype=torch.float64,
                         device=rois.device)[levels]  # (R, 4)  fmt: skip
    cols, weights = _sampling_matrix(rois, table[:, 0].long(), table[:, 1].long(), table[:, 2].float(),
                                     table[:, 3].long(), resolution, sampling_ratio, aligned)  # fmt: skip
    rows = pyramid_rows(features) if rows is None else rows
    taps = 4 * sampling_ratio**2
    pooled = F.embedding_bag(cols.view(-1, taps), rows, per_sample_weights=weights.view(-1, taps).to(dtype),
                             mode="sum")  # (R * res * res, C)  fmt: skip
    return pooled.view(len(rois), resolution, resolution, c).permute(0, 3, 1, 2)


def pyramid_rows(features: list[torch.Tensor]) -> torch.Tensor:
    """[(B, C, Hl, Wl)] -> (sum of B Hl Wl, C): every level's pixels as channel rows, level by
    level, one copy each (a view-free permute of channels-last maps, a transpose of NCHW ones)."""
    c = features[0].shape[1]
    rows = features[0].new_empty((sum(f.numel() // c for f in features), c))
    start = 0
    for f in features:
        b, _, h, w = f.shape
        rows[start : start + b * h * w].view(b, h, w, c).copy_(f.permute(0, 2, 3, 1))
        start += b * h * w
    return rows


def _sampling_matrix(rois, h, w, scale, first, res, ratio, aligned):
    """Column (first + b * H * W + y * W + x) and weight of every bilinear tap, bin by bin;
    h, w, scale, first (R,) per RoI."""
    if ratio <= 0:
        raise ValueError("roi_align_sparse needs a fixed sampling ratio (> 0)")
    rois = rois.float()
    offset = 0.5 if aligned else 0.0
    start = rois[:, 1:3] * scale[:, None] - offset  # (R, 2) x, y
    size = rois[:, 3:5] * scale[:, None] - offset - start
    if not aligned:
        size = size.clamp(min=1.0)  # torchvision forces malformed RoIs to 1x1
    step = size / res  # (R, 2) bin width, height
    grid = torch.arange(res, device=rois.device, dtype=torch.float32)
    sub = (torch.arange(ratio, device=rois.device, dtype=torch.float32) + 0.5) / ratio
    # sample coordinate per (RoI, bin, sub-sample): start + (bin + sub) * step
    pos = (grid[:, None] + sub[None, :]).reshape(-1)  # (res * ratio,)
    xs = start[:, None, 0] + pos[None] * step[:, None, 0]  # (R, res * ratio)
    ys = start[:, None, 1] + pos[None] * step[:, None, 1]
    x_lo, x_hi, x_frac, x_ok = _taps(xs, w[:, None])
    y_lo, y_hi, y_frac, y_ok = _taps(ys, h[:, None])
    r = len(rois)
    # taps ordered (RoI, bin y, bin x, sample y, corner y, sample x, corner x): each bin's
    # 4 * ratio**2 taps are one contiguous row of the matrix
    y_idx = torch.stack([y_lo, y_hi], -1).view(r, res, 1, ratio, 2, 1, 1)
    x_idx = torch.stack([x_lo, x_hi], -1).view(r, 1, res, 1, 1, ratio, 2)
    y_wt = (torch.stack([1 - y_frac, y_frac], -1) * y_ok[..., None]).view(r, res, 1, ratio, 2, 1, 1)
    x_wt = (torch.stack([1 - x_frac, x_frac], -1) * x_ok[..., None]).view(r, 1, res, 1, 1, ratio, 2)
    image = rois[:, 0].long()
    base = (first + image * h * w).view(r, 1, 1, 1, 1, 1, 1)
    cols = (base + y_idx * w.view(r, 1, 1, 1, 1, 1, 1) + x_idx).reshape(-1)
    weights = (y_wt * x_wt / (ratio * ratio)).reshape(-1)
    return cols, weights


def _taps(coord: torch.Tensor, size: torch.Tensor):
    """Low / high pixel, fraction towards high and validity of samples along one axis; size
    (R, 1) per RoI."""
    ok = (coord >= -1.0) & (coord <= size)  # outside [-1, size]: the sample contributes 0
    coord = coord.clamp(min=0.0)
    low = coord.floor().long()
    at_edge = low >= size - 1
    low = torch.minimum(low, size - 1)
    high = torch.where(at_edge, low, low + 1)
    frac = torch.where(at_edge, torch.zeros_like(coord), coord - low.float())
    return low, high, frac, ok.float()


class _SparseProduct(torch.autograd.Function):
    """S @ F with row i of S holding the taps cols[k i : k (i + 1)]; backward S.T @ G."""

    @staticmethod
    def forward(ctx, flat, cols, weights, num_rows):
        ctx.save_for_backward(cols, weights)
        ctx.num_pixels = flat.shape[0]
        crow = torch.arange(0, len(cols) + 1, len(cols) // max(num_rows, 1), device=cols.device)
        return _csr(crow, cols, weights, (num_rows, flat.shape[0])) @ flat

    @staticmethod
    def backward(ctx, grad):
        cols, weights = ctx.saved_tensors
        taps = len(cols) // max(grad.shape[0], 1)
        order = torch.argsort(cols)
        counts = torch.bincount(cols, minlength=ctx.num_pixels)
        crow = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
        transposed = _csr(crow, order // taps, weights[order], (ctx.num_pixels, grad.shape[0]))
        return transposed @ grad.float().contiguous(), None, None, None


def _csr(crow, cols, values, shape) -> torch.Tensor:
    with warnings.catch_warnings():  # "CSR support is in beta": the product used here is not
        warnings.filterwarnings("ignore", "Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(crow, cols, values, shape, check_invariants=False)

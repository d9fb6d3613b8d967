"""Multi-level RoIAlign: threaded pooling against torchvision's roi_align level by level.

How the tolerances are derived (u = 2**-24, fp32's unit roundoff):

Gather pooler vs torchvision in float64 (the referee: `roi_align` on the same fp32 inputs cast to
float64, each RoI at the level FPN's eq. 1 gives it in float64). The pooler computes each sample
coordinate c (in feature cells) in fp32 as `x1 * s - o + pos * ((x2 * s - o) - (x1 * s - o)) / R`:
the scale s is a power of two (exact), and the five roundings (start, end, size, step and the
sum; pos <= R) add up to u (|start| + |end| + 3 |size| + |start| + |c|) <= 10 u C, with
C = 1 + max(|x1 s|, |x2 s|) (the 1 covers the offset o and the 1-cell minimum size) and
|size| <= 2 C. The rounding grows with the coordinate's magnitude, not with the
output's. Bilinear interpolation is Lipschitz in c with constant D, the map's largest difference
between neighbouring pixels (along x or y), so a sample moves by at most 2 |dc| D (x and y). The
weights (1 - frac, then the product of the two axes' weights) round by at most 3 u / r**2 per
tap, 12 u over a bin's 4 r**2 taps; each tap's product with its feature rounds (u of it) and the
taps (weights summing to 1) are summed in fp32 ((4 r**2 - 1) u): at most (4 r**2 + 12) u M,
M = max |feature|. Per output element of a RoI:

    |ours - float64| <= u (20 C D + (4 r**2 + 12) M)

except for a sample within |dc| (< 1e-4 cell here) of the edge cut-off -1 or H (W), where RoIAlign
drops it (a jump); the fixed seeds have none. The assertion: every element within the larger of
that bound and twice torchvision's own worst fp32 error. A half-pixel offset (about D / 2) or a
RoI pooled from the wrong level (O(M)) is orders of magnitude beyond it: the test checks that
torchvision's fp32 output with the wrong `aligned` or the next level fails the same tolerance.

Threaded training pooling vs one torchvision call: forward is identical; backward adds the same
per-sample terms (the same kernel computes them) in another order (chunk by chunk, then the
chunks' maps). Two sums of the same k non-zero terms differ by at most 2 (k + parts) u S, S = the
sum of the terms' magnitudes: torchvision's backward of |grad| in float64 (the weights are
non-negative). k for a pixel <= (RoIs of its image and level) * s**2, s the samples a RoI puts
within one cell of the pixel along an axis: 7 r for a fixed ratio r; for the adaptive ratio
(ceil(size / 7) per bin) 7 for a RoI under 7 cells, and <= 4 for larger ones (samples more than
half a cell apart), so s = 7.
"""

from __future__ import annotations

import copy
import gc
import pickle

import torch
from torchvision.ops import roi_align

from maskrcnn.ops.poolers import GatherRoIAlign, RoIPooler, ThreadedRoIAlign, assign_levels, boxes_to_rois

U = torch.finfo(torch.float32).eps / 2  # fp32's unit roundoff


def _inputs(seed=0, n=300):
    g = torch.Generator().manual_seed(seed)
    features = [torch.randn(2, 8, 64 // 2**i, 96 // 2**i, generator=g) for i in range(4)]
    xy = torch.rand(n, 2, generator=g) * 200
    wh = torch.rand(n, 2, generator=g) ** 3 * 900 + 2  # sizes for every level P2..P5
    boxes = torch.cat([xy, xy + wh], dim=1)
    return features, [boxes[: n // 2], boxes[n // 2:]]


def _reference(features, boxes, pooler):
    rois = boxes_to_rois(boxes)
    levels = assign_levels(rois[:, 1:], 2, 5, 224, 4)
    out = torch.zeros(len(rois), 8, 7, 7)
    for lvl in range(4):
        idx = torch.where(levels == lvl)[0]
        out[idx] = roi_align(features[lvl], rois[idx], 7, 1 / 2 ** (lvl + 2), pooler.sampling_ratio, pooler.aligned)
    return out


def test_inference_pooling_is_identical_to_one_call_per_level():
    features, boxes = _inputs()
    pooler = RoIPooler(2, aligned=False)
    with torch.inference_mode():
        got = pooler(features, boxes, 7)
    assert torch.equal(got, _reference(features, boxes, pooler))


def _float64_levels(rois: torch.Tensor) -> torch.Tensor:
    """FPN eq. 1 in float64: floor(4 + log2(sqrt(area) / 224)) clamped to P2..P5, as an offset."""
    wh = (rois[:, 3:] - rois[:, 1:3]).double()
    return torch.floor(4 + torch.log2(wh.prod(1).sqrt() / 224)).clamp(2, 5).long() - 2


def _pooled64(features, rois, levels, ratio, aligned, dtype=torch.float64, shift=0):
    """torchvision's roi_align per level in `dtype` (float64: the referee), and the rounding
    bound of the gather pooler per RoI (module docstring). `shift` moves every RoI to another
    level (a deliberately wrong pooler)."""
    out = torch.zeros(len(rois), 8, 7, 7, dtype=dtype)
    bound = torch.zeros(len(rois), 1, 1, 1, dtype=torch.float64)
    for lvl, f in enumerate(features):
        idx = torch.where(levels == lvl)[0]
        scale, src = 1 / 2 ** (lvl + 2), features[min(lvl + shift, len(features) - 1)]
        out[idx] = roi_align(src.to(dtype), rois[idx].to(dtype), 7, scale, ratio, aligned)
        f = f.double()
        d = max((f[..., 1:] - f[..., :-1]).abs().max(), (f[..., 1:, :] - f[..., :-1, :]).abs().max())
        c = 1 + (rois[idx, 1:].double() * scale).abs().amax(1)
        bound[idx, 0, 0, 0] = U * (20 * c * d + (4 * ratio**2 + 12) * f.abs().max())
    return out, bound


def test_gather_pooler_copies_the_maps_once_for_both_heads():
    """The fast path's pooler on NCHW fp32 maps: torchvision's values level by level, judged
    against float64 (module docstring); the box and mask heads' calls on the same maps share one
    copy of their rows, new maps get theirs, and the copy goes with the maps (and is not pickled)."""
    features, boxes = _inputs()
    pooler = RoIPooler(2, aligned=False).as_variant(GatherRoIAlign)
    rois = boxes_to_rois(boxes)
    levels = _float64_levels(rois)
    assert torch.equal(levels, assign_levels(rois[:, 1:], 2, 5, 224, 4))
    truth, bound = _pooled64(features, rois, levels, 2, False)
    theirs, _ = _pooled64(features, rois, levels, 2, False, torch.float32)
    tol = torch.maximum(bound, 2 * (theirs.double() - truth).abs().max())
    with torch.inference_mode():
        got = pooler(features, boxes, 7)
        rows = pooler.rows(features)
        again = pooler(features, [b[:20] for b in boxes], 14)
        assert pooler.rows(features) is rows
        assert ((got.double() - truth).abs() <= tol).all()
        for wrong in (_pooled64(features, rois, levels, 2, True, torch.float32)[0],  # half-pixel offset
                      _pooled64(features, rois, levels, 2, False, torch.float32, shift=1)[0]):  # next level
            assert not ((wrong.double() - truth).abs() <= tol).all()
        assert again.shape == (40, 8, 14, 14)
        other = [f + 1 for f in features]
        assert not torch.equal(pooler.rows(other), rows)
        assert pickle.loads(pickle.dumps(pooler))._rows is None and copy.deepcopy(pooler) is not None
        del other, rows
        gc.collect()
    assert pooler._rows is None


def _order_bound(feature, rois, grad, scale, ratio, aligned, samples_per_axis):
    """(B, C, H, W) bound on the difference of two sums of one pixel's backward terms in other
    orders: 2 (k + parts) u S (module docstring), k <= RoIs of the image * samples_per_axis**2."""
    f = torch.zeros_like(feature, dtype=torch.float64, requires_grad=True)
    out = roi_align(f, rois.double(), 7, scale, ratio, aligned)
    (out * grad.abs().double()).sum().backward()
    per_image = torch.bincount(rois[:, 0].long(), minlength=feature.shape[0]).double()
    terms = per_image * (samples_per_axis**2 + 1)  # + 1 per RoI: parts <= RoIs
    return 2 * U * terms.view(-1, 1, 1, 1) * f.grad


def test_training_pooling_forward_identical_and_gradients_within_reordering():
    """Threads split each level's RoIs: the same gradient terms summed in another order."""
    features, boxes = _inputs(seed=1)
    pooler = RoIPooler(0, aligned=True)
    leaves = [f.clone().requires_grad_() for f in features]
    ref_leaves = [f.clone().requires_grad_() for f in features]
    out, ref = pooler(leaves, boxes, 7), _reference(ref_leaves, boxes, pooler)
    assert torch.equal(out, ref)
    weight = torch.randn_like(ref)
    grads = torch.autograd.grad((out * weight).sum(), leaves)
    ref_grads = torch.autograd.grad((ref * weight).sum(), ref_leaves)
    rois = boxes_to_rois(boxes)
    levels = assign_levels(rois[:, 1:], 2, 5, 224, 4)
    for lvl, (a, b) in enumerate(zip(grads, ref_grads)):
        idx = torch.where(levels == lvl)[0]
        bound = _order_bound(features[lvl], rois[idx], weight[idx], 1 / 2 ** (lvl + 2), 0, True, 7)
        assert ((a - b).abs() <= bound).all(), lvl


def test_threaded_function_splits_forward_and_backward():
    features, boxes = _inputs(seed=2, n=64)
    feature = features[0].requires_grad_()
    rois = boxes_to_rois(boxes)
    args = (0.25, 7, 2, False)
    a = ThreadedRoIAlign.apply(feature, rois, *args, 3)
    b = roi_align(feature, rois, 7, *args[:1], 2, False)
    assert torch.equal(a, b)
    ga, = torch.autograd.grad(a.sum(), feature)
    gb, = torch.autograd.grad(b.sum(), feature)
    bound = _order_bound(feature.detach(), rois, torch.ones_like(b), 0.25, 2, False, 7 * 2)
    assert ((ga - gb).abs() <= bound).all()


# -- the paper's Table 2c RoI layers on a 4 x 4 map whose value at (y, x) is 4y + x --------------
GRID = torch.arange(16.0).view(1, 1, 4, 4)
# (0.6, 0.4) - (2.4, 2.6) in cells of a stride-2 level: (1.2, 0.8) - (4.8, 5.2) in pixels
BOX = [torch.tensor([[1.2, 0.8, 4.8, 5.2]])]


def _pooled(kind: str) -> list:
    pooler = RoIPooler(2, aligned=False, min_level=1, max_level=1, kind=kind)
    return pooler([GRID], BOX, 2)[0, 0].tolist()


def test_roipool_quantises_roi_and_bins_and_takes_the_max():
    """RoI rounded to cells x 1..2, y 0..3 (2 x 4 cells): bins of 1 x 2 cells; max of
    rows 0-1 / 2-3 in columns 1 and 2."""
    assert _pooled("roipool") == [[5.0, 6.0], [13.0, 14.0]]


def test_roiwarp_quantises_the_roi_then_samples_bilinearly():
    """RoI rounded to x 1..2, y 0..3; bins of 0.5 x 1.5 cells sampled at their centres
    (x 1.25, 1.75; y 0.75, 2.25): on a linear map each bin's mean is its centre's value."""
    assert _pooled("roiwarp") == [[4.25, 4.75], [10.25, 10.75]]


def test_roialign_keeps_the_exact_roi():
    """Bins of 0.9 x 1.1 cells from (0.6, 0.4): centres x 1.05, 1.95; y 0.95, 2.05."""
    torch.testing.assert_close(torch.tensor(_pooled("roialign")), torch.tensor([[4.85, 5.75], [9.25, 10.15]]))

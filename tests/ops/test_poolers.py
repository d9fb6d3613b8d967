"""Multi-level RoIAlign: threaded pooling against torchvision's roi_align level by level."""

from __future__ import annotations

import copy
import gc
import math
import pickle

import torch
from torchvision.ops import roi_align

from maskrcnn.ops.poolers import GatherRoIAlign, RoIPooler, ThreadedRoIAlign, assign_levels, boxes_to_rois


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


def test_gather_pooler_copies_the_maps_once_for_both_heads():
    """The fast path's pooler on NCHW fp32 maps: torchvision's values level by level; the box
    and mask heads' calls on the same maps share one copy of their rows, new maps get theirs,
    and the copy goes with the maps (and is not pickled)."""
    features, boxes = _inputs()
    pooler = RoIPooler(2, aligned=False).as_variant(GatherRoIAlign)
    with torch.inference_mode():
        got = pooler(features, boxes, 7)
        rows = pooler.rows(features)
        again = pooler(features, [b[:20] for b in boxes], 14)
        assert pooler.rows(features) is rows
        torch.testing.assert_close(got, _reference(features, boxes, pooler), rtol=0, atol=5e-5)  # maps ~N(0, 1)
        assert again.shape == (40, 8, 14, 14)
        other = [f + 1 for f in features]
        assert not torch.equal(pooler.rows(other), rows)
        assert pickle.loads(pickle.dumps(pooler))._rows is None and copy.deepcopy(pooler) is not None
        del other, rows
        gc.collect()
    assert pooler._rows is None


def test_training_pooling_forward_identical_and_gradients_close():
    features, boxes = _inputs(seed=1)
    pooler = RoIPooler(0, aligned=True)
    leaves = [f.clone().requires_grad_() for f in features]
    ref_leaves = [f.clone().requires_grad_() for f in features]
    out, ref = pooler(leaves, boxes, 7), _reference(ref_leaves, boxes, pooler)
    assert torch.equal(out, ref)
    weight = torch.randn_like(ref)
    grads = torch.autograd.grad((out * weight).sum(), leaves)
    ref_grads = torch.autograd.grad((ref * weight).sum(), ref_leaves)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


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
    assert math.isclose(ga.sum().item(), gb.sum().item(), rel_tol=1e-5)
    torch.testing.assert_close(ga, gb, rtol=1e-5, atol=1e-5)


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

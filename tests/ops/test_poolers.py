"""Multi-level RoIAlign: threaded pooling against torchvision's roi_align level by level."""

from __future__ import annotations

import math

import torch
from torchvision.ops import roi_align

from maskrcnn.ops.poolers import MultiLevelRoIAlign, ThreadedRoIAlign, assign_levels, boxes_to_rois


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
    pooler = MultiLevelRoIAlign(7, 2, aligned=False)
    with torch.inference_mode():
        got = pooler(features, boxes)
    assert torch.equal(got, _reference(features, boxes, pooler))


def test_training_pooling_forward_identical_and_gradients_close():
    features, boxes = _inputs(seed=1)
    pooler = MultiLevelRoIAlign(7, 0, aligned=True)
    leaves = [f.clone().requires_grad_() for f in features]
    ref_leaves = [f.clone().requires_grad_() for f in features]
    out, ref = pooler(leaves, boxes), _reference(ref_leaves, boxes, pooler)
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

"""RoIAlign as a sparse product against torchvision's roi_align: values and feature gradients."""

import pytest
import torch
from torchvision.ops import roi_align

from maskrcnn.ops.roi_align_sparse import roi_align_gather_levels, roi_align_sparse, roi_align_sparse_levels


EPS = torch.finfo(torch.float32).eps
# Judged as every fast path is: against torchvision's roi_align in float64, no less exact than
# torchvision's own fp32 (at most twice its error), or below a floor from fp32's epsilon and the
# reduction length: an output averages <= 4 ratio^2 = 16 taps (16 eps of the largest value); a
# feature pixel's gradient sums up to a few hundred taps (512 eps).
OUT_FLOOR, GRAD_FLOOR = 16 * EPS, 512 * EPS


def no_less_exact(got, theirs, truth, floor: float) -> None:
    err = (got.double() - truth).abs().max().item()
    their_err = (theirs.double() - truth).abs().max().item()
    assert err <= max(2 * their_err, floor * truth.abs().max().item()), (err, their_err)


def _torchvision64(feature, rois, grad, *args):
    """roi_align in float64: (output, feature gradient) the referee."""
    f = feature.double().requires_grad_(True)
    out = roi_align(f, rois.double(), *args)
    (out * grad.double()).sum().backward()
    return out.detach(), f.grad


def _rois(gen, n, h, w, stride):
    """Boxes of every kind: inside, crossing the border, far outside, under one pixel."""
    xy = torch.rand(n, 2, generator=gen) * torch.tensor([w, h]) * stride * 1.2 - 0.1 * stride * w
    wh = torch.rand(n, 2, generator=gen) ** 2 * torch.tensor([w, h]) * stride * 0.8
    wh[: n // 8] *= 0.01  # sub-pixel boxes
    boxes = torch.cat([xy, xy + wh], 1)
    boxes[-1] = torch.tensor([-500.0, -500.0, -300.0, -300.0])  # entirely outside
    return torch.cat([torch.randint(0, 2, (n, 1), generator=gen).float(), boxes], 1)


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("ratio", [1, 2])
def test_matches_torchvision_forward_and_backward(aligned, ratio):
    gen = torch.Generator().manual_seed(ratio + 2 * aligned)
    feature = torch.randn(2, 16, 23, 31, generator=gen)
    rois = _rois(gen, 96, 23, 31, stride=8)
    want_in = feature.clone().requires_grad_(True)
    want = roi_align(want_in, rois, 7, 1 / 8, ratio, aligned)
    grad = torch.randn(want.shape, generator=gen)
    (want * grad).sum().backward()
    got_in = feature.clone().to(memory_format=torch.channels_last).requires_grad_(True)
    got = roi_align_sparse(got_in, rois, 7, 1 / 8, ratio, aligned)
    (got * grad).sum().backward()
    assert got.shape == want.shape
    truth, truth_grad = _torchvision64(feature, rois, grad, 7, 1 / 8, ratio, aligned)
    no_less_exact(got, want, truth, OUT_FLOOR)
    no_less_exact(got_in.grad, want_in.grad, truth_grad, GRAD_FLOOR)


def test_levels_in_one_product_match_torchvision_per_level():
    """RoIs spread over three maps of different sizes: each pooled from its own level, in RoI
    order, with every level's feature gradient."""
    gen = torch.Generator().manual_seed(7)
    sizes, scales = [(24, 32), (12, 16), (6, 8)], [1 / 4, 1 / 8, 1 / 16]
    features = [torch.randn(2, 8, h, w, generator=gen) for h, w in sizes]
    rois = _rois(gen, 60, 24, 32, stride=4)
    levels = torch.randint(0, 3, (60,), generator=gen)
    want_in = [f.clone().requires_grad_(True) for f in features]
    want = torch.zeros(60, 8, 7, 7)
    for level in range(3):
        idx = torch.where(levels == level)[0]
        want[idx] = roi_align(want_in[level], rois[idx], 7, scales[level], 2, True)
    grad = torch.randn(want.shape, generator=gen)
    (want * grad).sum().backward()
    got_in = [f.clone().to(memory_format=torch.channels_last).requires_grad_(True) for f in features]
    got = roi_align_sparse_levels(got_in, rois, levels, scales, 7, 2, True)
    (got * grad).sum().backward()
    truth = torch.zeros(60, 8, 7, 7, dtype=torch.float64)
    truth_grads = []
    for level in range(3):
        idx = torch.where(levels == level)[0]
        truth[idx], level_grad = _torchvision64(features[level], rois[idx], grad[idx], 7, scales[level], 2, True)
        truth_grads.append(level_grad)
    no_less_exact(got, want, truth, OUT_FLOOR)
    for g, w, t in zip(got_in, want_in, truth_grads):
        no_less_exact(g.grad, w.grad, t, GRAD_FLOOR)


def test_no_rois_and_adaptive_sampling():
    feature = torch.randn(1, 4, 8, 8)
    assert roi_align_sparse(feature, torch.zeros(0, 5), 7, 1.0, 2, False).shape == (0, 4, 7, 7)
    with pytest.raises(ValueError, match="fixed sampling ratio"):
        roi_align_sparse(feature, torch.tensor([[0.0, 1, 1, 5, 5]]), 7, 1.0, 0, False)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gather_form_matches_torchvision_per_level(dtype):
    """The inference gather (the bf16 path's pooler) on channels-last maps, against torchvision
    in float64: fp32 to rounding; bf16 within twice bf16's rounding of the result (2 ** -8 of
    the largest value), the weights rounded to bf16 as well as the sums."""
    gen = torch.Generator().manual_seed(11)
    sizes, scales = [(24, 32), (12, 16), (6, 8)], [1 / 4, 1 / 8, 1 / 16]
    features = [torch.randn(2, 8, h, w, generator=gen) for h, w in sizes]
    rois = _rois(gen, 60, 24, 32, stride=4)
    levels = torch.randint(0, 3, (60,), generator=gen)
    want = torch.zeros(60, 8, 7, 7, dtype=torch.float64)
    for level in range(3):
        idx = torch.where(levels == level)[0]
        want[idx] = roi_align(features[level].to(dtype).double(), rois[idx].double(), 7, scales[level], 2, True)
    inputs = [f.to(dtype).to(memory_format=torch.channels_last) for f in features]
    got = roi_align_gather_levels(inputs, rois, levels, scales, 7, 2, True)
    assert got.dtype == dtype and got.is_contiguous(memory_format=torch.channels_last)
    tol = (OUT_FLOOR if dtype == torch.float32 else 2.0**-8) * want.abs().max().item()
    torch.testing.assert_close(got.double(), want, rtol=0, atol=tol)
    empty = roi_align_gather_levels(inputs, rois[:0], levels[:0], scales, 7, 2, True)
    assert empty.shape == (0, 8, 7, 7) and empty.dtype == dtype

"""RoIAlign as a sparse product against torchvision's roi_align: values and feature gradients."""

import pytest
import torch
from torchvision.ops import roi_align

from maskrcnn.ops.roi_align_sparse import roi_align_sparse


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
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    # a pixel sums up to hundreds of taps, in another order than torchvision: float rounding
    torch.testing.assert_close(got_in.grad, want_in.grad, rtol=1e-5, atol=5e-5)


def test_no_rois_and_adaptive_sampling():
    feature = torch.randn(1, 4, 8, 8)
    assert roi_align_sparse(feature, torch.zeros(0, 5), 7, 1.0, 2, False).shape == (0, 4, 7, 7)
    with pytest.raises(ValueError, match="fixed sampling ratio"):
        roi_align_sparse(feature, torch.tensor([[0.0, 1, 1, 5, 5]]), 7, 1.0, 0, False)

"""The fp32 fast path's mask tail (deconv -> ReLU -> class logits as matrix products) against
the layers themselves, in float64 where the two differ only by the order of the sums."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from exactness import compare, float64_model, run_ours
from torch import nn

from maskrcnn.model.detector import build_model
from maskrcnn.model.fast_inference import prepare_for_inference
from maskrcnn.model.fast_mask_tail import MatmulMaskTail
from maskrcnn.presets import apply_kwargs, get_preset


def _layers(k: int, classes: int, seed: int = 0):
    torch.manual_seed(seed)
    deconv = nn.ConvTranspose2d(8, 6, k, stride=k).double()
    logits = nn.Conv2d(6, classes, 1).double()
    return deconv, logits


@pytest.mark.parametrize("k", [2, 4])
def test_tail_equals_deconv_relu_logits_then_pick(k):
    deconv, logits = _layers(k, classes=5)
    x = torch.randn(7, 8, 5, 3, dtype=torch.float64)
    labels = torch.tensor([0, 4, 1, 1, 3, 2, 4])
    layers = logits(F.relu(deconv(x)))  # (7, 5, 5k, 3k)
    truth = layers[torch.arange(7), labels]
    out = MatmulMaskTail(deconv, logits)(x, labels)
    assert out.shape == (7, 5 * k, 3 * k)
    torch.testing.assert_close(out, truth, rtol=0, atol=1e-12)


def _gamma(n: int, dtype: torch.dtype) -> float:
    """Higham's bound on the relative error of an n-term dot product in `dtype`, in any order."""
    u = torch.finfo(dtype).eps / 2
    return n * u / (1 - n * u)


@pytest.mark.parametrize("seed", range(3))
def test_fp32_tail_error_is_within_the_rounding_bound_of_its_sums(seed):
    """In fp32 the tail and the layers sum in different orders, so neither equals the other; both
    must be within the worst-case rounding bound of the two reductions (deconv over C inputs and
    the bias, logits over D channels and the bias), measured against float64 element by element:
    |err| <= g(C+1) (|W1| |x| + |b1|) |W2| + g(D+1) (|W2| |h| + |b2|), g(n) = n u / (1 - n u)."""
    torch.manual_seed(seed)
    deconv, logits = nn.ConvTranspose2d(256, 256, 2, stride=2), nn.Conv2d(256, 91, 1)
    x = torch.randn(12, 256, 14, 14).relu()  # the last mask conv's output is a ReLU's
    labels = torch.randint(0, 91, (12,))
    pick = torch.arange(12)
    with torch.no_grad():
        ref = MatmulMaskTail(copy.deepcopy(deconv).double(), copy.deepcopy(logits).double())(x.double(), labels)
        got = {"tail": MatmulMaskTail(deconv, logits)(x, labels),
               "layers": logits(F.relu(deconv(x)))[pick, labels]}
        a1, a2 = copy.deepcopy(deconv).double(), copy.deepcopy(logits).double()
        for layer in (a1, a2):
            layer.weight.abs_(), layer.bias.abs_()
        h_abs = F.relu(deconv.double()(x.double())).abs()  # |h| in float64
        first = a1(x.double())  # |W1| |x| + |b1|
        bound = (_gamma(257, torch.float32) * F.conv2d(first, a2.weight)[pick, labels]
                 + _gamma(257, torch.float32) * a2(h_abs)[pick, labels])
    for name, out in got.items():
        excess = (out.double() - ref).abs() - bound
        assert float(excess.max()) <= 0, f"{name}: {float(excess.max())} above the rounding bound"


def test_no_rois_give_no_masks():
    deconv, logits = _layers(2, classes=3)
    out = MatmulMaskTail(deconv, logits)(torch.zeros(0, 8, 14, 14, dtype=torch.float64), torch.zeros(0, dtype=torch.int64))
    assert out.shape == (0, 28, 28)


def test_other_layers_are_refused():
    deconv, logits = _layers(2, classes=3)
    with pytest.raises(ValueError, match="kernel = stride"):
        MatmulMaskTail(nn.ConvTranspose2d(8, 6, 3, stride=2), logits)
    assert not MatmulMaskTail.fits(deconv, nn.Conv2d(6, 3, 3))


# The tail computes the layers' sums in another order, so it is judged as the project judges every
# fast path: against the same model in float64. Per image, its worst pasted-mask error is at most
# TAIL_SLACK times the layers' own fp32 error (both carry the same upstream fp32 error; the tail
# adds a re-association of two reductions, which at most doubles a rounding error of the same
# size), or below MASK_FLOOR: a probability error under 2^-17 (about 64 fp32 ulps at 0.5) is
# rounding of the sigmoid's input, whatever the order of the sums.
TAIL_SLACK, MASK_FLOOR = 2.0, 2.0**-17


@pytest.mark.parametrize("kwargs,installed", [({}, True), ({"model.mask.class_agnostic": True}, True),
                                              ({"model.mask.loss": "softmax"}, False)])
def test_the_fp32_path_installs_it_where_it_is_exact(kwargs, installed):
    """The fp32 fast model with its tail vs the same model with the layers, both against the
    plain model in float64: the tail is no less exact (sigmoid and class-agnostic heads); softmax
    masks keep the layers."""
    cfg = apply_kwargs(get_preset("maskrcnn_r50_fpn"), {"min_size": 160, "max_size": 200, "box_score_thresh": 0.0, **kwargs})
    torch.manual_seed(0)
    plain = build_model(cfg).eval()
    fast = prepare_for_inference(copy.deepcopy(plain), "fp32")
    assert (fast.roi_heads.mask_head.fast_tail is not None) == installed
    layers = copy.deepcopy(fast)
    layers.roi_heads.mask_head.fast_tail = None
    image = torch.rand(3, 150, 190, generator=torch.Generator().manual_seed(3))
    truth = run_ours(float64_model(plain), image)
    cut = float(truth.scores.min())
    with_layers, with_tail = (compare(truth, run_ours(m, image), cut) for m in (layers, fast))
    assert with_tail.matched == with_layers.matched == len(truth) > 0
    assert with_tail.worst("mask") <= max(TAIL_SLACK * with_layers.worst("mask"), MASK_FLOOR)

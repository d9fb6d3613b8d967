"""The fp32 fast path's mask tail (deconv -> ReLU -> class logits as matrix products) against
the layers themselves, in float64 where the two differ only by the order of the sums."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from maskrcnn.model.detector import build_model
from maskrcnn.model.fast_inference import prepare_for_inference
from maskrcnn.model.fast_mask_tail import MatmulMaskTail
from maskrcnn.zoo import apply_kwargs, get_preset


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


def test_no_rois_give_no_masks():
    deconv, logits = _layers(2, classes=3)
    out = MatmulMaskTail(deconv, logits)(torch.zeros(0, 8, 14, 14, dtype=torch.float64), torch.zeros(0, dtype=torch.int64))
    assert out.shape == (0, 28, 28)


def test_other_layers_are_refused():
    deconv, logits = _layers(2, classes=3)
    with pytest.raises(ValueError, match="kernel = stride"):
        MatmulMaskTail(nn.ConvTranspose2d(8, 6, 3, stride=2), logits)
    assert not MatmulMaskTail.fits(deconv, nn.Conv2d(6, 3, 3))


@pytest.mark.parametrize("kwargs,installed", [({}, True), ({"model.mask.class_agnostic": True}, True),
                                              ({"model.mask.loss": "softmax"}, False)])
def test_the_fp32_path_installs_it_where_it_is_exact(kwargs, installed):
    """The fp32 fast model with its tail vs the same model with the layers: the same mask
    probabilities to fp32 rounding (sigmoid and class-agnostic heads); softmax masks keep the
    layers."""
    cfg = apply_kwargs(get_preset("maskrcnn_r50_fpn"), {"min_size": 160, "max_size": 200, "box_score_thresh": 0.0, **kwargs})
    torch.manual_seed(0)
    fast = prepare_for_inference(build_model(cfg).eval(), "fp32")
    assert (fast.roi_heads.mask_head.fast_tail is not None) == installed
    layers = copy.deepcopy(fast)
    layers.roi_heads.mask_head.fast_tail = None
    image = torch.rand(3, 150, 190, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        a, b = layers.predict(image, keep_mask_probs=True)[0], fast.predict(image, keep_mask_probs=True)[0]
    assert len(a) == len(b) > 0
    torch.testing.assert_close(b.mask_probs, a.mask_probs, rtol=0, atol=2e-6)

"""Mask head variants against hand-computed values: the sigmoid and softmax losses on a 2-class
example, class-specific and class-agnostic picking, the FCN / MLP layouts at 14, 28 and 56."""

from __future__ import annotations

import math

import pytest
import torch

from maskrcnn.config import MaskHeadConfig, apply_overrides
from maskrcnn.errors import ConfigError
from maskrcnn.model.detector import build_model
from maskrcnn.model.head_contract import Handoff
from maskrcnn.model.mask_head import FCNMaskHead, MaskHead, MLPMaskHead
from maskrcnn.model.roi_heads import SampledRoIs
from maskrcnn.presets import get_preset

# class 1's logits, and (softmax) background and class 2's, on a 2 x 2 mask
CLASS1 = [[2.0, -1.0], [0.0, 1.0]]
BACKGROUND = [[0.0, 0.0], [0.0, 0.0]]
CLASS2 = [[1.0, 0.0], [0.0, 0.0]]


class FixedLogits(MaskHead):
    """A mask head whose layers output the hand-made logits, to test what every head shares."""

    def forward(self, x):
        return torch.tensor([[BACKGROUND, CLASS1, CLASS2]]).expand(len(x), -1, -1, -1).clone()


def _losses(loss: str):
    """One RoI of class 1, box (0, 0)-(4, 4) over a GT mask filling columns 0-1 of 4 x 4. Its
    2 x 2 crop samples x = 0.5, 1.5 | 2.5, 3.5 (RoIAlign, pixel i at coordinate i): the left
    bin's mean is (1 + 0.5) / 2 = 0.75, the right one's 0, on both rows."""
    head = FixedLogits(MaskHeadConfig(resolution=2, loss=loss), num_classes=3)
    masks = torch.zeros(1, 4, 4, dtype=torch.uint8)
    masks[0, :, :2] = 1
    rois = SampledRoIs([torch.tensor([[0.0, 0, 4, 4]])], [torch.tensor([1])], [torch.tensor([0])])
    handoff = Handoff()
    losses = head.losses(torch.zeros(1, 8, 2, 2), rois, [{"masks": masks}], handoff)
    assert handoff.mask_targets.tolist() == [[[0.75, 0.0], [0.75, 0.0]]]
    return losses["loss_mask"].item(), handoff.mask_logits[0]


def test_sigmoid_loss_by_hand():
    """Binary cross-entropy of class 1's logits against the soft crop, mean of 4 pixels."""

    def bce(z, t):
        return -(t * math.log(1 / (1 + math.exp(-z))) + (1 - t) * math.log(1 - 1 / (1 + math.exp(-z))))

    expected = (bce(2, 0.75) + bce(-1, 0) + bce(0, 0.75) + bce(1, 0)) / 4
    loss, picked = _losses("sigmoid")
    assert loss == pytest.approx(expected, rel=1e-6)
    assert picked.tolist() == CLASS1


def test_softmax_loss_by_hand():
    """3-way cross-entropy per pixel; target class 1 where the crop is >= 0.5, else background."""
    pixels = [((0, 2, 1), 1), ((0, -1, 0), 0), ((0, 0, 0), 1), ((0, 1, 0), 0)]  # (bg, c1, c2), target
    expected = sum(math.log(sum(math.exp(v) for v in z)) - z[t] for z, t in pixels) / 4
    loss, picked = _losses("softmax")
    assert loss == pytest.approx(expected, rel=1e-6)
    # the picked logit is class 1's margin over the best other class: positive where class 1 wins
    assert picked.tolist() == [[2.0 - 1.0, -1.0 - 0.0], [0.0 - 0.0, 1.0 - 0.0]]


def test_class_specific_and_agnostic_picking():
    logits = torch.randn(3, 4, 5, 5, requires_grad=True)
    labels = torch.tensor([2, 1, 3])
    specific = MaskHead(MaskHeadConfig(), num_classes=4).pick(logits, labels)
    assert torch.equal(specific, torch.stack([logits[0, 2], logits[1, 1], logits[2, 3]]))
    (grad,) = torch.autograd.grad(specific.sum(), logits)
    assert grad.flatten(2).sum(2).tolist() == [[0, 0, 25, 0], [0, 25, 0, 0], [0, 0, 0, 25]]  # only GT classes learn
    agnostic = MaskHead(MaskHeadConfig(class_agnostic=True), num_classes=4)
    assert agnostic.out_channels == 1
    assert torch.equal(agnostic.pick(logits[:, :1], labels), logits[:, 0])  # one mask whatever the class


@pytest.mark.parametrize("resolution, kernel", [(14, 1), (28, 2), (56, 4)])
def test_fcn_upsamples_the_14x14_rois_to_the_resolution(resolution, kernel):
    head = FCNMaskHead(MaskHeadConfig(resolution=resolution, conv_dims=(8, 8, 8)), 4, 14, num_classes=3)
    assert len(head.convs) == 3 and head.deconv.kernel_size == (kernel, kernel) == head.deconv.stride
    assert head(torch.zeros(2, 4, 14, 14)).shape == (2, 3, resolution, resolution)


def test_mlp_head_is_fcs_to_every_class_mask():
    """Paper Table 2e: fc 1024 -> fc 1024 -> fc (K+1) x 28 x 28, here 16 wide on 4 x 14 x 14."""
    head = MLPMaskHead(MaskHeadConfig(head="mlp", mlp_dims=(16, 16)), 4, 14, num_classes=3)
    shapes = [tuple(fc.weight.shape) for fc in head.fcs] + [tuple(head.logits.weight.shape)]
    assert shapes == [(16, 4 * 14 * 14), (16, 16), (3 * 28 * 28, 16)]
    assert head(torch.zeros(2, 4, 14, 14)).shape == (2, 3, 28, 28)


@pytest.mark.parametrize("overrides, message", [
    (["model.mask.loss=softmax", "model.mask.class_agnostic=true"], "needs model.mask.loss=sigmoid"),
    (["model.mask.resolution=20"], "must be a multiple of the mask head's input size 14"),
    (["model.roi_pooler=roiwrap"], "model.roi_pooler: unknown 'roiwrap'"),
    (["model.mask.head=conv"], "model.mask.head: unknown 'conv'"),
])  # fmt: skip
def test_impossible_combinations_are_config_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        build_model(apply_overrides(get_preset("maskrcnn_r18_fpn"), overrides))

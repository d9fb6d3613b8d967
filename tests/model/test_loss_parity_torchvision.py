"""Training losses equal torchvision's: same weights, images, targets and (seeded) sampling.

Both models draw their random choices (training size, anchor sampling, RoI sampling) from the
global RNG in the same order, so one `torch.manual_seed` before each forward fixes the samples.
"""

import pytest
import torch
from torchvision.models import detection as tvdet
from torchvision_reference import harden

from maskrcnn.weights.formats.torchvision import convert_torchvision
from maskrcnn.data import InstanceIdPngDataset
from maskrcnn.model.detector import build_model
from maskrcnn.weights import load_state
from maskrcnn.presets import apply_kwargs, get_preset

SIZE = {"min_size": 512, "max_size": 853}
LOSSES = ("loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg", "loss_mask")
# Same operations in the same order as torchvision on tensors of the same shapes (every CPU picks
# the same kernels for both): losses and gradients equal bit for bit (0 to 1 ulp seen on an AMD
# EPYC); RE_ASSOC ulps of margin, room for a sum of that many terms in another order, far below
# a wrong target, weight or average (>= 1e-3 relative).
RE_ASSOC, U = 16, torch.finfo(torch.float32).eps / 2


@pytest.fixture(scope="module")
def setup(shared_data):
    data = InstanceIdPngDataset(shared_data / "pennfudan")
    samples = [data[i] for i in (0, 5)]  # two images with 2 and 1+ pedestrians, different sizes
    images = [s[0] for s in samples]
    targets = [{k: s[1][k] for k in ("boxes", "labels", "masks")} for s in samples]
    torch.manual_seed(0)
    ref = tvdet.maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=2, **SIZE)
    harden(ref, eps=0.0, seed=3, image=images[0])
    cfg = apply_kwargs(get_preset("maskrcnn_r50_fpn"), {"num_classes": 2, **SIZE})
    ours = build_model(cfg)
    load_state(ours, convert_torchvision(ref.state_dict()), source="torchvision reference")
    return ref.train(), ours.train(), images, targets


def _losses(model, images, targets, seed):
    torch.manual_seed(seed)
    return model(images, [dict(t) for t in targets])


@pytest.mark.parametrize("seed", [0, 1])
def test_losses_match(setup, seed):
    ref, ours, images, targets = setup
    expected = _losses(ref, images, targets, seed)
    got = _losses(ours, images, targets, seed)
    assert set(got) == set(LOSSES) == set(expected)
    for name in LOSSES:
        e, g = expected[name].item(), got[name].item()
        assert e > 0
        assert abs(g - e) <= RE_ASSOC * U * abs(e), f"{name}: ours {g:.8f} vs torchvision {e:.8f}"


def test_gradients_match(setup):
    """Same losses through the same graph: the mask head's gradient agrees too."""
    ref, ours, images, targets = setup
    ref.zero_grad()
    ours.zero_grad()
    sum(_losses(ref, images, targets, 2).values()).backward()
    sum(_losses(ours, images, targets, 2).values()).backward()
    ref_grad = ref.roi_heads.mask_predictor.mask_fcn_logits.weight.grad
    our_grad = ours.roi_heads.mask_head.logits.weight.grad
    torch.testing.assert_close(our_grad, ref_grad, rtol=0, atol=RE_ASSOC * U * ref_grad.abs().max().item())

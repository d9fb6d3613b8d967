"""The weight initialiser: each fill draws what the torch.nn.init call it names draws."""

import pytest
import torch
from torch import nn

from maskrcnn.model.layers import init_layers


def _layers():
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.ConvTranspose2d(8, 4, 2, bias=False),
                         nn.Flatten(), nn.Linear(16, 5), nn.GroupNorm(1, 5))


@pytest.mark.parametrize("fill, reference", [
    ("msra", lambda w: nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu")),
    ("xavier", lambda w: nn.init.kaiming_uniform_(w, a=1)),
    ("normal", lambda w: nn.init.normal_(w, std=0.001)),
])
def test_fill_equals_its_torch_init_in_module_order(fill, reference):
    ours, expected = _layers(), _layers()
    torch.manual_seed(0)
    init_layers(ours, fill, std=0.001)
    torch.manual_seed(0)
    for index in (0, 2, 4):  # the conv, the deconv, the linear, in that order
        reference(expected[index].weight)
    for index in (0, 2, 4):
        assert torch.equal(ours[index].weight, expected[index].weight)
    assert not ours[0].bias.any() and not ours[4].bias.any()  # biases zeroed
    assert torch.equal(ours[5].weight, torch.ones(5))  # norm layers untouched

"""Layers every part of the model builds from: a conv with an optional norm and ReLU, and the
norms a config names, and the one weight initialiser. The trunks (backbone.py, efficientnet_lite.py) and the heads import them
from here, so no model file imports another for a building block."""

from __future__ import annotations

from collections import OrderedDict

from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from .head_contract import DeclaresConvNorms


class ConvNorm(DeclaresConvNorms, nn.Sequential):
    """Conv (+ optional BatchNorm) (+ optional ReLU); the conv has a bias only without a norm."""

    def __init__(self, cin, cout, kernel, stride=1, norm="none", relu=False, eps=1e-5):
        layers = OrderedDict(
            conv=nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2, bias=norm == "none")
        )
        if norm != "none":
            layers["norm"] = make_norm(norm, cout, eps)
        if relu:
            layers["relu"] = nn.ReLU(inplace=True)
        super().__init__(layers)

    def conv_norm_pairs(self) -> list[tuple[str, str]]:
        """conv -> norm when the block has a norm."""
        return [("conv", "norm")] if "norm" in self._modules else []


def make_norm(kind: str, channels: int, eps: float = 1e-5) -> nn.Module:
    """"frozen_bn" for pretrained trunks, "bn" / "gn" (32 groups) for layers that learn."""
    if kind == "frozen_bn":
        return FrozenBatchNorm2d(channels, eps=eps)
    if kind == "bn":
        return nn.BatchNorm2d(channels, eps=eps)
    if kind == "gn":
        return nn.GroupNorm(min(32, channels), channels, eps=eps)
    raise ValueError(f"unknown norm '{kind}' (expected 'frozen_bn', 'bn' or 'gn')")


LAYERS = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)
FILLS = {
    # convs followed by a ReLU: He et al.'s fill on fan-out (Detectron's MSRAFill)
    "msra": lambda weight, std: nn.init.kaiming_normal_(weight, mode="fan_out", nonlinearity="relu"),
    # Caffe2's XavierFill, uniform with gain 1: FPN convs and fc layers
    "xavier": lambda weight, std: nn.init.kaiming_uniform_(weight, a=1),
    # output layers: small Gaussian weights so the first losses are near chance
    "normal": lambda weight, std: nn.init.normal_(weight, std=std),
}


def init_layers(module: nn.Module, fill: str, std: float = 0.01) -> None:
    """Fill the weights of every conv / deconv / linear layer in `module` (itself included) in
    module order, so a seed gives the same weights as before; biases become zero."""
    for layer in module.modules():
        if isinstance(layer, LAYERS):
            FILLS[fill](layer.weight, std)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)

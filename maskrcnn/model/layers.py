"""Layers every part of the model builds from: a conv with an optional norm and ReLU, and the
norms a config names. The trunks (backbone.py, efficientnet_lite.py) and the heads import them
from here, so no model file imports another for a building block."""

from __future__ import annotations

from collections import OrderedDict

from torch import nn
from torchvision.ops import FrozenBatchNorm2d


class ConvNorm(nn.Sequential):
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


def make_norm(kind: str, channels: int, eps: float = 1e-5) -> nn.Module:
    """"frozen_bn" for pretrained trunks, "bn" / "gn" (32 groups) for layers that learn."""
    if kind == "frozen_bn":
        return FrozenBatchNorm2d(channels, eps=eps)
    if kind == "bn":
        return nn.BatchNorm2d(channels, eps=eps)
    if kind == "gn":
        return nn.GroupNorm(min(32, channels), channels, eps=eps)
    raise ValueError(f"unknown norm '{kind}' (expected 'frozen_bn', 'bn' or 'gn')")

"""ResNet / ResNeXt trunk with FrozenBatchNorm, and the FPN that turns C2..C5 into P2..P6."""

from __future__ import annotations

from collections import OrderedDict
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet
from torchvision.ops import FrozenBatchNorm2d

from ..config import BackboneConfig


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


class ResNetTrunk(nn.Module):
    """torchvision's ResNet layout (conv1, bn1, layer1..4), returning C2..C5."""

    def __init__(self, cfg: BackboneConfig):
        super().__init__()
        eps = cfg.norm_eps if cfg.norm == "frozen_bn" else max(cfg.norm_eps, 1e-5)
        norm = partial(make_norm, cfg.norm, eps=eps)
        block, layers = _ARCH[cfg.depth]
        net = resnet.ResNet(
            block, layers, groups=cfg.groups, width_per_group=cfg.width_per_group, norm_layer=norm
        )
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            net.layer1, net.layer2, net.layer3, net.layer4
        )
        if cfg.stride_in_1x1:
            _move_stride_to_1x1(self)
        expansion = block.expansion
        self.out_channels = [64 * expansion * 2**i for i in range(4)]
        self.freeze(cfg.freeze_at)

    def freeze(self, freeze_at: int) -> None:
        """Stop gradients for the stem (1) and the first `freeze_at - 1` stages."""
        stages = [[self.conv1, self.bn1], self.layer1, self.layer2, self.layer3, self.layer4]
        for stage in stages[:freeze_at]:
            for module in stage if isinstance(stage, list) else [stage]:
                for p in module.parameters():
                    p.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c2 = self.layer1(x)
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        return [c2, c3, c4, c5]


_ARCH = {
    18: (resnet.BasicBlock, [2, 2, 2, 2]),
    34: (resnet.BasicBlock, [3, 4, 6, 3]),
    50: (resnet.Bottleneck, [3, 4, 6, 3]),
    101: (resnet.Bottleneck, [3, 4, 23, 3]),
    152: (resnet.Bottleneck, [3, 8, 36, 3]),
}


def _move_stride_to_1x1(trunk: ResNetTrunk) -> None:
    """Caffe-style (MSRA) bottlenecks downsample in the first 1x1 conv instead of the 3x3."""
    for layer in (trunk.layer2, trunk.layer3, trunk.layer4):
        block = layer[0]
        if isinstance(block, resnet.Bottleneck):
            block.conv1.stride, block.conv2.stride = block.conv2.stride, (1, 1)


def build_trunk(cfg: BackboneConfig) -> nn.Module:
    """The trunk named by cfg.arch; each has `out_channels` for C2..C5."""
    if cfg.arch == "resnet":
        return ResNetTrunk(cfg)
    if cfg.arch.startswith("efficientnet_lite"):
        from .efficientnet_lite import EfficientNetLiteTrunk  # it imports make_norm from here

        return EfficientNetLiteTrunk(cfg)
    raise ValueError(f"unknown model.backbone.arch '{cfg.arch}' (resnet or efficientnet_lite0..4)")


class FPN(nn.Module):
    """Feature Pyramid Network: lateral 1x1 + top-down nearest upsampling + 3x3 outputs,
    P6 = stride-2 subsampling of P5 (for the RPN only)."""

    def __init__(self, in_channels: list[int], channels: int, norm: str = "none", eps=1e-5):
        super().__init__()
        self.lateral = nn.ModuleList(ConvNorm(c, channels, 1, norm=norm, eps=eps) for c in in_channels)
        self.output = nn.ModuleList(
            ConvNorm(channels, channels, 3, norm=norm, eps=eps) for _ in in_channels
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, a=1)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        """[C2..C5] -> [P2..P6], each (B, channels, H/stride, W/stride)."""
        top = self.lateral[-1](feats[-1])
        outs = [self.output[-1](top)]
        for i in range(len(feats) - 2, -1, -1):
            lateral = self.lateral[i](feats[i])
            top = lateral + F.interpolate(top, size=lateral.shape[-2:], mode="nearest")
            outs.insert(0, self.output[i](top))
        outs.append(F.max_pool2d(outs[-1], kernel_size=1, stride=2))
        return outs


class Backbone(nn.Module):
    """Trunk + FPN: (B, 3, H, W) normalised images -> [P2, P3, P4, P5, P6]."""

    strides = (4, 8, 16, 32, 64)

    def __init__(self, cfg: BackboneConfig):
        super().__init__()
        self.trunk = build_trunk(cfg)
        self.fpn = FPN(self.trunk.out_channels, cfg.fpn_channels, cfg.fpn_norm, cfg.fpn_norm_eps)
        self.out_channels = cfg.fpn_channels
        self.channels_last = False  # set by the fast inference path

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        layout = torch.channels_last if self.channels_last else torch.contiguous_format
        x = x.to(dtype=next(self.trunk.parameters()).dtype, memory_format=layout)
        return self.fpn(self.trunk(x))

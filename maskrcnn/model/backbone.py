"""ResNet / ResNeXt trunk with FrozenBatchNorm, and the FPN that turns C2..C5 into P2..P6; or the
trunk cut after conv4 (C4, stride 16), whose conv5 runs per RoI (`res5_head.py`)."""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet

from ..config import BackboneConfig
from ..errors import ConfigError
from .efficientnet_lite import EfficientNetLiteTrunk
from .head_contract import DeclaresConvNorms
from .layers import ConvNorm, make_norm
from .layers import init_layers

KINDS = ("fpn", "c4")


def resnet_layers(cfg: BackboneConfig) -> resnet.ResNet:
    """torchvision's ResNet / ResNeXt for `cfg` (depth, groups, width, norm; caffe-style strides)."""
    eps = cfg.norm_eps if cfg.norm == "frozen_bn" else max(cfg.norm_eps, 1e-5)
    norm = partial(make_norm, cfg.norm, eps=eps)
    block, layers = _ARCH[cfg.depth]
    net = resnet.ResNet(block, layers, groups=cfg.groups, width_per_group=cfg.width_per_group, norm_layer=norm)
    if cfg.stride_in_1x1:
        _move_stride_to_1x1([net.layer2, net.layer3, net.layer4])
    return net


def resnet_block_pairs(blocks: nn.Module, prefix: str = "") -> list[tuple[str, str]]:
    """The conv -> norm pairs of torchvision's BasicBlock / Bottleneck blocks (an indexable
    sequence), named under `prefix`: conv1 -> bn1, conv2 -> bn2 (conv3 -> bn3), downsample.0 -> .1."""
    pairs = []
    for i, block in enumerate(blocks):
        pairs += [(f"{prefix}{i}.conv{k}", f"{prefix}{i}.bn{k}") for k in (1, 2, 3) if hasattr(block, f"conv{k}")]
        if block.downsample is not None:
            pairs.append((f"{prefix}{i}.downsample.0", f"{prefix}{i}.downsample.1"))
    return pairs


class ResNetTrunk(DeclaresConvNorms, nn.Module):
    """torchvision's ResNet layout (conv1, bn1, layer1..4), returning C2..C5 (C2..C4 for C4,
    whose layer4 is the RoI stage's res5)."""

    def __init__(self, cfg: BackboneConfig):
        super().__init__()
        net = resnet_layers(cfg)
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3 = net.layer1, net.layer2, net.layer3
        if cfg.kind != "c4":
            self.layer4 = net.layer4
        self.stages = ["layer1", "layer2", "layer3"] + (["layer4"] if cfg.kind != "c4" else [])
        expansion = _ARCH[cfg.depth][0].expansion
        self.out_channels = [64 * expansion * 2**i for i in range(len(self.stages))]
        self.freeze(cfg.freeze_at)

    def freeze(self, freeze_at: int) -> None:
        """Stop gradients for the stem (1) and the first `freeze_at - 1` stages."""
        stages = [[self.conv1, self.bn1]] + [[getattr(self, name)] for name in self.stages]
        for stage in stages[:freeze_at]:
            for module in stage:
                for p in module.parameters():
                    p.requires_grad_(False)

    def conv_norm_pairs(self) -> list[tuple[str, str]]:
        """The stem's conv1 -> bn1 and every block's pairs (`resnet_block_pairs`)."""
        return [("conv1", "bn1")] + [pair for name in self.stages for pair in resnet_block_pairs(getattr(self, name), f"{name}.")]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, H, W) images -> [C2, C3, C4(, C5)] at strides 4, 8, 16 (, 32)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        out = []
        for name in self.stages:
            x = getattr(self, name)(x)
            out.append(x)
        return out  # [C2, C3, C4(, C5)]


_ARCH = {
    18: (resnet.BasicBlock, [2, 2, 2, 2]),
    34: (resnet.BasicBlock, [3, 4, 6, 3]),
    50: (resnet.Bottleneck, [3, 4, 6, 3]),
    101: (resnet.Bottleneck, [3, 4, 23, 3]),
    152: (resnet.Bottleneck, [3, 8, 36, 3]),
}


def _move_stride_to_1x1(layers: list[nn.Module]) -> None:
    """Caffe-style (MSRA) bottlenecks downsample in the first 1x1 conv instead of the 3x3."""
    for layer in layers:
        block = layer[0]
        if isinstance(block, resnet.Bottleneck):
            block.conv1.stride, block.conv2.stride = block.conv2.stride, (1, 1)


def build_trunk(cfg: BackboneConfig) -> nn.Module:
    """The trunk named by cfg.arch; each has `out_channels` for C2..C5."""
    if cfg.arch == "resnet":
        return ResNetTrunk(cfg)
    if cfg.arch.startswith("efficientnet_lite"):
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
        init_layers(self, "xavier")

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        """[C2..C5] -> [P2..P6], each (B, channels, H/stride, W/stride)."""
        top = self.lateral[-1](feats[-1])
        outs = [self.output[-1](top)]
        for i in range(len(feats) - 2, -1, -1):
            lateral = self.lateral[i](feats[i])
            top = add_upsampled(lateral, top)
            outs.insert(0, self.output[i](top))
        outs.append(F.max_pool2d(outs[-1], kernel_size=1, stride=2))
        return outs


def add_upsampled(lateral: torch.Tensor, top: torch.Tensor) -> torch.Tensor:
    """lateral (B, C, H, W) + top (B, C, h, w) upsampled by nearest neighbour to (H, W). At
    exactly twice the size (always, for inputs padded to a multiple of the coarsest stride) each
    top pixel is added to its 2 x 2 block in place, as a broadcast: the same sums, without the
    upsampled copy or a new output; other sizes, channels-last maps and tracing interpolate."""
    (h, w), (big_h, big_w) = top.shape[-2:], lateral.shape[-2:]
    # channels-last maps (the bf16 path) broadcast slower than oneDNN's upsample and add
    if torch.jit.is_tracing() or (big_h, big_w) != (2 * h, 2 * w) or not lateral.is_contiguous():
        return lateral + F.interpolate(top, size=lateral.shape[-2:], mode="nearest")
    blocks = lateral.unflatten(-1, (w, 2)).unflatten(-3, (h, 2))  # (B, C, h, 2, w, 2) view
    blocks.add_(top[:, :, :, None, :, None])
    return lateral


class Backbone(nn.Module):
    """(B, 3, H, W) normalised images -> trunk + FPN [P2, P3, P4, P5, P6], or C4 [C4]."""

    def __init__(self, cfg: BackboneConfig):
        super().__init__()
        if cfg.kind not in KINDS:
            raise ConfigError(f"model.backbone.kind: unknown '{cfg.kind}' (expected one of {', '.join(KINDS)})")
        if cfg.kind == "c4" and cfg.arch != "resnet":
            raise ConfigError(f"model.backbone.kind: c4 needs a ResNet trunk (its conv5 runs per RoI), not '{cfg.arch}'")
        self.input_format = nn.Identity()  # a fast path's `InputFormat` (dtype, memory layout)
        self.trunk = build_trunk(cfg)
        if cfg.kind == "c4":
            self.fpn = None
            self.out_channels, self.strides = self.trunk.out_channels[-1], (16,)
        else:
            self.fpn = FPN(self.trunk.out_channels, cfg.fpn_channels, cfg.fpn_norm, cfg.fpn_norm_eps)
            self.out_channels, self.strides = cfg.fpn_channels, (4, 8, 16, 32, 64)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, H, W) normalised images -> [P2..P6] (B, fpn_channels, H / s, W / s) at strides
        4..64, or [C4] (B, C, H / 16, W / 16) for C4."""
        feats = self.trunk(self.input_format(x))
        return feats[-1:] if self.fpn is None else self.fpn(feats)

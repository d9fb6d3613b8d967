"""C4's shared RoI head (the paper's Fig. 4 left): ResNet's conv5 stage ("res5") run on each RoI.

RoIs are pooled 14 x 14 from the stride-16 C4 map; res5's first block has stride 2, so every RoI
leaves as 7 x 7 x 2048 (ResNet-50/101), which the box head averages and the mask head upsamples.
(The paper pools 7 x 7 and runs res5 at stride 1; detectron2 and the original Faster R-CNN C4
pool 14 x 14 with stride 2, the layout of released C4 weights. Both give 7 x 7 x 2048.)
"""

from __future__ import annotations

from torch import nn

from ..config import BackboneConfig
from .backbone import resnet_block_pairs, resnet_layers
from .head_contract import DeclaresConvNorms


class Res5Head(DeclaresConvNorms, nn.Sequential):
    """(N, C4 channels, 14, 14) pooled RoIs -> (N, 2048, 7, 7): the bottleneck blocks of conv5,
    built as the trunk's own layer4 would be (depth, ResNeXt groups, norm, caffe strides)."""

    def __init__(self, cfg: BackboneConfig):
        net = resnet_layers(cfg)
        super().__init__(*net.layer4)
        last = net.layer4[-1]
        self.out_channels = (last.conv3 if hasattr(last, "conv3") else last.conv2).out_channels

    def conv_norm_pairs(self) -> list[tuple[str, str]]:
        """Every block's pairs (`resnet_block_pairs`)."""
        return resnet_block_pairs(self)

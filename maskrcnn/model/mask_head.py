"""Mask branch: a small FCN per RoI predicting one m x m mask per class; its loss and inference."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import MaskHeadConfig
from ..ops.masks import mask_targets
from .backbone import ConvNorm
from .fast_inference import run_as


class MaskHead(nn.Module):
    """(N, C, 14, 14) -> features (N, D, 14, 14) and logits (N, K+1, 28, 28)."""

    def __init__(self, cfg: MaskHeadConfig, in_channels: int, num_classes: int):
        super().__init__()
        dims = [in_channels, *cfg.conv_dims]
        self.convs = nn.Sequential(
            *[ConvNorm(dims[i], dims[i + 1], 3, norm=cfg.norm, relu=True) for i in range(len(cfg.conv_dims))]
        )
        self.deconv = nn.ConvTranspose2d(dims[-1], dims[-1], 2, stride=2)
        self.logits = nn.Conv2d(dims[-1], num_classes, 1)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.deconv.weight.dtype)
        return run_as(self.logits, F.relu(self.deconv(self.convs(x))))


def mask_loss(
    logits: torch.Tensor,
    boxes: list[torch.Tensor],
    matched: list[torch.Tensor],
    labels: torch.Tensor,
    gt_masks: list[torch.Tensor],
) -> torch.Tensor:
    """Per-pixel sigmoid BCE on the GT class's mask only, averaged over positive RoIs' pixels.

    logits (P, K+1, M, M); per image positive boxes (Pi, 4) and their matched gt index (Pi,);
    labels (P,) GT class per RoI; gt_masks per image (Gi, H, W).
    """
    size = logits.shape[-1]
    targets = [mask_targets(m, b, i, size) for m, b, i in zip(gt_masks, boxes, matched)]
    targets = torch.cat(targets)  # (P, M, M)
    if targets.numel() == 0:
        return logits.sum() * 0
    picked = logits[torch.arange(len(labels), device=labels.device), labels]
    return F.binary_cross_entropy_with_logits(picked, targets)


def mask_probs(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(N, K+1, M, M) logits, (N,) predicted labels -> (N, M, M) probabilities of that class."""
    picked = logits[torch.arange(len(labels), device=labels.device), labels]
    return picked.sigmoid()

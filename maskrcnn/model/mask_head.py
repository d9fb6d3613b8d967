"""Mask branch: per RoI one m x m mask per class (or one for all), its targets, loss and inference.

`MaskHead` holds what every mask head shares (targets, the sigmoid or softmax loss, picking the
class's mask); a variant only builds its layers: `FCNMaskHead` (the paper's) and `MLPMaskHead`
(the fc head of the paper's Table 2e).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import MaskHeadConfig
from ..ops.masks import mask_targets
from ..structures import split_per_image
from .fast_mask_tail import MatmulMaskTail
from .head_contract import DeclaresOutputs, Handoff
from .layers import ConvNorm
from .layers import init_layers


class MaskHead(DeclaresOutputs, nn.Module):
    """RoI features (N, C, R, R) -> mask logits (N, K+1, M, M), or (N, 1, M, M) class-agnostic.

    Training: the positive RoIs' loss; their class's logits and GT crops are handed on (as
    `Handoff.mask_logits`, `.mask_targets`) to the MaskIoU head. Inference: adds `mask_probs`
    (D, M, M) of the detected class, and hands on its logits.
    """

    class_rows = 1  # rows of `logits` per class (a variant that lays them out otherwise says so)

    def __init__(self, cfg: MaskHeadConfig, num_classes: int):
        super().__init__()
        self.cfg = cfg
        self.resolution = cfg.resolution
        self.out_channels = 1 if cfg.class_agnostic else num_classes

    def output_layers(self) -> dict[str, int | None]:
        """`logits`: `class_rows` rows per class, or None for a class-agnostic head (one mask)."""
        return {"logits": None if self.cfg.class_agnostic else self.class_rows}

    def losses(self, x: torch.Tensor, rois, targets: list[dict], handoff: Handoff) -> dict[str, torch.Tensor]:
        """Positive RoIs' features (P, C, R, R) and their `SampledRoIs` -> {"loss_mask"}; hands on
        their class's logits (P, M, M) and GT crops (P, M, M)."""
        logits = self(x)  # (P, K+1 | 1, M, M)
        crops = [mask_targets(t["masks"], b, m, self.resolution, self.cfg.aligned) for t, b, m in zip(targets, rois.boxes, rois.matched)]
        crops = torch.cat(crops)  # (P, M, M) GT cropped to each RoI, in [0, 1]
        labels = torch.cat(rois.labels)
        picked = self.pick(logits, labels)
        handoff.mask_logits, handoff.mask_targets = picked, crops
        if self.cfg.loss == "softmax":
            loss = softmax_mask_loss(logits, labels, crops)
        else:
            loss = sigmoid_mask_loss(picked, crops)
        return {"loss_mask": loss * self.cfg.loss_weight}

    def predict(self, x: torch.Tensor, detections: list[dict], handoff: Handoff) -> None:
        """Detections' features (D, C, R, R) -> adds `mask_probs` (Di, M, M) in [0, 1] per image;
        hands on the detected class's logits (D, M, M)."""
        labels = torch.cat([d["labels"] for d in detections])
        picked = self.class_logits(x, labels)  # (D, M, M)
        handoff.mask_logits = picked
        for det, probs in zip(detections, split_per_image(picked.sigmoid(), [d["labels"].shape[0] for d in detections])):
            det["mask_probs"] = probs

    def class_logits(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """RoI features (N, C, R, R), (N,) classes -> (N, M, M) logits of each RoI's class."""
        return self.pick(self(x), labels)

    def pick(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(N, K+1 | 1, M, M) logits, (N,) classes -> (N, M, M) logits, positive where a pixel
        belongs to the class's mask. Softmax masks: the class's logit minus the largest other
        one, positive where the class wins the per-pixel softmax (the mask is the pixels
        labelled with the class, as a per-RoI FCN labels them; a probability above 0.5 instead
        would also demand that the class beat all the others together)."""
        if self.cfg.class_agnostic:
            return logits[:, 0]
        index = labels[:, None, None, None].expand(-1, 1, *logits.shape[-2:])  # (N, 1, M, M)
        own = logits.gather(1, index)[:, 0]
        if self.cfg.loss != "softmax":
            return own
        return own - logits.scatter(1, index, float("-inf")).amax(1)


def sigmoid_mask_loss(picked: torch.Tensor, crops: torch.Tensor) -> torch.Tensor:
    """Per-pixel binary cross-entropy of the GT class's mask only (the paper's L_mask), averaged
    over the positive RoIs' pixels. picked (P, M, M) logits, crops (P, M, M) targets in [0, 1]."""
    if crops.numel() == 0:
        return picked.sum() * 0
    return F.binary_cross_entropy_with_logits(picked, crops)


def softmax_mask_loss(logits: torch.Tensor, labels: torch.Tensor, crops: torch.Tensor) -> torch.Tensor:
    """The paper's Table 2b alternative: a (K+1)-way softmax per pixel, whose target is the RoI's
    class where the GT crop is >= 0.5 and background (0) elsewhere. logits (P, K+1, M, M)."""
    if crops.numel() == 0:
        return logits.sum() * 0
    target = torch.where(crops >= 0.5, labels[:, None, None], 0)  # (P, M, M)
    return F.cross_entropy(logits, target)


class FCNMaskHead(MaskHead):
    """The paper's FCN: 3x3 convs at the RoI resolution R, a deconv with kernel and stride M / R
    (2x2 / 2 for 14 -> 28), ReLU, 1x1 conv to the class logits."""

    def __init__(self, cfg: MaskHeadConfig, in_channels: int, in_resolution: int, num_classes: int):
        super().__init__(cfg, num_classes)
        dims = [in_channels, *cfg.conv_dims]
        self.convs = nn.Sequential(
            *[ConvNorm(dims[i], dims[i + 1], 3, norm=cfg.norm, relu=True) for i in range(len(cfg.conv_dims))]
        )
        factor = cfg.resolution // in_resolution
        deconv_dim = cfg.deconv_dim or dims[-1]
        self.deconv = nn.ConvTranspose2d(dims[-1], deconv_dim, factor, stride=factor)
        self.logits = nn.Conv2d(deconv_dim, self.out_channels, 1)
        init_layers(self, "msra")
        self.fast_tail = None  # the fp32 fast path's `MatmulMaskTail` (`use_fast_tail`), at inference

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, R, R) -> (N, K+1 | 1, M, M) mask logits."""
        return self.logits(F.relu(self.deconv(self.convs(x)), inplace=True))

    def use_fast_tail(self) -> None:
        """Inference only: end in `MatmulMaskTail` (2.8x faster, the same sums in another order)
        where it computes what the layers do: sigmoid masks, a deconv with kernel = stride."""
        if self.cfg.loss != "softmax" and MatmulMaskTail.fits(self.deconv, self.logits):
            self.fast_tail = MatmulMaskTail(self.deconv, self.logits)

    def class_logits(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """As `MaskHead.class_logits`; through `fast_tail` when the fp32 fast path set one."""
        if self.fast_tail is None or torch.jit.is_tracing():
            return super().class_logits(x, labels)
        return self.fast_tail(self.convs(x), labels if self.out_channels > 1 else torch.zeros_like(labels))


class MLPMaskHead(MaskHead):
    """The paper's Table 2e MLP: flatten the RoI features, fc layers with ReLU, and one fc to
    every class's M x M logits."""

    def __init__(self, cfg: MaskHeadConfig, in_channels: int, in_resolution: int, num_classes: int):
        super().__init__(cfg, num_classes)
        dims = [in_channels * in_resolution**2, *cfg.mlp_dims]
        self.fcs = nn.ModuleList(nn.Linear(dims[i], dims[i + 1]) for i in range(len(cfg.mlp_dims)))
        self.logits = nn.Linear(dims[-1], self.out_channels * cfg.resolution**2)
        self.class_rows = cfg.resolution**2  # each class's M x M logits, row-major
        init_layers(self.fcs, "xavier")
        init_layers(self.logits, "normal", std=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, R, R) -> (N, K+1 | 1, M, M) mask logits."""
        x = x.flatten(1)
        for fc in self.fcs:
            x = F.relu(fc(x))
        m = self.resolution
        return self.logits(x).view(x.shape[0], self.out_channels, m, m)

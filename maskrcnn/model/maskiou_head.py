"""Mask Scoring R-CNN (Huang et al. 2019): a head that regresses each predicted mask's IoU with its
ground truth, its training targets and loss, and the rescored mask confidence it yields."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import MaskIoUHeadConfig
from ..structures import split_per_image
from .head_contract import DeclaresOutputs, Handoff
from .layers import init_layers


class MaskIoUHead(DeclaresOutputs, nn.Module):
    """RoI mask features (N, C, R, R) + predicted mask logits (N, M, M) -> IoU per class (N, K+1).

    The mask is squashed to probabilities and max-pooled (M / R)x(M / R) to the features'
    resolution, so the head sees where the mask branch put the object next to what the RoI looks
    like. It reads the mask head's logits and GT crops from the `Handoff` (see `MaskHead`): training
    returns its loss, inference adds `mask_scores` (D,) = box score x predicted IoU.
    """

    def __init__(self, cfg: MaskIoUHeadConfig, in_channels: int, num_classes: int, resolution: int = 14,
                 mask_resolution: int = 28):
        super().__init__()
        self.cfg = cfg
        self.mask_pool = mask_resolution // resolution
        dims = [in_channels + 1] + [cfg.conv_dim] * 4
        # The last conv halves the resolution (14 -> 7) before the fcs, as in the paper.
        self.convs = nn.ModuleList(
            nn.Conv2d(dims[i], dims[i + 1], 3, stride=2 if i == 3 else 1, padding=1) for i in range(4)
        )
        fc_in = cfg.conv_dim * ((resolution + 1) // 2) ** 2
        self.fcs = nn.ModuleList([nn.Linear(fc_in, cfg.fc_dim), nn.Linear(cfg.fc_dim, cfg.fc_dim)])
        self.iou = nn.Linear(cfg.fc_dim, num_classes)
        init_layers(self.convs, "msra")
        init_layers(self.fcs, "xavier")
        init_layers(self.iou, "normal", std=0.01)

    def output_layers(self) -> dict[str, int]:
        """`iou`: one predicted IoU row per class."""
        return {"iou": 1}

    def forward(self, features: torch.Tensor, mask_logits: torch.Tensor) -> torch.Tensor:
        """Features (N, C, R, R), mask logits (N, M, M) -> predicted mask IoU per class (N, K+1)."""
        mask = F.max_pool2d(mask_logits.sigmoid()[:, None], self.mask_pool, self.mask_pool)  # (N, 1, R, R)
        x = torch.cat([features, mask.to(features.dtype)], dim=1)  # (N, C + 1, R, R)
        for conv in self.convs:
            x = F.relu(conv(x))
        x = x.flatten(1)
        for fc in self.fcs:
            x = F.relu(fc(x))
        return self.iou(x)

    def losses(self, x: torch.Tensor, rois, targets: list[dict], handoff: Handoff) -> dict[str, torch.Tensor]:
        """Positive RoIs' mask features (P, C, R, R) -> {"loss_maskiou"}."""
        logits, crops = handoff.mask_logits, handoff.mask_targets  # (P, M, M) each
        fractions = torch.cat([area_inside_fraction(t["masks"], b, m)
                               for t, b, m in zip(targets, rois.boxes, rois.matched)])
        iou_targets = maskiou_targets(logits, crops.to(logits.dtype), fractions.to(logits.dtype))
        loss = maskiou_loss(self(x, logits), torch.cat(rois.labels), iou_targets)
        return {"loss_maskiou": loss * self.cfg.loss_weight}

    def predict(self, x: torch.Tensor, detections: list[dict], handoff: Handoff) -> None:
        """Detections' features (D, C, R, R) -> adds `mask_scores` (Di,) = box score x predicted
        IoU of the detected class, per image."""
        labels = torch.cat([d["labels"] for d in detections])
        iou_pred = self(x, handoff.mask_logits)  # (D, K+1)
        scores = mask_scores(iou_pred, labels, torch.cat([d["scores"] for d in detections]))
        for det, s in zip(detections, split_per_image(scores, [d["labels"].shape[0] for d in detections])):
            det["mask_scores"] = s


def area_inside_fraction(
    gt_masks: torch.Tensor, boxes: torch.Tensor, matched: torch.Tensor
) -> torch.Tensor:
    """Fraction of each matched GT instance's pixels that lie inside its box.

    gt_masks (G, H, W), boxes (P, 4) xyxy in mask pixels, matched (P,) -> (P,) in [0, 1]; 0 for an
    empty GT mask. Box sums come from an integral image, so there is no loop over RoIs.
    """
    h, w = gt_masks.shape[-2:]
    # int32: exact pixel counts at half the memory of int64 (one map per GT instance)
    integral = gt_masks.to(torch.int32).cumsum(1, dtype=torch.int32).cumsum(2, dtype=torch.int32)
    integral = F.pad(integral, (1, 0, 1, 0))  # (G, H+1, W+1)
    # `mask_targets` samples pixel i at coordinate i (RoIAlign, aligned=False), so the same
    # convention decides what is inside: x1 <= i <= x2.
    lo = torch.ceil(boxes[:, :2]).long()
    hi = torch.floor(boxes[:, 2:]).long() + 1
    x1, x2 = lo[:, 0].clamp(0, w), hi[:, 0].clamp(0, w)
    y1, y2 = lo[:, 1].clamp(0, h), hi[:, 1].clamp(0, h)
    x2, y2 = torch.maximum(x1, x2), torch.maximum(y1, y2)
    s, g = integral, matched
    inside = s[g, y2, x2] - s[g, y1, x2] - s[g, y2, x1] + s[g, y1, x1]
    total = s[g, h, w]
    return inside.to(boxes.dtype) / total.clamp(min=1).to(boxes.dtype)


def maskiou_targets(
    mask_logits: torch.Tensor, mask_targets: torch.Tensor, inside_fraction: torch.Tensor
) -> torch.Tensor:
    """IoU of each binarised predicted mask with its whole GT instance.

    mask_logits (P, M, M) of the GT class, mask_targets (P, M, M) GT cropped to the RoI,
    inside_fraction (P,) share of the instance inside the RoI -> (P,). The overlap can only be
    measured inside the RoI, but the GT's full area is its in-RoI area / inside_fraction, so an
    instance cut by its proposal is not mistaken for a perfectly covered one.
    """
    pred = (mask_logits > 0).to(mask_targets.dtype)  # sigmoid > 0.5
    gt = (mask_targets >= 0.5).to(mask_targets.dtype)
    pred_area = pred.sum((1, 2))
    overlap = (pred * gt).sum((1, 2))
    gt_full_area = gt.sum((1, 2)) / inside_fraction.clamp(min=1e-6)
    return overlap / (pred_area + gt_full_area - overlap).clamp(min=1e-6)


def maskiou_loss(iou_pred: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean squared error of the GT class's predicted IoU over positive RoIs.

    iou_pred (P, K+1), labels (P,), targets (P,). As in mmdetection, the gradient also reaches
    the mask branch and the RoI features through the head's inputs (nothing is detached).
    """
    if len(labels) == 0:
        return iou_pred.sum() * 0
    picked = iou_pred.gather(1, labels[:, None])[:, 0]
    return F.mse_loss(picked, targets)


def mask_scores(iou_pred: torch.Tensor, labels: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """Rescored mask confidence: box class score x predicted IoU of the predicted class. (D,)"""
    return scores * iou_pred.gather(1, labels[:, None])[:, 0]

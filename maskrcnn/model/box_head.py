"""Box branch: RoI features -> class scores + per-class box deltas; its targets, loss and detections."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import BoxHeadConfig
from ..ops.boxes import BoxCoder, clip_boxes, nms_per_image, nonempty, smooth_l1_sum
from ..structures import BatchedBoxes, sizes_tensor
from .federated_loss import class_weights, federated_classes, federated_loss
from .fast_variants import PixelRowsFlatten, pixel_rows_fc
from .head_contract import DeclaresOutputs
from .layers import ConvNorm
from .layers import init_layers

BODIES = {"2fc": (0, 2), "4conv1fc": (4, 1), "avgpool": (0, 0)}  # (3x3 convs, fcs)


class BoxHead(DeclaresOutputs, nn.Module):
    """(N, C, R, R) RoI features -> class logits (N, K+1) and box deltas (N, 4 (K+1)); label 0 is
    background. Body: "2fc" (v1), "4conv1fc" (v2) or "avgpool" (C4: the mean of res5's output)."""

    def __init__(self, cfg: BoxHeadConfig, in_channels: int, in_resolution: int, num_classes: int):
        super().__init__()
        self.cfg = cfg
        num_convs, num_fcs = BODIES[cfg.head]
        self.convs = nn.Sequential(
            *[
                ConvNorm(in_channels if i == 0 else cfg.conv_dim, cfg.conv_dim, 3, norm=cfg.norm, relu=True)
                for i in range(num_convs)
            ]
        )
        channels = cfg.conv_dim if num_convs else in_channels
        dim = channels * in_resolution**2 if num_fcs else channels
        self.flatten = nn.Flatten()  # (N, C, R, R) -> (N, C R R) before the fcs
        self.fcs = nn.ModuleList(nn.Linear(dim if i == 0 else cfg.fc_dim, cfg.fc_dim) for i in range(num_fcs))
        out_dim = cfg.fc_dim if num_fcs else channels
        self.cls_score = nn.Linear(out_dim, num_classes)
        self.bbox_pred = nn.Linear(out_dim, num_classes * 4)
        self.coder = BoxCoder(cfg.box_weights)
        # the federated loss draws negative classes by frequency (set_class_frequencies)
        self.register_buffer("class_weights", torch.ones(num_classes - 1), persistent=False)
        init_layers(self.convs, "msra")
        init_layers(self.cls_score, "normal", std=0.01)
        init_layers(self.bbox_pred, "normal", std=0.001)

    def output_layers(self) -> dict[str, int]:
        """Class scores: 1 row per class; box deltas: 4 rows (dx, dy, dw, dh) per class."""
        return {"cls_score": 1, "bbox_pred": 4}

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, C, R, R) RoI features -> class logits (N, K+1), box deltas (N, 4 (K+1))."""
        x = self.features(x)
        return self.cls_score(x), self.bbox_pred(x)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, R, R) -> (N, D): what the class and box layers read."""
        x = self.convs(x)
        x = self.flatten(x) if len(self.fcs) else x.mean((2, 3))
        for fc in self.fcs:
            x = F.relu(fc(x))
        return x

    def read_pixel_rows(self, resolution: int) -> None:
        """Inference only, after a channels-last pooler (`GatherRoIAlign`): a head of fcs reads the
        (N, C, R, R) RoI features as they lie, (R, R, C) rows (`PixelRowsFlatten`, a view instead
        of a copy), its first fc's columns permuted to match. Heads with convs keep `flatten`."""
        if len(self.convs) or not len(self.fcs):
            return
        pixel_rows_fc(self.fcs[0], self.fcs[0].in_features // resolution**2, resolution)
        self.flatten = PixelRowsFlatten()

    def set_class_frequencies(self, image_counts: torch.Tensor) -> None:
        """(K,) training images holding each class -> the federated loss's sampling weights."""
        self.class_weights.copy_(class_weights(image_counts).to(self.class_weights))

    def losses(self, x: torch.Tensor, rois, targets: list[dict]) -> dict[str, torch.Tensor]:
        """Sampled RoIs' features (S, C, R, R) and their `SampledRoIs` -> weighted losses."""
        logits, deltas = self(x)
        box_targets = []
        for boxes, matched, target in zip(rois.boxes, rois.matched, targets):
            gt = target["boxes"][matched] if len(target["boxes"]) else boxes
            box_targets.append(self.coder.encode(gt, boxes))  # (Si, 4)
        labels = torch.cat(rois.labels)
        losses = box_losses(logits, deltas, labels, torch.cat(box_targets), self.cfg.smooth_l1_beta)
        if self.cfg.classifier == "sigmoid":
            losses["loss_classifier"] = federated_loss(logits, labels, self._counted_classes(labels, targets))
        return {k: v * self.cfg.loss_weight for k, v in losses.items()}

    def _counted_classes(self, labels: torch.Tensor, targets: list[dict]) -> torch.Tensor:
        """Every class, or with federated_classes the batch's and negatives drawn by frequency
        (seeded by the batch's first image, as the rest of the model's sampling)."""
        k = len(self.class_weights)
        if self.cfg.federated_classes <= 0:
            return torch.arange(1, k + 1, device=labels.device)
        gen = torch.Generator().manual_seed(int(targets[0]["seed"])) if targets and "seed" in targets[0] else None
        return federated_classes(labels, self.class_weights.cpu(), self.cfg.federated_classes, gen)

    def predict(self, x: torch.Tensor, proposals: list[torch.Tensor], image_sizes) -> list[dict]:
        """Proposals' features (N, C, R, R) -> per image {"boxes" (D, 4), "scores" (D,), "labels" (D,)};
        for a traced batch (`BatchedBoxes` proposals) one dict of every image's, with "batch_index"."""
        logits, deltas = self(x)
        traced = isinstance(proposals, BatchedBoxes)
        sizes = sizes_tensor(image_sizes, x.device)  # (B, 2)
        dets = detect_boxes(logits, deltas, proposals if traced else BatchedBoxes.from_list(proposals), sizes,
                            self.coder, self.cfg)  # fmt: skip
        if traced:
            return [dets]
        counts = BatchedBoxes(dets["boxes"], dets.pop("batch_index")).counts(len(proposals))
        per_field = {name: value.split(counts) for name, value in dets.items()}
        return [dict(zip(per_field, fields)) for fields in zip(*per_field.values())]


def box_losses(
    logits: torch.Tensor,
    deltas: torch.Tensor,
    labels: torch.Tensor,
    box_targets: torch.Tensor,
    beta: float,
) -> dict[str, torch.Tensor]:
    """Softmax CE over all sampled RoIs + smooth-L1 of the GT class's deltas on positives,
    normalised by the number of sampled RoIs. logits (N, K+1), deltas (N, 4(K+1)), labels (N,).
    (A sigmoid classifier replaces the CE: BoxHead.losses.)"""
    cls_loss = F.cross_entropy(logits, labels)
    pos = torch.where(labels > 0)[0]
    deltas = deltas.reshape(len(deltas), -1, 4)[pos, labels[pos]]  # (P, 4)
    box_loss = smooth_l1_sum(deltas, box_targets[pos], beta) / max(labels.numel(), 1)
    return {"loss_classifier": cls_loss, "loss_box_reg": box_loss}


def class_scores(logits: torch.Tensor, classifier: str) -> torch.Tensor:
    """(N, K+1) logits -> (N, K+1) probabilities: a softmax over background and the classes, or
    per-class sigmoids (column 0, unused by a sigmoid classifier, then 0)."""
    if classifier == "sigmoid":
        return torch.cat([torch.zeros_like(logits[:, :1]), logits[:, 1:].sigmoid()], dim=1)
    return F.softmax(logits, -1)


def detect_boxes(
    logits: torch.Tensor,
    deltas: torch.Tensor,
    proposals: BatchedBoxes,
    image_sizes: torch.Tensor,
    coder: BoxCoder,
    cfg: BoxHeadConfig,
) -> dict[str, torch.Tensor]:
    """Decode per-class boxes, clip, drop background / low scores / tiny boxes, per-class NMS per
    image, keep each image's best `detections_per_img`. logits (N, K+1), deltas (N, 4(K+1)),
    image_sizes (B, 2) -> every image's detections in one dict, image by image, each best first:
    "boxes" (D, 4), "scores" (D,), "labels" (D,), "batch_index" (D,) the image of each."""
    num_classes = logits.shape[1]
    sizes = image_sizes[proposals.batch_index]  # (N, 2)
    h, w = (sizes[:, i, None, None] for i in range(2))  # (N, 1, 1)
    boxes = clip_boxes(coder.decode(deltas, proposals.boxes), (h, w))[:, 1:]  # (N, K, 4)
    scores = class_scores(logits, cfg.classifier)[:, 1:]  # (N, K)
    labels = torch.arange(1, num_classes, device=logits.device).expand_as(scores)
    images = proposals.batch_index[:, None].expand_as(scores)
    keep = (scores > cfg.score_thresh) & nonempty(boxes, cfg.min_box_size, cfg.min_box_strict)
    boxes, scores, labels, images = boxes[keep], scores[keep], labels[keep], images[keep]
    # labels (not labels - 1) as NMS groups: torchvision's, whose coordinate offsets depend on them
    keep = nms_per_image(boxes, scores, labels, images, image_sizes.shape[0], num_classes, cfg.nms_thresh,
                         cfg.detections_per_img)  # fmt: skip
    return {"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep], "batch_index": images[keep]}

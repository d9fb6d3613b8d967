"""The RoI stage as a thin frame: sample RoIs once (training), pick the positives once, pool, and
call each enabled head, which owns its targets, loss and inference (box_head.py, mask_head.py,
maskiou_head.py, keypoint_head.py).

FPN and C4 differ only in what a head reads: FPN pools each head's resolution from P2..P5;
C4 pools 14 x 14 from its one map and runs the shared res5 head (res5_head.py) once per RoI.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..config import ModelConfig
from ..errors import ConfigError
from ..ops.boxes import Matcher, match_boxes, sample_balanced
from ..ops.poolers import POOLERS, RoIPooler
from ..structures import BatchedBoxes
from .box_head import BODIES, BoxHead
from .head_contract import Handoff
from .keypoint_head import KeypointHead
from .mask_head import FCNMaskHead, MLPMaskHead
from .maskiou_head import MaskIoUHead
from .res5_head import Res5Head

MASK_HEADS = {"fcn": FCNMaskHead, "mlp": MLPMaskHead}  # model.mask.head -> its class

INSTANCE_HEADS = ("mask", "maskiou", "keypoint")  # run in this order on positives / detections


@dataclass
class SampledRoIs:
    """RoIs of a batch with their ground truth, per image."""

    boxes: list[torch.Tensor]  # (Si, 4) xyxy
    labels: list[torch.Tensor]  # (Si,) class, 0 = background
    matched: list[torch.Tensor]  # (Si,) index of the matched GT instance (0 for background)

    def positives(self) -> tuple[SampledRoIs, torch.Tensor]:
        """The foreground RoIs, and their rows (P,) in the concatenation of all images' RoIs."""
        keep = [torch.where(labels > 0)[0] for labels in self.labels]
        starts = torch.tensor([0] + [len(b) for b in self.boxes[:-1]]).cumsum(0).tolist()
        rows = torch.cat([k + s for k, s in zip(keep, starts)])
        pick = [[x[k] for x, k in zip(field, keep)] for field in (self.boxes, self.labels, self.matched)]
        return SampledRoIs(*pick), rows


class RoIHeads(nn.Module):
    """The RoI stage: pooler, box head and the enabled instance heads (mask, MaskIoU,
    keypoint), and C4's shared res5. Training: sample RoIs, losses; inference: detections."""
    def __init__(self, cfg: ModelConfig, channels: int):
        super().__init__()
        check_roi_config(cfg)
        self.cfg = cfg
        box, align = cfg.box, cfg.roi_align
        self.matcher = Matcher(box.fg_iou_thresh, box.bg_iou_thresh, allow_low_quality=False)
        levels = (4, 4) if cfg.backbone.kind == "c4" else (2, 5)  # C4: one map at stride 16
        self.pooler = RoIPooler(align.sampling_ratio, align.aligned, *levels, align.canonical_scale,
                                align.canonical_level, kind=cfg.roi_pooler)
        # what each head pools, and the (channels, size) of what it reads
        self.resolutions = {"box": box.pooler_resolution, "mask": cfg.mask.pooler_resolution,
                            "maskiou": cfg.mask.pooler_resolution, "keypoint": cfg.keypoint.pooler_resolution}
        sizes = dict(self.resolutions)
        self.res5 = None
        if cfg.backbone.kind == "c4":
            self.res5 = Res5Head(cfg.backbone)
            channels = self.res5.out_channels
            self.resolutions = dict.fromkeys(self.resolutions, box.pooler_resolution)
            sizes = dict.fromkeys(sizes, box.pooler_resolution // 2)  # res5 halves it
        self.box_head = BoxHead(box, channels, sizes["box"], cfg.num_classes)
        if cfg.mask.enabled:
            self.mask_head = MASK_HEADS[cfg.mask.head](cfg.mask, channels, sizes["mask"], cfg.num_classes)
        if cfg.maskiou.enabled:
            self.maskiou_head = MaskIoUHead(cfg.maskiou, channels, cfg.num_classes, sizes["mask"], cfg.mask.resolution)
        if cfg.keypoint.enabled:
            self.keypoint_head = KeypointHead(cfg.keypoint, channels)

    def forward(self, features, proposals, image_sizes, targets=None, generators=None):
        """features [P2..P5] or [C4]; proposals per image (Ni, 4) -> (detections, losses).

        Detections per image: dict with boxes (D, 4), scores (D,), labels (D,) and what the
        instance heads add: mask_probs (D, M, M), mask_scores (D,), keypoint_heatmaps (D, K, 56, 56).
        """
        if self.training:
            return [], self._losses(features, proposals, targets, generators)
        return self._detect(features, proposals, image_sizes), {}

    def instance_heads(self):
        """(name, head) of the enabled heads that run on positives / detections, in order."""
        return [(name, getattr(self, f"{name}_head")) for name in INSTANCE_HEADS if hasattr(self, f"{name}_head")]

    def roi_features(self, features, boxes: list[torch.Tensor] | BatchedBoxes, resolution: int) -> torch.Tensor:
        """What the heads read for per-image boxes: (N, C, R, R) pooled, or res5's (N, 2048, R/2, R/2)."""
        x = self.pooler(features, boxes, resolution)
        return x if self.res5 is None else self.res5(x)

    def _losses(self, features, proposals, targets, generators) -> dict[str, torch.Tensor]:
        rois = self.sample(proposals, targets, generators)
        box_x = self.roi_features(features, rois.boxes, self.resolutions["box"])
        losses = self.box_head.losses(box_x, rois, targets)
        pos, rows = rois.positives()
        # features per pooled resolution, read by every head that pools alike
        pooled = {self.resolutions["box"]: box_x[rows]} if self.res5 is not None else {}
        handoff = Handoff()
        for name, head in self.instance_heads():
            r = self.resolutions[name]
            if r not in pooled:
                pooled[r] = self.roi_features(features, pos.boxes, r)
            losses.update(head.losses(pooled[r], pos, targets, handoff))
        return losses

    def _detect(self, features, proposals, image_sizes) -> list[dict]:
        return self.predict_instances(features, self.detect_boxes(features, proposals, image_sizes))

    def detect_boxes(self, features, proposals, image_sizes) -> list[dict]:
        """The box head's detections: per image {"boxes" (D, 4), "scores" (D,), "labels" (D,)}."""
        box_x = self.roi_features(features, proposals, self.resolutions["box"])
        return self.box_head.predict(box_x, proposals, image_sizes)

    def predict_instances(self, features, detections: list[dict]) -> list[dict]:
        """The instance heads (mask, MaskIoU, keypoint) on given detections: each adds its fields
        (mask_probs, mask_scores, keypoint_heatmaps) to the per-image dicts, which are returned."""
        boxes = [d["boxes"] for d in detections]
        if "batch_index" in detections[0]:  # a traced batch
            boxes = BatchedBoxes(boxes[0], detections[0]["batch_index"])
        pooled, handoff = {}, Handoff()
        for name, head in self.instance_heads():
            r = self.resolutions[name]
            if r not in pooled:
                pooled[r] = self.roi_features(features, boxes, r)
            head.predict(pooled[r], detections, handoff)
        return detections

    def sample(self, proposals, targets, generators) -> SampledRoIs:
        """GT boxes join the proposals; match at IoU 0.5; sample 1:3 positives:negatives."""
        box_cfg = self.cfg.box
        out = SampledRoIs([], [], [])
        gens = generators or [None] * len(proposals)
        for props, target, gen in zip(proposals, targets, gens):
            gt_boxes, gt_labels = target["boxes"], target["labels"]
            props = torch.cat([props, gt_boxes])
            matches = match_boxes(self.matcher, gt_boxes, props)
            matched = matches.clamp(min=0)
            labels = gt_labels[matched] if len(gt_boxes) else torch.zeros_like(matches)
            labels = torch.where(matches == Matcher.BELOW_LOW, 0, labels)
            labels = torch.where(matches == Matcher.BETWEEN, -1, labels)
            pos, neg = sample_balanced(labels, box_cfg.batch_size_per_image, box_cfg.positive_fraction, gen)
            keep = torch.where(pos | neg)[0]
            out.boxes.append(props[keep])
            out.labels.append(labels[keep])
            out.matched.append(matched[keep])
        return out


def check_roi_config(cfg: ModelConfig) -> None:
    """Combinations of RoI-stage fields that cannot be built, as one-line ConfigErrors."""
    mask, c4 = cfg.mask, cfg.backbone.kind == "c4"
    choices = {"model.roi_pooler": (cfg.roi_pooler, POOLERS), "model.box.head": (cfg.box.head, tuple(BODIES)),
               "model.mask.head": (mask.head, tuple(MASK_HEADS)), "model.mask.loss": (mask.loss, ("sigmoid", "softmax"))}
    for key, (value, allowed) in choices.items():
        if value not in allowed:
            raise ConfigError(f"{key}: unknown '{value}' (expected one of {', '.join(allowed)})")
    if cfg.maskiou.enabled and not mask.enabled:
        raise ConfigError("model.maskiou.enabled needs model.mask.enabled: it scores the mask head's masks")
    if cfg.box.classifier not in ("softmax", "sigmoid"):
        raise ConfigError(f"model.box.classifier: unknown '{cfg.box.classifier}' (expected softmax or sigmoid)")
    if cfg.box.federated_classes > 0 and cfg.box.classifier != "sigmoid":
        raise ConfigError("model.box.federated_classes needs model.box.classifier=sigmoid: the federated loss is per class")
    if mask.class_agnostic and mask.loss == "softmax":
        raise ConfigError("model.mask.class_agnostic needs model.mask.loss=sigmoid: a softmax over one class is constant")
    if c4 and cfg.keypoint.enabled:
        raise ConfigError("model.keypoint.enabled: the C4 model has no keypoint head; use an FPN preset")
    mask_input = cfg.box.pooler_resolution // 2 if c4 else mask.pooler_resolution
    if mask.enabled and mask.head == "fcn" and mask.resolution % mask_input:
        raise ConfigError(f"model.mask.resolution {mask.resolution} must be a multiple of the mask head's "
                          f"input size {mask_input} (the deconv upsamples by a whole factor)")

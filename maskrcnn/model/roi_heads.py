"""Second stage: sample RoIs (training), pool them, and run the box and mask heads."""

from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from ..errors import ConfigError
from ..ops.boxes import BoxCoder, Matcher, match_boxes, sample_balanced
from ..ops.poolers import MultiLevelRoIAlign
from .box_head import BoxHead, BoxPredictor, box_losses, detect_boxes
from .keypoint_head import KeypointHead, decode_keypoints, keypoint_loss
from .mask_head import MaskHead, mask_loss, mask_probs
from .maskiou_head import MaskIoUHead, mask_scores, maskiou_loss, maskiou_train_targets


class RoIHeads(nn.Module):
    def __init__(self, cfg: ModelConfig, channels: int):
        super().__init__()
        self.cfg = cfg
        align = cfg.roi_align

        def pooler(resolution):
            return MultiLevelRoIAlign(
                resolution, align.sampling_ratio, align.aligned,
                canonical_scale=align.canonical_scale, canonical_level=align.canonical_level,
            )  # fmt: skip

        self.box_pooler = pooler(cfg.box.pooler_resolution)
        self.box_head = BoxHead(cfg.box, channels)
        self.box_predictor = BoxPredictor(cfg.box.fc_dim, cfg.num_classes)
        self.coder = BoxCoder(cfg.box.box_weights)
        self.matcher = Matcher(cfg.box.fg_iou_thresh, cfg.box.bg_iou_thresh, allow_low_quality=False)
        if cfg.mask.enabled:
            self.mask_pooler = pooler(cfg.mask.pooler_resolution)
            self.mask_head = MaskHead(cfg.mask, channels, cfg.num_classes)
        if cfg.maskiou.enabled:
            if not cfg.mask.enabled:
                raise ConfigError("model.maskiou.enabled needs model.mask.enabled: it scores the mask head's masks")
            self.maskiou_head = MaskIoUHead(cfg.maskiou, channels, cfg.num_classes, cfg.mask.pooler_resolution)
        if cfg.keypoint.enabled:
            self.keypoint_pooler = pooler(cfg.keypoint.pooler_resolution)
            self.keypoint_head = KeypointHead(cfg.keypoint, channels)

    def forward(self, features, proposals, image_sizes, targets=None, generators=None):
        """features [P2..P5]; proposals per image (Ni, 4) -> (detections, losses).

        Detections per image: dict with boxes (D, 4), scores (D,), labels (D,), mask_probs (D, M, M),
        keypoints (D, K, 3) x, y, score.
        """
        if self.training:
            return [], self._train(features, proposals, targets, generators)
        return self._infer(features, proposals, image_sizes), {}

    # -- training ---------------------------------------------------------------------------
    def _train(self, features, proposals, targets, generators):
        rois, labels, matched, box_targets = self.sample_rois(proposals, targets, generators)
        logits, deltas = self.box_predictor(self.box_head(self.box_pooler(features, rois)))
        losses = box_losses(logits, deltas, torch.cat(labels), torch.cat(box_targets), self.cfg.box.smooth_l1_beta)
        losses = {k: v * self.cfg.box.loss_weight for k, v in losses.items()}
        if self.cfg.mask.enabled:
            losses.update(self._train_mask(features, rois, labels, matched, targets))
        if self.cfg.keypoint.enabled:
            losses.update(self._train_keypoint(features, rois, labels, matched, targets))
        return losses

    def sample_rois(self, proposals, targets, generators):
        """GT boxes join the proposals; match at IoU 0.5; sample 1:3 positives:negatives.

        Returns per image: rois (Si, 4), labels (Si,) (0 = background), matched gt (Si,),
        box regression targets (Si, 4).
        """
        box_cfg = self.cfg.box
        out = ([], [], [], [])
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
            props, labels, matched = props[keep], labels[keep], matched[keep]
            gt = gt_boxes[matched] if len(gt_boxes) else props
            for store, value in zip(out, (props, labels, matched, self.coder.encode(gt, props))):
                store.append(value)
        return out

    def _train_mask(self, features, rois, labels, matched, targets):
        pos = [torch.where(lab > 0)[0] for lab in labels]
        pos_rois = [r[p] for r, p in zip(rois, pos)]
        pos_matched = [m[p] for m, p in zip(matched, pos)]
        pos_labels = torch.cat([lab[p] for lab, p in zip(labels, pos)])
        pooled = self.mask_pooler(features, pos_rois)  # (P, C, 14, 14)
        logits = self.mask_head(pooled)
        gt_masks = [t["masks"] for t in targets]
        loss = mask_loss(logits, pos_rois, pos_matched, pos_labels, gt_masks)
        losses = {"loss_mask": loss * self.cfg.mask.loss_weight}
        if self.cfg.maskiou.enabled:
            picked = logits[torch.arange(len(pos_labels), device=logits.device), pos_labels]  # (P, 28, 28)
            iou_targets = maskiou_train_targets(picked, pos_rois, pos_matched, gt_masks)
            loss = maskiou_loss(self.maskiou_head(pooled, picked), pos_labels, iou_targets)
            losses["loss_maskiou"] = loss * self.cfg.maskiou.loss_weight
        return losses

    def _train_keypoint(self, features, rois, labels, matched, targets):
        pos = [torch.where(lab > 0)[0] for lab in labels]
        pos_rois = [r[p] for r, p in zip(rois, pos)]
        logits = self.keypoint_head(self.keypoint_pooler(features, pos_rois))  # (P, K, 56, 56)
        if any("keypoints" not in t for t in targets):
            raise ValueError("the keypoint head is enabled: every target needs 'keypoints' (N, K, 3) x, y, visibility")
        gt = [t["keypoints"] for t in targets]
        loss = keypoint_loss(logits, pos_rois, [m[p] for m, p in zip(matched, pos)], gt)
        return {"loss_keypoint": loss * self.cfg.keypoint.loss_weight}

    # -- inference --------------------------------------------------------------------------
    def _infer(self, features, proposals, image_sizes):
        # RoIAlign reads fp32 (or float64) NCHW maps: a no-op unless the fast path made them bf16 /
        # channels-last; float64 stays float64 for the exactness referee (tests/model/exactness.py)
        features = [(f if f.dtype == torch.float64 else f.float()).contiguous() for f in features]
        logits, deltas = self.box_predictor(self.box_head(self.box_pooler(features, proposals)))
        dets = detect_boxes(logits, deltas, proposals, image_sizes, self.coder, self.cfg.box)
        results = [{"boxes": b, "scores": s, "labels": lab} for b, s, lab in dets]
        if self.cfg.mask.enabled:
            boxes = [r["boxes"] for r in results]
            pooled = self.mask_pooler(features, boxes)  # (D, C, 14, 14)
            mask_logits = self.mask_head(pooled)
            labels = torch.cat([r["labels"] for r in results])
            probs = mask_probs(mask_logits, labels)
            for r, p in zip(results, probs.split([len(b) for b in boxes])):
                r["mask_probs"] = p
            if self.cfg.maskiou.enabled:
                self._infer_maskiou(pooled, mask_logits, labels, results)
        if self.cfg.keypoint.enabled:
            boxes = [r["boxes"] for r in results]
            heatmaps = self.keypoint_head(self.keypoint_pooler(features, boxes))  # (D, K, 56, 56)
            for r, h in zip(results, heatmaps.split([len(b) for b in boxes])):
                r["keypoints"] = decode_keypoints(h, r["boxes"])  # (Di, K, 3) x, y, score
        return results

    def _infer_maskiou(self, pooled, mask_logits, labels, results):
        """Adds `mask_scores` (D,) = box score x predicted IoU of the predicted class."""
        picked = mask_logits[torch.arange(len(labels), device=labels.device), labels]  # (D, 28, 28)
        iou_pred = self.maskiou_head(pooled, picked)
        scores = mask_scores(iou_pred, labels, torch.cat([r["scores"] for r in results]))
        for r, s in zip(results, scores.split([len(r["labels"]) for r in results])):
            r["mask_scores"] = s

"""Region Proposal Network: anchors, head, proposal selection and the RPN losses."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import AnchorConfig, RPNConfig
from ..errors import ConfigError
from ..ops.boxes import (
    BoxCoder,
    Matcher,
    at_most,
    clip_boxes,
    match_boxes,
    nms_per_image,
    nonempty,
    sample_balanced,
    smooth_l1_sum,
)
from ..structures import BatchedBoxes, sizes_tensor
from .head_contract import DeclaresOutputs
from .layers import ConvNorm
from .layers import init_layers


class AnchorGenerator(nn.Module):
    """Anchors at every feature-map cell: one size per pyramid level (FPN), or every size on the
    one map (C4), each in several aspect ratios (size-major, ratio-minor)."""

    def __init__(self, cfg: AnchorConfig, num_levels: int = 5):
        super().__init__()
        if num_levels == 1:
            sizes = [cfg.sizes]
        elif num_levels == len(cfg.sizes):
            sizes = [(size,) for size in cfg.sizes]
        else:
            raise ConfigError(f"model.anchors.sizes: {len(cfg.sizes)} sizes for {num_levels} feature "
                              "levels (give one per level, or any number for a single map)")
        self.cell_anchors = [
            torch.cat([self._cell_anchors(size, cfg.aspect_ratios, cfg.round_base) for size in level])
            for level in sizes
        ]
        if cfg.strides and len(cfg.strides) != num_levels:
            raise ConfigError(f"model.anchors.strides: {len(cfg.strides)} strides for {num_levels} feature "
                              "levels (give one per level, or none to derive them from the feature sizes)")
        self.strides = tuple(cfg.strides)  # empty: padded size // feature size (torchvision)

    @property
    def num_anchors_per_cell(self) -> int:
        """A: anchors per feature-map cell (sizes x aspect ratios of one level)."""
        return self.cell_anchors[0].shape[0]

    @staticmethod
    def _cell_anchors(size: int, ratios, round_base: bool) -> torch.Tensor:
        """(A, 4) anchors centred on 0 with area size**2 and height/width = ratio."""
        ratios = torch.as_tensor(ratios, dtype=torch.float32)
        h_ratio = torch.sqrt(ratios)
        ws = size / h_ratio
        hs = size * h_ratio
        anchors = torch.stack([-ws, -hs, ws, hs], dim=1) / 2
        return anchors.round() if round_base else anchors

    def forward(self, padded_size: tuple[int, int], features: list[torch.Tensor]) -> list[torch.Tensor]:
        """Per level (Hl * Wl * A, 4) anchors in padded-image pixels, cell-major, ratio-minor."""
        out = []
        for level, (cell, feat) in enumerate(zip(self.cell_anchors, features)):
            fh, fw = feat.shape[-2:]
            if self.strides:  # fixed per level (detectron2, mmdetection)
                stride_y = stride_x = self.strides[level]
            else:
                stride_y, stride_x = padded_size[0] // fh, padded_size[1] // fw
            ys = torch.arange(fh, device=feat.device, dtype=torch.int32) * stride_y
            xs = torch.arange(fw, device=feat.device, dtype=torch.int32) * stride_x
            ys, xs = torch.meshgrid(ys, xs, indexing="ij")
            shifts = torch.stack([xs, ys, xs, ys], dim=-1).reshape(-1, 1, 4)
            out.append((shifts + cell.to(feat.device)[None]).reshape(-1, 4).to(torch.float32))
        return out


class RPNHead(DeclaresOutputs, nn.Module):
    """Shared conv(s) + per-anchor objectness logit and box deltas, on every level."""

    def __init__(self, channels: int, num_anchors: int, num_convs: int = 1, norm: str = "none"):
        super().__init__()
        self.convs = nn.Sequential(
            *[ConvNorm(channels, channels, 3, norm=norm, relu=True) for _ in range(num_convs)]
        )
        self.objectness = nn.Conv2d(channels, num_anchors, 1)
        self.deltas = nn.Conv2d(channels, num_anchors * 4, 1)
        init_layers(self, "normal", std=0.01)

    def output_layers(self) -> dict[str, None]:
        """Objectness and deltas: per anchor, class-agnostic (rows do not follow the classes)."""
        return {"objectness": None, "deltas": None}  # per anchor, class-agnostic

    def forward(self, features: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """-> per level objectness (B, Hl*Wl*A) and deltas (B, Hl*Wl*A, 4), anchor order."""
        logits, deltas = [], []
        for feat in features:
            t = self.convs(feat)
            obj = self.objectness(t)  # (B, A, H, W)
            b, a, h, w = obj.shape
            logits.append(obj.permute(0, 2, 3, 1).reshape(b, -1))
            d = self.deltas(t).view(b, a, 4, h, w).permute(0, 3, 4, 1, 2)
            deltas.append(d.reshape(b, -1, 4))
        return logits, deltas


class RPN(nn.Module):
    """Proposals per image; in training also the objectness and box-regression losses."""

    def __init__(self, cfg: RPNConfig, anchors: AnchorConfig, channels: int, num_levels: int = 5):
        super().__init__()
        self.cfg = cfg
        self.anchor_generator = AnchorGenerator(anchors, num_levels)
        self.head = RPNHead(channels, self.anchor_generator.num_anchors_per_cell, cfg.num_convs, cfg.norm)
        self.coder = BoxCoder(cfg.box_weights)
        self.matcher = Matcher(cfg.fg_iou_thresh, cfg.bg_iou_thresh, allow_low_quality=True)

    def forward(self, images, features, targets=None, generators=None):
        """images: ImageList; features: [P2..P6] or [C4] -> (proposals per image (Ni, 4), losses)."""
        anchors = self.anchor_generator(tuple(images.tensors.shape[-2:]), features)
        logits, deltas = self.head(features)
        num_per_level = [a.shape[0] for a in anchors]
        anchors = torch.cat(anchors)  # (A_total, 4)
        logits, deltas = torch.cat(logits, 1), torch.cat(deltas, 1)  # (B, A_total), (B, A_total, 4)
        boxes = self.coder.decode(deltas.detach().reshape(-1, 4), anchors.repeat(logits.shape[0], 1))
        boxes = boxes.view(logits.shape[0], -1, 4)
        proposals = self.select_proposals(boxes, logits.detach(), num_per_level, images.image_sizes)
        losses = {}
        if self.training:
            losses = self.losses(anchors, logits, deltas, targets, generators)
        return proposals, losses

    def select_proposals(self, boxes, logits, num_per_level, image_sizes) -> list[torch.Tensor]:
        """Top-k per level, clip, drop tiny, NMS per image and level, keep each image's best
        `post_nms_topk`. boxes (B, A, 4), logits (B, A), image_sizes [(h, w)] or (B, 2) ->
        per image (Ni, 4); while tracing, every image's in one `BatchedBoxes`."""
        cfg = self.cfg
        pre_k = cfg.pre_nms_topk_train if self.training else cfg.pre_nms_topk_test
        post_k = cfg.post_nms_topk_train if self.training else cfg.post_nms_topk_test
        top_idx, levels, start = [], [], 0
        for level, n in enumerate(num_per_level):
            idx = logits[:, start : start + n].topk(at_most(n, pre_k), dim=1).indices + start
            top_idx.append(idx)
            levels.append(torch.full_like(idx[0], level))
            start += n
        top_idx, levels = torch.cat(top_idx, 1), torch.cat(levels)  # (B, K), (K,)
        rows = torch.arange(boxes.shape[0], device=boxes.device)[:, None]
        boxes, scores = boxes[rows, top_idx], logits[rows, top_idx].sigmoid()  # (B, K, 4), (B, K)
        sizes = sizes_tensor(image_sizes, boxes.device)  # (B, 2)
        boxes = clip_boxes(boxes, (sizes[:, 0, None, None], sizes[:, 1, None, None]))
        keep = nonempty(boxes, cfg.min_box_size, cfg.min_box_strict) & (scores >= cfg.score_thresh)  # (B, K)
        images = rows.expand_as(keep)
        levels = levels[None].expand_as(keep)
        boxes, scores, levels, images = boxes[keep], scores[keep], levels[keep], images[keep]
        keep = nms_per_image(boxes, scores, levels, images, sizes.shape[0], len(num_per_level), cfg.nms_thresh, post_k,
                             prefix=False)  # fmt: skip
        proposals = BatchedBoxes(boxes[keep], images[keep])
        if torch.jit.is_tracing():
            return proposals
        return list(proposals.boxes.split(proposals.counts(sizes.shape[0])))

    def losses(self, anchors, logits, deltas, targets, generators) -> dict[str, torch.Tensor]:
        """Balanced-sampled objectness BCE + smooth-L1 on positive anchors, per sampled anchor."""
        labels, box_targets = [], []
        for target in targets:
            matches = match_boxes(self.matcher, target["boxes"], anchors)
            label = (matches >= 0).to(torch.float32)
            label[matches == Matcher.BETWEEN] = -1.0
            gt = target["boxes"][matches.clamp(min=0)] if len(target["boxes"]) else anchors
            labels.append(label)
            box_targets.append(self.coder.encode(gt, anchors))
        pos, neg = [], []
        for label, gen in zip(labels, generators or [None] * len(labels)):
            p, n = sample_balanced(label, self.cfg.batch_size_per_image, self.cfg.positive_fraction, gen)
            pos.append(p)
            neg.append(n)
        pos, neg = torch.cat(pos), torch.cat(neg)
        sampled = pos | neg
        num_sampled = max(int(sampled.sum()), 1)
        labels, box_targets = torch.cat(labels), torch.cat(box_targets)
        logits, deltas = logits.reshape(-1), deltas.reshape(-1, 4)
        box_loss = smooth_l1_sum(deltas[pos], box_targets[pos], self.cfg.smooth_l1_beta) / num_sampled
        obj_loss = F.binary_cross_entropy_with_logits(logits[sampled], labels[sampled])
        w = self.cfg.loss_weight
        return {"loss_objectness": w * obj_loss, "loss_rpn_box_reg": w * box_loss}

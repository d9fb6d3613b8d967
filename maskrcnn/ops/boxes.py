"""Box arithmetic shared by the RPN and the RoI heads: coder, matcher, balanced sampler, filters."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torchvision.ops import batched_nms, box_iou, nms

# Largest log-scale change a predicted delta may apply (a box can grow at most 1000/16 times).
DEFAULT_SCALE_CLAMP = math.log(1000.0 / 16)


class BoxCoder:
    """Encodes boxes as (dx, dy, dw, dh) offsets from reference boxes, and back."""

    def __init__(self, weights: tuple[float, float, float, float], scale_clamp=DEFAULT_SCALE_CLAMP):
        self.weights = weights
        self.scale_clamp = scale_clamp

    def encode(self, targets: torch.Tensor, refs: torch.Tensor) -> torch.Tensor:
        """(N, 4) target boxes relative to (N, 4) reference boxes -> (N, 4) deltas."""
        wx, wy, ww, wh = self.weights
        ref_w = refs[:, 2] - refs[:, 0]
        ref_h = refs[:, 3] - refs[:, 1]
        ref_x = refs[:, 0] + 0.5 * ref_w
        ref_y = refs[:, 1] + 0.5 * ref_h
        tgt_w = targets[:, 2] - targets[:, 0]
        tgt_h = targets[:, 3] - targets[:, 1]
        tgt_x = targets[:, 0] + 0.5 * tgt_w
        tgt_y = targets[:, 1] + 0.5 * tgt_h
        dx = wx * (tgt_x - ref_x) / ref_w
        dy = wy * (tgt_y - ref_y) / ref_h
        dw = ww * torch.log(tgt_w / ref_w)
        dh = wh * torch.log(tgt_h / ref_h)
        return torch.stack((dx, dy, dw, dh), dim=1)

    def decode(self, deltas: torch.Tensor, refs: torch.Tensor) -> torch.Tensor:
        """(N, 4k) deltas applied to (N, 4) reference boxes -> (N, k, 4) boxes."""
        refs = refs.to(deltas.dtype)
        wx, wy, ww, wh = self.weights
        w = (refs[:, 2] - refs[:, 0])[:, None]
        h = (refs[:, 3] - refs[:, 1])[:, None]
        cx = refs[:, 0, None] + 0.5 * w
        cy = refs[:, 1, None] + 0.5 * h
        dx = deltas[:, 0::4] / wx
        dy = deltas[:, 1::4] / wy
        dw = (deltas[:, 2::4] / ww).clamp(max=self.scale_clamp)
        dh = (deltas[:, 3::4] / wh).clamp(max=self.scale_clamp)
        px = dx * w + cx
        py = dy * h + cy
        half_w = 0.5 * torch.exp(dw) * w
        half_h = 0.5 * torch.exp(dh) * h
        return torch.stack((px - half_w, py - half_h, px + half_w, py + half_h), dim=2)


class Matcher:
    """Assigns each prediction (column of an IoU matrix) to its best ground truth (row).

    Result per prediction: gt index, BELOW_LOW (background) or BETWEEN (ignored).
    With `allow_low_quality`, every gt also keeps the predictions that overlap it most.
    """

    BELOW_LOW = -1
    BETWEEN = -2

    def __init__(self, high: float, low: float, allow_low_quality: bool):
        assert low <= high
        self.high, self.low, self.allow_low_quality = high, low, allow_low_quality

    def __call__(self, iou: torch.Tensor) -> torch.Tensor:
        """(G, P) IoU matrix -> (P,) int64 matches."""
        if iou.shape[0] == 0:  # no ground truth: everything is background
            return iou.new_full((iou.shape[1],), self.BELOW_LOW, dtype=torch.int64)
        best_iou, matches = iou.max(dim=0)
        best_before_thresholds = matches.clone()
        matches[best_iou < self.low] = self.BELOW_LOW
        matches[(best_iou >= self.low) & (best_iou < self.high)] = self.BETWEEN
        if self.allow_low_quality:
            best_per_gt = iou.max(dim=1).values
            # All predictions tied for a gt's best IoU are kept, as in the paper's RPN recipe.
            preds = torch.where(iou == best_per_gt[:, None])[1]
            matches[preds] = best_before_thresholds[preds]
        return matches


def match_boxes(matcher: Matcher, gt_boxes: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """(G, 4) gt, (P, 4) boxes -> (P,) matches (see Matcher)."""
    if gt_boxes.numel() == 0:
        return boxes.new_full((boxes.shape[0],), Matcher.BELOW_LOW, dtype=torch.int64)
    return matcher(box_iou(gt_boxes, boxes))


def sample_balanced(
    labels: torch.Tensor, batch_size: int, positive_fraction: float, generator=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random positives (label >= 1) and negatives (label == 0) of one image.

    Returns boolean masks (P,), (P,). Draws from `generator` (per-image determinism) or, when
    None, from the global RNG in the same order as torchvision so seeded runs agree.
    """
    positive = torch.where(labels >= 1)[0]
    negative = torch.where(labels == 0)[0]
    num_pos = min(positive.numel(), int(batch_size * positive_fraction))
    num_neg = min(negative.numel(), batch_size - num_pos)
    pos_idx = positive[_randperm(positive.numel(), labels.device, generator)[:num_pos]]
    neg_idx = negative[_randperm(negative.numel(), labels.device, generator)[:num_neg]]
    pos_mask = torch.zeros_like(labels, dtype=torch.bool)
    neg_mask = torch.zeros_like(labels, dtype=torch.bool)
    pos_mask[pos_idx] = True
    neg_mask[neg_idx] = True
    return pos_mask, neg_mask


def _randperm(n: int, device, generator) -> torch.Tensor:
    if generator is None:
        return torch.randperm(n, device=device)
    return torch.randperm(n, generator=generator).to(device)


def clip_boxes(boxes: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """Clamp (..., 4) xyxy boxes to an (h, w) image (ints, or 0-dim tensors while tracing)."""
    h, w = (s.to(boxes.dtype) if torch.is_tensor(s) else torch.tensor(s, dtype=boxes.dtype, device=boxes.device)
            for s in image_size)
    x = torch.minimum(boxes[..., 0::2].clamp(min=0), w)
    y = torch.minimum(boxes[..., 1::2].clamp(min=0), h)
    return torch.stack((x[..., 0], y[..., 0], x[..., 1], y[..., 1]), dim=-1)


def nonempty(boxes: torch.Tensor, min_size: float, strict: bool = False) -> torch.Tensor:
    """(..., 4) boxes -> (...) bool: width and height both at least `min_size` (`strict`: above it,
    detectron2's and mmdetection's rule)."""
    w, h = boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]
    return ((w > min_size) & (h > min_size)) if strict else ((w >= min_size) & (h >= min_size))


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """(N, 4) xyxy boxes -> (N,) areas in px^2."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def smooth_l1_sum(pred: torch.Tensor, target: torch.Tensor, beta: float) -> torch.Tensor:
    """Summed smooth-L1 loss (plain L1 when beta is 0, as in detectron2 and mmdetection)."""
    if beta == 0:
        return F.l1_loss(pred, target, reduction="sum")
    return F.smooth_l1_loss(pred, target, beta=beta, reduction="sum")


def batched_nms_topk(
    boxes: torch.Tensor, scores: torch.Tensor, classes: torch.Tensor, iou_thresh: float, k: int
) -> torch.Tensor:
    """`batched_nms(boxes, scores, classes, iou_thresh)[:k]`, without suppressing all N boxes.

    Whether a box survives per-class NMS depends only on the higher-scoring boxes of its class,
    so NMS over the best m boxes decides every one of them exactly as NMS over all N does; once
    that prefix yields k survivors, they are the k best of the full result. m starts at 4k and
    grows 4x until it does (or covers all boxes). With a score threshold of 0 and 90 classes this
    turns ~90 NMS calls over 90,000 boxes into one over a few hundred.
    """
    if len(scores) <= 4 * k:
        return batched_nms(boxes, scores, classes, iou_thresh)[:k]
    order = scores.argsort(descending=True)
    m = 4 * k
    while True:
        top = order[:m]
        keep = batched_nms(boxes[top], scores[top], classes[top], iou_thresh)
        if len(keep) >= k or m >= len(order):
            return top[keep[:k]]
        m *= 4


# -- per-image, per-class NMS over a batch ---------------------------------------------------------
_NOT_A_CANDIDATE = -1.0  # score of a (box, class) pair that is not a candidate (scores are >= 0)


def nms_per_image(
    boxes: torch.Tensor, scores: torch.Tensor, classes: torch.Tensor, batch_index: torch.Tensor,
    num_images, num_classes: int, iou_thresh: float, k: int, prefix: bool = True,
) -> torch.Tensor:
    """Per-image, per-class greedy NMS over a batch's candidates.

    boxes (N, 4), scores (N,) >= 0, classes (N,) in 0..num_classes-1, batch_index (N,) in
    0..num_images-1 and non-decreasing (candidates grouped by image) -> indices of each image's
    k best survivors, image by image, best first: per image what `batched_nms(...)[:k]` keeps.
    Eagerly torchvision's `batched_nms` per image, on the best candidates only (`batched_nms_topk`)
    unless `prefix` is False (the subset changes batched_nms's coordinate offsets, so the RPN, which
    keeps torchvision's proposals digit for digit, runs it on all); while tracing, one ONNX
    NonMaxSuppression for the whole batch (`_nms_per_image_onnx`).
    """
    if torch.jit.is_tracing():
        return _nms_per_image_onnx(boxes, scores, classes, batch_index, num_images, num_classes, iou_thresh, k)
    keep, start = [], 0
    for n in torch.bincount(batch_index, minlength=num_images).tolist():
        rows = slice(start, start + n)
        args = (boxes[rows], scores[rows], classes[rows], iou_thresh)
        keep.append((batched_nms_topk(*args, k) if prefix else batched_nms(*args)[:k]) + start)
        start += n
    return torch.cat(keep)


def _nms_per_image_onnx(
    boxes: torch.Tensor, scores: torch.Tensor, classes: torch.Tensor, batch_index: torch.Tensor,
    num_images, num_classes: int, iou_thresh: float, k: int,
) -> torch.Tensor:
    """`nms_per_image` as one ONNX NonMaxSuppression: exact per-class NMS (no coordinate
    offsets); each (image, class) stops after k survivors. The candidates are laid out (B, W), W
    the most any image has, as NonMaxSuppression's batch."""
    images = torch.arange(num_images, device=boxes.device)
    counts = (batch_index[None] == images[:, None]).sum(1)  # (B,)
    starts = counts.cumsum(0) - counts
    slots = torch.arange(counts.max(), device=boxes.device)  # (W,)
    present = slots[None] < counts[:, None]  # (B, W)
    rows = torch.where(present, starts[:, None] + slots[None], 0)  # (B, W) candidate of each slot
    dense_scores = torch.where(present, scores[rows], _NOT_A_CANDIDATE)
    wanted = torch.arange(num_classes, device=boxes.device)[None, :, None]
    per_class = torch.where(classes[rows][:, None] == wanted, dense_scores[:, None], _NOT_A_CANDIDATE)
    kept = _NonMaxSuppression.apply(boxes[rows], per_class, int(k), float(iou_thresh),
                                    _NOT_A_CANDIDATE / 2)  # (M, 3) image, class, slot
    image, slot = kept[:, 0], kept[:, 2]
    survivors = torch.full_like(dense_scores, _NOT_A_CANDIDATE).index_put((image, slot), dense_scores[image, slot])
    best = survivors.topk(at_most(slots.shape[0], k), dim=1)  # (B, k') each image's best first
    return (starts[:, None] + best.indices)[best.values >= 0]


def at_most(n, k: int):
    """min(n, k) for a size n that is an int eagerly and a 0-dim tensor while tracing."""
    return torch.clamp(n, max=k) if torch.is_tensor(n) else min(n, k)


class _NonMaxSuppression(torch.autograd.Function):
    """ONNX NonMaxSuppression; the eager forward (run while tracing) computes the same:
    boxes (B, N, 4), scores (B, C, N) -> (M, 3) rows (b, c, box index), each (b, c) best first."""

    @staticmethod
    def forward(ctx, boxes, scores, max_per_class: int, iou_threshold: float, score_threshold: float):
        rows = [boxes.new_zeros((0, 3), dtype=torch.int64)]
        for b in range(scores.shape[0]):
            for c in range(scores.shape[1]):
                cand = torch.where(scores[b, c] > score_threshold)[0]
                keep = cand[nms(boxes[b, cand], scores[b, c, cand], iou_threshold)[:max_per_class]]
                rows.append(torch.stack([torch.full_like(keep, b), torch.full_like(keep, c), keep], 1))
        return torch.cat(rows)

    @staticmethod
    def symbolic(g, boxes, scores, max_per_class, iou_threshold, score_threshold):
        def const(value, dtype):
            return g.op("Constant", value_t=torch.tensor([value], dtype=dtype))

        return g.op("NonMaxSuppression", boxes, scores, const(max_per_class, torch.int64),
                    const(iou_threshold, torch.float32), const(score_threshold, torch.float32))

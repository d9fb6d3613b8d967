"""Identities across video frames: each frame's detections are associated with the tracks of the
frames before, ByteTrack-style (Zhang et al., ECCV 2022), by mask IoU (box IoU when the model has
no masks), so an object keeps one id while it moves, crosses others and disappears briefly.

Per frame: every track's last confident box and mask are moved by its velocity to where it
should be now; (1) high-scoring detections are matched to all tracks (Hungarian, same class
only, mask IoU at least `match_iou`); (2) low-scoring detections, which ByteTrack keeps instead
of dropping, are matched to the tracks still unmatched by the share of the detection that lies
where the track should be (at least `low_match`): a low score is mostly a partly hidden object,
whose visible part covers little of the whole. ByteTrack matches low scores only to tracks seen
in the previous frame; with masks a partial view is reliable enough to also resume a lost track.
(3) Unmatched high-scoring detections start tracks; a track not seen for more than `buffer`
frames ends; unmatched low-scoring detections get no id (-1). Only full views (a high score
and at least FULL_VIEW of the area the track usually has) move a track's shape and velocity: the
box of a partly hidden object moves with the occluder's edge, not with the object.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .errors import UserError
from .structures import Instances

ASSOCIATION_SIDE = 256  # masks are compared at most this many pixels on the long side
FULL_VIEW = 0.9  # a view this much smaller than the track's usual area is partly hidden


@dataclass
class Track:
    """One object's identity and its last observation."""

    id: int
    label: int
    box: torch.Tensor  # (4,) xyxy, last seen with a high score, at frame `box_frame`
    mask: torch.Tensor | None  # (h, w) bool at the association scale, likewise
    velocity: torch.Tensor  # (4,) box change per frame
    first_frame: int
    last_frame: int  # last seen at any score
    box_frame: int
    frames_seen: int = 1
    area_sum: float = 0.0
    full_area: float = 0.0  # running mean of the areas of full views

    def summary(self) -> dict:
        """The track as a CSV row: id, label, first and last frame index, frames seen, and its mean
        area in pixels at the frame's scale (mask area; box area for a model without masks)."""
        return {"track_id": self.id, "label": self.label, "first_frame": self.first_frame,
                "last_frame": self.last_frame, "frames_seen": self.frames_seen,
                "mean_area": self.area_sum / self.frames_seen}


class Tracker:
    """Feed `update` one frame's Instances at a time (in frame order); it returns their track ids."""

    def __init__(self, high_score: float = 0.5, low_score: float = 0.1, match_iou: float = 0.3,
                 low_match: float = 0.5, buffer: int = 30):
        self.high_score, self.low_score, self.buffer = high_score, low_score, buffer
        self.match_iou, self.low_match = match_iou, low_match
        self.tracks: list[Track] = []  # alive (seen within `buffer` frames)
        self.finished: list[Track] = []
        self.next_id = 1
        self.frame_width = 1

    def update(self, instances: Instances, frame: int) -> torch.Tensor:
        """Instances of frame `frame` -> (N,) int64 track ids (-1: a low score left unmatched)."""
        n = len(instances)
        ids = torch.full((n,), -1, dtype=torch.int64)
        boxes, scores, labels = instances.boxes.float().cpu(), instances.scores.cpu(), instances.labels.cpu()
        masks = None
        if instances.has("masks") and n:
            self.frame_width = instances.masks.shape[-1]  # masks are compared downscaled
            masks = _small(instances.masks.cpu())
        iou, covered = self._similarity(boxes, labels, masks, frame)  # (T, N) each
        high = (scores >= self.high_score).nonzero().flatten()
        low = ((scores >= self.low_score) & (scores < self.high_score)).nonzero().flatten()
        free = torch.ones(len(self.tracks), dtype=torch.bool)
        for dets, similarity, threshold in ((high, iou, self.match_iou), (low, covered, self.low_match)):
            for t, d in _assign(similarity, free.nonzero().flatten(), dets, threshold):
                mask = masks[d] if masks is not None else None
                self._observe(self.tracks[t], boxes[d], mask, frame, confident=bool(scores[d] >= self.high_score))
                ids[d], free[t] = self.tracks[t].id, False
        for d in high[ids[high] < 0].tolist():
            ids[d] = self._start(boxes[d], int(labels[d]), masks[d] if masks is not None else None, frame)
        self._expire(frame)
        return ids

    def summaries(self) -> list[dict]:
        """Every track so far, ended or alive, by id."""
        return [t.summary() for t in sorted(self.finished + self.tracks, key=lambda t: t.id)]

    def _similarity(self, boxes, labels, masks, frame: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(T, N) IoU and (T, N) share of each detection inside each track moved to `frame`: of
        masks, or of boxes without masks; 0 across classes."""
        if not self.tracks or not len(boxes):
            return torch.zeros(len(self.tracks), len(boxes)), torch.zeros(len(self.tracks), len(boxes))
        gaps = torch.tensor([frame - t.box_frame for t in self.tracks], dtype=torch.float32)[:, None]
        predicted = torch.stack([t.box for t in self.tracks]) + torch.stack([t.velocity for t in self.tracks]) * gaps
        if masks is None:
            iou, covered = _box_overlaps(predicted, boxes)
        else:
            scale = masks.shape[-1] / self.frame_width
            moved = torch.stack([_shift(t.mask, _centre(p) - _centre(t.box), scale) for t, p in zip(self.tracks, predicted)])
            iou, covered = _overlaps(moved, masks)
        same = torch.tensor([t.label for t in self.tracks])[:, None] == labels[None]
        return iou * same, covered * same

    def _observe(self, track: Track, box, mask, frame: int, confident: bool) -> None:
        area = self._area(box, mask)
        track.last_frame = frame
        track.frames_seen += 1
        track.area_sum += area
        if confident and area >= FULL_VIEW * track.full_area:
            track.full_area = 0.5 * track.full_area + 0.5 * area
            step = (box - track.box) / (frame - track.box_frame)
            track.velocity = step if torch.all(track.velocity == 0) else 0.5 * track.velocity + 0.5 * step
            track.box, track.mask, track.box_frame = box, mask, frame

    def _start(self, box, label: int, mask, frame: int) -> int:
        area = self._area(box, mask)
        track = Track(self.next_id, label, box, mask, torch.zeros(4), frame, frame, frame, area_sum=area,
                      full_area=area)
        self.tracks.append(track)
        self.next_id += 1
        return track.id

    def _area(self, box, mask) -> float:
        """Pixels at the frame's scale (mask pixels scaled back up; box area without masks)."""
        if mask is None:
            return float((box[2] - box[0]) * (box[3] - box[1]))
        return float(mask.sum()) * (self.frame_width / mask.shape[-1]) ** 2

    def _expire(self, frame: int) -> None:
        alive = [t for t in self.tracks if frame - t.last_frame <= self.buffer]
        self.finished += [t for t in self.tracks if frame - t.last_frame > self.buffer]
        self.tracks = alive


def _assign(similarity: torch.Tensor, tracks: torch.Tensor, dets: torch.Tensor, threshold: float):
    """Hungarian matching of rows `tracks` with columns `dets` maximising similarity; pairs
    below `threshold` are dropped. Yields (track index, detection index)."""
    if not len(tracks) or not len(dets):
        return
    try:
        from scipy.optimize import linear_sum_assignment
    except ImportError:
        raise UserError("--track needs SciPy: pip install 'maskrcnn[video]'") from None
    block = similarity[tracks][:, dets].numpy()
    rows, cols = linear_sum_assignment(block, maximize=True)
    for r, c in zip(rows, cols):
        if block[r, c] >= threshold:
            yield int(tracks[r]), int(dets[c])


def _small(masks: torch.Tensor) -> torch.Tensor:
    """(N, H, W) bool -> every s-th pixel, s chosen so the long side is <= ASSOCIATION_SIDE."""
    step = max(1, -(-max(masks.shape[-2:]) // ASSOCIATION_SIDE))
    return masks[:, ::step, ::step].contiguous()


def _centre(box: torch.Tensor) -> torch.Tensor:
    return (box[:2] + box[2:]) / 2  # (2,) x, y


def _shift(mask: torch.Tensor, offset: torch.Tensor, scale: float) -> torch.Tensor:
    """(h, w) bool moved by offset (dx, dy) frame pixels times `scale` (rounded); what leaves the
    frame is lost."""
    dx, dy = (int(round(float(v) * scale)) for v in offset)
    h, w = mask.shape
    out = torch.zeros_like(mask)
    if abs(dx) < w and abs(dy) < h:
        out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
            mask[max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def _overlaps(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(T, h, w) and (N, h, w) bool -> (T, N) IoU and (T, N) share of each b inside each a."""
    fa, fb = a.flatten(1).float(), b.flatten(1).float()
    inter = fa @ fb.T
    area_b = fb.sum(1)[None]
    union = fa.sum(1)[:, None] + area_b - inter
    return inter / union.clamp(min=1), inter / area_b.clamp(min=1)


def _box_overlaps(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(T, 4) and (N, 4) xyxy -> (T, N) IoU and (T, N) share of each b inside each a."""
    wh = (torch.min(a[:, None, 2:], b[None, :, 2:]) - torch.max(a[:, None, :2], b[None, :, :2])).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    area_a, area_b = ((x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1]) for x in (a, b))
    union = area_a[:, None] + area_b[None] - inter
    return inter / union.clamp(min=1e-6), inter / area_b[None].clamp(min=1e-6)


def write_track_summary(summaries: list[dict], path, label_names=None) -> None:
    """One CSV row per track: id, label, first/last frame, frames seen, mean area (px)."""
    import csv
    import io

    from .fileio import atomic_write

    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["track_id", "label", "first_frame", "last_frame", "frames_seen", "mean_area"])
    for s in summaries:
        label = label_names[s["label"]] if label_names and 0 <= s["label"] < len(label_names) else s["label"]
        writer.writerow([s["track_id"], label, s["first_frame"], s["last_frame"], s["frames_seen"],
                         f"{s['mean_area']:.1f}"])
    atomic_write(path, lambda f: f.write(text.getvalue().encode()))


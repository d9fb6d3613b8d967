"""Images larger than the model's input: predict on overlapping tiles at full resolution, merge.

Tiles of `tile` x `tile` pixels step by `tile - overlap`; the last row and column sit flush with
the image's edge. Each tile goes through the model like any image (choose `tile` near the
model's input size so it is not scaled down). Where two tiles overlap they see the same pixels,
so two detections of one object agree there: detections from different tiles whose masks
(boxes, for models without masks) match inside the tiles' shared area with IoU >= `merge_iou`
are one object, also transitively across many tiles; so is a sliver cut by its tile's edge that
lies wholly in the shared area and touches the other tile's detection. Labels need not agree: a
tile that sees part of an object may call it something else, so the merged object takes the
label and score of its best-scoring part. Its mask takes each pixel from the tile that sees it
farthest from a cut edge (a tile's prediction is worst where it lost context); its box is the
union of the parts' boxes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .errors import UserError
from .structures import Instances

MERGE_IOU = 0.5


@dataclass
class _Part:
    """One detection of one tile, in image coordinates; the mask is cropped to its own extent."""

    tile: int
    window: tuple[int, int, int, int]  # x0, y0, x1, y1 of the tile
    label: int
    score: float
    box: np.ndarray  # (4,) xyxy
    mask: np.ndarray | None  # (h, w) bool, top-left at `origin`
    origin: tuple[int, int]  # x, y
    extra: dict  # mask_scores / keypoints of this detection


def tile_origins(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets along one axis: stride `tile - overlap`, the last tile flush with the end."""
    if length <= tile:
        return [0]
    return list(range(0, length - tile, tile - overlap)) + [length - tile]


def check_tile_args(tile: int, overlap: int) -> None:
    """Check a tile size and overlap in pixels.

    Raises:
        UserError: `tile` < 32, or `overlap` negative or not smaller than `tile`.
    """
    if tile < 32:
        raise UserError(f"tile size {tile}: use at least 32 pixels")
    if not 0 <= overlap < tile:
        raise UserError(f"tile overlap {overlap}: must be >= 0 and smaller than the tile size {tile}")


def predict_tiled(predict, image: torch.Tensor, tile: int, overlap: int, batch_size: int = 4,
                  merge_iou: float = MERGE_IOU) -> Instances:
    """(3, H, W) image -> `Instances` of the whole image, merged across tiles.

    predict: list of (3, h, w) tensors -> list of `Instances` (e.g. `model.predict`).
    """
    check_tile_args(tile, overlap)
    height, width = image.shape[-2:]
    windows = [(x, y, min(x + tile, width), min(y + tile, height))
               for y in tile_origins(height, tile, overlap) for x in tile_origins(width, tile, overlap)]
    parts, class_names = [], ()
    for first in range(0, len(windows), batch_size):
        chunk = windows[first:first + batch_size]
        outputs = predict([image[:, y0:y1, x0:x1] for x0, y0, x1, y1 in chunk])
        for index, (window, instances) in enumerate(zip(chunk, outputs), start=first):
            class_names = instances.class_names
            parts += _parts(instances.to("cpu"), index, window)
    groups = _group(parts, merge_iou, (height, width))
    return _assemble(groups, (height, width), class_names, parts)


def _parts(instances: Instances, tile: int, window) -> list[_Part]:
    x0, y0 = window[:2]
    shift = np.array([x0, y0, x0, y0], dtype=np.float64)
    parts = []
    for i in range(len(instances)):
        mask, origin = None, (x0, y0)
        if instances.has("masks"):
            mask, (dx, dy) = _crop(instances.masks[i].numpy())
            origin = (x0 + dx, y0 + dy)
        extra = {}
        if instances.has("mask_scores"):
            extra["mask_scores"] = instances.mask_scores[i]
        if instances.has("keypoints"):
            extra["keypoints"] = instances.keypoints[i] + torch.tensor([x0, y0, 0.0])
        parts.append(_Part(tile, window, int(instances.labels[i]), float(instances.scores[i]),
                           instances.boxes[i].double().numpy() + shift, mask, origin, extra))
    return parts


def _crop(mask: np.ndarray):
    """(h, w) bool -> (the mask cut to its true pixels, (dx, dy) of the cut's corner)."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if len(rows) == 0:
        return mask[:0, :0], (0, 0)
    return mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1], (int(cols[0]), int(rows[0]))


def _group(parts: list[_Part], merge_iou: float, image_size) -> list[list[int]]:
    """Union-find over pairs of parts from overlapping tiles that are one object."""
    root = list(range(len(parts)))

    def find(i):
        while root[i] != i:
            root[i] = root[root[i]]
            i = root[i]
        return i

    by_tile: dict[int, list[int]] = {}
    for index, part in enumerate(parts):
        by_tile.setdefault(part.tile, []).append(index)
    tiles = sorted(by_tile)
    for a_pos, a in enumerate(tiles):
        for b in tiles[a_pos + 1:]:
            shared = _intersect(parts[by_tile[a][0]].window, parts[by_tile[b][0]].window)
            if shared is None:
                continue
            for i in by_tile[a]:
                for j in by_tile[b]:
                    if _same_object(parts[i], parts[j], shared, merge_iou, image_size):
                        root[find(i)] = find(j)
    groups: dict[int, list[int]] = {}
    for index in range(len(parts)):
        groups.setdefault(find(index), []).append(index)
    return list(groups.values())


def _same_object(a: _Part, b: _Part, shared, merge_iou: float, image_size) -> bool:
    """Two tiles' detections agree where both tiles see (IoU >= merge_iou there), or one is a
    fragment: cut by its tile's edge, lying wholly where the other tile also sees, and touching
    the other's detection (a sliver's mask is too poor for an IoU test)."""
    inter, area_a, area_b = _overlap_in(a, b, shared)
    if inter <= 0:
        return False
    return (inter / (area_a + area_b - inter) >= merge_iou
            or _is_fragment(a, shared, image_size) or _is_fragment(b, shared, image_size))


def _is_fragment(part: _Part, shared, image_size) -> bool:
    height, width = image_size
    x0, y0, x1, y1 = _extent(part)
    inside = shared[0] <= x0 and shared[1] <= y0 and x1 <= shared[2] and y1 <= shared[3]
    wx0, wy0, wx1, wy1 = part.window
    slack = 0 if part.mask is not None else 1  # regressed boxes stop near, not at, the edge
    cut = ((wx0 > 0 and x0 <= wx0 + slack) or (wy0 > 0 and y0 <= wy0 + slack)
           or (wx1 < width and x1 >= wx1 - slack) or (wy1 < height and y1 >= wy1 - slack))
    return inside and cut


def _intersect(a, b):
    x0, y0, x1, y1 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    return (x0, y0, x1, y1) if x0 < x1 and y0 < y1 else None


def _area(r) -> float:
    return (r[2] - r[0]) * (r[3] - r[1]) if r else 0.0


def _overlap_in(a: _Part, b: _Part, region) -> tuple[float, float, float]:
    """(intersection, area of a, area of b) inside `region`: of the masks, or boxes without masks."""
    if a.mask is None:
        box_a, box_b = _intersect(_extent(a), region), _intersect(_extent(b), region)
        return _area(_intersect(box_a, box_b) if box_a and box_b else None), _area(box_a), _area(box_b)
    if _intersect(_intersect(_extent(a), _extent(b)) or (0, 0, 0, 0), region) is None:
        return 0.0, 0.0, 0.0  # the masks share no pixel of the region
    in_a, in_b = _mask_in(a, region), _mask_in(b, region)
    return float(np.logical_and(in_a, in_b).sum()), float(in_a.sum()), float(in_b.sum())


def _extent(part: _Part):
    """x0, y0, x1, y1 of the part's mask (its box without a mask)."""
    if part.mask is None:
        return tuple(float(v) for v in part.box)
    return (part.origin[0], part.origin[1], part.origin[0] + part.mask.shape[1],
            part.origin[1] + part.mask.shape[0])


def _mask_in(part: _Part, region) -> np.ndarray:
    """The part's mask on the pixels of `region`, (y1 - y0, x1 - x0) bool."""
    x0, y0, x1, y1 = region
    out = np.zeros((y1 - y0, x1 - x0), dtype=bool)
    _paste(out, part.mask, part.origin, (x0, y0))
    return out


def _paste(canvas: np.ndarray, mask: np.ndarray, origin, canvas_origin) -> None:
    """OR `mask` (top-left at image `origin`) into `canvas` (top-left at `canvas_origin`)."""
    ox, oy = origin[0] - canvas_origin[0], origin[1] - canvas_origin[1]
    h, w = mask.shape
    cx0, cy0 = max(ox, 0), max(oy, 0)
    cx1, cy1 = min(ox + w, canvas.shape[1]), min(oy + h, canvas.shape[0])
    if cx0 < cx1 and cy0 < cy1:
        canvas[cy0:cy1, cx0:cx1] |= mask[cy0 - oy:cy1 - oy, cx0 - ox:cx1 - ox]


def _assemble(groups, image_size, class_names, parts: list[_Part]) -> Instances:
    """One instance per group, sorted by score."""
    height, width = image_size
    groups = sorted(groups, key=lambda g: -max(parts[i].score for i in g))
    has_masks = bool(parts) and parts[0].mask is not None
    fields = {"boxes": [], "scores": [], "labels": [], "masks": []}
    extras: dict[str, list] = {name: [] for name in (parts[0].extra if parts else {})}
    for group in groups:
        members = [parts[i] for i in group]
        best = max(members, key=lambda p: p.score)
        boxes = np.stack([p.box for p in members])
        fields["boxes"].append(np.concatenate([boxes[:, :2].min(0), boxes[:, 2:].max(0)]))
        fields["scores"].append(best.score)
        fields["labels"].append(best.label)
        if has_masks:
            fields["masks"].append(_merged_mask(members, image_size))
        if "mask_scores" in extras:
            extras["mask_scores"].append(max(p.extra["mask_scores"] for p in members))
        if "keypoints" in extras:
            extras["keypoints"].append(best.extra["keypoints"])
    out = {
        "boxes": torch.tensor(np.array(fields["boxes"]), dtype=torch.float32).reshape(-1, 4),
        "scores": torch.tensor(fields["scores"], dtype=torch.float32),
        "labels": torch.tensor(fields["labels"], dtype=torch.int64),
    }
    if has_masks:
        out["masks"] = (torch.from_numpy(np.stack(fields["masks"])) if groups
                        else torch.zeros((0, height, width), dtype=torch.bool))
    for name, values in extras.items():
        out[name] = torch.stack(values)
    return Instances(image_size, class_names, **out)


def _merged_mask(members: list[_Part], image_size) -> np.ndarray:
    """(H, W) bool: each pixel from the member whose tile sees it farthest from a cut edge."""
    height, width = image_size
    x0 = min(p.origin[0] for p in members)
    y0 = min(p.origin[1] for p in members)
    x1 = max(p.origin[0] + p.mask.shape[1] for p in members)
    y1 = max(p.origin[1] + p.mask.shape[0] for p in members)
    full = np.zeros((height, width), dtype=bool)
    if x1 <= x0 or y1 <= y0:
        return full
    tiles = {}
    for part in members:  # several detections of one tile in a group: their union speaks for it
        canvas = tiles.setdefault(part.tile, (part.window, np.zeros((y1 - y0, x1 - x0), dtype=bool)))[1]
        _paste(canvas, part.mask, part.origin, (x0, y0))
    xs, ys = np.arange(x0, x1) + 0.5, np.arange(y0, y1) + 0.5
    depth = np.stack([_depth(window, xs, ys, width, height) for window, _ in tiles.values()])
    owner = depth.argmax(0)  # (h, w) index of the tile that sees the pixel best
    merged = np.zeros((y1 - y0, x1 - x0), dtype=bool)
    for index, (_, canvas) in enumerate(tiles.values()):
        merged |= canvas & (owner == index)
    full[y0:y1, x0:x1] = merged
    return full


def _depth(window, xs, ys, width, height) -> np.ndarray:
    """(len(ys), len(xs)) distance of each pixel to the nearest *cut* edge of the tile (edges on
    the image border cut nothing); negative outside the tile."""
    wx0, wy0, wx1, wy1 = window
    left = xs - wx0 if wx0 > 0 else np.full_like(xs, np.inf)
    right = wx1 - xs if wx1 < width else np.full_like(xs, np.inf)
    top = ys - wy0 if wy0 > 0 else np.full_like(ys, np.inf)
    bottom = wy1 - ys if wy1 < height else np.full_like(ys, np.inf)
    return np.minimum(np.minimum(left, right)[None, :], np.minimum(top, bottom)[:, None])

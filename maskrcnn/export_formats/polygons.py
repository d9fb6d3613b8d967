"""Instance masks -> editable polygons for the labelling tools, with scikit-image's contours.

A polygon is a (P, 2) float array of x, y in image coordinates: (0, 0) is the top-left corner of
the top-left pixel, so pixel (x, y) has its centre at (x + 0.5, y + 0.5) (COCO's convention).
Each 4-connected part of a mask gives one outline: marching squares at level 0.5 on the mask
upsampled 2x, so it runs along the pixels' edges and cuts each corner by a quarter pixel only
(on the mask itself it would cut half a pixel at every diagonal step, and Douglas-Peucker then
adds its own inward error: an ellipse 24 px across lost 2% IoU at tolerance 1), simplified with
Douglas-Peucker to `tolerance` px. A hole is kept inside its part's polygon by a zero-width cut from the outline to
the hole and back (a "keyhole"): the hole is traced the other way round, so both even-odd and
non-zero filling leave it empty, and the tool shows one editable polygon.
"""

from __future__ import annotations

import numpy as np

_PAD = 1  # zero border around a cropped part, so every contour closes
_UP = 2  # contours are traced on the part upsampled this many times
# Douglas-Peucker keeps its points on the outline, so on small convex parts the polygon lies
# inside the mask (a nucleus 20 px across lost 3 % IoU at tolerance 1): a part whose polygon,
# filled again, covers its pixels at IoU below MIN_IOU is traced again at half the tolerance,
# down to MIN_TOLERANCE; `tolerance` is the most a polygon may deviate, not the least.
MIN_IOU, MIN_TOLERANCE = 0.98, 0.125


def mask_to_polygons(mask: np.ndarray, tolerance: float = 1.0) -> list[np.ndarray]:
    """(H, W) bool -> one (P, 2) x, y polygon per 4-connected part, holes joined by cuts.
    Parts too small to keep 3 points are dropped."""
    from skimage.measure import label, regionprops

    parts = label(np.asarray(mask, dtype=bool), connectivity=1)
    polygons = []
    for region in regionprops(parts):
        top, left = region.bbox[:2]
        polygon = _part_polygon(np.pad(region.image, _PAD), tolerance)
        if polygon is not None:
            polygons.append(polygon + np.array([left - _PAD, top - _PAD]))
    return polygons


def _part_polygon(part: np.ndarray, tolerance: float) -> np.ndarray | None:
    """(h, w) bool of one padded part -> its joined polygon, at the largest tolerance (halving
    from `tolerance`) whose filled polygon covers the part at IoU >= MIN_IOU."""
    while True:
        rings = _rings(part, tolerance)
        if not rings:
            return None
        polygon = _join(rings)
        if tolerance <= MIN_TOLERANCE or _filled_iou(polygon, part) >= MIN_IOU:
            return polygon
        tolerance /= 2


def _filled_iou(polygon: np.ndarray, part: np.ndarray) -> float:
    """IoU of the polygon filled by pycocotools (as COCO tools rasterise it) with the part."""
    from pycocotools import mask as mask_utils

    h, w = part.shape
    filled = mask_utils.decode(mask_utils.frPyObjects([polygon.ravel().tolist()], h, w))[..., 0].astype(bool)
    union = (filled | part).sum()
    return float((filled & part).sum() / union) if union else 1.0


def join_polygons(polygons: list[np.ndarray]) -> np.ndarray:
    """Several polygons of one instance -> one, joined by zero-width cuts (for formats that have
    no way to group regions: VIA, Label Studio)."""
    return _join(polygons)


def _rings(part: np.ndarray, tolerance: float) -> list[np.ndarray]:
    """(h, w) bool of one padded part -> [outline, hole, ...] as (P, 2) x, y in the part's pixel
    coordinates, the holes the other way round from the outline."""
    from skimage.measure import approximate_polygon, find_contours

    fine = np.repeat(np.repeat(part, _UP, axis=0), _UP, axis=1).astype(np.float32)  # (h*UP, w*UP)
    rings = []
    for contour in find_contours(fine, 0.5):  # (P, 2) row, col of subpixel centres; closed
        contour = (contour + 0.5) / _UP
        ring = approximate_polygon(contour, tolerance) if tolerance > 0 else contour
        ring = ring[:-1, ::-1]  # drop the repeated last point; -> x, y
        if len(ring) >= 3:
            rings.append(ring)
    if not rings:
        return []
    areas = np.array([_signed_area(r) for r in rings])
    outer = int(np.argmax(np.abs(areas)))  # the outline encloses every hole
    sign = np.sign(areas[outer])
    oriented = [r if np.sign(a) == (sign if i == outer else -sign) else r[::-1]
                for i, (r, a) in enumerate(zip(rings, areas))]
    return [oriented[outer]] + [r for i, r in enumerate(oriented) if i != outer]


def _join(rings: list[np.ndarray]) -> np.ndarray:
    """[first, other, ...] (P_i, 2) -> one ring: each other ring spliced in at its vertex nearest
    to the ring built so far, by a zero-width cut there and back."""
    joined = rings[0]
    for ring in rings[1:]:
        distances = np.linalg.norm(joined[:, None, :] - ring[None, :, :], axis=2)  # (J, R)
        i, j = np.unravel_index(np.argmin(distances), distances.shape)
        loop = np.concatenate([ring[j:], ring[:j + 1]])  # starts and ends at the nearest vertex
        joined = np.concatenate([joined[:i + 1], loop, joined[i:]])
    return joined


def _signed_area(ring: np.ndarray) -> float:
    x, y = ring[:, 0], ring[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))

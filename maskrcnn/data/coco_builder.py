"""Assemble a COCO instances dict from any foreign format: the importers' shared last step.

Importers add images (kept even without objects) and instances named by class; the builder
rasterises each instance once to get its COCO `bbox` (tight box of the mask's pixels) and `area`
(pixel count), and numbers the categories. Polygons stay polygons; masks become compressed RLE.
A polygon with vertices outside the image (tools let a vertex land past the far edge, x > width)
is clipped to the image rectangle, counted and reported as clipped: its pixels inside the image
are unchanged, so no box outside the image reaches training.

Shape helpers turn the primitives annotation tools draw (rectangles, circles, rotated ellipses)
into polygons or masks in image coordinates: (0, 0) is the top-left corner of the top-left
pixel, so pixel (x, y) covers [x, x + 1) x [y, y + 1) and its centre is (x + 0.5, y + 0.5).
"""

from __future__ import annotations

import logging

import numpy as np

from ..errors import DatasetError
from ..ops.rle import encode_masks, rle_area, rle_to_xywh, segmentation_to_rle

logger = logging.getLogger(__name__)


class CocoBuilder:
    """Collects images and instances; `to_coco(classes)` numbers categories 1..K in order."""

    def __init__(self, source: str, declared_classes=()):
        self.source = source  # the annotation file or folder, for messages
        self.declared = list(dict.fromkeys(declared_classes))  # classes the format lists itself
        self.images: list[dict] = []
        self.instances: list[dict] = []  # {image_id, name, segmentation, iscrowd, where}
        self.skipped: dict[str, int] = {}
        self.clipped = 0  # polygons clipped to their image

    def add_image(self, file_name: str, height: int, width: int) -> int:
        """Add an image (`file_name` relative to the dataset's image root, size in pixels); -> its id
        (1, 2, ... in the order added), for the `add_*` calls of its instances."""
        image_id = len(self.images) + 1
        self.images.append({"id": image_id, "file_name": file_name,
                            "height": int(height), "width": int(width)})
        return image_id

    def add_polygons(self, image_id: int, name: str, polygons: list[list[float]], where: str,
                     iscrowd: int = 0) -> None:
        """polygons: one or more flat [x0, y0, x1, y1, ...] outlines of one object."""
        for polygon in polygons:
            if len(polygon) < 6 or len(polygon) % 2:
                raise DatasetError(f"{where}: a polygon needs at least 3 (x, y) points, got "
                                   f"{len(polygon) / 2:g}")
            if not all(np.isfinite(polygon)):
                raise DatasetError(f"{where}: polygon coordinates must be finite numbers")
        image = self.images[image_id - 1]
        segmentation = []
        for polygon in polygons:
            clipped = clip_polygon(polygon, image["width"], image["height"])
            if clipped != polygon:
                self.clipped += 1
            if len(clipped) >= 6:
                segmentation.append(clipped)
        if segmentation:
            self._add(image_id, name, segmentation, where, iscrowd)
        else:
            self.skip("object with no pixel inside the image", where)

    def add_mask(self, image_id: int, name: str, mask: np.ndarray, where: str,
                 iscrowd: int = 0) -> None:
        """mask: (H, W) bool at the image's size."""
        self._add(image_id, name, encode_masks(mask[None])[0], where, iscrowd)

    def skip(self, reason: str, where: str) -> None:
        """Count something the format allows but an instance mask cannot use (a line, a point)."""
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        if self.skipped[reason] <= 3:
            logger.warning("%s: %s - skipped", where, reason)

    def _add(self, image_id: int, name: str, segmentation, where: str, iscrowd: int) -> None:
        if not isinstance(name, str) or not name.strip():
            raise DatasetError(f"{where}: no class name")
        self.instances.append({"image_id": image_id, "name": name.strip(),
                               "segmentation": segmentation, "iscrowd": iscrowd, "where": where})

    def to_coco(self, classes=None, category_ids=None) -> dict:
        """The COCO dict. `classes` fixes the categories and their order (ids 1..K, or
        `category_ids`); otherwise the format's declared classes, then any others sorted."""
        names = list(classes) if classes else self._class_order()
        ids = list(category_ids) if category_ids else list(range(1, len(names) + 1))
        id_of = dict(zip(names, ids))
        annotations = []
        for instance in self.instances:
            if instance["name"] not in id_of:
                raise DatasetError(f"{instance['where']}: class '{instance['name']}' is not in "
                                   f"--classes ({', '.join(names)})")
            annotation = self._annotation(instance, id_of[instance["name"]], len(annotations) + 1)
            if annotation is not None:
                annotations.append(annotation)
        if self.clipped:
            logger.warning("%s: clipped %d polygons to their image (vertices outside it, e.g. on "
                           "x = width)", self.source, self.clipped)
        if self.skipped:
            logger.warning("%s: skipped %s", self.source,
                           ", ".join(f"{n} x {reason}" for reason, n in self.skipped.items()))
        return {"images": self.images, "annotations": annotations,
                "categories": [{"id": i, "name": n} for n, i in zip(names, ids)]}

    def _class_order(self) -> list[str]:
        used = {instance["name"] for instance in self.instances}
        return self.declared + sorted(used - set(self.declared))

    def _annotation(self, instance: dict, category_id: int, ann_id: int) -> dict | None:
        image = self.images[instance["image_id"] - 1]
        rle = segmentation_to_rle(instance["segmentation"], image["height"], image["width"])
        area = float(rle_area([rle])[0])
        if area == 0:
            self.skip("object with no pixel inside the image", instance["where"])
            return None
        return {"id": ann_id, "image_id": instance["image_id"], "category_id": category_id,
                "segmentation": instance["segmentation"], "area": area,
                "bbox": [float(v) for v in rle_to_xywh([rle])[0]], "iscrowd": instance["iscrowd"]}


def box_polygon(x1: float, y1: float, x2: float, y2: float) -> list[float]:
    """The four corners of an axis-aligned box, clockwise from the top-left."""
    x1, x2 = sorted((x1, x2))
    y1, y2 = sorted((y1, y2))
    return [x1, y1, x2, y1, x2, y2, x1, y2]


def clip_polygon(polygon: list[float], width: float, height: float) -> list[float]:
    """The flat polygon clipped to [0, width] x [0, height] (Sutherland-Hodgman; unchanged, as
    floats, when it is inside). May return fewer than 3 points when nothing is inside."""
    points = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)  # (P, 2) x, y
    if (points >= 0).all() and (points[:, 0] <= width).all() and (points[:, 1] <= height).all():
        return [float(v) for v in polygon]
    for axis, limit, keep_below in ((0, 0.0, False), (0, width, True), (1, 0.0, False),
                                    (1, height, True)):
        points = _clip_half_plane(points, axis, limit, keep_below)
        if len(points) == 0:
            break
    return points.reshape(-1).tolist()


def _clip_half_plane(points: np.ndarray, axis: int, limit: float, keep_below: bool) -> np.ndarray:
    """(P, 2) -> (Q, 2): the polygon's part with points[:, axis] <= limit (or >= when not
    keep_below); each edge crossing the line adds the crossing point."""
    inside = points[:, axis] <= limit if keep_below else points[:, axis] >= limit
    following = np.roll(points, -1, axis=0)
    following_inside = np.roll(inside, -1)
    out = []
    for point, nxt, here, there in zip(points, following, inside, following_inside):
        if here:
            out.append(point)
        if here != there:  # the edge crosses the line: add the crossing
            t = (limit - point[axis]) / (nxt[axis] - point[axis])
            out.append(point + t * (nxt - point))
    return np.asarray(out, dtype=np.float64).reshape(-1, 2)


def ellipse_mask(height: int, width: int, cx: float, cy: float, rx: float, ry: float,
                 theta: float = 0.0) -> np.ndarray:
    """(H, W) bool: pixels whose centre lies inside the ellipse (radii rx, ry, rotated by
    `theta` radians clockwise on screen, i.e. from +x towards +y)."""
    ys, xs = np.mgrid[0:height, 0:width] + 0.5  # (H, W) pixel centres
    dx, dy = xs - cx, ys - cy
    u = dx * np.cos(theta) + dy * np.sin(theta)  # along the rotated x axis
    v = -dx * np.sin(theta) + dy * np.cos(theta)
    return (u / max(rx, 1e-9)) ** 2 + (v / max(ry, 1e-9)) ** 2 <= 1.0


def parse_classes(text: str | None) -> list[str] | None:
    """`--classes a,b,c` -> ["a", "b", "c"] (None when not given); duplicates are an error."""
    if not text:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    if len(set(names)) != len(names):
        raise DatasetError(f"--classes lists a class twice: {text}")
    return names

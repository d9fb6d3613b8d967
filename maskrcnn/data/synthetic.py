"""Synthetic shapes: a COCO-format dataset of overlapping circles, triangles and squares.

Each image is a textured background with 1-6 shapes of random colour, size, position and
rotation, painted in order, so later shapes hide parts of earlier ones. A shape's mask is its
*visible* part. Everything is a function of (seed, image index), so a dataset is reproducible and
any one image can be regenerated alone. Masks are stored as compressed RLE. `style="quality"`
renders synthetic_quality.py's scenes instead (thin parts, camouflage, blur, occluding bars).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ..fileio import atomic_write, write_json_atomic
from ..ops.rle import encode_masks, rle_area, rle_to_xywh

CATEGORIES = (
    {"id": 1, "name": "circle", "supercategory": "shape"},
    {"id": 2, "name": "triangle", "supercategory": "shape"},
    {"id": 3, "name": "square", "supercategory": "shape"},
)
MAX_SHAPES = 6
# a shape mostly hidden by others is unrecognisable: it is neither painted nor annotated
MIN_VISIBLE_FRACTION = 0.25
MIN_VISIBLE_PIXELS = 20
# scene styles: plain shapes, or shapes whose mask quality varies (synthetic_quality.py)
STYLES = ("shapes", "quality")


def render_scene(rng: np.random.Generator, size: int):
    """One image: (H, W, 3) uint8 pixels, (N, H, W) bool visible masks, (N,) category ids."""
    kinds = rng.integers(1, len(CATEGORIES) + 1, size=rng.integers(1, MAX_SHAPES + 1))
    full = np.stack([_shape_mask(int(k), rng, size) for k in kinds])  # (n, H, W)
    visible = _visible(full)
    keep = (visible.sum((1, 2)) >= np.maximum(MIN_VISIBLE_PIXELS,
                                              MIN_VISIBLE_FRACTION * full.sum((1, 2))))
    # dropping shapes only uncovers others, so one pass leaves every kept shape visible enough
    full, kinds = full[keep], kinds[keep]
    visible = _visible(full)
    image = _background(rng, size)
    colours = rng.uniform(0, 255, size=(len(kinds), 3))
    for mask, colour in zip(full, colours):  # painter's order: later shapes cover earlier ones
        image[mask] = colour + rng.normal(0, 6, size=(int(mask.sum()), 3))
    return np.clip(image, 0, 255).astype(np.uint8), visible, kinds


def _visible(full: np.ndarray) -> np.ndarray:
    """(n, H, W) shape masks in painting order -> the part of each not covered by a later one."""
    covered_later = np.zeros_like(full)
    covered_later[:-1] = np.logical_or.accumulate(full[::-1], axis=0)[::-1][1:]
    return full & ~covered_later


def _shape_mask(kind: int, rng: np.random.Generator, size: int) -> np.ndarray:
    """(H, W) bool mask of one random circle (1), triangle (2) or square (3)."""
    radius = rng.uniform(0.07, 0.22) * size
    cx, cy = rng.uniform(0.1, 0.9, size=2) * size
    angle = rng.uniform(0, 2 * np.pi)
    return shape_mask(kind, radius, cx, cy, angle, size)


def shape_mask(kind: int, radius: float, cx: float, cy: float, angle: float, size: int) -> np.ndarray:
    """(size, size) bool mask of a circle (1), triangle (2) or square (3) of circumradius
    `radius` centred at (cx, cy), rotated by `angle` radians."""
    grid = np.arange(size) + 0.5  # pixel centres
    dx, dy = grid[None, :] - cx, grid[:, None] - cy  # (1, W), (H, 1)
    if kind == 1:
        return dx**2 + dy**2 <= radius**2
    u = dx * np.cos(angle) + dy * np.sin(angle)  # rotated frame, (H, W)
    v = -dx * np.sin(angle) + dy * np.cos(angle)
    if kind == 3:
        return np.maximum(np.abs(u), np.abs(v)) <= radius / np.sqrt(2)
    # equilateral triangle: inside all three edges, whose outward normals are 120 degrees apart
    normals = np.array([[np.cos(a), np.sin(a)] for a in (0, 2 * np.pi / 3, 4 * np.pi / 3)])
    distance = normals[:, 0, None, None] * u + normals[:, 1, None, None] * v  # (3, H, W)
    return (distance <= radius / 2).all(axis=0)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """(H, W, 3) float texture: smooth colour blobs plus fine grain."""
    coarse = rng.uniform(0, 255, size=(6, 6, 3)).astype(np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize((size, size), Image.BILINEAR), np.float64)
    return smooth + rng.normal(0, 8, size=(size, size, 3))


def synthetic_coco(num_images: int, seed: int, size: int = 256, image_dir=None, style: str = "shapes") -> dict:
    """COCO dict for `num_images` scenes of a style in STYLES; PNGs are written to `image_dir` when given."""
    render = _renderer(style)
    images, annotations = [], []
    for index in range(num_images):
        pixels, masks, kinds = render(np.random.default_rng([seed, index]), size)
        image_id = index + 1
        file_name = f"{index:06d}.png"
        if image_dir is not None:
            image = Image.fromarray(pixels)
            atomic_write(Path(image_dir) / file_name, lambda f: image.save(f, format="PNG", compress_level=1))
        images.append({"id": image_id, "file_name": file_name, "height": size, "width": size})
        annotations += _annotations(masks, kinds, image_id, first_id=len(annotations) + 1)
    return {"images": images, "annotations": annotations, "categories": list(CATEGORIES)}


def _renderer(style: str):
    """The scene function of a style: `shapes` (above) or `quality` (synthetic_quality.py)."""
    if style == "shapes":
        return render_scene
    if style == "quality":
        from .synthetic_quality import render_quality_scene

        return render_quality_scene
    raise ValueError(f"unknown synthetic style {style!r}; choose from {', '.join(STYLES)}")


def _annotations(masks: np.ndarray, kinds: np.ndarray, image_id: int, first_id: int) -> list[dict]:
    rles = encode_masks(masks)
    boxes, areas = rle_to_xywh(rles), rle_area(rles)
    return [
        {"id": first_id + i, "image_id": image_id, "category_id": int(kinds[i]),
         "segmentation": rles[i], "bbox": [float(v) for v in boxes[i]], "area": float(areas[i]),
         "iscrowd": 0}
        for i in range(len(rles))
    ]


def write_synthetic_dataset(out_dir, num_images: int, seed: int, size: int = 256, style: str = "shapes") -> Path:
    """Write `out_dir/images/*.png` and `out_dir/annotations.json`; returns the json path."""
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    data = synthetic_coco(num_images, seed, size, image_dir=out_dir / "images", style=style)
    ann_file = out_dir / "annotations.json"
    write_json_atomic(ann_file, data)
    return ann_file

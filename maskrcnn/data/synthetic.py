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
from .synthetic_quality import render_quality_scene
from .synthetic_shapes import CATEGORIES, render_scene

# scene styles: plain shapes, or shapes whose mask quality varies (synthetic_quality.py)
STYLES = ("shapes", "quality")


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

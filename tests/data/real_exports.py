"""Helpers for the tests on real tool exports (tests/data/fixtures/<tool>/, sources in SOURCE.md):
copy a fixture, draw blank images of the sizes the export states, and rasterise independently."""

import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

FIXTURES = Path(__file__).parent / "fixtures"


def copy_fixture(tool: str, name: str, folder: Path) -> Path:
    """The fixture copied into `folder` (conversion may write beside it)."""
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(FIXTURES / tool / name, folder / name))


def blank_image(path: Path, height: int, width: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, height), (90, 90, 90)).save(path)


def polygon_mask(polygons, height: int, width: int) -> np.ndarray:
    """(H, W) bool by pycocotools (COCO's own rasteriser), from raw coordinates."""
    rles = mask_utils.frPyObjects([list(map(float, p)) for p in polygons], height, width)
    return mask_utils.decode(mask_utils.merge(rles)).astype(bool)


def converted_masks(coco: dict) -> dict:
    """image file_name -> [(category name, (H, W) bool mask)] of a COCO dict, decoded by pycocotools."""
    names = {c["id"]: c["name"] for c in coco["categories"]}
    images = {im["id"]: im for im in coco["images"]}
    out = {im["file_name"]: [] for im in coco["images"]}
    for ann in coco["annotations"]:
        image = images[ann["image_id"]]
        h, w = image["height"], image["width"]
        seg = ann["segmentation"]
        if isinstance(seg, list):
            mask = polygon_mask(seg, h, w)
        else:
            rle = mask_utils.frPyObjects(seg, h, w) if isinstance(seg["counts"], list) else seg
            mask = mask_utils.decode(rle).astype(bool)
        out[image["file_name"]].append((names[ann["category_id"]], mask))
    return out


def read_json(path) -> dict:
    return json.loads(Path(path).read_text())

"""Datasets stored as mask PNGs instead of json, and their conversion to COCO json.

Two layouts:
- instance-id PNG per image (Penn-Fudan): `PNGImages/<name>.png` + `PedMasks/<name>_mask.png`,
  pixel value 0 = background, 1..N = instance id;
- one PNG per instance (Kaggle nuclei): `<id>/images/<id>.png` + `<id>/masks/*.png`, non-zero =
  the instance.
Every instance gets label 1. A mask PNG whose size differs from its image raises DatasetError
naming both files; an all-zero per-instance mask is skipped, counted and logged.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from ..errors import DatasetError
from ..ops.rle import encode_masks, rle_area, rle_to_xywh
from .coco import BACKGROUND
from .images import image_size, read_image, read_mask

logger = logging.getLogger(__name__)


class MaskFolderDataset(torch.utils.data.Dataset):
    """Yields `(image, target)` like CocoDataset: boxes (N, 4) xyxy from the masks, labels (N,)
    all 1, masks (N, H, W) uint8, image_id (index + 1), area (N,) mask pixel counts."""

    def __init__(self, root, items, class_name: str, transforms=None):
        self.root = Path(root)
        self.items = items  # [(image path, [mask paths])]
        self.class_names = (BACKGROUND, class_name)
        self.category_ids = (0, 1)
        self.transforms = transforms
        self.skipped_empty_masks = 0
        if not items:
            raise DatasetError(f"{self.root}: no images found in the expected layout")

    def __len__(self) -> int:
        return len(self.items)

    def instance_masks(self, index: int) -> np.ndarray:
        """(N, H, W) bool masks of image `index`, checked against the image size."""
        image_path, mask_paths = self.items[index]
        height, width = image_size(image_path)
        masks = [self._split(_read_mask(p, (height, width), image_path)) for p in mask_paths]
        return np.concatenate(masks) if masks else np.zeros((0, height, width), dtype=bool)

    def _split(self, mask: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __getitem__(self, index: int):
        image = read_image(self.items[index][0])  # (3, H, W)
        masks = self.instance_masks(index)  # (N, H, W)
        target = {
            "boxes": boxes_from_masks(masks),
            "labels": torch.ones(len(masks), dtype=torch.int64),
            "masks": torch.from_numpy(masks.astype(np.uint8)),
            "image_id": index + 1,
            "area": torch.from_numpy(masks.sum((1, 2)).astype(np.float32)),
        }
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target


class InstanceIdPngDataset(MaskFolderDataset):
    """Penn-Fudan layout: `<root>/PNGImages/*.png` with `<root>/PedMasks/<stem>_mask.png`."""

    def __init__(self, root, class_name: str = "person", image_subdir: str = "PNGImages",
                 mask_subdir: str = "PedMasks", mask_suffix: str = "_mask", transforms=None):
        root = Path(root)
        items = []
        for image_path in sorted((root / image_subdir).glob("*.png")):
            mask_path = root / mask_subdir / f"{image_path.stem}{mask_suffix}.png"
            if not mask_path.is_file():
                raise DatasetError(f"{mask_path}: mask PNG for image {image_path.name} not found")
            items.append((image_path, [mask_path]))
        super().__init__(root, items, class_name, transforms)

    def _split(self, mask: np.ndarray) -> np.ndarray:
        ids = np.unique(mask)
        ids = ids[ids != 0]
        return mask[None] == ids[:, None, None]  # (N, H, W), in increasing id order


class PerInstancePngDataset(MaskFolderDataset):
    """Kaggle nuclei layout: `<root>/<id>/images/<id>.png` with `<root>/<id>/masks/*.png`."""

    def __init__(self, root, class_name: str = "object", transforms=None):
        root = Path(root)
        items = []
        for folder in sorted(p for p in root.iterdir() if p.is_dir()):
            image_path = folder / "images" / f"{folder.name}.png"
            if not image_path.is_file():
                raise DatasetError(f"{image_path}: image of sample '{folder.name}' not found")
            items.append((image_path, sorted((folder / "masks").glob("*.png"))))
        super().__init__(root, items, class_name, transforms)

    def _split(self, mask: np.ndarray) -> np.ndarray:
        if not mask.any():
            self.skipped_empty_masks += 1
            logger.warning("%s: skipped an all-zero instance mask (%d so far)",
                           self.root, self.skipped_empty_masks)
            return np.zeros((0, *mask.shape), dtype=bool)
        return (mask != 0)[None]


def _read_mask(path: Path, size: tuple[int, int], image_path: Path) -> np.ndarray:
    """(H, W) integer mask; palette PNGs keep their indices (= instance ids)."""
    mask = read_mask(path)
    if mask.ndim == 3:  # an RGB(A) mask: any non-zero channel is foreground
        mask = mask.max(axis=2)
    if mask.shape != size:
        raise DatasetError(
            f"{path}: mask is {mask.shape[1]}x{mask.shape[0]} but its image {image_path} is "
            f"{size[1]}x{size[0]}; masks must have the size of their image"
        )
    return mask


def boxes_from_masks(masks: np.ndarray) -> torch.Tensor:
    """(N, H, W) masks -> (N, 4) tight xyxy boxes on pixel edges (x2 = last column + 1)."""
    if len(masks) == 0:
        return torch.zeros((0, 4), dtype=torch.float32)
    rows, cols = masks.any(axis=2), masks.any(axis=1)  # (N, H), (N, W)
    y1, x1 = rows.argmax(1), cols.argmax(1)
    y2 = masks.shape[1] - rows[:, ::-1].argmax(1)
    x2 = masks.shape[2] - cols[:, ::-1].argmax(1)
    return torch.from_numpy(np.stack([x1, y1, x2, y2], axis=1).astype(np.float32))


def to_coco(dataset: MaskFolderDataset) -> dict:
    """COCO dict (compressed-RLE segmentations) whose `file_name`s are relative to dataset.root."""
    images, annotations = [], []
    for index, (image_path, _) in enumerate(dataset.items):
        masks = dataset.instance_masks(index)
        height, width = masks.shape[1:]
        file_name = image_path.relative_to(dataset.root).as_posix()
        images.append({"id": index + 1, "file_name": file_name,
                       "height": int(height), "width": int(width)})
        rles = encode_masks(masks)
        for rle, box, area in zip(rles, rle_to_xywh(rles), rle_area(rles)):
            annotations.append({"id": len(annotations) + 1, "image_id": index + 1, "category_id": 1,
                                "segmentation": rle, "bbox": [float(v) for v in box],
                                "area": float(area), "iscrowd": 0})
    categories = [{"id": 1, "name": dataset.class_names[1]}]
    return {"images": images, "annotations": annotations, "categories": categories}

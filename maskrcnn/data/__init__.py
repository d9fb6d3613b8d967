"""Datasets yielding `(image, target)`, their transforms, and the synthetic-shapes generator."""

from .coco import CocoDataset, load_json
from .images import image_size, read_image
from .mask_folders import InstanceIdPngDataset, MaskFolderDataset, PerInstancePngDataset, to_coco
from .synthetic import synthetic_coco, write_synthetic_dataset
from .transforms import COCO_KEYPOINT_FLIP_MAP, RandomHorizontalFlip, keypoint_flip_map

__all__ = [
    "CocoDataset", "load_json", "read_image", "image_size", "MaskFolderDataset",
    "InstanceIdPngDataset", "PerInstancePngDataset", "to_coco", "synthetic_coco",
    "write_synthetic_dataset", "RandomHorizontalFlip", "keypoint_flip_map", "COCO_KEYPOINT_FLIP_MAP",
]

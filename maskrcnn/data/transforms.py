"""Training-time geometric transforms on `(image, target)` pairs.

Each transform is a callable `(image, target) -> (image, target)`; image is (3, H, W) float,
target the dict a dataset yields (boxes (N, 4) xyxy, masks (N, H, W), optional keypoints
(N, K, 3) and area (N,)). Nothing here changes pixel values beyond resampling: there is no
photometric augmentation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# COCO person keypoint order; flipping an image turns each left keypoint into the right one
COCO_KEYPOINT_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)


def keypoint_flip_map(names) -> tuple[int, ...]:
    """Index permutation that swaps every `left_*` keypoint with its `right_*` twin."""
    index = {name: i for i, name in enumerate(names)}

    def twin(name: str) -> str:
        if name.startswith("left_"):
            return "right_" + name[len("left_"):]
        if name.startswith("right_"):
            return "left_" + name[len("right_"):]
        return name

    return tuple(index.get(twin(name), i) for i, name in enumerate(names))


COCO_KEYPOINT_FLIP_MAP = keypoint_flip_map(COCO_KEYPOINT_NAMES)


class Compose:
    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, image, target):
        for transform in self.transforms:
            image, target = transform(image, target)
        return image, target


def resized_shape(height: int, width: int, short_side: int, max_size: int) -> tuple[int, int]:
    """(h, w) with the short side at `short_side`, unless the long side would pass `max_size`."""
    scale = short_side / min(height, width)
    if max(height, width) * scale > max_size:
        scale = max_size / max(height, width)
    return round(height * scale), round(width * scale)


class Resize:
    """Resize by short side (one size, or one drawn per image from a tuple) with a long-side cap."""

    def __init__(self, min_size, max_size: int):
        self.min_size = (min_size,) if isinstance(min_size, int) else tuple(min_size)
        self.max_size = max_size

    def __call__(self, image, target):
        short = self.min_size[int(torch.randint(len(self.min_size), ()))]
        height, width = image.shape[-2:]
        new_h, new_w = resized_shape(height, width, short, self.max_size)
        image = F.interpolate(image[None], size=(new_h, new_w), mode="bilinear",
                              align_corners=False)[0]
        return image, _resize_target(target, new_w / width, new_h / height, (new_h, new_w))


def _resize_target(target: dict, sx: float, sy: float, size: tuple[int, int]) -> dict:
    target = dict(target)
    scale = torch.tensor([sx, sy, sx, sy])
    target["boxes"] = target["boxes"] * scale
    if "area" in target:
        target["area"] = target["area"] * (sx * sy)
    target["masks"] = _resize_masks(target["masks"], size)
    if "keypoints" in target:
        keypoints = target["keypoints"].clone()  # (N, K, 3)
        keypoints[..., 0] *= sx
        keypoints[..., 1] *= sy
        target["keypoints"] = keypoints
    return target


def _resize_masks(masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, H, W) -> (N, h, w); nearest keeps masks binary. interpolate refuses N = 0."""
    if len(masks) == 0:
        return masks.new_zeros((0, *size))
    return F.interpolate(masks[None].float(), size=size, mode="nearest")[0].to(masks.dtype)


class RandomHorizontalFlip:
    """Mirror image, boxes, masks and keypoints with probability `prob`."""

    def __init__(self, prob: float = 0.5, flip_map=COCO_KEYPOINT_FLIP_MAP):
        self.prob = prob
        self.flip_map = list(flip_map)

    def __call__(self, image, target):
        if float(torch.rand(())) >= self.prob:
            return image, target
        return image.flip(-1), flip_target(target, image.shape[-1], self.flip_map)


def flip_target(target: dict, width: int, flip_map) -> dict:
    """Horizontal flip of a target on an image `width` pixels wide (pixel-edge coordinates)."""
    target = dict(target)
    boxes = target["boxes"]  # (N, 4) xyxy
    target["boxes"] = torch.stack(
        [width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], dim=1)
    target["masks"] = target["masks"].flip(-1)
    if "keypoints" in target:
        keypoints = target["keypoints"][:, list(flip_map)].clone()  # (N, K, 3), left <-> right
        keypoints[..., 0] = width - keypoints[..., 0]
        keypoints[keypoints[..., 2] == 0] = 0  # unlabelled keypoints stay all-zero
        target["keypoints"] = keypoints
    return target


def build_transforms(input_cfg, train: bool, keypoint_names=COCO_KEYPOINT_NAMES) -> Compose:
    """Transforms from an `InputConfig`: resize always; flip only for training."""
    steps = [Resize(input_cfg.min_size if train else input_cfg.min_size[-1], input_cfg.max_size)]
    if train and input_cfg.hflip_prob > 0:
        steps.append(RandomHorizontalFlip(input_cfg.hflip_prob, keypoint_flip_map(keypoint_names)))
    return Compose(steps)

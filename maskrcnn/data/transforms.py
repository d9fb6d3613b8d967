"""Training-time geometric transforms on `(image, target)` pairs.

Each transform is a callable `(image, target) -> (image, target)`; image is (3, H, W) float,
target the dict a dataset yields (boxes (N, 4) xyxy, masks (N, H, W), optional keypoints
(N, K, 3) and area (N,)). Nothing here changes pixel values: there is no photometric
augmentation, and resizing is the model's (MaskRCNN.preprocess).
"""

from __future__ import annotations

import torch

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

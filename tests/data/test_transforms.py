"""Transforms: flip twice = identity, left/right keypoints swap, boxes follow masks."""

import torch

from maskrcnn.data.mask_folders import boxes_from_masks
from maskrcnn.data.transforms import COCO_KEYPOINT_FLIP_MAP, RandomHorizontalFlip, keypoint_flip_map


def _sample(height=40, width=60):
    image = torch.rand(3, height, width)
    masks = torch.zeros(2, height, width, dtype=torch.uint8)
    masks[0, 5:15, 10:30] = 1
    masks[1, 20:38, 41:59] = 1
    keypoints = torch.zeros(2, 17, 3)
    keypoints[0, 1] = torch.tensor([12.0, 7.0, 2])  # left_eye
    keypoints[0, 2] = torch.tensor([20.0, 7.0, 1])  # right_eye
    target = {"boxes": boxes_from_masks(masks.numpy().astype(bool)), "masks": masks,
              "labels": torch.tensor([1, 2]), "keypoints": keypoints,
              "area": masks.sum((1, 2)).float()}
    return image, target


def test_coco_flip_map_swaps_every_left_right_pair():
    assert COCO_KEYPOINT_FLIP_MAP == (0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15)
    assert keypoint_flip_map(["head", "right_hand", "left_hand"]) == (0, 2, 1)


def test_flip_moves_pixels_boxes_masks_and_swaps_keypoints():
    image, target = _sample()
    flipped_image, flipped = RandomHorizontalFlip(prob=1.0)(image, target)
    assert torch.equal(flipped_image[:, :, 0], image[:, :, -1])
    assert flipped["boxes"][0].tolist() == [60 - 30, 5, 60 - 10, 15]
    assert torch.equal(flipped["boxes"], boxes_from_masks(flipped["masks"].numpy().astype(bool)))
    # the left eye at x=12 is the right eye at x=60-12 in the mirror image
    assert flipped["keypoints"][0, 2].tolist() == [48.0, 7.0, 2.0]
    assert flipped["keypoints"][0, 1].tolist() == [40.0, 7.0, 1.0]
    assert flipped["keypoints"][1].abs().sum() == 0  # unlabelled keypoints stay zero


def test_flip_twice_is_identity():
    image, target = _sample()
    flip = RandomHorizontalFlip(prob=1.0)
    again_image, again = flip(*flip(image, target))
    assert torch.equal(again_image, image)
    for key in ("boxes", "masks", "keypoints", "labels"):
        assert torch.equal(again[key], target[key])


def test_flip_probability_zero_changes_nothing():
    image, target = _sample()
    out_image, out = RandomHorizontalFlip(prob=0.0)(image, target)
    assert out_image is image and out is target


def test_images_without_instances_pass_through():
    image, target = _sample()
    empty = {"boxes": target["boxes"][:0], "masks": target["masks"][:0],
             "keypoints": target["keypoints"][:0], "labels": target["labels"][:0]}
    out_image, out = RandomHorizontalFlip(prob=1.0)(image, empty)
    assert torch.equal(out_image, image.flip(-1))
    assert out["masks"].shape == (0, 40, 60) and out["boxes"].shape == (0, 4)
    assert out["keypoints"].shape == (0, 17, 3)

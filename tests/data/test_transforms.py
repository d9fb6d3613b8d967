"""Transforms: flip twice = identity, left/right keypoints swap, resize sizes, boxes follow masks."""

import pytest
import torch

from maskrcnn.config import InputConfig
from maskrcnn.data.mask_folders import boxes_from_masks
from maskrcnn.data.transforms import (COCO_KEYPOINT_FLIP_MAP, COCO_KEYPOINT_NAMES,
                                      RandomHorizontalFlip, Resize, build_transforms,
                                      keypoint_flip_map, resized_shape)


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


@pytest.mark.parametrize("size, short, cap, expected", [
    ((40, 60), 20, 1000, (20, 30)),  # short side hits 20
    ((40, 60), 80, 100, (67, 100)),  # long side capped at 100
    ((60, 40), 30, 1000, (45, 30)),
])
def test_resized_shape(size, short, cap, expected):
    assert resized_shape(*size, short, cap) == expected


def test_resize_scales_everything_and_boxes_follow_masks():
    image, target = _sample()
    out_image, out = Resize(80, 1333)(image, target)  # x2
    assert out_image.shape == (3, 80, 120)
    assert out["boxes"][0].tolist() == [20, 10, 60, 30]
    assert torch.equal(out["boxes"], boxes_from_masks(out["masks"].numpy().astype(bool)))
    assert out["keypoints"][0, 1].tolist() == [24.0, 14.0, 2.0]
    assert torch.allclose(out["area"], out["masks"].sum((1, 2)).float())
    assert out["masks"].dtype == torch.uint8 and set(out["masks"].unique().tolist()) == {0, 1}


def test_resize_picks_each_listed_size():
    image, target = _sample()
    torch.manual_seed(0)
    short_sides = {min(Resize((20, 30), 1000)(image, target)[0].shape[1:]) for _ in range(30)}
    assert short_sides == {20, 30}


def test_build_transforms_eval_uses_the_last_size_and_no_flip():
    cfg = InputConfig(min_size=(20, 30), max_size=1000, hflip_prob=1.0)  # training would always flip
    image, target = _sample()
    expected_image, expected = Resize(30, 1000)(image, target)
    out_image, out = build_transforms(cfg, train=False)(image, target)
    assert out_image.shape == (3, 30, 45) and torch.equal(out_image, expected_image)
    assert torch.equal(out["boxes"], expected["boxes"])
    train_cfg = InputConfig(min_size=(30,), max_size=1000, hflip_prob=1.0)
    train_image, _ = build_transforms(train_cfg, train=True)(image, target)
    assert torch.equal(train_image, expected_image.flip(-1))


def test_images_without_instances_pass_through():
    image, target = _sample()
    empty = {"boxes": target["boxes"][:0], "masks": target["masks"][:0],
             "keypoints": target["keypoints"][:0], "labels": target["labels"][:0]}
    out_image, out = RandomHorizontalFlip(prob=1.0)(*Resize(20, 1000)(image, empty))
    assert out_image.shape == (3, 20, 30)
    assert out["masks"].shape == (0, 20, 30) and out["boxes"].shape == (0, 4)
    assert out["keypoints"].shape == (0, 17, 3)

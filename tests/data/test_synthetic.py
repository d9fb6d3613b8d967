"""Synthetic shapes: reproducible, non-empty masks that match the painted pixels, occlusion."""

import json

import numpy as np
from PIL import Image

from maskrcnn.cli import main
from maskrcnn.data.synthetic import synthetic_coco
from maskrcnn.data.synthetic_shapes import _visible, render_scene


def test_same_seed_same_dataset_other_seed_other_dataset(tmp_path):
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        args = ["synth", "--out", str(tmp_path / name), "--num-images", "3", "--seed", str(seed),
                "--size", "64"]
        assert main(args) == 0
    read = lambda name: (json.loads((tmp_path / name / "annotations.json").read_text()),
                         [np.asarray(Image.open(p)) for p in sorted((tmp_path / name / "images").iterdir())])
    (json_a, pixels_a), (json_b, pixels_b), (json_c, pixels_c) = read("a"), read("b"), read("c")
    assert json_a == json_b and all(np.array_equal(x, y) for x, y in zip(pixels_a, pixels_b))
    assert len(pixels_a) == 3 and pixels_a[0].shape == (64, 64, 3)
    assert not np.array_equal(pixels_a[0], pixels_c[0])


def test_annotations_are_non_empty_and_consistent():
    data = synthetic_coco(num_images=20, seed=1, size=96)
    assert {c["name"] for c in data["categories"]} == {"circle", "triangle", "square"}
    assert {a["category_id"] for a in data["annotations"]} == {1, 2, 3}
    assert all(a["area"] >= 20 and a["bbox"][2] > 0 and a["bbox"][3] > 0 for a in data["annotations"])
    assert len({a["id"] for a in data["annotations"]}) == len(data["annotations"])


def test_each_visible_mask_covers_one_colour_and_masks_are_disjoint():
    rng = np.random.default_rng([0, 5])
    occluded = 0
    for _ in range(10):
        pixels, masks, kinds = render_scene(rng, 96)
        assert masks.any(axis=(1, 2)).all() and masks.sum(0).max() <= 1
        for mask in masks:
            # a shape is one colour plus noise of sigma 6; an occluder's pixels would add another
            assert pixels[mask].astype(float).std(axis=0).max() < 12
        occluded += sum(_has_split_row(m) for m in masks)
    assert occluded > 0  # convex shapes cut in two by an occluder: overlaps do happen


def _has_split_row(mask) -> bool:
    """A row with two runs: impossible for an unoccluded convex shape."""
    starts = np.diff(mask.astype(np.int8), axis=1, prepend=0) == 1  # (H, W) run starts
    return bool((starts.sum(1) > 1).any())


def test_visible_part_excludes_later_shapes():
    full = np.zeros((3, 4, 6), bool)
    full[0, :, 0:4] = True  # painted first
    full[1, :, 2:6] = True  # covers the right half of shape 0
    full[2, 0, :] = True  # covers the top row of both
    visible = _visible(full)
    expected0 = np.zeros((4, 6), bool)
    expected0[1:, 0:2] = True
    expected1 = np.zeros((4, 6), bool)
    expected1[1:, 2:6] = True
    assert np.array_equal(visible[0], expected0)
    assert np.array_equal(visible[1], expected1)
    assert np.array_equal(visible[2], full[2])

"""`maskrcnn synth --style quality`: reproducible COCO data whose masks are the visible parts
(disjoint, matching their RLE boxes and areas under pycocotools), with the difficulties it
promises: thin spokes, blurred edges, camouflage fills, occluding bars."""

import json

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from maskrcnn.cli import main
from maskrcnn.data import synthetic_quality as sq


def test_smoke_same_seed_same_dataset_and_annotations_match_pycocotools(tmp_path):
    for name in ("a", "b"):
        args = ["synth", "--style", "quality", "--out", str(tmp_path / name), "--num-images", "4",
                "--seed", "7", "--size", "64"]  # fmt: skip
        assert main(args) == 0
    data = json.loads((tmp_path / "a" / "annotations.json").read_text())
    assert data == json.loads((tmp_path / "b" / "annotations.json").read_text())
    pixels = [np.asarray(Image.open(tmp_path / name / "images" / "000000.png")) for name in ("a", "b")]
    assert np.array_equal(*pixels) and pixels[0].shape == (64, 64, 3)
    assert len(data["images"]) == 4 and data["annotations"]
    for ann in data["annotations"]:
        rle = {**ann["segmentation"], "counts": ann["segmentation"]["counts"].encode()}
        assert ann["area"] == mask_utils.area(rle) >= 20
        np.testing.assert_allclose(ann["bbox"], mask_utils.toBbox(rle))
    plain = ["synth", "--out", str(tmp_path / "plain"), "--num-images", "1", "--seed", "7", "--size", "64"]
    assert main(plain) == 0
    assert not np.array_equal(pixels[0], np.asarray(Image.open(tmp_path / "plain" / "images" / "000000.png")))


def test_unknown_style_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["synth", "--style", "hard", "--out", str(tmp_path / "x"), "--num-images", "1"])
    assert exit_info.value.code == 2 and "--style" in capsys.readouterr().err


def test_segment_mask_is_the_pixel_centres_within_half_the_width():
    # horizontal segment through row 5's centres (y = 5.5), x 2.5..7.5, 1 px wide: row 5,
    # columns 2..7; the centres of rows 4 and 6 are 1 px away, of columns 1 and 8 as well
    expected = np.zeros((10, 10), bool)
    expected[5, 2:8] = True
    np.testing.assert_array_equal(sq.segment_mask((2.5, 5.5), (7.5, 5.5), 1.0, 10), expected)


def test_masks_are_disjoint_visible_parts_with_flat_and_textured_fills():
    rng = np.random.default_rng([0, 3])
    scenes = [sq.render_quality_scene(rng, 96) for _ in range(12)]
    for pixels, masks, kinds in scenes:
        assert pixels.shape == (96, 96, 3) and len(masks) == len(kinds)
        assert masks.any(axis=(1, 2)).all() and masks.sum(0).max() <= 1
    # inside a flat fill the colour varies by the grain (sigma 6); camouflage and blur vary more
    spreads = [pixels[m].astype(float).std(0).max() for pixels, ms, _ in scenes for m in ms if m.sum() > 50]
    assert min(spreads) < 12 < max(spreads)


def test_spokes_are_thin_and_stick_out_of_the_shape(monkeypatch):
    """The same draws with and without spokes: a disc, and the disc plus 1-3 spokes of width
    1-2.2 px reaching 1.4-2 radii from its centre."""
    shapes = {}
    for thin_p in (0.0, 1.0):
        monkeypatch.setattr(sq, "THIN_P", thin_p)
        shapes[thin_p] = sq._shape_with_spokes(1, np.random.default_rng(11), 96)  # kind 1: circle
    disc, spoked = shapes[0.0], shapes[1.0]
    extra = spoked & ~disc
    assert (spoked | disc).sum() == spoked.sum() and extra.any()
    ys, xs = np.nonzero(disc)
    radius = np.sqrt(disc.sum() / np.pi)
    dy, dx = np.nonzero(extra)
    distance = np.hypot(dy - ys.mean(), dx - xs.mean())
    assert distance.max() <= 2.0 * radius + 1.5 and distance.max() >= 1.4 * radius - 1.5
    # no run of 5 pixels across a spoke in any direction: erosion by a cross of arm 2 removes it
    far = np.zeros_like(extra)
    far[dy[distance > radius + 3], dx[distance > radius + 3]] = True
    assert far.any() and not (_erode_cross(spoked, 2) & far).any()


def _erode_cross(mask: np.ndarray, arm: int) -> np.ndarray:
    """Pixels whose neighbours up to `arm` away along the row and column are all in `mask`."""
    padded = np.pad(mask, arm)
    size = mask.shape[0]
    out = mask.copy()
    for shift in range(-arm, arm + 1):
        out &= padded[arm + shift:arm + shift + size, arm:arm + size]
        out &= padded[arm:arm + size, arm + shift:arm + shift + size]
    return out

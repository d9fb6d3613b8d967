"""maskrcnn/measure.py and `Instances.measure`: regionprops values per instance, overlapping
masks measured each on its own, intensity per channel, an empty mask, --pixel-size parsing."""

import numpy as np
import pytest
import torch
from skimage.measure import regionprops

from maskrcnn.errors import UserError
from maskrcnn.measure import PixelSize, summarise
from maskrcnn.structures import Instances


def test_instances_measure_equals_regionprops():
    rng = np.random.default_rng(1)
    image = rng.random((3, 40, 50)).astype(np.float32)
    masks = np.zeros((3, 40, 50), bool)
    masks[0, 5:20, 10:30] = True
    masks[1, 10:30, 20:45] = True  # overlaps the first
    one = Instances((40, 50), ("__background__", "a", "b"), scores=torch.tensor([0.9, 0.8, 0.1]),
                    labels=torch.tensor([1, 2, 1]), masks=torch.from_numpy(masks))
    rows = one.measure(torch.from_numpy(image))
    rows = rows.to_dict("records") if hasattr(rows, "to_dict") else rows
    assert [r["label"] for r in rows] == ["a", "b", "a"]
    for row, mask in zip(rows[:2], masks[:2]):
        region, = regionprops(mask.astype(np.uint8), intensity_image=image.transpose(1, 2, 0))
        assert row["area_px2"] == region.area and row["perimeter_px"] == pytest.approx(region.perimeter)
        assert row["major_axis_px"] == pytest.approx(region.axis_major_length)
        assert row["solidity"] == pytest.approx(region.solidity)
        assert [row[f"mean_intensity_{c}"] for c in "rgb"] == pytest.approx(
            [image[c][mask].mean(dtype=np.float64) for c in range(3)], rel=1e-6)
    assert rows[2]["area_px2"] == 0 and np.isnan(rows[2]["centroid_x"])
    summary = summarise(rows)
    assert [(s["label"], s["count"], s["median_area_px2"]) for s in summary] == [
        ("a", 2, 150.0), ("b", 1, 500.0)]


def test_pixel_size_parsing():
    assert PixelSize.parse("0.5um") == PixelSize(0.5, "um")
    assert PixelSize.parse("2 µm") == PixelSize(2.0, "µm")
    assert PixelSize.parse("1e-3") == PixelSize(0.001, "unit")
    for bad in ("abc", "0", "-1um", "1.2.3mm"):
        with pytest.raises(UserError, match=f"--pixel-size {bad}: expected a positive number"):
            PixelSize.parse(bad)

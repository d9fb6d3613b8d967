"""Measurements per instance with scikit-image's `regionprops` (the `measure` extra).

`measure_masks(...)` -> one dict per instance (MEASURED columns); `summarise(rows)` -> per image
and class: count, mean and median area. `PixelSize` ("0.5um") converts lengths and areas to
units; positions (centroid, box) stay in pixels so they can be found on the image. Instances
overlap, so each is measured on its own (cropped to its box), not from one label image.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .errors import UserError

LENGTHS = ("perimeter", "equivalent_diameter", "major_axis", "minor_axis")  # scaled by the pixel size


@dataclass(frozen=True)
class PixelSize:
    """The side of one pixel: `value` `unit` (1 px when not given)."""

    value: float = 1.0
    unit: str = "px"

    @classmethod
    def parse(cls, text: str | None) -> "PixelSize":
        """'0.5um', '0.5 µm', '2' (unit 'unit') -> PixelSize; anything else is a UserError."""
        if text is None:
            return cls()
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([^\W\d_]*)\s*", text)
        if not match or float(match.group(1)) <= 0:
            raise UserError(f"--pixel-size {text}: expected a positive number and a unit, e.g. 0.5um")
        return cls(float(match.group(1)), match.group(2) or "unit")


def measure_masks(masks: np.ndarray, image: np.ndarray | None = None, labels=(), scores=(),
                  image_name: str = "", pixel_size: PixelSize = PixelSize()) -> list[dict]:
    """(N, H, W) bool masks, the (H, W, C) image they were found in (for mean intensity per
    channel) -> N dicts: image, label, score, area, perimeter, centroid_x/y, bbox_x0/y0/x1/y1
    (px, x1/y1 exclusive), equivalent_diameter, major_axis, minor_axis, eccentricity, solidity,
    orientation (degrees, skimage's: between the row axis and the major axis),
    mean_intensity_<channel>. Lengths and area carry the unit in their names."""
    from skimage.measure import regionprops

    masks = np.asarray(masks, dtype=bool)
    if image is not None and image.ndim == 2:
        image = image[..., None]
    rows = []
    for i, mask in enumerate(masks):
        row = {"image": image_name, "label": labels[i] if len(labels) else "",
               "score": float(scores[i]) if len(scores) else float("nan")}
        ys, xs = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
        if len(ys) == 0:
            rows.append({**row, **_empty(pixel_size, image)})
            continue
        box = np.s_[ys[0]:ys[-1] + 1, xs[0]:xs[-1] + 1]
        crop = None if image is None else image[box]
        region, = regionprops(mask[box].astype(np.uint8), intensity_image=crop)
        rows.append({**row, **_properties(region, ys[0], xs[0], pixel_size, crop is not None)})
    return rows


def _properties(region, top: int, left: int, size: PixelSize, intensity: bool) -> dict:
    """One region's measurements; positions shifted from its crop back to the image."""
    cy, cx = region.centroid
    y0, x0, y1, x1 = region.bbox
    unit, scale = _suffix(size), size.value
    values = {f"area_{unit}2": float(region.area) * scale ** 2,
              f"perimeter_{unit}": float(region.perimeter) * scale,
              "centroid_x": float(cx + left), "centroid_y": float(cy + top),
              "bbox_x0": int(x0 + left), "bbox_y0": int(y0 + top), "bbox_x1": int(x1 + left),
              "bbox_y1": int(y1 + top),
              f"equivalent_diameter_{unit}": float(region.equivalent_diameter_area) * scale,
              f"major_axis_{unit}": float(region.axis_major_length) * scale,
              f"minor_axis_{unit}": float(region.axis_minor_length) * scale,
              "eccentricity": float(region.eccentricity), "solidity": float(region.solidity),
              "orientation_deg": float(np.degrees(region.orientation))}
    if intensity:
        means = np.atleast_1d(region.intensity_mean)  # (C,)
        values.update({f"mean_intensity_{c}": float(m) for c, m in zip(_channels(len(means)), means)})
    return values


def _empty(size: PixelSize, image) -> dict:
    """The columns of an instance with no pixel: area 0, the rest NaN."""
    unit = _suffix(size)
    names = [f"perimeter_{unit}", "centroid_x", "centroid_y", "bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1",
             f"equivalent_diameter_{unit}", f"major_axis_{unit}", f"minor_axis_{unit}", "eccentricity",
             "solidity", "orientation_deg"]
    channels = [] if image is None else [f"mean_intensity_{c}" for c in _channels(image.shape[-1])]
    return {f"area_{unit}2": 0.0, **{name: float("nan") for name in names + channels}}


def _suffix(size: PixelSize) -> str:
    return size.unit.replace("µ", "u").replace("μ", "u")


def _channels(count: int) -> list[str]:
    return list("rgb") if count == 3 else ["gray"] if count == 1 else [str(c) for c in range(count)]


def summarise(rows: list[dict]) -> list[dict]:
    """Per (image, label), in first-seen order: count, mean and median area."""
    groups: dict[tuple, list[float]] = {}
    area = next((k for k in (rows[0] if rows else {}) if k.startswith("area_")), "area_px2")
    for row in rows:
        groups.setdefault((row["image"], row["label"]), []).append(row[area])
    return [{"image": image, "label": label, "count": len(areas), f"mean_{area}": float(np.mean(areas)),
             f"median_{area}": float(np.median(areas))} for (image, label), areas in groups.items()]


def as_table(rows: list[dict]):
    """A pandas DataFrame of the rows when pandas is installed, else the list itself."""
    try:
        import pandas
    except ImportError:
        return rows
    return pandas.DataFrame(rows)

"""One image's predictions as polygons: what every export format is written from."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .polygons import mask_to_polygons


@dataclass
class TracedImage:
    """`path`: the image as the export should name it (absolute, or a bare name from the page);
    per instance: `labels` (class name), `scores`, `polygons` (its parts, each (P, 2) x, y)."""

    path: str
    height: int
    width: int
    labels: list[str] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    polygons: list[list[np.ndarray]] = field(default_factory=list)

    def name_from(self, folder: Path | None) -> str:
        """The image's path as the file written in `folder` should name it: relative to it when
        both are known, else as given (the page's bare names)."""
        if folder is not None and os.path.isabs(self.path):
            return Path(os.path.relpath(self.path, Path(folder).resolve())).as_posix()
        return self.path

    def instances(self):
        """(label, score, parts) of each instance that kept at least one polygon."""
        return [(label, score, parts) for label, score, parts in
                zip(self.labels, self.scores, self.polygons) if parts]


def traced(path: str, masks: np.ndarray, labels: list[str], scores: list[float],
           tolerance: float = 1.0) -> TracedImage:
    """(N, H, W) bool masks with their class names and scores -> TracedImage."""
    masks = np.asarray(masks, dtype=bool)
    height, width = masks.shape[1:]
    polygons = [mask_to_polygons(mask, tolerance) for mask in masks]
    return TracedImage(str(path), int(height), int(width), list(labels), [float(s) for s in scores],
                       polygons)


def flat(polygon: np.ndarray, digits: int = 2) -> list[float]:
    """(P, 2) -> [x0, y0, x1, y1, ...] rounded to `digits` decimals (quarter pixels survive)."""
    return [round(float(v), digits) for v in polygon.reshape(-1)]

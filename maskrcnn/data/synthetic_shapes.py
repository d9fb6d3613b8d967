"""Synthetic shapes: the scenes `maskrcnn synth` draws (circles, triangles and squares on a
textured background, later shapes hiding earlier ones) and the primitives synthetic_quality.py
builds its harder scenes from."""

from __future__ import annotations

import numpy as np
from PIL import Image

CATEGORIES = (
    {"id": 1, "name": "circle", "supercategory": "shape"},
    {"id": 2, "name": "triangle", "supercategory": "shape"},
    {"id": 3, "name": "square", "supercategory": "shape"},
)
MAX_SHAPES = 6
# a shape mostly hidden by others is unrecognisable: it is neither painted nor annotated
MIN_VISIBLE_FRACTION = 0.25
MIN_VISIBLE_PIXELS = 20


def render_scene(rng: np.random.Generator, size: int):
    """One image: (H, W, 3) uint8 pixels, (N, H, W) bool visible masks, (N,) category ids."""
    kinds = rng.integers(1, len(CATEGORIES) + 1, size=rng.integers(1, MAX_SHAPES + 1))
    full = np.stack([_shape_mask(int(k), rng, size) for k in kinds])  # (n, H, W)
    visible = _visible(full)
    keep = (visible.sum((1, 2)) >= np.maximum(MIN_VISIBLE_PIXELS,
                                              MIN_VISIBLE_FRACTION * full.sum((1, 2))))
    # dropping shapes only uncovers others, so one pass leaves every kept shape visible enough
    full, kinds = full[keep], kinds[keep]
    visible = _visible(full)
    image = _background(rng, size)
    colours = rng.uniform(0, 255, size=(len(kinds), 3))
    for mask, colour in zip(full, colours):  # painter's order: later shapes cover earlier ones
        image[mask] = colour + rng.normal(0, 6, size=(int(mask.sum()), 3))
    return np.clip(image, 0, 255).astype(np.uint8), visible, kinds


def _visible(full: np.ndarray) -> np.ndarray:
    """(n, H, W) shape masks in painting order -> the part of each not covered by a later one."""
    covered_later = np.zeros_like(full)
    covered_later[:-1] = np.logical_or.accumulate(full[::-1], axis=0)[::-1][1:]
    return full & ~covered_later


def _shape_mask(kind: int, rng: np.random.Generator, size: int) -> np.ndarray:
    """(H, W) bool mask of one random circle (1), triangle (2) or square (3)."""
    radius = rng.uniform(0.07, 0.22) * size
    cx, cy = rng.uniform(0.1, 0.9, size=2) * size
    angle = rng.uniform(0, 2 * np.pi)
    return shape_mask(kind, radius, cx, cy, angle, size)


def shape_mask(kind: int, radius: float, cx: float, cy: float, angle: float, size: int) -> np.ndarray:
    """(size, size) bool mask of a circle (1), triangle (2) or square (3) of circumradius
    `radius` centred at (cx, cy), rotated by `angle` radians."""
    grid = np.arange(size) + 0.5  # pixel centres
    dx, dy = grid[None, :] - cx, grid[:, None] - cy  # (1, W), (H, 1)
    if kind == 1:
        return dx**2 + dy**2 <= radius**2
    u = dx * np.cos(angle) + dy * np.sin(angle)  # rotated frame, (H, W)
    v = -dx * np.sin(angle) + dy * np.cos(angle)
    if kind == 3:
        return np.maximum(np.abs(u), np.abs(v)) <= radius / np.sqrt(2)
    # equilateral triangle: inside all three edges, whose outward normals are 120 degrees apart
    normals = np.array([[np.cos(a), np.sin(a)] for a in (0, 2 * np.pi / 3, 4 * np.pi / 3)])
    distance = normals[:, 0, None, None] * u + normals[:, 1, None, None] * v  # (3, H, W)
    return (distance <= radius / 2).all(axis=0)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """(H, W, 3) float texture: smooth colour blobs plus fine grain."""
    coarse = rng.uniform(0, 255, size=(6, 6, 3)).astype(np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize((size, size), Image.BILINEAR), np.float64)
    return smooth + rng.normal(0, 8, size=(size, size, 3))

"""Synthetic shapes whose mask quality varies independently of how recognisable they are.

The `quality` style of `maskrcnn synth` (the default style is synthetic.py's plain shapes). The
same three classes (circle, triangle, square, told apart by their outline), but each shape draws
its own, independent difficulties, none of which changes its class:
- thin structures: with probability THIN_P, 1-3 spokes 1-2 px wide stick out of the shape and are
  part of its mask (a 28 x 28 mask head resolves them poorly);
- camouflage: with probability CAMOUFLAGE_P the shape is filled with a second background texture
  shifted by a small colour offset, so its inside looks like the background around it;
- blur: with probability BLUR_P its edge is blurred (Gaussian, sigma 0.8-2.5 px): the painted
  alpha is soft, the mask stays the sharp shape;
- occlusion: later shapes cover earlier ones (painter's order) and 0-3 unannotated bars of
  background cut through the scene; a shape's mask is its visible part.
Shapes that end up less than synthetic.MIN_VISIBLE_FRACTION visible are dropped, as in the plain
style. Everything is a function of the generator, so (seed, image index) fixes an image.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

from .synthetic_shapes import CATEGORIES, MAX_SHAPES, MIN_VISIBLE_FRACTION, MIN_VISIBLE_PIXELS, _background, shape_mask

THIN_P, CAMOUFLAGE_P, BLUR_P = 0.4, 0.35, 0.5
MAX_OCCLUDERS = 3


def render_quality_scene(rng: np.random.Generator, size: int):
    """One image: (H, W, 3) uint8 pixels, (N, H, W) bool visible masks, (N,) category ids."""
    kinds = rng.integers(1, len(CATEGORIES) + 1, size=rng.integers(1, MAX_SHAPES + 1))
    full = np.stack([_shape_with_spokes(int(k), rng, size) for k in kinds])  # (n, H, W)
    occluders = [_bar(rng, size) for _ in range(rng.integers(0, MAX_OCCLUDERS + 1))]
    occluded = np.logical_or.reduce(occluders) if occluders else np.zeros((size, size), bool)
    visible = _visible(full, occluded)
    keep = visible.sum((1, 2)) >= np.maximum(MIN_VISIBLE_PIXELS, MIN_VISIBLE_FRACTION * full.sum((1, 2)))
    full, kinds = full[keep], kinds[keep]  # dropping shapes only uncovers others
    visible = _visible(full, occluded)
    background = _background(rng, size)
    image = background.copy()
    for mask in full:  # painter's order: later shapes cover earlier ones
        alpha = _soft_edge(mask, rng)[..., None]  # (H, W, 1)
        image = alpha * _fill(rng, size) + (1 - alpha) * image
    image[occluded] = background[occluded]  # the bars show the background through the scene
    return np.clip(image, 0, 255).astype(np.uint8), visible, kinds


def _visible(full: np.ndarray, occluded: np.ndarray) -> np.ndarray:
    """(n, H, W) shapes in painting order -> the part of each not covered by a later one or a bar."""
    covered_later = np.zeros_like(full)
    covered_later[:-1] = np.logical_or.accumulate(full[::-1], axis=0)[::-1][1:]
    return full & ~covered_later & ~occluded


def _shape_with_spokes(kind: int, rng: np.random.Generator, size: int) -> np.ndarray:
    """(H, W) bool: a random circle / triangle / square, with thin spokes THIN_P of the time."""
    radius = rng.uniform(0.09, 0.22) * size
    cx, cy = rng.uniform(0.15, 0.85, size=2) * size
    mask = shape_mask(kind, radius, cx, cy, rng.uniform(0, 2 * np.pi), size)
    if rng.random() < THIN_P:
        for angle in rng.uniform(0, 2 * np.pi, size=rng.integers(1, 4)):
            length = radius * rng.uniform(1.4, 2.0)
            end = (cx + length * np.cos(angle), cy + length * np.sin(angle))
            mask |= segment_mask((cx, cy), end, rng.uniform(1.0, 2.2), size)
    return mask


def segment_mask(start, end, width: float, size: int) -> np.ndarray:
    """(size, size) bool: pixel centres within width / 2 of the segment start-end."""
    grid = np.arange(size) + 0.5
    px, py = grid[None, :] - start[0], grid[:, None] - start[1]  # (1, W), (H, 1)
    dx, dy = end[0] - start[0], end[1] - start[1]
    t = np.clip((px * dx + py * dy) / max(dx * dx + dy * dy, 1e-9), 0, 1)  # (H, W)
    return (px - t * dx) ** 2 + (py - t * dy) ** 2 <= (width / 2) ** 2


def _bar(rng: np.random.Generator, size: int) -> np.ndarray:
    """(H, W) bool: an unannotated occluding bar across part of the image."""
    centre = rng.uniform(0.1, 0.9, size=2) * size
    angle, half = rng.uniform(0, np.pi), rng.uniform(0.15, 0.4) * size
    offset = half * np.array([np.cos(angle), np.sin(angle)])
    return segment_mask(centre - offset, centre + offset, rng.uniform(0.04, 0.1) * size, size)


def _soft_edge(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(H, W) float alpha in [0, 1]: the mask, its edge blurred BLUR_P of the time."""
    if rng.random() >= BLUR_P:
        return mask.astype(np.float64)
    sigma = rng.uniform(0.8, 2.5)
    alpha = Image.fromarray(mask.astype(np.uint8) * 255).filter(ImageFilter.GaussianBlur(sigma))
    return np.asarray(alpha, np.float64) / 255


def _fill(rng: np.random.Generator, size: int) -> np.ndarray:
    """(H, W, 3) float paint of one shape: a flat colour with grain, or (camouflage) a background
    texture of its own offset by 20-45 grey levels."""
    if rng.random() < CAMOUFLAGE_P:
        shift = rng.uniform(20, 45) * rng.choice([-1, 1])
        return _background(rng, size) + shift
    return rng.uniform(0, 255, size=3) + rng.normal(0, 6, size=(size, size, 3))

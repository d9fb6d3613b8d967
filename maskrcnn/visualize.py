"""Draw instances onto an image: translucent coloured masks, boxes, class names and scores."""

from __future__ import annotations

import colorsys

import numpy as np
import torch
from PIL import Image, ImageDraw

from .structures import Instances

# COCO person skeleton (pairs of keypoint indices, 0-based)
COCO_SKELETON = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7),
    (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
)  # fmt: skip


def palette(n: int) -> np.ndarray:
    """(n, 3) uint8 well-separated colours (golden-ratio hues)."""
    hues = (np.arange(n) * 0.618033988749895) % 1.0
    return np.array([colorsys.hsv_to_rgb(h, 0.75, 1.0) for h in hues]).reshape(-1, 3).__mul__(255).astype(np.uint8)


def track_colours(ids: torch.Tensor) -> np.ndarray:
    """(N,) track ids -> (N, 3) uint8: one colour per id in every frame; grey for no id (-1)."""
    ids = ids.cpu().numpy()
    colours = palette(int(ids.max()) + 1 if len(ids) else 1)[np.maximum(ids, 0)]
    colours[ids < 0] = 128
    return colours


def draw_instances(image: torch.Tensor, instances: Instances, alpha: float = 0.5,
                   colours: np.ndarray | None = None) -> Image.Image:
    """(3, H, W) float image in [0, 1] + Instances at the same size -> PIL overlay; `colours`
    (N, 3) uint8 per instance, by default one per position."""
    rgb = (image.clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).astype(np.float32)  # (H, W, 3)
    if colours is None:
        colours = palette(max(len(instances), 1))
    if instances.has("masks") and len(instances):
        masks = instances.masks.cpu().numpy()  # (N, H, W) bool
        # Colour each pixel by the top-scoring mask covering it (instances are score-sorted).
        covered = masks.any(0)
        first = masks.argmax(0)
        rgb[covered] = (1 - alpha) * rgb[covered] + alpha * colours[first[covered]]
    out = Image.fromarray(rgb.astype(np.uint8))
    draw = ImageDraw.Draw(out)
    names = instances.label_names if len(instances) else []
    for i in range(len(instances)):
        colour = tuple(int(c) for c in colours[i])
        x1, y1, x2, y2 = instances.boxes[i].tolist()
        draw.rectangle([x1, y1, x2, y2], outline=colour, width=2)
        # ground truth (no scores) is labelled by class name alone
        text = f"{names[i]} {float(instances.scores[i]):.2f}" if instances.has("scores") else names[i]
        draw.text((x1 + 2, max(y1 - 11, 0)), text, fill=colour)
        if instances.has("keypoints"):
            _draw_keypoints(draw, instances.keypoints[i].tolist(), colour)
    return out


def _draw_keypoints(draw: ImageDraw.ImageDraw, points: list, colour, min_score: float = 0.0) -> None:
    """points: K x (x, y, score); the COCO skeleton is drawn between confident points."""
    visible = [p[2] > min_score for p in points]
    if len(points) == 17:
        for a, b in COCO_SKELETON:
            if visible[a] and visible[b]:
                draw.line([tuple(points[a][:2]), tuple(points[b][:2])], fill=colour, width=2)
    for (x, y, _), ok in zip(points, visible):
        if ok:
            draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=colour)

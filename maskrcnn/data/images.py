"""Decode an image file the way every dataset here does: Pillow, EXIF orientation, RGB in [0, 1]."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import ImageError

# Pillow modes whose pixels are 16-bit integers: convert("RGB") would clip them at 255
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_EXIF_ORIENTATION = 0x0112


def read_image(path: str | Path) -> torch.Tensor:
    """(3, H, W) float32 RGB in [0, 1], EXIF orientation applied.

    Grayscale, palette, RGBA, CMYK and 16-bit images are converted, not rejected.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: image file not found")
    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image)
            return pil_to_tensor(image)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{path}: cannot decode image ({exc})") from exc


def image_size(path: str | Path) -> tuple[int, int]:
    """(H, W) after EXIF orientation, read from the header without decoding pixels."""
    try:
        with Image.open(path) as image:
            return oriented_size(image)
    except (FileNotFoundError, UnidentifiedImageError, OSError) as exc:
        raise ImageError(f"{path}: cannot read image ({exc})") from exc


def oriented_size(image: Image.Image) -> tuple[int, int]:
    """(H, W) of an open image once its EXIF orientation is applied."""
    width, height = image.size
    # orientations 5-8 rotate by 90 degrees, swapping width and height
    if image.getexif().get(_EXIF_ORIENTATION, 1) in (5, 6, 7, 8):
        width, height = height, width
    return height, width


def pil_to_tensor(image: Image.Image) -> torch.Tensor:
    if image.mode in _SIXTEEN_BIT_MODES:
        gray = np.asarray(image, dtype=np.float32) / 65535.0  # (H, W)
        return torch.from_numpy(np.clip(gray, 0.0, 1.0)).expand(3, -1, -1).contiguous()
    rgb = np.asarray(image.convert("RGB"))  # (H, W, 3) uint8
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1).float().div_(255.0)

"""The package's one image reader: Pillow, EXIF orientation, RGB in [0, 1].

32-bit float images (mode F: float TIFFs) are scaled by their range or refused, saying which.
Every way a file can fail to decode (missing, empty, not an image, truncated, a header too large
to decode safely: Pillow's DecompressionBombError, or anything else a Pillow plugin raises)
becomes one ImageError naming the file, from `read_image`, `image_size` and `read_mask` alike.
"""

from __future__ import annotations

import contextlib
import logging
import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import ImageError

# Pillow modes whose pixels are 16-bit integers: convert("RGB") would clip them at 255
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_EXIF_ORIENTATION = 0x0112
_FLOAT_RANGES = (1.0, 255.0, 65535.0)  # a float image's values fit one of [0, r]: divided by r
_FLOAT_FILES_SEEN: set[str] = set()  # the scale of a file is logged the first time it is read
logger = logging.getLogger(__name__)


def read_image(path: str | Path) -> torch.Tensor:
    """(3, H, W) float32 RGB in [0, 1], EXIF orientation applied.

    Grayscale, palette, RGBA, CMYK and 16-bit images are converted, not rejected.
    """
    with open_image(path) as image:
        return pil_to_tensor(ImageOps.exif_transpose(image), name=str(path))


def image_size(path: str | Path) -> tuple[int, int]:
    """(H, W) after EXIF orientation, read from the header without decoding pixels."""
    with open_image(path) as image:
        return oriented_size(image)


def oriented_size(image: Image.Image) -> tuple[int, int]:
    """(H, W) of an open image once its EXIF orientation is applied."""
    width, height = image.size
    # orientations 5-8 rotate by 90 degrees, swapping width and height
    if image.getexif().get(_EXIF_ORIENTATION, 1) in (5, 6, 7, 8):
        width, height = height, width
    return height, width


def read_mask(path: str | Path) -> np.ndarray:
    """(H, W) or (H, W, C) pixel values as stored (palette indices kept), EXIF orientation applied."""
    with open_image(path) as image:
        return np.asarray(ImageOps.exif_transpose(image))


@contextlib.contextmanager
def open_image(path: str | Path):
    """Image.open(path) for a `with` block; any failure in it becomes an ImageError naming `path`."""
    path = Path(path)
    if path.is_dir():
        raise ImageError(f"{path}: is a folder, not an image file")
    if not path.is_file():
        raise ImageError(f"{path}: image file not found")
    if path.stat().st_size == 0:
        raise ImageError(f"{path}: empty file (0 bytes), not an image")
    try:
        with Image.open(path) as image:
            if 0 in image.size:
                raise ImageError(f"{path}: image of {image.size[0]}x{image.size[1]} pixels holds no pixels")
            yield image
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{path}: {_bomb_sizes(exc)}, so it is not decoded (a decompression bomb, or "
                         "raise PIL.Image.MAX_IMAGE_PIXELS if the image is real)") from None
    except UnidentifiedImageError:
        raise ImageError(f"{path}: cannot decode image: not an image file Pillow can read") from None
    except Exception as exc:  # Pillow's plugins raise OSError, SyntaxError, ValueError, struct.error, ...
        raise ImageError(f"{path}: cannot decode image ({_one_line(exc)})") from exc


def _bomb_sizes(exc: Exception) -> str:
    """From Pillow's "Image size (N pixels) exceeds limit of M pixels, ..." message."""
    found = re.search(r"\((\d+) pixels\) exceeds limit of (\d+) pixels", str(exc))
    if not found:
        return "image is over Pillow's size limit"
    size, limit = (int(v) for v in found.groups())
    return f"image of {size:,} pixels is over Pillow's limit of {limit:,}"


def _one_line(exc: Exception) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def pil_to_tensor(image: Image.Image, name: str = "image") -> torch.Tensor:
    """(3, H, W) float32 RGB in [0, 1]; `name` (the file) is what an error about it says."""
    if image.mode == "F":
        return _float_gray_to_tensor(image, name)
    if image.mode in _SIXTEEN_BIT_MODES:
        gray = np.asarray(image, dtype=np.float32) / 65535.0  # (H, W)
        return torch.from_numpy(np.clip(gray, 0.0, 1.0)).expand(3, -1, -1).contiguous()
    rgb = np.asarray(image.convert("RGB"))  # (H, W, 3) uint8
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1).float().div_(255.0)


def _float_gray_to_tensor(image: Image.Image, name: str) -> torch.Tensor:
    """A 32-bit float image (mode F, e.g. a float TIFF) scaled by its range: values in [0, 1] as
    they are, in [0, 255] / 255, in [0, 65535] / 65535; anything else is refused (ImageError),
    since no scale would be a guess worth training or predicting on. Which scale was used is
    logged once per file."""
    gray = np.asarray(image, dtype=np.float32)  # (H, W)
    if not np.isfinite(gray).all():
        raise ImageError(f"{name}: 32-bit float image holds NaN or infinite values; refused")
    low, high = float(gray.min()), float(gray.max())
    scale = next((s for s in _FLOAT_RANGES if low >= 0 and high <= s), None)
    if scale is None:
        raise ImageError(f"{name}: 32-bit float image with values from {low:g} to {high:g}, outside "
                         "[0, 1], [0, 255] and [0, 65535]; refused - convert it to 8- or 16-bit")
    if name not in _FLOAT_FILES_SEEN:
        _FLOAT_FILES_SEEN.add(name)
        how = "as they are" if scale == 1 else f"divided by {scale:g}"
        logger.warning("%s: 32-bit float image with values from %g to %g, read as values in [0, %g] "
                       "(%s)", name, low, high, scale, how)
    return torch.from_numpy(gray / scale).expand(3, -1, -1).contiguous()

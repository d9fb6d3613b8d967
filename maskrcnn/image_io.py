"""Turn whatever a user passes to `predict` into (3, H, W) float RGB tensors in [0, 1]."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from .data.images import pil_to_tensor, read_image
from .errors import ImageError


def as_tensor_list(images) -> list[torch.Tensor]:
    """One image or a list/tuple of images -> list of (3, H, W) float32 tensors."""
    if isinstance(images, (list, tuple)):
        return [as_tensor(img, index=i) for i, img in enumerate(images)]
    return [as_tensor(images)]


def as_tensor(image, index: int = 0) -> torch.Tensor:
    """One image -> (3, H, W) float32 RGB tensor in [0, 1]: a path (decoded by `read_image`), a PIL
    image (EXIF orientation applied), a numpy (H, W, 3|4) or (H, W) array (uint8 0..255, uint16
    0..65535, or float 0..1; alpha dropped), or a (3, H, W) float tensor (made float32).
    `index` names the image in errors.

    Raises:
        ImageError: another type, shape or dtype, or an unreadable file.
    """
    if isinstance(image, (str, Path)):
        return read_image(image)
    if isinstance(image, Image.Image):
        return pil_to_tensor(ImageOps.exif_transpose(image))
    if isinstance(image, np.ndarray):
        return _from_numpy(image, index)
    if torch.is_tensor(image):
        return _check_tensor(image, index)
    raise ImageError(f"image {index}: unsupported type {type(image).__name__} "
                     "(expected a path, PIL image, numpy array or tensor)")


def _from_numpy(array: np.ndarray, index: int) -> torch.Tensor:
    """HWC / HW arrays; uint8 (0-255), uint16 (0-65535) or float (0-1)."""
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise ImageError(f"image {index}: numpy array of shape {array.shape} is not HxWx3 (or HxWx4, HxW)")
    array = array[:, :, :3]
    if array.dtype == np.uint8:
        scaled = array.astype(np.float32) / 255.0
    elif array.dtype == np.uint16:
        scaled = array.astype(np.float32) / 65535.0
    elif np.issubdtype(array.dtype, np.floating):
        scaled = array.astype(np.float32)
    else:
        raise ImageError(f"image {index}: unsupported numpy dtype {array.dtype}")
    return torch.from_numpy(np.ascontiguousarray(scaled)).permute(2, 0, 1).contiguous()


def _check_tensor(image: torch.Tensor, index: int) -> torch.Tensor:
    if image.dim() != 3 or image.shape[0] != 3:
        raise ImageError(f"image {index}: tensor of shape {tuple(image.shape)} is not (3, H, W)")
    if not image.is_floating_point():
        raise ImageError(f"image {index}: tensor dtype {image.dtype} is not float (expected [0, 1])")
    return image.float()

"""Image resampling as detectron2 and mmdetection do it: on the 8-bit image, with Pillow or OpenCV.

Both frameworks resize the decoded uint8 image before normalising it (detectron2
data/transforms/transform.py:117-123 with Pillow's BILINEAR filter; mmdetection's Resize through
mmcv's `imresize`, OpenCV's INTER_LINEAR by default), so their bilinear filters and their
rounding to whole grey levels are part of what a model trained there has seen. Pillow's
bilinear widens its support when downscaling (an antialiasing triangle filter); OpenCV's does not.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import ConfigError

BACKENDS = ("torch", "pil", "cv2")


def resize_8bit(image: torch.Tensor, size: tuple[int, int], backend: str) -> torch.Tensor:
    """(3, H, W) float image in [0, 1] -> (3, h, w) float image in [0, 1], resampled as 8-bit
    values by `backend` ("pil" | "cv2"); the input is first rounded to whole grey levels."""
    h, w = size
    pixels = (image.detach() * 255.0).round().clamp(0, 255).to(torch.uint8)
    array = np.ascontiguousarray(pixels.permute(1, 2, 0).cpu().numpy())  # (H, W, 3) uint8
    if backend == "pil":
        from PIL import Image

        out = np.asarray(Image.fromarray(array).resize((w, h), Image.BILINEAR))
    elif backend == "cv2":
        out = _cv2().resize(array, (w, h), interpolation=_cv2().INTER_LINEAR)
    else:
        raise ConfigError(f"input.resize_backend: unknown '{backend}' (expected one of {', '.join(BACKENDS)})")
    return torch.from_numpy(np.array(out)).permute(2, 0, 1).to(image.device, torch.float32) / 255.0


def _cv2():
    try:
        import cv2
    except ImportError:
        raise ConfigError("input.resize_backend=cv2 needs OpenCV: pip install opencv-python-headless "
                          "(or set input.resize_backend=torch|pil)") from None  # fmt: skip
    return cv2

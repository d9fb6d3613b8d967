"""Masks <-> COCO run-length encoding, through pycocotools so every mask matches the COCO API.

RLE here is always the compressed COCO form `{"size": [H, W], "counts": str}` once it leaves
this module; pycocotools hands out `counts` as bytes, which JSON cannot hold.

Every call that takes many masks goes through `_chunked`: pycocotools 2.0.x `area` allocates a
uint8 array sized by the number of RLEs and, under numpy 2, raises OverflowError for 256 or
more (one nuclei image has hundreds). Chunks keep every call independent of the mask count.
"""

from __future__ import annotations

import numpy as np
import torch
from pycocotools import mask as mask_utils

_CHUNK = 255  # the most RLEs per pycocotools call (see the module docstring)


def _chunked(function, items, axis: int = 0) -> np.ndarray:
    """`function` applied to slices of at most _CHUNK items, results joined along `axis`."""
    parts = [function(items[i:i + _CHUNK]) for i in range(0, len(items), _CHUNK)]
    return np.concatenate(parts, axis=axis)


def encode_masks(masks) -> list[dict]:
    """(N, H, W) bool/uint8 masks (tensor or array) -> N compressed RLEs with str counts."""
    if torch.is_tensor(masks):
        masks = masks.detach().cpu().numpy()
    masks = np.asarray(masks, dtype=np.uint8)
    if masks.shape[0] == 0:
        return []
    # pycocotools wants Fortran order (column-major runs), shape (H, W, N)
    rles = [rle for i in range(0, len(masks), _CHUNK)
            for rle in mask_utils.encode(np.asfortranarray(masks[i:i + _CHUNK].transpose(1, 2, 0)))]
    for rle in rles:
        rle["counts"] = rle["counts"].decode("ascii")
    return rles


def decode_rles(rles: list[dict], height: int, width: int) -> np.ndarray:
    """N compressed RLEs -> (N, H, W) uint8 masks; an empty list gives (0, H, W)."""
    if not rles:
        return np.zeros((0, height, width), dtype=np.uint8)
    masks = _chunked(mask_utils.decode, [_counts_as_bytes(r) for r in rles], axis=2)  # (H, W, N)
    return np.ascontiguousarray(masks.transpose(2, 0, 1))


def segmentation_to_rle(segmentation, height: int, width: int) -> dict:
    """A COCO `segmentation` (polygons, uncompressed or compressed RLE) -> one compressed RLE.

    The same three cases, in the same order, as `pycocotools.coco.COCO.annToRLE`.
    """
    if isinstance(segmentation, list):
        # several polygons of one object are merged into one mask
        return mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    if isinstance(segmentation.get("counts"), list):
        return mask_utils.frPyObjects(segmentation, height, width)
    return _counts_as_bytes(segmentation)


def segmentation_to_mask(segmentation, height: int, width: int) -> np.ndarray:
    """A COCO `segmentation` -> (H, W) uint8 mask, equal to `COCO.annToMask`."""
    return mask_utils.decode(segmentation_to_rle(segmentation, height, width))


def rle_area(rles: list[dict]) -> np.ndarray:
    """(N,) pixel count of each RLE."""
    if not rles:
        return np.zeros(0)
    return _chunked(mask_utils.area, [_counts_as_bytes(r) for r in rles]).astype(np.float64)


def rle_to_xywh(rles: list[dict]) -> np.ndarray:
    """(N, 4) tight COCO boxes x, y, w, h of each RLE (0s for an empty mask)."""
    if not rles:
        return np.zeros((0, 4))
    return _chunked(mask_utils.toBbox, [_counts_as_bytes(r) for r in rles])


def _counts_as_bytes(rle: dict) -> dict:
    counts = rle["counts"]
    if isinstance(counts, str):
        return {"size": rle["size"], "counts": counts.encode("ascii")}
    return rle

"""Label Studio's brush RLE: the `rle` list of a `brushlabels` result -> (H, W) bool mask.

Label Studio stores a brush mask as the RGBA pixels of its canvas (H * W * 4 bytes, row-major),
packed by the rle-pack scheme of thi.ng/umbrella (the decoder Label Studio's converter ports):
the `rle` numbers are bytes, read as one big-endian bit stream:

    32 bits   n: the number of values
     5 bits   word size w - 1 (w = 8 for bytes)
    4 x 4 bits   the four run-length field sizes s_k - 1
    then, until n values are out, blocks of:
     1 bit    r: 1 = a repeated run, 0 = literal values
     2 bits   k: which run-length field size follows
     s_k bits  length - 1
     r = 1: one w-bit value repeated `length` times; r = 0: `length` w-bit values

A pixel belongs to the mask when its alpha (every 4th value, from index 3) is at least 128: the
canvas draws edges anti-aliased, and half coverage is the rasterisation rule the rest of the
package uses (a pixel is inside when its centre is).
"""

from __future__ import annotations

import numpy as np

from ..errors import DatasetError

ALPHA_THRESHOLD = 128


class _Bits:
    """A big-endian bit stream over bytes, read `n` bits at a time."""

    def __init__(self, data: np.ndarray):
        self.bits = np.unpackbits(data)  # (8 * len,) uint8
        self.pos = 0

    def read(self, n: int) -> int:
        if self.pos + n > len(self.bits):
            raise ValueError("the stream ends early")
        chunk = self.bits[self.pos:self.pos + n]
        self.pos += n
        return int(chunk.dot(1 << np.arange(n - 1, -1, -1, dtype=np.int64))) if n else 0

    def read_many(self, count: int, n: int) -> np.ndarray:
        """`count` consecutive n-bit values -> (count,) int64."""
        if self.pos + count * n > len(self.bits):
            raise ValueError("the stream ends early")
        chunk = self.bits[self.pos:self.pos + count * n].reshape(count, n).astype(np.int64)
        self.pos += count * n
        return chunk.dot(1 << np.arange(n - 1, -1, -1, dtype=np.int64))


def decode_values(rle) -> np.ndarray:
    """The rle-pack stream -> (n,) int64 values."""
    stream = _Bits(np.asarray(rle, dtype=np.uint8))
    count = stream.read(32)
    word = stream.read(5) + 1
    sizes = [stream.read(4) + 1 for _ in range(4)]
    out = np.zeros(count, dtype=np.int64)
    i = 0
    while i < count:
        repeated = stream.read(1)
        end = min(i + 1 + stream.read(sizes[stream.read(2)]), count)
        if repeated:
            out[i:end] = stream.read(word)
        else:
            out[i:end] = stream.read_many(end - i, word)
        i = end
    return out


def decode_brush(rle, height: int, width: int, where: str) -> np.ndarray:
    """(H, W) bool: the pixels a Label Studio brush result paints."""
    if not isinstance(rle, list) or not all(isinstance(v, int) and 0 <= v <= 255 for v in rle):
        raise DatasetError(f"{where}: 'rle' must be a list of byte values 0-255")
    try:
        values = decode_values(rle)
    except ValueError as exc:
        raise DatasetError(f"{where}: the brush 'rle' is not a Label Studio RLE stream ({exc})") from None
    if len(values) != height * width * 4:
        raise DatasetError(f"{where}: the brush 'rle' holds {len(values)} values, not "
                           f"{height} x {width} x 4 (RGBA) for the {width} x {height} image")
    return values.reshape(height, width, 4)[:, :, 3] >= ALPHA_THRESHOLD

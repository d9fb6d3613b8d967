"""The one reader of weights and checkpoint files (safetensors, or torch with weights_only=True).

Whatever a file turns out to be when it cannot be read (empty, text, an HTML page, a plain
pickle, a torch file holding pickled objects, a truncated zip or safetensors file), the error is
one CheckpointError line naming the file and what it is, found by looking at its first bytes.
Pickled objects are never loaded: that could run code from the file.
"""

from __future__ import annotations

import json
import pickle
import struct
import warnings
from pathlib import Path

import torch

from ..errors import CheckpointError

CONFIG_KEY = "maskrcnn_config"  # safetensors metadata entry holding our config as json
_ZIP = b"PK\x03\x04"  # torch.save's format since PyTorch 1.6
_LEGACY_TORCH = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8"  # pickle protocol 2 + torch's magic number
_OBJECTS = ("holding Python objects beyond tensors and containers (e.g. a whole pickled model), "
            "which are not loaded because that could run code from the file; save the model's "
            "state_dict() instead")


def load_weights_file(path: str | Path) -> tuple[object, dict | None]:
    """-> (the loaded object, the config embedded in safetensors metadata or None)."""
    path = Path(path)
    head = _head(path)
    try:
        if _is_safetensors(head):
            return _load_safetensors(path)
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": noise beside our error
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True), None
    except Exception as exc:  # torch.load raises KeyError, UnpicklingError, RuntimeError, EOFError, ...
        raise CheckpointError(f"{path}: cannot read weights: {_what_it_is(head, exc)}") from None


def _head(path: Path, size: int = 512) -> bytes:
    if not path.is_file():
        raise CheckpointError(f"{path}: weights file not found")
    try:
        with open(path, "rb") as f:
            return f.read(size)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot open it ({exc.strerror})") from None


def _is_safetensors(head: bytes) -> bool:
    """An 8-byte little-endian header length, then the json header."""
    return len(head) > 9 and head[8:9] == b"{" and struct.unpack("<Q", head[:8])[0] > 1


def _load_safetensors(path: Path) -> tuple[dict, dict | None]:
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    config = json.loads(meta[CONFIG_KEY]) if CONFIG_KEY in meta else None
    return load_file(str(path)), config


def _what_it_is(head: bytes, exc: Exception) -> str:
    """What a file that failed to load is, from its first bytes (and the failure)."""
    objects = isinstance(exc, pickle.UnpicklingError)
    if not head:
        return "the file is empty (0 bytes)"
    if head.startswith(_ZIP):
        return f"a PyTorch file {_OBJECTS}" if objects else "a PyTorch zip file that is truncated or damaged"
    if head.startswith(_LEGACY_TORCH):
        return (f"an old-format (before PyTorch 1.6) torch file {_OBJECTS}" if objects
                else "an old-format torch file that is truncated or damaged")
    if _is_safetensors(head):
        return f"a safetensors file that is truncated or damaged ({_short(exc)})"
    if head[:1] == b"\x80":
        return ("a plain Python pickle, not a PyTorch or safetensors weights file; pickles are not "
                "opened, since loading one can run code from it")
    text = _as_text(head)
    if text is not None and text.lstrip().lower().startswith(("<!doctype html", "<html")):
        return "an HTML page (a failed download?), not a weights file"
    if text is not None:
        return f"a text file (it starts with {text.strip().splitlines()[0][:40]!r}), not a weights file"
    return "not a weights file: neither PyTorch (zip or old format) nor safetensors"


def _as_text(head: bytes) -> str | None:
    """The bytes as text when they are (UTF-8, printable), else None."""
    for cut in range(4):  # the 512 bytes may end inside a multi-byte character
        try:
            text = head[: len(head) - cut].decode("utf-8")
        except UnicodeDecodeError:
            continue
        printable = sum(c.isprintable() or c in "\r\n\t" for c in text)
        return text if text.strip() and printable >= 0.95 * len(text) else None
    return None


def _short(exc: Exception) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:120]

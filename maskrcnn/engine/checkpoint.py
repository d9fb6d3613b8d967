"""Training checkpoints: atomic writes, keep-last-K, a `last_checkpoint` pointer, safe loading.

A checkpoint is a plain dict of tensors, containers, numbers and strings (the config as a dict), so
it loads with `torch.load(weights_only=True)`: opening one never runs code from the file.
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

import torch

from ..errors import CheckpointError

POINTER = "last_checkpoint"
_PERIODIC = re.compile(r"^model_(\d{7})\.pt$")


def atomic_save(obj, path: str | Path) -> None:
    """torch.save via a temp file in the same directory + fsync + rename, so a crash at any
    moment leaves either the old file or the new one, never a truncated one."""
    _atomic_write(path, lambda f: torch.save(obj, f))


def atomic_write_text(path: str | Path, text: str) -> None:
    _atomic_write(path, lambda f: f.write(text.encode()))


def _atomic_write(path: str | Path, write) -> None:
    path = Path(path)
    # "xb" on a unique name rather than tempfile.mkstemp: the file gets the usual umask
    # permissions (mkstemp's are 0600) and is still never shared with another writer.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "xb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # only still there if something failed
    _fsync_dir(path.parent)  # make the rename itself durable


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # some platforms cannot open directories
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Checkpointer:
    """Writes `model_{iter:07d}.pt` files into `out_dir`, keeping the newest `keep` of them."""

    def __init__(self, out_dir: str | Path, keep: int):
        self.out_dir = Path(out_dir)
        self.keep = keep

    def save(self, state: dict, name: str) -> Path:
        """Write `name` atomically, point `last_checkpoint` at it, then prune old periodic files."""
        path = self.out_dir / name
        atomic_save(state, path)
        atomic_write_text(self.out_dir / POINTER, name + "\n")
        self._prune()
        return path

    def last(self) -> Path | None:
        pointer = self.out_dir / POINTER
        if not pointer.is_file():
            return None
        path = self.out_dir / pointer.read_text().strip()
        if not path.is_file():
            raise CheckpointError(f"{pointer} names {path.name}, which does not exist")
        return path

    def _prune(self) -> None:
        # Runs after the pointer moved, so it never names a deleted file.
        periodic = sorted(p for p in self.out_dir.iterdir() if _PERIODIC.match(p.name))
        for old in periodic[: -self.keep]:
            old.unlink()


def periodic_name(iteration: int) -> str:
    return f"model_{iteration:07d}.pt"


def load_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and weights-only errors all mean "not a checkpoint"
        raise CheckpointError(f"{path}: not a readable checkpoint ({exc})") from exc
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path}: not a training checkpoint (no 'model' entry)")
    return state

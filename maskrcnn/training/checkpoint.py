"""Training checkpoints: keep-last-K, a `last_checkpoint` pointer, safe loading.

A checkpoint is a plain dict of tensors, containers, numbers and strings (the config as a dict), so
it loads with `torch.load(weights_only=True)`: opening one never runs code from the file.
Every file is written atomically (`maskrcnn.fileio`): a crash or a full disk leaves the previous
checkpoint and pointer intact.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import CheckpointError
from ..fileio import torch_save_atomic, write_text_atomic
from ..weights.files import load_weights_file

POINTER = "last_checkpoint"
_PERIODIC = re.compile(r"^model_(\d{7})\.pt$")


class Checkpointer:
    """Writes `model_{iter:07d}.pt` files into `out_dir`, keeping the newest `keep` of them."""

    def __init__(self, out_dir: str | Path, keep: int):
        self.out_dir = Path(out_dir)
        self.keep = keep

    def save(self, state: dict, name: str) -> Path:
        """Write `name` atomically, point `last_checkpoint` at it, then prune old periodic files."""
        path = self.out_dir / name
        torch_save_atomic(path, state)
        write_text_atomic(self.out_dir / POINTER, name + "\n")
        self._prune()
        return path

    def last(self) -> Path | None:
        """The checkpoint `last_checkpoint` names, or None when the run has none yet.

        Raises:
            CheckpointError: the pointer names a file that does not exist.
        """
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
    """File name of the checkpoint after `iteration` completed steps: `model_0000100.pt`."""
    return f"model_{iteration:07d}.pt"


def load_checkpoint(path: str | Path) -> dict:
    """The training checkpoint at `path` as a dict (model, optimizer, scheduler, iteration, config,
    RNG states, ...), read with `torch.load(weights_only=True)`: no code from the file runs.

    Raises:
        CheckpointError: the file is missing, unreadable, or not a training checkpoint (no
            'model' entry).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    state, _ = load_weights_file(path)  # the one reader: one-line errors for every bad file
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path}: not a training checkpoint (no 'model' entry)")
    return state

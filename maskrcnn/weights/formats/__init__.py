"""Foreign checkpoints -> this package's state-dict layout; the helpers every converter shares."""

from __future__ import annotations

import re

import torch

from ...errors import CheckpointError


def rename_key(key: str, rules) -> str:
    """Apply the first matching `(pattern, replacement)` of `rules`; unmatched keys stay."""
    for pattern, repl in rules:
        new, n = re.subn(pattern, repl, key)
        if n:
            return new
    return key


def background_first(key: str, value: torch.Tensor, num_fg: int, per_class_rows: dict, where: str):
    """A class-indexed layer of a background-last layout (mmdetection, detectron2) in ours: the
    classifier's background row moved to the front; layers with `per_class_rows[prefix]` rows per
    class get zero background rows (see add_background); any other layer as it is."""
    if key.startswith("roi_heads.box_head.cls_score."):
        return torch.cat([value[-1:], value[:-1]])
    prefix = next((p for p in per_class_rows if key.startswith(p)), None)
    return value if prefix is None else add_background(value, num_fg, per_class_rows[prefix], where)


def add_background(value: torch.Tensor, num_fg: int, per_class: int, where: str) -> torch.Tensor:
    """(num_fg * per_class, ...) -> ((num_fg + 1) * per_class, ...) with zero background rows;
    a class-agnostic (per_class, ...) layer is repeated for all num_fg + 1 classes."""
    rows = value.shape[0]
    if rows == per_class and num_fg != 1:
        return value.repeat(num_fg + 1, *[1] * (value.dim() - 1))
    if rows == num_fg * per_class:
        return torch.cat([value.new_zeros((per_class, *value.shape[1:])), value])
    raise CheckpointError(f"{where}: {rows} rows fit neither {num_fg} classes nor a class-agnostic layer")

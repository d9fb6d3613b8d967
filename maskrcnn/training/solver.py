"""Optimizer and learning-rate schedule built from `SolverConfig`.

The schedule is a pure function of the iteration (`lr_factor`), so a resumed run only needs the
iteration count to land on the same learning rate. A time-budgeted run (solver.time_budget) uses
`budget_lr_factor`, the same shapes over the fraction of the budget used (training/budget.py).
"""

from __future__ import annotations

import bisect
import math

import torch
from torch import nn

from typing import Callable

from ..config import SolverConfig

BUDGET_WARMUP_MAX = 0.1  # a budgeted warm-up ends by a tenth of the budget at the latest

# Normalisation layers whose weights are scales, not filters: weight decay pulls them towards 0,
# which changes the function rather than regularising it.
_NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm)


def param_groups(model: nn.Module, weight_decay: float, decay_norm_bias: bool) -> list[dict]:
    """Trainable parameters split into a decayed and (optionally) a non-decayed group."""
    decay, no_decay, seen = [], [], set()
    for module in model.modules():
        is_norm = isinstance(module, _NORM_TYPES) or "norm" in type(module).__name__.lower()
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            exempt = not decay_norm_bias and (is_norm or name == "bias")
            (no_decay if exempt else decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def build_optimizer(model: nn.Module, cfg: SolverConfig) -> torch.optim.Optimizer:
    """SGD with momentum (the paper's recipe) or AdamW (sturdier when training from scratch)."""
    groups = param_groups(model, cfg.weight_decay, cfg.weight_decay_norm_bias)
    # solver.fast: one fused kernel updates every parameter in a single pass over its memory
    # (the per-tensor loop makes ~8 passes); the same update up to float rounding.
    fused = {"fused": True} if cfg.fast else {}
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.base_lr, momentum=cfg.momentum, **fused)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.base_lr, **fused)
    raise ValueError(f"unknown solver.optimizer {cfg.optimizer!r} (expected 'sgd' or 'adamw')")


def lr_factor(it: int, cfg: SolverConfig) -> float:
    """Multiplier of base_lr at iteration `it` (0-based): warm-up times the decay schedule."""
    if cfg.schedule == "multistep":
        factor = cfg.gamma ** bisect.bisect_right(sorted(cfg.steps), it)
    elif cfg.schedule == "cosine":
        factor = 0.5 * (1.0 + math.cos(math.pi * min(it, cfg.max_iter) / cfg.max_iter))
    else:
        raise ValueError(f"unknown schedule {cfg.schedule!r}")
    if it < cfg.warmup_iters:
        # Linear ramp from warmup_factor at it=0 to 1 at it=warmup_iters.
        alpha = it / cfg.warmup_iters
        factor *= cfg.warmup_factor * (1.0 - alpha) + alpha
    return factor


def budget_lr_factor(progress: float, it: int, cfg: SolverConfig) -> float:
    """Multiplier of base_lr at `progress` (fraction of the time budget used, 0..1) after `it`
    steps: cosine over the progress (multistep: solver.steps as fractions of max_iter), 0 at the
    end; warm-up over solver.warmup_iters steps, ending by BUDGET_WARMUP_MAX of the budget."""
    p = min(max(progress, 0.0), 1.0)
    if cfg.schedule == "multistep":
        factor = cfg.gamma ** bisect.bisect_right(sorted(s / cfg.max_iter for s in cfg.steps), p)
    elif cfg.schedule == "cosine":
        factor = 0.5 * (1.0 + math.cos(math.pi * p))
    else:
        raise ValueError(f"unknown schedule {cfg.schedule!r}")
    alpha = max(it / cfg.warmup_iters if cfg.warmup_iters else 1.0, p / BUDGET_WARMUP_MAX)
    if alpha < 1.0:
        factor *= cfg.warmup_factor * (1.0 - alpha) + alpha
    return factor


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: SolverConfig,
                    progress: Callable[[], float] | None = None):  # fmt: skip
    """LambdaLR whose state is just the iteration count (the lambda itself is not saved);
    with `progress` (a budgeted run's fraction of the budget used), `budget_lr_factor`."""
    if progress is not None:
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: budget_lr_factor(progress(), it, cfg))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: lr_factor(it, cfg))

"""Solver settings resolved when a run starts, once the training set's size is known.

`solver.epochs > 0` sets max_iter to that many passes over the training images. An optimiser
step takes ims_per_batch x accumulate images (the batch below).

`solver.recipe=finetune` (the default of `maskrcnn_effl0_fpn`) fine-tunes a pretrained trunk on a
small dataset without tuning. It fills the solver fields that are still at their defaults (a
value given with --set or in a config file is kept):
- base_lr: FINETUNE_LR_PER_IMAGE x images per batch (the linear scaling rule);
- warm-up: one epoch, but at most a tenth of max_iter, from 1% of base_lr;
- schedule: cosine decay from base_lr to 0 at max_iter;
- gradient norm clipped at FINETUNE_CLIP (the randomly initialised heads' first steps).
The resolved values are what the run's config.yaml records.
"""

from __future__ import annotations

import math

from ..config import SolverConfig

RECIPES = ("", "finetune")  # checked with the other solver fields (trainer.check_config)
FINETUNE_LR_PER_IMAGE = 0.01
FINETUNE_CLIP = 10.0


def resolve_solver(solver: SolverConfig, num_images: int) -> None:
    """Apply `epochs` and the recipe to `solver` in place."""
    batch = solver.ims_per_batch * solver.accumulate  # images per optimiser step
    if solver.epochs > 0:
        solver.max_iter = max(1, math.ceil(solver.epochs * num_images / batch))
    if solver.recipe == "finetune":
        epoch = math.ceil(num_images / batch)
        _fill_defaults(solver, {
            "base_lr": FINETUNE_LR_PER_IMAGE * batch,
            "warmup_iters": max(1, min(epoch, solver.max_iter // 10)),
            "warmup_factor": 0.01,
            "schedule": "cosine",
            "clip_grad_norm": FINETUNE_CLIP,
        })  # fmt: skip


def _fill_defaults(solver: SolverConfig, values: dict) -> None:
    defaults = SolverConfig()
    for name, value in values.items():
        if getattr(solver, name) == getattr(defaults, name):
            setattr(solver, name, value)

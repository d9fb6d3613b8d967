"""Solver values resolved from the training set's size: epochs and the fine-tuning recipe."""

import math

import pytest

from maskrcnn.config import SolverConfig
from maskrcnn.training.recipes import resolve_solver
from maskrcnn.training.solver import lr_factor
from maskrcnn.presets import get_preset


def test_epochs_set_max_iter():
    solver = SolverConfig(epochs=2.5, ims_per_batch=4)
    resolve_solver(solver, num_images=121)
    assert solver.max_iter == 76  # ceil(2.5 * 121 / 4) = ceil(75.6)
    assert solver.base_lr == 0.02 and solver.schedule == "multistep"  # no recipe: untouched
    accumulated = SolverConfig(epochs=2.5, ims_per_batch=2, accumulate=2)  # 4 images per step
    resolve_solver(accumulated, num_images=121)
    assert accumulated.max_iter == 76


def test_finetune_recipe_scales_with_batch_data_and_run_length():
    solver = SolverConfig(recipe="finetune", max_iter=1000, ims_per_batch=2)
    resolve_solver(solver, num_images=120)
    # lr 0.01 per image; warm-up one epoch (60 iterations) as it is under a tenth of the run
    assert (solver.base_lr, solver.warmup_iters, solver.schedule) == (0.02, 60, "cosine")
    assert solver.clip_grad_norm == 10.0
    assert lr_factor(0, solver) == pytest.approx(0.01)
    assert lr_factor(60, solver) == pytest.approx(0.5 * (1 + math.cos(math.pi * 60 / 1000)))
    assert lr_factor(1000, solver) == pytest.approx(0.0)
    short = SolverConfig(recipe="finetune", max_iter=200, ims_per_batch=4, accumulate=2)
    resolve_solver(short, num_images=5000)
    assert (short.base_lr, short.warmup_iters) == (0.08, 20)  # 8 images per step; a tenth of the run


def test_finetune_recipe_keeps_values_given_explicitly():
    solver = SolverConfig(recipe="finetune", max_iter=500, base_lr=0.005, warmup_iters=7)
    resolve_solver(solver, num_images=120)
    assert (solver.base_lr, solver.warmup_iters, solver.schedule) == (0.005, 7, "cosine")


def test_effl0_preset_fine_tunes_for_twenty_epochs_by_default():
    solver = get_preset("maskrcnn_effl0_fpn").solver
    resolve_solver(solver, num_images=120)
    assert (solver.recipe, solver.max_iter, solver.warmup_iters) == ("finetune", 1200, 60)


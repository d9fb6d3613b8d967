"""The training loop: forward, check the losses, backward, step; small hooks do the rest.

`Trainer` owns one iteration (an optimiser step, over `solver.accumulate` micro-batches) and the
state that makes a resume exact (model, optimizer, scheduler, grad scaler, iteration, RNG
states). Checkpoints, logging and evaluation are hooks run after each step. `train()` at the
bottom is the whole recipe from a `Config` to a run directory.

A run with solver.time_budget ends by its clock instead of max_iter (training/budget.py): the
Trainer's `plan` accounts each step's wall time, stops the run at the budget and moves
`max_iter` to the planned total as it goes, so hooks see the last step as the last.

Iterations count optimiser steps: max_iter, the learning-rate schedule, log and checkpoint
periods and resume all do. A checkpoint is written between steps only, so a run stopped inside
an accumulation cycle resumes from the last step and replays the whole cycle (same images, same
sampling seeds): the partial gradient was never part of any saved state.
"""

from __future__ import annotations

import math
import random
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from ..config import Config, ConfigError, save_yaml, to_dict
from ..config_ranges import check_ranges
from ..data.loader import build_train_loader, raise_failed
from ..data.repeat_factors import class_image_counts, repeat_factors
from ..errors import DatasetError, UserError
from . import distributed
from ..weights import load_state
from ..fileio import check_output_dir, torch_save_atomic
from ..weights.transfer import init_from_weights
from .checkpoint import POINTER, Checkpointer, load_checkpoint, periodic_name
from .auto_size import BudgetSizer, resolve_auto_sizes
from .budget import ADJUST_AFTER, BudgetPlan
from .recipes import RECIPES, resolve_solver
from .determinism import deterministic_mode
from .solver import build_optimizer, build_scheduler
from .train_log import TrainLog
from .weight_average import WeightAverage

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class NonFiniteLossError(UserError, FloatingPointError):
    """A loss became NaN or infinite; nothing was written after the last finite step."""


class Trainer:
    """Runs iterations `start_iter..max_iter-1`; `self.iter` counts completed iterations."""

    def __init__(self, model: nn.Module, optimizer, scheduler, loader, cfg: Config,
                 device: torch.device, hooks: tuple = (), plan: BudgetPlan | None = None):  # fmt: skip
        self.model, self.optimizer, self.scheduler, self.plan = model, optimizer, scheduler, plan
        self.loader, self.cfg, self.device, self.hooks = loader, cfg, device, list(hooks)
        # solver.ema_decay > 0: evaluations and saved models use an average of the weights
        decay = cfg.solver.ema_decay
        self.average = WeightAverage(distributed.unwrap(model), decay) if decay > 0 else None
        self.amp_dtype = amp_dtype(cfg.solver, device)
        # Only fp16 has a range narrow enough to need loss scaling; disabled, the scaler is a no-op.
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp_dtype == torch.float16)
        self.iter = self.max_iter = 0
        self.losses: dict[str, float] = {}
        self.lr = 0.0
        self.seconds = 0.0
        self.elapsed = 0.0  # seconds spent in training steps (evaluation excluded), over resumes

    def train(self, start_iter: int, max_iter: int) -> None:
        """Run optimiser steps from `start_iter` until `max_iter` (or the time budget or limit, or an
        early stop, all of which move `max_iter` to the current step), calling every hook after each
        step.

        Raises:
            NonFiniteLossError: a loss became NaN or infinite (nothing written for that step).
        """
        self.iter, self.max_iter = start_iter, max_iter
        self.model.train()
        batches = iter(self.loader)
        limit = self.cfg.solver.time_limit * 60
        turn = time.perf_counter()  # start of this loop turn: the step plus the previous hooks
        while self.iter < self.max_iter:
            start = time.perf_counter()
            images, targets = raise_failed(next(batches))
            self.losses = self.run_step(images, targets)
            now = time.perf_counter()
            self.seconds = now - start
            self.elapsed += self.seconds
            self.iter += 1
            if limit and self.elapsed >= limit:
                self.max_iter = self.iter  # out of time: this step is the last (hooks see it so)
            if self.plan is not None:
                self._follow_plan(now - turn)
                turn = now
            for hook in self.hooks:
                hook.after_step(self)
            if _any_process(self.iter >= self.max_iter):  # an early stop on the main process
                self.max_iter = self.iter

    def _follow_plan(self, wall_seconds: float) -> None:
        """Budgeted run: account the turn; stop at the budget (the learning rate then set to its
        final value) or move max_iter to the planned total."""
        self.plan.add(wall_seconds, self.seconds)
        if self.plan.adjust is not None and len(self.plan.recent) == ADJUST_AFTER:
            self.plan.maybe_adjust(float(distributed.mean_across(torch.tensor([self.plan.step_estimate()]))))
        if _any_process(self.plan.should_stop()):  # clocks differ: all stop at the same step
            self.plan.done = True
            self.max_iter = self.iter
            self.scheduler.step()  # progress 1: the schedule's final learning rate
        else:
            self.max_iter = self.plan.planned_iters(self.iter)

    @property
    def progress(self) -> float:
        """Fraction of the run done: of the time budget, else of max_iter."""
        return self.plan.progress if self.plan is not None else self.iter / max(self.max_iter, 1)

    def run_step(self, images: list, targets: list) -> dict[str, float]:
        """One optimiser step on this process's images, split into N = solver.accumulate equal
        micro-batches; returns the losses averaged over the micro-batches (and processes).

        Each micro-batch's loss is scaled by 1/N, so the step follows the gradient of the mean of
        the N micro-batch losses. That is the gradient of one batch of all the images when each
        loss has the same normaliser in every micro-batch, because each is a sum over sampled
        elements divided by their count in the micro-batch: sampled anchors (the RPN losses),
        sampled RoIs (the box losses) and positive RoIs (mask, MaskIoU, keypoint losses). The
        counts are equal when the samplers fill their quotas (rpn/box batch_size_per_image per
        image, box positive_fraction positives), as they do on images with enough proposals
        overlapping enough objects; otherwise micro-batches are weighted equally rather than by
        their counts. Also needed: the images pad to the same size alone as together (same-sized
        images; padding adds anchors), and no BatchNorm in training mode (batch statistics are
        per micro-batch), as with any accumulation.
        """
        images = [image.to(self.device) for image in images]
        targets = [{k: _to(v, self.device) for k, v in t.items()} for t in targets]
        n = self.cfg.solver.accumulate
        if len(images) % n:
            raise ValueError(f"{len(images)} images do not split into solver.accumulate={n} micro-batches")
        size = len(images) // n
        self.lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.zero_grad(set_to_none=True)
        losses: dict[str, float] = {}
        for k in range(n):
            part = slice(k * size, (k + 1) * size)
            # Processes average gradients once per step, on the last micro-batch's backward.
            sync = k == n - 1 or not hasattr(self.model, "no_sync")
            with nullcontext() if sync else self.model.no_sync():
                with torch.autocast(self.device.type, self.amp_dtype, enabled=self.amp_dtype is not None):
                    loss_dict = self.model(images[part], targets[part])
                micro = self._checked_mean(loss_dict)
                self.scaler.scale(sum(loss_dict.values()) / n).backward()
            for name, value in micro.items():
                losses[name] = losses.get(name, 0.0) + value / n
        self._optimizer_step()
        return losses

    def _optimizer_step(self) -> None:
        if self.cfg.solver.clip_grad_norm > 0:
            self.scaler.unscale_(self.optimizer)  # clip the true gradients, not scaled ones
            params = [p for g in self.optimizer.param_groups for p in g["params"]]
            nn.utils.clip_grad_norm_(params, self.cfg.solver.clip_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        if self.average is not None:
            self.average.update(distributed.unwrap(self.model))

    def inference_weights(self):
        """A block in which the model holds the weights inference uses: the average with
        solver.ema_decay, else its own."""
        model = distributed.unwrap(self.model)
        return self.average.applied(model) if self.average is not None else nullcontext(model)

    def _checked_mean(self, loss_dict: dict) -> dict[str, float]:
        """Losses averaged over processes; every process sees the same values, so a non-finite
        loss stops all of them at the same step instead of leaving some waiting in backward."""
        names = list(loss_dict)
        values = torch.stack([loss_dict[n].detach().float() for n in names])
        values = distributed.mean_across(values).tolist()
        losses = dict(zip(names, values))
        if not all(math.isfinite(v) for v in values):
            shown = ", ".join(f"{n}={v:.6g}" for n, v in losses.items())
            raise NonFiniteLossError(
                f"non-finite loss at iteration {self.iter + 1}: {shown}; training stopped and "
                "no checkpoint was written for this step (try a lower solver.base_lr, longer "
                "solver.warmup_iters or solver.clip_grad_norm)"
            )
        return losses

    def state_dict(self) -> dict:
        """What a checkpoint holds to resume exactly: model, optimizer, scheduler and grad-scaler states,
        completed iterations, training seconds so far (`elapsed`, `budget_used`), the config as a
        dict, the RNG states and the weight average (with solver.ema_decay); all loadable with
        `torch.load(weights_only=True)`."""
        average = {"weight_average": self.average.state_dict()} if self.average is not None else {}
        return {**average,
            "model": distributed.unwrap(self.model).state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "iter": self.iter,
            "elapsed": self.elapsed,
            "budget_used": self.plan.used if self.plan is not None else 0.0,
            "config": to_dict(self.cfg),
            "rng": rng_state(),
        }

    def load_state_dict(self, state: dict, source: str) -> None:
        """Restore a `state_dict` (resume); `source` names the checkpoint in errors.

        Raises:
            CheckpointError: the checkpoint's model weights do not fit this model.
        """
        load_state(distributed.unwrap(self.model), state["model"], source)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        if self.average is not None:
            if "weight_average" not in state:
                raise ConfigError(f"{source} was written without solver.ema_decay; resume it with "
                                  "solver.ema_decay=0")
            self.average.load_state_dict(state["weight_average"])
        self.iter = int(state["iter"])
        self.elapsed = float(state.get("elapsed", 0.0))
        if self.plan is not None:
            self.plan.used = float(state.get("budget_used", 0.0))


def _any_process(flag: bool) -> bool:
    """True on every process when it is True on one (a decision all processes must share)."""
    return bool(distributed.mean_across(torch.tensor([float(flag)])).item() > 0)


def _to(value, device):
    return value.to(device) if isinstance(value, torch.Tensor) else value


def amp_dtype(solver, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of the step: solver.amp when set; in fast mode the fastest one the
    device computes in (bf16 on CPUs with bf16 instructions and on GPUs that have it, else fp16 on
    GPUs with loss scaling, else none); otherwise None (fp32)."""
    if solver.amp != "none":
        return AMP_DTYPES[solver.amp]
    if not solver.fast:
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    mkldnn = torch.backends.mkldnn
    if device.type == "cpu" and mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return torch.bfloat16
    return None


def step_line(solver, dtype: torch.dtype | None) -> str:
    """The line a run prints about its step: fast or exact, and the precision it computes in."""
    precision = {None: "fp32", torch.bfloat16: "bf16 autocast",
                 torch.float16: "fp16 autocast with loss scaling"}[dtype]  # fmt: skip
    if solver.fast:
        return (f"training step: fast ({precision}, channels-last, frozen norms folded); "
                "solver.fast=false for the exact step")
    return f"training step: exact ({precision}); solver.fast=true for the fast step"


def rng_state() -> dict:
    """Global RNG states as tensors and plain containers (loadable with weights_only=True)."""
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": random.getstate(),
    }  # fmt: skip
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore the torch, numpy, Python (and CUDA, when present) RNG states `rng_state` saved."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, n["pos"], n["has_gauss"], n["gauss"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---------------------------------------------------------------------------------------------
# Hooks: each has `after_step(trainer)` and runs on the main process only.


class CheckpointHook:
    """Every `period` iterations and at the end; the end also writes a small `model_final.pt`
    (weights + config) for inference."""

    def __init__(self, checkpointer: Checkpointer, period: int):
        self.checkpointer, self.period = checkpointer, period

    def after_step(self, trainer: Trainer) -> None:
        """Save a checkpoint when the iteration is a multiple of the period or the last; after the
        last, also model_final.pt."""
        last = trainer.iter == trainer.max_iter
        if trainer.iter % self.period == 0 or last:
            self.checkpointer.save(trainer.state_dict(), periodic_name(trainer.iter))
        if last:
            torch_save_atomic(self.checkpointer.out_dir / "model_final.pt", weights_only_state(trainer))


class LogHook:
    """Logs every step to the bar and, every `period` iterations and at the last, to metrics.jsonl
    and TensorBoard."""

    def __init__(self, log: TrainLog, period: int):
        self.log, self.period = log, period

    def after_step(self, trainer: Trainer) -> None:
        """Advance the bar (losses, learning rate); every `period` iterations and at the last, also
        write the losses, learning rate and step time (seconds) to metrics.jsonl and TensorBoard."""
        write = trainer.iter % self.period == 0 or trainer.iter == trainer.max_iter
        self.log.set_total(trainer.max_iter)  # a budgeted run re-plans its total
        self.log.step(trainer.iter, trainer.lr, trainer.losses, trainer.seconds, write)


class EvalHook:
    """Evaluates every `period` iterations, or `fractions` times spread over a budgeted run (both
    0: only at the end), and keeps `model_best.pt`, the weights with the highest segm/AP
    (bbox/AP for models without masks). `patience` > 0: stops the run after that many
    evaluations in a row without a better value (early stopping)."""

    def __init__(self, evaluate: Callable[[nn.Module], dict], period: int, out_dir: Path,
                 log: TrainLog, fractions: int = 0, patience: int = 0):  # fmt: skip
        self.evaluate, self.period, self.log = evaluate, period, log
        self.fractions, self.patience, self.stale = fractions, patience, 0
        self.best_path = Path(out_dir) / "model_best.pt"
        # A resumed run must beat the best of the interrupted one, not start from scratch.
        self.best = load_checkpoint(self.best_path)["value"] if self.best_path.is_file() else None
        self.next_fraction = 1

    def _due(self, trainer: Trainer) -> bool:
        if trainer.iter == trainer.max_iter or (self.period > 0 and trainer.iter % self.period == 0):
            return True
        if self.fractions and trainer.progress >= self.next_fraction / self.fractions:
            self.next_fraction = math.floor(trainer.progress * self.fractions) + 1
            return True
        return False

    def after_step(self, trainer: Trainer) -> None:
        """When an evaluation is due: evaluate the model, log the metrics, keep budget time for the
        final evaluation, save model_best.pt on a new best, and stop the run early after `patience`
        evaluations without one."""
        if not self._due(trainer):
            return
        start = time.perf_counter()
        with trainer.inference_weights() as model:
            model.eval()
            with torch.no_grad():
                metrics = self.evaluate(model)
            model.train()
        if trainer.plan is not None:
            trainer.plan.keep_for_final_eval(time.perf_counter() - start)
        self.log.scalars(trainer.iter, metrics, "val", trainer.elapsed)
        key = "segm/AP" if "segm/AP" in metrics else "bbox/AP"
        if key in metrics and (self.best is None or metrics[key] > self.best):
            self.best, self.stale = metrics[key], 0
            state = dict(weights_only_state(trainer), metric=key, value=float(metrics[key]))
            torch_save_atomic(self.best_path, state)
        else:
            self.stale += 1
        if self.patience and self.stale >= self.patience and trainer.iter < trainer.max_iter:
            self.log.note(f"early stop at iteration {trainer.iter}: val {key} not better than "
                          f"{self.best:.4f} for {self.stale} evaluations (solver.early_stop_patience)")
            trainer.max_iter = trainer.iter  # the checkpoint hook after this one writes the end


def weights_only_state(trainer: Trainer) -> dict:
    """What inference needs of the run (model_final.pt, model_best.pt): the model's state dict
    (the weight average with solver.ema_decay), the config as a dict and the iteration."""
    model = distributed.unwrap(trainer.model)
    weights = trainer.average.model_state(model) if trainer.average is not None else model.state_dict()
    return {"model": weights, "config": to_dict(trainer.cfg), "iter": trainer.iter}


# ---------------------------------------------------------------------------------------------
# The recipe: config -> run directory.


def check_config(cfg: Config, device: torch.device, world_size: int) -> None:
    """What a run needs beyond the dataclass types, checked before any work is done: every
    numeric field's range first (`config_ranges`), then what the solver and data need."""
    check_ranges(cfg)
    problems = list(_solver_problems(cfg.solver, device, world_size)) + list(
        _data_problems(cfg.data)
    )
    if problems:
        raise ConfigError("; ".join(problems))


def _solver_problems(s, device: torch.device, world_size: int):
    if s.schedule not in ("multistep", "cosine"):
        yield f"solver.schedule={s.schedule!r} must be multistep or cosine"
    if s.optimizer not in ("sgd", "adamw"):
        yield f"solver.optimizer={s.optimizer!r} must be sgd or adamw"
    if s.amp not in ("none", "bf16", "fp16"):
        yield f"solver.amp={s.amp!r} must be none, bf16 or fp16"
    if s.amp == "fp16" and device.type != "cuda":
        yield "solver.amp=fp16 needs CUDA; use bf16 on the CPU"
    positive = ("max_iter", "ims_per_batch", "accumulate", "checkpoint_period", "keep_checkpoints",
                "log_period")  # fmt: skip
    for name in positive:
        if getattr(s, name) < 1:
            yield f"solver.{name} must be at least 1"
    if s.recipe not in RECIPES:
        yield f"solver.recipe={s.recipe!r} must be one of: '', finetune"
    if s.time_limit > 0 and s.time_budget > 0:
        yield "give solver.time_budget (the schedule fits the budget) or solver.time_limit, not both"
    for name in ("warmup_iters", "eval_period", "clip_grad_norm", "seed", "epochs", "time_limit",
                 "time_budget", "budget_evals", "early_stop_patience"):
        if getattr(s, name) < 0:
            yield f"solver.{name} must be >= 0"
    if not 0 <= s.ema_decay < 1:
        yield f"solver.ema_decay={s.ema_decay} must be in [0, 1) (0: no weight average)"
    if s.base_lr <= 0:
        yield "solver.base_lr must be positive"
    if s.ims_per_batch % world_size:
        yield (f"solver.ims_per_batch={s.ims_per_batch} is the global batch and must be "
               f"divisible by the {world_size} processes")  # fmt: skip


def _data_problems(d):
    if d.num_workers < 0:
        yield "data.num_workers must be >= 0"
    if d.sampler not in ("uniform", "repeat_factor"):
        yield f"data.sampler={d.sampler!r} must be uniform or repeat_factor"
    if not d.train_ann or not Path(d.train_ann).is_file():
        yield f"training annotations {d.train_ann!r} not found (--data ANN.json)"
    if not d.train_images or not Path(d.train_images).is_dir():
        yield f"training image folder {d.train_images!r} not found (--images DIR)"
    if bool(d.val_ann) != bool(d.val_images):
        yield "give both --val-data and --val-images, or neither"
    elif d.val_ann and not Path(d.val_ann).is_file():
        yield f"validation annotations {d.val_ann!r} not found (--val-data)"
    elif d.val_images and not Path(d.val_images).is_dir():
        yield f"validation image folder {d.val_images!r} not found (--val-images)"


def train(cfg: Config, out_dir: str | Path, *, resume: bool = False, device: str | None = None,
          model: nn.Module | None = None, train_set=None,
          evaluate: Callable[[nn.Module], dict] | None = None, weights: str | None = None) -> Path:  # fmt: skip
    """Train `cfg` into `out_dir` (also under torchrun); returns the last checkpoint's path.

    `model`, `train_set` and `evaluate` replace what `cfg` would build (the model from
    `build_model`, the COCO datasets from `cfg.data`, whose label space the model takes).
    `weights` (a file or a named source; default `cfg.model.weights`, where it is recorded)
    initialises the model before the first iteration (`maskrcnn.weights.transfer`); a resumed
    run continues from its own last checkpoint instead and ignores them. `cfg` fixes the
    architecture: `transfer.config_for_weights` takes a file's own (what `--weights` does).
    """
    if weights is not None:
        cfg.model.weights = str(weights)
    info, dev = distributed.init(device)
    check_config(cfg, dev, info.world_size)
    out_dir = check_output_dir(out_dir)
    if not resume and (out_dir / POINTER).exists():
        raise UserError(f"{out_dir} already holds a training run; pass --resume to continue it "
                        "or choose another --out")  # fmt: skip
    train_set = train_set if train_set is not None else _coco_train_set(cfg)
    resolve_solver(cfg.solver, len(train_set))
    say = print if info.is_main else lambda _: None
    follows = resolve_auto_sizes(cfg, train_set, say=say)
    if evaluate is None and cfg.data.val_ann:
        evaluate = _coco_evaluator(cfg, out_dir / "eval")
    trainer = build_trainer(cfg, model, dev)
    say(step_line(cfg.solver, trainer.amp_dtype))
    if follows is not None and trainer.plan is not None:  # an auto size the budget may shrink
        save = lambda: info.is_main and save_yaml(cfg, out_dir / "config.yaml")  # noqa: E731
        sizer = BudgetSizer(cfg, len(train_set), say, save)
        sizer.follows = follows
        trainer.plan.adjust = sizer
    checkpointer = Checkpointer(out_dir, cfg.solver.keep_checkpoints)
    last = checkpointer.last() if resume else None
    if last is not None:
        trainer.load_state_dict(load_checkpoint(last), str(last))
        if cfg.model.weights and info.is_main:
            print(f"resuming from {last}; model.weights={cfg.model.weights} only starts new runs",
                  file=sys.stderr)  # fmt: skip
    else:
        if resume and info.is_main:
            print(f"no checkpoint in {out_dir}: starting from iteration 0", file=sys.stderr)
        if cfg.model.weights:
            report = init_from_weights(distributed.unwrap(trainer.model), cfg.model.weights)
            if info.is_main:
                print(report.table())
    trainer.loader = _train_loader(cfg, train_set, trainer.iter, info)
    if cfg.model.box.federated_classes > 0:
        distributed.unwrap(trainer.model).roi_heads.box_head.set_class_frequencies(
            class_image_counts(train_set.image_labels(), cfg.model.num_classes))
    if info.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        save_yaml(cfg, out_dir / "config.yaml")
    log = TrainLog(out_dir, trainer.iter, cfg.solver.max_iter, enabled=info.is_main)
    if info.is_main:  # logs and files come from one process only
        trainer.hooks = _main_hooks(cfg, out_dir, checkpointer, log, evaluate)
    try:
        with deterministic_mode(cfg.solver.deterministic, dev):
            trainer.train(trainer.iter, cfg.solver.max_iter)
    finally:
        log.close()
    return out_dir / periodic_name(trainer.iter)


def summary_line(out_dir: str | Path, last: Path) -> str:
    """The run's closing line: its last checkpoint and, with a validation set, its best one."""
    line = f"training done: {last}"
    best = Path(out_dir) / "model_best.pt"
    if best.is_file():
        state = load_checkpoint(best)
        line += (f"; best by val {state['metric']}: {best} ({100 * state['value']:.1f} at "
                 f"iteration {state['iter']})")
    return line


def build_trainer(cfg: Config, model: nn.Module | None, device: torch.device, loader=None) -> Trainer:
    """The model (built from `cfg` unless given) on `device`, rewritten for the fast step when
    solver.fast, with its optimizer and schedule; wrapped for several processes."""
    # One seed for everything: the initial weights (identical on every process) here; data
    # order, augmentation and the model's sampling through the loader's derived seeds.
    torch.manual_seed(cfg.solver.seed)
    np.random.seed(cfg.solver.seed)
    random.seed(cfg.solver.seed)
    model = (model if model is not None else _build_model(cfg)).to(device)
    if cfg.solver.fast:
        from ..model.fast_training import prepare_for_training

        prepare_for_training(model)
    optimizer = build_optimizer(model, cfg.solver)
    plan = BudgetPlan(cfg.solver.time_budget) if cfg.solver.time_budget > 0 else None
    scheduler = build_scheduler(optimizer, cfg.solver, plan and (lambda: plan.progress))
    return Trainer(distributed.wrap(model, device), optimizer, scheduler, loader, cfg, device, plan=plan)


def _train_loader(cfg: Config, train_set, start_iter: int, info: distributed.DistInfo):
    ratios = _aspect_ratios(train_set) if cfg.data.aspect_ratio_grouping else None
    factors = None
    if cfg.data.sampler == "repeat_factor":
        factors = repeat_factors(train_set.image_labels(), cfg.data.repeat_threshold)
    # One loader batch is one optimiser step's images: the micro-batches of an accumulation
    # cycle are consecutive slices of it, with the seeds the same images get in one big batch.
    return build_train_loader(
        train_set, cfg.solver.ims_per_batch * cfg.solver.accumulate, cfg.solver.seed, start_iter=start_iter,
        rank=info.rank, world_size=info.world_size, num_workers=cfg.data.num_workers,
        aspect_ratios=ratios, repeat_factors=factors,
    )  # fmt: skip


def _main_hooks(cfg: Config, out_dir: Path, checkpointer: Checkpointer, log: TrainLog,
                evaluate) -> list:  # fmt: skip
    # Logging first, so metrics.jsonl holds iteration N before checkpoint N exists; evaluation
    # before the checkpoint, so an early stop makes this step's checkpoint the final one.
    s = cfg.solver
    hooks = [LogHook(log, s.log_period)]
    if evaluate is not None:
        fractions = s.budget_evals if s.time_budget > 0 else 0
        hooks.append(EvalHook(evaluate, s.eval_period, out_dir, log, fractions, s.early_stop_patience))
    hooks.append(CheckpointHook(checkpointer, s.checkpoint_period))
    return hooks


def _build_model(cfg: Config) -> nn.Module:
    from ..model.detector import build_model

    return build_model(cfg)


def _coco_train_set(cfg: Config):
    """The training CocoDataset with seeded flips; its label space becomes the model's."""
    from ..data.coco import CocoDataset
    from ..data.transforms import RandomHorizontalFlip, keypoint_flip_map

    d = cfg.data
    dataset = CocoDataset(d.train_ann, d.train_images, skip_empty=d.skip_empty)
    if len(dataset) == 0:
        why = "no image has annotations and data.skip_empty=true" if d.skip_empty else "the file lists none"
        raise DatasetError(f"{d.train_ann}: no training images ({why})")
    dataset.check_image_headers()  # one header read per image: a bad file stops us now, not at its turn
    if cfg.input.hflip_prob > 0:
        flip_map = keypoint_flip_map(dataset.keypoint_names)
        dataset.transforms = RandomHorizontalFlip(cfg.input.hflip_prob, flip_map)
    # Resizing is the model's job (it picks the training size per image from its seed).
    cfg.model.class_names, cfg.model.category_ids = dataset.class_names, dataset.category_ids
    cfg.model.num_classes = len(dataset.class_names)
    if cfg.model.keypoint.enabled:
        if not dataset.keypoint_names:
            raise ConfigError(f"{d.train_ann}: model.keypoint.enabled but no category defines "
                              "'keypoints'; use a keypoint dataset or set model.keypoint.enabled=false")
        cfg.model.keypoint.num_keypoints = len(dataset.keypoint_names)  # the data's keypoint set
    return dataset


def _coco_evaluator(cfg: Config, eval_dir: Path) -> Callable[[nn.Module], dict]:
    """COCO metrics on the validation set; the set is read now so a bad file fails up front."""
    from ..data.coco import CocoDataset
    from ..evaluation.evaluator import evaluate_model

    d = cfg.data
    dataset = CocoDataset(d.val_ann, d.val_images)
    dataset.check_image_headers()
    if dataset.category_ids != tuple(cfg.model.category_ids):
        raise ConfigError(f"{d.val_ann} has categories {dataset.category_ids[1:]} but the "
                          f"training set has {tuple(cfg.model.category_ids)[1:]}")  # fmt: skip
    return lambda model: evaluate_model(model, dataset, d.val_ann, eval_dir)


def _aspect_ratios(dataset) -> list[float] | None:
    """Width / height per image from the annotation records; None (no grouping) without them."""
    records = getattr(dataset, "images", None)
    if not records or not all("width" in r and "height" in r for r in records):
        return None
    return [r["width"] / r["height"] for r in records]

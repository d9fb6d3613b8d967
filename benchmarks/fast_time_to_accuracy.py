"""Time to accuracy of solver.fast: the demo recipe trained in exact and in fast mode, one run.

The two runs (same seed, data, initial weights) alternate steps in one process, so both see the
same machine load. Both are evaluated on the held-out images every `--eval-every` steps
(evaluation time is not counted). The target is the exact run's final held-out mask AP; the
fast run's time to accuracy is its training time up to its first evaluation within 1 AP point
of it. Prints wall and CPU times of both; the last line is the ratio fast-to-target / exact.
Usage: python benchmarks/fast_time_to_accuracy.py [--iters 300] [--eval-every 30] [--threads T] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from maskrcnn.commands.demo import demo_config
from maskrcnn.config import apply_overrides
from maskrcnn.data.synthetic import write_synthetic_dataset
from maskrcnn.training.distributed import DistInfo
from maskrcnn.evaluation.evaluator import evaluate_model
from maskrcnn.training.trainer import _coco_train_set, _train_loader, build_trainer


class Run:
    """One training run of the demo recipe, stepped from outside, with its own clocks."""

    def __init__(self, mode: str, iters: int, train_ann: Path):
        self.mode = mode
        cfg = demo_config(iters, train_ann)
        apply_overrides(cfg, [f"solver.fast={mode == 'fast'}"])
        train_set = _coco_train_set(cfg)
        self.trainer = build_trainer(cfg, None, torch.device("cpu"))
        self.trainer.model.train()
        self.batches = iter(_train_loader(cfg, train_set, 0, DistInfo()))
        self.wall = self.cpu = 0.0
        self.curve: list[dict] = []

    def step(self) -> None:
        start, start_cpu = time.perf_counter(), time.process_time()
        self.trainer.losses = self.trainer.run_step(*next(self.batches))
        self.trainer.iter += 1
        self.wall += time.perf_counter() - start
        self.cpu += time.process_time() - start_cpu

    def evaluate(self, val_ann: Path, out: Path) -> None:
        model = self.trainer.model
        metrics = evaluate_model(model, val_ann.parent / "images", val_ann, out / f"{self.mode}_{self.trainer.iter}")
        model.train()
        self.curve.append({"iter": self.trainer.iter, "wall": self.wall, "cpu": self.cpu,
                           "segm_ap": metrics["segm/AP"], "loss": sum(self.trainer.losses.values())})  # fmt: skip
        print(f"  {self.mode:5s} iter {self.trainer.iter:4d}  train {self.wall:7.1f} s wall "
              f"{self.cpu:7.1f} s CPU  mask AP {100 * metrics['segm/AP']:5.1f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=300)
    parser.add_argument("--eval-every", type=int, default=30)
    parser.add_argument("--train-images", type=int, default=300)
    parser.add_argument("--val-images", type=int, default=50)
    parser.add_argument("--work", default="/tmp/fast_time_to_accuracy")
    parser.add_argument("--threads", type=int, default=None,
                        help="intra-op threads (default: torch's); 1 measures compute alone on a loaded machine")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    work = Path(args.work)
    train_ann = write_synthetic_dataset(work / "train", args.train_images, seed=1, size=128)  # as the demo
    val_ann = write_synthetic_dataset(work / "val", args.val_images, seed=2, size=128)
    runs = [Run("exact", args.iters, train_ann), Run("fast", args.iters, train_ann)]
    load = os.getloadavg()[0]
    for it in range(1, args.iters + 1):
        for run in runs:
            run.step()
        if it % args.eval_every == 0 or it == args.iters:
            for run in runs:
                run.evaluate(val_ann, work / "eval")
    exact, fast = runs
    target = exact.curve[-1]["segm_ap"] - 0.01
    reached = next((c for c in fast.curve if c["segm_ap"] >= target), None)
    (work / "curves.json").write_text(json.dumps({"exact": exact.curve, "fast": fast.curve}, indent=1))
    print(f"demo recipe, {args.iters} iterations, {torch.get_num_threads()} threads, load average "
          f"{load:.2f} -> {os.getloadavg()[0]:.2f}")
    print(f"exact: mask AP {100 * exact.curve[-1]['segm_ap']:.1f} after {exact.wall:.1f} s wall, {exact.cpu:.1f} s CPU")
    print(f"fast:  mask AP {100 * fast.curve[-1]['segm_ap']:.1f} after {fast.wall:.1f} s wall, {fast.cpu:.1f} s CPU")
    if reached is None:
        print("time to accuracy: fast mode did not reach the exact run's mask AP - 1 point")
        return
    print(f"fast mode reaches mask AP {100 * reached['segm_ap']:.1f} (target {100 * target:.1f}) at iteration "
          f"{reached['iter']}, {reached['wall']:.1f} s wall, {reached['cpu']:.1f} s CPU")
    print(f"time to accuracy: {reached['wall'] / exact.wall:.2f} of exact mode's wall time "
          f"(CPU time: {reached['cpu'] / exact.cpu:.2f})")


if __name__ == "__main__":
    main()

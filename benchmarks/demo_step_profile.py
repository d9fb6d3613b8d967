"""Where a training step of the demo recipe spends its time (maskrcnn_r18_fpn at 128 px, batch 4,
the set-up of fast_time_to_accuracy.py): CPU time per step in exact and fast mode, then a
torch.profiler table per mode. Usage: python benchmarks/demo_step_profile.py [--iters 5] [--threads 1]
[--mode exact|fast|both] [--rows 25] [--work DIR]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from maskrcnn.commands.demo import demo_config
from maskrcnn.config import apply_overrides
from maskrcnn.data.synthetic import write_synthetic_dataset
from maskrcnn.training.distributed import DistInfo
from maskrcnn.training.trainer import _coco_train_set, _train_loader, build_trainer


def build(mode: str, train_ann: Path, iters: int):
    """The demo trainer in `mode` and its first `iters + 1` batches."""
    cfg = demo_config(100, train_ann)
    apply_overrides(cfg, [f"solver.fast={mode == 'fast'}"])
    train_set = _coco_train_set(cfg)
    trainer = build_trainer(cfg, None, torch.device("cpu"))
    trainer.model.train()
    loader = iter(_train_loader(cfg, train_set, 0, DistInfo()))
    return trainer, [next(loader) for _ in range(iters + 1)]


def cpu_per_step(trainer, batches) -> float:
    """CPU seconds per step over batches[1:] (batches[0] warms up)."""
    trainer.run_step(*batches[0])
    start = time.process_time()
    for batch in batches[1:]:
        trainer.run_step(*batch)
    return (time.process_time() - start) / (len(batches) - 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--mode", choices=("exact", "fast", "both"), default="both")
    parser.add_argument("--rows", type=int, default=25, help="profiler rows per mode (0: no profile)")
    parser.add_argument("--work", default="/tmp/demo_step_profile")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    train_ann = write_synthetic_dataset(Path(args.work) / "train", 40, seed=1, size=128)
    modes = ("exact", "fast") if args.mode == "both" else (args.mode,)
    runs = {mode: build(mode, train_ann, args.iters) for mode in modes}
    seconds = {mode: cpu_per_step(*runs[mode]) for mode in modes}
    for mode in modes:
        print(f"{mode:5s} {seconds[mode]:.3f} s CPU/step ({args.iters} steps, {args.threads} threads)")
    if len(modes) == 2:
        print(f"exact/fast CPU time per step: {seconds['exact'] / seconds['fast']:.2f}")
    for mode in modes if args.rows else ():
        trainer, batches = runs[mode]
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for batch in batches[1:3]:
                trainer.run_step(*batch)
        print(f"--- {mode}, 2 steps")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()

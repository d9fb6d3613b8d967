"""Where a training step spends its time: torch.profiler over our trainer's step (R50-FPN, batch 2,
Penn-Fudan at 512 px, the set-up of train_vs_torchvision.py), per stage and per operator.

Forward stages are timed by module hooks, the optimiser by its step hooks; backward is the rest
of the step. Usage: python benchmarks/train_profile.py --mode exact|fast [--iters 2] [--size 512] [--threads T]
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.profiler import ProfilerActivity, profile, record_function
from train_vs_torchvision import build_pair, pennfudan_batches

STAGES = ("backbone.trunk", "backbone.fpn", "rpn", "roi_heads.pooler", "roi_heads.box_head",
          "roi_heads.mask_head")  # fmt: skip


def label(module: torch.nn.Module, name: str) -> None:
    """Record `name` in the profile around every call of `module`."""
    active = []
    module.register_forward_pre_hook(lambda m, a: active.append(record_function(name).__enter__()))
    module.register_forward_hook(lambda m, a, o: active.pop().__exit__(None, None, None))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("exact", "fast"), default="exact")
    parser.add_argument("--iters", type=int, default=2, help="profiled steps (after one warm-up)")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    _, _, trainer = build_pair(args.size, args.mode)
    model = trainer.model
    label(model, "forward")
    for name in STAGES:
        label(model.get_submodule(name), name)
    optimizer_events = []
    trainer.optimizer.register_step_pre_hook(lambda *a: optimizer_events.append(record_function("optimizer").__enter__()))
    trainer.optimizer.register_step_post_hook(lambda *a: optimizer_events.pop().__exit__(None, None, None))
    batches = pennfudan_batches(args.iters + 1)

    def step(it):
        torch.manual_seed(it)
        with record_function("step"):
            trainer.run_step(*batches[it])

    step(0)
    start = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for it in range(1, args.iters + 1):
            step(it)
    wall = (time.perf_counter() - start) / args.iters
    totals = {e.key: e.cpu_time_total / 1e6 / args.iters for e in prof.key_averages()}
    print(f"mode {args.mode}: {wall:.2f} s/step wall (profiled), {torch.get_num_threads()} threads")
    backward = totals["step"] - totals["forward"] - totals["optimizer"]
    rows = [("step", totals["step"]), ("forward", totals["forward"])]
    rows += [(f"  {name}", totals[name]) for name in STAGES if name in totals]
    rows += [("backward", backward), ("optimizer", totals["optimizer"])]
    for name, seconds in rows:
        print(f"{name:26s} {seconds:7.3f} s  {100 * seconds / totals['step']:5.1f} %")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20))


if __name__ == "__main__":
    main()

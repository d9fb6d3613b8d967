"""Per-stage CPU time of torchvision fp32 and our fp32 / bf16 fast paths, one thread, and the
operators where our bf16 path spends it: where bf16 loses time against torchvision.

CPU time (time.process_time) rather than wall time, so that the numbers hold on a loaded
machine; one thread, so that CPU time is the latency. Same weights and images as
benchmarks/infer_vs_torchvision.py (Penn-Fudan, box_score_thresh 0: 100 detections). Usage:
  nice -n 19 env OMP_NUM_THREADS=1 python benchmarks/profile_bf16_stages.py [--images 2] [--size 800]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

from maskrcnn.data.images import read_image
from maskrcnn.evaluation.benchmark import STAGES, StageTimer, our_stage_spans

sys.path.insert(0, str(Path(__file__).resolve().parent))
from infer_vs_torchvision import PENNFUDAN, build, torchvision_spans  # noqa: E402


def cpu_stages(run, spans, image) -> dict[str, float]:
    """One call's CPU seconds per stage; preprocess and postprocess are the time around them."""
    with StageTimer(spans, clock=time.process_time) as timer:
        start = time.process_time()
        run(image)
        total = time.process_time() - start
    stages = dict(timer.times)
    stages.setdefault("preprocess", (timer.first_start or start) - start)
    stages["postprocess"] = total - sum(stages.values())
    stages["total"] = total
    return stages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--size", type=int, default=800)
    parser.add_argument("--ops", type=int, default=25, help="top operators of the --profile path to list")
    parser.add_argument("--profile", choices=("fp32", "bf16"), default="bf16", help="the path whose operators to list")
    parser.add_argument("--v2", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    images = [read_image(p) for p in sorted(PENNFUDAN.glob("*.png"))[: args.images]]
    ref, _, fast = build(args, images[0])
    runners = {"torchvision fp32": (lambda img: ref([img]), torchvision_spans(ref)),
               **{f"maskrcnn {p}": ((lambda m: lambda img: m.predict(img))(m), our_stage_spans(m))
                  for p, m in fast.items()}}
    times = {name: [] for name in runners}
    with torch.inference_mode():
        for name, (run, _) in runners.items():  # warm-up
            run(images[0])
        for image in images:
            for name, (run, spans) in runners.items():
                times[name].append(cpu_stages(run, spans, image))
    names = [s for s in (*STAGES, "total") if any(s in t[0] for t in times.values())]
    print(f"CPU s per image (median of {len(images)}), {args.size} px, 1 thread, torch {torch.__version__}")
    print(f"{'runner':18s}" + "".join(f"{s:>14s}" for s in names))
    for name, rows in times.items():
        med = {s: statistics.median(r.get(s, float("nan")) for r in rows) for s in names}
        print(f"{name:18s}" + "".join(f"{med[s]:14.3f}" for s in names))
    tv = statistics.median(r["total"] for r in times["torchvision fp32"])
    for name in runners:
        print(f"{name}: {tv / statistics.median(r['total'] for r in times[name]):.2f}x torchvision's CPU time")
    with torch.inference_mode(), torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fast[args.profile].predict(images[0])
    print(f"\nmaskrcnn {args.profile}, top {args.ops} operators by self CPU time ({PENNFUDAN.name} image 0)")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.ops))


if __name__ == "__main__":
    main()

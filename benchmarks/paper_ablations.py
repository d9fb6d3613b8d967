"""The Mask R-CNN paper's Table 2 ablations, each arm trained and evaluated alike over several seeds.

Arms: `baseline` (RoIAlign, per-class sigmoid masks, FCN mask head, FPN) and one switch changed
per arm: `roipool`, `roiwarp` (Table 2c), `softmax` (2b), `class_agnostic` (2b text), `mlp` (2e),
`c4` (2a: the trunk cut after conv4, conv5 per RoI; not a default arm, see DEFAULT_ARMS). Every
arm gets the same recipe, data, seeds and number of iterations; only its switch differs.

Datasets (`--dataset`):
- `shapes`: the demo's synthetic circles / triangles / squares (300 training images, 100 held
  out, 128 px, 3 classes), the demo's ResNet-18 FPN from scratch (`maskrcnn/commands/demo.py`).
  The C4 arm is the same ResNet-18 cut after conv4 (stride 16, one-map RPN with all 15 anchors per
  cell, its pre-NMS top-k x5 since one map holds the five FPN levels' anchors), conv5 per RoI on
  14 x 14 pools, the box head averaging conv5's 7 x 7 output and 14 x 14 masks from one deconv of
  the demo's mask-head width (the layout of `maskrcnn_r50_c4`).
- `pennfudan`: Penn-Fudan's fixed split (first 120 images train, last 50 validate; one class,
  pedestrians), `maskrcnn_effl0_fpn` fine-tuned from `imagenet/efficientnet_lite0` with its
  fine-tuning recipe (cosine schedule ending at the last iteration) at a small image size so a
  short run learns something. Default arms: baseline, roipool, roiwarp, mlp. With one class the
  class-specific mask IS a class-agnostic one, and a per-pixel softmax over {background, person}
  is a sigmoid of a logit difference: neither tests what the paper's 2b tests (competition between
  classes), so they run only when asked. No C4 arm: C4 is defined for ResNet trunks (conv5 per
  RoI) and no ImageNet ResNet is available here; from scratch it would not be the same recipe.

Budget: `--minutes` of training per arm is turned into one iteration count for all arms, from the
baseline's CPU seconds per iteration, measured once per work folder (WORK/calibration.json; CPU
time, so the count does not depend on the machine's load). Arms that are slower per iteration
(C4, MLP) take longer but train as many iterations; `--iters` fixes the count instead.

Arms run one at a time, each seed in turn (solver.seed = weights init, data order, sampling).
Each finished arm+seed is WORK/ARM-seedS.json (COCO metrics of the final model on the held-out
images; detections in WORK/ARM-seedS/eval/results.json) and is not run again; an unfinished one
starts over. The report covers every arm with results in WORK: OUT.json (per seed, mean, sample
standard deviation), OUT.md (table) and OUT.png (bars with error bars and each seed's value).

    python benchmarks/paper_ablations.py --dataset shapes [--minutes 2] [--seeds 3] [--arms baseline,c4]
    python benchmarks/paper_ablations.py --dataset pennfudan [--size 160]
    python benchmarks/paper_ablations.py --dataset shapes --smoke   # 2 arms, 3 iterations, 64 px, temp dir

An arm added later joins a committed table without retraining the others: `--resume-from
benchmarks/results/paper_ablations_shapes.json` writes that report's calibration and runs into the
work folder first. `--run-seeds 1` trains only seed 1, so two processes can share the seeds.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from maskrcnn.commands.convert_dataset import hold_out
from maskrcnn.commands.demo import DEMO_OVERRIDES
from maskrcnn.config import apply_overrides
from maskrcnn.training.trainer import NonFiniteLossError, train
from maskrcnn.fileio import write_json_atomic, write_text_atomic
from maskrcnn.presets import get_preset

REPO = Path(__file__).resolve().parents[1]
PENNFUDAN = REPO.parent / "shared" / "data" / "pennfudan"
PENNFUDAN_VAL = 50  # the last 50 images (sorted names) validate, as benchmarks/finetune_pennfudan.py
PENNFUDAN_IMAGES = 170  # in the real dataset; a stand-in of another size holds out the same share

# C4 on the demo's ResNet-18 (maskrcnn_r50_c4's fields): one stride-16 map holding every anchor,
# so the FPN's per-level pre-NMS top-k x 5 levels; res5 per 14 x 14 RoI; 14 x 14 masks from one
# deconv as wide as the demo's FPN mask convs (64).
SHAPES_C4 = [
    "model.backbone.kind=c4", "model.rpn.pre_nms_topk_train=2500", "model.rpn.pre_nms_topk_test=2500",
    "model.box.head=avgpool", "model.box.pooler_resolution=14",
    "model.mask.conv_dims=[]", "model.mask.deconv_dim=64", "model.mask.resolution=14",
]  # fmt: skip
SWITCHES = {
    "baseline": [],
    "roipool": ["model.roi_pooler=roipool"],
    "roiwarp": ["model.roi_pooler=roiwarp"],
    "softmax": ["model.mask.loss=softmax"],
    "class_agnostic": ["model.mask.class_agnostic=true"],
    "mlp": ["model.mask.head=mlp"],
    "c4": SHAPES_C4,
}
# c4 is not a default: conv5 on every RoI costs 26x the baseline's CPU time per iteration here
# (7.0 vs 0.27 s: 256 RoIs of 14 x 14 per batch through ResNet-18's conv5), 40-50 min per seed at
# the default budget's iteration count; run it with --arms c4 when there is time for it.
DEFAULT_ARMS = {
    "shapes": ("baseline", "roipool", "roiwarp", "softmax", "class_agnostic", "mlp"),
    "pennfudan": ("baseline", "roipool", "roiwarp", "mlp"),
}
SMOKE_ARMS = {"shapes": ("baseline", "c4"), "pennfudan": ("baseline", "roipool")}
# The paper's Table 2 (mask AP, AP50, AP75 on COCO minival; ResNet-50-C4 unless noted), beside ours.
PAPER = {
    "baseline": "30.3 / 51.2 / 31.5 (R50-C4); 33.6 / 55.2 / 35.3 (R50-FPN)",
    "roipool": "26.9 / 48.8 / 26.4",
    "roiwarp": "27.2 / 49.2 / 27.1",
    "softmax": "24.8 / 44.1 / 25.1",
    "class_agnostic": "29.7 / - / -",
    "mlp": "31.5 / 53.7 / 32.8 (R50-FPN)",
    "c4": "30.3 vs FPN 33.6 (R50)",
}
METRICS = [f"{task}/{name}" for task in ("segm", "bbox") for name in ("AP", "AP50", "AP75")]
CALIBRATION_ITERS = (2, 8)  # CPU time of 8 iterations minus 2 (start-up and the first step cancel)


# ---------------------------------------------------------------------------------------------
# Data and recipes


def prepare_data(dataset: str, work: Path, args) -> dict:
    """COCO jsons of the dataset's fixed split in WORK/data -> {train_ann, train_images, val_ann, val_images}."""
    data_dir = work / "data"
    if dataset == "shapes":
        from maskrcnn.data.synthetic import write_synthetic_dataset

        size, counts = (64, (8, 4)) if args.smoke else (128, (300, 100))
        paths = {}
        for part, count, seed in (("train", counts[0], 1), ("val", counts[1], 2)):  # the demo's seeds
            ann = data_dir / part / "annotations.json"
            if not ann.is_file():
                write_synthetic_dataset(data_dir / part, count, seed=seed, size=size)
            paths[f"{part}_ann"], paths[f"{part}_images"] = ann, ann.parent / "images"
        return paths
    root = Path(args.data).resolve()
    train_ann, val_ann = data_dir / "train.json", data_dir / "val.json"
    if not val_ann.is_file():
        from maskrcnn.data.mask_folders import InstanceIdPngDataset, to_coco

        coco = to_coco(InstanceIdPngDataset(root))
        share = round(len(coco["images"]) * PENNFUDAN_VAL / PENNFUDAN_IMAGES)
        train_part, val_part = hold_out(coco, min(PENNFUDAN_VAL, max(1, share)))
        if args.smoke:  # 4 training and 2 validation images
            train_part, val_part = first_images(train_part, 4), first_images(val_part, 2)
        write_json_atomic(train_ann, train_part)
        write_json_atomic(val_ann, val_part)
    return {"train_ann": train_ann, "train_images": root, "val_ann": val_ann, "val_images": root}


def split(data: dict) -> str:
    """"N train / M val images" of prepare_data's split."""
    counts = [len(json.loads(Path(data[f"{part}_ann"]).read_text())["images"]) for part in ("train", "val")]
    return f"{counts[0]} train / {counts[1]} val images"


def first_images(coco: dict, count: int) -> dict:
    images = coco["images"][:count]
    ids = {im["id"] for im in images}
    return {**coco, "images": images, "annotations": [a for a in coco["annotations"] if a["image_id"] in ids]}


def base_config(dataset: str, size: int, data: dict, smoke: bool):
    """(config, weights) of the dataset's recipe, before the arm's switch, seed and iterations."""
    if dataset == "shapes":
        cfg = apply_overrides(get_preset("maskrcnn_r18_fpn"), DEMO_OVERRIDES)
        cfg.name, weights = "ablation_r18_shapes", None
    else:
        cfg, weights = get_preset("maskrcnn_effl0_fpn"), "imagenet/efficientnet_lite0"
        cfg.name = "ablation_effl0_pennfudan"
        cfg.solver.epochs = 0.0  # the iteration count is the budget's
        cfg.solver.log_period = 20
        # evaluation cost: Penn-Fudan has at most 8 people per image
        cfg.model.rpn.post_nms_topk_test, cfg.model.box.detections_per_img = 300, 20
        cfg.data.num_workers = 0  # one thread per process, data loading included
    cfg.input.min_size, cfg.input.max_size = (size,), round(size * 1333 / 800) if dataset == "pennfudan" else size
    cfg.data.train_ann, cfg.data.train_images = str(data["train_ann"]), str(data["train_images"])
    cfg.data.val_ann, cfg.data.val_images = str(data["val_ann"]), str(data["val_images"])
    if smoke:  # a few RoIs and detections: seconds per run
        apply_overrides(cfg, ["model.rpn.post_nms_topk_train=50", "model.rpn.post_nms_topk_test=30",
                              "model.box.batch_size_per_image=16", "model.box.detections_per_img=5"])  # fmt: skip
    return cfg, weights


def run_config(base, switches: list[str], seed: int, iters: int):
    """The base recipe with one arm's switches, a seed and the iteration count (schedule follows)."""
    cfg = copy.deepcopy(base)
    apply_overrides(cfg, switches, source=f"arm {switches}")
    s = cfg.solver
    s.seed, s.max_iter, s.checkpoint_period, s.keep_checkpoints, s.eval_period = seed, iters, iters, 1, 0
    if s.schedule == "multistep":  # the demo's: one step down at 80 %
        s.steps = (max(1, int(iters * 0.8)),)
    return cfg


def default_size(dataset: str, smoke: bool) -> int:
    if smoke:
        return 64
    return 128 if dataset == "shapes" else 160


# ---------------------------------------------------------------------------------------------
# Budget, runs, resumption


def calibrate(base, weights, work: Path, minutes: float) -> dict:
    """The baseline's CPU seconds per iteration (once per work folder) -> iterations for `minutes`."""
    path = work / "calibration.json"
    if path.is_file():
        calibration = json.loads(path.read_text())
    else:
        cpu = []
        for iters in CALIBRATION_ITERS:
            cfg = run_config(base, [], 0, iters)
            cfg.data.val_ann = cfg.data.val_images = ""
            with tempfile.TemporaryDirectory() as tmp:
                start = time.process_time()
                train(cfg, tmp, device="cpu", weights=weights)
                cpu.append(time.process_time() - start)
        seconds = (cpu[1] - cpu[0]) / (CALIBRATION_ITERS[1] - CALIBRATION_ITERS[0])
        calibration = {"cpu_seconds_per_iter": seconds, "measured_on": platform.processor() or platform.machine()}
        write_json_atomic(path, calibration)
    calibration["iters"] = max(1, round(minutes * 60 / calibration["cpu_seconds_per_iter"]))
    return calibration


def run_seed(cfg, weights, work: Path, arm: str, seed: int, analyse=None) -> dict:
    """Train one arm with one seed, evaluate its final model; WORK/ARM-seedS.json when done.
    `analyse(run_dir)` adds its dict to the result (from the saved detections, say). A run whose
    loss became non-finite is finished too: its result says where it diverged."""
    run_dir = work / f"{arm}-seed{seed}"
    shutil.rmtree(run_dir, ignore_errors=True)  # an unfinished run starts over
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    try:
        train(cfg, run_dir, device="cpu", weights=weights)
    except NonFiniteLossError as exc:
        result = {"arm": arm, "seed": seed, "iters": cfg.solver.max_iter, "diverged": str(exc),
                  "wall_seconds": time.perf_counter() - start_wall, "cpu_seconds": time.process_time() - start_cpu}
        write_json_atomic(work / f"{arm}-seed{seed}.json", result)
        return result
    for checkpoint in run_dir.glob("model_*.pt"):  # optimiser states: not needed once evaluated
        if checkpoint.name != "model_final.pt":
            checkpoint.unlink()
    metrics = json.loads((run_dir / "eval" / "metrics.json").read_text())
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    result = {"arm": arm, "seed": seed, "iters": cfg.solver.max_iter, "metrics": metrics,
              "train_seconds": rows[-1]["elapsed"], "wall_seconds": time.perf_counter() - start_wall,
              "cpu_seconds": time.process_time() - start_cpu, "config": str(run_dir / "config.yaml")}  # fmt: skip
    if analyse is not None:
        result.update(analyse(run_dir))
    write_json_atomic(work / f"{arm}-seed{seed}.json", result)
    return result


def run_arms(arms, seeds, base, weights, work: Path, iters: int, switches: dict, run=run_seed) -> None:
    """Each arm in turn, each seed; a finished arm+seed (its json exists) is skipped, but only if
    it trained the same number of iterations (else: another budget, another work folder)."""
    for arm in arms:
        for seed in seeds:
            done = work / f"{arm}-seed{seed}.json"
            if done.is_file():
                previous = json.loads(done.read_text())["iters"]
                if previous != iters:
                    sys.exit(f"{done}: trained {previous} iterations, this run asks for {iters}; "
                             "use another --work or the same --minutes / --iters")
                print(f"[{arm} seed {seed}] done before: {done}", flush=True)
                continue
            print(f"[{arm} seed {seed}] training {iters} iterations", flush=True)
            result = run(run_config(base, switches[arm], seed, iters), weights, work, arm, seed)
            if "diverged" in result:
                print(f"[{arm} seed {seed}] diverged: {result['diverged']}", flush=True)
                continue
            print(f"[{arm} seed {seed}] mask AP {100 * result['metrics']['segm/AP']:.1f}, box AP "
                  f"{100 * result['metrics']['bbox/AP']:.1f} ({result['wall_seconds'] / 60:.1f} min)", flush=True)


def collect(work: Path, arms, seeds) -> tuple[dict[str, list[dict]], list[dict]]:
    """({arm: [result per evaluated seed]} for the arms (in order) that have any, [diverged runs])."""
    found, diverged = {}, []
    for arm in arms:
        rows = [json.loads(p.read_text()) for s in seeds if (p := work / f"{arm}-seed{s}.json").is_file()]
        diverged += [r for r in rows if "diverged" in r]
        if rows := [r for r in rows if "metrics" in r]:
            found[arm] = rows
    return found, diverged


def diverged_note(diverged: list[dict]) -> str:
    """Markdown paragraphs naming the runs that diverged (left out of the means)."""
    return "".join(f"\nDiverged, left out of the means: {r['arm']} seed {r['seed']} ({r['diverged']})\n"
                   for r in diverged)  # fmt: skip


def summarise(rows: list[dict], names=METRICS) -> dict:
    """{metric: {"mean", "sd" (sample, 0 for one seed), "values"}} over seeds, in AP points."""
    out = {}
    for name in names:
        values = [100 * r["metrics"][name] for r in rows]
        out[name] = {"mean": statistics.mean(values), "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
                     "values": values}  # fmt: skip
    return out


# ---------------------------------------------------------------------------------------------
# Report


def markdown(found: dict, summary: dict, header: str) -> str:
    lines = [header, "",
             "| arm | seeds | mask AP | mask AP50 | mask AP75 | box AP | box AP50 | box AP75 | "
             "mask AP vs baseline | paper: mask AP / AP50 / AP75 | min per seed |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    base = summary.get("baseline", {}).get("segm/AP")
    for arm, stats in summary.items():
        cells = [f"{stats[m]['mean']:.1f} ± {stats[m]['sd']:.1f}" for m in METRICS]
        delta = f"{stats['segm/AP']['mean'] - base['mean']:+.1f}" if base and arm != "baseline" else ""
        minutes = statistics.mean(r["wall_seconds"] for r in found[arm]) / 60
        lines.append(f"| {arm} | {len(found[arm])} | {' | '.join(cells)} | {delta} | {PAPER[arm]} | {minutes:.1f} |")
    lines += ["", "Mean ± sample standard deviation over seeds, COCO AP in points on the held-out images; "
              "minutes per seed: wall time of training and evaluation."]
    return "\n".join(lines) + "\n"


def plot(summary: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = list(summary)
    fig, axes = plt.subplots(1, 2, figsize=(max(8, 1.6 * len(arms) + 3), 4.2), sharey=True)
    width = 0.27
    for ax, task, label in zip(axes, ("segm", "bbox"), ("mask", "box")):
        for k, name in enumerate(("AP", "AP50", "AP75")):
            stats = [summary[a][f"{task}/{name}"] for a in arms]
            xs = [i + (k - 1) * width for i in range(len(arms))]
            ax.bar(xs, [s["mean"] for s in stats], width, yerr=[s["sd"] for s in stats], capsize=3,
                   label=f"{label} {name}", alpha=0.8)
            for x, s in zip(xs, stats):
                ax.scatter([x] * len(s["values"]), s["values"], s=8, color="black", zorder=3)
        ax.set_xticks(range(len(arms)), arms, rotation=30)
        ax.set_title(f"{label} AP (bars: mean ± sd; dots: seeds)", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("COCO AP (points)")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(found: dict, diverged: list[dict], out: Path, meta: dict, header: str) -> dict:
    """OUT.json, OUT.md, OUT.png from the finished runs."""
    summary = {arm: summarise(rows) for arm, rows in found.items()}
    result = dict(meta, arms={arm: {"summary": summary[arm], "runs": rows} for arm, rows in found.items()},
                  diverged=diverged)  # fmt: skip
    write_json_atomic(Path(f"{out}.json"), result)
    table = markdown(found, summary, header) + diverged_note(diverged)
    write_text_atomic(Path(f"{out}.md"), table)
    plot(summary, Path(f"{out}.png"), header.split(":")[0])  # "Table 2 ablations on DATASET (...)"
    print(table)
    return result


# ---------------------------------------------------------------------------------------------


def common_args(parser: argparse.ArgumentParser, size_help: str) -> argparse.ArgumentParser:
    """The options this script shares with msrcnn_quality.py."""
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per arm")
    parser.add_argument("--minutes", type=float, default=2.0,
                        help="training budget per arm and seed (-> iterations from the baseline's CPU time)")
    parser.add_argument("--iters", type=int, help="iterations per arm and seed (instead of --minutes)")
    parser.add_argument("--size", type=int, help=f"short side of the images ({size_help})")
    parser.add_argument("--data", default=str(PENNFUDAN), help="Penn-Fudan root folder")
    parser.add_argument("--work", help="data, runs and per-seed results (default runs/SCRIPT/DATASET)")
    parser.add_argument("--out", help="results prefix (default benchmarks/results/SCRIPT_DATASET)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--smoke", action="store_true",
                        help="2 arms, 3 iterations, 64 px, a few images, 1 seed, in a temp folder")
    return parser


def setup(args, name: str) -> tuple[Path, Path]:
    """Apply --smoke and --threads; -> (work folder, results prefix)."""
    import torch

    torch.set_num_threads(args.threads)
    if args.smoke:
        args.seeds, args.iters = 1, args.iters or 3
        if not (args.work and args.out):
            tmp = Path(tempfile.mkdtemp(prefix=f"{name}_smoke_"))
            args.work, args.out = args.work or str(tmp / "work"), args.out or str(tmp / name)
    args.size = args.size or default_size(args.dataset, args.smoke)
    work = Path(args.work or REPO / "runs" / name / args.dataset)
    out = Path(args.out or REPO / "benchmarks" / "results" / f"{name}_{args.dataset}")
    work.mkdir(parents=True, exist_ok=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    return work, out


def restore(report_json: Path, work: Path) -> None:
    """Seed WORK with a committed report's calibration and per-seed results (never overwriting)."""
    report = json.loads(Path(report_json).read_text())
    if not (work / "calibration.json").is_file():
        write_json_atomic(work / "calibration.json", {k: v for k, v in report["calibration"].items() if k != "iters"})
    for row in [r for arm in report["arms"].values() for r in arm["runs"]] + report["diverged"]:
        if not (path := work / f"{row['arm']}-seed{row['seed']}.json").is_file():
            write_json_atomic(path, row)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=DEFAULT_ARMS, required=True)
    parser.add_argument("--arms", help=f"comma-separated, from {', '.join(SWITCHES)} (default: the dataset's)")
    parser.add_argument("--run-seeds", help="comma-separated seeds this process trains (default: all of "
                        "--seeds); processes sharing a work folder can each take some")
    parser.add_argument("--resume-from", help="a report's json (OUT.json): its calibration and finished "
                        "runs are written into the work folder first, so new arms join its table")
    args = common_args(parser, "shapes 128, pennfudan 160").parse_args(argv)
    work, out = setup(args, "paper_ablations")
    arms = args.arms.split(",") if args.arms else (SMOKE_ARMS if args.smoke else DEFAULT_ARMS)[args.dataset]
    unknown = [a for a in arms if a not in SWITCHES]
    if unknown or (args.dataset == "pennfudan" and "c4" in arms):
        sys.exit(f"--arms: {', '.join(unknown) or 'c4'} not available for {args.dataset} (see --help)")
    if args.resume_from:
        restore(Path(args.resume_from), work)
    data = prepare_data(args.dataset, work, args)
    base, weights = base_config(args.dataset, args.size, data, args.smoke)
    calibration = calibrate(base, weights, work, args.minutes) if args.iters is None else {"iters": args.iters}
    iters, seeds = calibration["iters"], range(args.seeds)
    print(f"{args.dataset}: arms {', '.join(arms)}; seeds {list(seeds)}; {iters} iterations each "
          f"({args.size} px); work folder {work}", flush=True)
    run_seeds = [int(x) for x in args.run_seeds.split(",")] if args.run_seeds else seeds
    run_arms(arms, run_seeds, base, weights, work, iters, SWITCHES)
    found, diverged = collect(work, SWITCHES, seeds)
    model = "ResNet-18 FPN from scratch (the demo's)" if args.dataset == "shapes" else \
        "EfficientNet-Lite0 FPN from ImageNet (maskrcnn_effl0_fpn)"
    header = (f"Table 2 ablations on {args.dataset} ({split(data)}): {model}, {args.size} px, {iters} iterations per arm "
              f"and seed, seeds 0..{args.seeds - 1}")
    meta = {"dataset": args.dataset, "size": args.size, "iters": iters, "seeds": list(seeds),
            "calibration": calibration, "base_config": str(work / "baseline-seed0" / "config.yaml"),
            "switches": {a: SWITCHES[a] for a in found}, "threads": args.threads,
            "machine": platform.processor() or platform.machine()}  # fmt: skip
    report(found, diverged, out, meta, header)
    return 0


if __name__ == "__main__":
    sys.exit(main())

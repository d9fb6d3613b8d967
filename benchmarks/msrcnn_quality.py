"""Mask Scoring R-CNN's claim on real images: does the predicted MaskIoU rank masks better than
the class score? MS R-CNN (`model.maskiou.enabled=true`) vs plain Mask R-CNN on Penn-Fudan.

Both arms are paper_ablations.py's Penn-Fudan baseline (same split, recipe, image size, seeds and
iteration count: `maskrcnn_effl0_fpn` fine-tuned from `imagenet/efficientnet_lite0`); the MS arm
adds the MaskIoU head, 128 channels wide like the preset's mask head (paper: 256 with a 256-wide
mask head), fc 1024. From each run's final detections on the 50 held-out images (what its COCO
evaluation scored, WORK/ARM-seedS/eval/results.json) and the ground truth:
- the true mask IoU of each detection: its best IoU with a ground-truth mask of its class; a true
  positive is a detection whose box has IoU >= 0.5 with a ground-truth box of its class (the RoIs
  the MaskIoU head is trained on);
- Pearson and Spearman correlation with the true mask IoU of (a) the predicted MaskIoU (mask
  score / class score) and (b) the class score, over all detections and over true positives;
- mask AP (AP, AP50, AP75) of the same detections ranked by the class score and by the mask
  score (class score x predicted MaskIoU, MS R-CNN's ranking); box AP.
Mean and sample standard deviation over seeds: OUT.json, OUT.md; OUT.png plots the true mask
IoU against each score for seed 0's detections. Runs one arm and seed at a time;
finished ones (WORK/ARM-seedS.json) are not run again; `--minutes` becomes one iteration count
from the plain arm's CPU seconds per iteration (see paper_ablations.py).

    python benchmarks/msrcnn_quality.py [--minutes 2] [--seeds 3] [--size 160]
    python benchmarks/msrcnn_quality.py --smoke
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils

import paper_ablations as pa
from maskrcnn.engine.evaluator import evaluate_results, load_ground_truth

ARMS = {"maskrcnn": [], "msrcnn": ["model.maskiou.enabled=true", "model.maskiou.conv_dim=128"]}
PAPER = "mmdetection R50-caffe-FPN 1x on COCO val: mask AP 34.4 -> 36.0 with the MaskIoU head, box AP 38.0 -> 38.2"
SCORES = {"pred_maskiou": "predicted MaskIoU", "class_score": "class score"}


def true_ious(results: list[dict], gt) -> tuple[np.ndarray, np.ndarray]:
    """(D,) best mask IoU and (D,) best box IoU of each detection with the GT of its class (0 without)."""
    mask_iou, box_iou = np.zeros(len(results)), np.zeros(len(results))
    for i, r in enumerate(results):
        anns = gt.loadAnns(gt.getAnnIds(imgIds=r["image_id"], catIds=r["category_id"], iscrowd=False))
        if anns:
            crowd = [0] * len(anns)
            mask_iou[i] = mask_utils.iou([r["segmentation"]], [gt.annToRLE(a) for a in anns], crowd).max()
            box_iou[i] = mask_utils.iou([r["bbox"]], [a["bbox"] for a in anns], crowd).max()
    return mask_iou, box_iou


def average_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 0..n-1, ties sharing their mean rank (as Spearman's coefficient needs)."""
    ranks = np.empty(len(x))
    ranks[np.argsort(x, kind="stable")] = np.arange(len(x))
    _, group, counts = np.unique(x, return_inverse=True, return_counts=True)
    return (np.bincount(group, weights=ranks) / counts)[group]


def pearson(x: np.ndarray, y: np.ndarray) -> float | None:
    """None when undefined (fewer than 2 values, or one of them constant)."""
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    return float(np.corrcoef(x, y)[0, 1])


def spearman(x: np.ndarray, y: np.ndarray) -> float | None:
    return pearson(average_ranks(x), average_ranks(y)) if len(x) >= 2 else None


def quality(results: list[dict], val_ann: Path) -> dict:
    """The correlations and the two rankings' APs of one run's detections (see the docstring)."""
    gt = load_ground_truth(val_ann)
    mask_iou, box_iou = true_ious(results, gt)
    tp = box_iou >= 0.5
    scores = {"class_score": np.array([r["score"] for r in results])}
    if results and "mask_score" in results[0]:
        scores["pred_maskiou"] = np.array([r["mask_score"] / r["score"] for r in results])
    out = {"detections": len(results), "true_positives": int(tp.sum()),
           "mean_true_maskiou": float(mask_iou.mean()) if results else None}  # fmt: skip
    for name, values in scores.items():
        for subset, keep in (("all", slice(None)), ("tp", tp)):
            out[f"pearson/{name}/{subset}"] = pearson(values[keep], mask_iou[keep])
            out[f"spearman/{name}/{subset}"] = spearman(values[keep], mask_iou[keep])
    by_class_score = [{k: v for k, v in r.items() if k != "mask_score"} for r in results]
    for ranking, dets in (("class_score", by_class_score), ("mask_score", results)):
        metrics = evaluate_results(dets, val_ann, ["segm"])
        out.update({f"segm_by_{ranking}/{n}": metrics[f"segm/{n}"] for n in ("AP", "AP50", "AP75")})
    return out


def analyse(run_dir: Path, val_ann: Path) -> dict:
    results = json.loads((run_dir / "eval" / "results.json").read_text())
    return {"quality": quality(results, val_ann)}


# ---------------------------------------------------------------------------------------------
# Report


def summarise(rows: list[dict]) -> dict:
    """{key: {"mean", "sd", "values"}} over seeds for every quality number (AP in points)."""
    out = {}
    for key in rows[0]["quality"]:
        values = [r["quality"][key] for r in rows]
        if any(v is None for v in values) or key in ("detections", "true_positives"):
            out[key] = {"values": values}
            continue
        values = [100 * v if "/AP" in key else v for v in values]
        out[key] = {"mean": statistics.mean(values), "values": values,
                    "sd": statistics.stdev(values) if len(values) > 1 else 0.0}  # fmt: skip
    for key in ("bbox/AP", "bbox/AP50", "bbox/AP75"):
        values = [100 * r["metrics"][key] for r in rows]
        out[key] = {"mean": statistics.mean(values), "values": values,
                    "sd": statistics.stdev(values) if len(values) > 1 else 0.0}  # fmt: skip
    return out


def cell(stats: dict, key: str, digits: int = 1) -> str:
    s = stats.get(key)
    if s is None or "mean" not in s:
        return "-"
    return f"{s['mean']:.{digits}f} ± {s['sd']:.{digits}f}"


def markdown(summary: dict, header: str) -> str:
    lines = [header, "", "| arm | seeds | mask AP by class score | mask AP by mask score | mask AP75 by class score | "
             "mask AP75 by mask score | box AP |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for arm, s in summary.items():
        keys = ("segm_by_class_score/AP", "segm_by_mask_score/AP", "segm_by_class_score/AP75",
                "segm_by_mask_score/AP75", "bbox/AP")  # fmt: skip
        lines.append(f"| {arm} | {len(s['bbox/AP']['values'])} | " + " | ".join(cell(s, k) for k in keys) + " |")
    lines += ["", "Correlation with the true mask IoU (Pearson / Spearman; all detections | true positives):", "",
              "| arm | score | Pearson, all | Spearman, all | Pearson, TP | Spearman, TP | detections (TP) |",
              "|---|---|---|---|---|---|---|"]  # fmt: skip
    for arm, s in summary.items():
        counts = f"{statistics.mean(s['detections']['values']):.0f} ({statistics.mean(s['true_positives']['values']):.0f})"
        for name, label in SCORES.items():
            if f"pearson/{name}/all" not in s:
                continue
            cells = [cell(s, f"{c}/{name}/{subset}", 2) for subset in ("all", "tp") for c in ("pearson", "spearman")]
            lines.append(f"| {arm} | {label} | {' | '.join(cells)} | {counts} |")
    lines += ["", "Mean ± sample standard deviation over seeds; COCO AP in points on the held-out images.",
              f"Paper (Mask Scoring R-CNN): {PAPER}."]  # fmt: skip
    return "\n".join(lines) + "\n"


def plot(work: Path, val_ann: Path, arms, path: Path, title: str) -> None:
    """True mask IoU against each score of seed 0's detections, one panel per arm and score."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gt = load_ground_truth(val_ann)
    panels = []
    for arm in arms:
        results = json.loads((work / f"{arm}-seed0" / "eval" / "results.json").read_text())
        mask_iou, box_iou = true_ious(results, gt)
        tp = box_iou >= 0.5
        panels.append((arm, "class score", [r["score"] for r in results], mask_iou, tp))
        if results and "mask_score" in results[0]:
            panels.append((arm, "predicted MaskIoU", [r["mask_score"] / r["score"] for r in results], mask_iou, tp))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.6), squeeze=False)
    for ax, (arm, label, score, iou, tp) in zip(axes[0], panels):
        score = np.asarray(score)
        ax.scatter(score[~tp], iou[~tp], s=6, alpha=0.5, color="tab:gray", label="box IoU < 0.5")
        ax.scatter(score[tp], iou[tp], s=6, alpha=0.6, color="tab:blue", label="true positive")
        ax.set_xlabel(f"{arm}: {label}")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("true mask IoU")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arms", help=f"comma-separated, from {', '.join(ARMS)} (default: both)")
    args = pa.common_args(parser, "160").parse_args(argv)
    args.dataset = "pennfudan"
    work, out = pa.setup(args, "msrcnn_quality")
    arms = args.arms.split(",") if args.arms else list(ARMS)
    if any(a not in ARMS for a in arms):
        sys.exit(f"--arms: choose from {', '.join(ARMS)}")
    data = pa.prepare_data("pennfudan", work, args)
    base, weights = pa.base_config("pennfudan", args.size, data, args.smoke)
    base.name = "msrcnn_quality_effl0_pennfudan"
    calibration = pa.calibrate(base, weights, work, args.minutes) if args.iters is None else {"iters": args.iters}
    iters, seeds = calibration["iters"], range(args.seeds)
    print(f"msrcnn_quality: arms {', '.join(arms)}; seeds {list(seeds)}; {iters} iterations each "
          f"({args.size} px); work folder {work}", flush=True)
    run = functools.partial(pa.run_seed, analyse=functools.partial(analyse, val_ann=data["val_ann"]))
    pa.run_arms(arms, seeds, base, weights, work, iters, ARMS, run=run)
    found, diverged = pa.collect(work, ARMS, seeds)
    summary = {arm: summarise(rows) for arm, rows in found.items()}
    header = (f"Mask Scoring R-CNN vs Mask R-CNN on Penn-Fudan ({pa.split(data)}): EfficientNet-Lite0 FPN "
              f"from ImageNet, {args.size} px, {iters} iterations per arm and seed, seeds 0..{args.seeds - 1}")
    result = {"size": args.size, "iters": iters, "seeds": list(seeds), "calibration": calibration,
              "switches": {a: ARMS[a] for a in found}, "threads": args.threads,
              "arms": {arm: {"summary": summary[arm], "runs": rows} for arm, rows in found.items()},
              "diverged": diverged}  # fmt: skip
    pa.write_json_atomic(Path(f"{out}.json"), result)
    table = markdown(summary, header) + pa.diverged_note(diverged)
    pa.write_text_atomic(Path(f"{out}.md"), table)
    with_seed0 = [arm for arm in found if found[arm][0]["seed"] == 0]
    if with_seed0:
        plot(work, data["val_ann"], with_seed0, Path(f"{out}.png"), f"{header.split(':')[0]}, seed 0's detections")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Mask Scoring R-CNN's claim: does ranking masks by class score x predicted MaskIoU raise mask AP?
MS R-CNN (`model.maskiou.enabled=true`) against the same model without the head, same seeds,
data, recipe and iteration count, on one of two datasets (`--dataset`):
- `synthetic`: `maskrcnn synth --style quality` (1000 training images, seed 1; 500 held out, seed
  2; 128 px): shapes whose mask quality varies independently of their class (thin spokes,
  camouflage fills, blurred edges, occluding bars); the demo's ResNet-18 FPN from scratch, its
  recipe (AdamW, one step down at 80 %); the MaskIoU head 64 wide like the demo's mask head, fc 256
  like its box head (the paper: 256 and 1024 beside R50-FPN's heads).
- `pennfudan`: Penn-Fudan's fixed split (120 train / 50 held out) at 288 px (the fine-tune
  benchmark's size), `maskrcnn_effl0_fpn` fine-tuned from `imagenet/efficientnet_lite0` with its
  fine-tuning recipe, the cosine schedule ending at the last iteration (complete: --iters sets it,
  no time limit cuts it); the MaskIoU head 128 wide like the preset's mask head, fc 1024.
Seeds run in turn, both arms of a seed before the next (pairs finish together). From each run's
final detections on the held-out images (WORK/ARM-seedS/eval/results.json), at report time:
- the true mask IoU of each detection (best IoU with a ground-truth mask of its class; a true
  positive has box IoU >= 0.5 with a ground-truth box of its class) and the Pearson and Spearman
  correlation with it of the predicted MaskIoU (mask score / class score) and of the class score;
- mask AP / AP50 / AP75 ranked by the class score and by the mask score; box AP;
- paired effects (paired_ap.py): per seed, MS R-CNN by mask score - Mask R-CNN (mask AP, AP75),
  MS R-CNN by mask score - by class score (the re-ranking alone), box AP with - without, and the
  correlation gain; the mean over seeds with its 95 % t-interval, and the 95 % interval of the
  same mean over bootstrap resamples of the held-out images (same resample for every run).
OUT.json, OUT.md (tables, verdicts), OUT.png (effects with intervals; true IoU against each score,
seed 0). A finished arm+seed (WORK/ARM-seedS.json) is not run again.

    python benchmarks/msrcnn_quality.py --dataset synthetic --iters 3000   # committed (mask AP75 ~57)
    python benchmarks/msrcnn_quality.py --dataset pennfudan --iters 1300   # committed (the fine-tune run's steps)
    python benchmarks/msrcnn_quality.py --dataset synthetic --smoke   # seconds, temp folder
    python benchmarks/msrcnn_quality.py --rerender benchmarks/results/msrcnn_quality_pennfudan.json
    python benchmarks/msrcnn_quality.py --verdicts benchmarks/results/msrcnn_quality_{synthetic,pennfudan}.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils

import paper_ablations as pa
from paired_ap import ImageMatches, bootstrap_counts, percentile_interval, t_interval
from maskrcnn.evaluation.evaluator import evaluate_results, load_ground_truth

# The MaskIoU head as wide as the model's mask head, its fc layers as wide as its box head
# (the paper: 256 and 1024 with R50-FPN's heads).
ARMS = {
    "pennfudan": {"maskrcnn": [], "msrcnn": ["model.maskiou.enabled=true", "model.maskiou.conv_dim=128"]},
    "synthetic": {"maskrcnn": [], "msrcnn": ["model.maskiou.enabled=true", "model.maskiou.conv_dim=64",
                                             "model.maskiou.fc_dim=256"]},
}
SYNTHETIC_IMAGES = {"full": (1000, 500, 128), "smoke": (8, 4, 64)}  # train, val images, side (px)
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


def load_detections(work: Path, arm: str, seed: int) -> list[dict]:
    """A run's final detections on the held-out images (what its COCO evaluation scored)."""
    return json.loads((work / f"{arm}-seed{seed}" / "eval" / "results.json").read_text())


def views(arm: str, results: list[dict]) -> dict[str, tuple[list[dict], str]]:
    """{name: (detections, task)}: the rankings of one run that the effects compare."""
    by_class = [{k: v for k, v in r.items() if k != "mask_score"} for r in results]
    out = {"segm_by_class_score": (by_class, "segm"), "bbox": (by_class, "bbox")}
    if arm == "msrcnn":
        out["segm_by_mask_score"] = ([{**r, "score": r["mask_score"]} for r in results], "segm")
    return out


# ---------------------------------------------------------------------------------------------
# Paired effects: (name, what, (arm, view) with, (arm, view) without, metric, paper)

EFFECTS = (
    ("headline_AP", "mask AP: MS R-CNN ranked by mask score - Mask R-CNN", ("msrcnn", "segm_by_mask_score"),
     ("maskrcnn", "segm_by_class_score"), "AP", "+1.6 (34.4 -> 36.0)"),
    ("headline_AP75", "mask AP75: MS R-CNN ranked by mask score - Mask R-CNN", ("msrcnn", "segm_by_mask_score"),
     ("maskrcnn", "segm_by_class_score"), "AP75", "positive, larger than at AP50 (gain at high IoU)"),
    ("rescoring_AP", "mask AP: MS R-CNN's masks ranked by mask score - by class score",
     ("msrcnn", "segm_by_mask_score"), ("msrcnn", "segm_by_class_score"), "AP", "positive"),
    ("rescoring_AP75", "mask AP75: MS R-CNN's masks ranked by mask score - by class score", ("msrcnn", "segm_by_mask_score"),
     ("msrcnn", "segm_by_class_score"), "AP75", "positive"),
    ("box_AP", "box AP: MS R-CNN - Mask R-CNN", ("msrcnn", "bbox"), ("maskrcnn", "bbox"), "AP", "+0.2 (38.0 -> 38.2)"),
)  # fmt: skip
CORRELATIONS = (
    ("pearson_tp", "Pearson r with the true mask IoU, true positives: predicted MaskIoU - class score",
     "pearson", "tp"),
    ("pearson_all", "Pearson r with the true mask IoU, all detections: predicted MaskIoU - class score",
     "pearson", "all"),
    ("spearman_tp", "Spearman rho with the true mask IoU, true positives: predicted MaskIoU - class score",
     "spearman", "tp"),
    ("spearman_all", "Spearman rho with the true mask IoU, all detections: predicted MaskIoU - class score",
     "spearman", "all"),
)  # fmt: skip
BOOTSTRAP_SAMPLES = 1000


def analyse_run(work: Path, arm: str, seed: int, val_ann: Path, gt, counts: np.ndarray) -> dict:
    """One finished run's "quality" numbers and, per view, its exact AP and the AP on each bootstrap
    resample (`counts`: (B, I) image weights). Cached in WORK/ARM-seedS/analysis.json, keyed by a
    hash of the detections and the resample, so that runs finished earlier are analysed once (a
    process can do it while others train) and changed detections are analysed again."""
    detections = work / f"{arm}-seed{seed}" / "eval" / "results.json"
    key = hashlib.sha256(detections.read_bytes() + counts.tobytes()).hexdigest()
    cache = detections.parents[1] / "analysis.json"
    if cache.is_file() and (cached := json.loads(cache.read_text()))["key"] == key:
        return cached
    results = json.loads(detections.read_text())
    out = {"key": key, "quality": quality(results, val_ann), "views": {}}
    for name, (dets, task) in views(arm, results).items():
        matches = ImageMatches(gt, dets, task)
        exact, resampled = matches.ap(np.ones((1, matches.num_images))), matches.ap(counts)
        out["views"][name] = {"exact": {k: float(v[0]) for k, v in exact.items()},
                              "bootstrap": {k: v.tolist() for k, v in resampled.items()}}  # fmt: skip
    pa.write_json_atomic(cache, out)
    return out


def paired_effects(found: dict, analyses: dict, samples: int) -> dict:
    """Each effect per seed (both arms of a seed finished), its mean with the paired t-interval over
    seeds, and the 95 % percentile interval of that mean over the `samples` bootstrap resamples of
    the held-out images (the same resample for every run). `analyses`: {(arm, seed): analyse_run}."""
    seeds = sorted({r["seed"] for r in found.get("maskrcnn", [])} & {r["seed"] for r in found.get("msrcnn", [])})
    if not seeds:
        return {}
    out = {"seeds": seeds, "bootstrap_samples": samples}
    for key, what, (arm1, view1), (arm0, view0), metric, paper in EFFECTS:
        pairs = [(analyses[arm1, s]["views"][view1], analyses[arm0, s]["views"][view0]) for s in seeds]
        diffs = [100 * (a["exact"][metric] - b["exact"][metric]) for a, b in pairs]
        boot = np.mean([np.subtract(a["bootstrap"][metric], b["bootstrap"][metric]) for a, b in pairs], 0)
        out[key] = {"what": what, "paper": paper, "per_seed": diffs, **t_interval(diffs),
                    "bootstrap_ci95": [100 * v for v in percentile_interval(boot)]}  # fmt: skip
    return {**out, **correlation_effects(found["msrcnn"], seeds)}


def correlation_effects(ms_runs: list[dict], seeds: list[int]) -> dict:
    """Per seed, the MS R-CNN run's correlation with the true mask IoU of its predicted MaskIoU
    minus that of its class score (from the runs' "quality"; no detections needed), with the t-interval."""
    ms_rows = {r["seed"]: r["quality"] for r in ms_runs}
    out = {}
    for key, what, coefficient, subset in CORRELATIONS:
        pairs = [(ms_rows[s][f"{coefficient}/pred_maskiou/{subset}"], ms_rows[s][f"{coefficient}/class_score/{subset}"])
                 for s in seeds]  # fmt: skip
        diffs = [a - b for a, b in pairs if a is not None and b is not None]  # None: undefined (constant)
        if diffs:
            out[key] = {"what": what, "paper": "positive (its Fig. 2 motivation)", "per_seed": diffs, **t_interval(diffs)}
    return out


def excludes_zero(effect: dict) -> bool | None:
    ci = effect.get("ci95")
    return None if ci is None else bool(ci[0] > 0 or ci[1] < 0)


def verdict(effect: dict, unit: str) -> str:
    """"+1.2 points, 95 % CI [0.3, 2.1]: excludes zero" in words."""
    ci = effect.get("ci95")
    if ci is None:
        return f"{effect['mean']:+.2f}{unit} from one seed: no interval"
    sign = "excludes zero: " + ("the effect is positive" if ci[0] > 0 else "the effect is negative") \
        if excludes_zero(effect) else "includes zero: not decided at this scale (no effect shown)"
    return f"{effect['mean']:+.2f}{unit}, 95 % CI [{ci[0]:+.2f}, {ci[1]:+.2f}]; {sign}"


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


def plot(work: Path, val_ann: Path, arms, effects: dict, path: Path, title: str) -> None:
    """Left: each AP effect's mean with its t-interval (bars) and bootstrap interval (thin), seeds
    as dots. Then the true mask IoU against each score of seed 0's detections, a panel per score."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gt = load_ground_truth(val_ann)
    panels = []
    for arm in arms:
        results = load_detections(work, arm, 0)
        mask_iou, box_iou = true_ious(results, gt)
        tp = box_iou >= 0.5
        panels.append((arm, "class score", [r["score"] for r in results], mask_iou, tp))
        if results and "mask_score" in results[0]:
            panels.append((arm, "predicted MaskIoU", [r["mask_score"] / r["score"] for r in results], mask_iou, tp))
    fig, axes = plt.subplots(1, len(panels) + 1, figsize=(3.6 * len(panels) + 5, 3.8), squeeze=False,
                             gridspec_kw={"width_ratios": [1.5] + [1] * len(panels)})  # fmt: skip
    _plot_effects(axes[0][0], effects)
    for ax, (arm, label, score, iou, tp) in zip(axes[0][1:], panels):
        score = np.asarray(score)
        ax.scatter(score[~tp], iou[~tp], s=4, alpha=0.4, color="tab:gray", label="box IoU < 0.5")
        ax.scatter(score[tp], iou[tp], s=4, alpha=0.5, color="tab:blue", label="true positive")
        ax.set_xlabel(f"{arm}: {label}")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0][1].set_ylabel("true mask IoU (seed 0)")
    axes[0][1].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_effects(ax, effects: dict) -> None:
    keys = [e[0] for e in EFFECTS if e[0] in effects]
    for y, key in enumerate(keys):
        effect = effects[key]
        if effect.get("bootstrap_ci95"):
            ax.plot(effect["bootstrap_ci95"], [y + 0.15] * 2, color="tab:orange", lw=1.5)
        if effect.get("ci95"):
            ax.plot(effect["ci95"], [y] * 2, color="tab:blue", lw=4, alpha=0.6)
        ax.scatter(effect["per_seed"], [y] * len(effect["per_seed"]), s=12, color="black", zorder=3)
        ax.scatter([effect["mean"]], [y], marker="|", s=200, color="tab:red", zorder=4)
    ax.axvline(0, color="gray", lw=1)
    ax.set_yticks(range(len(keys)), [k.replace("_", " ") for k in keys], fontsize=8)
    ax.set_xlabel("paired difference (AP points)")
    ax.set_title("blue: 95 % t (seeds); orange: bootstrap (images)", fontsize=8)
    ax.grid(axis="x", alpha=0.3)


def effects_markdown(effects: dict) -> str:
    """The paired effects table and one verdict line per effect."""
    if not effects:
        return ""
    seeds = effects["seeds"]
    lines = ["", f"Paired effects (same seed with and without the MaskIoU head; seeds {seeds}): mean of the "
             f"per-seed differences, its 95 % t-interval over seeds (df {len(seeds) - 1}), and the 95 % "
             f"interval of the same mean over {effects['bootstrap_samples']} bootstrap resamples of the "
             "held-out images (training noise is in the first, not in the second).", "",
             "| effect | paper | per seed | mean | 95 % CI (t, seeds) | 95 % CI (bootstrap, images) | excludes zero (t) |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for key, effect in effects.items():
        if not isinstance(effect, dict):
            continue
        digits = 1 if key in dict.fromkeys(e[0] for e in EFFECTS) else 3
        ci, boot = effect.get("ci95"), effect.get("bootstrap_ci95")
        cells = [effect["what"], effect["paper"], ", ".join(f"{v:+.{digits}f}" for v in effect["per_seed"]),
                 f"{effect['mean']:+.{digits}f}", f"[{ci[0]:+.{digits}f}, {ci[1]:+.{digits}f}]" if ci else "-",
                 f"[{boot[0]:+.{digits}f}, {boot[1]:+.{digits}f}]" if boot else "-",
                 {True: "yes", False: "no", None: "-"}[excludes_zero(effect)]]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Verdicts (AP in points; correlations as differences of coefficients):", ""]
    for key, effect in effects.items():
        if isinstance(effect, dict):
            unit = " points" if key in dict.fromkeys(e[0] for e in EFFECTS) else ""
            lines.append(f"- {effect['what']}: {verdict(effect, unit)}")
    return "\n".join(lines) + "\n"


def report(found: dict, diverged: list, work: Path, val_ann: Path, out: Path, header: str, meta: dict) -> dict:
    """OUT.json, OUT.md, OUT.png from the finished runs' saved detections."""
    gt = load_ground_truth(val_ann)
    counts = bootstrap_counts(len(gt.getImgIds()), BOOTSTRAP_SAMPLES)
    analyses = {(arm, row["seed"]): analyse_run(work, arm, row["seed"], val_ann, gt, counts)
                for arm, rows in found.items() for row in rows}  # fmt: skip
    for arm, rows in found.items():
        for row in rows:
            row["quality"] = analyses[arm, row["seed"]]["quality"]
    summary = {arm: summarise(rows) for arm, rows in found.items()}
    effects = paired_effects(found, analyses, BOOTSTRAP_SAMPLES)
    result = dict(meta, header=header, effects=effects, diverged=diverged,
                  arms={arm: {"summary": summary[arm], "runs": rows} for arm, rows in found.items()})  # fmt: skip
    pa.write_json_atomic(Path(f"{out}.json"), result)
    table = markdown(summary, header) + effects_markdown(effects) + pa.diverged_note(diverged)
    pa.write_text_atomic(Path(f"{out}.md"), table)
    with_seed0 = [arm for arm in found if found[arm][0]["seed"] == 0]
    if with_seed0:
        plot(work, val_ann, with_seed0, effects, Path(f"{out}.png"), f"{header.split(':')[0]}")
    print(table)
    return result


def verdict_table(reports: list[Path]) -> str:
    """One row per effect, a column per report (its dataset): mean [95 % t-interval over seeds] and
    whether the interval excludes zero, read from the reports' json."""
    loaded = [json.loads(path.read_text()) for path in reports]
    keys = list(dict.fromkeys(k for r in loaded for k, v in r["effects"].items() if isinstance(v, dict)))
    names = [f"{r['dataset']} ({len(r['effects'].get('seeds', []))} seeds, {r['iters']} iterations)" for r in loaded]
    lines = ["| effect (paired by seed; mean, 95 % t-interval over seeds) | paper | " + " | ".join(names) + " |",
             "|---|---|" + "---|" * len(names)]  # fmt: skip
    for key in keys:
        effect = next(r["effects"][key] for r in loaded if key in r["effects"])
        digits, unit = (1, " points") if key in dict.fromkeys(e[0] for e in EFFECTS) else (2, "")
        cells = []
        for r in loaded:
            e = r["effects"].get(key)
            if e is None or e.get("ci95") is None:
                cells.append("-" if e is None else f"{e['mean']:+.{digits}f}{unit} (one seed)")
                continue
            low, high = e["ci95"]
            decided = "**excludes zero**" if excludes_zero(e) else "includes zero"
            cells.append(f"{e['mean']:+.{digits}f}{unit} [{low:+.{digits}f}, {high:+.{digits}f}], {decided}")
        lines.append(f"| {effect['what']} | {effect['paper']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def rerender(report_json: Path) -> dict:
    """OUT.json and OUT.md again from a finished report OUT.json alone: the correlation effects
    recomputed from its runs' numbers as CORRELATIONS now defines them (one added later joins),
    the AP effects and OUT.png as they were (they need the runs' detections)."""
    result = json.loads(report_json.read_text())
    md = report_json.with_suffix(".md")
    header = result.setdefault("header", md.read_text().splitlines()[0] if md.is_file() else "")
    effects = result["effects"]
    if "msrcnn" in result["arms"] and effects:
        effects.update(correlation_effects(result["arms"]["msrcnn"]["runs"], effects["seeds"]))
    pa.write_json_atomic(report_json, result)
    summary = {arm: entry["summary"] for arm, entry in result["arms"].items()}
    pa.write_text_atomic(md, markdown(summary, header) + effects_markdown(effects) + pa.diverged_note(result["diverged"]))
    return result


def prepare_synthetic(work: Path, smoke: bool) -> dict:
    """`maskrcnn synth --style quality` training (seed 1) and held-out (seed 2) sets in WORK/data."""
    from maskrcnn.data.synthetic import write_synthetic_dataset

    *counts, size = SYNTHETIC_IMAGES["smoke" if smoke else "full"]
    paths = {}
    for part, count, seed in zip(("train", "val"), counts, (1, 2)):
        ann = work / "data" / part / "annotations.json"
        if not ann.is_file():
            write_synthetic_dataset(ann.parent, count, seed=seed, size=size, style="quality")
        paths[f"{part}_ann"], paths[f"{part}_images"] = ann, ann.parent / "images"
    return paths


def recipe(args, work: Path):
    """(data paths, base config, weights, model description) of the dataset's arm."""
    if args.dataset == "synthetic":
        data = prepare_synthetic(work, args.smoke)
        base, weights = pa.base_config("shapes", args.size, data, args.smoke)
        base.name = "msrcnn_quality_r18_synthetic"
        return data, base, weights, "ResNet-18 FPN from scratch (the demo's)"
    data = pa.prepare_data("pennfudan", work, args)
    base, weights = pa.base_config("pennfudan", args.size, data, args.smoke)
    base.name = "msrcnn_quality_effl0_pennfudan"
    return data, base, weights, "EfficientNet-Lite0 FPN from ImageNet (maskrcnn_effl0_fpn, fine-tuning recipe)"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=ARMS, default="pennfudan",
                        help="pennfudan (real images) or synthetic (maskrcnn synth --style quality)")
    parser.add_argument("--arms", help="comma-separated, from maskrcnn, msrcnn (default: both)")
    parser.add_argument("--report-only", action="store_true",
                        help="train nothing: report the runs already finished in the work folder")
    parser.add_argument("--run-seeds", help="comma-separated seeds this process trains (default: all of "
                        "--seeds); processes sharing a work folder can each take some")
    parser.add_argument("--train-only", action="store_true",
                        help="no report: another process writes it (--report-only), analysing runs as they finish")
    parser.add_argument("--rerender", metavar="OUT.json",
                        help="train nothing: rewrite OUT.json and OUT.md from that report alone (see rerender)")
    parser.add_argument("--verdicts", nargs="+", metavar="REPORT.json",
                        help="train nothing: every effect of these reports in one table, a column per "
                        "report (--out; default benchmarks/results/msrcnn_quality_verdicts.md)")
    args = pa.common_args(parser, "synthetic 128, pennfudan 288").parse_args(argv)
    if args.rerender:
        rerender(Path(args.rerender))
        return 0
    if args.verdicts:
        out = Path(args.out or pa.REPO / "benchmarks" / "results" / "msrcnn_quality_verdicts.md")
        pa.write_text_atomic(out, verdict_table([Path(p) for p in args.verdicts]))
        print(out.read_text())
        return 0
    if args.size is None and not args.smoke:
        args.size = 128 if args.dataset == "synthetic" else 288
    work, out = pa.setup(args, "msrcnn_quality")
    switches = ARMS[args.dataset]
    arms = args.arms.split(",") if args.arms else list(switches)
    if any(a not in switches for a in arms):
        sys.exit(f"--arms: choose from {', '.join(switches)}")
    data, base, weights, model = recipe(args, work)
    if args.report_only and args.iters is None:
        sys.exit("--report-only: give the runs' --iters")
    calibration = pa.calibrate(base, weights, work, args.minutes) if args.iters is None else {"iters": args.iters}
    iters, seeds = calibration["iters"], range(args.seeds)
    print(f"msrcnn_quality {args.dataset}: arms {', '.join(arms)}; seeds {list(seeds)}; {iters} iterations "
          f"each ({args.size} px); work folder {work}", flush=True)
    run_seeds = [int(x) for x in args.run_seeds.split(",")] if args.run_seeds else seeds
    for seed in [] if args.report_only else run_seeds:  # both arms of a seed before the next: pairs finish together
        pa.run_arms(arms, [seed], base, weights, work, iters, switches)
    if args.train_only:
        return 0
    found, diverged = pa.collect(work, switches, seeds)
    if not found:
        sys.exit(f"no finished runs in {work}")
    if stale := [f"{r['arm']} seed {r['seed']}" for rows in found.values() for r in rows if r["iters"] != iters]:
        sys.exit(f"{work}: {', '.join(stale)} trained another number of iterations than {iters}")
    header = (f"Mask Scoring R-CNN vs Mask R-CNN on {args.dataset} ({pa.split(data)}): {model}, "
              f"{args.size} px, {iters} iterations per arm and seed, seeds 0..{args.seeds - 1}")
    report(found, diverged, work, data["val_ann"], out, header,
           meta={"dataset": args.dataset, "size": args.size, "iters": iters, "seeds": list(seeds),
                 "calibration": calibration, "switches": {a: switches[a] for a in found},
                 "threads": args.threads})  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

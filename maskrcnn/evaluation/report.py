"""`eval --report`: why the model fails, as files beside metrics.json and one self-contained
report.html (every plot embedded, so the page can be mailed or archived alone).

Written: per_class_ap.json / per_class_ap.txt (AP, AP50, AP75 per class, bbox and segm),
pr_curves_<task>.png, error_breakdown.json / error_breakdown_<task>.png (COCO analysis tool
layers), score_sweep.json / score_sweep.png (precision, recall, F1 per score threshold, best F1),
confusion_matrix.json / confusion_matrix.png (IoU 0.5, background row and column, detections
above the best-F1 threshold), worst_<n>.png / best_<n>.png (true positives green, false
positives red, missed objects orange). The numbers come from `coco_analysis.py`; plots use
matplotlib's object API (no global pyplot state).
"""

from __future__ import annotations

import base64
import html
import importlib.util
import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..data.coco import load_json
from ..data.images import read_image
from ..errors import UserError
from ..fileio import write_bytes_atomic, write_json_atomic, write_text_atomic
from ..ops.rle import segmentation_to_mask
from . import coco_analysis as analysis

PANELS = 4  # worst and best images shown
PANEL_MIN_SIDE = 384  # images smaller than this are enlarged by a whole factor
COLOURS = {"tp": (40, 200, 70), "fp": (230, 40, 40), "missed": (255, 150, 0)}


def write_report(out_dir, ann_file, results: list[dict], metrics: dict, image_dir=None) -> Path:
    """Compute and write everything listed in the module docstring; returns report.html."""
    _require_matplotlib()
    out_dir, gt = Path(out_dir), load_json(ann_file)
    # no detections at all still gets a (zero) box report: "it detects nothing" is a finding
    tasks = [t for t, field in (("bbox", "bbox"), ("segm", "segmentation"))
             if any(field in r for r in results)] or ["bbox"]
    names = {c["id"]: c.get("name", str(c["id"])) for c in gt["categories"]}
    sections = [_metrics_section(metrics, results, len(gt["images"]))]

    per_class = {t: analysis.per_class_ap(gt, results, t) for t in tasks}
    write_json_atomic(out_dir / "per_class_ap.json", {t: v["classes"] for t, v in per_class.items()})
    table = _per_class_table(per_class)
    write_text_atomic(out_dir / "per_class_ap.txt", table + "\n")
    sections.append(("Per-class AP", f"<pre>{html.escape(table)}</pre>", []))
    sections.append(("Precision / recall per class", "",
                     [_save(out_dir / f"pr_curves_{t}.png", _pr_figure(per_class[t], names, t)) for t in tasks]))

    breakdown = {t: analysis.error_breakdown(gt, results, t) for t in tasks}
    write_json_atomic(out_dir / "error_breakdown.json", breakdown)
    sections.append(("COCO error breakdown", _breakdown_text(breakdown),
                     [_save(out_dir / f"error_breakdown_{t}.png", _breakdown_figure(breakdown[t], t)) for t in tasks]))

    main = "segm" if "segm" in tasks else "bbox"
    matches = analysis.match_images(gt, results, main)
    sweep = analysis.score_sweep(matches)
    write_json_atomic(out_dir / "score_sweep.json", sweep)
    sections.append((f"Score threshold sweep ({main}, IoU 0.5)", _sweep_text(sweep),
                     [_save(out_dir / "score_sweep.png", _sweep_figure(sweep))]))

    threshold = sweep["best"]["threshold"]
    cat_ids = sorted(names)
    matrix = analysis.confusion_matrix(analysis.match_images(gt, results, main, class_aware=False),
                                       cat_ids, threshold)
    write_json_atomic(out_dir / "confusion_matrix.json", {
        "threshold": threshold, "labels": [names[c] for c in cat_ids] + ["background"],
        "matrix": matrix.tolist()})
    sections.append((f"Confusion matrix (IoU 0.5, score >= {threshold:.2f})",
                     "Rows: ground truth; columns: prediction; background: nothing there / nothing found.",
                     [_save(out_dir / "confusion_matrix.png", _confusion_figure(matrix, cat_ids, names))]))
    sections.append(_image_section(out_dir, gt, matches, threshold, main, image_dir, names))
    page = out_dir / "report.html"
    write_text_atomic(page, _html(sections))
    return page


def _require_matplotlib() -> None:
    if importlib.util.find_spec("matplotlib") is None:
        raise UserError("--report plots with matplotlib: pip install 'maskrcnn[report]'")


# ---------------------------------------------------------------- tables and text
def _metrics_section(metrics: dict, results: list[dict], num_images: int):
    scores = np.array([r["score"] for r in results])
    with_detections = len({r["image_id"] for r in results})
    summary = (f"<p>{len(results)} detections on {with_detections} of {num_images} images"
               + (f"; scores from {scores.min():.3f} to {scores.max():.3f}, median {np.median(scores):.3f}"
                  if len(scores) else ": the model found nothing (check the score threshold, the "
                  "classes and check-data's warnings)") + ".</p>")
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{100 * v:.2f}</td></tr>" for k, v in metrics.items())
    return ("COCO metrics", f"{summary}<table>{rows}</table>", [])


def _per_class_table(per_class: dict) -> str:
    tasks = list(per_class)
    header = f"{'class':<20}{'GT':>6}" + "".join(f"{t + ' ' + m:>12}" for t in tasks for m in ("AP", "AP50", "AP75"))
    lines, hidden = [header], 0
    for i, row in enumerate(next(iter(per_class.values()))["classes"] if per_class else []):
        if not row["num_gt"]:
            hidden += 1
            continue
        cells = []
        for t in tasks:
            r = per_class[t]["classes"][i]
            cells += ["-" if r[m] is None else f"{100 * r[m]:.1f}" for m in ("AP", "AP50", "AP75")]
        lines.append(f"{row['name'][:19]:<20}{row['num_gt']:>6}" + "".join(f"{c:>12}" for c in cells))
    if hidden:
        lines.append(f"({hidden} classes without ground truth: no AP, as in COCO; listed in per_class_ap.json)")
    return "\n".join(lines)


def _breakdown_text(breakdown: dict) -> str:
    parts = []
    for task, b in breakdown.items():
        values = ", ".join(f"{name} {100 * ap:.1f}" for name, ap in b["ap"].items())
        parts.append(f"<p><b>{task}</b>: {values}</p>")
    return ("<p>C75 / C50: AP at IoU .75 / .50; Loc: at IoU .10; Sim: supercategory confusions "
            "forgiven; Oth: all class confusions forgiven; BG: background false positives gone; "
            "FN: misses gone. The gap between two layers is what that error costs.</p>" + "".join(parts))


def _sweep_text(sweep: dict) -> str:
    best = sweep["best"]
    return (f"<p>Best F1 {best['f1']:.3f} at score >= {best['threshold']:.2f}: precision "
            f"{best['precision']:.3f}, recall {best['recall']:.3f} ({best['tp']} TP, {best['fp']} FP, "
            f"{best['fn']} missed of {sweep['num_gt']}).</p>")


# ---------------------------------------------------------------- figures
def _figure(width: float, height: float, layout: str | None = "constrained"):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=80, layout=layout)


def _save(path: Path, figure) -> tuple[str, bytes]:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    write_bytes_atomic(path, buffer.getvalue())
    return path.name, buffer.getvalue()


def _pr_figure(per_class: dict, names: dict, task: str):
    ids = [c for c in per_class["pr50"]]
    columns = min(6, max(1, len(ids)))
    rows = max(1, -(-len(ids) // columns))
    figure = _figure(2.6 * columns, 2.3 * rows + 0.6, layout=None)  # constrained: slow on many axes
    figure.subplots_adjust(left=0.05, right=0.98, bottom=0.04, top=1 - 0.6 / (2.3 * rows + 0.6),
                           hspace=0.45, wspace=0.25)
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    aps = {c["id"]: c for c in per_class["classes"]}
    for ax, cat_id in zip(axes, ids):
        ax.plot(per_class["recall"], per_class["pr50"][cat_id], label="IoU .50")
        ax.plot(per_class["recall"], per_class["pr75"][cat_id], label="IoU .75")
        ax.set_title(f"{names[cat_id]} (AP {100 * aps[cat_id]['AP']:.1f})", fontsize=9)
        ax.set_xlim(0, 1), ax.set_ylim(0, 1.02)
        ax.set_xticks([0, 0.5, 1]), ax.set_yticks([0, 0.5, 1])  # few ticks: drawing them is the cost
        ax.tick_params(labelsize=7)
    for ax in axes[len(ids):]:
        ax.axis("off")
    if ids:
        axes[0].legend(fontsize=7)
    figure.suptitle(f"{task}: precision (y) against recall (x), per class")
    return figure


def _breakdown_figure(breakdown: dict, task: str):
    figure = _figure(6, 4.5)
    ax = figure.subplots()
    recall = np.array(breakdown["recall"])
    colours = ("#ffffff", "#dddddd", "#4f83bd", "#bf4f4c", "#5ce661", "#8063a3", "#ff9900")
    below = np.zeros_like(recall)
    for name, colour in zip(analysis.LAYERS, colours):
        curve = np.array(breakdown["overall"][name])
        ax.fill_between(recall, below, curve, color=colour, step=None, edgecolor="black", linewidth=0.3,
                        label=f"[{breakdown['ap'][name]:.3f}] {name}")
        below = curve
    ax.set_xlabel("recall"), ax.set_ylabel("precision"), ax.set_xlim(0, 1), ax.set_ylim(0, 1)
    ax.set_title(f"{task}: error breakdown, all classes")
    ax.legend(loc="lower left", fontsize=8)
    return figure


def _sweep_figure(sweep: dict):
    figure = _figure(6, 4)
    ax = figure.subplots()
    thresholds = [r["threshold"] for r in sweep["rows"]]
    for key in ("precision", "recall", "f1"):
        ax.plot(thresholds, [r[key] for r in sweep["rows"]], marker=".", label=key)
    ax.axvline(sweep["best"]["threshold"], color="gray", linestyle="--", label="best F1")
    ax.set_xlabel("score threshold"), ax.set_ylim(0, 1.02), ax.legend()
    return figure


def _confusion_figure(matrix: np.ndarray, cat_ids: list[int], names: dict):
    used = np.flatnonzero(matrix.sum(0) + matrix.sum(1))  # classes that occur, and background
    labels = [names[cat_ids[i]] if i < len(cat_ids) else "background" for i in used]
    sub = matrix[np.ix_(used, used)]
    size = 2 + 0.45 * len(used)
    figure = _figure(size, size)
    ax = figure.subplots()
    shares = sub / np.maximum(sub.sum(1, keepdims=True), 1)
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for (i, j), count in np.ndenumerate(sub):
        if count:
            ax.text(j, i, str(count), ha="center", va="center", fontsize=8,
                    color="white" if shares[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_xlabel("predicted"), ax.set_ylabel("ground truth")
    return figure


# ---------------------------------------------------------------- image panels
def _image_section(out_dir: Path, gt: dict, matches: dict, threshold: float, task: str, image_dir, names):
    title = f"Worst and best images (score >= {threshold:.2f})"
    if image_dir is None:
        return title, "<p>Give --images to draw the worst and best images.</p>", []
    quality = {i: analysis.image_quality(m, threshold) for i, m in matches.items()
               if len(m["scores"]) or (~m["gt_crowd"]).any()}
    ranked = sorted(quality, key=lambda i: (quality[i]["f1"], -quality[i]["fp"] - quality[i]["fn"]))
    worst = ranked[:PANELS]
    best = [i for i in reversed(ranked[-PANELS:]) if i not in worst and quality[i]["f1"] > 0]
    images = {im["id"]: im for im in gt["images"]}
    anns = {}
    for ann in gt["annotations"]:
        anns.setdefault(ann["image_id"], []).append(ann)
    shown = []
    for kind, ids in (("worst", worst), ("best", best)):
        for n, image_id in enumerate(ids, start=1):
            record, q = images[image_id], quality[image_id]
            picture = _draw(Path(image_dir) / record["file_name"], record, matches[image_id],
                            anns.get(image_id, []), threshold, task, names)
            buffer = io.BytesIO()
            picture.save(buffer, format="PNG")
            path = out_dir / f"{kind}_{n}.png"
            write_bytes_atomic(path, buffer.getvalue())
            shown.append((f"{path.name}: {record['file_name']} - F1 {q['f1']:.2f}, {q['tp']} TP, "
                          f"{q['fp']} FP, {q['fn']} missed", buffer.getvalue()))
    legend = ("<p><span style='color:#28c846'>true positive</span>, <span style='color:#e62828'>false "
              "positive</span>, <span style='color:#ff9600'>missed</span>; ranked by F1 at IoU 0.5.</p>")
    return title, legend, shown


def _draw(path: Path, record: dict, match: dict, gts: list[dict], threshold: float, task: str, names):
    image = Image.fromarray((read_image(path).permute(1, 2, 0).numpy() * 255).astype(np.uint8))
    height, width = record["height"], record["width"]
    overlay = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    kept = (match["scores"] >= threshold) & ~match["ignored"]
    found = set(match["det_gt"][kept & (match["det_gt"] >= 0)].tolist())
    for index in np.flatnonzero(kept):
        kind = "tp" if match["det_gt"][index] >= 0 else "fp"
        det = match["detections"][index]
        _shape(draw, det, height, width, task, COLOURS[kind],
               f"{names.get(det['category_id'], det['category_id'])} {det['score']:.2f}")
    for g, ann in enumerate(gts):
        if not ann.get("iscrowd", 0) and g not in found:
            _shape(draw, ann, height, width, task, COLOURS["missed"], names.get(ann["category_id"], ""))
    picture = Image.alpha_composite(image.convert("RGBA"), overlay).convert("RGB")
    scale = -(-PANEL_MIN_SIDE // max(picture.size))  # small images: enlarged, pixels kept sharp
    return picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST) if scale > 1 else picture


def _shape(draw: ImageDraw.ImageDraw, item: dict, height: int, width: int, task: str, colour, text: str):
    if task == "segm":
        mask = segmentation_to_mask(item["segmentation"], height, width)  # (H, W)
        draw.bitmap((0, 0), Image.fromarray(mask * 255), fill=(*colour, 110))
        ys, xs = np.nonzero(mask)
        x, y = (xs.min(), ys.min()) if len(xs) else (0, 0)
        x2, y2 = (xs.max() + 1, ys.max() + 1) if len(xs) else (0, 0)
    else:
        x, y, w, h = item["bbox"]
        x2, y2 = x + w, y + h
    draw.rectangle([x, y, x2, y2], outline=(*colour, 255), width=2)
    draw.text((x + 2, max(y - 11, 0)), text, fill=(*colour, 255))


# ---------------------------------------------------------------- the page
def _html(sections) -> str:
    body = []
    for title, text, images in sections:
        body.append(f"<h2>{html.escape(title)}</h2>{text}")
        for name, data in images:
            encoded = base64.b64encode(data).decode()
            label = name.split(":")[0]
            body.append(f"<figure><a href='{html.escape(label)}'><img alt='{html.escape(name)}' "
                        f"src='data:image/png;base64,{encoded}'></a><figcaption>{html.escape(name)}"
                        "</figcaption></figure>")
    style = ("body{font-family:sans-serif;max-width:1200px;margin:auto;padding:1em}"
             "img{max-width:100%}table{border-collapse:collapse}td{border:1px solid #ccc;padding:2px 8px}"
             "pre{font-size:12px;overflow-x:auto}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>maskrcnn evaluation report</title>"
            f"<style>{style}</style></head><body><h1>Evaluation report</h1>{''.join(body)}</body></html>\n")

"""benchmarks/scaling.py's outputs: OUT.json (raw rows), OUT.md (tables, exponents), OUT.png (plot).

An exponent is the slope of log(cost) against log(size) over a stage's sizes: 1 is linear,
2 quadratic, about 0 flat. Time exponents use CPU seconds of the stage (all threads), which the
other jobs of a shared machine change far less than wall time; memory exponents use the peak
resident memory above what the process held before the stage.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

ENGINES = ("ours", "faster_coco_eval", "pycocotools")


def fit_exponent(sizes, values) -> float | None:
    """Slope of log(value) against log(size); None with fewer than two sizes."""
    pairs = [(s, v) for s, v in zip(sizes, values) if v is not None and v > 0]
    if len(pairs) < 2:
        return None
    x, y = np.log([p[0] for p in pairs]), np.log([p[1] for p in pairs])
    return round(float(np.polyfit(x, y, 1)[0]), 3)


def _grown_mb(result: dict) -> float | None:
    if not result or result.get("over_memory_limit"):
        return None
    return max(result["peak_rss_mb"] - result["rss_before_mb"], 1.0)


def exponents(report: dict) -> dict:
    """{stage: {"time": exponent, "memory": exponent}} for every measured stage with sizes."""
    out = {}
    if "annotations" in report:
        rows = report["annotations"]["rows"]
        sizes = [r["instances"] for r in rows]
        for part in ("load_gt", "dataset"):
            out[f"annotations/{part}"] = {
                "time": fit_exponent(sizes, [r[part].get("cpu_s") for r in rows]),
                "memory": fit_exponent(sizes, [_grown_mb(r[part]) for r in rows])}
    if "eval" in report:
        rows = report["eval"]["rows"]
        for engine in ENGINES:
            have = [r for r in rows if engine in r]
            out[f"eval/{engine}"] = {
                "time": fit_exponent([r["images"] for r in have], [r[engine]["cpu_s"] for r in have]),
                "memory": fit_exponent([r["images"] for r in have], [_grown_mb(r[engine]) for r in have])}
    if "predict" in report:
        rows = report["predict"]["rows"]
        sizes = [r["images"] for r in rows]
        out["predict"] = {"time": fit_exponent(sizes, [r["cpu_s"] for r in rows]),
                          "memory": fit_exponent(sizes, [r["peak_rss_mb"] for r in rows])}
    return out


SIZE_KEYS = {"annotations": "instances", "eval": "images", "predict": "images"}  # a sweep's rows


def merge_runs(base: dict, other: dict) -> dict:
    """`other`'s stages over `base`'s (two runs of benchmarks/scaling.py, e.g. side by side): a size
    sweep keeps `base`'s rows at the sizes `other` did not measure, sorted by size; any other stage
    is replaced whole. Every sweep row names the run it came from ("run": that run's date)."""
    base, other = _dated(base), _dated(other)
    merged = dict(base)
    for stage, value in other.items():
        if stage in ("machine", "exponents"):
            continue
        key = SIZE_KEYS.get(stage)
        if key and stage in base:
            rows = {r[key]: r for r in base[stage]["rows"]}
            rows.update({r[key]: r for r in value["rows"]})
            value = {**base[stage], **value, "rows": [rows[size] for size in sorted(rows)]}
        merged[stage] = value
    machines = [r["machine"] for r in (base, other) if "machine" in r]  # the latest run's
    merged["machine"] = max(machines, key=lambda m: m.get("date", ""), default={})
    merged["exponents"] = exponents(merged)
    return merged


def _dated(report: dict) -> dict:
    """The report with each sweep row naming its run (rows already naming one keep it)."""
    date = report.get("machine", {}).get("date")
    return {stage: {**value, "rows": [{"run": date, **row} for row in value["rows"]]}
            if stage in SIZE_KEYS else value for stage, value in report.items()}


def write(report: dict, out: Path) -> dict:
    """The stages of `report` over those OUT.json already holds -> the merged report, written."""
    path = out.with_suffix(".json")
    merged = {**(json.loads(path.read_text()) if path.is_file() else {}), **report}
    merged["exponents"] = exponents(merged)
    path.write_text(json.dumps(merged, indent=1))
    out.with_suffix(".md").write_text(markdown(merged))
    plot(merged, out.with_suffix(".png"))
    return merged


def markdown(report: dict) -> str:
    parts = [f"# Scaling (benchmarks/scaling.py)\n\nMachine: {_machine(report)}\n"]
    parts.append("| stage | time exponent | memory exponent |\n|---|---|---|")
    parts += [f"| {stage} | {_num(e['time'])} | {_num(e['memory'])} |"
              for stage, e in report.get("exponents", {}).items()]
    for stage in ("annotations", "loading", "eval", "predict", "serve"):
        if stage in report:
            parts.append(globals()[f"_md_{stage}"](report[stage]))
    return "\n".join(parts) + "\n"


def _machine(report: dict) -> str:
    m = report.get("machine", {})
    return (f"{m.get('cpu')} ({m.get('cores')} cores), Python {m.get('python')}, load average "
            f"{m.get('load_avg')} at {m.get('date')} (the last stage's end)")


def _num(value, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _cell(result: dict) -> str:
    if result.get("over_memory_limit"):
        return "over the memory limit | |"
    return f"{result['cpu_s']:.2f} ({result['seconds']:.1f}) | {result['peak_rss_mb']:.0f} ({_grown_mb(result):.0f})"


def _md_annotations(stage: dict) -> str:
    lines = ["\n## Reading and indexing annotations\n",
             "CPU s (wall s) | peak RSS MB (growth over the process before the stage); load = the "
             "machine's 1-minute load average while each ran\n",
             "| instances | json MB | load_ground_truth CPU s | MB | CocoDataset CPU s | MB | load |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['instances']:,} | {r['file_mb']} | {_cell(r['load_gt'])} | {_cell(r['dataset'])} | "
              f"{_load(r['load_gt'])}, {_load(r['dataset'])} |" for r in stage["rows"]]
    return "\n".join(lines)


def _load(row: dict) -> str:
    """Mean load while the point ran; 'x2' when it was measured twice because the load moved."""
    if "load" not in row:
        return "-"
    again = len(row.get("load_attempts", [])) > 1
    return f"{row['load']['mean']:.1f}" + (" (x2)" if again else "")


def _md_loading(stage: dict) -> str:
    lines = [f"\n## First-epoch data loading ({stage['images']} synthetic-shapes images of "
             f"{stage['image_size']} px, batches of 2, {stage['cores']} cores)\n",
             "The loader alone (each worker count twice):\n",
             "| workers | images/s, whole epoch | seconds to the first batch | images/s after it | load |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['workers']} | {r['images_per_s']:.1f} | {r['first_batch_s']:.2f} | "
              f"{r['after_first_images_per_s']:.1f} | {_load(r)} |" for r in stage["rows"]]
    step = stage["train_step"]
    lines += ["\nThe model (maskrcnn_r18_fpn, 2 torch threads), alone and fed by the loader:\n",
              "| what | images/s | share of the time waiting for a batch |", "|---|---|---|",
              f"| training step alone (same batch) | {step['images_per_s']:.2f} | - |"]
    lines += [f"| training fed by {r['workers']} workers | {r['images_per_s']:.2f} | "
              f"{100 * r['waiting_share']:.0f} % |" for r in stage.get("train_loop", [])]
    return "\n".join(lines)


def _md_eval(stage: dict) -> str:
    lines = ["\n## Evaluation, bbox + segm, 100 detections per image\n",
             "CPU s (wall s) | peak RSS MB (growth); ratio = faster-coco-eval CPU s / ours; "
             "diff = largest difference of the 24 numbers to pycocotools\n",
             "| images | ours | MB | faster-coco-eval | MB | pycocotools | MB | ratio | diff ours | diff faster |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in stage["rows"]:
        pyc = _cell(r["pycocotools"]) if "pycocotools" in r else "not run | "
        ratio = r["faster_coco_eval"]["cpu_s"] / r["ours"]["cpu_s"]
        diffs = [_diff(r[e].get("max_diff_vs_pycocotools")) for e in ENGINES[:2]]
        lines.append(f"| {r['images']:,} | {_cell(r['ours'])} | {_cell(r['faster_coco_eval'])} | {pyc} | "
                     f"{ratio:.2f} | {diffs[0]} | {diffs[1]} |")
    return "\n".join(lines)


def _diff(value) -> str:
    return "-" if value is None else f"{value:.1e}"


def _md_predict(stage: dict) -> str:
    lines = [f"\n## predict over small images (`{stage['command']}`)\n",
             "| images | wall s | CPU s | peak RSS MB | RSS at 25 % / 50 % / end of the run, MB | results.json MB | load | run |",
             "|---|---|---|---|---|---|---|---|"]
    for r in stage["rows"]:
        quarter, half, end = (_rss_at(r["timeline"], f) for f in (0.25, 0.5, 1.0))
        lines.append(f"| {r['images']:,} | {r['seconds']:.0f} | {r['cpu_s']:.0f} | {r['peak_rss_mb']:.0f} | "
                     f"{quarter:.0f} / {half:.0f} / {end:.0f} | {r['results_mb']} | {_load(r)} | {r.get('run', '-')} |")
    return "\n".join(lines)


def _rss_at(timeline: list, fraction: float) -> float:
    """RSS of the last sample at or before `fraction` of the run (the final sample for 1.0)."""
    rows = [r for r in timeline if r[1] > 0]
    end = rows[-1][0]
    return [r for r in rows if r[0] <= fraction * end + 1e-9][-1][1]


def _md_serve(stage: dict) -> str:
    lines = [f"\n## Server soak: {stage['minutes']} min at {stage['rate_per_s']} requests/s "
             f"(`{stage['command']}`)\n",
             f"{stage['requests']} requests, {stage['errors']} errors; resident memory drift from the "
             f"second minute to the last: {100 * stage['memory_drift']:+.2f} %\n",
             "| minute | requests | errors | p50 ms | p99 ms | server RSS MB |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['minute']} | {r['requests']} | {r['errors']} | {_num(r['p50_ms'], 0)} | "
              f"{_num(r['p99_ms'], 0)} | {r['rss_mb']} |" for r in stage["rows"]]
    return "\n".join(lines)


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(17, 9))
    exps = report.get("exponents", {})
    _plot_annotations(axes[0, 0], report.get("annotations"), exps)
    _plot_eval(axes[0, 1], report.get("eval"), exps)
    _plot_predict_sizes(axes[0, 2], report.get("predict"), exps)
    _plot_predict(axes[1, 0], report.get("predict"))
    _plot_loading(axes[1, 1], report.get("loading"))
    _plot_serve(axes[1, 2], report.get("serve"))
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _exp(exps: dict, stage: str, kind: str) -> str:
    value = exps.get(stage, {}).get(kind)
    return "" if value is None else f" (exp. {value:.2f})"


def _loglog(ax, sizes, values, label, style="o-"):
    pairs = [(s, v) for s, v in zip(sizes, values) if v]
    if pairs:
        ax.loglog(*zip(*pairs), style, label=label)


def _plot_annotations(ax, stage, exps):
    ax.set_title("annotations: CPU s (solid), memory growth GB (dashed)")
    if not stage:
        return
    sizes = [r["instances"] for r in stage["rows"]]
    for part in ("load_gt", "dataset"):
        name = f"annotations/{part}"
        _loglog(ax, sizes, [r[part].get("cpu_s") for r in stage["rows"]],
                f"{part} CPU s{_exp(exps, name, 'time')}")
        _loglog(ax, sizes, [(_grown_mb(r[part]) or 0) / 1024 for r in stage["rows"]],
                f"{part} GB{_exp(exps, name, 'memory')}", "s--")
    ax.set_xlabel("instances")
    ax.legend(fontsize=8)


def _plot_eval(ax, stage, exps):
    ax.set_title("evaluation bbox + segm: CPU s")
    if not stage:
        return
    for engine in ENGINES:
        have = [r for r in stage["rows"] if engine in r]
        _loglog(ax, [r["images"] for r in have], [r[engine]["cpu_s"] for r in have],
                engine + _exp(exps, f"eval/{engine}", "time"))
    ax.set_xlabel("images (x 100 detections)")
    ax.legend(fontsize=8)


def _plot_predict_sizes(ax, stage, exps):
    ax.set_title("predict: CPU s and peak RSS MB against images")
    if not stage:
        return
    sizes = [r["images"] for r in stage["rows"]]
    _loglog(ax, sizes, [r["cpu_s"] for r in stage["rows"]], "CPU s" + _exp(exps, "predict", "time"))
    _loglog(ax, sizes, [r["peak_rss_mb"] for r in stage["rows"]],
            "peak RSS MB" + _exp(exps, "predict", "memory"), "s--")
    _loglog(ax, sizes, [r["results_mb"] for r in stage["rows"]], "results.json MB", "^:")
    ax.set_xlabel("images")
    ax.legend(fontsize=8)


def _plot_loading(ax, stage):
    ax.set_title("first epoch: images/s")
    if not stage:
        return
    labels, values = [], []
    for workers in sorted({r["workers"] for r in stage["rows"]}):
        labels.append(f"loader\n{workers} w")
        values.append(max(r["images_per_s"] for r in stage["rows"] if r["workers"] == workers))
    labels.append("step\nalone")
    values.append(stage["train_step"]["images_per_s"])
    for r in stage.get("train_loop", []):
        labels.append(f"train\n{r['workers']} w")
        values.append(r["images_per_s"])
    ax.bar(range(len(values)), values, color=["C0"] * (len(values) - 1 - len(stage.get("train_loop", [])))
           + ["C1"] * (1 + len(stage.get("train_loop", []))))
    ax.set_xticks(range(len(values)), labels, fontsize=8)
    ax.set_yscale("log")


def _plot_predict(ax, stage):
    ax.set_title("predict: RSS MB over the run (solid), results.json MB (dashed)")
    if not stage:
        return
    for r in stage["rows"]:
        t = np.array(r["timeline"], dtype=float)
        t = t[t[:, 1] > 0]
        line = ax.plot(t[:, 0] / t[-1, 0], t[:, 1], label=f"{r['images']:,} images RSS")[0]
        ax.plot(t[:, 0] / t[-1, 0], t[:, 2] / 2**20, "--", color=line.get_color())
    ax.set_xlabel("fraction of the run")
    ax.set_yscale("log")
    ax.legend(fontsize=8)


def _plot_serve(ax, stage):
    ax.set_title("server soak: latency ms (left), RSS MB (right)")
    if not stage:
        return
    rows = [r for r in stage["rows"] if r["p50_ms"] is not None]
    minutes = [r["minute"] for r in rows]
    ax.plot(minutes, [r["p50_ms"] for r in rows], "o-", label="p50")
    ax.plot(minutes, [r["p99_ms"] for r in rows], "s-", label="p99")
    ax.set_xlabel("minute")
    ax.legend(fontsize=8, loc="upper left")
    right = ax.twinx()
    right.plot(minutes, [r["rss_mb"] for r in rows], "k^-", label="RSS")
    right.set_ylim(0, max(r["rss_mb"] for r in rows) * 1.2)
    right.legend(fontsize=8, loc="upper right")

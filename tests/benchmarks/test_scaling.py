"""benchmarks/scaling.py: its smoke mode measures evaluation at two sizes, writes the json /
markdown / plot, and our evaluation's numbers there equal pycocotools'; the fitted exponent is the
power of a known power law. (The other stages run the same child machinery; their smoke runs build
models and take minutes, so they are left to the benchmark.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pycocotools_reference import STATS, pycocotools_stats

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
import scaling_report  # noqa: E402
import scaling_runs  # noqa: E402


@pytest.mark.parametrize("power", [0.0, 1.0, 2.0])
def test_fit_exponent_recovers_a_power_law(power):
    sizes = [500, 1500, 5000]
    assert scaling_report.fit_exponent(sizes, [3.0 * s**power for s in sizes]) == pytest.approx(power, abs=1e-3)


def _measured(loads):
    """A stand-in measurement whose successive calls ran at these mean loads."""
    calls = iter(loads)
    return lambda: {"load": {"mean": next(calls)}}


def test_a_point_is_measured_again_only_when_the_load_moved():
    reference = []
    first = scaling_runs.steady(_measured([2.0]), reference)
    assert reference == [2.0] and len(first["load_attempts"]) == 1
    near = scaling_runs.steady(_measured([2.0 + scaling_runs.LOAD_REPEAT, 9.0]), reference)
    assert [a["mean"] for a in near["load_attempts"]] == [2.0 + scaling_runs.LOAD_REPEAT]
    moved = scaling_runs.steady(_measured([6.0, 2.5]), reference)  # moved by 4: again, the nearer kept
    assert [a["mean"] for a in moved["load_attempts"]] == [6.0, 2.5] and moved["load"]["mean"] == 2.5
    still = scaling_runs.steady(_measured([0.0, 5.0]), reference)  # both far: the nearer of the two
    assert still["load"]["mean"] == 0.0 and reference == [2.0]


def test_merging_a_run_keeps_the_other_sizes_and_stages():
    def predict(sizes, seconds_per_image):
        return {"rows": [{"images": n, "cpu_s": seconds_per_image * n, "peak_rss_mb": 1000.0} for n in sizes],
                "command": "maskrcnn predict"}

    base = {"predict": predict([300, 1000], 0.08), "serve": {"minutes": 20}, "machine": {"date": "first"}}
    later = {"predict": predict([1000, 3000], 0.09), "machine": {"date": "second"}}
    merged = scaling_report.merge_runs(base, later)
    rows = merged["predict"]["rows"]
    assert [(r["images"], r["run"], r["cpu_s"]) for r in rows] == [
        (300, "first", 300 * 0.08), (1000, "second", 1000 * 0.09), (3000, "second", 3000 * 0.09)]
    assert merged["serve"] == {"minutes": 20} and merged["machine"] == {"date": "second"}
    sizes, cpu = [300, 1000, 3000], [24.0, 90.0, 270.0]
    assert merged["exponents"]["predict"]["time"] == pytest.approx(np.polyfit(np.log(sizes), np.log(cpu), 1)[0], abs=1e-3)
    assert merged["exponents"]["predict"]["memory"] == pytest.approx(0.0, abs=1e-9)


def test_smoke_run_writes_tables_plot_and_equal_metrics(tmp_path):
    out, work = tmp_path / "results" / "scaling", tmp_path / "work"
    command = [sys.executable, str(ROOT / "benchmarks" / "scaling.py"), "--smoke", "--stages", "eval",
               "--out", str(out), "--work", str(work)]
    subprocess.run(command, check=True, capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT)})

    report = json.loads(out.with_suffix(".json").read_text())
    for stage in ("eval/ours", "eval/faster_coco_eval", "eval/pycocotools"):
        assert report["exponents"][stage]["time"] is not None, stage
    rows = report["eval"]["rows"]
    assert [r["images"] for r in rows] == [8, 24]
    for row in rows:  # the json holds what our evaluation computed; pycocotools scores the same files
        gt_file = work / f"gt_{round(row['images'] * 7.3)}.json"
        results = json.loads((work / f"dets_{gt_file.stem}.json").read_text())
        assert len(results) == 100 * row["images"]
        for task in ("bbox", "segm"):
            ours = [row["ours"]["stats"][f"{task}/{name}"] for name in STATS]
            np.testing.assert_allclose(ours, pycocotools_stats(gt_file, results, task), rtol=0, atol=1e-9)
        assert row["ours"]["max_diff_vs_pycocotools"] <= 1e-9
    table = out.with_suffix(".md").read_text()
    assert "| eval/ours |" in table and "## Evaluation" in table
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

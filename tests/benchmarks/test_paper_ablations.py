"""benchmarks/paper_ablations.py: its smoke mode trains and evaluates two arms (baseline and C4 on
synthetic shapes), reports what the saved detections score under pycocotools, and a second call
trains nothing; a diverged run counts as finished and is reported apart; the budget calibration is
measured once per work folder."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from pycocotools_reference import STATS, pycocotools_stats

from maskrcnn.training.trainer import NonFiniteLossError

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import paper_ablations as pa  # noqa: E402


def assert_metrics_equal_pycocotools(work: Path, arm: str, metrics: dict) -> None:
    results = json.loads((work / f"{arm}-seed0" / "eval" / "results.json").read_text())
    assert results, f"{arm}: no detections to score"
    for task in ("bbox", "segm"):
        reference = pycocotools_stats(work / "data" / "val" / "annotations.json", results, task)
        ours = [metrics[f"{task}/{name}"] for name in STATS]
        np.testing.assert_allclose(ours, reference, atol=1e-9, err_msg=f"{arm} {task}")


def test_smoke_reports_both_arms_and_resumes_without_training(tmp_path, monkeypatch):
    work, out = tmp_path / "work", tmp_path / "results" / "ablations"
    argv = ["--dataset", "shapes", "--smoke", "--work", str(work), "--out", str(out)]
    assert pa.main(argv) == 0

    report = json.loads(Path(f"{out}.json").read_text())
    assert list(report["arms"]) == ["baseline", "c4"] and report["iters"] == 3
    for arm, entry in report["arms"].items():
        (run,) = entry["runs"]
        assert run["iters"] == 3 and run["seed"] == 0
        assert all(0.0 <= run["metrics"][m] <= 1.0 for m in pa.METRICS)
        assert_metrics_equal_pycocotools(work, arm, run["metrics"])
        for m in pa.METRICS:  # one seed: the mean is its value in points, no spread
            assert entry["summary"][m]["mean"] == pytest.approx(100 * run["metrics"][m])
            assert entry["summary"][m]["sd"] == 0.0
    # the C4 arm really is the C4 model, the baseline the FPN one
    assert "kind: c4" in (work / "c4-seed0" / "config.yaml").read_text()
    assert "kind: fpn" in (work / "baseline-seed0" / "config.yaml").read_text()
    table = Path(f"{out}.md").read_text()
    assert "| baseline | 1 |" in table and "| c4 | 1 |" in table
    assert Path(f"{out}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # resumable: every arm+seed is done, so a second call trains nothing and reports the same
    finished = {p.name: p.read_text() for p in work.glob("*-seed0.json")}
    monkeypatch.setattr(pa, "train", lambda *a, **k: pytest.fail("a finished arm was trained again"))
    Path(f"{out}.json").unlink()
    assert pa.main(argv) == 0
    assert {p.name: p.read_text() for p in work.glob("*-seed0.json")} == finished
    assert json.loads(Path(f"{out}.json").read_text())["arms"] == report["arms"]


def test_a_diverged_run_is_finished_and_reported_apart(tmp_path, monkeypatch):
    def diverge(*args, **kwargs):
        raise NonFiniteLossError("non-finite loss at iteration 2: loss_mask=nan")

    monkeypatch.setattr(pa, "train", diverge)
    work, out = tmp_path / "work", tmp_path / "ablations"
    argv = ["--dataset", "shapes", "--smoke", "--arms", "softmax", "--work", str(work), "--out", str(out)]
    assert pa.main(argv) == 0
    report = json.loads(Path(f"{out}.json").read_text())
    assert report["arms"] == {} and [(r["arm"], r["seed"]) for r in report["diverged"]] == [("softmax", 0)]
    assert "Diverged, left out of the means: softmax seed 0 (non-finite loss at iteration 2" in Path(f"{out}.md").read_text()
    monkeypatch.setattr(pa, "train", lambda *a, **k: pytest.fail("a diverged run was trained again"))
    assert pa.main(argv) == 0


def test_calibration_is_measured_once_and_sets_the_iterations(tmp_path, monkeypatch):
    class Args:
        smoke, data = True, ""

    data = pa.prepare_data("shapes", tmp_path, Args)
    base, weights = pa.base_config("shapes", 64, data, smoke=True)
    first = pa.calibrate(base, weights, tmp_path, minutes=0.5)
    seconds = first["cpu_seconds_per_iter"]
    assert 0 < seconds < 30
    assert first["iters"] == max(1, round(30 / seconds))
    monkeypatch.setattr(pa, "train", lambda *a, **k: pytest.fail("calibrated twice"))
    again = pa.calibrate(base, weights, tmp_path, minutes=1.0)  # the stored speed, a new budget
    assert again["cpu_seconds_per_iter"] == seconds and again["iters"] == max(1, round(60 / seconds))


def test_arm_configs_differ_from_the_baseline_only_by_their_switch():
    data = {k: "x" for k in ("train_ann", "train_images", "val_ann", "val_images")}
    base, _ = pa.base_config("shapes", 128, data, smoke=False)
    from maskrcnn.config import flatten_dict, to_dict

    plain = dict(flatten_dict(to_dict(pa.run_config(base, [], 1, 400))))
    for arm, switches in pa.SWITCHES.items():
        cfg = dict(flatten_dict(to_dict(pa.run_config(base, switches, 1, 400))))
        changed = {k for k in plain if plain[k] != cfg[k]}
        assert changed == {s.split("=")[0] for s in switches}, arm
    assert plain["solver.max_iter"] == 400 and plain["solver.seed"] == 1 and plain["solver.steps"] == [320]

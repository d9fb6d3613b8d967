"""`maskrcnn bench` end to end on a small model and two real images."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from maskrcnn.cli import main


@pytest.fixture(scope="module")
def images(shared_data) -> Path:
    return shared_data / "pennfudan" / "PNGImages"


def test_bench_reports_latency_memory_and_stages(images, tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = main(["bench", "--model", "maskrcnn_r18_fpn", "--images", str(images), "--size", "128",
                 "--max-images", "2", "--repeats", "1", "--plain", "--precision", "fp32", "bf16",
                 "--json", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    assert "maskrcnn plain" in text and "median ms per stage" in text
    runners = {r["name"]: r for r in json.loads(out.read_text())["runners"]}
    assert set(runners) == {"maskrcnn plain", "maskrcnn fp32", "maskrcnn bf16"}
    for r in runners.values():
        assert 0 < r["p50_ms"] <= r["p90_ms"] and r["images_per_s"] > 0
        assert r["detections"] == 100  # box_score_thresh 0 by default
        assert {"preprocess", "backbone", "rpn", "box head", "mask head", "postprocess"} <= set(r["stages_ms"])
        assert all(v >= 0 for v in r["stages_ms"].values())


def test_bench_rejects_bad_counts(images, capsys):
    assert main(["bench", "--model", "maskrcnn_r18_fpn", "--images", str(images), "--repeats", "0"]) == 2
    assert "--repeats must be at least 1" in capsys.readouterr().err


def test_bench_measures_several_presets_in_one_run(images, tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = main(["bench", "--model", "maskrcnn_effl0_fpn", "maskrcnn_r18_fpn", "--images", str(images),
                 "--size", "96", "--max-images", "1", "--repeats", "1", "--precision", "fp32", "--score-thresh", "0.5",
                 "--json", str(out)])
    assert code == 0
    runners = [r["name"] for r in json.loads(out.read_text())["runners"]]
    assert runners == ["maskrcnn_effl0_fpn fp32", "maskrcnn_r18_fpn fp32"]
    assert "maskrcnn_effl0_fpn fp32" in capsys.readouterr().out
    argv = ["bench", "--model", "maskrcnn_effl0_fpn", "maskrcnn_r18_fpn", "--weights", str(out),
            "--images", str(images)]
    assert main(argv) == 2
    assert "--weights fits one --model" in capsys.readouterr().err

"""`maskrcnn export` and `maskrcnn predict --backend onnxruntime` end to end."""

import json

import numpy as np
import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

import maskrcnn  # noqa: E402
from maskrcnn.cli import main  # noqa: E402
from maskrcnn.ops.rle import decode_rles  # noqa: E402
from maskrcnn.weights import save_weights  # noqa: E402
from maskrcnn.presets import apply_kwargs, get_preset  # noqa: E402


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    cfg = apply_kwargs(get_preset("maskrcnn_r18_fpn"),
                       {"min_size": 320, "max_size": 533, "box_detections_per_img": 20})
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = maskrcnn.build_model(cfg)  # as built: a checkpoint must hold the plain layers
    path = tmp_path_factory.mktemp("w") / "r18.safetensors"
    save_weights(model, path)  # the config (sizes, 20 detections) travels with the weights
    return path


@pytest.fixture(scope="module")
def exported(weights, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx") / "sub" / "r18.onnx"
    code = main(["export", "--model", "maskrcnn_r18_fpn", "--weights", str(weights), "--format", "onnx",
                 "--out", str(out), "--set", "box_score_thresh=0.0"])
    assert code == 0
    return out


@pytest.fixture(scope="module")
def image_file(shared_data):
    return shared_data / "pennfudan" / "PNGImages" / "FudanPed00018.png"


def test_export_writes_the_file(exported, capsys):
    assert exported.is_file() and exported.stat().st_size > 1_000_000
    assert sorted(p.name for p in exported.parent.iterdir()) == ["r18.onnx"]


def test_onnxruntime_backend_matches_torch_backend(exported, weights, image_file, tmp_path):
    common = [str(image_file), "--score-thresh", "0.0"]
    assert main(["predict", "--model", "maskrcnn_r18_fpn", "--weights", str(weights),
                 "--out", str(tmp_path / "torch"), *common]) == 0
    # no --model: the .onnx carries the config
    assert main(["predict", "--backend", "onnxruntime", "--weights", str(exported),
                 "--out", str(tmp_path / "ort"), *common]) == 0
    ref = json.loads((tmp_path / "torch" / "results.json").read_text())
    out = json.loads((tmp_path / "ort" / "results.json").read_text())
    assert (tmp_path / "ort" / f"{image_file.name}.png").is_file()  # overlay: the file name + .png
    assert len(ref) == len(out) == 20
    # random weights score alike: match detections (category, box, score) rather than by rank
    unused = list(range(len(out)))
    for i, r in enumerate(ref):
        match = next(j for j in sorted(unused, key=lambda j: abs(j - i))
                     if out[j]["category_id"] == r["category_id"]
                     and np.abs(np.subtract(out[j]["bbox"], r["bbox"])).max() <= 1e-2
                     and abs(out[j]["score"] - r["score"]) <= 1e-4)
        unused.remove(match)
        o = out[match]
        assert o["image_id"] == r["image_id"] and o["file_name"] == r["file_name"]
        h, w = r["segmentation"]["size"]
        a, b = decode_rles([r["segmentation"], o["segmentation"]], h, w).astype(bool)  # (2, H, W)
        assert (a & b).sum() >= 0.99 * max((a | b).sum(), 1)


def test_bad_format_is_a_one_line_error(tmp_path, capsys):
    code = main(["export", "--model", "maskrcnn_r18_fpn", "--format", "tflite", "--out", str(tmp_path / "m")])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["maskrcnn export: error: unsupported --format 'tflite' (supported: onnx)"]
    assert not any(tmp_path.iterdir())


def test_missing_weights_and_bad_options_are_one_line_errors(tmp_path, capsys):
    code = main(["export", "--model", "maskrcnn_r18_fpn", "--weights", str(tmp_path / "none.pt"),
                 "--out", str(tmp_path / "m.onnx")])
    assert code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"maskrcnn export: error: {tmp_path / 'none.pt'}: weights file not found"]
    cases = [
        (["export", "--model", "nope", "--out", str(tmp_path / "m.onnx")], "unknown model preset 'nope'"),
        (["predict", str(tmp_path), "--out", str(tmp_path / "o")], "--model is required with --backend torch"),
        (["predict", "--backend", "onnxruntime", str(tmp_path), "--out", str(tmp_path / "o")],
         "--backend onnxruntime needs --weights MODEL.onnx"),
        (["predict", "--backend", "onnxruntime", "--weights", str(tmp_path / "x.onnx"), str(tmp_path),
          "--out", str(tmp_path / "o")], "x.onnx: ONNX model file not found"),
    ]
    for argv, message in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "o").exists() and not (tmp_path / "m.onnx").exists()


def test_set_is_refused_for_an_export(exported, tmp_path, capsys):
    code = main(["predict", "--backend", "onnxruntime", "--weights", str(exported), str(tmp_path),
                 "--out", str(tmp_path / "o"), "--set", "min_size=600"])
    assert code == 2
    assert "--set does not apply to --backend onnxruntime" in capsys.readouterr().err


def test_measure_with_the_onnxruntime_backend(exported, image_file, tmp_path):
    """--measure works on the ONNX model's masks: one row per detection in results.json."""
    import csv

    assert main(["predict", "--backend", "onnxruntime", "--weights", str(exported), str(image_file),
                 "--out", str(tmp_path), "--score-thresh", "0.0", "--measure"]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    rows = list(csv.DictReader((tmp_path / "measurements.csv").open()))
    assert len(rows) == len(results) > 0
    areas = sorted(float(r["area_px2"]) for r in rows)
    assert areas == sorted(float((decode_rles([r["segmentation"]], *r["segmentation"]["size"])).sum())
                           for r in results)

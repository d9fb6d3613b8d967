"""Keep-last-K, the last_checkpoint pointer and weights_only loading."""

import pytest
import torch

from maskrcnn.training import checkpoint as ckpt
from maskrcnn.errors import CheckpointError


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
    with pytest.raises(CheckpointError, match="evil.pt: cannot read weights: a PyTorch file holding Python objects"):
        ckpt.load_checkpoint(path)


def test_load_rejects_non_checkpoint(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"w": torch.ones(1)}, path)
    with pytest.raises(CheckpointError, match="no 'model' entry"):
        ckpt.load_checkpoint(path)
    with pytest.raises(CheckpointError, match="not found"):
        ckpt.load_checkpoint(tmp_path / "missing.pt")

"""Unreadable weights files fail with an error naming the file, before anything is trained."""

import pickle

import pytest
import torch

from maskrcnn.cli import main
from maskrcnn.errors import CheckpointError
from maskrcnn.weights import read_weights


def _real(path):
    state = {"conv1.weight": torch.randn(64, 3, 7, 7), "layer1.0.conv1.weight": torch.randn(64, 64, 3, 3)}
    if path.suffix == ".pkl":
        path.write_bytes(pickle.dumps({"model": {k: v.numpy() for k, v in state.items()}}, protocol=2))
    elif path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save(state, path)
    return path


@pytest.mark.parametrize("suffix", [".pth", ".pkl", ".safetensors"])
@pytest.mark.parametrize("keep", [0.0, 0.5])
def test_zero_byte_and_truncated_files_name_the_file(tmp_path, suffix, keep):
    path = _real(tmp_path / f"weights{suffix}")
    data = path.read_bytes()
    read_weights(str(path))  # whole, it reads
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(CheckpointError) as err:
        read_weights(str(path))
    message = str(err.value)
    assert message.startswith(f"{path}: cannot read weights") and ("truncated" in message or "empty" in message)


def test_truncated_weights_stop_train_before_anything_is_written(tmp_path, capsys):
    path = _real(tmp_path / "w.pth")
    path.write_bytes(path.read_bytes()[:1000])
    out = tmp_path / "run"
    argv = ["train", "--model", "maskrcnn_r18_fpn", "--weights", str(path), "--data", str(tmp_path / "a.json"),
            "--images", str(tmp_path), "--out", str(out)]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{path}: cannot read weights: a PyTorch zip file that is truncated" in err
    assert not out.exists()


def test_missing_file_is_not_taken_for_a_source_name(tmp_path):
    with pytest.raises(CheckpointError, match="weights file not found"):
        read_weights(str(tmp_path / "model_final.pt"))


def test_checkpoints_from_before_the_box_head_owned_its_layers_still_read(tmp_path):
    """Our .pt files once named the box head's class / box layers roi_heads.box_predictor.*."""
    w = torch.randn(3, 8)
    torch.save({"model": {"roi_heads.box_predictor.cls_score.weight": w, "roi_heads.box_head.fcs.0.bias": w[0]},
                "config": None}, tmp_path / "old.pt")
    state, _ = read_weights(tmp_path / "old.pt")
    assert set(state) == {"roi_heads.box_head.cls_score.weight", "roi_heads.box_head.fcs.0.bias"}
    assert torch.equal(state["roi_heads.box_head.cls_score.weight"], w)

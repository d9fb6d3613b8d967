"""Issue 18, case 7: a --weights file that is not a checkpoint (text, a plain pickle, an old-format
torch file holding a pickled model) ended in an UnpicklingError traceback suggesting
weights_only=False; a zero-byte .pt gave an error with an empty reason. Now one reader maps every
unreadable file to one line naming the file and what it is, for --weights and --resume alike."""

import pickle

import pytest
import torch
from reliability_helpers import SMALL, TINY_TRAIN, assert_one_line_error, read_json, run_cli, write_png

from maskrcnn.training.checkpoint import load_checkpoint
from maskrcnn.errors import CheckpointError


class Pickled:
    """A class instance: pickled by reference, so loading it would import and call code."""


def _make(path, kind, tiny_weights):
    if kind == "text":
        path.write_text("model weights are on the shared drive\n")
    elif kind == "html":
        path.write_text("<!DOCTYPE html><html><body>404 Not Found</body></html>")
    elif kind == "plain pickle":
        path.write_bytes(pickle.dumps({"weights": [1.0, 2.0]}))
    elif kind == "old-format model":
        torch.save(torch.nn.Linear(2, 2), path, _use_new_zipfile_serialization=False)
    elif kind == "pickled object":
        torch.save({"model": Pickled()}, path)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated zip":
        torch.save({"w": torch.ones(1000)}, path)
        path.write_bytes(path.read_bytes()[:600])
    elif kind == "truncated safetensors":
        data = tiny_weights.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "random bytes":
        path.write_bytes(bytes(range(7, 256)) * 3)
    return path


EXPECTED = {
    "text": "a text file (it starts with 'model weights are on the shared drive'), not a weights file",
    "html": "an HTML page (a failed download?), not a weights file",
    "plain pickle": "a plain Python pickle, not a PyTorch or safetensors weights file",
    "old-format model": "an old-format (before PyTorch 1.6) torch file holding Python objects beyond tensors",
    "pickled object": "a PyTorch file holding Python objects beyond tensors and containers",
    "empty": "the file is empty (0 bytes)",
    "truncated zip": "a PyTorch zip file that is truncated or damaged",
    "truncated safetensors": "a safetensors file that is truncated or damaged",
    "random bytes": "not a weights file: neither PyTorch (zip or old format) nor safetensors",
}


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_predict_with_unreadable_weights(tmp_path, tiny_weights, capsys, kind):
    weights = _make(tmp_path / ("w.safetensors" if "safetensors" in kind else "w.pt"), kind, tiny_weights)
    image = write_png(tmp_path / "x.png", 40, 50)
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text("[]")  # an earlier run's
    code, _, err = run_cli(capsys, "predict", "--model", "maskrcnn_r18_fpn", "--weights", weights, image,
                           "--out", out, *SMALL)
    assert code == 2
    line = assert_one_line_error(err, "predict", f"{weights}: cannot read weights: {EXPECTED[kind]}")
    assert "weights_only" not in line
    assert read_json(out / "results.json") == []


def test_resume_from_a_checkpoint_holding_objects_is_the_same_error(tmp_path, tiny_weights):
    path = _make(tmp_path / "model_0000010.pt", "pickled object", tiny_weights)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert str(err.value).startswith(f"{path}: cannot read weights: {EXPECTED['pickled object']}")
    assert str(err.value).endswith("; save the model's state_dict() instead")


def test_train_resume_with_a_damaged_last_checkpoint(tmp_path, shapes, capsys):
    ann, images = shapes
    run = tmp_path / "run"
    run.mkdir()
    (run / "model_0000001.pt").write_bytes(b"")
    (run / "last_checkpoint").write_text("model_0000001.pt\n")
    code, _, err = run_cli(capsys, "train", "--model", "maskrcnn_r18_fpn", "--data", ann, "--images", images,
                           "--out", run, "--resume", "--set", *TINY_TRAIN, "solver.max_iter=1")
    assert code == 2
    assert_one_line_error(err, "train", f"{run / 'model_0000001.pt'}: cannot read weights: the file is empty")
    assert (run / "last_checkpoint").read_text() == "model_0000001.pt\n"

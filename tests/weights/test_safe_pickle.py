"""Pickled weights are read without running code from the file."""

import os
import pickle

import numpy as np
import pytest

from maskrcnn import load_model
from maskrcnn.errors import CheckpointError
from maskrcnn.weights.safe_pickle import load_numpy_pickle


class _RunsCode:
    """Unpickling this calls os.system, which would create `marker`."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("protocol", [2, 4])
def test_a_pickle_that_runs_code_is_refused_and_nothing_runs(tmp_path, protocol):
    marker = tmp_path / "pwned"
    path = tmp_path / "model_final.pkl"
    evil = {"model": {"conv.weight": np.zeros((2, 2), np.float32), "x": _RunsCode(marker)},
            "__author__": "Detectron2 Model Zoo"}  # fmt: skip
    path.write_bytes(pickle.dumps(evil, protocol=protocol))
    with pytest.raises(CheckpointError, match=r"model_final\.pkl: refused to load: .*(posix|os)\.system"):
        load_model("maskrcnn_r50_fpn", weights=str(path))
    assert not marker.exists()
    pickle.loads(path.read_bytes())  # the stock unpickler runs the payload: the check can fail
    assert marker.exists()


def test_arrays_and_containers_come_back(tmp_path):
    data = {"model": {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.float64(2.5)},
            "meta": [1, 2.0, "three", (4,), None, True]}  # fmt: skip
    path = tmp_path / "ok.pkl"
    path.write_bytes(pickle.dumps(data, protocol=2))
    back = load_numpy_pickle(path)
    np.testing.assert_array_equal(back["model"]["a"], data["model"]["a"])
    assert back["model"]["b"] == 2.5 and back["meta"] == data["meta"]

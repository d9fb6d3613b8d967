"""solver.deterministic: two CPU runs give the same bits; the mode names what has no
deterministic implementation and leaves PyTorch's settings as it found them."""

import pytest
import torch
from test_trainer import _losses_by_iter, _run, _synth_cfg

from maskrcnn.training import checkpoint as ckpt
from maskrcnn.training.determinism import DeterminismError, deterministic_mode


def test_two_deterministic_runs_are_bit_identical(tmp_path, synth_ann):
    # data loading in two worker processes, random flips, random training sizes
    cfg = _synth_cfg(synth_ann, "solver.deterministic=true", "solver.max_iter=5", "solver.ims_per_batch=2",
                     "data.num_workers=2", "input.min_size=[80,96]", "solver.log_period=1")  # fmt: skip
    for name in ("a", "b"):
        _run(cfg, tmp_path / name, synth_ann)
    a, b = (ckpt.load_checkpoint(tmp_path / name / "model_final.pt")["model"] for name in ("a", "b"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    losses = _losses_by_iter(tmp_path / "a")
    assert sorted(losses) == [1, 2, 3, 4, 5] and losses == _losses_by_iter(tmp_path / "b")
    assert not torch.are_deterministic_algorithms_enabled()  # restored after the run


def test_an_operation_without_deterministic_kernel_is_named():
    def step():  # what a kernel without a deterministic implementation reports on CUDA
        torch._prims_common.alert_not_deterministic("roi_align_backward_kernel")

    step()  # outside the mode: nothing to report
    with pytest.raises(DeterminismError) as err, deterministic_mode(True, torch.device("cpu")):
        assert torch.are_deterministic_algorithms_enabled() and torch.backends.mkldnn.deterministic
        step()
    assert "roi_align_backward_kernel" in str(err.value) and "solver.deterministic=false" in str(err.value)
    assert not torch.are_deterministic_algorithms_enabled() and not torch.backends.mkldnn.deterministic

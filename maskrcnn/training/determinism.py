"""`solver.deterministic=true`: training runs that repeat bit for bit.

Every random choice of a run is already a function of `solver.seed`: the initial weights (seeded
before the model is built), the data order, flips and the model's anchor / RoI sampling (the
loader derives them from (seed, iteration, position), also in worker processes). What remains is
the arithmetic: deterministic mode turns on `torch.use_deterministic_algorithms(True)` (any
operation without a deterministic implementation raises instead of drifting) and oneDNN's
deterministic flag. On the CPU two runs are then bit-identical for the same software, hardware
and thread count (parallel reductions split their work by `torch.get_num_threads()`).

On CUDA it also makes cuDNN deterministic (no autotuning) and cuBLAS use a fixed workspace.
RoIAlign's CUDA backward kernel adds with atomics: under deterministic mode torchvision swaps in
its pure-PyTorch RoIAlign (deterministic backward), which needs torch.compile on that device;
without it the run stops before the first step with a `DeterminismError` naming the operation.
Any other operation without a deterministic kernel is named the same way when it first runs.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

import torch

from ..errors import UserError

_PYTORCH_MESSAGE = " does not have a deterministic implementation"


class DeterminismError(UserError):
    """solver.deterministic=true met an operation that has no deterministic implementation."""


def nondeterministic_ops(device: torch.device) -> list[str]:
    """Operations of the training step on `device` known to lack a deterministic kernel."""
    if device.type != "cuda":
        return []
    from torch._dynamo.utils import is_compile_supported

    if is_compile_supported(device.type):
        return []
    return ["torchvision roi_align backward (atomic adds; its deterministic version needs torch.compile)"]


@contextmanager
def deterministic_mode(enabled: bool, device: torch.device):
    """Within the block, PyTorch runs deterministic algorithms only (when `enabled`); the
    previous settings come back afterwards."""
    if not enabled:
        yield
        return
    missing = nondeterministic_ops(device)
    if missing:
        raise DeterminismError(_message(", ".join(missing), device))
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read at cuBLAS handle creation
    backends = torch.backends
    saved = (torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled(),
             backends.cudnn.deterministic, backends.cudnn.benchmark, backends.mkldnn.deterministic)  # fmt: skip
    torch.use_deterministic_algorithms(True)
    backends.cudnn.deterministic, backends.cudnn.benchmark, backends.mkldnn.deterministic = True, False, True
    try:
        yield
    except RuntimeError as exc:
        text = str(exc)
        if _PYTORCH_MESSAGE not in text:
            raise
        raise DeterminismError(_message(text.split(_PYTORCH_MESSAGE)[0].split()[-1], device)) from exc
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        backends.cudnn.deterministic, backends.cudnn.benchmark, backends.mkldnn.deterministic = saved[2:]


def _message(ops: str, device: torch.device) -> str:
    return (f"solver.deterministic=true: no deterministic implementation on {device.type} for: {ops}; "
            "train on the CPU for bit-identical runs or set solver.deterministic=false")  # fmt: skip

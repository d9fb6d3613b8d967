"""Process-group set-up from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK) and the few
collectives the trainer needs. A single plain process is world size 1 and needs no set-up."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from ..errors import UserError


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the run, from torchrun's environment: `rank` (0..world_size-1),
    `world_size` (processes), `local_rank` (index on this machine: its GPU)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0, the process that logs, checkpoints and evaluates."""
        return self.rank == 0


def pick_device(requested: str | None = None, local_rank: int = 0) -> torch.device:
    """cuda (one GPU per local rank) when available, else cpu; `requested` overrides."""
    kind = requested or ("cuda" if torch.cuda.is_available() else "cpu")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise UserError("--device cuda was requested but no CUDA device is available")
        return torch.device("cuda", local_rank)
    if kind != "cpu":
        raise UserError(f"unknown device {kind!r}; use cpu or cuda")
    return torch.device("cpu")


def init(device_kind: str | None = None) -> tuple[DistInfo, torch.device]:
    """Join the process group torchrun describes (if any) and return (info, device)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    info = DistInfo(int(os.environ.get("RANK", "0")), world_size,
                    int(os.environ.get("LOCAL_RANK", "0")))  # fmt: skip
    device = pick_device(device_kind, info.local_rank)
    if world_size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return info, device


def shutdown() -> None:
    """Leave the process group, if one was joined (safe to call in a single process)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """DDP when running multi-process, else the model itself."""
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DistributedDataParallel wrapper, or `model` itself (for its state dict and
    evaluation)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def mean_across(values: torch.Tensor) -> torch.Tensor:
    """Average a 1-D tensor over processes (every rank gets the result)."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        values = values.clone()
        dist.all_reduce(values)
        values /= dist.get_world_size()
    return values


def barrier() -> None:
    """Wait until every process gets here (no-op in a single process)."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()

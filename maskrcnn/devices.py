"""Which device a run uses: a name a user typed, checked against this machine before any work."""

from __future__ import annotations

import torch

from .errors import UserError

_KINDS = "cpu, cuda, cuda:N or mps"


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """None -> cuda when available, else cpu. A device this machine lacks is a UserError."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise UserError(f"device '{device}' is not a device name ({_KINDS})") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"device '{device}': no CUDA device is available on this machine; use cpu")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise UserError(f"device '{device}': this machine has {count} CUDA device(s), "
                            f"cuda:0 to cuda:{count - 1}")
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise UserError(f"device '{device}': MPS (Apple GPU) is not available on this machine; use cpu")
    elif dev.type != "cpu":
        raise UserError(f"device '{device}' is not supported ({_KINDS})")
    return dev

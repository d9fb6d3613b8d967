"""Weights files: ours (safetensors or .pt, config embedded) and foreign ones, loaded safely."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from ..config import Config, from_dict, to_dict
from ..convert.mmdet import convert_mmdet, is_mmdet_checkpoint
from ..convert.torchvision import convert_torchvision, is_torchvision_state_dict
from ..errors import CheckpointError
from ..fileio import torch_save_atomic, write_bytes_atomic

_CONFIG_KEY = "maskrcnn_config"


def save_weights(model, path: str | Path) -> None:
    """Write model weights + config atomically (.safetensors or .pt)."""
    path = Path(path)
    if getattr(model, "precision", None) is not None:
        raise ValueError(
            f"{path}: this model was prepared for inference (precision={model.precision!r}: norms "
            "folded into convolutions), so its weights fit no other model; save it before that, "
            "e.g. from load_model(..., precision=None)"
        )
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    config = to_dict(model.cfg)
    if path.suffix == ".safetensors":
        write_bytes_atomic(path, safetensors_bytes(state, metadata={_CONFIG_KEY: json.dumps(config)}))
    else:
        torch_save_atomic(path, {"model": state, "config": config})


def read_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict | None]:
    """-> (state dict in our layout, embedded config dict or None). Never unpickles code."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: weights file not found")
    config = None
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), "pt") as f:
                meta = f.metadata() or {}
            state = load_file(str(path))
            config = json.loads(meta[_CONFIG_KEY]) if _CONFIG_KEY in meta else None
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except (SafetensorError, RuntimeError, EOFError, OSError, ValueError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: cannot read weights (truncated or not a checkpoint?): {exc}") from exc
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        config = state.get("config", config)
        state = state["model"]
    if is_mmdet_checkpoint(state):
        return convert_mmdet(state, str(path))
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise CheckpointError(f"{path}: not a state dict of tensors")
    if is_torchvision_state_dict(state):
        state = convert_torchvision(state)
    return state, config


def load_state(model, state: dict[str, torch.Tensor], source: str = "weights") -> None:
    """Strict load with an error that lists missing, unexpected and shape-mismatched keys."""
    own = model.state_dict()
    # BatchNorm's batch counter is bookkeeping, not a weight: tolerate its absence or presence.
    counter = "num_batches_tracked"
    state = {k: v for k, v in state.items() if not k.endswith(counter) or k in own}
    state.update({k: v for k, v in own.items() if k.endswith(counter) and k not in state})
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own if k in state and state[k].shape != own[k].shape
    ]
    if missing or unexpected or mismatched:
        raise CheckpointError(
            f"{source} does not fit model '{model.cfg.name}':"
            + _listing("missing keys", missing)
            + _listing("unexpected keys", unexpected)
            + _listing("shape mismatches", mismatched)
        )
    model.load_state_dict(state)


def config_from_checkpoint(config: dict | None, base: Config) -> Config:
    return base if config is None else from_dict(config, base=base, source="checkpoint config")


def _listing(title: str, items: list[str], limit: int = 10) -> str:
    if not items:
        return ""
    shown = ", ".join(items[:limit]) + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")
    return f"\n  {len(items)} {title}: {shown}"

"""Weights: ours (safetensors or .pt, config embedded) and foreign ones, loaded safely.

`read_weights` takes a file or a named source (`maskrcnn weights list`, `registry.py`; fetched
by `download.py`) and returns our layout: torchvision detection state dicts, torchvision
ImageNet ResNet/ResNeXt classifiers (the trunk only), mmdetection and detectron2 checkpoints
(`maskrcnn/weights/formats/`). `transfer.py` starts a training run from any of them.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save as safetensors_bytes

from ..config import Config, from_dict, to_dict
from .formats.detectron2 import convert_detectron2, is_detectron2_state_dict
from .formats.efficientnet_lite import convert_efficientnet_lite, is_efficientnet_lite
from .formats.imagenet import convert_imagenet_resnet, is_imagenet_resnet
from .formats.mmdet import convert_mmdet, is_mmdet_checkpoint
from .formats.torchvision import convert_torchvision, is_torchvision_state_dict
from ..errors import CheckpointError
from ..fileio import torch_save_atomic, write_bytes_atomic
from .files import CONFIG_KEY as _CONFIG_KEY
from .files import load_weights_file
from .safe_pickle import load_numpy_pickle


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


def read_weights(source: str | Path) -> tuple[dict[str, torch.Tensor], dict | None]:
    """File or source name -> (state dict in our layout, embedded config dict or None).
    Never unpickles code."""
    path = resolve_weights(source)
    config = None
    if path.suffix == ".pkl":
        state = _numpy_state(load_numpy_pickle(path), path)
    else:
        state, config = _load_file(path)
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        config = state.get("config", config)
        state = state["model"]
    if is_mmdet_checkpoint(state):
        return convert_mmdet(state, str(path))
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise CheckpointError(f"{path}: not a state dict of tensors")
    if is_detectron2_state_dict(state):
        return convert_detectron2(state, str(path))
    if is_torchvision_state_dict(state):
        state = convert_torchvision(state)
    elif is_imagenet_resnet(state):
        state = convert_imagenet_resnet(state)
    elif is_efficientnet_lite(state):
        state = convert_efficientnet_lite(state)
    elif any(k.startswith(_OLD_BOX_PREDICTOR) for k in state):
        # ours from before the box head held its own class and box layers
        state = {k.replace(_OLD_BOX_PREDICTOR, "roi_heads.box_head.", 1): v for k, v in state.items()}
    return state, config


_OLD_BOX_PREDICTOR = "roi_heads.box_predictor."


def _load_file(path: Path) -> tuple[object, dict | None]:
    """A safetensors file (-> tensors, its config metadata) or a torch file (weights only)."""
    return load_weights_file(path)


# Suffixes that make a --weights argument a file rather than a source name.
_FILE_SUFFIXES = (".pt", ".pth", ".pkl", ".safetensors", ".bin", ".ckpt")


def resolve_weights(source: str | Path) -> Path:
    """A weights file, or the local copy of a named source (downloaded on first use)."""
    from .download import fetch
    from .registry import SOURCES, get_source

    path = Path(source)
    if path.is_file():
        return path
    if str(source) in SOURCES:
        return fetch(SOURCES[str(source)])
    if isinstance(source, Path) or path.suffix in _FILE_SUFFIXES or path.is_dir():
        raise CheckpointError(f"{path}: weights file not found")
    return fetch(get_source(str(source)))  # an unknown name: the error lists the nearest ones


def _numpy_state(obj, path: Path) -> dict[str, torch.Tensor]:
    """A detectron2-style pickle {"model": {name: ndarray}, ...} -> {"model": {name: tensor}}."""
    import numpy as np

    model = obj.get("model", obj) if isinstance(obj, dict) else None
    if not isinstance(model, dict):
        raise CheckpointError(f"{path}: a pickle without a dict of arrays (detectron2's {{'model': ...}})")
    bad = [str(k) for k, v in model.items() if not isinstance(v, np.ndarray)]
    if bad:
        raise CheckpointError(f"{path}: entries that are not arrays: {', '.join(bad[:5])}")
    return {"model": {str(k): torch.from_numpy(np.ascontiguousarray(v)) for k, v in model.items()}}


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
    """The config a checkpoint embeds (a nested dict, as `to_dict` wrote it) applied onto `base`;
    `base` itself when the checkpoint has none.

    Raises:
        ConfigError: the embedded config has a key or value the Config does not take.
    """
    return base if config is None else from_dict(config, base=base, source="checkpoint config")


def _listing(title: str, items: list[str], limit: int = 10) -> str:
    if not items:
        return ""
    shown = ", ".join(items[:limit]) + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")
    return f"\n  {len(items)} {title}: {shown}"

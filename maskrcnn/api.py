"""`load_model`: a preset (or embedded config) plus weights -> a ready model."""

from __future__ import annotations

import warnings

import torch

from .model.detector import MaskRCNN, build_model
from .weights import config_from_checkpoint, load_state, read_weights
from .zoo import apply_kwargs, get_preset

RANDOM_SEED = 0


def load_model(name: str, weights=None, device: str | torch.device = "cpu", **overrides) -> MaskRCNN:
    """Build preset `name` and load `weights` (our .safetensors/.pt or a torchvision state dict).

    A checkpoint that embeds its config (ours) fixes the architecture and classes; keyword
    overrides (e.g. `box_score_thresh=0.0`, `min_size=600`) apply last. `weights=None` gives
    seeded random weights, with a warning.
    """
    cfg = get_preset(name)
    state = None
    if weights is not None:
        state, embedded = read_weights(weights)
        cfg = config_from_checkpoint(embedded, cfg)
    cfg = apply_kwargs(cfg, overrides)
    if state is None:
        warnings.warn(f"{name}: no weights given, using seeded random weights (seed {RANDOM_SEED})",
                      stacklevel=2)
        with torch.random.fork_rng():
            torch.manual_seed(RANDOM_SEED)
            model = build_model(cfg)
    else:
        model = build_model(cfg)
        load_state(model, state, source=str(weights))
    return model.to(device).eval()

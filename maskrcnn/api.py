"""`load_model`: a preset (or embedded config) plus weights -> a ready model."""

from __future__ import annotations

import warnings

import torch

from .model.detector import MaskRCNN, build_model
from .model.fast_inference import prepare_for_inference
from .weights import config_from_checkpoint, load_state, read_weights
from .zoo import apply_kwargs, get_preset

RANDOM_SEED = 0


def load_model(
    name: str,
    weights=None,
    device: str | torch.device = "cpu",
    precision: str | None = "fp32",
    compile: bool = False,
    **overrides,
) -> MaskRCNN:
    """Build preset `name` and load `weights` (our .safetensors/.pt or a torchvision state dict).

    `precision` picks the fast inference path (`maskrcnn.model.fast_inference`): "fp32" (norms
    folded, channels-last; same detections as the plain model within float rounding) or "bf16"
    (bf16 features, about twice as fast again on CPUs with bf16 dot products and on GPUs).
    `precision=None` leaves the modules as built, for fine-tuning or inspection; `compile=True`
    also runs the backbone through torch.compile.

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
    model = model.to(device).eval()
    if precision is not None:
        prepare_for_inference(model, precision, compile=compile)
    return model

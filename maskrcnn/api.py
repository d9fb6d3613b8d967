"""`load_model`: a preset (or embedded config) plus weights -> a ready model."""

from __future__ import annotations

import warnings

import torch

from .config import Config, flatten_dict, to_dict
from .devices import resolve_device
from .errors import CheckpointError
from .model.detector import MaskRCNN, build_model
from .model.fast_inference import prepare_for_inference
from .weights import config_from_checkpoint, load_state, read_weights
from .presets import PRESETS, apply_kwargs, get_preset

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

    A checkpoint that embeds its config (ours, mmdetection's) fixes the architecture and classes:
    when its trunk (ResNet depth / ResNeXt groups) differs from preset `name`'s, loading is
    refused (`name` was a mistake); when it is another config (its name is not `name`) that
    differs in other fields (heads, sizes, thresholds; not the classes), a one-line warning
    names them. Keyword overrides (e.g. `box_score_thresh=0.0`,
    `min_size=600`) apply last. `weights=None` gives seeded random weights, with a warning.
    A `device` this machine lacks is a UserError, raised before any work.
    """
    device = resolve_device(device)
    cfg = get_preset(name)
    state = None
    if weights is not None:
        state, embedded = read_weights(weights)
        if embedded is not None:
            cfg = _embedded_config(config_from_checkpoint(embedded, cfg), cfg, weights)
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


# Differences that are no news: every fine-tuned model has its own classes.
_UNREMARKABLE = {"model.num_classes", "model.class_names", "model.category_ids", "input.hflip_prob"}
_TRUNK = ("depth", "groups", "width_per_group")


def _embedded_config(embedded: Config, preset: Config, weights) -> Config:
    """The checkpoint's config, after checking it against the preset the caller named."""
    if _trunk(embedded) != _trunk(preset):
        same = [n for n, make in PRESETS.items() if _trunk(make()) == _trunk(embedded)]
        hint = f"; use a preset with its trunk: {', '.join(same)}" if same else ""
        raise CheckpointError(f"{weights} holds a {_trunk_name(embedded)} model ('{embedded.name}'), but "
                              f"preset '{preset.name}' is a {_trunk_name(preset)}{hint}")
    if embedded.name == preset.name:  # the user's own run of this preset: its settings are theirs
        return embedded
    ours, theirs = dict(flatten_dict(to_dict(embedded))), dict(flatten_dict(to_dict(preset)))
    differ = [k for k in ours if k.startswith(("model.", "input.")) and k not in _UNREMARKABLE
              and ours[k] != theirs.get(k)]
    if differ:
        shown = ", ".join(f"{k}={ours[k]} (preset {theirs.get(k)})" for k in differ[:3])
        more = f" and {len(differ) - 3} more" if len(differ) > 3 else ""
        warnings.warn(f"{weights} embeds config '{embedded.name}', used instead of preset '{preset.name}' "
                      f"where they differ: {shown}{more}", stacklevel=3)
    return embedded


def _trunk(cfg: Config) -> tuple:
    return tuple(getattr(cfg.model.backbone, f) for f in _TRUNK)


def _trunk_name(cfg: Config) -> str:
    b = cfg.model.backbone
    return f"ResNet-{b.depth}" if b.groups == 1 else f"ResNeXt-{b.depth} {b.groups}x{b.width_per_group}d"

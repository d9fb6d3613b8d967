"""Range checks for every numeric config field, derived from the dataclasses in `config.py`.

Every int / float field (and every number in a tuple field) gets a range: by default it must be
>= 0; the tables below make it stricter by the field's name (its last dotted part, or the whole
dotted key where one name means different things). `config.set_value` checks a value as it is set
(--set, YAML, load_model keywords, a checkpoint's config); `check_ranges` walks a whole config
(built in code), so `train` refuses `model.mask.resolution=0` before it creates the run folder.
"""

from __future__ import annotations

import dataclasses
import math

from .errors import ConfigError

# integers that count or size something: 0 would build a degenerate layer, image or schedule
AT_LEAST_ONE = {
    "min_size", "max_size", "depth", "groups", "width_per_group", "fpn_channels", "sizes",
    "pre_nms_topk_train", "pre_nms_topk_test", "post_nms_topk_train", "post_nms_topk_test",
    "batch_size_per_image", "pooler_resolution", "canonical_scale", "fc_dim", "conv_dim",
    "resolution", "conv_dims", "mlp_dims", "num_keypoints", "num_classes", "detections_per_img",
    "max_iter", "ims_per_batch", "accumulate", "checkpoint_period", "keep_checkpoints",
    "log_period", "scales",
}  # fmt: skip
# numbers that divide or scale: must be > 0
POSITIVE = {"pixel_std", "pixel_scale", "aspect_ratios", "box_weights", "base_lr", "gamma",
            "warmup_factor", "repeat_threshold"}  # fmt: skip
# probabilities, IoU and score thresholds, fractions: in [0, 1]
UNIT = {"hflip_prob", "ema_decay", "nms_thresh", "score_thresh", "fg_iou_thresh", "bg_iou_thresh",
        "positive_fraction", "momentum", "warmup_factor", "repeat_threshold"}  # fmt: skip
# (low, high) inclusive, by dotted key
BETWEEN = {"model.backbone.freeze_at": (0, 5)}


def range_problem(dotted: str, value) -> str | None:
    """Why `value` is out of range for field `dotted` (e.g. "must be at least 1"), or None.
    Values that are not numbers (strings, None) are left to the type checks."""
    values = value if isinstance(value, (list, tuple)) else [value]
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    name = dotted.rsplit(".", 1)[-1]
    every = "every value " if isinstance(value, (list, tuple)) else ""
    for v in numbers:
        if not math.isfinite(v):
            return f"{every}must be a finite number"
        if dotted in BETWEEN and not BETWEEN[dotted][0] <= v <= BETWEEN[dotted][1]:
            return f"{every}must be between {BETWEEN[dotted][0]} and {BETWEEN[dotted][1]}"
        if name in AT_LEAST_ONE and v < 1:
            return f"{every}must be at least 1"
        if name in POSITIVE and v <= 0:
            return f"{every}must be greater than 0"
        if name in UNIT and not 0 <= v <= 1:
            return f"{every}must be between 0 and 1"
        if v < 0:
            return f"{every}must be >= 0"
    return None


def check_range(dotted: str, value, source: str) -> None:
    """ConfigError naming the field and its value, e.g. `model.mask.resolution=0`."""
    problem = range_problem(dotted, value)
    if problem:
        shown = list(value) if isinstance(value, tuple) else value
        raise ConfigError(f"{source}: {dotted}={shown} is out of range: {problem}")


def check_ranges(cfg, prefix: str = "", source: str = "config") -> None:
    """check_range on every field of a config tree."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            check_ranges(value, f"{prefix}{f.name}.", source)
        else:
            check_range(f"{prefix}{f.name}", value, source)

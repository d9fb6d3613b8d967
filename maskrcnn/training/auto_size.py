"""`input.min_size=auto` and `model.anchors.sizes=auto`: sizes chosen from the training set.

The statistics are check-data's (`maskrcnn.data.check`): each object's side is the square root of
its annotation `area`, measured against its image's short and long side. With the model's resize
(short side S, long side capped at max_size) an object of side `a` in an image with short side
`h` and long side `l` becomes `a * min(S / h, max_size / l)` pixels.

Input size: the smallest S (a multiple of 32 from MIN_SIZE, or from the cap below if smaller) at which
- the median object is a COCO "large" object (side >= TYPICAL_SIDE = 96 px), where masks keep
  their detail (most of Mask R-CNN's mask AP comes from such objects), and
- the 10th-percentile object still covers SMALL_SIDE = 16 px (four cells of the stride-4 P2 map
  on each side, the smallest object the RPN's P2 anchors match);
capped at MAX_UPSCALE x the median image short side (upsampling adds no detail) and at
MAX_SIZE, the standard 800 px (a CPU budget cannot afford more). When input.max_size is left at
its default, it follows S (S x 1333 / 800, the standard aspect cap).

The budget: with solver.time_budget, once the first steps have been timed (BudgetSizer), an
auto input size that leaves fewer than MIN_EPOCHS passes over the training set in the budget is
scaled down by sqrt(epochs / MIN_EPOCHS) (a step's cost grows with the pixels), to at least
MIN_BUDGET_SIZE, and re-checked after the next steps (at most MAX_SHRINKS times).

Anchors: the FPN's five levels get sizes s0 x (1, 2, 4, 8, 16), s0 the power of two nearest the
10th-percentile object side at the chosen input size, between 8 and 32 (the default) px.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..config import AnchorConfig, Config, InputConfig, is_auto

MIN_SIZE, MAX_SIZE, STEP = 256, 800, 32
TYPICAL_SIDE, SMALL_SIDE = 96.0, 16.0
SMALL_QUANTILE = 10  # percentile of object sides that must stay detectable
MAX_UPSCALE = 2.0
ASPECT_CAP = 1333 / 800  # max_size / min_size of the standard resize
ANCHOR_RANGE = (8, 32)
MIN_EPOCHS = 10.0  # passes over the training set a budget should buy at least
MIN_BUDGET_SIZE = 192
MAX_SHRINKS = 3


@dataclass
class ObjectSizes:
    """Per object (N,): side = sqrt(area) in image pixels, its image's short and long side."""

    sides: np.ndarray
    shorts: np.ndarray
    longs: np.ndarray

    @classmethod
    def from_dataset(cls, dataset) -> "ObjectSizes":
        """From a `CocoDataset` (its annotation records; no image is read)."""
        rows = []
        for record in dataset.images:
            h, w = record.get("height"), record.get("width")
            if not h or not w:
                continue
            rows += [(math.sqrt(max(a["area"], 0.0)), min(h, w), max(h, w))
                     for a in dataset._anns[record["id"]]]  # fmt: skip
        data = np.array(rows, dtype=np.float64).reshape(-1, 3)
        return cls(data[:, 0], data[:, 1], data[:, 2])

    def at(self, min_size: int, max_size: int) -> np.ndarray:
        """(N,) object sides once each image is resized as the model resizes it."""
        return self.sides * np.minimum(min_size / self.shorts, max_size / self.longs)


def follows_size(inp: InputConfig) -> bool:
    """max_size left at its default follows an auto min_size."""
    return inp.max_size == InputConfig().max_size


def choose_input_size(objects: ObjectSizes, max_size: int | None) -> tuple[int, int, str]:
    """-> (min_size, max_size, reason). `max_size` None: it follows min_size."""
    cap = max(STEP, min(MAX_SIZE, _round_down(MAX_UPSCALE * float(np.median(objects.shorts)))))
    chosen = cap
    for size in range(min(MIN_SIZE, cap), cap + 1, STEP):
        sides = objects.at(size, max_size or round(size * ASPECT_CAP))
        if np.median(sides) >= TYPICAL_SIDE and np.percentile(sides, SMALL_QUANTILE) >= SMALL_SIDE:
            chosen = size
            break
    long_cap = max_size or round(chosen * ASPECT_CAP)
    sides = objects.at(chosen, long_cap)
    median, small = float(np.median(sides)), float(np.percentile(sides, SMALL_QUANTILE))
    why = (f"median object {median:.0f} px (want >= {TYPICAL_SIDE:g}), 10% of objects under "
           f"{small:.0f} px (want >= {SMALL_SIDE:g})")  # fmt: skip
    if chosen == cap and not (median >= TYPICAL_SIDE and small >= SMALL_SIDE):
        why += f"; capped at {cap} px (<= {MAX_UPSCALE:g}x the median image short side, <= {MAX_SIZE})"
    return chosen, long_cap, why


def choose_anchor_sizes(objects: ObjectSizes, min_size: int, max_size: int) -> tuple[tuple[int, ...], str]:
    """-> (five anchor sizes for P2..P6, reason)."""
    small = float(np.percentile(objects.at(min_size, max_size), SMALL_QUANTILE))
    base = 2 ** round(math.log2(max(small, 1.0)))
    base = int(min(max(base, ANCHOR_RANGE[0]), ANCHOR_RANGE[1]))
    return tuple(base * 2**k for k in range(5)), f"10% of objects under {small:.0f} px at this input size"


def resolve_auto_sizes(cfg: Config, dataset, say=print) -> bool | None:
    """Replace `auto` in input.min_size / model.anchors.sizes by sizes chosen from `dataset`
    (in place), saying what was chosen and why. -> None when min_size was not auto, else
    whether max_size follows it (what BudgetSizer needs)."""
    inp, anchors = cfg.input, cfg.model.anchors
    if not (is_auto(inp.min_size) or is_auto(anchors.sizes)):
        return None
    objects = ObjectSizes.from_dataset(dataset)
    if len(objects.sides) == 0:
        fill_auto_defaults(cfg)
        say("auto sizes: the training set has no objects with a size; using the defaults")
        return None
    follows = None
    if is_auto(inp.min_size):
        follows = follows_size(inp)
        size, inp.max_size, why = choose_input_size(objects, None if follows else inp.max_size)
        inp.min_size = (size,)
        say(f"input.min_size=auto -> [{size}] (max_size {inp.max_size}): {why}")
    if is_auto(anchors.sizes):
        anchors.sizes, why = choose_anchor_sizes(objects, max(inp.min_size), inp.max_size)
        say(f"model.anchors.sizes=auto -> {list(anchors.sizes)}: {why}")
    return follows


class BudgetSizer:
    """Shrinks an auto input size that the time budget cannot afford (see the module docstring).

    Called by the Trainer's BudgetPlan with the median step time of the steps since the last
    change (the same value on every process); `say` reports, `save` records the new config."""

    def __init__(self, cfg: Config, num_images: int, say=print, save=lambda: None):
        self.cfg, self.num_images, self.say, self.save = cfg, num_images, say, save
        self.follows = True  # max_size follows min_size (set by resolve_auto_sizes)
        self.shrinks = 0

    def __call__(self, step_seconds: float, seconds_left: float) -> bool:
        """-> True when the size changed (the plan then forgets the old step times)."""
        s = self.cfg.solver
        if seconds_left <= 0 or step_seconds <= 0:  # the run is ending anyway
            return False
        epochs = seconds_left / max(step_seconds, 1e-9) * s.ims_per_batch * s.accumulate / self.num_images
        size = max(self.cfg.input.min_size)
        new = max(MIN_BUDGET_SIZE, _round_down(size * math.sqrt(epochs / MIN_EPOCHS)))
        if epochs >= MIN_EPOCHS or new >= size or self.shrinks >= MAX_SHRINKS:
            return False
        self.shrinks += 1
        self.cfg.input.min_size = (new,)
        if self.follows:
            self.cfg.input.max_size = round(new * ASPECT_CAP)
        self.say(f"input.min_size {size} -> {new} (max_size {self.cfg.input.max_size}): {step_seconds:.2f} s "
                 f"per step leaves {epochs:.1f} passes over the {self.num_images} training images in the "
                 f"budget (want >= {MIN_EPOCHS:g})")  # fmt: skip
        self.save()
        return True


def fill_auto_defaults(cfg: Config) -> None:
    """Without a training set (inference with a preset's random weights), `auto` means the
    dataclass default."""
    if is_auto(cfg.input.min_size):
        cfg.input.min_size = InputConfig().min_size
    if is_auto(cfg.model.anchors.sizes):
        cfg.model.anchors.sizes = AnchorConfig().sizes


def _round_down(value: float) -> int:
    return int(value // STEP * STEP)

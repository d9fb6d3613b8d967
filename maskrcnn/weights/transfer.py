"""Start training from another model's weights: a detector of any framework or an ImageNet trunk.

Every tensor of the model is, exactly one of:
- loaded: taken whole from the file (same key, same shape);
- re-initialised: a class-dependent layer (an output layer whose rows follow the classes, as its
  head declares: class scores, box deltas, mask logits, MaskIoU output) when the file's classes
  differ from the dataset's, or an output layer whose rows do not follow the classes (keypoint
  heatmaps, a class-agnostic mask) when only its output count differs; it keeps the preset's
  initialisation;
- copied by name: such a layer, re-initialised, then given the file's rows of every class both
  label spaces share by name (COCO "person" -> the dataset's "person"; the background row too);
- newly initialised: not in the file (the FPN and heads when the file is an ImageNet trunk).
Any other shape difference is an error naming the keys and both shapes; the model is unchanged.

The file's class names come from its embedded config (ours, mmdetection, detectron2) or, for
files without one (torchvision), from the COCO label spaces this package knows, by count: 91
rows are torchvision's COCO ids, 81 the 80 contiguous COCO classes, 2 with a keypoint head
torchvision's person. With unknown names, equal shapes load whole and others re-initialise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..config import Config, from_dict
from ..errors import CheckpointError
from ..model.head_contract import OutputLayer, declared_outputs
from . import read_weights

_COUNTER = "num_batches_tracked"  # BatchNorm bookkeeping, not a weight


@dataclass
class Transfer:
    """What `init_from_weights` did with each tensor of the model (lists of keys)."""

    source: str
    loaded: list[str] = field(default_factory=list)
    reinitialised: list[str] = field(default_factory=list)
    copied: list[str] = field(default_factory=list)
    new: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)  # in the file, not in the model
    shared_classes: tuple[str, ...] = ()

    def table(self) -> str:
        """The transfer as the few lines `maskrcnn train --weights` prints: the source, then how many
        tensors were loaded, re-initialised, copied by class name, newly initialised and not used."""
        rows = [
            ("loaded", self.loaded, ""),
            ("re-initialised", self.reinitialised, "class-dependent, classes differ"),
            ("copied by name", self.copied, "rows of: " + ", ".join(self.shared_classes)),
            ("newly initialised", self.new, "not in the file"),
            ("not used", self.unused, "in the file, not in this model"),
        ]
        lines = [f"initial weights: {self.source}"]
        for title, keys, note in rows:
            lines.append(f"  {title:<18}{len(keys):>5} tensors" + (f"  ({note})" if keys and note else ""))
        return "\n".join(lines)


def init_from_weights(model: nn.Module, source: str) -> Transfer:
    """Load `source` (file or named source) into `model` for fine-tuning; -> what was done."""
    state, config = read_weights(source)
    own = {k: v for k, v in model.state_dict().items() if not k.endswith(_COUNTER)}
    state = {k: v for k, v in state.items() if not k.endswith(_COUNTER)}
    outputs = declared_outputs(model)
    # the first layer with one row per class: the box head's class scores
    classifier = next(o.name for o in outputs if o.class_rows == 1) + ".weight"
    src_names, dst_names = file_class_names(state, config, classifier), tuple(model.cfg.model.class_names)
    same = _same_classes(state, own, src_names, dst_names, classifier)
    report = Transfer(str(source), unused=[k for k in state if k not in own])
    values, mismatched = {}, []
    for key, mine in own.items():
        theirs = state.get(key)
        output = next((o for o in outputs if key.startswith(o.name + ".")), None)
        if theirs is None:
            report.new.append(key)
        elif output and output.class_rows and not same and theirs.shape[1:] == mine.shape[1:]:
            values[key], shared = _copy_by_name(mine, theirs, output.class_rows, src_names, dst_names,
                                                f"{source}: {key}")  # fmt: skip
            (report.copied if shared else report.reinitialised).append(key)
            report.shared_classes = shared or report.shared_classes
        elif output and output.class_rows is None and _output_count_only(theirs, mine, output):
            report.reinitialised.append(key)
        elif theirs.shape != mine.shape:
            mismatched.append(f"{key}: file {tuple(theirs.shape)} vs model {tuple(mine.shape)}")
        else:
            values[key] = theirs
            report.loaded.append(key)
    if mismatched:
        shown = "; ".join(mismatched[:8]) + (f"; ... ({len(mismatched) - 8} more)" if len(mismatched) > 8 else "")
        raise CheckpointError(f"{source} does not fit model '{model.cfg.name}': {len(mismatched)} "
                              f"tensors differ in shape: {shown}")  # fmt: skip
    if not report.loaded:
        raise CheckpointError(f"{source}: none of its {len(state)} tensors fits model '{model.cfg.name}' "
                              f"(its keys start {', '.join(list(state)[:3])})")  # fmt: skip
    model.load_state_dict(values, strict=False)
    return report


def file_class_names(state: dict, config: dict | None, classifier: str) -> tuple[str, ...] | None:
    """The label space of the file's class-dependent rows (index = label), None if unknown;
    `classifier` is the key of the class-score weight, whose rows count the classes."""
    from ..presets import COCO80_CLASS_NAMES, COCO_CLASS_NAMES

    if config is not None:
        return tuple(config.get("model", {}).get("class_names") or ()) or None
    rows = state[classifier].shape[0] if classifier in state else None
    if rows == 2 and any(k.startswith("roi_heads.keypoint_head.") for k in state):
        return ("__background__", "person")  # torchvision's Keypoint R-CNN
    return {len(COCO_CLASS_NAMES): COCO_CLASS_NAMES, len(COCO80_CLASS_NAMES): COCO80_CLASS_NAMES}.get(rows)


def config_for_weights(cfg: Config, source: str) -> Config:
    """`cfg` with the architecture of a file that embeds its config (name, model and input
    sections: ours, mmdetection, detectron2); unchanged for files without one."""
    _, embedded = read_weights(source)
    if embedded is None:
        return cfg
    sections = {k: embedded[k] for k in ("name", "model", "input") if k in embedded}
    return from_dict(sections, base=cfg, source=f"{source} (its embedded config)")


def _same_classes(state, own, src_names, dst_names, classifier) -> bool:
    if src_names and dst_names:
        return src_names == dst_names
    return classifier in state and classifier in own and state[classifier].shape == own[classifier].shape


def _copy_by_name(mine, theirs, rows, src_names, dst_names, where) -> tuple[torch.Tensor, tuple]:
    """The model's tensor with the file's rows of every class name both share."""
    if not src_names or not dst_names:
        return mine, ()
    if theirs.shape[0] != len(src_names) * rows:
        raise CheckpointError(f"{where}: {theirs.shape[0]} rows, but the file names {len(src_names)} classes")
    index = {name: i for i, name in enumerate(src_names)}
    out, shared = mine.clone(), []
    for label, name in enumerate(dst_names):
        if name in index:
            i = index[name]
            out[label * rows:(label + 1) * rows] = theirs[i * rows:(i + 1) * rows]
            shared.append(name)
    return out, tuple(shared)


def _output_count_only(theirs: torch.Tensor, mine: torch.Tensor, output: OutputLayer) -> bool:
    """Shapes differ only in the layer's output count (keypoint types, masks): along dim 1 of a
    ConvTranspose weight (in, out, k, k), along dim 0 of any other weight and of a bias."""
    if theirs.shape == mine.shape or theirs.dim() != mine.dim():
        return False
    dim = 1 if isinstance(output.module, nn.ConvTranspose2d) and mine.dim() > 1 else 0
    return theirs.shape[:dim] + theirs.shape[dim + 1:] == mine.shape[:dim] + mine.shape[dim + 1:]

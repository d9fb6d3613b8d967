"""What every head of the model declares (detectron2's `BaseMaskRCNNHead` is the model for it,
without a registry): the verbs it answers to, its output layers and how their rows follow the
classes, and the typed fields it hands to the heads after it.

- `losses(x, rois, targets, handoff)` in training -> dict of weighted losses;
  `predict(x, detections, handoff)` in inference adds the head's fields to the detections
  (the box head, which makes the detections, has `losses(x, rois, targets)` and
  `predict(x, proposals, image_sizes)`).
- `output_layers()` -> {attribute: rows per class}: the layers whose outputs rank and place the
  detections. Rows per class (along dim 0 of weight and bias) are 1 for class scores, 4 for box
  deltas, M*M for an MLP mask head; None when the rows do not follow the classes (RPN, keypoint
  heatmaps, a class-agnostic mask). Weight transfer copies rows by class name from it, and the
  fast paths, the int8 export and the ONNX export keep these layers in fp32.
- `conv_norm_pairs()` (`DeclaresConvNorms`, any module: trunks, ConvNorm blocks, res5) -> the
  (conv, norm) submodule names it runs as conv -> norm, which the fast paths fold into one conv.
Nothing outside a module names its layers: `declared_outputs(model)` and
`declared_conv_norms(model)` collect the declarations.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


class DeclaresOutputs:
    """A module with output layers (every head, and the RPN head)."""

    def output_layers(self) -> dict[str, int | None]:
        """{attribute of an output layer: its rows per class along dim 0, or None when its rows
        do not follow the classes}."""
        raise NotImplementedError(f"{type(self).__name__} must declare its output layers")


@dataclass(frozen=True)
class OutputLayer:
    """An output layer in the model: its qualified name, the layer, its rows per class (or None)."""

    name: str  # e.g. "roi_heads.box_head.cls_score"
    module: nn.Module
    class_rows: int | None


def declared_outputs(model: nn.Module) -> list[OutputLayer]:
    """Every output layer the model's heads declare, in module order."""
    out = []
    for prefix, owner in model.named_modules():
        if isinstance(owner, DeclaresOutputs):
            for attr, rows in owner.output_layers().items():
                name = f"{prefix}.{attr}" if prefix else attr
                out.append(OutputLayer(name, owner.get_submodule(attr), rows))
    return out


class DeclaresConvNorms:
    """A module that runs some of its convolutions straight into a norm (nothing in between)."""

    def conv_norm_pairs(self) -> list[tuple[str, str]]:
        """(conv, norm) dotted submodule names relative to the module, each pair under one parent."""
        raise NotImplementedError(f"{type(self).__name__} must declare its conv -> norm pairs")


def declared_conv_norms(model: nn.Module) -> list[tuple[nn.Module, str, str]]:
    """(parent, conv attribute, norm attribute) of every conv -> norm pair the model's modules
    declare, in module order."""
    out = []
    for owner in model.modules():
        if isinstance(owner, DeclaresConvNorms):
            for conv, norm in owner.conv_norm_pairs():
                parent, _, conv_name = conv.rpartition(".")
                out.append((owner.get_submodule(parent), conv_name, norm.rpartition(".")[2]))
    return out


@dataclass
class Handoff:
    """What a head hands to the heads after it, for one batch of RoIs (training: the positive
    sampled RoIs; inference: the detections)."""

    mask_logits: torch.Tensor | None = None  # (N, M, M) each RoI's class's mask logits
    mask_targets: torch.Tensor | None = None  # (N, M, M) GT cropped to each RoI in [0, 1] (training)

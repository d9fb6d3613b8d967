"""The fast training path: a built model rewritten to train faster with the same maths.

`prepare_for_training(model)` swaps modules of a model for the named variants of
fast_variants.py and ops/poolers.py (they show in `print(model)`), keeping every parameter,
buffer and state-dict key (checkpoints load into an exact-mode model and back):
- each FrozenBatchNorm2d after a convolution is folded into it at run time: the conv computes
  with weight W * s and bias b - m * s from the norm's frozen statistics, so W stays the trained
  parameter (its gradient is that of conv -> norm up to rounding) and the elementwise pass of
  the norm over every activation disappears (`FrozenNormConv2d`, `FoldedFrozenBatchNorm2d`);
  trainable BatchNorm (batch statistics) is kept;
- parameters and activations channels-last, the layout the CPU and GPU convolution kernels run
  fastest on (and bf16 kernels need to avoid reorders);
- the output layers the heads declare (objectness, box deltas, class scores, mask logits,
  keypoint heatmaps, IoU) run in fp32 outside autocast (`Fp32Linear`, ...): proposals, box
  decoding and the logits the losses read are never quantised to bf16 / fp16;
- RoIAlign runs in fp32 as a sparse matrix product on the channels-last maps
  (`SparseRoIAlign`, ops/roi_align_sparse.py): no NCHW copy of the maps, no per-sample scatter
  in backward; other poolers run torchvision's kernels on fp32 maps (`Fp32RoIPooler`).
The trainer runs the rewritten model under autocast (`maskrcnn.training.trainer.amp_dtype`).
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from ..ops.poolers import Fp32RoIPooler, SparseRoIAlign
from .fast_variants import FOLDING, FoldsFrozenNorm, InputFormat, RunsInFp32, layer_variant, replace_module
from .head_contract import declared_conv_norms, declared_outputs


def prepare_for_training(model: nn.Module, channels_last: bool = True) -> nn.Module:
    """Rewrite `model` (a MaskRCNN) for the fast training step, in place; returns it."""
    for parent, conv_name, norm_name in declared_conv_norms(model):
        conv, norm = getattr(parent, conv_name, None), getattr(parent, norm_name, None)
        if type(conv) in FOLDING and type(norm) is FrozenBatchNorm2d:
            fused, folded = FoldsFrozenNorm.fold(conv, norm)
            setattr(parent, conv_name, fused)
            setattr(parent, norm_name, folded)
    for layer in declared_outputs(model):
        replace_module(model, layer.name, layer_variant(layer.module, RunsInFp32))
    heads = model.roi_heads
    sparse = heads.pooler.kind == "roialign" and heads.pooler.sampling_ratio > 0
    heads.pooler = heads.pooler.as_variant(SparseRoIAlign if sparse else Fp32RoIPooler)
    if channels_last:
        model.to(memory_format=torch.channels_last)
        model.backbone.input_format = InputFormat(None, torch.channels_last)
    return model

"""The fast training path: a built model rewritten to train faster with the same maths.

`prepare_for_training(model)` changes a model in place, keeping every parameter, buffer and
state-dict key (checkpoints load into an exact-mode model and back):
- each FrozenBatchNorm2d after a convolution is folded into it at run time: the conv computes
  with weight W * s and bias b - m * s from the norm's frozen statistics, so W stays the trained
  parameter (its gradient is that of conv -> norm up to rounding) and the elementwise pass of
  the norm over every activation disappears; trainable BatchNorm (batch statistics) is kept;
- parameters and activations channels-last, the layout the CPU and GPU convolution kernels run
  fastest on (and bf16 kernels need to avoid reorders);
- the output layers (objectness, box deltas, class scores, mask logits, keypoint heatmaps, IoU)
  run in fp32 outside autocast: proposals, box decoding and the logits the losses read are never
  quantised to bf16 / fp16;
- RoIAlign runs in fp32 as a sparse matrix product on the channels-last maps
  (`ops/roi_align_sparse.py`): no NCHW copy of the maps, no per-sample scatter in backward.
The trainer runs the rewritten model under autocast (`maskrcnn.engine.trainer.amp_dtype`).
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from ..ops.poolers import RoIPooler, assign_levels, boxes_to_rois
from ..ops.roi_align_sparse import roi_align_sparse_levels
from .fast_inference import conv_norm_pairs, output_layers


def prepare_for_training(model: nn.Module, channels_last: bool = True) -> nn.Module:
    """Rewrite `model` (a MaskRCNN) for the fast training step, in place; returns it."""
    for parent, conv_name, norm_name in list(conv_norm_pairs(model)):
        conv, norm = getattr(parent, conv_name, None), getattr(parent, norm_name, None)
        if isinstance(conv, nn.Conv2d) and isinstance(norm, FrozenBatchNorm2d):
            fold_frozen_norm(conv, norm)
    for module in output_layers(model):
        run_in_fp32(module)
    pooler = model.roi_heads.pooler
    if pooler.kind == "roialign" and pooler.sampling_ratio > 0:
        pool_sparse(pooler)
    else:  # adaptive sampling, RoIPool, RoIWarp: torchvision's kernels
        run_in_fp32(pooler)
    if channels_last:
        model.to(memory_format=torch.channels_last)
        model.backbone.register_forward_pre_hook(
            lambda _, args: (args[0].contiguous(memory_format=torch.channels_last),))
    return model


def fold_frozen_norm(conv: nn.Conv2d, norm: FrozenBatchNorm2d) -> None:
    """conv -> norm becomes one convolution with the norm's scale and shift folded in at each
    call (from the current buffers, so loading a checkpoint later still takes effect)."""

    def forward(x: torch.Tensor) -> torch.Tensor:
        scale = norm.weight * (norm.running_var + norm.eps).rsqrt()  # (C,)
        shift = norm.bias - norm.running_mean * scale
        if conv.bias is not None:
            shift = shift + conv.bias * scale
        return conv._conv_forward(x, conv.weight * scale[:, None, None, None], shift)

    conv.forward = forward
    norm.forward = _identity


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def pool_sparse(pooler: RoIPooler) -> None:
    """The pooler's RoIAlign over all its levels as one `roi_align_sparse_levels` product, in fp32."""

    def forward(features: list[torch.Tensor], boxes: list[torch.Tensor], res: int) -> torch.Tensor:
        rois = boxes_to_rois(boxes)  # (N, 5)
        levels = assign_levels(rois[:, 1:], pooler.min_level, pooler.max_level, pooler.canonical_scale,
                               pooler.canonical_level)  # fmt: skip
        features = features[: pooler.max_level - pooler.min_level + 1]
        scales = [0.5 ** (pooler.min_level + offset) for offset in range(len(features))]
        with torch.autocast(features[0].device.type, enabled=False):
            return roi_align_sparse_levels(features, rois, levels, scales, res, pooler.sampling_ratio,
                                           pooler.aligned)  # fmt: skip

    pooler.forward = forward


def run_in_fp32(module: nn.Module) -> None:
    """`module` computes in fp32 with autocast off; its tensor inputs (also inside lists) are
    cast to fp32."""
    plain = module.forward

    def forward(*args):
        args = [_fp32(a) for a in args]
        device = next(t for t in _tensors(args)).device.type
        with torch.autocast(device, enabled=False):
            return plain(*args)

    module.forward = forward


def _fp32(value):
    if isinstance(value, (list, tuple)):
        return type(value)(_fp32(v) for v in value)
    if isinstance(value, torch.Tensor) and value.is_floating_point():
        return value.float()  # the layout stays: fp32 convolutions run channels-last too
    return value


def _tensors(values):
    for value in values:
        if isinstance(value, (list, tuple)):
            yield from _tensors(value)
        elif isinstance(value, torch.Tensor):
            yield value


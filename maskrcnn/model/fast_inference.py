"""The fast inference path: frozen norms folded into convolutions, channels-last, bf16 features.

`prepare_for_inference(model, precision)` rewrites a built model in place for inference only,
by swapping modules for the named variants of fast_variants.py and ops/poolers.py (what it
swapped shows in `print(model)`):
- every FrozenBatchNorm2d (and eval-mode BatchNorm2d) directly after a convolution is folded
  into that convolution's weight and bias (one convolution instead of conv + 2 elementwise ops);
- "bf16": the feature layers (trunk, FPN, RPN conv, box/mask/keypoint/MaskIoU head bodies) hold
  bf16 weights and run on bf16 activations; the small output layers (objectness, box deltas,
  class scores, mask logits, keypoint heatmaps, IoU) stay fp32 so that rankings are not
  quantised (the output layers are those the heads declare, head_contract.py; every layer of
  the RPN and RoI heads is a `Cast*` variant that casts its input to its own dtype); box
  decoding, NMS and mask pasting always run in fp32. RoIAlign gathers rows of the bf16
  channels-last maps with bf16-rounded weights, accumulating in fp32 (`GatherRoIAlign`; a box
  head of fcs then reads its output as pixel rows, `PixelRowsFlatten`); RoIPool, RoIWarp and
  adaptive sampling read fp32 NCHW copies (`Fp32RoIPooler`).
- "fp32": the ResNet stem's max pool is `SeparableMaxPool3x3`, and an FCN mask head with
  sigmoid masks ends in `MatmulMaskTail` (its `fast_tail`: deconv, ReLU and the detected
  class's logits as matrix products, fast_mask_tail.py).
- the backbone's `input_format` is an `InputFormat` casting the batch to the precision's dtype
  and layout.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from ..ops.poolers import Fp32RoIPooler, GatherRoIAlign
from .backbone import ResNetTrunk
from .fast_variants import CastsInput, InputFormat, layer_variant, replace_module
from .head_contract import declared_conv_norms, declared_outputs

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16}

def prepare_for_inference(
    model: nn.Module, precision: str = "fp32", channels_last: bool | None = None, compile: bool = False
) -> nn.Module:
    """Fold norms, lay convolutions out channels-last and set the feature precision, in place;
    the model is for inference only afterwards. `compile` runs the backbone through
    torch.compile (a one-off compilation on the first images of each size).

    `channels_last` defaults to on for bf16 only: on this project's CPU (oneDNN, AVX-512) the
    channels-last backbone changed one corner detection's mask of a padded two-image batch by 0.4
    in probability (tests/model/test_parity_torchvision.py::test_fast_fp32_path_matches[v1]),
    far beyond rounding, so fp32, the exact path, keeps the contiguous layout."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got '{precision}'")
    if channels_last is None:
        channels_last = precision == "bf16"
    model.eval()
    fold_norms(model)
    if precision != "fp32":
        set_feature_dtype(model, PRECISIONS[precision])
    if channels_last:
        model.to(memory_format=torch.channels_last)
    else:  # oneDNN's channels-last max pool is fast; the NCHW kernel (with indices) is not
        for trunk in (m for m in model.modules() if isinstance(m, ResNetTrunk)):
            trunk.maxpool = SeparableMaxPool3x3()
    layout = torch.channels_last if channels_last else torch.contiguous_format
    dtype = PRECISIONS[precision]
    model.backbone.input_format = InputFormat(dtype, layout)
    _set_pooler(model.roi_heads)
    if precision == "fp32":
        _set_mask_tail(model.roi_heads)
    if compile:
        model.backbone.compile(dynamic=True)
    model.precision = precision
    return model


class SeparableMaxPool3x3(nn.Module):
    """MaxPool2d(3, stride 2, padding 1) as a max over 3 strided columns, then over 3 strided
    rows: the same values (a max is exact), several times faster than the NCHW CPU kernel, which
    also computes the indices. Output position i reads inputs 2i - 1, 2i, 2i + 1; the padding is
    never read: the first output takes 2 inputs, and so does the last when the size is even.
    Traced (an export), it is the max pool op: writes into views do not trace."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, ceil(H / 2), ceil(W / 2)), as MaxPool2d(3, 2, padding=1)."""
        if torch.jit.is_tracing():
            return F.max_pool2d(x, 3, 2, 1)
        return _max3_stride2(_max3_stride2(x, -1), -2)


def _max3_stride2(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Along `dim` (size n): out[i] = max of x[2i - 1], x[2i], x[2i + 1] inside [0, n), i < ceil(n / 2)."""
    n = x.shape[dim]
    outputs, odds = (n + 1) // 2, n // 2
    out = _every_other(x, dim, 0, outputs).clone()  # x[2i]
    odd = _every_other(x, dim, 1, odds)  # x[2i + 1]
    head = out.narrow(dim, 0, odds)
    torch.maximum(head, odd, out=head)
    tail = out.narrow(dim, 1, outputs - 1)  # x[2i - 1] = odd[i - 1], for i >= 1
    torch.maximum(tail, odd.narrow(dim, 0, outputs - 1), out=tail)
    return out


def _every_other(x: torch.Tensor, dim: int, start: int, count: int) -> torch.Tensor:
    index = [slice(None)] * x.dim()
    index[dim] = slice(start, start + 2 * count - 1, 2)
    return x[tuple(index)]


def _set_pooler(heads: nn.Module) -> None:
    """RoIAlign with a fixed sampling ratio gathers rows of the maps in their own dtype and layout
    (`GatherRoIAlign`); any other pooler (RoIPool, RoIWarp, adaptive sampling) reads fp32 NCHW
    maps (`Fp32RoIPooler`)."""
    if heads.pooler.kind == "roialign" and heads.pooler.sampling_ratio > 0:
        heads.pooler = heads.pooler.as_variant(GatherRoIAlign)
        if heads.res5 is None:  # a box head of fcs reads the channels-last output as it lies
            heads.box_head.read_pixel_rows(heads.resolutions["box"])
        return
    heads.pooler = heads.pooler.as_variant(Fp32RoIPooler)


def _set_mask_tail(heads: nn.Module) -> None:
    """fp32: a mask head that has a faster exact tail ends in it (the FCN head's `MatmulMaskTail`)."""
    head = getattr(heads, "mask_head", None)
    if hasattr(head, "use_fast_tail"):
        head.use_fast_tail()


def fold_norms(model: nn.Module) -> int:
    """Fold each conv -> FrozenBN / eval BN pair into the conv; returns how many were folded."""
    return sum(_fold_pair(parent, conv, norm) for parent, conv, norm in declared_conv_norms(model))


def has_unfolded_norms(model: nn.Module) -> bool:
    """Whether some conv is still followed by a norm `fold_norms` would fold."""
    return any(_foldable(getattr(parent, norm, None)) for parent, _, norm in declared_conv_norms(model))


def _foldable(norm: nn.Module) -> bool:
    return isinstance(norm, FrozenBatchNorm2d) or (isinstance(norm, nn.BatchNorm2d) and not norm.training
                                                   and norm.track_running_stats)


def _fold_pair(parent: nn.Module, conv_name: str, norm_name: str) -> int:
    conv, norm = getattr(parent, conv_name, None), getattr(parent, norm_name, None)
    if not isinstance(conv, nn.Conv2d) or norm is None or not _foldable(norm):
        return 0
    # Computed in float64: the folded conv differs from conv + norm only by fp32 rounding.
    scale = norm.running_var.double().add(norm.eps).rsqrt()
    if norm.weight is not None:
        scale = scale * norm.weight.double()
    shift = -norm.running_mean.double() * scale
    if norm.bias is not None:
        shift = shift + norm.bias.double()
    if conv.bias is not None:
        shift = shift + conv.bias.double() * scale
    dtype = conv.weight.dtype
    conv.weight = nn.Parameter((conv.weight.double() * scale[:, None, None, None]).to(dtype),
                               requires_grad=False)
    conv.bias = nn.Parameter(shift.to(dtype), requires_grad=False)
    setattr(parent, norm_name, nn.Identity())
    return 1


def set_feature_dtype(model: nn.Module, dtype: torch.dtype) -> None:
    """Feature layers to `dtype`; the output layers the heads declare stay fp32. Every layer of
    the RPN and RoI heads casts its input to its own dtype (`CastsInput`: pooled RoIs are fp32,
    features reaching an fp32 output layer are not)."""
    for module in (model.backbone, model.rpn, model.roi_heads):
        module.to(dtype)
    for layer in declared_outputs(model):
        layer.module.float()
    for part in ("rpn", "roi_heads"):
        for name, layer in list(getattr(model, part).named_modules()):
            if type(layer) in (nn.Conv2d, nn.ConvTranspose2d, nn.Linear):
                replace_module(model, f"{part}.{name}", layer_variant(layer, CastsInput))

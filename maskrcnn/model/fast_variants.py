"""The named module variants the fast paths swap into a built model (`prepare_for_inference`,
`prepare_for_training`), so that `print(model)` shows what runs. Each keeps the parameters and
buffers of the module it replaces, under the same state-dict keys.

- `InputFormat`: the backbone's input slot casts the batch to a dtype and memory layout;
- `FrozenNormConv2d` (`FrozenNormSameConv2d`) + `FoldedFrozenBatchNorm2d` (training): conv ->
  FrozenBatchNorm2d as one convolution whose weight and bias take the norm's scale and shift
  at each call; the norm keeps its buffers and passes its input through;
- `Fp32Conv2d` / `Fp32ConvTranspose2d` / `Fp32Linear` (training): an output layer computing in
  fp32 with autocast off;
- `CastConv2d` / `CastConvTranspose2d` / `CastLinear` (bf16 inference): a layer casting its input
  to its own weight's dtype (bf16 body layers, fp32 output layers);
- `PixelRowsFlatten` (inference, box head of fcs after the gather pooler): flattens (N, C, R, R)
  RoI features stored channels-last as (R, R, C) rows, a view instead of a copy; the first fc's
  columns are permuted to match by `pixel_rows_fc`.
The RoI poolers' variants (`GatherRoIAlign`, `SparseRoIAlign`, `Fp32RoIPooler`) are in
ops/poolers.py, the fp32 mask tail (`MatmulMaskTail`) in fast_mask_tail.py.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from .efficientnet_lite import SameConv2d


def as_variant(module: nn.Module, cls: type[nn.Module]) -> nn.Module:
    """A `cls` (a subclass of the module's class) holding the module's parameters, buffers and
    submodules: swapped in for it, it keeps every state-dict key."""
    variant = cls.__new__(cls)
    variant.__dict__.update(module.__dict__)
    return variant


def replace_module(root: nn.Module, name: str, new: nn.Module) -> None:
    """Put `new` at the dotted `name` inside `root`."""
    parent, _, leaf = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, new)


class InputFormat(nn.Module):
    """(B, 3, H, W) images -> the same in `dtype` (None: unchanged) and `memory_format`."""

    def __init__(self, dtype: torch.dtype | None, memory_format: torch.memory_format):
        super().__init__()
        self.dtype, self.memory_format = dtype, memory_format

    def extra_repr(self) -> str:
        """The dtype and memory layout, as `print(model)` shows them."""
        return f"dtype={self.dtype}, memory_format={self.memory_format}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> the same values in `dtype` and `memory_format`."""
        return x.to(dtype=self.dtype or x.dtype, memory_format=self.memory_format)


class FoldedFrozenBatchNorm2d(FrozenBatchNorm2d):
    """A frozen norm folded into the convolution before it (`FrozenNormConv2d`): its buffers
    stay (checkpoints load as before), its forward passes the input through."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> the same tensor: the conv before it applied the norm."""
        return x


class FoldsFrozenNorm:
    """Mixin for a convolution followed by a FrozenBatchNorm2d: it convolves with weight W * s and
    bias (b - m) * s + beta from the norm's current buffers at each call, so W stays the trained
    parameter (its gradient is that of conv -> norm up to rounding) and the norm's elementwise
    pass disappears. Any padding the conv class does (`SameConv2d`) is kept."""

    @classmethod
    def fold(cls, conv: nn.Conv2d, norm: FrozenBatchNorm2d) -> tuple[nn.Conv2d, FoldedFrozenBatchNorm2d]:
        """-> (the conv's variant, the norm's variant), to put where the conv and the norm were."""
        folded = as_variant(norm, FoldedFrozenBatchNorm2d)
        fused = as_variant(conv, FOLDING[type(conv)])
        fused._norm = (folded,)  # a reference, not a submodule: the norm's keys stay where they were
        return fused, folded

    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        norm = self._norm[0]
        scale = norm.weight * (norm.running_var + norm.eps).rsqrt()  # (C,)
        shift = norm.bias - norm.running_mean * scale
        if bias is not None:
            shift = shift + bias * scale
        return super()._conv_forward(x, weight * scale[:, None, None, None], shift)


class FrozenNormConv2d(FoldsFrozenNorm, nn.Conv2d):
    """nn.Conv2d folding the FrozenBatchNorm2d after it (`FoldsFrozenNorm`)."""


class FrozenNormSameConv2d(FoldsFrozenNorm, SameConv2d):
    """SameConv2d (EfficientNet-Lite) folding the FrozenBatchNorm2d after it (`FoldsFrozenNorm`)."""


FOLDING = {nn.Conv2d: FrozenNormConv2d, SameConv2d: FrozenNormSameConv2d}


class RunsInFp32:
    """Mixin: the layer computes in fp32 with autocast off, its input cast to fp32."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (any float dtype) -> the layer's output in fp32, autocast off."""
        with torch.autocast(x.device.type, enabled=False):
            return super().forward(x.float())


class CastsInput:
    """Mixin: the layer casts its input to its own weight's dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x -> the layer's output, x cast to the weight's dtype first."""
        return super().forward(x.to(self.weight.dtype))


class Fp32Conv2d(RunsInFp32, nn.Conv2d):
    """nn.Conv2d computing in fp32 under autocast (`RunsInFp32`)."""


class Fp32ConvTranspose2d(RunsInFp32, nn.ConvTranspose2d):
    """nn.ConvTranspose2d computing in fp32 under autocast (`RunsInFp32`)."""


class Fp32Linear(RunsInFp32, nn.Linear):
    """nn.Linear computing in fp32 under autocast (`RunsInFp32`)."""


class CastConv2d(CastsInput, nn.Conv2d):
    """nn.Conv2d casting its input to its weight's dtype (`CastsInput`)."""


class CastConvTranspose2d(CastsInput, nn.ConvTranspose2d):
    """nn.ConvTranspose2d casting its input to its weight's dtype (`CastsInput`)."""


class CastLinear(CastsInput, nn.Linear):
    """nn.Linear casting its input to its weight's dtype (`CastsInput`)."""


_LAYERS = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)
VARIANTS = {
    RunsInFp32: dict(zip(_LAYERS, (Fp32Conv2d, Fp32ConvTranspose2d, Fp32Linear))),
    CastsInput: dict(zip(_LAYERS, (CastConv2d, CastConvTranspose2d, CastLinear))),
}


def layer_variant(layer: nn.Module, mixin: type) -> nn.Module:
    """`layer` (exactly a Conv2d, ConvTranspose2d or Linear) as its `mixin` variant."""
    return as_variant(layer, VARIANTS[mixin][type(layer)])


class PixelRowsFlatten(nn.Module):
    """(N, C, R, R) -> (N, R R C): the features in (row, column, channel) order, a view of
    channels-last RoI features (the gather pooler's)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, R, R) -> (N, R R C), rows in (y, x, channel) order."""
        return x.permute(0, 2, 3, 1).flatten(1)


def pixel_rows_fc(fc: nn.Linear, channels: int, resolution: int) -> None:
    """The fc's input columns permuted from (C, R, R) to (R, R, C) order, to read `PixelRowsFlatten`
    output: the same sums, in another order."""
    columns = fc.weight.data.view(fc.out_features, channels, resolution, resolution)
    fc.weight.data = columns.permute(0, 2, 3, 1).reshape(fc.out_features, -1).contiguous()

"""The fp32 fast path's end of the FCN mask head: deconv -> ReLU -> 1x1 logits -> the detected
class's logits, as matrix products over pixel rows.

The layers as built cost three full passes over the upsampled (N, D, 2R, 2R) features: the
deconv (whose output interleaves 2 x 2 blocks, a shuffle with 4-byte granularity), a ReLU, and
the 1x1 conv to every class's logits, of which one per RoI is kept. Here:
- with kernel = stride the deconv's output pixels never overlap, so it is one GEMM
  (N h w, C + 1) @ (C + 1, k k D) on the features read as pixel rows (and a column of ones
  for the bias: addmm would first copy the bias into every output row), ReLU in place;
- each RoI's class logit is one (h w k k, D) @ (D,) product with its class's row only;
- only the (N, M, M) result is put back in image order.
Every output is the same sum as the layers' (over C for the deconv, over D for the logit), in
another order: fp32 rounding, judged against float64 in tests/model/test_exactness_float64.py.
"""

from __future__ import annotations

import torch
from torch import nn


class MatmulMaskTail(nn.Module):
    """(N, C, h, w) features of the last mask conv, (N,) labels -> (N, k h, k w) logits of each
    RoI's class (label 0 for a class-agnostic head's single mask)."""

    def __init__(self, deconv: nn.ConvTranspose2d, logits: nn.Conv2d):
        super().__init__()
        if not self.fits(deconv, logits):
            raise ValueError("MatmulMaskTail needs a deconv with kernel = stride, no padding, groups 1 and a bias, "
                             "then a 1x1 conv with a bias")
        c, d, k, _ = deconv.weight.shape
        self.k, self.d = k, d
        weight = deconv.weight.detach().permute(0, 2, 3, 1).reshape(c, k * k * d)  # (C, k k D): row c, col (a, b, d)
        bias = deconv.bias.detach().repeat(k * k)[None]  # (1, k k D), the weight of a column of ones
        self.register_buffer("deconv_weight", torch.cat([weight, bias]).contiguous(), persistent=False)
        self.register_buffer("logits_weight", logits.weight.detach()[:, :, 0, 0].contiguous(), persistent=False)
        self.register_buffer("logits_bias", logits.bias.detach().clone(), persistent=False)  # (K,)

    @staticmethod
    def fits(deconv: nn.Module, logits: nn.Module) -> bool:
        """Whether the layers are what this tail computes: a deconv with kernel = stride (no
        padding, groups 1, a bias), then a 1x1 conv with a bias."""
        return (isinstance(deconv, nn.ConvTranspose2d) and deconv.bias is not None and deconv.groups == 1
                and deconv.kernel_size[0] == deconv.kernel_size[1] == deconv.stride[0] == deconv.stride[1]
                and deconv.padding == (0, 0) and deconv.output_padding == (0, 0) and deconv.dilation == (1, 1)
                and isinstance(logits, nn.Conv2d) and logits.kernel_size == (1, 1) and logits.bias is not None
                and logits.stride == (1, 1) and logits.padding == (0, 0) and logits.groups == 1)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(N, C, h, w) features, (N,) labels -> (N, k h, k w) logits of each RoI's class."""
        n, c, h, w = x.shape
        k, d = self.k, self.d
        rows = x.new_ones((n * h * w, c + 1))  # (N h w, C + 1): pixel rows and a column of ones for the bias
        rows[:, :c].view(n, h, w, c).copy_(x.permute(0, 2, 3, 1))
        up = torch.mm(rows, self.deconv_weight).relu_()  # (N h w, k k D)
        up = up.view(n, h * w * k * k, d)  # per RoI, pixels in (y, x, a, b) order
        bias = self.logits_bias[labels][:, None, None]  # (N, 1, 1)
        logits = torch.baddbmm(bias, up, self.logits_weight[labels][:, :, None])  # (N, h w k k, 1)
        return logits.view(n, h, w, k, k).permute(0, 1, 3, 2, 4).reshape(n, h * k, w * k)  # row y k + a, col x k + b

"""benchmarks/vs_mmdetection.py: the stand-in for mmcv's compiled ops (`mmcv._ext`) gives mmcv's
CPU kernels' results, computed by hand from their formulas (the comparison itself needs
mmdetection installed; see docs/conventions.md)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import vs_mmdetection as vs  # noqa: E402


@pytest.fixture
def ext(monkeypatch):
    monkeypatch.delitem(sys.modules, "mmcv._ext", raising=False)  # restored after the test
    vs.install_mmcv_ext()
    return sys.modules["mmcv._ext"]


def test_nms_suppresses_only_above_the_threshold(ext):
    # mmcv nms_cpu: by descending score, drop j where inter / (area_i + area_j - inter) > thr
    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 5], [0, 0, 10, 6], [20, 20, 30, 30]], dtype=torch.float32)
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    # IoU with box 0: box 1 = 50 / 100 (kept, not > 0.5), box 2 = 60 / 100 (dropped), box 3 = 0
    assert ext.nms(boxes, scores, iou_threshold=0.5, offset=0).tolist() == [0, 1, 3]
    with pytest.raises(NotImplementedError):
        ext.nms(boxes, scores, iou_threshold=0.5, offset=1)


def test_roi_align_forward_averages_bin_samples_in_place(ext):
    # a linear ramp x + 10 y: bilinear samples are exact, so each bin's mean is the ramp at its
    # centre; aligned RoI (1, 2, 5, 6) - 0.5 -> x 0.5..4.5, y 1.5..5.5, 2x2 bins of 2 px
    ys, xs = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
    feature = (xs + 10 * ys)[None, None]
    output = torch.zeros(1, 1, 2, 2)
    ext.roi_align_forward(feature, torch.tensor([[0.0, 1, 2, 5, 6]]), output, torch.zeros(0), torch.zeros(0),
                          aligned_height=2, aligned_width=2, spatial_scale=1.0, sampling_ratio=2, pool_mode=1,
                          aligned=True)  # fmt: skip
    expected = torch.tensor([[1.5 + 25, 3.5 + 25], [1.5 + 45, 3.5 + 45]])
    torch.testing.assert_close(output[0, 0], expected, rtol=0, atol=1e-5)
    with pytest.raises(NotImplementedError):  # max pooling is not torchvision's kernel
        ext.roi_align_forward(feature, torch.tensor([[0.0, 1, 2, 5, 6]]), output, output, output,
                              aligned_height=2, aligned_width=2, spatial_scale=1.0, sampling_ratio=2, pool_mode=0,
                              aligned=True)  # fmt: skip


def test_other_compiled_ops_raise_when_called(ext):
    with pytest.raises(NotImplementedError, match="deform_conv_forward"):
        ext.deform_conv_forward(torch.zeros(1))
    with pytest.raises(AttributeError):
        ext.__wrapped__

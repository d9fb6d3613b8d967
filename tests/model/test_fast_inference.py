"""Norm folding and the bf16 feature path, against the unfolded layers as truth."""

from __future__ import annotations

import copy

import torch
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from maskrcnn.model.detector import build_model
from maskrcnn.model.fast_inference import SeparableMaxPool3x3, fold_norms, prepare_for_inference
from maskrcnn.presets import get_preset


def _randomise_norms(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm2d, FrozenBatchNorm2d)):
            n = m.weight.shape[0]
            m.weight.data = torch.rand(n, generator=g) + 0.5
            m.bias.data = torch.randn(n, generator=g)
            m.running_mean.copy_(torch.randn(n, generator=g))
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)


FOLD_SLACK = 2.0


def test_fold_counts_every_conv_norm_pair_of_resnet50():
    model = build_model(get_preset("maskrcnn_r50_fpn")).eval()
    # stem 1 + 16 bottlenecks x 3 + 4 downsample convs = 53 (v1: no norms outside the trunk)
    assert fold_norms(model) == 53
    assert not any(isinstance(m, (nn.BatchNorm2d, FrozenBatchNorm2d)) for m in model.modules())


def test_folded_backbone_equals_conv_then_norm():
    model = build_model(get_preset("maskrcnn_r50_fpn_v2")).eval()  # BN in FPN too
    _randomise_norms(model)
    folded = copy.deepcopy(model)
    fold_norms(folded)
    x = torch.randn(1, 3, 128, 160, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        truth = copy.deepcopy(model).double().backbone(x.double())  # the referee: conv then norm in float64
        for level, (a, b, t) in enumerate(zip(folded.backbone(x), model.backbone(x), truth)):
            # folding re-rounds each weight once (one fp32 ulp) and adds no sum: the folded maps are
            # no further from float64 than the layers' own fp32 maps, up to FOLD_SLACK (the per-weight
            # rounding compounds through ~50 layers), or within 64 fp32 ulps of the map's scale
            err_folded, err_layers = ((m.double() - t).abs().max().item() for m in (a, b))
            floor = 64 * torch.finfo(torch.float32).eps * t.abs().max().item()
            assert err_folded <= max(FOLD_SLACK * err_layers, floor), (level, err_folded, err_layers)


def test_training_norms_are_not_folded():
    model = build_model(get_preset("maskrcnn_r50_fpn_v2")).train()  # FPN BatchNorm in training mode
    assert fold_norms(model.backbone.fpn) == 0


def test_bf16_path_keeps_detections_close_to_fp32():
    model = build_model(get_preset("maskrcnn_r18_fpn")).eval()
    fp32 = prepare_for_inference(copy.deepcopy(model), "fp32")
    bf16 = prepare_for_inference(copy.deepcopy(model), "bf16")
    image = torch.rand(3, 160, 200, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        feats32 = fp32.backbone(fp32.normalize(image)[None])
        feats16 = bf16.backbone(bf16.normalize(image)[None])
    assert all(f.dtype == torch.bfloat16 for f in feats16)
    for a, b in zip(feats16, feats32):
        rel = (a.float() - b).norm() / b.norm()
        assert rel < 0.02, f"bf16 features differ by {rel:.3f} (relative L2)"
    out = bf16.predict(image)[0]
    assert out.boxes.dtype == torch.float32 and out.masks.dtype == torch.bool


def test_separable_max_pool_equals_torch_max_pool():
    """The fp32 path's stem pool: the same values as MaxPool2d(3, 2, 1) for even and odd sizes."""
    gen = torch.Generator().manual_seed(0)
    for h, w in ((40, 54), (41, 53), (1, 2), (3, 3), (1, 1), (2, 5)):
        x = torch.randn(2, 5, h, w, generator=gen)
        assert torch.equal(SeparableMaxPool3x3()(x), nn.functional.max_pool2d(x, 3, 2, 1))

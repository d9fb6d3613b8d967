"""The head contract (maskrcnn/model/head_contract.py): every head answers `losses` / `predict`,
its declared output layers' rows are (classes x rows per class) as the layer's shape says, and
the fast paths swap modules only (no instance `forward`, no hooks), keeping every state-dict key."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from maskrcnn.config import apply_overrides
from maskrcnn.model.detector import build_model
from maskrcnn.model.fast_inference import fold_norms, has_unfolded_norms, prepare_for_inference
from maskrcnn.model.fast_training import prepare_for_training
from maskrcnn.model.head_contract import declared_conv_norms, declared_outputs
from maskrcnn.presets import get_preset

SMALL = ["model.box.fc_dim=32", "model.mask.conv_dims=[8]", "model.mask.mlp_dims=[16]",
         "model.maskiou.conv_dim=8", "model.maskiou.fc_dim=16", "model.keypoint.conv_dims=[8]"]  # fmt: skip
VARIANTS = {
    "fcn": [],
    "mlp": ["model.mask.head=mlp"],
    "class_agnostic": ["model.mask.class_agnostic=true"],
    "maskiou+keypoint": ["model.maskiou.enabled=true", "model.keypoint.enabled=true"],
}


def _model(overrides):
    cfg = apply_overrides(get_preset("maskrcnn_r18_fpn"), SMALL + overrides)
    torch.manual_seed(0)
    return build_model(cfg)


def _rows(layer: nn.Module) -> int:
    """Output units of a layer: dim 1 of a ConvTranspose weight, dim 0 of any other."""
    return layer.weight.shape[1 if isinstance(layer, nn.ConvTranspose2d) else 0]


@pytest.mark.parametrize("overrides", VARIANTS.values(), ids=VARIANTS.keys())
def test_declared_rows_follow_the_classes_as_the_layers_are_shaped(overrides):
    model = _model(overrides)
    classes, m = model.cfg.model.num_classes, model.cfg.model.mask.resolution
    outputs = {o.name: o for o in declared_outputs(model)}
    expected = {"rpn.head.objectness": None, "rpn.head.deltas": None, "roi_heads.box_head.cls_score": 1,
                "roi_heads.box_head.bbox_pred": 4,
                "roi_heads.mask_head.logits": {"mlp": m * m, "class_agnostic": None}.get(
                    next((k for k, v in VARIANTS.items() if v == overrides), ""), 1)}  # fmt: skip
    if "model.maskiou.enabled=true" in overrides:
        expected |= {"roi_heads.maskiou_head.iou": 1, "roi_heads.keypoint_head.deconv": None}
    assert {name: o.class_rows for name, o in outputs.items()} == expected
    for o in outputs.values():
        if o.class_rows is not None:
            assert _rows(o.module) == classes * o.class_rows, o.name
    for _, head in model.roi_heads.instance_heads() + [("box", model.roi_heads.box_head)]:
        assert callable(head.losses) and callable(head.predict)


def _swapped_only(model: nn.Module) -> None:
    for name, module in model.named_modules():
        assert "forward" not in vars(module), f"{name}: an instance forward"
        assert not module._forward_hooks and not module._forward_pre_hooks, f"{name}: a forward hook"


@pytest.fixture(scope="module")
def every_head():
    return _model(VARIANTS["maskiou+keypoint"])


@pytest.mark.parametrize("mode", ["train", "fp32", "bf16"])
def test_fast_paths_swap_named_modules_and_keep_every_key(mode, every_head):
    model = every_head
    keys = set(model.state_dict())
    if mode == "train":
        fast = prepare_for_training(copy.deepcopy(model).train())
        shown = ["FrozenNormConv2d", "FoldedFrozenBatchNorm2d", "Fp32Linear", "Fp32ConvTranspose2d", "SparseRoIAlign",
                 "InputFormat"]  # fmt: skip
        assert set(fast.state_dict()) == keys
    else:
        fast = prepare_for_inference(copy.deepcopy(model), mode)
        shown = ["GatherRoIAlign", "InputFormat", "PixelRowsFlatten"] + (
            ["MatmulMaskTail", "SeparableMaxPool3x3"] if mode == "fp32" else ["CastLinear", "CastConv2d"])
    _swapped_only(fast)
    text = repr(fast)
    assert all(name in text for name in shown), [name for name in shown if name not in text]


@pytest.mark.parametrize("preset", ["maskrcnn_r50_c4", "maskrcnn_r18_fpn", "maskrcnn_effl0_fpn"])
def test_declared_conv_norm_pairs_cover_every_frozen_norm_and_fold(preset):
    """Each frozen (or eval-mode batch) norm of the trunk (and of C4's per-RoI res5) is declared
    after a conv with its channels, by the module that owns both; folding them all leaves none."""
    torch.manual_seed(0)
    model = build_model(get_preset(preset)).eval()
    pairs = declared_conv_norms(model)
    norms = {id(m) for m in model.modules() if isinstance(m, (FrozenBatchNorm2d, nn.BatchNorm2d))}
    assert norms and {id(getattr(p, n)) for p, _, n in pairs} >= norms
    for parent, conv, norm in pairs:  # (GroupNorm pairs are declared too; folding skips them)
        if id(getattr(parent, norm)) in norms:
            assert getattr(parent, conv).out_channels == len(getattr(parent, norm).running_mean)
    assert fold_norms(model) == len(norms) and not has_unfolded_norms(model)

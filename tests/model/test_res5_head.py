"""The C4 model (paper Fig. 4 left): hand-computed shapes at every stage, and one training step's
losses against a functional re-statement of the C4 forward (torch.nn.functional + torchvision.ops)
on the same weights."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import box_iou, nms, roi_align

from maskrcnn.config import apply_overrides
from maskrcnn.model.detector import build_model
from maskrcnn.presets import get_preset

R50_BLOCKS = {"layer1": 3, "layer2": 4, "layer3": 6, "layer4": 3}


def _c4(*overrides: str):
    cfg = apply_overrides(get_preset("maskrcnn_r50_c4"), ["model.num_classes=3", "model.class_names=[]",
                                                          "model.category_ids=[]", *overrides])
    torch.manual_seed(0)
    return build_model(cfg)


@pytest.fixture(scope="module")
def model():
    """ResNet-50-C4 at 128 x 160 (no resize, no padding). Every sampled set is all candidates
    (batch sizes above their counts), so random sampling plays no part in the losses."""
    model = _c4("input.min_size=[128]", "input.max_size=160", "model.rpn.post_nms_topk_train=16",
                "model.rpn.batch_size_per_image=100000", "model.box.batch_size_per_image=100000",
                "model.box.score_thresh=0.0", "model.rpn.post_nms_topk_test=6", "model.box.detections_per_img=4")
    with torch.no_grad():  # trained-like spreads: unit-variance activations, not exploding ones
        for name, p in model.named_parameters():
            if name.endswith("weight") and p.dim() > 1:
                p.normal_(0, math.sqrt(1.0 / p[0].numel()), generator=torch.Generator().manual_seed(len(name)))
    return model


def _scene(h: int, w: int):
    image = torch.rand(3, h, w, generator=torch.Generator().manual_seed(0))
    masks = torch.zeros(2, h, w, dtype=torch.uint8)
    masks[0, 10:60, 20:90] = 1
    masks[1, 50:h - 8, 70:w - 10] = 1
    boxes = torch.tensor([[20.0, 10, 90, 60], [70, 50, w - 10, h - 8]])
    return image, {"boxes": boxes, "labels": torch.tensor([1, 2]), "masks": masks}


def test_stage_shapes_by_hand(model):
    model.eval()
    image, _ = _scene(128, 160)
    with torch.no_grad():
        batch, _ = model.preprocess([image], None, None)
        assert batch.tensors.shape == (1, 3, 128, 160)
        (c4,) = model.backbone(batch.tensors)
        assert c4.shape == (1, 1024, 128 // 16, 160 // 16)  # conv4 of ResNet-50: stride 16
        # 5 sizes x 3 ratios at every cell of the one map
        cell = model.rpn.anchor_generator.cell_anchors[0]
        assert cell.shape == (15, 4)
        side = cell[:, 2:] - cell[:, :2]  # (15, 2) w, h
        # size 32, ratio 0.5 (h / w): w = 32 / sqrt(0.5) = 45.25, h = 22.63, each half rounded
        assert cell[0].tolist() == [-23.0, -11.0, 23.0, 11.0]
        assert side[1::3].prod(1).tolist() == [32.0**2, 64.0**2, 128.0**2, 256.0**2, 512.0**2]  # ratio 1
        (anchors,) = model.rpn.anchor_generator((128, 160), [c4])
        assert anchors.shape == (8 * 10 * 15, 4)
        logits, deltas = model.rpn.head([c4])
        assert logits[0].shape == (1, 8 * 10 * 15) and deltas[0].shape == (1, 8 * 10 * 15, 4)
        heads = model.roi_heads
        boxes = [torch.tensor([[0.0, 0, 64, 64], [10, 20, 140, 90]])]
        pooled = heads.pooler([c4], boxes, 14)
        assert pooled.shape == (2, 1024, 14, 14)
        res5 = heads.res5(pooled)
        assert res5.shape == (2, 2048, 7, 7)
        logits, deltas = heads.box_head(res5)  # average-pooled 2048-d
        assert heads.box_head.cls_score.in_features == 2048
        assert logits.shape == (2, 3) and deltas.shape == (2, 12)
        mask_logits = heads.mask_head(res5)  # deconv 2x2/2 -> 14 x 14 x 256 -> 1x1 conv
        assert heads.mask_head.deconv.out_channels == 256
        assert mask_logits.shape == (2, 3, 14, 14)
        detections = model.detect(batch)
        assert detections[0]["mask_probs"].shape == (4, 14, 14)
        found = model.postprocess(detections, batch.image_sizes, [(128, 160)], keep_mask_probs=False)[0]
    assert len(found) == 4 and found.masks.shape == (4, 128, 160)


def test_mask_resolution_switch_on_c4():
    """model.mask.resolution=28: the deconv upsamples res5's 7 x 7 by 4 (kernel 4, stride 4)."""
    model = _c4("model.mask.resolution=28")
    deconv = model.roi_heads.mask_head.deconv
    assert deconv.kernel_size == (4, 4) and deconv.stride == (4, 4)
    assert model.roi_heads.mask_head(torch.zeros(2, 2048, 7, 7)).shape == (2, 3, 28, 28)


# -- the functional re-statement ----------------------------------------------------------------
def _frozen_bn(x, sd, name, eps=1e-5):
    scale = sd[f"{name}.weight"] * (sd[f"{name}.running_var"] + eps).rsqrt()
    shift = sd[f"{name}.bias"] - sd[f"{name}.running_mean"] * scale
    return x * scale[None, :, None, None] + shift[None, :, None, None]


def _bottleneck(x, sd, name, stride):
    out = F.relu(_frozen_bn(F.conv2d(x, sd[f"{name}.conv1.weight"]), sd, f"{name}.bn1"))
    out = F.relu(_frozen_bn(F.conv2d(out, sd[f"{name}.conv2.weight"], stride=stride, padding=1), sd, f"{name}.bn2"))
    out = _frozen_bn(F.conv2d(out, sd[f"{name}.conv3.weight"]), sd, f"{name}.bn3")
    if f"{name}.downsample.0.weight" in sd:
        x = _frozen_bn(F.conv2d(x, sd[f"{name}.downsample.0.weight"], stride=stride), sd, f"{name}.downsample.1")
    return F.relu(out + x)


def _stage(x, sd, prefix, blocks, stride):
    for i in range(blocks):
        x = _bottleneck(x, sd, f"{prefix}.{i}", stride if i == 0 else 1)
    return x


def _encode(gt, ref, weights):
    wx, wy, ww, wh = weights
    rw, rh = ref[:, 2] - ref[:, 0], ref[:, 3] - ref[:, 1]
    gw, gh = gt[:, 2] - gt[:, 0], gt[:, 3] - gt[:, 1]
    dx = wx * ((gt[:, 0] + gw / 2) - (ref[:, 0] + rw / 2)) / rw
    dy = wy * ((gt[:, 1] + gh / 2) - (ref[:, 1] + rh / 2)) / rh
    return torch.stack([dx, dy, ww * torch.log(gw / rw), wh * torch.log(gh / rh)], 1)


def _decode(d, ref):
    w, h = ref[:, 2] - ref[:, 0], ref[:, 3] - ref[:, 1]
    cx, cy = ref[:, 0] + w / 2 + d[:, 0] * w, ref[:, 1] + h / 2 + d[:, 1] * h
    hw = torch.exp(d[:, 2].clamp(max=math.log(1000 / 16))) * w / 2
    hh = torch.exp(d[:, 3].clamp(max=math.log(1000 / 16))) * h / 2
    return torch.stack([cx - hw, cy - hh, cx + hw, cy + hh], 1)


def _smooth_l1(a, b, beta=1 / 9):
    d = (a - b).abs()
    return torch.where(d < beta, 0.5 * d**2 / beta, d - 0.5 * beta).sum()


def _c4_losses(sd, image, target, cfg):
    """The C4 training forward of the `model` fixture written out."""
    mean, std = torch.tensor(cfg.input.pixel_mean)[:, None, None], torch.tensor(cfg.input.pixel_std)[:, None, None]
    x = ((image - mean) / std)[None]  # 128 x 160: min_size 128, max_size 160 -> no resize, no padding
    x = F.relu(_frozen_bn(F.conv2d(x, sd["backbone.trunk.conv1.weight"], stride=2, padding=3), sd, "backbone.trunk.bn1"))
    x = F.max_pool2d(x, 3, 2, 1)
    for i, stage in enumerate(("layer1", "layer2", "layer3")):
        x = _stage(x, sd, f"backbone.trunk.{stage}", R50_BLOCKS[stage], 1 if i == 0 else 2)
    c4 = x  # (1, 1024, 8, 10)
    # RPN: anchors of 5 sizes x 3 ratios (h / w), size-major, centred on each cell's corner
    cells = []
    for size in (32, 64, 128, 256, 512):
        for ratio in (0.5, 1.0, 2.0):
            w, h = size / math.sqrt(ratio), size * math.sqrt(ratio)
            cells.append([round(-w / 2), round(-h / 2), round(w / 2), round(h / 2)])
    ys, xs = torch.meshgrid(torch.arange(8) * 16.0, torch.arange(10) * 16.0, indexing="ij")
    shifts = torch.stack([xs, ys, xs, ys], -1).reshape(-1, 1, 4)
    anchors = (shifts + torch.tensor(cells, dtype=torch.float32)[None]).reshape(-1, 4)  # (1200, 4)
    t = F.relu(F.conv2d(c4, sd["rpn.head.convs.0.conv.weight"], sd["rpn.head.convs.0.conv.bias"], padding=1))
    obj = F.conv2d(t, sd["rpn.head.objectness.weight"], sd["rpn.head.objectness.bias"])[0]  # (15, 8, 10)
    obj = obj.permute(1, 2, 0).reshape(-1)
    reg = F.conv2d(t, sd["rpn.head.deltas.weight"], sd["rpn.head.deltas.bias"])[0]
    reg = reg.view(15, 4, 8, 10).permute(2, 3, 0, 1).reshape(-1, 4)
    gt, labels_gt = target["boxes"], target["labels"]
    iou = box_iou(gt, anchors)  # (2, 1200)
    best, which = iou.max(0)
    label = torch.where(best >= 0.7, 1.0, torch.where(best < 0.3, 0.0, -1.0))
    label[torch.where(iou == iou.max(1, keepdim=True).values)[1]] = 1.0  # each GT's best anchors
    sampled, pos = label >= 0, label == 1
    rpn_obj = F.binary_cross_entropy_with_logits(obj[sampled], label[sampled])
    rpn_box = _smooth_l1(reg[pos], _encode(gt[which[pos]], anchors[pos], (1, 1, 1, 1))) / sampled.sum()
    # proposals: decode, clip to 128 x 160, NMS 0.7 over all 1200, the best 16
    props = _decode(reg.detach(), anchors)
    props = torch.stack([props[:, 0].clamp(0, 160), props[:, 1].clamp(0, 128),
                         props[:, 2].clamp(0, 160), props[:, 3].clamp(0, 128)], 1)
    scores = obj.detach().sigmoid()
    ok = ((props[:, 2] - props[:, 0]) >= 1e-3) & ((props[:, 3] - props[:, 1]) >= 1e-3)
    props, scores = props[ok], scores[ok]
    props = props[nms(props, scores, 0.7)[:16]]
    # RoIs: proposals + GT, IoU >= 0.5 positive; pooled 14 x 14 from C4, res5, average
    rois = torch.cat([props, gt])
    best, which = box_iou(gt, rois).max(0)
    labels = torch.where(best >= 0.5, labels_gt[which], 0)
    pooled = roi_align(c4, [rois], 14, 1 / 16, 2, False)
    res5 = _stage(pooled, sd, "roi_heads.res5", 3, 2)  # (S, 2048, 7, 7)
    feat = res5.mean((2, 3))
    cls = F.linear(feat, sd["roi_heads.box_head.cls_score.weight"], sd["roi_heads.box_head.cls_score.bias"])
    box = F.linear(feat, sd["roi_heads.box_head.bbox_pred.weight"], sd["roi_heads.box_head.bbox_pred.bias"])
    pos = torch.where(labels > 0)[0]
    box = box.view(len(rois), -1, 4)[pos, labels[pos]]
    loss_cls = F.cross_entropy(cls, labels)
    loss_box = _smooth_l1(box, _encode(gt[which[pos]], rois[pos], (10, 10, 5, 5))) / len(rois)
    # mask: positives' res5 output -> deconv 2x2/2 -> ReLU -> 1x1 conv; the GT class's 14 x 14 mask
    m = F.relu(F.conv_transpose2d(res5[pos], sd["roi_heads.mask_head.deconv.weight"],
                                  sd["roi_heads.mask_head.deconv.bias"], stride=2))
    m = F.conv2d(m, sd["roi_heads.mask_head.logits.weight"], sd["roi_heads.mask_head.logits.bias"])
    m = m[torch.arange(len(pos)), labels[pos]]  # (P, 14, 14)
    crops = roi_align(target["masks"][:, None].float(), torch.cat([which[pos, None].float(), rois[pos]], 1),
                      14, 1.0, 0, False)[:, 0]
    loss_mask = F.binary_cross_entropy_with_logits(m, crops)
    return {"loss_objectness": rpn_obj, "loss_rpn_box_reg": rpn_box, "loss_classifier": loss_cls,
            "loss_box_reg": loss_box, "loss_mask": loss_mask}


def test_training_step_equals_functional_restatement(model):
    image, target = _scene(128, 160)
    losses = model.train()([image], [dict(target)])
    sd = {k: v.detach() for k, v in model.state_dict().items()}
    expected = _c4_losses(sd, image, target, model.cfg)
    assert set(losses) == set(expected)
    for name, value in expected.items():
        assert value > 0, name
        # the restatement calls the model's operations in its order: equal bit for bit (0.0 seen);
        # 16 ulps of margin, room for a 16-term sum in another order, far below a wrong term
        assert losses[name].item() == pytest.approx(value.item(), rel=16 * torch.finfo(torch.float32).eps / 2), name

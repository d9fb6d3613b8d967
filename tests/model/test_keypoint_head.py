"""Keypoint head pieces against hand-computed values and torchvision's decoding; a tiny model with
boxes, masks, MaskIoU and keypoints trains and predicts from config alone."""

import math

import pytest
import torch
from torchvision.models.detection.roi_heads import heatmaps_to_keypoints

from maskrcnn.model.detector import build_model
from maskrcnn.model.keypoint_head import decode_keypoints, keypoint_loss, keypoint_targets
from maskrcnn.presets import get_preset

M = 56


def test_targets_by_hand():
    """Box 56x56 px at (10, 20): one cell per pixel. Far edge -> last cell; outside or
    unlabelled (v=0) -> not valid."""
    box = torch.tensor([[10.0, 20.0, 66.0, 76.0]])
    kps = torch.tensor([[[10.0, 20.0, 2], [65.9, 75.9, 2], [66.0, 76.0, 1], [30.5, 40.2, 1],
                         [9.9, 30.0, 2], [30.0, 77.0, 2], [30.0, 40.0, 0]]])
    index, valid = keypoint_targets(kps, box, M)
    assert valid.tolist() == [[True, True, True, True, False, False, False]]
    assert index[valid].tolist() == [0, 55 * M + 55, 55 * M + 55, 20 * M + 20]


def test_targets_scale_with_the_box():
    """A 112x112 box: two pixels per cell, so (51, 7) lands in column 25, row 3."""
    index, valid = keypoint_targets(torch.tensor([[[51.0, 7.0, 2]]]), torch.tensor([[0.0, 0, 112, 112]]), M)
    assert valid.item() and index.item() == 3 * M + 25


def test_loss_by_hand():
    """One valid keypoint whose target cell has logit a, the rest 0: loss = log(e^a + M² - 1) - a.
    Invalid keypoints (other RoI: unlabelled) do not dilute the mean."""
    logits = torch.zeros(2, 2, M, M)
    logits[0, 1, 3, 4] = 2.0
    boxes = [torch.tensor([[0.0, 0, 56, 56], [0.0, 0, 56, 56]])]
    gt = [torch.tensor([[[1.0, 1.0, 0], [4.5, 3.5, 2]], [[9.0, 9.0, 0], [9.0, 9.0, 0]]])]
    loss = keypoint_loss(logits, boxes, [torch.tensor([0, 1])], gt)
    assert loss.item() == pytest.approx(math.log(math.exp(2.0) + M * M - 1) - 2.0, rel=1e-6)


def test_loss_without_valid_keypoints_is_zero_with_gradient():
    logits = torch.randn(1, 2, M, M, requires_grad=True)
    gt = [torch.zeros(1, 2, 3)]
    loss = keypoint_loss(logits, [torch.tensor([[0.0, 0, 10, 10]])], [torch.tensor([0])], gt)
    loss.backward()
    assert loss.item() == 0 and logits.grad.abs().sum() == 0


def test_decode_by_hand():
    """A 56x56 px box needs no resampling: the peak cell (row 7, column 30) maps to its centre."""
    logits = torch.zeros(1, 1, M, M)
    logits[0, 0, 7, 30] = 5.0
    out = decode_keypoints(logits, torch.tensor([[100.0, 200.0, 156.0, 256.0]]))
    assert out[0, 0].tolist() == pytest.approx([130.5, 207.5, 5.0])


def test_decode_matches_torchvision():
    """Random smooth heatmaps in boxes from sub-pixel to 1100 px (the largest alone exceeds the
    decoding chunk budget): keypoints and scores within their fp32 rounding bounds (below)."""
    g = torch.Generator().manual_seed(0)
    low = torch.randn(40, 17, 28, 28, generator=g) * 3
    logits = torch.nn.functional.interpolate(low, scale_factor=2.0, mode="bilinear")
    xy = torch.rand(40, 2, generator=g) * 300
    wh = torch.rand(40, 2, generator=g) ** 3 * 300 + 0.3
    wh[0] = torch.tensor([1100.0, 1000.3])
    boxes = torch.cat([xy, xy + wh], dim=1)
    ref_xy, ref_scores = heatmaps_to_keypoints(logits, boxes)
    ours = decode_keypoints(logits, boxes)
    # Same algorithm, other kernels (separable matrix products vs F.interpolate). Both map the argmax
    # cell back as (col + 0.5) * w / ceil(w) + x0 in fp32: four roundings, each of at most u X (X the
    # largest coordinate), so 8 u X apart (a flipped argmax moves a whole output pixel, >= 0.3
    # px here). A score is a 4 x 4-tap bicubic sample (Keys, a = -0.75) of an S x S map: its
    # position (<= S cells) rounds by 3 u S per axis, times the interpolant's slope along it
    # (<= 3 * 1.375 M: per axis the kernel's |derivative| sums to <= 3 and its |weights| to
    # <= 1.375; M = max |logit|), and the 16 taps (|weights| summing to <= 1.375**2 < 1.9) round by
    # 10 u * 1.9 M: each path within u M (2 * 3 S * 4.125 + 19), twice that apart.
    u, size, peak = torch.finfo(torch.float32).eps / 2, logits.shape[-1], logits.abs().max().item()
    assert (ours[..., :2] - ref_xy[..., :2]).abs().max() <= 8 * u * boxes.abs().max()
    assert (ours[..., 2] - ref_scores).abs().max() <= 2 * u * peak * (2 * 3 * size * 4.125 + 19)
    assert decode_keypoints(logits[:0], boxes[:0]).shape == (0, 17, 3)


@pytest.fixture(scope="module")
def tiny():
    """ResNet-18 boxes + masks + MaskIoU + keypoints, small input and a slim keypoint head."""
    cfg = get_preset("maskrcnn_keypoint_r50_fpn")
    cfg.model.backbone.depth = 18
    cfg.model.maskiou.enabled = True
    cfg.model.keypoint.conv_dims = (64, 64)
    cfg.model.box.batch_size_per_image, cfg.model.box.detections_per_img = 64, 10
    cfg.input.min_size, cfg.input.max_size = (160,), 256
    torch.manual_seed(0)
    return build_model(cfg)


def test_all_heads_train_and_predict_together(tiny):
    image = torch.rand(3, 120, 200)
    target = {"boxes": torch.tensor([[20.0, 10, 90, 110], [110, 30, 190, 100]]),
              "labels": torch.tensor([1, 1]), "masks": torch.zeros(2, 120, 200, dtype=torch.uint8),
              "keypoints": torch.tensor([[[50.0, 40, 2]] * 17, [[150.0, 60, 1]] * 17])}
    target["masks"][0, 10:110, 20:90] = 1
    target["masks"][1, 30:100, 110:190] = 1
    losses = tiny.train()(([image]), [target])
    assert {"loss_mask", "loss_maskiou", "loss_keypoint"} <= set(losses)
    assert losses["loss_keypoint"].item() > 0 and all(torch.isfinite(v) for v in losses.values())
    found = tiny.predict(image)[0]
    assert len(found) > 0
    assert found.keypoints.shape == (len(found), 17, 3) and found.masks.shape[1:] == (120, 200)
    assert found.has("mask_scores")
    # decoded keypoints lie inside their (input-size) boxes
    x, y = found.keypoints[..., 0], found.keypoints[..., 1]
    b = found.boxes[:, None]
    assert ((x >= b[..., 0] - 1e-3) & (x <= b[..., 2] + 1) & (y >= b[..., 1] - 1e-3) & (y <= b[..., 3] + 1)).all()

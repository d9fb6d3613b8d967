"""MaskIoU head (Mask Scoring R-CNN): targets on hand-computed cases, loss, rescoring, model wiring."""

import json

import pytest
import torch

from maskrcnn.config import apply_overrides
from maskrcnn.evaluation.evaluator import instances_to_results, task_view
from maskrcnn.errors import ConfigError
from maskrcnn.model.detector import build_model
from maskrcnn.model.maskiou_head import (
    MaskIoUHead,
    area_inside_fraction,
    mask_scores,
    maskiou_loss,
    maskiou_targets,
)
from maskrcnn.ops.masks import mask_targets
from maskrcnn.presets import get_preset


def _square_logits(rows: slice, cols: slice, size: int = 28) -> torch.Tensor:
    logits = torch.full((size, size), -5.0)
    logits[rows, cols] = 5.0
    return logits


def test_targets_hand_computed():
    """4x4 GT crop of 4 pixels; IoU = overlap / (pred + gt_full - overlap)."""
    gt = torch.zeros(4, 4, 4)
    gt[:, :2, :2] = 1  # 4 pixels in every case
    pred = torch.full((4, 4, 4), -3.0)
    pred[0, :2, :2] = 3  # exact, instance wholly inside: 4 / (4 + 4 - 4) = 1
    pred[1, :2, :2] = 3  # exact, half the instance outside the RoI: 4 / (4 + 8 - 4) = 0.5
    pred[2, :2, :3] = 3  # 6 predicted, overlap 4: 4 / (6 + 4 - 4) = 2/3
    # pred[3] empty: 0 / (0 + 4 - 0) = 0
    fraction = torch.tensor([1.0, 0.5, 1.0, 1.0])
    expected = torch.tensor([1.0, 0.5, 2 / 3, 0.0])
    torch.testing.assert_close(maskiou_targets(pred, gt, fraction), expected)


def test_targets_binarise_at_half():
    """Probability exactly 0.5 (logit 0) is background, as mmdetection's `> 0.5`; soft GT crops
    (bilinear edges) count from 0.5."""
    gt = torch.tensor([[[0.5, 0.49]]])
    pred = torch.tensor([[[0.0, 1.0]]])  # -> [0, 1]; gt -> [1, 0]: no overlap
    assert maskiou_targets(pred, gt, torch.ones(1)).item() == 0.0


def test_area_inside_fraction_hand_computed():
    """Pixel i sits at coordinate i (the RoIAlign convention of the GT crops): inside iff
    x1 <= i <= x2. Instance: columns 0..9, rows 0..3 of a 4 x 20 image (40 pixels)."""
    masks = torch.zeros(2, 4, 20, dtype=torch.uint8)
    masks[0, :, :10] = 1  # masks[1] stays empty
    boxes = torch.tensor([
        [5.0, 0.0, 15.0, 3.0],  # columns 5..9 of 0..9 inside: 0.5
        [4.6, 0.0, 15.0, 3.0],  # columns 5..9: 0.5
        [4.0, 0.0, 15.0, 3.0],  # columns 4..9: 0.6
        [5.0, 1.0, 15.0, 2.5],  # columns 5..9, rows 1..2: 10 / 40
        [-3.0, -3.0, 30.0, 9.0],  # beyond the image: everything, 1
        [12.0, 0.0, 15.0, 3.0],  # beside the instance: 0
        [5.0, 0.0, 15.0, 3.0],  # empty GT mask: 0, not NaN
    ])  # fmt: skip
    matched = torch.tensor([0, 0, 0, 0, 0, 0, 1])
    expected = torch.tensor([0.5, 0.5, 0.6, 0.25, 1.0, 0.0, 0.0])
    torch.testing.assert_close(area_inside_fraction(masks, boxes, matched), expected)


def test_train_targets_instance_half_inside_proposal():
    """GT: columns 0..27, rows 8..36 of a 48 x 48 image. Proposal [13.25, 8, 41.25, 36] (28 x 28)
    samples the crop's column j at x = 14 + j - 0.25, so crop column j is on iff pixel 14 + j is:
    columns 0..13 of the crop, 14 x 28 = 392 pixels, and 14 of the instance's 28 columns (all its
    rows) lie inside the proposal. So the instance's full area is 784 crop pixels."""
    masks = torch.zeros(1, 48, 48, dtype=torch.uint8)
    masks[0, 8:37, :28] = 1
    box = torch.tensor([[13.25, 8.0, 41.25, 36.0]])
    match = torch.tensor([0])
    exact = _square_logits(slice(None), slice(0, 14))  # the in-proposal half, exactly
    everything = _square_logits(slice(None), slice(None))  # 784 px, overlap 392
    empty = torch.full((28, 28), -5.0)
    logits = torch.stack([exact, everything, empty])  # (3, 28, 28)
    boxes, matched = box.repeat(3, 1), match.repeat(3)
    crops = mask_targets(masks, boxes, matched, 28)  # the mask head's targets, which it shares
    targets = maskiou_targets(logits, crops, area_inside_fraction(masks, boxes, matched))
    # exact: 392 / (392 + 784 - 392) = 0.5, not the 1.0 an uncorrected crop would give;
    # everything: 392 / (784 + 784 - 392) = 1/3; empty: 0.
    torch.testing.assert_close(targets, torch.tensor([0.5, 1 / 3, 0.0]))


def test_loss_and_scores_hand_computed():
    iou_pred = torch.tensor([[0.0, 0.2, 0.9], [0.0, 0.5, 0.1]], requires_grad=True)
    labels = torch.tensor([2, 1])
    loss = maskiou_loss(iou_pred, labels, torch.tensor([1.0, 0.5]))
    torch.testing.assert_close(loss, torch.tensor(((0.9 - 1.0) ** 2 + 0.0) / 2))
    loss.backward()  # only the GT class's output learns
    assert iou_pred.grad[:, 0].eq(0).all() and iou_pred.grad[0, 1] == 0 and iou_pred.grad[1, 2] == 0
    empty = maskiou_loss(iou_pred[:0], labels[:0], torch.zeros(0))
    assert empty.item() == 0.0 and empty.requires_grad
    scores = mask_scores(iou_pred.detach(), labels, torch.tensor([0.8, 0.6]))
    torch.testing.assert_close(scores, torch.tensor([0.8 * 0.9, 0.6 * 0.5]))


def test_head_architecture():
    """Paper / mmdetection: 257-channel input, 4 convs (the last stride 2), 2 fc 1024, K+1 IoUs."""
    cfg = get_preset("msrcnn_r50_fpn").model
    head = MaskIoUHead(cfg.maskiou, 256, cfg.num_classes)
    shapes = {k: tuple(v.shape) for k, v in head.state_dict().items()}
    assert shapes["convs.0.weight"] == (256, 257, 3, 3) and shapes["convs.3.weight"] == (256, 256, 3, 3)
    assert [c.stride for c in head.convs] == [(1, 1)] * 3 + [(2, 2)]
    assert shapes["fcs.0.weight"] == (1024, 256 * 7 * 7) and shapes["fcs.1.weight"] == (1024, 1024)
    assert shapes["iou.weight"] == (81, 1024)
    assert head(torch.randn(3, 256, 14, 14), torch.randn(3, 28, 28)).shape == (3, 81)


def test_head_sees_the_max_pooled_mask():
    """Changing one mask logit inside a 2x2 pooling window whose max it does not set changes
    nothing; raising the window's max does."""
    cfg = get_preset("msrcnn_r50_fpn").model.maskiou
    cfg.conv_dim, cfg.fc_dim = 8, 16
    torch.manual_seed(0)
    head = MaskIoUHead(cfg, 4, 3)
    feats, mask = torch.randn(1, 4, 14, 14), torch.zeros(1, 28, 28)
    mask[0, 0, 0] = 2.0  # window (0, 0) max
    base = head(feats, mask)
    lower = mask.clone()
    lower[0, 1, 1] = 1.0
    torch.testing.assert_close(head(feats, lower), base)
    higher = mask.clone()
    higher[0, 1, 1] = 3.0
    assert not torch.allclose(head(feats, higher), base)


# -- wiring into the model ----------------------------------------------------------------------

TINY = [
    "model.num_classes=3", "model.class_names=[]", "model.category_ids=[]",
    "input.min_size=[96]", "input.max_size=96", "model.backbone.fpn_channels=32",
    "model.rpn.post_nms_topk_test=50", "model.rpn.post_nms_topk_train=50",
    "model.box.fc_dim=32", "model.box.batch_size_per_image=32", "model.box.detections_per_img=10",
    "model.box.score_thresh=0.0", "model.mask.conv_dims=[16]",
    "model.maskiou.conv_dim=8", "model.maskiou.fc_dim=16",
]  # fmt: skip


def _tiny(maskiou: bool):
    cfg = apply_overrides(get_preset("maskrcnn_r18_fpn"), TINY + [f"model.maskiou.enabled={str(maskiou).lower()}"])
    torch.manual_seed(0)
    return build_model(cfg)


def _scene():
    image = torch.rand(3, 96, 96, generator=torch.Generator().manual_seed(0))
    masks = torch.zeros(2, 96, 96, dtype=torch.uint8)
    masks[0, 10:40, 10:50] = 1
    masks[1, 50:90, 40:80] = 1
    target = {"boxes": torch.tensor([[10.0, 10, 50, 40], [40, 50, 80, 90]]), "labels": torch.tensor([1, 2]),
              "masks": masks}  # fmt: skip
    return image, target


def test_one_field_switches_the_head_on():
    off, on = _tiny(False), _tiny(True)
    assert not any("maskiou" in k for k in off.state_dict())
    extra = {k for k in on.state_dict()} - {k for k in off.state_dict()}
    assert extra and all(k.startswith("roi_heads.maskiou_head.") for k in extra)
    image, target = _scene()
    assert "loss_maskiou" not in off.train()([image], [target])
    losses = on.train()([image], [target])
    assert torch.isfinite(losses["loss_maskiou"])
    losses["loss_maskiou"].backward()
    assert on.roi_heads.maskiou_head.iou.weight.grad.abs().sum() > 0
    assert not off.predict(image)[0].has("mask_scores")


def test_inference_mask_scores_are_score_times_iou_of_predicted_class():
    """With the last layer's weights zeroed, the predicted IoU of class c is its bias c."""
    model = _tiny(True)
    model.cfg.model.box.detections_per_img = 100  # so that both classes are detected
    iou = model.roi_heads.maskiou_head.iou
    with torch.no_grad():
        iou.weight.zero_()
        iou.bias.copy_(torch.tensor([0.0, 0.25, 0.75]))
    inst = model.predict(_scene()[0])[0]
    assert set(inst.labels.tolist()) == {1, 2}
    torch.testing.assert_close(inst.mask_scores, inst.scores * iou.bias.detach()[inst.labels])
    results = instances_to_results(inst, image_id=1)
    segm, bbox = task_view(results, "segm"), task_view(results, "bbox")
    assert [r["score"] for r in segm] == pytest.approx(inst.mask_scores.tolist())
    assert [r["score"] for r in bbox] == pytest.approx(inst.scores.tolist())


def test_maskiou_without_mask_head_is_a_config_error():
    cfg = apply_overrides(get_preset("maskrcnn_r18_fpn"), ["model.mask.enabled=false", "model.maskiou.enabled=true"])
    with pytest.raises(ConfigError, match="model.maskiou.enabled needs model.mask.enabled"):
        build_model(cfg)


def test_train_and_eval_commands_with_the_one_field(synth_ann, tmp_path):
    """`maskrcnn train --set model.maskiou.enabled=true` learns the head; `maskrcnn eval` of its
    checkpoint writes segm results ranked by `mask_score` = box score x predicted IoU."""
    from maskrcnn.cli import main
    from maskrcnn.training.checkpoint import Checkpointer

    images, run = synth_ann.parent / "images", tmp_path / "run"
    small = [o for o in TINY if not o.startswith(("model.num_classes", "model.class_names", "model.category_ids"))]
    assert main(["train", "--model", "maskrcnn_r18_fpn", "--data", str(synth_ann), "--images", str(images),
                 "--out", str(run), "--set", *small, "model.maskiou.enabled=true", "solver.max_iter=2",
                 "solver.ims_per_batch=2", "solver.warmup_iters=1", "data.num_workers=0"]) == 0  # fmt: skip
    weights = Checkpointer(run, 1).last()
    assert main(["eval", "--model", "maskrcnn_r18_fpn", "--weights", str(weights), "--data", str(synth_ann),
                 "--images", str(images), "--out", str(tmp_path / "eval")]) == 0  # fmt: skip
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert results and all(0 <= r["score"] <= 1 and "mask_score" in r for r in results)
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert "segm/AP" in metrics and "bbox/AP" in metrics

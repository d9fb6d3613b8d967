"""Test-time augmentation (maskrcnn/tta.py): merging checked on hand-built detections; the view
geometry checked with an exactly mirror- and scale-equivariant stand-in detector inside a real
MaskRCNN (its own preprocessing, pasting and postprocessing); identity with plain inference for
one unflipped view, with MaskIoU and keypoints; the --tta option."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
from scipy import ndimage
from torchvision.ops import roi_align

import maskrcnn
from maskrcnn.config import BoxHeadConfig
from maskrcnn.tta import _merge, vote


def _dets(boxes, scores, labels):
    return {"boxes": torch.tensor(boxes, dtype=torch.float32), "scores": torch.tensor(scores),
            "labels": torch.tensor(labels)}


def test_merge_is_per_class_nms_over_the_union_then_top_k():
    cfg = BoxHeadConfig(nms_thresh=0.5, detections_per_img=3)
    view_a = _dets([[0, 0, 10, 10], [20, 20, 30, 30]], [0.9, 0.5], [1, 1])
    view_b = _dets([[1, 0, 11, 10], [0, 0, 10, 10], [40, 40, 50, 50]], [0.8, 0.7, 0.6], [1, 2, 1])
    merged = _merge([view_a, view_b], cfg, box_voting=False)
    assert not merged["voted"].any()
    # [1,0,11,10] overlaps the 0.9 box of its class at IoU 9/11 > 0.5: suppressed; class 2 kept
    assert merged["scores"].tolist() == pytest.approx([0.9, 0.7, 0.6])
    assert merged["labels"].tolist() == [1, 2, 1]
    assert merged["boxes"].tolist() == [[0, 0, 10, 10], [0, 0, 10, 10], [40, 40, 50, 50]]


def test_box_voting_is_the_score_weighted_mean_of_the_cluster():
    boxes = torch.tensor([[0.0, 0, 10, 10], [2, 0, 12, 10], [0, 0, 10, 10], [30, 30, 40, 40]])
    scores, labels = torch.tensor([0.9, 0.6, 0.8, 0.7]), torch.tensor([1, 1, 2, 1])
    voted = vote(boxes[:1], labels[:1], boxes, scores, labels)
    # IoU([0,0,10,10], [2,0,12,10]) = 80 / 120 >= 0.5: (0.9 * box0 + 0.6 * box1) / 1.5; class 2 and
    # the far box are out
    expected = (0.9 * boxes[0] + 0.6 * boxes[1]) / 1.5
    torch.testing.assert_close(voted[0], expected)


# -- an exactly equivariant stand-in detector ---------------------------------------------------
class _Oracle(torch.nn.Module):
    """Finds bright blobs: boxes are the connected components' pixel-edge bounds, masks their
    pixels read by aligned RoIAlign. Mirror and scale equivariant up to interpolation."""

    def forward(self, x):  # the "backbone": the normalised image itself
        return [x]


class _NoProposals(torch.nn.Module):
    def forward(self, batch, features, *unused):
        return [None], {}


def _oracle_model(min_size: int, **tta):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = maskrcnn.load_model("maskrcnn_r18_fpn", precision=None, num_classes=2, min_size=min_size,
                                    max_size=1000).eval()
    model.cfg = copy.deepcopy(model.cfg)
    model.cfg.input.pixel_mean, model.cfg.input.pixel_std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    model.pixel_mean.zero_()
    model.pixel_std.fill_(1.0)
    model.cfg.model.mask.aligned = True
    for key, value in tta.items():
        setattr(model.cfg.test.tta, key, value)
    model.backbone = _Oracle()
    model.rpn = _NoProposals()
    model.roi_heads.detect_boxes = lambda features, proposals, sizes: [_blobs(features[0][0], sizes[0])]
    model.roi_heads.predict_instances = lambda features, dets: [_masks(features[0], d) for d in dets]
    return model


def _blobs(image: torch.Tensor, size) -> dict:
    bright = (image[0, : size[0], : size[1]] > 0.5).numpy()
    labelled, count = ndimage.label(bright)
    boxes = []
    for sl in ndimage.find_objects(labelled):
        boxes.append([sl[1].start, sl[0].start, sl[1].stop, sl[0].stop])
    boxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    scores = torch.linspace(0.9, 0.6, len(boxes))
    return {"boxes": boxes, "scores": scores, "labels": torch.ones(len(boxes), dtype=torch.int64)}


def _masks(features: torch.Tensor, dets: dict) -> dict:
    rois = torch.cat([torch.zeros(len(dets["boxes"]), 1), dets["boxes"]], dim=1)
    probs = roi_align(features[:, :1], rois, 28, spatial_scale=1.0, sampling_ratio=2, aligned=True)[:, 0]
    return {**dets, "mask_probs": probs.clamp(0, 1)}


def _symmetric_image() -> torch.Tensor:
    """A mirror-symmetric scene: a disc on the axis and two squares mirrored across it."""
    h, w = 96, 160
    ys, xs = np.mgrid[:h, :w] + 0.5
    bright = ((xs - w / 2) ** 2 + (ys - 30) ** 2 <= 14**2) | ((np.abs(xs - w / 2) > 40) & (np.abs(xs - w / 2) < 62)
                                                                & (ys > 55) & (ys < 80))
    image = torch.from_numpy(bright.astype(np.float32) * 0.9)[None].repeat(3, 1, 1)
    assert torch.equal(image, image.flip(-1))
    return image


def test_flip_tta_on_a_mirror_symmetric_image_gives_the_same_masks():
    image = _symmetric_image()
    plain = _oracle_model(96).predict(image, tta=False)[0]
    flipped = _oracle_model(96, flip=True).predict(image, tta=True)[0]
    assert len(plain) == len(flipped) == 3
    torch.testing.assert_close(flipped.boxes, plain.boxes)
    assert torch.equal(flipped.masks, plain.masks)


def test_scales_map_boxes_and_masks_back_to_the_image():
    """At 2x and 0.75x the views' boxes come back to the image's within the resampling error."""
    image = _symmetric_image()
    plain = _oracle_model(96).predict(image, tta=False)[0]
    merged = _oracle_model(96, scales=(192, 72), flip=True).predict(image, tta=True)[0]
    assert len(merged) == len(plain)
    order_a, order_b = plain.boxes[:, 0].argsort(), merged.boxes[:, 0].argsort()
    torch.testing.assert_close(merged.boxes[order_b], plain.boxes[order_a], atol=1.5, rtol=0)
    for a, b in zip(plain.masks[order_a], merged.masks[order_b]):
        iou = (a & b).sum() / (a | b).sum()
        assert iou > 0.9


# -- the real model ---------------------------------------------------------------------------
@pytest.mark.parametrize("preset,field", [("maskrcnn_r18_fpn", "masks"), ("msrcnn_r50_fpn", "mask_scores"),
                                          ("keypointrcnn_r50_fpn", "keypoints")])
def test_one_unflipped_view_is_plain_inference(preset, field):
    """TTA with the model's own size and no flip runs the same computation as predict."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = maskrcnn.load_model(preset, weights=None, min_size=128, max_size=160, box_score_thresh=0.0,
                                    rpn_post_nms_top_n_test=100, box_detections_per_img=20)
    model.cfg.test.tta.flip = False
    image = torch.rand(3, 110, 150, generator=torch.Generator().manual_seed(0))
    plain, tta = model.predict(image, tta=False)[0], model.predict(image, tta=True)[0]
    assert len(plain) == len(tta) > 0 and tta.has(field)
    torch.testing.assert_close(tta.boxes, plain.boxes)
    torch.testing.assert_close(getattr(tta, field).float(), getattr(plain, field).float())


def test_flip_and_scales_run_on_the_real_model():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = maskrcnn.load_model("msrcnn_r50_fpn", weights=None, min_size=128, max_size=160,
                                    box_score_thresh=0.0, rpn_post_nms_top_n_test=50, box_detections_per_img=10)
    model.cfg.test.tta.scales = (96, 128)
    image = torch.rand(3, 110, 150, generator=torch.Generator().manual_seed(1))
    out = model.predict(image, tta=True)[0]
    assert 0 < len(out) <= 10 and out.masks.shape[1:] == (110, 150)
    assert out.mask_scores.shape == out.scores.shape and torch.isfinite(out.mask_scores).all()


def test_tta_option_is_refused_for_onnxruntime(tmp_path, capsys):
    from maskrcnn.cli import main

    from PIL import Image

    model_file = tmp_path / "m.onnx"
    model_file.write_bytes(b"x")
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    code = main(["predict", "--backend", "onnxruntime", "--weights", str(model_file), "--tta", str(tmp_path / "a.png"),
                 "--out", str(tmp_path / "o")])
    assert code == 2 and "--tta" in capsys.readouterr().err

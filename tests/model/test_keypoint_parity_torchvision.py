"""Parity with torchvision's keypointrcnn_resnet50_fpn: same weights -> same detections and
keypoints; same targets and seeded sampling -> same keypoint loss and gradients.

The reference is hardened as in the Mask R-CNN parity test (random BatchNorm terms, eps 0 as the
released weights run, spread-out scores and heatmaps). 512 px and 10 detections per image keep the
8 x 512-channel keypoint head affordable on a CPU.
"""

from __future__ import annotations

import pytest
import torch
from torchvision.models import detection as tvdet
from torchvision_reference import harden

from maskrcnn.weights.formats.torchvision import convert_torchvision
from maskrcnn.data.coco import CocoDataset
from maskrcnn.data.images import read_image
from maskrcnn.model.detector import build_model
from maskrcnn.weights import load_state
from maskrcnn.presets import apply_kwargs, get_preset

# Penn-Fudan 536x559 and 395x692; COCO 429x640 (1 person) and 480x640 (2 people)
IMAGES = ["pennfudan/PNGImages/FudanPed00001.png", "pennfudan/PNGImages/PennPed00045.png",
          "coco/keypoints-val2017-30/images/000000465718.jpg", "coco/keypoints-val2017-30/images/000000293625.jpg"]
INFER = {"min_size": 512, "max_size": 853, "box_score_thresh": 0.0, "box_detections_per_img": 10}
TRAIN = {"min_size": 512, "max_size": 853, "box_batch_size_per_image": 32}  # <= 8 positives per image
# Same operations in the same order as torchvision on tensors of the same shapes (every CPU picks
# the same kernels for both): losses and gradients equal bit for bit (0 to 1 ulp seen on an AMD
# EPYC); RE_ASSOC ulps of margin, room for a sum of that many terms in another order, far below
# a wrong target, weight or average (>= 1e-3 relative).
RE_ASSOC, U = 16, torch.finfo(torch.float32).eps / 2


def _pair(tv_kwargs: dict, our_kwargs: dict, image: torch.Tensor, seed: int):
    torch.manual_seed(0)
    ref = tvdet.keypointrcnn_resnet50_fpn(weights=None, weights_backbone=None, **tv_kwargs)
    harden(ref, eps=0.0, seed=seed, image=image)
    ours = build_model(apply_kwargs(get_preset("keypointrcnn_r50_fpn"), our_kwargs))
    load_state(ours, convert_torchvision(ref.state_dict()), source="torchvision reference")
    return ref, ours


@pytest.fixture(scope="module")
def outputs(shared_data):
    images = [read_image(shared_data / p) for p in IMAGES]
    ref, ours = _pair(INFER, INFER, images[0], seed=1)
    with torch.no_grad():
        expected = [ref.eval()([img])[0] for img in images]
    peaks = []  # max |heatmap logit| per image, for the decoding's rounding bound
    hook = ours.roi_heads.keypoint_head.register_forward_hook(lambda m, a, out: peaks.append(out.abs().max().item()))
    got = [ours.eval().predict(img)[0] for img in images]
    hook.remove()
    return expected, got, peaks


def test_heatmaps_are_spread_out(outputs):
    """Guards the hardening: keypoint scores (bicubic logits at the peak) vary across detections."""
    scores = outputs[0][0]["keypoints_scores"]
    assert scores.std() > 0.5


@pytest.mark.parametrize("index", range(len(IMAGES)), ids=[p.rpartition("/")[2] for p in IMAGES])
def test_detections_and_keypoints_match(outputs, index):
    """Each reference detection has one of ours (any order) with the same label, box and score
    (the model runs torchvision's operations in its order: equal bit for bit, RE_ASSOC ulps of
    margin as in test_parity_torchvision.py), and keypoints and keypoint scores within the
    rounding bounds of the decoding (derived in tests/model/test_keypoint_head.py: 8 u X px,
    X the largest coordinate; 2 u M (2 * 3 * 56 * 4.125 + 19), M = max |heatmap logit|)."""
    ref, ours, peak = outputs[0][index], outputs[1][index], outputs[2][index]
    box_tol, score_tol = RE_ASSOC * U * INFER["max_size"], RE_ASSOC * U
    xy_tol, kp_score_tol = 8 * U * INFER["max_size"], 2 * U * peak * (2 * 3 * 56 * 4.125 + 19)
    assert len(ours) == len(ref["boxes"]) == INFER["box_detections_per_img"]
    assert ours.keypoints.shape == (len(ours), 17, 3)
    used = torch.zeros(len(ours), dtype=torch.bool)
    for i in range(len(ref["boxes"])):
        diff = (ours.boxes - ref["boxes"][i]).abs().amax(dim=1)
        diff[(ours.labels != ref["labels"][i]) | used] = float("inf")
        j = int(diff.argmin())
        assert diff[j] <= box_tol, f"detection {i}: no box within {box_tol:.1e} px (best {diff[j]:.2e})"
        used[j] = True
        assert abs(float(ours.scores[j] - ref["scores"][i])) <= score_tol
        xy_err = (ours.keypoints[j, :, :2] - ref["keypoints"][i, :, :2]).abs().max()
        assert xy_err <= xy_tol, f"detection {i}: keypoints differ by {xy_err:.2e} px"
        score_err = (ours.keypoints[j, :, 2] - ref["keypoints_scores"][i]).abs().max()
        assert score_err <= kp_score_tol, f"detection {i}: keypoint scores differ by {score_err:.2e}"


@pytest.fixture(scope="module")
def training(shared_data):
    data = CocoDataset(shared_data / "coco" / "keypoints-train2017-30" / "annotations.json")
    # 500x332 with one labelled person and two unlabelled; 640x480 with two and two
    samples = [data[3], data[4]]
    images = [s[0] for s in samples]
    targets = [{k: s[1][k] for k in ("boxes", "labels", "keypoints")} for s in samples]
    ref, ours = _pair({**TRAIN, "num_classes": 2}, TRAIN, images[0], seed=3)
    return ref.train(), ours.train(), images, targets


def _losses(model, images, targets, seed):
    torch.manual_seed(seed)  # both draw size, anchor and RoI samples from the global RNG in order
    return model(images, [dict(t) for t in targets])


def test_keypoint_loss_and_gradients_match(training):
    """Same sampled RoIs -> same loss_keypoint and the same gradient on the heatmap layer (to
    RE_ASSOC ulps), so targets, valid-keypoint selection and averaging all agree."""
    ref, ours, images, targets = training
    expected = _losses(ref, images, targets, seed=0)
    got = _losses(ours, images, targets, seed=0)
    assert set(got) == set(expected)
    for name in expected:
        e, g = expected[name].item(), got[name].item()
        assert e > 0 and abs(g - e) <= RE_ASSOC * U * abs(e), f"{name}: ours {g:.8f} vs torchvision {e:.8f}"
    # only the heatmap layer's gradient: autograd skips the rest of the backward pass
    (ref_grad,) = torch.autograd.grad(expected["loss_keypoint"], ref.roi_heads.keypoint_predictor.kps_score_lowres.weight)
    (our_grad,) = torch.autograd.grad(got["loss_keypoint"], ours.roi_heads.keypoint_head.deconv.weight)
    torch.testing.assert_close(our_grad, ref_grad, rtol=0, atol=RE_ASSOC * U * ref_grad.abs().max().item())

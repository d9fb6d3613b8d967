"""Parity with torchvision's Mask R-CNN (v1 and v2): same weights -> same detections, stage by stage.

The reference is made hard: every BatchNorm gets random statistics and affine terms (identity
statistics would hide a wrong import) and the class-score / objectness weights are scaled up so
scores spread out as in a trained model (near-uniform scores make near-ties everywhere).

Tolerances: the plain model runs torchvision's operations in torchvision's order on tensors of the
same shapes and layouts, so every CPU picks the same kernels for both and the results are equal
bit for bit (0.0 at every stage and in boxes and scores, on an AMD EPYC). Only the mask paste is
another computation (matrix products instead of a per-box resize): each is within u (6 S D + 6)
of float64 (u = 2**-24, S = 30 padded cells, D <= 1; derived in tests/ops/test_masks.py), so they
differ by at most twice that (~2.2e-5; 83 u seen). The other tolerances are margins of RE_ASSOC
ulps of each quantity's scale, room for a post-processing sum of up to that many terms taken in
another order; a re-associated convolution (sums of ~10**3 terms through ~50 layers) exceeds it,
so the fast path is not judged here but against float64 (tests/model/test_exactness_float64.py).
"""

from __future__ import annotations

import copy
import warnings
import pytest
import torch
from exactness import compare, from_instances, from_torchvision
from torchvision_reference import harden
from torchvision.models import detection as tvdet

from maskrcnn.data.images import read_image
from maskrcnn.model.detector import build_model
from maskrcnn.model.fast_inference import prepare_for_inference
from maskrcnn.weights.formats.torchvision import convert_torchvision
from maskrcnn.weights import load_state
from maskrcnn.presets import apply_kwargs, get_preset

# 512 px instead of the default 800 keeps the suite fast; the resize path is the same code.
SIZE = {"min_size": 512, "max_size": 853, "box_score_thresh": 0.0}
# Four Penn-Fudan images of different sizes (h x w): 536x559, 381x539, 495x750, 395x692
IMAGES = ["FudanPed00001.png", "FudanPed00007.png", "PennPed00010.png", "PennPed00045.png"]
U, RE_ASSOC = torch.finfo(torch.float32).eps / 2, 16
BOX_TOL = RE_ASSOC * U * SIZE["max_size"]  # px: ulps of the largest coordinate (8e-4 px)
SCORE_TOL = RE_ASSOC * U  # scores <= 1
MASK_TOL = 2 * U * (6 * 30 * 1 + 6)  # two pastes, each within its rounding bound of float64
# The fast path reorders fp32 sums (folded weights, channels-last convolutions), which moves boxes
# by ~1e-2 px with trained-like weights (tests/model/exactness.py): its exactness is judged against
# float64 in tests/model/test_exactness_float64.py. Here it must find the same detections: each
# matched to one of torchvision's with the same label, box within exactness.compare's 2 px.


@pytest.fixture(scope="module", params=["v1", "v2"])
def pair(request, images):
    torch.manual_seed(0)
    if request.param == "v1":
        ref = tvdet.maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, **SIZE)
        # torchvision runs its released v1 weights with eps 0 (overwrite_eps); so must the reference.
        harden(ref, eps=0.0, seed=1, image=images[0])
        cfg = get_preset("maskrcnn_r50_fpn")
    else:
        ref = tvdet.maskrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None, **SIZE)
        harden(ref, eps=None, seed=1, image=images[0])
        cfg = get_preset("maskrcnn_r50_fpn_v2")
    cfg = apply_kwargs(cfg, SIZE)
    ours = build_model(cfg).eval()
    load_state(ours, convert_torchvision(ref.state_dict()), source="torchvision reference")
    return ref, ours


@pytest.fixture(scope="module")
def images(shared_data):
    return [read_image(shared_data / "pennfudan" / "PNGImages" / name) for name in IMAGES]


def _match(ref: dict, ours, box_tol=BOX_TOL, score_tol=SCORE_TOL, mask_tol=MASK_TOL) -> None:
    """Every reference detection has one of ours with the same label and box; scores and
    pasted mask probabilities agree (tolerances: module docstring)."""
    assert len(ours) == len(ref["boxes"]) > 0
    used = torch.zeros(len(ours), dtype=torch.bool)
    for i in range(len(ref["boxes"])):
        diff = (ours.boxes - ref["boxes"][i]).abs().amax(dim=1)
        diff[(ours.labels != ref["labels"][i]) | used] = float("inf")
        j = int(diff.argmin())
        assert diff[j] <= box_tol, f"detection {i}: no match within {box_tol} px (best {diff[j]:.2e})"
        used[j] = True
        assert abs(float(ours.scores[j] - ref["scores"][i])) <= score_tol
        mask_err = (ours.mask_probs[j] - ref["masks"][i, 0]).abs().max()
        assert mask_err <= mask_tol, f"detection {i}: mask probabilities differ by {mask_err:.2e}"


@pytest.fixture(scope="module")
def outputs(pair, images):
    """Reference and our detections: each image alone, and images 1 and 3 as a batch of two."""
    ref, ours = pair
    batch = [images[1], images[3]]
    with torch.no_grad():
        ref_single = [ref([img])[0] for img in images]
        ref_batch = ref(batch)
    our_single = [ours.predict(img, keep_mask_probs=True)[0] for img in images]
    our_batch = ours.predict(batch, keep_mask_probs=True)
    return ref_single, our_single, ref_batch, our_batch


@pytest.fixture(scope="module")
def fast_outputs(pair, images):
    """The fast fp32 path (folded norms, channels-last, threaded RoIAlign, top-k NMS)."""
    fast = prepare_for_inference(copy.deepcopy(pair[1]), "fp32")
    single = [fast.predict(img, keep_mask_probs=True)[0] for img in images]
    return single, fast.predict([images[1], images[3]], keep_mask_probs=True)


def test_fast_fp32_path_finds_the_same_detections(outputs, fast_outputs):
    """The same detections, alone and in a batch, one to one (its precision is judged against
    float64 in tests/model/test_exactness_float64.py)."""
    ref_single, _, ref_batch, _ = outputs
    fast_single, fast_batch = fast_outputs
    for expected, got in zip(ref_single + ref_batch, fast_single + fast_batch):
        assert len(got) == len(expected["boxes"]) > 0
        assert compare(from_torchvision(expected), from_instances(got), score_cut=0.0).matched == len(got)


def test_scores_are_spread_out(outputs):
    """Guards the hardening itself: a trained-like spread, not near-uniform scores."""
    scores = outputs[0][0]["scores"]
    assert scores.std() > 0.05 and scores.max() - scores.min() > 0.2


@pytest.mark.parametrize("index", range(len(IMAGES)))
def test_single_image_detections_match(outputs, images, index):
    ref_single, our_single, _, _ = outputs
    assert our_single[index].image_size == tuple(images[index].shape[-2:])
    _match(ref_single[index], our_single[index])


def test_batch_of_two_matches(outputs):
    _, _, ref_batch, our_batch = outputs
    for expected, got in zip(ref_batch, our_batch):
        _match(expected, got)


def test_stages_match(pair, images):
    """FPN features, RPN proposals and box-head outputs, so a failure points at its stage."""
    ref, ours = pair
    batch = [images[0], images[2]]
    with torch.no_grad(), warnings.catch_warnings():
        ref_list, _ = ref.transform(batch)
        our_list, _ = ours.preprocess(batch, None, None)
        torch.testing.assert_close(our_list.tensors, ref_list.tensors, rtol=0,
                                   atol=RE_ASSOC * U * ref_list.tensors.abs().max().item())
        assert our_list.image_sizes == [tuple(s) for s in ref_list.image_sizes]

        ref_feats = list(ref.backbone(ref_list.tensors).values())
        our_feats = ours.backbone(our_list.tensors)
        for level, (a, b) in enumerate(zip(our_feats, ref_feats)):
            scale = b.abs().max()
            assert (a - b).abs().max() <= RE_ASSOC * U * scale, f"FPN level P{level + 2} differs"

        ref_props, _ = ref.rpn(ref_list, dict(zip(map(str, range(4)), ref_feats[:4]), pool=ref_feats[4]))
        our_props, _ = ours.rpn(our_list, our_feats)
        for a, b in zip(our_props, ref_props):
            # Same set of proposals; equal-score proposals may come in either order.
            assert a.shape == b.shape
            nearest = torch.cdist(a, b, p=float("inf")).min(dim=1).values
            assert nearest.max() <= BOX_TOL

        feats = {str(i): f for i, f in enumerate(ref_feats[:4])}
        pooled = ref.roi_heads.box_roi_pool(feats, ref_props, ref_list.image_sizes)
        ref_logits, ref_deltas = ref.roi_heads.box_predictor(ref.roi_heads.box_head(pooled))
        heads = ours.roi_heads
        our_logits, our_deltas = heads.box_head(heads.pooler(our_feats[:4], ref_props, 7))
        for a, b in ((our_logits, ref_logits), (our_deltas, ref_deltas)):
            torch.testing.assert_close(a, b, rtol=0, atol=RE_ASSOC * U * b.abs().max().item())

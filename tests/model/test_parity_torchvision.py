"""Parity with torchvision's Mask R-CNN (v1 and v2): same weights -> same detections, stage by stage.

The reference is made hard: every BatchNorm gets random statistics and affine terms (identity
statistics would hide a wrong import) and the class-score / objectness weights are scaled up so
scores spread out as in a trained model (near-uniform scores make near-ties everywhere).
"""

from __future__ import annotations

import copy
import warnings
import pytest
import torch
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


def _match(ref: dict, ours, box_tol=1e-3, score_tol=1e-4, mask_tol=1e-3) -> None:
    """Every reference detection has one of ours with the same label and box; scores and
    pasted mask probabilities agree."""
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


def test_fast_fp32_path_matches(request, outputs, fast_outputs):
    """v1 (the released COCO model's architecture) at the parity tolerances. v2 also folds the
    BatchNorms of its FPN and box and mask heads, and its random hardened weights amplify the
    fp32 re-association most: measured worst box error 1.1e-3 px at 512 px, hence 2e-3 there."""
    ref_single, _, ref_batch, _ = outputs
    fast_single, fast_batch = fast_outputs
    box_tol = 1e-3 if request.node.callspec.id == "v1" else 2e-3
    for expected, got in zip(ref_single + ref_batch, fast_single + fast_batch):
        _match(expected, got, box_tol=box_tol)


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
        torch.testing.assert_close(our_list.tensors, ref_list.tensors, rtol=0, atol=1e-5)
        assert our_list.image_sizes == [tuple(s) for s in ref_list.image_sizes]

        ref_feats = list(ref.backbone(ref_list.tensors).values())
        our_feats = ours.backbone(our_list.tensors)
        for level, (a, b) in enumerate(zip(our_feats, ref_feats)):
            scale = b.abs().max()
            assert (a - b).abs().max() <= 1e-4 * scale, f"FPN level P{level + 2} differs"

        ref_props, _ = ref.rpn(ref_list, dict(zip(map(str, range(4)), ref_feats[:4]), pool=ref_feats[4]))
        our_props, _ = ours.rpn(our_list, our_feats)
        for a, b in zip(our_props, ref_props):
            # Same set of proposals; equal-score proposals may come in either order.
            assert a.shape == b.shape
            nearest = torch.cdist(a, b, p=float("inf")).min(dim=1).values
            assert nearest.max() <= 1e-3

        feats = {str(i): f for i, f in enumerate(ref_feats[:4])}
        pooled = ref.roi_heads.box_roi_pool(feats, ref_props, ref_list.image_sizes)
        ref_logits, ref_deltas = ref.roi_heads.box_predictor(ref.roi_heads.box_head(pooled))
        heads = ours.roi_heads
        our_logits, our_deltas = heads.box_head(heads.pooler(our_feats[:4], ref_props, 7))
        torch.testing.assert_close(our_logits, ref_logits, rtol=1e-4, atol=1e-4 * ref_logits.abs().max())
        torch.testing.assert_close(our_deltas, ref_deltas, rtol=1e-4, atol=1e-4 * ref_deltas.abs().max())

"""The plain model and the fp32 fast path are no less exact than torchvision's fp32 model (run
NCHW and channels-last), all measured against our model run in float64 (tests/model/exactness.py
explains the referee).

v1, v2 and keypoint R-CNN, 3 seeds each (weights and image change with the seed), on trained-like
weights at 320 px with 300 proposals and 30 detections (10 for keypoints) to keep the suite
fast; benchmarks/exactness_float64.py runs more seeds, bf16 and ONNX Runtime.
"""

from __future__ import annotations

import copy

import pytest
import torch
from exactness import (build_pair, compare, float64_model, judge, run_ours, score_cut,
                       torchvision_envelope)

from maskrcnn.data.images import read_image
from maskrcnn.model.fast_inference import prepare_for_inference

IMAGES = ["FudanPed00001.png", "PennPed00045.png", "FudanPed00007.png"]  # one per seed
SIZE = {"min_size": 320, "max_size": 533, "rpn_post_nms_top_n_test": 300, "box_detections_per_img": 30}


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("kind", ["v1", "v2", "keypoint"])
def test_no_less_exact_than_torchvision(kind, seed, shared_data):
    size = {**SIZE, "box_detections_per_img": 10} if kind == "keypoint" else SIZE
    image = read_image(shared_data / "pennfudan" / "PNGImages" / IMAGES[seed])
    ref, plain = build_pair(kind, seed, image, **size)
    truth = run_ours(float64_model(plain), image)
    cut = score_cut(truth, ref.roi_heads.score_thresh, size["box_detections_per_img"])
    assert truth.boxes.dtype == torch.float64 and len(truth) == size["box_detections_per_img"]

    theirs = torchvision_envelope(ref, image, truth, cut)
    for run in theirs.runs:  # NCHW, NHWC
        assert run.matched >= len(truth) - 2 and run.worst("box") > 0  # fp32 is not float64
    fast = prepare_for_inference(copy.deepcopy(plain), "fp32")
    for name, model in (("plain", plain), ("fast fp32", fast)):
        ours = compare(truth, run_ours(model, image), cut)
        problems = judge(ours, theirs)
        assert not problems, f"{name}: " + "; ".join(problems)


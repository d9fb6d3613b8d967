"""The paper's Table 2 ablations as config fields: each trains 5 iterations and evaluates through
the CLI (`maskrcnn train --set ...`, `maskrcnn eval`), on tiny synthetic data with a slim
ResNet-18 FPN (and a ResNet-18 C4 with the paper's 14 x 14 masks)."""

from __future__ import annotations

import json

import pytest

from maskrcnn.cli import main
from maskrcnn.training.checkpoint import Checkpointer

SLIM = [
    "input.min_size=[64]", "input.max_size=64", "model.backbone.fpn_channels=16",
    "model.rpn.post_nms_topk_test=30", "model.rpn.post_nms_topk_train=30", "model.box.fc_dim=16",
    "model.box.batch_size_per_image=16", "model.box.detections_per_img=5", "model.box.score_thresh=0.0",
    "model.mask.conv_dims=[8]", "model.mask.mlp_dims=[16]", "solver.max_iter=5", "solver.ims_per_batch=2",
    "solver.warmup_iters=1", "solver.base_lr=0.002", "solver.checkpoint_period=100", "data.num_workers=0",
]  # fmt: skip

SWITCHES = {
    "roipool+softmax+mlp": ("maskrcnn_r18_fpn", ["model.roi_pooler=roipool", "model.mask.loss=softmax",
                                                 "model.mask.head=mlp"]),
    "roiwarp+agnostic+56+2convs": ("maskrcnn_r18_fpn", ["model.roi_pooler=roiwarp", "model.mask.class_agnostic=true",
                                                        "model.mask.resolution=56", "model.mask.conv_dims=[8,8]"]),
    # the C4 layout on a ResNet-18 (maskrcnn_r50_c4's fields): one-map RPN, res5 per RoI, 14 x 14 masks
    "c4+mask14": ("maskrcnn_r18_fpn", ["model.backbone.kind=c4", "model.box.head=avgpool",
                                       "model.box.pooler_resolution=14", "model.mask.conv_dims=[]",
                                       "model.mask.deconv_dim=16", "model.mask.resolution=14"]),
}  # fmt: skip


@pytest.mark.parametrize("name", SWITCHES)
def test_switch_trains_and_evaluates(name, synth_ann, tmp_path):
    preset, switches = SWITCHES[name]
    images, run = synth_ann.parent / "images", tmp_path / "run"
    assert main(["train", "--model", preset, "--data", str(synth_ann), "--images", str(images),
                 "--out", str(run), "--set", *SLIM, *switches]) == 0  # fmt: skip
    weights = Checkpointer(run, 1).last()
    assert main(["eval", "--model", preset, "--weights", str(weights), "--data", str(synth_ann),
                 "--images", str(images), "--out", str(tmp_path / "eval")]) == 0  # fmt: skip
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert "segm/AP" in metrics and "bbox/AP" in metrics
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert results and all("segmentation" in r for r in results)

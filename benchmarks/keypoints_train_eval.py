"""Keypoint R-CNN end to end through the CLI: `maskrcnn train` on COCO keypoints-train2017-30 (a
small from-scratch person model, CPU-sized), the keypoint loss early vs late, then `maskrcnn eval`
on keypoints-val2017-30 printing OKS AP.

    .venv/bin/python benchmarks/keypoints_train_eval.py --iters 100 --out runs/keypoints_bench

No pretrained weights are available offline, so the model learns from scratch: expect the loss
to fall well below log(56 * 56) = 8.04 (uniform heatmaps) and an OKS AP near zero after minutes.

Measured (2026-11-22, 2 shared CPU cores, 100 iterations, ~30 min): loss_keypoint 8.21 (first 4
logs) -> 7.00 (last 4 logs); `maskrcnn eval` on keypoints-val2017-30: keypoints AP 0.00, bbox AP 1.2.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "coco"
# keypointrcnn_r50_fpn's heads on a ResNet-18 GroupNorm trunk that learns from scratch, slimmed
# where the CPU spends its time (FPN width, RoIs, keypoint head width and depth, input size).
OVERRIDES = [
    "model.backbone.depth=18", "model.backbone.norm=gn", "model.backbone.freeze_at=0",
    "model.backbone.fpn_channels=64", "model.anchors.sizes=[16,32,64,128,256]",
    "model.rpn.pre_nms_topk_train=500", "model.rpn.post_nms_topk_train=200",
    "model.rpn.pre_nms_topk_test=500", "model.rpn.post_nms_topk_test=100",
    "model.box.batch_size_per_image=32", "model.box.fc_dim=256", "model.box.detections_per_img=20",
    "model.keypoint.conv_dims=[64,64,64,64]",
    "input.min_size=[224,256,288]", "input.max_size=480",
    "solver.ims_per_batch=2", "solver.optimizer=adamw", "solver.base_lr=0.001",
    "solver.weight_decay=0.0001", "solver.warmup_iters=20", "solver.clip_grad_norm=10.0",
    "solver.log_period=5", "data.num_workers=0", "data.skip_empty=true",
]  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iters", type=int, default=100)
    parser.add_argument("--out", default="runs/keypoints_bench")
    args = parser.parse_args()
    out = Path(args.out)
    train, val = DATA / "keypoints-train2017-30", DATA / "keypoints-val2017-30"
    cli = [sys.executable, "-m", "maskrcnn"]
    schedule = [f"solver.max_iter={args.iters}", f"solver.steps=[{int(args.iters * 0.8)}]",
                f"solver.checkpoint_period={args.iters}"]
    subprocess.run(cli + ["train", "--model", "keypointrcnn_r50_fpn", "--data", str(train / "annotations.json"),
                          "--images", str(train / "images"), "--out", str(out / "run"), "--device", "cpu",
                          "--set", *OVERRIDES, *schedule], check=True)  # fmt: skip
    report_loss(out / "run" / "metrics.jsonl")
    subprocess.run(cli + ["eval", "--model", "keypointrcnn_r50_fpn", "--weights", str(out / "run" / "model_final.pt"),
                          "--data", str(val / "annotations.json"), "--images", str(val / "images"),
                          "--out", str(out / "eval")], check=True)  # fmt: skip
    return 0


def report_loss(metrics: Path) -> None:
    """Mean loss_keypoint over the first and last fifth of the logged iterations."""
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    values = [r["loss_keypoint"] for r in rows if "loss_keypoint" in r]
    fifth = max(1, len(values) // 5)
    first, last = sum(values[:fifth]) / fifth, sum(values[-fifth:]) / fifth
    print(f"loss_keypoint: first {fifth} logs {first:.3f} -> last {fifth} logs {last:.3f} "
          f"(uniform heatmaps: {math.log(56 * 56):.3f}); {len(values)} logs")


if __name__ == "__main__":
    sys.exit(main())

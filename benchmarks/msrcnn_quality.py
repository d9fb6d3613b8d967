"""Does the MaskIoU head do what Mask Scoring R-CNN claims, on a model we can train on a CPU?

Trains the demo recipe (ResNet-18 GN FPN from scratch on synthetic shapes, fixed seed) with
`model.maskiou.enabled=true`, then on held-out images reports, over every detection:
  - Pearson correlation with the true mask IoU (best same-class GT) of (a) the predicted MaskIoU,
    (b) the box classification score, (c) their product (the mask score); over all detections
    and over true positives (box IoU >= 0.5), the only RoIs the head is trained on;
  - mask AP of the same detections ranked by the box score and by the mask score (rescoring).

    .venv/bin/python benchmarks/msrcnn_quality.py --out runs/msrcnn_quality --iters 1500
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from maskrcnn import load_model
from maskrcnn.config import apply_overrides
from maskrcnn.data.synthetic import write_synthetic_dataset
from maskrcnn.engine.checkpoint import Checkpointer
from maskrcnn.engine.evaluator import evaluate_results, instances_to_results
from maskrcnn.engine.trainer import train
from maskrcnn.zoo import get_preset

# The recipe of the reported run, pinned here (the demo's recipe moves on): the demo's CPU-sized
# ResNet-18 FPN from scratch (GroupNorm trunk, AdamW, gradient clipping) at 128 px, plus the
# MaskIoU head slimmed like the other heads (paper: 256 / 1024). With SGD at lr 0.02 and no
# clipping, the unnormalised IoU regressor diverged at iteration 54 (MSE 1.6 -> 4.9 -> 2e6).
RECIPE = [
    "model.backbone.norm=gn", "model.backbone.freeze_at=0", "model.backbone.fpn_channels=64",
    "model.anchors.sizes=[16,32,64,128,256]",
    "model.rpn.pre_nms_topk_train=500", "model.rpn.post_nms_topk_train=200",
    "model.rpn.pre_nms_topk_test=500", "model.rpn.post_nms_topk_test=100",
    "model.rpn.batch_size_per_image=128",
    "model.box.batch_size_per_image=64", "model.box.fc_dim=256", "model.box.detections_per_img=20",
    "model.mask.conv_dims=[64,64]", "input.min_size=[128]", "input.max_size=128",
    "solver.ims_per_batch=4", "solver.optimizer=adamw", "solver.base_lr=0.001",
    "solver.weight_decay=0.0001", "solver.warmup_iters=50", "solver.clip_grad_norm=10.0",
    "solver.log_period=20", "solver.checkpoint_period=50", "data.num_workers=0",
    "model.maskiou.enabled=true", "model.maskiou.conv_dim=64", "model.maskiou.fc_dim=256",
]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="runs/msrcnn_quality")
    parser.add_argument("--iters", type=int, default=1500)
    parser.add_argument("--train-images", type=int, default=300)
    parser.add_argument("--val-images", type=int, default=100)
    parser.add_argument("--eval-only", action="store_true", help="measure the run's last checkpoint")
    args = parser.parse_args()
    out = Path(args.out)
    torch.manual_seed(0)
    train_ann = write_synthetic_dataset(out / "data" / "train", args.train_images, seed=1, size=128)
    val_ann = write_synthetic_dataset(out / "data" / "val", args.val_images, seed=2, size=128)
    run = out / "run"
    if not args.eval_only:
        cfg = apply_overrides(get_preset("maskrcnn_r18_fpn"), RECIPE + [
            f"solver.max_iter={args.iters}", f"solver.steps=[{int(args.iters * 0.8)}]",
            f"data.train_ann={train_ann}", f"data.train_images={train_ann.parent / 'images'}",
        ])  # fmt: skip
        cfg.name = "msrcnn_r18_fpn_shapes"
        train(cfg, run, device="cpu")  # evaluated below, with and without rescoring
    checkpoint = Checkpointer(run, 1).last()
    model = load_model("maskrcnn_r18_fpn", weights=checkpoint).eval()
    report = measure(model, val_ann)
    report.update(checkpoint=checkpoint.name, schedule_iters=args.iters, train_images=args.train_images,
                  val_images=args.val_images)  # fmt: skip
    (out / "report.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


def measure(model, val_ann: Path) -> dict:
    gt = COCO(str(val_ann))
    images = gt.loadImgs(gt.getImgIds())
    pred_iou, cls_score, true_iou, box_iou, results = [], [], [], [], []
    for im in images:
        inst = model.predict(str(val_ann.parent / "images" / im["file_name"]))[0]
        results += instances_to_results(inst, im["id"], model.cfg.model.category_ids)
        cls_score.append(inst.scores)
        pred_iou.append(inst.mask_scores / inst.scores)  # the head's IoU for the predicted class
        masks_iou, boxes_iou = best_gt_iou(inst, gt, im, model.cfg.model.category_ids)
        true_iou.append(masks_iou)
        box_iou.append(boxes_iou)
    a, b, t, box = (torch.cat(x).double() for x in (pred_iou, cls_score, true_iou, box_iou))
    tp = box >= 0.5  # the head's training distribution: RoIs matching a GT box of their class
    plain = [{k: v for k, v in r.items() if k != "mask_score"} for r in results]
    return {
        "detections": len(t),
        "mean_true_iou": t.mean().item(),
        "pearson_pred_maskiou": pearson(a, t),
        "pearson_cls_score": pearson(b, t),
        "pearson_mask_score": pearson(a * b, t),
        "true_positives (box IoU >= 0.5)": int(tp.sum()),
        "tp_mean_true_iou": t[tp].mean().item(),
        "tp_pearson_pred_maskiou": pearson(a[tp], t[tp]),
        "tp_pearson_cls_score": pearson(b[tp], t[tp]),
        "mask_ap_box_score": evaluate_results(plain, val_ann, ["segm"])["segm/AP"],
        "mask_ap_rescored": evaluate_results(results, val_ann, ["segm"])["segm/AP"],
        "box_ap": evaluate_results(results, val_ann, ["bbox"])["bbox/AP"],
    }


def best_gt_iou(inst, gt: COCO, im: dict, model_category_map: tuple[int, ...]):
    """(D,) best mask IoU and (D,) best box IoU of each detection with the GT of its class."""
    anns = gt.loadAnns(gt.getAnnIds(imgIds=im["id"], iscrowd=False))
    if len(inst) == 0 or not anns:
        return torch.zeros(len(inst)), torch.zeros(len(inst))
    pred = mask_utils.encode(np.asfortranarray(inst.masks.numpy().transpose(1, 2, 0).astype(np.uint8)))
    crowd = [0] * len(anns)
    mask_ious = torch.as_tensor(mask_utils.iou(pred, [gt.annToRLE(a) for a in anns], crowd))  # (D, G)
    xywh = torch.cat([inst.boxes[:, :2], inst.boxes[:, 2:] - inst.boxes[:, :2]], 1).double().tolist()
    box_ious = torch.as_tensor(mask_utils.iou(xywh, [a["bbox"] for a in anns], crowd))  # (D, G)
    ids = torch.as_tensor(category_ids(inst.labels, model_category_map))
    same = ids[:, None] == torch.as_tensor([a["category_id"] for a in anns])[None]
    return (mask_ious * same).max(1).values, (box_ious * same).max(1).values


def category_ids(labels: torch.Tensor, mapping: tuple[int, ...]) -> list[int]:
    return [mapping[i] for i in labels.tolist()] if mapping else labels.tolist()


def pearson(x: torch.Tensor, y: torch.Tensor) -> float:
    return torch.corrcoef(torch.stack([x, y]))[0, 1].item()


if __name__ == "__main__":
    main()

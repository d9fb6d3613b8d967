"""`maskrcnn demo`: synthesise shapes, train a small model from scratch on the CPU, evaluate it on
held-out images, write overlays and print the COCO mask AP. No downloads.

The run is a fixed, seeded number of iterations (DEMO_ITERS, a few minutes on a 2-core CPU; the
learning rate divided by 10 at 80 % of them), so its mask AP is the same on any machine however
loaded. `--budget 5m` instead fits the same schedule to a time budget (solver.time_budget,
training/budget.py) as `maskrcnn train --budget` does, at the price of an AP that depends on the
machine's speed."""

from __future__ import annotations

import time
from pathlib import Path

DEMO_ITERS = 1500

# A ResNet-18 FPN that learns from scratch at 128 px (a trainable BatchNorm trunk: it learned
# twice as fast as GroupNorm here), slimmed where the CPU would spend its time (FPN width,
# RoIs per image, head widths). AdamW with clipping is sturdier than SGD from scratch.
DEMO_OVERRIDES = [
    "model.backbone.norm=bn", "model.backbone.freeze_at=0", "model.backbone.fpn_channels=64",
    "model.anchors.sizes=[16,32,64,128,256]",
    "model.rpn.pre_nms_topk_train=500", "model.rpn.post_nms_topk_train=200",
    "model.rpn.pre_nms_topk_test=500", "model.rpn.post_nms_topk_test=100",
    "model.rpn.batch_size_per_image=128",
    "model.box.batch_size_per_image=64", "model.box.fc_dim=256", "model.box.detections_per_img=20",
    "model.mask.conv_dims=[64,64]",
    "input.min_size=[128]", "input.max_size=128",
    "solver.ims_per_batch=4", "solver.optimizer=adamw", "solver.base_lr=0.002",
    "solver.weight_decay=0.0001", "solver.warmup_iters=50", "solver.clip_grad_norm=10.0",
    "solver.log_period=20", "data.num_workers=0",
]  # fmt: skip


def add_parser(subparsers, name: str) -> None:
    """Add `maskrcnn demo` to the argparse `subparsers` as `name`: its options and `run`."""
    parser = subparsers.add_parser(name, help="train and evaluate a small model on synthetic shapes (CPU, minutes)")
    parser.add_argument("--out", default="runs/demo", help="output folder")
    parser.add_argument("--iters", type=int, default=DEMO_ITERS,
                        help=f"training iterations (default {DEMO_ITERS}: the same model on any machine)")
    parser.add_argument("--budget", default=None, metavar="DURATION",
                        help="train for this long instead (90s, 5m): the schedule fits the time, so "
                             "the result depends on the machine's speed")
    parser.add_argument("--train-images", type=int, default=300, help="synthetic training images")
    parser.add_argument("--val-images", type=int, default=50, help="synthetic held-out images the AP is measured on")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.set_defaults(run=run)


def demo_config(iters: int, train_ann: Path, budget_minutes: float = 0.0):
    """The demo's config: the maskrcnn_r18_fpn preset slimmed by `DEMO_OVERRIDES` (128 px input),
    trained for `iters` iterations (learning rate / 10 at 80 % of them, one checkpoint at the end)
    on the COCO json `train_ann` (images in `train_ann`'s folder / images). `budget_minutes` > 0
    fits the schedule to that many minutes instead (solver.time_budget); 0: no budget."""
    from ..config import apply_overrides
    from ..presets import get_preset

    cfg = get_preset("maskrcnn_r18_fpn")
    cfg.name = "demo_r18_fpn_shapes"
    apply_overrides(cfg, DEMO_OVERRIDES + [
        f"solver.max_iter={iters}", f"solver.steps=[{int(iters * 0.8)}]",
        f"solver.checkpoint_period={iters}",
        f"solver.time_budget={budget_minutes}",
        f"data.train_ann={train_ann}", f"data.train_images={train_ann.parent / 'images'}",
    ])  # fmt: skip
    return cfg


def run(args) -> int:
    """`maskrcnn demo`: write synthetic shapes (`--train-images` + `--val-images`, 128 px), train the
    small model from scratch (`--iters`, or `--budget`), save OUT/model.safetensors, evaluate it on
    the held-out images (OUT/eval), draw overlays of 8 of them (OUT/overlays) and print the mask and
    box AP (in AP points, 0..100). Returns 0.

    Raises:
        UserError: `--out` already holds a demo run, or is not a writable folder (OutputError).
    """
    from ..cli import build_parser
    from .predict import run as predict_run
    from ..data.synthetic import write_synthetic_dataset
    from ..training.budget import parse_duration
    from ..training.trainer import train
    from ..errors import UserError
    from ..fileio import check_output_dir
    from ..model.fast_inference import prepare_for_inference
    from ..weights import save_weights

    start = time.perf_counter()
    out = check_output_dir(args.out)
    if (out / "run").exists():
        raise UserError(f"{out} already holds a demo run; remove it or pass --out elsewhere")
    print(f"[1/4] synthetic shapes: {args.train_images} training + {args.val_images} held-out images")
    train_ann = write_synthetic_dataset(out / "data" / "train", args.train_images, seed=1, size=128)
    val_ann = write_synthetic_dataset(out / "data" / "val", args.val_images, seed=2, size=128)
    minutes = parse_duration(args.budget) if args.budget else 0.0
    cfg = demo_config(args.iters, train_ann, minutes)
    plan = f"for {args.budget} (time budget)" if minutes else f"for {args.iters} seeded iterations"
    print(f"[2/4] training {cfg.name} from scratch {plan}")
    train(cfg, out / "run", device=args.device)
    model = _final_model(out / "run")
    save_weights(model, out / "model.safetensors")
    prepare_for_inference(model, "fp32")
    print("[3/4] evaluating on the held-out images")
    from ..evaluation.evaluator import evaluate_model, format_table

    metrics = evaluate_model(model, val_ann.parent / "images", val_ann, out / "eval")
    print(format_table(metrics))
    print(f"[4/4] overlays of 8 held-out images -> {out / 'overlays'}")
    overlay_images = [str(p) for p in sorted((val_ann.parent / "images").glob("*.png"))[:8]]
    predict_run(build_parser().parse_args(["predict", *overlay_images, "--model", "maskrcnn_r18_fpn", "--weights",
                                           str(out / "model.safetensors"), "--out", str(out / "overlays")]))
    minutes = (time.perf_counter() - start) / 60
    print(f"\ndemo done in {minutes:.1f} min: mask AP {metrics['segm/AP'] * 100:.1f}, "
          f"box AP {metrics['bbox/AP'] * 100:.1f} on {args.val_images} held-out images; outputs in {out}")
    return 0


def _final_model(run_dir: Path):
    """The trained weights from the run's last checkpoint, as an inference model."""
    from .. import load_model
    from ..training.checkpoint import Checkpointer

    return load_model("maskrcnn_r18_fpn", weights=Checkpointer(run_dir, 1).last(), precision=None)

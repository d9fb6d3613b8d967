"""`maskrcnn train`: a config (file or preset) + overrides + data paths -> a run directory.

Also runs under `torchrun --nproc_per_node N -m maskrcnn train ...` (solver.ims_per_batch is
the global batch); across machines, --resume needs the run directory on a shared filesystem,
since every process reads the checkpoint. Every argument is checked before the first iteration.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..cli import add_set_option
from ..config import apply_overrides, load_yaml, set_value
from ..data import formats
from ..training.budget import parse_duration
from ..weights.registry import IMAGENET, imagenet_source
from ..weights.transfer import config_for_weights
from ..presets import get_preset

EPILOG = """\
the run directory gets:
  config.yaml          the full config of the run (usable with --config)
  metrics.jsonl        one line per logged iteration: iter, lr, each loss, loss, time;
                       one per evaluation: iter, elapsed (training seconds), val/<metric>
  tb/                  TensorBoard event files
  model_NNNNNNN.pt     checkpoints every solver.checkpoint_period iterations (last K kept),
                       named by last_checkpoint; --resume continues from there
  model_final.pt       weights + config at the end (maskrcnn predict / load_model)
  model_best.pt, eval/ with a validation set: best weights by segm/AP, latest COCO metrics

fine-tuning: --weights SOURCE loads a pretrained model (class-dependent layers re-initialised for
the dataset's classes, rows of classes with the same name copied) and prints what was loaded

several processes: torchrun --nproc_per_node N -m maskrcnn train ... (same arguments)
"""


def add_parser(subparsers, name: str) -> None:
    """Add `maskrcnn train` to the argparse `subparsers` as `name`: its options, the run
    directory's layout as epilog, and `run`."""
    parser = subparsers.add_parser(
        name, help="train a model on a COCO-format dataset", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", help="YAML config file (every field of the config classes)")
    source.add_argument("--model", help="preset name, e.g. maskrcnn_r50_fpn, maskrcnn_r18_fpn")
    parser.add_argument("--data", required=True, help="training annotations: COCO json, or any "
                        "export convert-dataset reads (converted into OUT/data/)")
    parser.add_argument("--images", default=None, help="training images folder (default: found "
                        "beside the annotations)")
    parser.add_argument("--out", required=True, help="run directory (config, logs, checkpoints)")
    parser.add_argument("--val-data", default="", help="validation annotations (as --data)")
    parser.add_argument("--val-images", default="", help="validation images folder")
    add_set_option(parser, "config overrides, e.g. solver.max_iter=100 input.min_size=[512]")
    parser.add_argument("--weights", default=None, metavar="SOURCE",
                        help="start from these weights: a file (ours, torchvision, mmdetection, "
                             "detectron2, a torchvision ImageNet ResNet), a named source from "
                             "`maskrcnn weights list`, or imagenet (the preset's ImageNet trunk); a file with an embedded config brings its "
                             "architecture (--set still applies after). Recorded as model.weights")
    parser.add_argument("--budget", default=None, metavar="DURATION",
                        help="train for this long (90s, 30m, 1h: steps and evaluations), the "
                             "warm-up and learning-rate decay fitted to it; sets solver.time_budget")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the run directory's last checkpoint (takes "
                             "precedence over --weights, which only starts new runs)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None,
                        help="default: cuda when available, else cpu")
    parser.set_defaults(run=run)


def build_config(args):
    """The run's config: file or preset, then the --weights file's architecture (if it embeds
    one), then --set overrides, then the data paths."""
    cfg = load_yaml(args.config) if args.config else get_preset(args.model)
    if args.weights == IMAGENET:
        args.weights = imagenet_source(args.model or cfg.name)
    if args.weights:
        cfg = config_for_weights(cfg, args.weights)
        set_value(cfg, "model.weights", args.weights, source="--weights")
    if args.budget:
        set_value(cfg, "solver.time_budget", parse_duration(args.budget), source="--budget")
    apply_overrides(cfg, args.set)
    formats.use_exports(args, Path(args.out) / "data")  # any tool's export -> COCO json
    paths = {"train_ann": args.data, "train_images": args.images,
             "val_ann": args.val_data, "val_images": args.val_images}  # fmt: skip
    for key, path in paths.items():
        # absolute, so the run's config.yaml still works from another directory
        set_value(cfg, f"data.{key}", str(Path(path).resolve()) if path else "", source="arguments")
    return cfg


def run(args) -> int:
    """`maskrcnn train`: build the config (`build_config`) and train it into the run directory
    `--out` (config.yaml, metrics.jsonl, checkpoints, model_final.pt, model_best.pt with a
    validation set), resuming with `--resume`; the main process prints a one-line summary.
    Returns 0.

    Raises:
        UserError: a bad config, override, dataset or weights source, found before the first
            iteration.
    """
    from ..training import distributed
    from ..training.trainer import summary_line, train

    cfg = build_config(args)
    try:
        last = train(cfg, args.out, resume=args.resume, device=args.device)
    finally:
        distributed.shutdown()
    if int(os.environ.get("RANK", "0")) == 0:
        print(summary_line(args.out, last))
    return 0

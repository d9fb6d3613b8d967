"""`maskrcnn bench`: inference latency (p50/p90), images/s, peak memory and per-stage times.

Every requested variant (plain modules, the fp32 and bf16 fast paths, an ONNX Runtime file) runs
on the same images in one run, alternating image by image. torchvision's twin is measured beside
ours by `benchmarks/infer_vs_torchvision.py`, which uses the same machinery: the package itself
never imports torchvision's detection models.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

from ..cli import add_set_option
from ..config import parse_overrides
from ..evaluation.benchmark import Runner, format_report, our_stage_spans, run_benchmark, summary
from ..errors import UserError
from .predict import collect_images

logger = logging.getLogger(__name__)


def add_parser(subparsers, name: str) -> None:
    """Add `maskrcnn bench` to the argparse `subparsers` as `name`: its options and `run`."""
    parser = subparsers.add_parser(name, help="inference latency, throughput, memory and time per stage")
    parser.add_argument("--model", required=True, nargs="+",
                        help="model preset(s), e.g. maskrcnn_r50_fpn; several are measured side by side")
    parser.add_argument("--weights", help="weights file (one --model only); omit for seeded random weights")
    parser.add_argument("--images", required=True, nargs="+", help="image files or folders")
    parser.add_argument("--size", type=int, default=800, help="short side the images are resized to")
    parser.add_argument("--precision", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"],
                        help="fast-path precisions to measure (default: both)")
    parser.add_argument("--plain", action="store_true",
                        help="also measure the model as built (no folding, NCHW, fp32): the 'before'")
    parser.add_argument("--compile", action="store_true", help="torch.compile the backbone")
    parser.add_argument("--onnx", metavar="FILE", nargs="+", default=[],
                        help="also measure these .onnx files (fp32 or int8) with ONNX Runtime")
    parser.add_argument("--max-images", type=int, default=4, help="use the first N images")
    parser.add_argument("--repeats", type=int, default=2, help="passes over the images")
    parser.add_argument("--score-thresh", type=float, default=0.0,
                        help="box score threshold (default 0: the full 100 detections reach the mask head)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--json", metavar="FILE", help="also write the numbers to this json file")
    add_set_option(parser, "config overrides passed to load_model")
    parser.set_defaults(run=run)


def run(args) -> int:
    """`maskrcnn bench`: load the first `--max-images` images, build one runner per preset and
    variant (plain, fp32/bf16 fast paths, ONNX files), time them image by image alternating for
    `--repeats` passes, print the latency (ms, p50/p90), images/s, peak memory and per-stage table,
    and with `--json` write the same numbers. Returns 0.

    Raises:
        UserError: `--max-images` or `--repeats` below 1, `--weights` with several `--model`, an
            unwritable `--json`, unreadable images.
    """
    from ..data.images import read_image
    from ..fileio import check_output_file, write_json_atomic

    if args.max_images < 1 or args.repeats < 1:
        raise UserError("--max-images and --repeats must be at least 1")
    if args.weights and len(args.model) > 1:
        raise UserError("--weights fits one --model; measure several presets with random weights")
    if args.json:
        check_output_file(args.json, "--json")
    images = [read_image(p) for p in collect_images(args.images)[: args.max_images]]
    runners = build_runners(args)
    print(f"{len(images)} images at {args.size} px x {args.repeats} repeats, device {args.device}")
    run_benchmark(runners, images, args.repeats, device=args.device, progress=logger.info)
    print(format_report(runners, reference=runners[0].name if args.plain else None))
    if args.json:
        write_json_atomic(args.json, {"images": len(images), "size": args.size, "repeats": args.repeats,
                                      "runners": [summary(r) for r in runners]})
    return 0


def build_runners(args) -> list[Runner]:
    """One `Runner` per (preset, variant): the plain model with `--plain`, then each `--precision`
    fast path, each loaded at short side `--size` px (long side at most size * 1333 / 800) with
    `--score-thresh` and `--set` overrides; then one per `--onnx` file (ONNX Runtime, fp32 or int8
    as its metadata says). A runner maps a (3, H, W) image tensor to its number of detections."""
    import torch

    from .. import load_model

    overrides = {"min_size": args.size, "max_size": round(args.size * 1333 / 800),
                 "box_score_thresh": args.score_thresh, **parse_overrides(args.set)}
    variants = ([None] if args.plain else []) + list(dict.fromkeys(args.precision))
    runners = []
    for preset in dict.fromkeys(args.model):
        prefix = preset if len(args.model) > 1 else "maskrcnn"
        for precision in variants:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # random weights warn; the header says so
                model = load_model(preset, weights=args.weights, device=args.device,
                                   precision=precision, compile=args.compile, **overrides)
            runners.append(Runner(f"{prefix} {precision or 'plain'}",
                                  _torch_runner(model, torch.device(args.device)), our_stage_spans(model)))
    for path in args.onnx:
        from ..deploy.onnx_runner import OnnxPredictor

        predictor = OnnxPredictor(path)
        kind = "int8" if "quantization" in predictor.info else "fp32"
        runners.append(Runner(f"onnxruntime {kind} {Path(path).name}",
                              (lambda p: lambda image: len(p.predict(image)))(predictor)))
    return runners


def _torch_runner(model, device):
    def run(image):
        return len(model.predict(image.to(device))[0])

    return run

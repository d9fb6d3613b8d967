"""`maskrcnn export`: write a model as a self-contained ONNX file for onnxruntime."""

from __future__ import annotations

import time
import warnings

from ..cli import add_set_option
from ..config import parse_overrides
from ..errors import UserError
from ..fileio import check_output_file

FORMATS = ("onnx",)


def add_parser(subparsers, name: str) -> None:
    parser = subparsers.add_parser(
        name, help="export a model to ONNX (run it with: maskrcnn predict --backend onnxruntime)",
        description="Trace a model into one .onnx file that holds the weights and, as metadata, "
                    "everything a runner needs (classes, input size, outputs). The graph takes any "
                    "image size. Thresholds (box score, NMS, detections per image) are baked in: "
                    "set them at export with --set, e.g. --set box_score_thresh=0.3.")
    parser.add_argument("--model", required=True, help="model preset, e.g. maskrcnn_r50_fpn")
    parser.add_argument("--weights", help="weights file (ours or torchvision's); omit for random weights")
    parser.add_argument("--format", default="onnx", help="export format (only: onnx)")
    parser.add_argument("--out", required=True, help="the .onnx file to write")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (>= 16; default 17)")
    add_set_option(parser, "config overrides passed to load_model, e.g. box_score_thresh=0.3 "
                           "min_size=600")
    parser.set_defaults(run=run)


def run(args) -> int:
    from .. import load_model
    from ..deploy.onnx_export import export_onnx
    from ..weights import resolve_weights

    if args.format not in FORMATS:
        raise UserError(f"unsupported --format '{args.format}' (supported: {', '.join(FORMATS)})")
    out = check_output_file(args.out)  # before the minutes of tracing
    if args.weights is not None:
        resolve_weights(args.weights)  # a missing file or unknown source name fails before any work
    overrides = parse_overrides(args.set)
    with warnings.catch_warnings():
        if args.weights is None:  # said below, once, instead of as a Python warning
            warnings.filterwarnings("ignore", message=".*no weights given.*")
        model = load_model(args.model, weights=args.weights, **overrides)
    start = time.perf_counter()
    meta = export_onnx(model, out, opset=args.opset)
    size_mb = out.stat().st_size / 1e6
    print(f"wrote {out} ({size_mb:.1f} MB, opset {args.opset}, outputs: {', '.join(meta['outputs'])}) "
          f"in {time.perf_counter() - start:.1f} s"
          + ("; random weights (no --weights given)" if args.weights is None else ""))
    return 0

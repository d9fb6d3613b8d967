"""`maskrcnn export`: write a model as a self-contained ONNX file for onnxruntime."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

from ..cli import add_set_option
from ..config import parse_overrides
from ..errors import UserError
from ..fileio import check_output_file

FORMATS = ("onnx",)
QUANTIZE = ("int8",)


def add_parser(subparsers, name: str) -> None:
    """Add `maskrcnn export` to the argparse `subparsers` as `name`: its options and `run`."""
    parser = subparsers.add_parser(
        name, help="export a model to ONNX (run it with: maskrcnn predict --backend onnxruntime)",
        description="Trace a model into one .onnx file that holds the weights and, as metadata, "
                    "everything a runner needs (classes, input size, outputs). The graph takes a "
                    "batch of any size of images of any size. Thresholds (box score, NMS, "
                    "detections per image) are baked in: set them at export with --set, e.g. "
                    "--set box_score_thresh=0.3.")
    parser.add_argument("--model", required=True, help="model preset, e.g. maskrcnn_r50_fpn")
    parser.add_argument("--weights", help="weights file (ours or torchvision's); omit for random weights")
    parser.add_argument("--format", default="onnx", help="export format (only: onnx)")
    parser.add_argument("--out", required=True, help="the .onnx file to write")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (>= 16; default 17)")
    parser.add_argument("--paste-masks", action="store_true",
                        help="also paste masks at each image's full resolution inside the graph "
                             "(output 'masks', beside the 28x28 'mask_probs'; for runners in other "
                             "languages; the graph then takes 'original_sizes' too)")
    parser.add_argument("--quantize", choices=QUANTIZE, help="int8: static QDQ quantisation for "
                        "onnxruntime (int8 per-channel weights, uint8 activations; output layers "
                        "stay float); needs --calibration-images")
    parser.add_argument("--calibration-images", metavar="DIR",
                        help="images (a folder or files) whose activation ranges calibrate --quantize")
    parser.add_argument("--calibration-count", type=int, default=16, metavar="N",
                        help="use the first N calibration images (default 16)")
    add_set_option(parser, "config overrides passed to load_model, e.g. box_score_thresh=0.3 "
                           "min_size=600")
    parser.set_defaults(run=run)


def run(args) -> int:
    """`maskrcnn export`: load `--model` with `--weights` (random weights when omitted) and the `--set`
    overrides, trace it into one self-contained .onnx file at `--out` (weights and metadata;
    with `--quantize int8` statically quantised on the calibration images), print its size (MB),
    outputs and the time it took. Returns 0.

    Raises:
        UserError: a `--format` other than onnx, `--quantize` without `--calibration-images` (or
            the reverse), `--calibration-count` < 1, an unreadable calibration image, missing
            weights, an unwritable `--out`; all checked before tracing.
    """
    from .. import load_model
    from ..deploy.onnx_export import export_onnx
    from ..weights import resolve_weights

    if args.format not in FORMATS:
        raise UserError(f"unsupported --format '{args.format}' (supported: {', '.join(FORMATS)})")
    out = check_output_file(args.out)  # before the minutes of tracing
    calibration = _calibration_files(args)
    if args.weights is not None:
        resolve_weights(args.weights)  # a missing file or unknown source name fails before any work
    overrides = parse_overrides(args.set)
    with warnings.catch_warnings():
        if args.weights is None:  # said below, once, instead of as a Python warning
            warnings.filterwarnings("ignore", message=".*no weights given.*")
        model = load_model(args.model, weights=args.weights, **overrides)
    start = time.perf_counter()
    if calibration:
        meta = _export_int8(model, out, args.opset, calibration, args.paste_masks)
    else:
        meta = export_onnx(model, out, opset=args.opset, paste_masks=args.paste_masks)
    size_mb = out.stat().st_size / 1e6
    kind = f", int8 with {len(meta['quantization']['float_nodes'])} float layers" if calibration else ""
    print(f"wrote {out} ({size_mb:.1f} MB, opset {args.opset}{kind}, outputs: {', '.join(meta['outputs'])}) "
          f"in {time.perf_counter() - start:.1f} s"
          + ("; random weights (no --weights given)" if args.weights is None else ""))
    return 0


def _calibration_files(args) -> list[Path]:
    """The calibration images --quantize needs, each decoded once (checked before any work);
    [] without it."""
    from ..data.images import read_image
    from .predict import collect_images

    if args.quantize is None:
        if args.calibration_images:
            raise UserError("--calibration-images only applies with --quantize int8")
        return []
    if not args.calibration_images:
        raise UserError("--quantize int8 needs --calibration-images DIR (a few images like those "
                        "the model will see)")
    if args.calibration_count < 1:
        raise UserError(f"--calibration-count must be at least 1, got {args.calibration_count}")
    files = collect_images([args.calibration_images])[: args.calibration_count]
    for path in files:  # decoded once now: an unreadable image stops the run before the export
        read_image(path)
    return files


def _export_int8(model, out: Path, opset: int, files: list[Path], paste_masks: bool) -> dict:
    """Export float to a temporary file, then quantise it with `files` as calibration."""
    import tempfile

    from ..data.images import read_image
    from ..deploy.onnx_export import export_onnx
    from ..deploy.onnx_runner import OnnxPredictor
    from ..deploy.quantize import float_layer_keys, quantize_onnx

    with tempfile.TemporaryDirectory() as tmp:
        float_path = Path(tmp) / "float.onnx"
        export_onnx(model, float_path, opset=opset, paste_masks=paste_masks)
        runner = OnnxPredictor(float_path)  # calibrate on what the runner feeds
        feeds = (runner.graph_inputs([read_image(f)]) for f in files)
        return quantize_onnx(float_path, out, feeds, float_layer_keys(model))

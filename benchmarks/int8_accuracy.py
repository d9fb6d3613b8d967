"""COCO AP and latency of one trained model exported to ONNX in fp32 and int8, in ONNX Runtime.

Exports the model as `maskrcnn export --format onnx [--quantize int8 --calibration-images]`
does (int8 calibrated on the first --calibration-count training images), evaluates both files on
the held-out images through `maskrcnn.deploy.OnnxPredictor`, and times them alternating image by
image. Default: the `make demo` model (ResNet-18 FPN on synthetic shapes, 128 px). Usage:
  python benchmarks/int8_accuracy.py [--run runs/demo] [--calibration-count 16]
  python benchmarks/int8_accuracy.py --run OUT --model maskrcnn_effl0_fpn --weights W --data VAL.json \
      --images DIR --calibration-images DIR
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from maskrcnn import load_model
from maskrcnn.cli import main as cli
from maskrcnn.deploy import OnnxPredictor
from maskrcnn.evaluation.evaluator import evaluate_model


class _Evaluated:
    """What evaluate_model needs of a model: its config and predict(list of paths)."""

    def __init__(self, predictor: OnnxPredictor, cfg):
        self.predictor, self.cfg = predictor, cfg

    def predict(self, images):
        return self.predictor.predict(images)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="runs/demo", help="a `maskrcnn demo --out` folder")
    parser.add_argument("--model", default="maskrcnn_r18_fpn")
    parser.add_argument("--weights", help="trained weights (default: RUN/model.safetensors)")
    parser.add_argument("--data", help="held-out COCO json (default: RUN/data/val/annotations.json)")
    parser.add_argument("--images", help="its images folder (default: beside --data)")
    parser.add_argument("--calibration-count", type=int, default=16)
    parser.add_argument("--calibration-images", help="default: RUN/data/train/images")
    args = parser.parse_args()
    run = Path(args.run)
    weights = Path(args.weights or run / "model.safetensors")
    ann = Path(args.data or run / "data" / "val" / "annotations.json")
    images = Path(args.images or ann.parent / "images")
    out = Path(tempfile.mkdtemp())
    common = ["export", "--model", args.model, "--weights", str(weights), "--format", "onnx"]
    cli([*common, "--out", str(out / "fp32.onnx")])
    cli([*common, "--out", str(out / "int8.onnx"), "--quantize", "int8", "--calibration-images",
         str(args.calibration_images or run / "data" / "train" / "images"),
         "--calibration-count", str(args.calibration_count)])
    cfg = load_model(args.model, weights=weights, precision=None).cfg
    rows = {}
    for name in ("fp32", "int8"):
        predictor = OnnxPredictor(out / f"{name}.onnx")
        metrics = evaluate_model(_Evaluated(predictor, cfg), images, ann, out / f"eval_{name}")
        rows[name] = (metrics, predictor)
    timed = [images / i["file_name"] for i in json.loads(ann.read_text())["images"][:20]]
    times = {name: [] for name in rows}
    with torch.inference_mode():
        for path in timed * 2:
            for name, (_, predictor) in rows.items():
                start = time.perf_counter()
                predictor.predict(path)
                times[name].append(time.perf_counter() - start)
    print(f"{weights} on {ann} ({args.model}); files in {out}")
    print(f"{'onnxruntime':12s}{'mask AP':>9s}{'box AP':>8s}{'p50 ms':>8s}")
    for name, (m, _) in rows.items():
        p50 = 1000 * statistics.median(times[name])
        print(f"{name:12s}{100 * m['segm/AP']:9.2f}{100 * m['bbox/AP']:8.2f}{p50:8.1f}")
    diff = 100 * (rows["int8"][0]["segm/AP"] - rows["fp32"][0]["segm/AP"])
    print(f"mask AP int8 - fp32 = {diff:+.2f} points; latency fp32 / int8 = "
          f"{statistics.median(times['fp32']) / statistics.median(times['int8']):.2f}x")


if __name__ == "__main__":
    main()

"""COCO AP of one trained model on the plain, fp32 and bf16 inference paths, same images.

The bf16 path quantises the feature layers' weights and activations; this measures what that
costs in accuracy on a model trained in this repo (by default the `make demo` model: ResNet-18
FPN on synthetic shapes, evaluated on its 50 held-out images). Usage:
  make demo && python benchmarks/bf16_accuracy.py [--run runs/demo]
  python benchmarks/bf16_accuracy.py --run OUT --model maskrcnn_effl0_fpn --weights W --data VAL.json --images DIR
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from maskrcnn import load_model
from maskrcnn.evaluation.evaluator import evaluate_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="runs/demo", help="a `maskrcnn demo --out` folder")
    parser.add_argument("--model", default="maskrcnn_r18_fpn")
    parser.add_argument("--weights", help="trained weights (default: RUN/model.safetensors)")
    parser.add_argument("--data", help="held-out COCO json (default: RUN/data/val/annotations.json)")
    parser.add_argument("--images", help="its images folder (default: beside --data)")
    args = parser.parse_args()
    run = Path(args.run)
    weights = Path(args.weights or run / "model.safetensors")
    ann = Path(args.data or run / "data" / "val" / "annotations.json")
    images = Path(args.images or ann.parent / "images")
    rows = {}
    for precision in (None, "fp32", "bf16"):
        model = load_model(args.model, weights=weights, precision=precision)
        start = time.perf_counter()
        metrics = evaluate_model(model, images, ann, run / f"eval_{precision or 'plain'}")
        rows[precision or "plain"] = (metrics, time.perf_counter() - start)
    print(f"{weights} on {ann} ({args.model})")
    print(f"{'path':8s}{'mask AP':>9s}{'mask AP50':>11s}{'box AP':>8s}{'seconds':>9s}")
    for name, (m, seconds) in rows.items():
        print(f"{name:8s}{100 * m['segm/AP']:9.2f}{100 * m['segm/AP50']:11.2f}{100 * m['bbox/AP']:8.2f}{seconds:9.1f}")
    diff = 100 * (rows["bf16"][0]["segm/AP"] - rows["fp32"][0]["segm/AP"])
    print(f"mask AP bf16 - fp32 = {diff:+.2f} points")


if __name__ == "__main__":
    main()

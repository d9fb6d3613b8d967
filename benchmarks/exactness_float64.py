"""Errors against float64 of torchvision's fp32 model and of each of our runners, many seeds.

The harness is tests/model/exactness.py (trained-like weights, our plain model in float64 as the
referee); tests/model/test_exactness_float64.py runs 3 seeds per model, this runs --seeds and
adds bf16 and ONNX Runtime (fp32), which the test leaves out for time. For each model, runner
and quantity it prints the worst error over all images and the worst per-image ratio to
torchvision's own error (the larger of its NCHW run and its channels-last run, "tv NHWC"), and
the lost detections. Usage:
  python benchmarks/exactness_float64.py [--seeds 6] [--size 320] [--kinds v1 v2 keypoint] [--onnx]
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
from pathlib import Path


from maskrcnn.data.images import read_image
from maskrcnn.model.fast_inference import prepare_for_inference

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "model"))
from exactness import (QUANTITIES, build_pair, compare, float64_model, from_instances, judge,  # noqa: E402
                       run_ours, score_cut, torchvision_envelope)

PENNFUDAN = ROOT / ".." / "shared" / "data" / "pennfudan" / "PNGImages"


def onnx_runner(plain):
    from maskrcnn.deploy import OnnxPredictor, export_onnx

    path = Path(tempfile.mkdtemp()) / "model.onnx"
    export_onnx(plain, path)
    predictor = OnnxPredictor(path)
    return lambda image: from_instances(predictor.predict(image, keep_mask_probs=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--detections", type=int, default=30)
    parser.add_argument("--kinds", nargs="+", default=["v1", "v2", "keypoint"])
    parser.add_argument("--onnx", action="store_true", help="also ONNX Runtime fp32 (slow to export)")
    args = parser.parse_args()
    files = sorted(PENNFUDAN.glob("*.png"))
    for kind in args.kinds:
        dets = 10 if kind == "keypoint" else args.detections
        size = {"min_size": args.size, "max_size": round(args.size * 1333 / 800),
                "rpn_post_nms_top_n_test": 300, "box_detections_per_img": dets}
        table: dict[str, dict] = {}
        for seed in range(args.seeds):
            image = read_image(files[(seed * 37) % len(files)])
            ref, plain = build_pair(kind, seed, image, **size)
            truth = run_ours(float64_model(plain), image)
            cut = score_cut(truth, ref.roi_heads.score_thresh, dets)
            theirs = torchvision_envelope(ref, image, truth, cut)
            runners = {"plain": lambda img, m=plain: run_ours(m, img)}
            for precision in ("fp32", "bf16"):
                fast = prepare_for_inference(copy.deepcopy(plain), precision)
                runners[precision] = lambda img, m=fast: run_ours(m, img)
            if args.onnx:
                runners["onnx fp32"] = onnx_runner(plain)
            _add(table, "torchvision", theirs.runs[0], theirs)
            _add(table, "tv NHWC", theirs.runs[1], theirs)
            for name, run in runners.items():
                match_px = 8.0 if name == "bf16" else 2.0
                _add(table, name, compare(truth, run(image), cut, match_px=match_px), theirs)
            print(f"{kind} seed {seed}: {len(truth)} float64 detections, score cut {cut:.3f}", flush=True)
        _print(kind, table, args)


def _add(table, name, comparison, theirs) -> None:
    row = table.setdefault(name, {"worst": dict.fromkeys(QUANTITIES, 0.0), "ratio": dict.fromkeys(QUANTITIES, 0.0),
                                  "lost": 0, "failed": 0, "flips": 0})
    for q in QUANTITIES:
        row["worst"][q] = max(row["worst"][q], comparison.worst(q))
        if theirs.worst(q) > 0:
            row["ratio"][q] = max(row["ratio"][q], comparison.worst(q) / theirs.worst(q))
    row["lost"] += len(comparison.lost)
    row["flips"] += comparison.keypoint_flips
    row["failed"] += bool(judge(comparison, theirs))


def _print(kind, table, args) -> None:
    print(f"\n{kind}: worst error vs float64 over {args.seeds} seeds at {args.size} px "
          "(in brackets: worst per-image ratio to torchvision's error)")
    print(f"{'runner':12s}" + "".join(f"{q:>22s}" for q in QUANTITIES)
          + f"{'lost':>6s}{'kp moved':>9s}{'fails':>9s}")
    for name, row in table.items():
        cells = "".join(f"{row['worst'][q]:>12.2e} ({row['ratio'][q]:5.2f}x)" for q in QUANTITIES)
        print(f"{name:12s}{cells}{row['lost']:>6d}{row['flips']:>9d}{row['failed']:>9d}")


if __name__ == "__main__":
    main()

"""Test-time augmentation: COCO AP with and without TTA for one trained model, in one run, and
what TTA costs (its wall time over plain inference's on the same images, alternating per image).

Usage: python benchmarks/tta_accuracy.py --model maskrcnn_effl0_fpn --weights RUN/model_best.pt \
    --data val.json --images IMAGES [--scales 224 288 352] [--no-flip] [--threads 1] [--out PREFIX]
Writes PREFIX.json and PREFIX.md (default benchmarks/results/tta_accuracy.*).
--smoke: a seeded random model on two generated images (seconds; the test suite runs it).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="maskrcnn_effl0_fpn")
    parser.add_argument("--weights")
    parser.add_argument("--data", help="COCO ground truth of the images")
    parser.add_argument("--images", help="folder the ground truth's file names are relative to")
    parser.add_argument("--scales", type=int, nargs="+", help="TTA short sides (default: the model's, x0.8 and x1.2)")
    parser.add_argument("--no-flip", action="store_true")
    parser.add_argument("--box-voting", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "tta_accuracy"))
    parser.add_argument("--smoke", action="store_true")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    import torch

    args = parse(argv)
    torch.set_num_threads(args.threads)
    if args.smoke:
        return _smoke(args)
    from maskrcnn import load_model
    from maskrcnn.config import parse_overrides

    model = load_model(args.model, weights=args.weights, precision="fp32", **parse_overrides(args.set))
    base = model.cfg.input.min_size[-1]
    scales = tuple(args.scales or (round(base * 0.8), base, round(base * 1.2)))
    report = measure(model, args.data, args.images, scales, not args.no_flip, args.box_voting)
    report["command"] = " ".join(sys.argv)
    report["weights"] = args.weights
    write(report, Path(args.out))
    print(Path(f"{args.out}.md").read_text())
    return 0


def measure(model, ann_file, images_dir, scales, flip, box_voting) -> dict:
    """AP of both runners on every image of `ann_file`; time per image of each, alternating."""
    from maskrcnn.data.images import read_image
    from maskrcnn.evaluation.evaluator import evaluate_results, instances_to_results

    gt = json.loads(Path(ann_file).read_text())
    tta = model.cfg.test.tta
    tta.scales, tta.flip, tta.box_voting = scales, flip, box_voting
    results = {"plain": [], "tta": []}
    seconds = {"plain": 0.0, "tta": 0.0}
    for record in gt["images"]:
        image = read_image(Path(images_dir) / record["file_name"])
        for name in ("plain", "tta"):
            start = time.perf_counter()
            instances = model.predict(image, tta=name == "tta")[0]
            seconds[name] += time.perf_counter() - start
            results[name] += instances_to_results(instances, record["id"], model.cfg.model.category_ids)
    metrics = {name: evaluate_results(found, ann_file, ["bbox", "segm"]) for name, found in results.items()}
    return {"images": len(gt["images"]), "scales": list(scales), "flip": flip, "box_voting": box_voting,
            "metrics": metrics, "seconds": seconds, "cost": seconds["tta"] / seconds["plain"],
            "cpu": platform.processor() or platform.machine(), "threads": __import__("torch").get_num_threads()}


def write(report: dict, out: Path) -> None:
    from maskrcnn.fileio import write_json_atomic, write_text_atomic

    out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(Path(f"{out}.json"), report)
    views = len(report["scales"]) * (1 + report["flip"])
    lines = [f"Test-time augmentation on {report['images']} images: scales {report['scales']}"
             f"{', flipped' if report['flip'] else ''} ({views} views){', box voting' if report['box_voting'] else ''}; "
             f"{report['threads']} thread(s)", "",
             "| runner | mask AP | mask AP50 | mask AP75 | box AP | seconds per image |", "|---|---|---|---|---|---|"]
    for name in ("plain", "tta"):
        m = {k: 100 * v for k, v in report["metrics"][name].items()}  # COCO AP in points
        lines.append(f"| {name} | {m['segm/AP']:.1f} | {m['segm/AP50']:.1f} | {m['segm/AP75']:.1f} | "
                     f"{m['bbox/AP']:.1f} | {report['seconds'][name] / report['images']:.2f} |")
    gain = 100 * (report["metrics"]["tta"]["segm/AP"] - report["metrics"]["plain"]["segm/AP"])
    lines += ["", f"TTA: mask AP {gain:+.1f} points for {report['cost']:.2f}x the inference time."]
    write_text_atomic(Path(f"{out}.md"), "\n".join(lines) + "\n")


def _smoke(args) -> int:
    import warnings

    from maskrcnn import load_model
    from maskrcnn.data.synthetic import write_synthetic_dataset

    work = Path(tempfile.mkdtemp())
    ann = write_synthetic_dataset(work, num_images=2, seed=0, size=64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = load_model("maskrcnn_r18_fpn", weights=None, min_size=64, max_size=64, box_score_thresh=0.0,
                           num_classes=4, rpn_post_nms_top_n_test=50, box_detections_per_img=10)
    report = measure(model, ann, Path(ann).parent / "images", (48, 64), True, False)
    write(report, Path(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())

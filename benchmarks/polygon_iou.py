"""How well exported polygons keep real masks: DSB2018 nuclei ground-truth masks -> polygons
(maskrcnn.export_formats, as `predict --export` traces them) -> pycocotools rasterisation -> IoU
with the mask, per --polygon-tolerance; and the tracing time per instance.

    python benchmarks/polygon_iou.py [--data ../shared/data/dsb2018_nuclei] [--images 10]
    python benchmarks/polygon_iou.py --smoke    # one image, for the test

Prints one line per tolerance and writes --out (JSON) with the same numbers.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from maskrcnn.export_formats.polygons import mask_to_polygons  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "dsb2018_nuclei"


def polygon_iou(mask: np.ndarray, tolerance: float) -> tuple[float, float]:
    """(IoU of the traced polygons' rasterisation with `mask`, seconds spent tracing)."""
    start = time.perf_counter()
    polygons = mask_to_polygons(mask, tolerance)
    seconds = time.perf_counter() - start
    height, width = mask.shape
    if not polygons:
        return 0.0, seconds
    rles = mask_utils.frPyObjects([p.reshape(-1).tolist() for p in polygons], height, width)
    drawn = mask_utils.decode(mask_utils.merge(rles)).astype(bool)
    return float((drawn & mask).sum() / (drawn | mask).sum()), seconds


def run(data: Path, images: int, tolerances: list[float]) -> dict:
    folders = sorted(p for p in data.iterdir() if (p / "masks").is_dir())[:images]
    masks = [np.asarray(Image.open(p)) > 0 for f in folders for p in sorted((f / "masks").glob("*.png"))]
    report = {"images": len(folders), "instances": len(masks),
              "median_area_px": float(np.median([m.sum() for m in masks])), "tolerances": {}}
    for tolerance in tolerances:
        ious, seconds = np.array([polygon_iou(m, tolerance) for m in masks]).T
        report["tolerances"][str(tolerance)] = {
            "iou_min": float(ious.min()), "iou_median": float(np.median(ious)),
            "fraction_iou_ge_0.98": float((ious >= 0.98).mean()), "ms_per_instance": 1000 * float(seconds.mean())}
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA, help="a DSB2018 stage1_train-style folder")
    parser.add_argument("--images", type=int, default=10, help="how many image folders (sorted by id)")
    parser.add_argument("--tolerances", type=float, nargs="+", default=[1.0, 0.5, 0.0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/polygon_iou.json"))
    parser.add_argument("--smoke", action="store_true", help="one image")
    args = parser.parse_args(argv)
    report = run(args.data, 1 if args.smoke else args.images, args.tolerances)
    print(f"{report['instances']} instances in {report['images']} images, median area "
          f"{report['median_area_px']:.0f} px")
    for tolerance, row in report["tolerances"].items():
        print(f"tolerance {tolerance}: IoU min {row['iou_min']:.3f}, median {row['iou_median']:.4f}, "
              f">= 0.98 for {100 * row['fraction_iou_ge_0.98']:.1f}%, {row['ms_per_instance']:.2f} ms/instance")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

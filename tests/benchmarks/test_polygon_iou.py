"""benchmarks/polygon_iou.py --smoke on one nuclei image (real or stand-in): it counts the image's
mask files, and at tolerance 0 the polygons rasterise back to every mask exactly (IoU 1)."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import polygon_iou  # noqa: E402


def test_smoke(shared_data, tmp_path):
    data = shared_data / "dsb2018_nuclei"
    out = tmp_path / "polygon_iou.json"
    assert polygon_iou.main(["--smoke", "--data", str(data), "--tolerances", "0", "1", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    first = sorted(p for p in data.iterdir() if (p / "masks").is_dir())[0]
    assert report["images"] == 1 and report["instances"] == len(list((first / "masks").glob("*.png")))
    exact, simplified = report["tolerances"]["0.0"], report["tolerances"]["1.0"]
    assert exact["iou_min"] == 1.0
    assert 0.5 < simplified["iou_median"] <= 1.0

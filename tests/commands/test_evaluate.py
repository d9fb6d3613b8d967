"""`maskrcnn eval --data` takes a labelling tool's export as train does: the real VIA balloon
export (tests/data/fixtures/via), scored against pycocotools on the COCO file convert-dataset
writes from it."""

import json
import sys
from pathlib import Path

from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from maskrcnn.cli import main

sys.path.insert(0, str(Path(__file__).parents[1] / "data"))
from real_exports import blank_image, copy_fixture  # noqa: E402
from test_via import BALLOON_SIZES  # noqa: E402


def test_eval_scores_a_via_export_as_its_converted_coco(tmp_path, capsys):
    folder = tmp_path / "balloon" / "val"
    path = copy_fixture("via", "via_region_data.json", folder)
    for name, (h, w) in BALLOON_SIZES.items():
        blank_image(folder / name, h, w)
    coco_file = tmp_path / "gt.json"
    assert main(["convert-dataset", str(path), "--out", str(coco_file)]) == 0
    gt = json.loads(coco_file.read_text())
    # detections: the ground truth, every other object left out and the rest scored in turn
    results = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"],
                "score": 1.0 - i / 100} for i, a in enumerate(gt["annotations"]) if i % 2 == 0]
    (tmp_path / "results.json").write_text(json.dumps(results))
    assert main(["eval", "--results", str(tmp_path / "results.json"), "--data", str(path),
                 "--out", str(tmp_path / "eval")]) == 0
    assert "detected via" in capsys.readouterr().out
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    reference = COCOeval(COCO(str(coco_file)), COCO(str(coco_file)).loadRes(results), "bbox")
    reference.evaluate(), reference.accumulate(), reference.summarize()
    assert 0.2 < reference.stats[0] < 0.9
    assert abs(metrics["bbox/AP"] - reference.stats[0]) < 1e-12
    assert (tmp_path / "eval" / "data" / "gt" / "via_region_data.coco.json").is_file()

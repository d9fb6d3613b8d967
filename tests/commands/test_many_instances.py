"""One image with 300 instances (a nuclei-like sample): pycocotools calls on >= 256 RLEs once
overflowed. Converted, read, trained on for 2 iterations and evaluated, checked against numpy
and pycocotools."""

import contextlib
import io
import json

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from maskrcnn.cli import main
from maskrcnn.data.coco import CocoDataset

ROWS, COLS, CELL = 15, 20, 12  # 300 instances on a 240 x 180 image

TINY = [
    "input.min_size=[96]", "input.max_size=128", "model.backbone.fpn_channels=32",
    "model.rpn.pre_nms_topk_train=100", "model.rpn.post_nms_topk_train=50",
    "model.rpn.batch_size_per_image=64", "model.box.batch_size_per_image=32",
    "model.box.fc_dim=64", "model.mask.conv_dims=[16]", "data.num_workers=0",
    "solver.ims_per_batch=1", "solver.max_iter=2", "solver.warmup_iters=1", "solver.log_period=1",
]  # fmt: skip


def _blobs() -> np.ndarray:
    """(300, 180, 240) bool: one rectangle per grid cell, sizes varying with the index."""
    masks = np.zeros((ROWS * COLS, ROWS * CELL, COLS * CELL), bool)
    for i in range(ROWS * COLS):
        y, x = divmod(i, COLS)
        h, w = 3 + i % 7, 4 + i % 5
        masks[i, y * CELL + 1: y * CELL + 1 + h, x * CELL + 2: x * CELL + 2 + w] = True
    return masks


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    root = tmp_path_factory.mktemp("nuclei")
    (root / "s" / "images").mkdir(parents=True)
    (root / "s" / "masks").mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (ROWS * CELL, COLS * CELL, 3), np.uint8)).save(
        root / "s" / "images" / "s.png")
    masks = _blobs()
    for i, mask in enumerate(masks):
        Image.fromarray(mask.astype(np.uint8) * 255).save(root / "s" / "masks" / f"m{i:03d}.png")
    out = root / "nuclei.json"
    assert main(["convert-dataset", "--format", "mask-folders", str(root), "--out", str(out)]) == 0
    return out, root, masks


def test_conversion_and_reader_keep_all_300(converted):
    out, root, masks = converted
    data = json.loads(out.read_text())
    assert len(data["annotations"]) == 300
    for ann, mask in zip(data["annotations"], masks):
        rows, cols = np.nonzero(mask.any(1))[0], np.nonzero(mask.any(0))[0]
        assert ann["area"] == mask.sum()
        assert ann["bbox"] == [cols[0], rows[0], cols[-1] + 1 - cols[0], rows[-1] + 1 - rows[0]]
    _, target = CocoDataset(out, root)[0]
    assert np.array_equal(target["masks"].numpy().astype(bool), masks)
    assert target["area"].tolist() == masks.sum((1, 2)).tolist()


def test_train_two_iterations_then_evaluate(converted, tmp_path):
    out, root, _ = converted
    run = tmp_path / "run"
    assert main(["train", "--model", "maskrcnn_r18_fpn", "--data", str(out), "--images", str(root),
                 "--out", str(run), "--set", *TINY]) == 0
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
    assert main(["eval", "--model", "maskrcnn_r18_fpn", "--weights", str(run / "model_final.pt"),
                 "--data", str(out), "--images", str(root), "--out", str(tmp_path / "eval")]) == 0
    assert "segm/AP" in json.loads((tmp_path / "eval" / "metrics.json").read_text())


def test_evaluation_of_300_detections_equals_pycocotools(converted, tmp_path):
    out, _, masks = converted
    data = json.loads(out.read_text())
    rng = np.random.default_rng(1)
    # the truth as detections, shifted by 0-2 px and scored at random: AP below 1, all 300 used
    results = []
    for ann in data["annotations"]:
        x, y, w, h = ann["bbox"]
        shift = float(rng.integers(0, 3))
        results.append({"image_id": 1, "category_id": 1, "score": float(rng.random()),
                        "bbox": [x + shift, y, w, h], "segmentation": ann["segmentation"]})
    results_file = tmp_path / "results.json"
    results_file.write_text(json.dumps(results))
    assert main(["eval", "--results", str(results_file), "--data", str(out),
                 "--out", str(tmp_path / "eval")]) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(out))
        for task in ("bbox", "segm"):
            view = [{k: v for k, v in r.items() if k != ("segmentation" if task == "bbox" else "bbox")}
                    for r in results]
            reference = COCOeval(gt, gt.loadRes(view), task)
            reference.params.maxDets = [1, 10, 100]
            reference.evaluate(), reference.accumulate(), reference.summarize()
            assert metrics[f"{task}/AP"] == pytest.approx(reference.stats[0], abs=1e-9)
            assert metrics[f"{task}/AR100"] == pytest.approx(reference.stats[8], abs=1e-9)

"""`maskrcnn eval --format cityscapes` (maskrcnn/evaluation/cityscapes_eval.py) on a generated 3-image
Cityscapes folder: predictions perturbed from the truth score the same AP and AP50 as the
official cityscapesscripts run directly on the same predictions written out here (with numpy's
replacement for the `np.in1d` that numpy 2.4 removed and the scripts still call, and a json dump
of their debug file that can write numpy 2 integers)."""

import copy
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from maskrcnn.cli import main
from maskrcnn.ops.rle import encode_masks, segmentation_to_mask

benchmark = pytest.importorskip("cityscapesscripts.evaluation.evalInstanceLevelSemanticLabeling")

FRAMES = (("aachen", "000000"), ("aachen", "000001"), ("bremen", "000000"))
H, W = 96, 192


def _ids(rng) -> np.ndarray:
    ids = np.full((H, W), 7, np.uint16)  # road
    ids[:8] = 0  # unlabeled: void, ignored by the benchmark
    counts = {26: 0, 24: 0, 33: 0, 25: 0}
    for _ in range(7):
        label = int(rng.choice(list(counts)))
        h, w = rng.integers(12, 30, 2)
        y, x = rng.integers(10, H - h), rng.integers(0, W - w)
        ids[y:y + h, x:x + w] = label * 1000 + counts[label]
        counts[label] += 1
    ids[H - 12:, :20] = 26  # a group of cars: crowd
    return ids


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("cityscapes")
    rng = np.random.default_rng(0)
    for city, frame in FRAMES:
        for folder, suffix, array in (("gtFine", "gtFine_instanceIds", _ids(rng)),
                                      ("leftImg8bit", "leftImg8bit", rng.integers(0, 255, (H, W, 3), np.uint8))):
            (root / folder / "val" / city).mkdir(parents=True, exist_ok=True)
            Image.fromarray(array).save(root / folder / "val" / city / f"{city}_{frame}_000019_{suffix}.png")
    ann = root / "val.json"
    assert main(["convert-dataset", "--format", "cityscapes", str(root), "--split", "val", "--out", str(ann)]) == 0
    return root, ann, json.loads(ann.read_text())


def _perturbed(data, rng) -> list[dict]:
    images = {im["id"]: im for im in data["images"]}
    results = []
    for ann in data["annotations"]:
        if ann["iscrowd"] or rng.random() < 0.15:
            continue
        image = images[ann["image_id"]]
        mask = segmentation_to_mask(ann["segmentation"], image["height"], image["width"]).astype(bool)
        mask = np.roll(mask, tuple(rng.integers(-2, 3, 2)), axis=(0, 1))
        category = 25 if ann["category_id"] == 24 and rng.random() < 0.3 else ann["category_id"]
        results.append({"image_id": ann["image_id"], "category_id": category, "score": float(rng.uniform(0.2, 1)),
                        "segmentation": encode_masks(mask[None])[0]})
    for image in data["images"]:  # false positives
        mask = np.zeros((H, W), bool)
        mask[40:60, 100:130] = True
        results.append({"image_id": image["id"], "category_id": 26, "score": float(rng.uniform(0, 0.6)),
                        "segmentation": encode_masks(mask[None])[0]})
    return results


def _ours(root, ann, results, out):
    (out / "in").mkdir(parents=True)
    (out / "in" / "results.json").write_text(json.dumps(results))
    assert main(["eval", "--format", "cityscapes", "--results", str(out / "in" / "results.json"),
                 "--data", str(ann), "--images", str(root), "--out", str(out)]) == 0
    return json.loads((out / "metrics.json").read_text())


def _official(root, data, results, work, monkeypatch):
    """The benchmark's submission format written here, scored by cityscapesscripts itself."""
    predictions, gts = [], []
    (work / "pred" / "m").mkdir(parents=True)
    for image in data["images"]:
        city, seq, frame = image["file_name"].split("/")[-1].split("_")[:3]
        lines = []
        for i, r in enumerate(x for x in results if x["image_id"] == image["id"]):
            png = f"{city}_{seq}_{frame}_{i}.png"
            Image.fromarray(segmentation_to_mask(r["segmentation"], H, W) * 255).save(work / "pred" / "m" / png)
            lines.append(f"m/{png} {r['category_id']} {r['score']}\n")
        (work / "pred" / f"{city}_{seq}_{frame}_pred.txt").write_text("".join(lines))
        predictions.append(str(work / "pred" / f"{city}_{seq}_{frame}_pred.txt"))
        gts.append(str(root / "gtFine" / "val" / city / f"{city}_{seq}_{frame}_gtFine_instanceIds.png"))
    args = copy.copy(benchmark.args)
    args.gtInstancesFile = str(work / "gt.json")
    args.predictionPath, args.JSONOutput, args.quiet = str(work / "pred"), False, True
    monkeypatch.chdir(work)  # evaluateImgLists dumps matches.json into the working folder
    # numpy 2.4 removed np.in1d, which the scripts call once (isin().ravel() is numpy's
    # replacement), and numpy 2 counts are np.int64, which their json dump cannot write
    monkeypatch.setattr(np, "in1d", lambda a, b: np.isin(a, b).ravel(), raising=False)
    monkeypatch.setattr(benchmark, "writeDict2JSON", lambda data, path: Path(path).write_text(
        json.dumps(data, default=lambda o: o.item() if isinstance(o, np.generic) else o.__dict__)))
    return benchmark.evaluateImgLists(predictions, gts, args)["averages"]


def test_perturbed_predictions_score_as_cityscapesscripts(dataset, tmp_path, monkeypatch):
    root, ann, data = dataset
    results = _perturbed(data, np.random.default_rng(1))
    ours = _ours(root, ann, results, tmp_path / "ours")
    official = _official(root, data, results, tmp_path / "official", monkeypatch)
    assert ours["cityscapes/AP"] == pytest.approx(official["allAp"], abs=1e-12)
    assert ours["cityscapes/AP50"] == pytest.approx(official["allAp50%"], abs=1e-12)
    for name, values in official["classes"].items():
        if not np.isnan(values["ap"]):
            assert ours[f"cityscapes/{name}/AP"] == pytest.approx(values["ap"], abs=1e-12)
    assert 0.2 < ours["cityscapes/AP"] < 0.9 and "segm/AP" in ours  # COCO numbers kept beside


def test_the_truth_scores_1(dataset, tmp_path):
    root, ann, data = dataset
    truth = [{"image_id": a["image_id"], "category_id": a["category_id"], "score": 1.0,
              "segmentation": a["segmentation"]} for a in data["annotations"] if not a["iscrowd"]]
    ours = _ours(root, ann, truth, tmp_path)
    assert ours["cityscapes/AP"] == pytest.approx(1.0) and ours["cityscapes/AP50"] == pytest.approx(1.0)

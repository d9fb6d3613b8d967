"""`maskrcnn eval --format lvis` against the official LVIS API run directly, on an LVIS-format set
built from the COCO subset (frequency groups, not-exhaustive and negative categories added)."""

from __future__ import annotations

import copy
import json
import random

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from maskrcnn.cli import main
from maskrcnn.evaluation.lvis_eval import METRICS, import_lvis, is_lvis


def lvis_from_coco(coco: dict, rng: random.Random) -> dict:
    """LVIS v1's fields on a COCO json: no crowds, frequency groups by image count (thirds),
    per image some verified-absent categories and one not exhaustively annotated."""
    anns = [{k: v for k, v in a.items() if k != "iscrowd"} for a in coco["annotations"] if not a.get("iscrowd")]
    present = {im["id"]: set() for im in coco["images"]}
    for a in anns:
        present[a["image_id"]].add(a["category_id"])
    count = {c["id"]: sum(c["id"] in p for p in present.values()) for c in coco["categories"]}
    ranked = sorted((c for c in count if count[c]), key=lambda c: (count[c], c))  # present ones, rarest first
    third = len(ranked) / 3
    frequency = {c: "f" for c in count} | {c: "rcf"[min(int(i / third), 2)] for i, c in enumerate(ranked)}
    categories = [{**c, "frequency": frequency[c["id"]], "image_count": count[c["id"]]} for c in coco["categories"]]
    all_ids = sorted(frequency)
    images = []
    for im in coco["images"]:
        absent = [c for c in all_ids if c not in present[im["id"]]]
        images.append({**im, "neg_category_ids": rng.sample(absent, min(3, len(absent))),
                       "not_exhaustive_category_ids": sorted(present[im["id"]])[:1]})
    return {"images": images, "annotations": anns, "categories": categories}


def detections(gt: dict, rng: random.Random) -> list[dict]:
    """Every object found with a jittered box and its own mask, plus per image a false positive
    of a verified-absent category (an error) and one of an unverified category (ignored)."""
    sizes = {im["id"]: (im["height"], im["width"]) for im in gt["images"]}
    out = []
    for a in gt["annotations"]:
        h, w = sizes[a["image_id"]]
        rle = mask_utils.merge(mask_utils.frPyObjects(a["segmentation"], h, w)) if isinstance(a["segmentation"], list) \
            else a["segmentation"]
        rle = {"size": rle["size"], "counts": rle["counts"].decode() if isinstance(rle["counts"], bytes) else rle["counts"]}
        x, y, bw, bh = a["bbox"]
        jitter = [rng.uniform(-3, 3) for _ in range(4)]
        out.append({"image_id": a["image_id"], "category_id": a["category_id"], "score": rng.uniform(0.2, 1.0),
                    "bbox": [x + jitter[0], y + jitter[1], max(bw + jitter[2], 1), max(bh + jitter[3], 1)],
                    "segmentation": rle})
    verified = {im["id"]: set(im["neg_category_ids"]) | {a["category_id"] for a in gt["annotations"] if a["image_id"] == im["id"]}
                for im in gt["images"]}
    all_ids = [c["id"] for c in gt["categories"]]
    for im in gt["images"]:
        h, w = sizes[im["id"]]
        box = np.zeros((h, w), np.uint8, order="F")
        box[10:60, 10:80] = 1
        rle = mask_utils.encode(box)
        rle = {"size": rle["size"], "counts": rle["counts"].decode()}
        unverified = [c for c in all_ids if c not in verified[im["id"]]]
        for cat in im["neg_category_ids"][:1] + unverified[:1]:
            out.append({"image_id": im["id"], "category_id": cat, "score": rng.uniform(0.5, 1.0),
                        "bbox": [10, 10, 70, 50], "segmentation": rle})
    return out


def official(ann_file, results, task):
    lvis = import_lvis()
    gt = lvis.LVIS(str(ann_file))
    dets = [{k: v for k, v in r.items() if not (task == "bbox" and k == "segmentation")} for r in results]
    evaluator = lvis.LVISEval(gt, lvis.LVISResults(gt, copy.deepcopy(dets), max_dets=300), task)
    evaluator.run()
    return {name: evaluator.results[name] * 100 for name in METRICS}


@pytest.fixture(scope="module")
def lvis_set(shared_data, tmp_path_factory):
    rng = random.Random(0)
    coco = json.loads((shared_data / "coco" / "val2017-32" / "annotations.json").read_text())
    gt = lvis_from_coco(coco, rng)
    folder = tmp_path_factory.mktemp("lvis")
    (folder / "lvis_val.json").write_text(json.dumps(gt))
    (folder / "results.json").write_text(json.dumps(detections(gt, rng)))
    return folder


def test_eval_format_lvis_equals_the_official_api(lvis_set, tmp_path, capsys):
    assert is_lvis(json.loads((lvis_set / "lvis_val.json").read_text()))
    code = main(["eval", "--format", "lvis", "--results", str(lvis_set / "results.json"),
                 "--data", str(lvis_set / "lvis_val.json"), "--out", str(tmp_path / "out")])
    assert code == 0
    assert "LVIS (official API)" in capsys.readouterr().out
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    results = json.loads((lvis_set / "results.json").read_text())
    for task in ("bbox", "segm"):
        reference = official(lvis_set / "lvis_val.json", results, task)
        for name, value in reference.items():
            assert metrics[f"lvis/{task}/{name}"] == pytest.approx(value, abs=1e-9), (task, name)
    # the federated rules are in play: masks equal to the truth, yet the negatives cost AP
    assert 0 < metrics["lvis/segm/AP"] < 100
    assert all(metrics[f"lvis/segm/AP{group}"] > 0 for group in "rcf")


def test_negative_categories_count_and_unverified_ones_do_not(lvis_set):
    """Remove the false positives of verified-absent categories: AP rises; remove those of
    unverified categories instead: AP is unchanged (they were ignored)."""
    gt = json.loads((lvis_set / "lvis_val.json").read_text())
    results = json.loads((lvis_set / "results.json").read_text())
    negative = {(im["id"], c) for im in gt["images"] for c in im["neg_category_ids"]}
    annotated = {(a["image_id"], a["category_id"]) for a in gt["annotations"]}
    base = official(lvis_set / "lvis_val.json", results, "bbox")["AP"]
    without_neg = [r for r in results if (r["image_id"], r["category_id"]) not in negative]
    unverified = [r for r in results if (r["image_id"], r["category_id"]) not in negative | annotated]
    without_unverified = [r for r in results if r not in unverified]
    assert official(lvis_set / "lvis_val.json", without_neg, "bbox")["AP"] > base
    assert official(lvis_set / "lvis_val.json", without_unverified, "bbox")["AP"] == pytest.approx(base, abs=1e-12)

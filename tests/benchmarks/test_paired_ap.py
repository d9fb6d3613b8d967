"""benchmarks/paired_ap.py: AP re-pooled from per-image matches equals pycocotools' AP with every
image once, and with an image weighted 2 equals pycocotools on a dataset holding that image twice
(what a bootstrap resample is); the t-interval against hand-computed values."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools_reference import pycocotools_stats

from maskrcnn.data.synthetic import synthetic_coco
from maskrcnn.evaluation.evaluator import load_ground_truth

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import paired_ap  # noqa: E402


def noisy_detections(coco: dict, seed: int) -> list[dict]:
    """The ground truth shifted 0-3 px, some dropped, some relabelled, random scores."""
    rng = np.random.default_rng(seed)
    out = []
    for ann in coco["annotations"]:
        if rng.random() < 0.2:
            continue
        mask = np.roll(mask_utils.decode({**ann["segmentation"], "counts": ann["segmentation"]["counts"].encode()}),
                       rng.integers(-3, 4), axis=1)  # fmt: skip
        rle = mask_utils.encode(np.asfortranarray(mask))
        x, y, w, h = ann["bbox"]
        out.append({"image_id": ann["image_id"], "score": float(rng.random()),
                    "category_id": int(rng.integers(1, 4)) if rng.random() < 0.15 else ann["category_id"],
                    "segmentation": {"size": rle["size"], "counts": rle["counts"].decode()},
                    "bbox": [x + float(rng.integers(-3, 4)), y, w, h]})  # fmt: skip
    return out


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    coco = synthetic_coco(num_images=12, seed=5, size=64)
    path = tmp_path_factory.mktemp("paired") / "gt.json"
    path.write_text(json.dumps(coco))
    return coco, path


@pytest.mark.parametrize("task", ["segm", "bbox"])
def test_unit_weights_give_pycocotools_ap(dataset, task):
    coco, path = dataset
    detections = noisy_detections(coco, 0)
    matches = paired_ap.ImageMatches(load_ground_truth(path), detections, task)
    ours = matches.ap(np.ones((1, matches.num_images)))
    reference = pycocotools_stats(path, detections, task)[:3]
    np.testing.assert_allclose([ours[n][0] for n in ("AP", "AP50", "AP75")], reference, atol=1e-12)


def test_weights_are_duplicated_images(dataset, tmp_path):
    coco, path = dataset
    detections = noisy_detections(coco, 1)
    # resample: image 1 twice, image 2 never, the rest once -> a dataset with image 1 duplicated
    counts = np.ones((1, len(coco["images"])))
    counts[0, 0], counts[0, 1] = 2, 0
    dup_id = 1000
    images = [im for im in coco["images"] if im["id"] != 2] + [{**coco["images"][0], "id": dup_id}]
    anns = [a for a in coco["annotations"] if a["image_id"] != 2]
    anns += [{**a, "id": 10_000 + a["id"], "image_id": dup_id} for a in coco["annotations"] if a["image_id"] == 1]
    dets = [d for d in detections if d["image_id"] != 2]
    dets += [{**d, "image_id": dup_id} for d in detections if d["image_id"] == 1]
    duplicated = tmp_path / "dup.json"
    duplicated.write_text(json.dumps({**coco, "images": images, "annotations": anns}))
    ours = paired_ap.ImageMatches(load_ground_truth(path), detections, "segm").ap(counts)
    reference = pycocotools_stats(duplicated, dets, "segm")[:3]
    np.testing.assert_allclose([ours[n][0] for n in ("AP", "AP50", "AP75")], reference, atol=1e-12)


def test_t_interval_of_paired_differences():
    # mean 2, sd 1, n 3: half width t(0.975, df 2) x 1 / sqrt(3) = 4.303 / 1.7321 = 2.4843
    result = paired_ap.t_interval([1.0, 2.0, 3.0])
    assert result["mean"] == 2.0 and result["sd"] == 1.0
    np.testing.assert_allclose(result["ci95"], [2 - 2.48434, 2 + 2.48434], atol=1e-4)
    assert paired_ap.t_interval([0.5])["ci95"] is None


def test_bootstrap_counts_draw_every_resample_in_full():
    counts = paired_ap.bootstrap_counts(7, 50, seed=3)
    assert counts.shape == (50, 7) and (counts.sum(1) == 7).all()
    assert np.array_equal(counts, paired_ap.bootstrap_counts(7, 50, seed=3))

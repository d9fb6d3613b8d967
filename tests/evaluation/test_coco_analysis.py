"""coco_analysis.py matching, score sweep and confusion matrix on one image worked out by hand."""

import pytest

from maskrcnn.evaluation.coco_analysis import (confusion_matrix, image_quality, match_images,
                                           score_sweep)

# A (class 1) and B (class 2) are objects; C (class 1) a crowd region
GT = {
    "images": [{"id": 1, "file_name": "a.png", "height": 20, "width": 80}],
    "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
    "annotations": [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 100, "iscrowd": 0},
        {"id": 2, "image_id": 1, "category_id": 2, "bbox": [20, 0, 10, 10], "area": 100, "iscrowd": 0},
        {"id": 3, "image_id": 1, "category_id": 1, "bbox": [40, 0, 10, 10], "area": 100, "iscrowd": 1},
    ],
}
DETECTIONS = [
    {"image_id": 1, "category_id": 2, "bbox": [0, 0, 10, 10], "score": 0.9},   # dog on cat A
    {"image_id": 1, "category_id": 2, "bbox": [21, 0, 10, 10], "score": 0.8},  # dog on B (IoU .82)
    {"image_id": 1, "category_id": 1, "bbox": [60, 0, 10, 10], "score": 0.7},  # cat on nothing
    {"image_id": 1, "category_id": 1, "bbox": [40, 0, 10, 10], "score": 0.6},  # cat on the crowd
    {"image_id": 1, "category_id": 1, "bbox": [1, 1, 10, 10], "score": 0.5},   # cat on A (IoU .68)
]


def test_class_aware_matching_and_sweep():
    match = match_images(GT, DETECTIONS, "bbox")[1]
    assert match["det_gt"].tolist() == [-1, 1, -1, -1, 0]
    assert match["ignored"].tolist() == [False, False, False, True, False]
    rows = {r["threshold"]: r for r in score_sweep({1: match})["rows"]}
    # everything: 2 TP (B, A), 2 FP (dog on A, cat on nothing), the crowd hit ignored
    assert (rows[0.0]["tp"], rows[0.0]["fp"], rows[0.0]["fn"]) == (2, 2, 0)
    assert rows[0.0]["f1"] == pytest.approx(2 / 3)
    assert (rows[0.55]["tp"], rows[0.55]["fp"], rows[0.55]["fn"]) == (1, 2, 1)
    assert rows[0.75]["precision"] == rows[0.75]["recall"] == 0.5
    assert rows[0.85]["f1"] == 0.0
    best = score_sweep({1: match})["best"]
    assert best["threshold"] == 0.5 and best["f1"] == pytest.approx(2 / 3)  # ties: the highest
    assert image_quality(match, 0.55)["f1"] == pytest.approx(0.4)


def test_confusion_matrix_with_background():
    agnostic = match_images(GT, DETECTIONS, "bbox", class_aware=False)
    # rows cat, dog, background (ground truth); columns cat, dog, background (predicted)
    assert confusion_matrix(agnostic, [1, 2], 0.55).tolist() == [[0, 1, 0], [0, 1, 0], [1, 0, 0]]
    # the late cat on A finds it taken: a second detection on nothing
    assert confusion_matrix(agnostic, [1, 2], 0.0).tolist() == [[0, 1, 0], [0, 1, 0], [2, 0, 0]]
    # above 0.85 only the dog on A is left: B is missed
    assert confusion_matrix(agnostic, [1, 2], 0.85).tolist() == [[0, 1, 0], [0, 0, 1], [0, 0, 0]]

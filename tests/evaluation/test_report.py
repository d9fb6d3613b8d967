"""`maskrcnn eval --report` (maskrcnn/evaluation/report.py, coco_analysis.py) on real COCO images with
predictions derived from the ground truth by seeded perturbations (shifted masks, misses,
class confusions, duplicates, background false positives): per-class AP against pycocotools'
precision array, C75 / C50 against AP75 / AP50, matching against pycocotools' own matches, and
the page opened in headless Chromium."""

import contextlib
import io
import json
import shutil

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from maskrcnn.cli import main
from maskrcnn.ops.rle import encode_masks, segmentation_to_mask

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run")
SUBSET = "train2017-6"


def _detection(image_id, category_id, mask, score):
    rle = encode_masks(mask[None])[0]
    return {"image_id": image_id, "category_id": category_id, "score": float(score),
            "bbox": [float(v) for v in mask_utils.toBbox({**rle, "counts": rle["counts"].encode()})],
            "segmentation": rle}


def perturbed_predictions(data: dict, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    images = {im["id"]: im for im in data["images"]}
    family = {}
    for c in data["categories"]:
        family.setdefault(c["supercategory"], []).append(c["id"])
    supercategory = {c["id"]: c["supercategory"] for c in data["categories"]}
    all_ids = [c["id"] for c in data["categories"]]
    results = []
    for ann in data["annotations"]:
        if ann["iscrowd"] or rng.random() < 0.15:  # missed
            continue
        image = images[ann["image_id"]]
        mask = segmentation_to_mask(ann["segmentation"], image["height"], image["width"]).astype(bool)
        mask = np.roll(mask, tuple(rng.integers(-4, 5, 2)), axis=(0, 1))
        if not mask.any():
            continue
        category = ann["category_id"]
        if rng.random() < 0.1:
            category = int(rng.choice(family[supercategory[category]]))  # similar class
        elif rng.random() < 0.05:
            category = int(rng.choice(all_ids))  # any class
        results.append(_detection(ann["image_id"], category, mask, rng.uniform(0.3, 1.0)))
        if rng.random() < 0.1:  # duplicate
            results.append(_detection(ann["image_id"], category, np.roll(mask, 6, axis=1), rng.uniform(0.1, 0.5)))
    for image in data["images"]:  # background false positives
        for _ in range(3):
            mask = np.zeros((image["height"], image["width"]), bool)
            x, y = rng.integers(0, image["width"] - 40), rng.integers(0, image["height"] - 40)
            mask[y:y + rng.integers(10, 40), x:x + rng.integers(10, 40)] = True
            results.append(_detection(image["id"], int(rng.choice(all_ids)), mask, rng.uniform(0.0, 0.7)))
    return results


@pytest.fixture(scope="module")
def report(shared_data, tmp_path_factory):
    root = shared_data / "coco" / SUBSET
    data = json.loads((root / "annotations.json").read_text())
    out = tmp_path_factory.mktemp("report")
    results = perturbed_predictions(data)
    (out / "predictions.json").write_text(json.dumps(results))
    assert main(["eval", "--results", str(out / "predictions.json"), "--data", str(root / "annotations.json"),
                 "--images", str(root / "images"), "--out", str(out), "--report"]) == 0
    return out, data, results, root


def _pycocotools(root, results, task):
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(root / "annotations.json"))
        view = [{k: v for k, v in r.items() if k != ("segmentation" if task == "bbox" else "bbox")}
                for r in results]
        evaluator = COCOeval(gt, gt.loadRes(view), task)
        evaluator.evaluate()
        evaluator.accumulate()
    return evaluator


@pytest.mark.parametrize("task", ["bbox", "segm"])
def test_per_class_ap_equals_pycocotools(report, task):
    out, data, results, root = report
    reference = _pycocotools(root, results, task)
    precision = reference.eval["precision"][:, :, :, 0, -1]  # (T, R, K) area all, 100 detections
    rows = {r["id"]: r for r in json.loads((out / "per_class_ap.json").read_text())[task]}
    assert len(rows) == len(reference.params.catIds) == len(data["categories"])
    checked = 0
    for k, cat_id in enumerate(reference.params.catIds):
        p = precision[:, :, k]
        if not (p > -1).any():
            assert rows[cat_id]["AP"] is None  # no ground truth: COCO leaves it out too
            continue
        assert rows[cat_id]["AP"] == pytest.approx(p[p > -1].mean(), abs=1e-9)
        assert rows[cat_id]["AP50"] == pytest.approx(p[0][p[0] > -1].mean(), abs=1e-9)
        assert rows[cat_id]["AP75"] == pytest.approx(p[5][p[5] > -1].mean(), abs=1e-9)
        checked += 1
    assert checked >= 10
    assert 0.2 < np.mean([r["AP"] for r in rows.values() if r["AP"] is not None]) < 0.95


@pytest.mark.parametrize("task", ["bbox", "segm"])
def test_error_breakdown_starts_at_ap75_and_ap50(report, task):
    out, *_ = report
    metrics = json.loads((out / "metrics.json").read_text())
    ap = json.loads((out / "error_breakdown.json").read_text())[task]["ap"]
    assert ap["C75"] == pytest.approx(metrics[f"{task}/AP75"], abs=1e-9)
    assert ap["C50"] == pytest.approx(metrics[f"{task}/AP50"], abs=1e-9)
    layers = [ap[k] for k in ("C75", "C50", "Loc", "Sim", "Oth", "BG", "FN")]
    assert layers == sorted(layers) and layers[-1] == 1.0
    assert layers[3] > layers[2] and layers[4] > layers[3]  # the class confusions put in cost AP


def test_sweep_and_confusion_counts_match_pycocotools(report):
    out, data, results, root = report
    sweep = json.loads((out / "score_sweep.json").read_text())
    reference = _pycocotools(root, results, "segm")
    at50 = [e for e in reference.evalImgs if e is not None and e["aRng"] == [0, 1e10]]
    for row in (sweep["rows"][0], sweep["best"]):  # every detection; the best-F1 ones
        tp = fp = 0
        for e in at50:
            kept = np.array(e["dtScores"]) >= row["threshold"]
            matched, ignored = np.array(e["dtMatches"][0]) > 0, np.array(e["dtIgnore"][0], bool)
            tp += int((kept & matched & ~ignored).sum())
            fp += int((kept & ~matched & ~ignored).sum())
        assert (row["tp"], row["fp"]) == (tp, fp)
    assert sweep["best"]["f1"] == max(r["f1"] for r in sweep["rows"])
    confusion = json.loads((out / "confusion_matrix.json").read_text())
    matrix = np.array(confusion["matrix"])
    num_gt = sum(not a["iscrowd"] for a in data["annotations"])
    assert matrix[:-1].sum() == num_gt  # every object found once or missed
    kept = [r for r in results if r["score"] >= confusion["threshold"]]
    assert matrix[:, :-1].sum() <= len(kept)  # only detections on crowd regions are left out
    assert matrix[-1, :-1].sum() > 0 and np.trace(matrix[:-1, :-1]) > matrix[:-1, :-1].sum() / 2


def test_report_opens_in_headless_chromium(report, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    out, *_ = report
    for name in ("per_class_ap.txt", "pr_curves_bbox.png", "pr_curves_segm.png", "error_breakdown_segm.png",
                 "confusion_matrix.png", "score_sweep.png", "worst_1.png", "best_1.png"):
        assert (out / name).is_file(), name
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver_path, "install chromium and chromium-driver (apt), as .ci/run does"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    try:
        driver.set_window_size(1280, 2000)
        driver.get((out / "report.html").as_uri())
        assert driver.title == "maskrcnn evaluation report"
        images = driver.find_elements(By.TAG_NAME, "img")
        assert len(images) >= 8
        widths = [driver.execute_script("return arguments[0].naturalWidth", im) for im in images]
        assert all(w > 100 for w in widths), widths  # every embedded PNG decoded
        headings = [h.text for h in driver.find_elements(By.TAG_NAME, "h2")]
        assert "COCO error breakdown" in headings and "Per-class AP" in headings
        driver.save_screenshot(str(tmp_path / "report.png"))
    finally:
        driver.quit()
    assert (tmp_path / "report.png").stat().st_size > 10_000


def test_a_model_that_detects_nothing_still_gets_a_report(synth_ann, tmp_path):
    # an empty results *file* is refused (issue 18); a model that finds nothing is scored and reported
    assert main(["eval", "--model", "maskrcnn_r18_fpn", "--score-thresh", "1.01",
                 "--data", str(synth_ann), "--images", str(synth_ann.parent / "images"),
                 "--out", str(tmp_path), "--report",
                 "--set", "input.min_size=[64]", "input.max_size=96"]) == 0
    rows = json.loads((tmp_path / "per_class_ap.json").read_text())["bbox"]
    assert rows and all(r["AP"] == 0.0 for r in rows)
    sweep = json.loads((tmp_path / "score_sweep.json").read_text())
    assert sweep["best"]["f1"] == 0.0 and sweep["best"]["fn"] == sweep["num_gt"] > 0
    assert "the model found nothing" in (tmp_path / "report.html").read_text()
    assert (tmp_path / "worst_1.png").is_file() and not (tmp_path / "best_1.png").exists()

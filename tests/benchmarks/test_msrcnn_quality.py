"""benchmarks/msrcnn_quality.py: the smoke mode (MS R-CNN and Mask R-CNN fine-tuned 3 iterations on
a few Penn-Fudan images) reports mask AP under both rankings as pycocotools scores the saved
detections; the true IoUs and rank correlations against hand-computed values."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools_reference import pycocotools_stats

from maskrcnn.evaluation.evaluator import load_ground_truth

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import msrcnn_quality as mq  # noqa: E402


def test_smoke_scores_both_rankings_as_pycocotools_does(shared_data, tmp_path, monkeypatch):
    work, out = tmp_path / "work", tmp_path / "msrcnn"
    argv = ["--smoke", "--data", str(shared_data / "pennfudan"), "--work", str(work), "--out", str(out)]
    assert mq.main(argv) == 0
    report = json.loads(Path(f"{out}.json").read_text())
    assert list(report["arms"]) == ["maskrcnn", "msrcnn"]
    val_ann = work / "data" / "val.json"
    for arm, entry in report["arms"].items():
        (run,) = entry["runs"]
        results = json.loads((work / f"{arm}-seed0" / "eval" / "results.json").read_text())
        assert results and all(("mask_score" in r) == (arm == "msrcnn") for r in results)
        q = run["quality"]
        assert q["detections"] == len(results)
        by_class = [{k: v for k, v in r.items() if k != "mask_score"} for r in results]
        for ranking, dets in (("class_score", by_class), ("mask_score", results)):
            reference = pycocotools_stats(val_ann, dets, "segm")[:3]
            ours = [q[f"segm_by_{ranking}/{n}"] for n in ("AP", "AP50", "AP75")]
            np.testing.assert_allclose(ours, reference, atol=1e-9, err_msg=f"{arm} by {ranking}")
        assert run["metrics"]["bbox/AP"] == pytest.approx(pycocotools_stats(val_ann, results, "bbox")[0], abs=1e-9)
        correlations = {k: v for k, v in q.items() if k.startswith(("pearson", "spearman"))}
        scores = {"class_score", "pred_maskiou"} if arm == "msrcnn" else {"class_score"}
        assert {k.split("/")[1] for k in correlations} == scores
        assert all(v is None or -1 <= v <= 1 for v in correlations.values())
    table = Path(f"{out}.md").read_text()
    assert "| msrcnn | predicted MaskIoU |" in table and "| maskrcnn | class score |" in table
    assert Path(f"{out}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    monkeypatch.setattr(mq.pa, "train", lambda *a, **k: pytest.fail("a finished arm was trained again"))
    assert mq.main(argv) == 0


def test_spearman_gives_ties_their_mean_rank():
    x, y = np.array([1.0, 2.0, 2.0, 3.0]), np.array([1.0, 3.0, 2.0, 4.0])
    # ranks (0, 1.5, 1.5, 3) and (0, 2, 1, 3): covariance 4.5, variances 4.5 and 5
    assert mq.spearman(x, y) == pytest.approx(4.5 / math.sqrt(4.5 * 5))
    assert mq.pearson(np.array([1.0, 1.0]), np.array([0.0, 1.0])) is None  # constant: undefined


def rle(mask: np.ndarray) -> dict:
    encoded = mask_utils.encode(np.asfortranarray(mask))
    return {"size": encoded["size"], "counts": encoded["counts"].decode()}


def test_true_ious_take_the_best_ground_truth_of_the_detections_class(tmp_path):
    square = np.zeros((20, 20), np.uint8)
    square[0:10, 0:10] = 1  # GT 1, class 1: 100 px at the top left
    other = np.zeros((20, 20), np.uint8)
    other[10:20, 10:20] = 1  # GT 2, class 2: bottom right
    anns = [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": rle(square), "area": 100.0,
             "bbox": [0, 0, 10, 10], "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 2, "segmentation": rle(other), "area": 100.0,
             "bbox": [10, 10, 10, 10], "iscrowd": 0}]  # fmt: skip
    ann_file = tmp_path / "gt.json"
    ann_file.write_text(json.dumps({"images": [{"id": 1, "width": 20, "height": 20, "file_name": "a.png"}],
                                    "annotations": anns, "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}))
    half = np.zeros((20, 20), np.uint8)
    half[0:10, 0:5] = 1  # 50 of GT 1's 100 px
    detections = [{"image_id": 1, "category_id": 1, "segmentation": rle(half), "bbox": [0, 0, 5, 10], "score": 0.9},
                  {"image_id": 1, "category_id": 1, "segmentation": rle(other), "bbox": [10, 10, 10, 10], "score": 0.8}]
    mask_iou, box_iou = mq.true_ious(detections, load_ground_truth(ann_file))
    # the second detection covers GT 2 exactly, but GT 2 is of another class: no match
    np.testing.assert_allclose(mask_iou, [0.5, 0.0])
    np.testing.assert_allclose(box_iou, [0.5, 0.0])


def test_synthetic_smoke_and_paired_effects_match_pycocotools(tmp_path, monkeypatch):
    """`--dataset synthetic --smoke` trains both arms on `synth --style quality` images; then the
    runs' detections are replaced by known ones and each paired effect must be the difference of
    what pycocotools scores (the MS arm's masks ranked by mask score, the plain arm's by class score)."""
    from test_paired_ap import noisy_detections

    work, out = tmp_path / "work", tmp_path / "msrcnn"
    assert mq.main(["--dataset", "synthetic", "--smoke", "--work", str(work), "--out", str(out)]) == 0
    val_ann = work / "data" / "val" / "annotations.json"
    gt = json.loads(val_ann.read_text())
    assert len(gt["images"]) == mq.SYNTHETIC_IMAGES["smoke"][1]
    plain, scored = noisy_detections(gt, 0), noisy_detections(gt, 1)
    rng = np.random.default_rng(2)
    scored = [{**d, "mask_score": d["score"] * float(rng.random())} for d in scored]
    for arm, dets in (("maskrcnn", plain), ("msrcnn", scored)):
        (work / f"{arm}-seed0" / "eval" / "results.json").write_text(json.dumps(dets))
    found, diverged = mq.pa.collect(work, mq.ARMS["synthetic"], [0])
    result = mq.report(found, diverged, work, val_ann, out, "test", meta={})
    by_class = [{k: v for k, v in d.items() if k != "mask_score"} for d in scored]
    ms_mask, ms_class = pycocotools_stats(val_ann, scored, "segm"), pycocotools_stats(val_ann, by_class, "segm")
    plain_segm = pycocotools_stats(val_ann, plain, "segm")
    effects = result["effects"]
    np.testing.assert_allclose(effects["headline_AP"]["per_seed"], [100 * (ms_mask[0] - plain_segm[0])], atol=1e-9)
    np.testing.assert_allclose(effects["headline_AP75"]["per_seed"], [100 * (ms_mask[2] - plain_segm[2])], atol=1e-9)
    np.testing.assert_allclose(effects["rescoring_AP"]["per_seed"], [100 * (ms_mask[0] - ms_class[0])], atol=1e-9)
    box = pycocotools_stats(val_ann, scored, "bbox")[0] - pycocotools_stats(val_ann, plain, "bbox")[0]
    np.testing.assert_allclose(effects["box_AP"]["per_seed"], [100 * box], atol=1e-9)
    low, high = effects["headline_AP"]["bootstrap_ci95"]
    assert low <= high and effects["headline_AP"]["ci95"] is None  # one seed: no t-interval
    assert "mask AP: MS R-CNN ranked by mask score - Mask R-CNN: " in Path(f"{out}.md").read_text()
    # the analysis of each run is cached beside it (the first report above was of the trained
    # runs' detections: replacing them made it analyse again, as the numbers checked show)
    monkeypatch.setattr(mq, "quality", lambda *a: pytest.fail("a cached analysis was computed again"))
    assert mq.report(*mq.pa.collect(work, mq.ARMS["synthetic"], [0]), work, val_ann, out, "test", meta={}) == result
    monkeypatch.undo()
    q = result["arms"]["msrcnn"]["runs"][0]["quality"]
    assert effects["spearman_all"]["per_seed"] == [q["spearman/pred_maskiou/all"] - q["spearman/class_score/all"]]

    # --rerender: a report written before an effect was defined gets it from the json alone
    report_json, table = Path(f"{out}.json"), Path(f"{out}.md").read_text()
    committed = json.loads(report_json.read_text())
    older = {**committed, "effects": {k: v for k, v in committed["effects"].items() if k != "spearman_all"}}
    del older["header"]  # older reports kept it only as the table's first line
    report_json.write_text(json.dumps(older))
    assert mq.main(["--rerender", str(report_json)]) == 0
    assert json.loads(report_json.read_text()) == committed and Path(f"{out}.md").read_text() == table


def test_verdict_table_puts_each_reports_interval_in_its_column(tmp_path):
    def report(dataset, headline_ci, pearson_ci):
        return {"dataset": dataset, "iters": 10, "effects": {
            "seeds": [0, 1, 2], "bootstrap_samples": 5,
            "headline_AP": {"what": "mask AP", "paper": "+1.6", "mean": 0.5, "ci95": headline_ci},
            "pearson_tp": {"what": "Pearson", "paper": "positive", "mean": 0.17, "ci95": pearson_ci}}}

    paths = [tmp_path / "a.json", tmp_path / "b.json"]
    paths[0].write_text(json.dumps(report("synthetic", [0.25, 0.75], [-0.01, 0.35])))
    paths[1].write_text(json.dumps(report("pennfudan", [-2.0, 3.0], [0.11, 0.23])))
    out = tmp_path / "verdicts.md"
    assert mq.main(["--verdicts", *map(str, paths), "--out", str(out)]) == 0
    header, rule, ap, pearson = out.read_text().splitlines()
    assert header.endswith("| synthetic (3 seeds, 10 iterations) | pennfudan (3 seeds, 10 iterations) |")
    assert ap == ("| mask AP | +1.6 | +0.5 points [+0.2, +0.8], **excludes zero** "
                  "| +0.5 points [-2.0, +3.0], includes zero |")
    assert pearson == "| Pearson | positive | +0.17 [-0.01, +0.35], includes zero | +0.17 [+0.11, +0.23], **excludes zero** |"


def test_train_only_trains_the_given_arm_and_seeds_and_writes_no_report(tmp_path):
    work, out = tmp_path / "work", tmp_path / "msrcnn"
    argv = ["--dataset", "synthetic", "--smoke", "--work", str(work), "--out", str(out),
            "--arms", "msrcnn", "--run-seeds", "0", "--train-only"]  # fmt: skip
    assert mq.main(argv) == 0
    assert sorted(p.name for p in work.glob("*.json")) == ["msrcnn-seed0.json"]
    assert not Path(f"{out}.json").exists() and not Path(f"{out}.md").exists()

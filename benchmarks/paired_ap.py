"""COCO AP from per-image matches, so that the images can be resampled: a paired bootstrap.

pycocotools' COCOeval matches each image's detections to its ground truth (evaluate) and then
pools the matches of all images into precision-recall curves (accumulate). `ImageMatches` keeps
the matches of one set of detections (area range "all", at most 100 detections per image) and
`ImageMatches.ap` re-pools them with a weight per image: weight 1 everywhere is COCOeval's AP,
and the counts of a bootstrap sample (how often each image was drawn) are the AP of that
resampled set (a drawn image's detections and ground truth count that many times). All sets of
detections scored on the same resample are paired by image.

Also the paired t-interval over seeds (`t_interval`) and the bootstrap interval of a mean of
paired differences (`bootstrap_counts`, `percentile_interval`).
"""

from __future__ import annotations

import contextlib
import io
import statistics

import numpy as np
from pycocotools.cocoeval import COCOeval

T_INDEX = {"AP50": 0, "AP75": 5}  # COCO's IoU thresholds 0.50:0.05:0.95
# two-sided 95 % Student t quantiles (0.975) by degrees of freedom
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}


class ImageMatches:
    """The per-image matches of one set of detections against the ground truth `gt` (a COCO)."""

    def __init__(self, gt, detections: list[dict], task: str):
        with contextlib.redirect_stdout(io.StringIO()):
            evaluator = COCOeval(gt, gt.loadRes(detections) if detections else _empty(gt), task)
            p = evaluator.params
            p.imgIds, p.areaRng, p.areaRngLbl, p.maxDets = sorted(gt.getImgIds()), [[0, 1e10]], ["all"], [100]
            evaluator.evaluate()
        self.rec_thrs, self.num_images = p.recThrs, len(p.imgIds)
        # one entry per category: sorted detections' image index, (T, D) true / false positives,
        # (I,) unignored ground truth per image
        self.categories = [self._category(evaluator.evalImgs[k * self.num_images:(k + 1) * self.num_images],
                                          len(p.iouThrs)) for k in range(len(p.catIds))]  # fmt: skip

    def _category(self, per_image: list, num_thresholds: int) -> dict:
        image, scores, tp, fp = [], [], [], []
        gt_count = np.zeros(self.num_images)
        for i, e in enumerate(per_image):
            if e is None:
                continue
            gt_count[i] = np.count_nonzero(np.asarray(e["gtIgnore"]) == 0)
            matched, ignored = e["dtMatches"][:, :100] > 0, e["dtIgnore"][:, :100].astype(bool)
            image.append(np.full(matched.shape[1], i))
            scores.append(np.asarray(e["dtScores"][:100]))
            tp.append(matched & ~ignored)
            fp.append(~matched & ~ignored)
        if not image:
            empty = np.zeros((num_thresholds, 0), bool)
            return {"image": np.zeros(0, int), "tp": empty, "fp": empty, "gt": gt_count}
        order = np.argsort(-np.concatenate(scores), kind="mergesort")  # COCOeval's order
        return {"image": np.concatenate(image)[order], "tp": np.concatenate(tp, 1)[:, order],
                "fp": np.concatenate(fp, 1)[:, order], "gt": gt_count}  # fmt: skip

    def ap(self, counts: np.ndarray) -> dict[str, np.ndarray]:
        """{"AP", "AP50", "AP75"}: (B,) AP in [0, 1] with (B, I) image weights; a category with no
        ground truth in a resample is left out of its mean, as COCOeval leaves it out."""
        per_category = np.stack([self._precision(c, counts) for c in self.categories])  # (K, B, T, R)
        with np.errstate(invalid="ignore"):
            by_threshold = np.nanmean(per_category.mean(-1), axis=0)  # (B, T)
        return {"AP": by_threshold.mean(1), **{n: by_threshold[:, t] for n, t in T_INDEX.items()}}

    def _precision(self, category: dict, counts: np.ndarray) -> np.ndarray:
        """(B, T, R) interpolated precision at COCO's 101 recall thresholds (NaN: no ground truth)."""
        num_gt = counts @ category["gt"]  # (B,)
        weights = counts[:, category["image"]]  # (B, D)
        batch, detections = weights.shape
        out = np.zeros((batch, len(category["tp"]), len(self.rec_thrs)))
        if detections:
            for t, (tp, fp) in enumerate(zip(category["tp"], category["fp"])):
                tp_sum, fp_sum = np.cumsum(weights * tp, 1), np.cumsum(weights * fp, 1)  # (B, D)
                with np.errstate(invalid="ignore", divide="ignore"):
                    recall = tp_sum / num_gt[:, None]
                precision = tp_sum / (tp_sum + fp_sum + np.spacing(1))
                envelope = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
                out[:, t] = _sample_at_recalls(recall, envelope, self.rec_thrs)
        out[num_gt == 0] = np.nan
        return out


def _sample_at_recalls(recall: np.ndarray, envelope: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """(B, R): each row's envelope at the first detection whose recall reaches each threshold (0
    when none does), as COCOeval.accumulate; rows are searched at once by offsetting row b by 2b
    (recall <= 1, so the flattened rows stay sorted)."""
    batch, detections = recall.shape
    offsets = 2.0 * np.arange(batch)[:, None]
    flat = np.nan_to_num(recall, nan=0.0) + offsets  # (B, D)
    found = np.searchsorted(flat.ravel(), (thresholds[None, :] + offsets).ravel(), side="left")
    local = found.reshape(batch, -1) - detections * np.arange(batch)[:, None]  # (B, R)
    valid = local < detections
    return np.where(valid, np.take_along_axis(envelope, np.minimum(local, detections - 1), 1), 0.0)


def _empty(gt):
    """An empty detections COCO (loadRes refuses an empty list)."""
    from pycocotools.coco import COCO

    empty = COCO()
    empty.dataset = {"images": gt.dataset["images"], "categories": gt.dataset["categories"], "annotations": []}
    empty.createIndex()
    return empty


def bootstrap_counts(num_images: int, samples: int, seed: int = 0) -> np.ndarray:
    """(samples, num_images): how often each image is drawn in each resample (with replacement)."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(num_images, np.full(num_images, 1 / num_images), size=samples).astype(np.float64)


def percentile_interval(values: np.ndarray) -> list[float]:
    """The 2.5 and 97.5 percentiles of bootstrap values."""
    return [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))]


def t_interval(differences: list[float]) -> dict:
    """Mean of paired differences and its two-sided 95 % Student t interval (None for one value)."""
    n, mean = len(differences), statistics.mean(differences)
    if n < 2:
        return {"mean": mean, "n": n, "sd": None, "ci95": None}
    sd = statistics.stdev(differences)
    if n - 1 not in T975:
        raise ValueError(f"t quantile tabulated for 1-{max(T975)} degrees of freedom, not {n - 1}")
    half = T975[n - 1] * sd / np.sqrt(n)
    return {"mean": mean, "n": n, "sd": sd, "ci95": [mean - half, mean + half]}

"""benchmarks/vs_detectron2.py: its twin matching and summary numbers on detections made by hand
(the comparison itself needs detectron2's source tree; see docs/conventions.md)."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import vs_detectron2 as vs  # noqa: E402


def _dets(boxes, scores, labels, masks):
    return {"boxes": torch.tensor(boxes, dtype=torch.float64), "scores": torch.tensor(scores, dtype=torch.float64),
            "labels": torch.tensor(labels), "masks": torch.tensor(masks, dtype=torch.bool)}  # fmt: skip


def test_twins_and_summary_by_hand():
    m = [[1, 1, 0], [0, 1, 0]]  # 3 px set
    d2 = _dets([[0, 0, 10, 10], [20, 20, 30, 30], [5, 5, 8, 8]], [0.9, 0.8, 0.1], [1, 1, 2], [m, m, m])
    ours = _dets([[20.02, 20, 30, 30], [0, 0, 10, 10.5], [40, 40, 50, 50]], [0.8, 0.88, 0.1], [1, 1, 2],
                 [m, [[1, 1, 1], [0, 1, 0]], m])
    # twins: d2 0 <-> ours 1 (gap 0.5 px), d2 1 <-> ours 0 (0.02 px); d2 2 and ours 2 have none
    assert sorted(vs.match_twins(d2, ours)) == [(0, 1), (1, 0)]
    s = vs.compare([d2], [ours])
    # 20th percentile of (0.9, 0.8, 0.1) = 0.38 and of (0.8, 0.88, 0.1) = 0.38: two above on each side
    assert s["twin_share_above_p20_detectron2"] == 1.0 and s["twin_share_above_p20_ours"] == 1.0
    assert (s["above_p20_detectron2"], s["twins_above_p20_detectron2"]) == (2, 2)
    assert (s["above_p20_ours"], s["twins_above_p20_ours"]) == (2, 2)
    assert s["pairs"] == 2 and s["pairs_within_0.05px"] == 0.5
    # gaps (0.02, 0.5) px: linear 90th percentile 0.02 + 0.9 * 0.48
    assert abs(s["box_gap_px_p90"] - (0.02 + 0.9 * 0.48)) < 1e-12 and abs(s["box_gap_px_max"] - 0.5) < 1e-12
    assert abs(s["score_gap_max"] - 0.02) < 1e-12 and abs(s["score_gap_median"] - 0.01) < 1e-12  # gaps 0.02, 0
    assert s["pooled_mask_iou"] == (3 + 3) / (4 + 3)  # intersections / unions over both pairs
    met = vs.targets_met(s)  # 1 of 2 boxes within 0.05 px, IoU 6/7 < 0.98; every detection twinned
    assert met == {"all_above_p20_twinned": True, "boxes_within_0.05px_for_90pct": False,
                   "pooled_mask_iou_at_least_0.98": False}  # fmt: skip


def test_targets_at_their_edges():
    edge = {"twin_share_above_p20_detectron2": 1.0, "twin_share_above_p20_ours": 1.0,
            "pairs_within_0.05px": 0.9, "pooled_mask_iou": 0.98}  # fmt: skip
    assert all(vs.targets_met(edge).values())
    one_lost = {**edge, "twin_share_above_p20_ours": 199 / 200}
    assert vs.targets_met(one_lost)["all_above_p20_twinned"] is False

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


def test_rpn_ties_counts_saturated_anchors_and_tied_kept_candidates(monkeypatch):
    # fp32 sigmoid: 20 and 18 both round to exactly 1.0 (1 - 1.5e-8 is below half an ulp of 1),
    # 0 gives 0.5 twice, 1 gives 0.731; with 2 kept per level: {1.0, 1.0} and {0.731, 0.5}
    monkeypatch.setattr(vs, "NMS_PRE", 2)
    ties = vs.RpnTies()
    ties(None, None, torch.tensor([[20.0, 18.0, 0.0]]))
    ties(None, None, torch.tensor([[0.0, 1.0]]))
    ties.close_image("a.png")
    ties(None, None, torch.tensor([[3.0, -1.0]]))
    ties.close_image("b.png")
    assert ties.per_image == [
        {"image": "a.png", "max_rpn_logit": 20.0, "anchors_sigmoid_1": 2, "kept_candidates": 4, "kept_tied_fp32": 2},
        {"image": "b.png", "max_rpn_logit": 3.0, "anchors_sigmoid_1": 0, "kept_candidates": 2, "kept_tied_fp32": 0},
    ]


def test_hold_spreads_rescales_about_the_offset_and_bounds_the_rpn():
    # two 1x1 "layers" y = w x + b; stats give per-image (std, max) of their outputs
    model = torch.nn.ModuleDict({"cls": torch.nn.Linear(1, 1), "reg": torch.nn.Linear(1, 1)})
    with torch.no_grad():
        for layer in model.values():
            layer.weight.fill_(2.0)
            layer.bias.fill_(1.0)
    spread = {"cls": (2.0, -1.0), "reg": (0.5, 0.0)}
    stats = {"cls": [(1.0, 9.0), (4.0, 23.0)], "reg": [(0.25, 1.0), (1.0, 2.0)]}
    with torch.no_grad():
        vs.hold_spreads(model, stats, spread, "cls")
    # cls: spread factor 2 / 4 = 0.5 puts the peak at -1 + 0.5 * 24 = 11 < 12, so it stands:
    # w = 2 * 0.5, b = -1 + (1 + 1) * 0.5
    assert model["cls"].weight.item() == 1.0 and model["cls"].bias.item() == 0.0
    # reg: factor 0.5 / 1 about offset 0
    assert model["reg"].weight.item() == 1.0 and model["reg"].bias.item() == 0.5
    stats["cls"][1] = (4.0, 47.0)  # peak -1 + 0.5 * 48 = 23 > 12: factor 0.99 * 13 / 48 instead
    with torch.no_grad():
        vs.hold_spreads(model, stats, spread, "cls")
    factor = 0.99 * 13 / 48
    assert abs(model["cls"].weight.item() - factor) < 1e-7
    assert abs(model["cls"].bias.item() - (-1 + factor)) < 1e-7

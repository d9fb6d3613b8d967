"""batched_nms_topk against torchvision's batched_nms (the truth it shortcuts)."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import batched_nms

from maskrcnn.ops.boxes import batched_nms_topk


def _candidates(n, classes, seed, spread=200.0):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * spread
    wh = torch.rand(n, 2, generator=g) * 60 + 4
    boxes = torch.cat([xy, xy + wh], dim=1)
    return boxes, torch.rand(n, generator=g), torch.randint(1, classes, (n,), generator=g)


@pytest.mark.parametrize("n,classes,thresh,k", [
    (20000, 91, 0.5, 100),   # many candidates, as with box_score_thresh=0
    (5000, 3, 0.5, 100),     # few classes: heavy suppression, the prefix must grow
    (3000, 2, 0.05, 100),    # almost everything suppressed: fewer than k survive at all
    (300, 10, 0.7, 100),     # below 4k candidates: plain batched_nms
])
def test_topk_equals_batched_nms_then_cut(n, classes, thresh, k):
    boxes, scores, labels = _candidates(n, classes, seed=n)
    expected = batched_nms(boxes, scores, labels, thresh)[:k]
    assert torch.equal(batched_nms_topk(boxes, scores, labels, thresh, k), expected)


def test_topk_needs_the_prefix_to_grow():
    """All boxes of one class nearly coincide: the best 4k hold only one survivor."""
    boxes, scores, labels = _candidates(2000, 2, seed=3, spread=1.0)
    labels[:] = 1
    boxes[1500:] += 1000.0  # a second cluster, ranked after the first by score
    scores[1500:] *= 0.1
    expected = batched_nms(boxes, scores, labels, 0.5)[:100]
    got = batched_nms_topk(boxes, scores, labels, 0.5, 100)
    assert len(got) < 100 and torch.equal(got, expected)

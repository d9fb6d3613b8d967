"""batched_nms_topk and nms_per_image against torchvision's batched_nms (the truth they shortcut)."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import batched_nms

from maskrcnn.ops.boxes import _nms_per_image_onnx, batched_nms_topk, nms_per_image


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


@pytest.mark.parametrize("prefix", [True, False])
def test_nms_per_image_keeps_each_images_batched_nms(prefix):
    """Three images' candidates in one batch (one image with none): each image's rows are what
    torchvision's batched_nms keeps of that image alone, cut at k, image by image; the ONNX form
    (its eager forward, which the export traces) keeps the same rows."""
    counts, k = [700, 0, 300], 200  # k above the 300-box image's survivors: all low scores count
    parts = [_candidates(n, 4, seed=10 + i) for i, n in enumerate(counts)]
    boxes, scores, labels = (torch.cat([p[j] for p in parts]) for j in range(3))
    groups = labels - 1  # 0..2, as the ONNX form needs
    batch_index = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
    expected, start = [], 0
    for n in counts:
        rows = slice(start, start + n)
        expected.append(batched_nms(boxes[rows], scores[rows], groups[rows], 0.5)[:k] + start)
        start += n
    expected = torch.cat(expected)
    got = nms_per_image(boxes, scores, groups, batch_index, len(counts), 3, 0.5, k, prefix=prefix)
    assert torch.equal(got, expected)
    onnx_form = _nms_per_image_onnx(boxes, scores, groups, batch_index, len(counts), 3, 0.5, k)
    assert torch.equal(onnx_form, expected)

"""Mask geometry: the aligned crop (`mask_targets(aligned=True)`) and paste (`paste_masks(aligned=True)`)
against hand-computed values, torch's grid_sample and a round trip on a drawn disc."""

import pytest
import torch
import torch.nn.functional as F

from maskrcnn.ops.masks import mask_targets, paste_masks

U = torch.finfo(torch.float32).eps / 2  # fp32's unit roundoff


def test_aligned_paste_by_hand():
    ones = torch.ones(1, 4, 4)
    # cells tile [2, 6]: pixel centres 2.5..5.5 sit on cell centres; 1.5 and 6.5 a whole cell out
    inside = paste_masks(ones, torch.tensor([[2.0, 0.0, 6.0, 4.0]]), (4, 10), aligned=True)
    assert inside[0, 0].tolist() == [0, 0, 1, 1, 1, 1, 0, 0, 0, 0]
    # cells tile [2.5, 6.5]: the centres at 2.5 and 6.5 lie on the outer cell edges, half way to zero
    shifted = paste_masks(ones, torch.tensor([[2.5, 0.0, 6.5, 4.0]]), (4, 10), aligned=True)
    assert shifted[0, 0].tolist() == [0, 0, 0.5, 1, 1, 1, 0.5, 0, 0, 0]


def test_aligned_paste_equals_grid_sample():
    """detectron2's paste: grid_sample(align_corners=False, zero padding) at each pixel centre."""
    gen = torch.Generator().manual_seed(0)
    masks = torch.rand(5, 28, 28, generator=gen, dtype=torch.float64)
    xy = torch.rand(5, 2, generator=gen, dtype=torch.float64) * 40
    boxes = torch.cat([xy, xy + 3 + torch.rand(5, 2, generator=gen, dtype=torch.float64) * 30], dim=1)
    h, w = 60, 75
    ours = paste_masks(masks, boxes, (h, w), aligned=True)
    gx = ((torch.arange(w, dtype=torch.float64) + 0.5)[None] - boxes[:, 0:1]) / (boxes[:, 2:3] - boxes[:, 0:1]) * 2 - 1
    gy = ((torch.arange(h, dtype=torch.float64) + 0.5)[None] - boxes[:, 1:2]) / (boxes[:, 3:4] - boxes[:, 1:2]) * 2 - 1
    grid = torch.stack([gx[:, None, :].expand(-1, h, -1), gy[:, :, None].expand(-1, -1, w)], dim=3)
    reference = F.grid_sample(masks[:, None], grid, align_corners=False, padding_mode="zeros")[:, 0]
    # float64 on both sides, positions computed by other formulas: each rounds a coordinate of
    # < 100 px by a few float64 ulps (~1e-14 px), moving a value in [0, 1] by less: 1e-12 is
    # 100x that and 1e9x below a misplaced half pixel.
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-12)


def _boxes_in_and_out(gen, n, h, w):
    """Boxes of every kind: inside, across each border, tiny, the whole image and beyond, outside."""
    xy = torch.rand(n, 2, generator=gen) * torch.tensor([w, h]) - 10
    boxes = torch.cat([xy, xy + 1 + torch.rand(n, 2, generator=gen) * 50], dim=1)
    extra = torch.tensor([[-5.0, -5.0, w + 5.0, h + 5.0], [3.0, 4.0, 3.4, 4.2], [w + 2.0, 1.0, w + 9.0, 9.0]])
    return torch.cat([boxes, extra])


@pytest.mark.parametrize("aligned", [False, True])
def test_windowed_paste_equals_the_whole_image_product(aligned, monkeypatch):
    """Eager pasting computes a window per box; traced (an export), the whole image: the same
    masks, and `threshold` gives the probabilities' bool masks."""
    gen = torch.Generator().manual_seed(1)
    h, w = 70, 90
    boxes = _boxes_in_and_out(gen, 20, h, w)
    masks = torch.rand(len(boxes), 28, 28, generator=gen)
    eager = paste_masks(masks, boxes, (h, w), aligned=aligned)
    assert torch.equal(paste_masks(masks, boxes, (h, w), aligned=aligned, threshold=0.5), eager > 0.5)
    monkeypatch.setattr(torch.jit, "is_tracing", lambda: True)  # the traced code path, run eagerly
    # Both compute the same fp32 weights pixel by pixel (elementwise, so bit-identical), then
    # rows @ mask @ cols.T with other matrix shapes, so BLAS may sum in another order (or fuse
    # multiply-adds). Each row has 2 non-zero taps: each of the two reductions is within 2 u of its
    # sum of |terms| (<= max |mask| = 1, the weights summing to 1), so the paths differ by <= 8 u.
    torch.testing.assert_close(eager, paste_masks(masks, boxes, (h, w), aligned=aligned), rtol=0, atol=8 * U)
    assert eager[-1].max() == 0 and eager[-3].min() > 0  # outside the image; over all of it
    assert paste_masks(masks[:0], boxes[:0], (h, w), threshold=0.5).shape == (0, h, w)


def test_unaligned_paste_equals_torchvisions():
    from torchvision.models.detection.roi_heads import paste_masks_in_image

    gen = torch.Generator().manual_seed(2)
    h, w = 64, 80
    boxes = _boxes_in_and_out(gen, 30, h, w)[:-1]  # torchvision's loop fails on a box outside the image
    masks = torch.rand(len(boxes), 28, 28, generator=gen)
    truth = paste_masks_in_image(masks[:, None].double(), boxes, (h, w))[:, 0]
    theirs = paste_masks_in_image(masks[:, None], boxes, (h, w))[:, 0]
    ours = paste_masks(masks, boxes, (h, w))
    # Judged against torchvision in float64: no less exact than torchvision's fp32, or within the
    # rounding bound of the arithmetic. A sample position (p + 0.5) * S / length - 0.5 (S = 30
    # padded cells) rounds three times by u times <= S: 3 u S per axis, moving a value by at most
    # that times D = 1 (the largest step between neighbouring cells of a mask in [0, 1]); the
    # weights (1 - frac) and each axis's 2-tap sum add 3 u per axis.
    floor = U * (2 * 3 * 30 * 1 + 2 * 3)
    err, their_err = (ours.double() - truth).abs().max(), (theirs.double() - truth).abs().max()
    assert err <= max(2 * their_err, floor), (err, their_err)


def disc(h: int, w: int, cx: float, cy: float, r: float) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    return ((xs - cx) ** 2 + (ys - cy) ** 2 <= r * r).to(torch.uint8)


def centroid(mask: torch.Tensor) -> torch.Tensor:
    ys, xs = torch.nonzero(mask, as_tuple=True)
    return torch.stack([xs.float().mean(), ys.float().mean()])


@pytest.mark.parametrize("radius", [6.3, 17.6])
def test_aligned_round_trip_puts_the_mask_back(radius):
    """Crop a disc's mask to its tight box and paste the crop back: the aligned pair returns the
    same pixels (IoU >= 0.95, centroid within 0.05 px); torchvision's pair shifts it by about
    half a pixel up-left and grows it, which is what the aligned switch exists to fix."""
    gt = disc(64, 64, 30.2, 27.9, radius)
    ys, xs = torch.nonzero(gt, as_tuple=True)
    box = torch.tensor([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], dtype=torch.float32)
    results = {}
    for aligned in (True, False):
        crop = mask_targets(gt[None], box, torch.zeros(1, dtype=torch.int64), 28, aligned=aligned)
        pasted = paste_masks(crop, box, (64, 64), aligned=aligned)[0] > 0.5
        iou = (pasted & gt.bool()).sum() / (pasted | gt.bool()).sum()
        results[aligned] = (iou.item(), (centroid(pasted) - centroid(gt)).tolist())
    iou, shift = results[True]
    assert iou >= 0.95 and max(abs(s) for s in shift) <= 0.05, results
    old_iou, old_shift = results[False]
    assert old_iou < iou and min(old_shift) <= -0.25, results

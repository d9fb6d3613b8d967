"""The model under detectron2's conventions (as its files load: convert/detectron2.py) computes
what detectron2's formulas give, one test per convention of issue 31."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from maskrcnn.weights.formats.detectron2 import detectron2_conventions
from maskrcnn.model.detector import MaskRCNN
from maskrcnn.model.rpn import RPN, AnchorGenerator
from maskrcnn.presets import maskrcnn_r50_fpn


def d2_config():
    cfg = detectron2_conventions(maskrcnn_r50_fpn())
    cfg.model.anchors.round_base = False
    return cfg


@pytest.fixture(scope="module")
def small_d2_model():
    cfg = d2_config()
    cfg.model.backbone.depth, cfg.input.min_size = 18, (800,)
    torch.manual_seed(0)
    return MaskRCNN(cfg).eval()


def test_padding_strip_gives_no_empty_proposals():
    """A 100 x 70 image padded to 128 x 96: anchors centred in the 26-px strip right of the
    image clip to zero width; detectron2 keeps only boxes wider and higher than MIN_SIZE = 0."""
    cfg = d2_config()
    cfg.model.rpn.nms_thresh, cfg.model.rpn.pre_nms_topk_test, cfg.model.rpn.post_nms_topk_test = 1.0, 10**6, 10**6
    rpn = RPN(cfg.model.rpn, cfg.model.anchors, channels=4).eval()
    features = [torch.zeros(1, 4, 128 // s, 96 // s) for s in (4, 8, 16, 32)] + [torch.zeros(1, 4, 2, 2)]
    anchors = rpn.anchor_generator((128, 96), features)
    boxes = torch.cat(anchors)[None]  # zero deltas: proposals are the anchors
    logits = torch.randn(1, boxes.shape[1], generator=torch.Generator().manual_seed(0))
    (proposals,) = rpn.select_proposals(boxes, logits, [len(a) for a in anchors], [(100, 70)])
    # by hand: clip each anchor to [0, 70] x [0, 100]; detectron2 keeps w > 0 and h > 0
    a = boxes[0].double().numpy()
    w = np.clip(a[:, 2], 0, 70) - np.clip(a[:, 0], 0, 70)
    h = np.clip(a[:, 3], 0, 100) - np.clip(a[:, 1], 0, 100)
    assert (w == 0).sum() > 100  # the strip's anchors really are there
    assert len(proposals) == int(((w > 0) & (h > 0)).sum())
    widths, heights = proposals[:, 2] - proposals[:, 0], proposals[:, 3] - proposals[:, 1]
    assert bool((widths > 0).all() and (heights > 0).all())


def test_p6_anchor_stride_is_64_on_an_800_high_batch():
    """detectron2: anchor centres at stride * i with the backbone's stride 64 for P6, where
    torchvision's padded // feature size gives 800 // 13 = 61."""
    gen = AnchorGenerator(d2_config().model.anchors)
    sizes = [(200, 304), (100, 152), (50, 76), (25, 38), (13, 19)]
    anchors = gen((800, 1216), [torch.zeros(1, 1, h, w) for h, w in sizes])
    for (h, w), stride, level in zip(sizes, (4, 8, 16, 32, 64), anchors):
        square = level.view(h, w, 3, 4)[:, :, 1]  # ratio 1.0
        cx, cy = (square[..., 0] + square[..., 2]) / 2, (square[..., 1] + square[..., 3]) / 2
        assert torch.equal(cx, (stride * torch.arange(w, dtype=torch.float32)).expand(h, w))
        assert torch.equal(cy, (stride * torch.arange(h, dtype=torch.float32))[:, None].expand(h, w))


def d2_paste(probs: torch.Tensor, box: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """detectron2 layers/mask_ops.py _do_paste_mask: pixel centres (+0.5) mapped onto the float
    box, normalised to [-1, 1] and sampled bilinearly (align_corners=False, zeros outside)."""
    x0, y0, x1, y1 = box.double()
    ys = (torch.arange(h, dtype=torch.float64) + 0.5 - y0) / (y1 - y0) * 2 - 1
    xs = (torch.arange(w, dtype=torch.float64) + 0.5 - x0) / (x1 - x0) * 2 - 1
    grid = torch.stack([xs[None, :].expand(h, w), ys[:, None].expand(h, w)], dim=-1)[None]
    return F.grid_sample(probs[None, None].double(), grid, align_corners=False)[0, 0]


def test_masks_pasted_on_the_float_box(small_d2_model):
    gen = torch.Generator().manual_seed(1)
    coarse = torch.rand(1, 1, 7, 7, generator=gen)
    probs = F.interpolate(coarse, size=(28, 28), mode="bilinear", align_corners=False)[0]  # smooth (1, 28, 28)
    box = torch.tensor([[10.3, 5.7, 30.9, 22.2]])
    det = {"boxes": box, "scores": torch.tensor([0.9]), "labels": torch.tensor([1]), "mask_probs": probs}
    (inst,) = small_d2_model.postprocess([det], [(40, 48)], [(40, 48)], keep_mask_probs=True)
    expected = d2_paste(probs[0], box[0], 40, 48)
    # fp32 against float64: a sample position (p + 0.5 - x0) * 28 / (x1 - x0) - 0.5 rounds five
    # times, by u times at most C, the largest position in cells over the image (|dc| <= 5 u C),
    # moving a value by |dc| D (D: the largest step between neighbouring cells), per axis; the
    # weights and each axis's 2-tap sum add 3 u of the largest probability M per axis.
    u, cells = torch.finfo(torch.float32).eps / 2, probs[0].double()
    c = max(48 * 28 / (30.9 - 10.3), 40 * 28 / (22.2 - 5.7))
    d = max((cells[1:] - cells[:-1]).abs().max(), (cells[:, 1:] - cells[:, :-1]).abs().max()).item()
    bound = u * (2 * 5 * c * d + 2 * 3 * cells.abs().max().item())
    assert (inst.mask_probs[0].double() - expected).abs().max() <= bound


def test_input_resized_with_rounding_and_padded_to_32(small_d2_model):
    image = torch.rand(3, 335, 344, generator=torch.Generator().manual_seed(2))
    batch, _ = small_d2_model.preprocess([image], None, None)
    assert batch.image_sizes == [(800, 821)]  # detectron2: int(820.5... + 0.5); truncation gives 799
    assert tuple(batch.tensors.shape[-2:]) == (800, 832)

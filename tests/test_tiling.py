"""Tiled prediction: shapes cut by tile borders come out once, with one whole mask.

The "model" is a colour detector: every shape is painted in its own colour, so in any tile it
finds exactly the visible part of each shape (the ground truth clipped to the tile). What is
tested is the tiling and the merge, against the shapes as drawn.
"""

import numpy as np
import pytest
import torch

from maskrcnn.errors import UserError
from maskrcnn.structures import Instances
from maskrcnn.tiling import predict_tiled, tile_origins

HEIGHT, WIDTH, TILE, OVERLAP = 700, 1000, 256, 64
# x origins 0, 192, 384, 576, 744; y origins 0, 192, 384, 444: overlaps x 192-256, 384-448, ...
SHAPES = [  # (kind, label, *geometry)
    ("disc", 1, 250, 100, 40),  # across the x = 192..256 overlap
    ("rect", 2, 150, 300, 700, 340),  # longer than two tiles: seen in part by four columns
    ("disc", 1, 416, 416, 30),  # where four tiles meet
    ("disc", 1, 580, 600, 20),  # a pair of same-class discs 2 px apart, across x = 576..640
    ("disc", 1, 622, 600, 20),
    ("disc", 2, 100, 100, 25),  # inside one tile only
    ("rect", 1, 200, 500, 245, 540),  # wholly inside an overlap: seen whole by two tiles
]


def _scene():
    """(3, H, W) image in [0, 1] and (N, H, W) bool truth masks, one colour per shape."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 100, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    ys, xs = np.mgrid[:HEIGHT, :WIDTH] + 0.5
    masks = []
    for kind, _, *g in SHAPES:
        if kind == "disc":
            masks.append((xs - g[0]) ** 2 + (ys - g[1]) ** 2 <= g[2] ** 2)
        else:
            masks.append((xs >= g[0]) & (xs < g[2]) & (ys >= g[1]) & (ys < g[3]))
    masks = np.stack(masks)
    for index, mask in enumerate(masks):
        pixels[mask] = _colour(index)
    return torch.from_numpy(pixels).permute(2, 0, 1).float() / 255, masks


def _colour(index):
    return (255, 120 + 20 * index, 200 - 20 * index)


def _colour_detector(bleed=0, masks=True, confused_when_cut=False):
    """Stub model: each shape's colour in the tile -> one detection. bleed > 0 adds a band of
    false mask pixels along the tile's edges next to the object, as a model that lost context
    at a cut might; confused_when_cut gives a shape the tile cuts the other label, scoring less."""

    def predict(tiles):
        out = []
        for tile in tiles:
            rgb = (tile * 255).round().permute(1, 2, 0).numpy()  # (h, w, 3)
            found = []
            for index, (_, label, *_g) in enumerate(SHAPES):
                mask = (rgb == _colour(index)).all(-1)
                if not mask.any():
                    continue
                cut = mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any()
                if confused_when_cut and cut:
                    found.append((3 - label, 0.6, mask))
                else:
                    found.append((label, 0.9, _with_bleed(mask, bleed) if bleed else mask))
            boxes = torch.tensor([_box(m) for *_, m in found], dtype=torch.float32).reshape(-1, 4)
            fields = {"boxes": boxes, "scores": torch.tensor([score for _, score, _ in found]).reshape(-1),
                      "labels": torch.tensor([label for label, *_ in found], dtype=torch.int64)}
            if masks:
                fields["masks"] = torch.from_numpy(np.stack([m for *_, m in found]) if found
                                                   else np.zeros((0, *tile.shape[1:]), bool))
            out.append(Instances(tile.shape[1:], ("bg", "a", "b"), **fields))
        return out

    return predict


def _with_bleed(mask, width):
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    near = np.zeros_like(mask)
    y0, y1 = max(rows[0] - width, 0), rows[-1] + width + 1
    x0, x1 = max(cols[0] - width, 0), cols[-1] + width + 1
    near[y0:y1, x0:x1] = True
    edge = np.zeros_like(mask)
    edge[:width], edge[-width:], edge[:, :width], edge[:, -width:] = True, True, True, True
    return mask | (near & edge)


def _box(mask):
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return [cols[0], rows[0], cols[-1] + 1, rows[-1] + 1]


def _iou(a, b):
    return (a & b).sum() / (a | b).sum()


def test_tile_origins_cover_the_axis_with_the_last_tile_flush():
    assert tile_origins(1000, 256, 64) == [0, 192, 384, 576, 744]
    assert tile_origins(700, 256, 64) == [0, 192, 384, 444]
    assert tile_origins(256, 256, 64) == [0]
    assert tile_origins(100, 256, 0) == [0]


@pytest.mark.parametrize("bleed", [0, 6])
def test_each_shape_once_with_its_whole_mask(bleed):
    image, truth = _scene()
    out = predict_tiled(_colour_detector(bleed), image, TILE, OVERLAP)
    assert len(out) == len(SHAPES)
    assert out.masks.shape == (len(SHAPES), HEIGHT, WIDTH)
    predicted = out.masks.numpy()
    ious = np.array([[_iou(t, p) for p in predicted] for t in truth])  # (truth, predicted)
    best = ious.argmax(1)
    assert sorted(best.tolist()) == list(range(len(SHAPES)))  # one prediction per shape
    # with a bleeding detector the merge must take each pixel from the tile that sees it best
    assert ious.max(1).min() >= (1.0 if bleed == 0 else 0.98)
    assert out.labels[best].tolist() == [label for _, label, *_ in SHAPES]
    boxes = np.array([_box(t) for t in truth])
    if bleed == 0:
        np.testing.assert_allclose(out.boxes[best].numpy(), boxes)


def test_a_part_the_tile_cuts_may_carry_another_label_the_best_part_names_the_object():
    image, truth = _scene()
    out = predict_tiled(_colour_detector(confused_when_cut=True), image, TILE, OVERLAP)
    assert len(out) == len(SHAPES)
    best = np.array([[_iou(t, p) for p in out.masks.numpy()] for t in truth]).argmax(1)
    # the long rectangle is cut by every tile that sees it: its parts all carry the wrong label
    expected = [label for _, label, *_ in SHAPES]
    expected[1] = 3 - expected[1]
    assert out.labels[best].tolist() == expected
    assert out.scores[best].tolist() == pytest.approx([0.6 if i == 1 else 0.9 for i in range(len(SHAPES))])


def test_boxes_only_models_merge_by_box():
    image, truth = _scene()
    out = predict_tiled(_colour_detector(masks=False), image, TILE, OVERLAP)
    assert len(out) == len(SHAPES) and not out.has("masks")
    expected = sorted(map(tuple, (_box(t) for t in truth)))
    assert sorted(map(tuple, out.boxes.numpy().astype(int).tolist())) == expected


def test_image_smaller_than_a_tile_is_one_tile():
    image, truth = _scene()
    calls = []
    detector = _colour_detector()
    out = predict_tiled(lambda tiles: calls.append(len(tiles)) or detector(tiles), image, 1024, 64)
    assert calls == [1] and len(out) == len(SHAPES)


@pytest.mark.parametrize("tile, overlap", [(16, 0), (256, 256), (256, -1)])
def test_bad_tile_arguments_are_user_errors(tile, overlap):
    image, _ = _scene()
    with pytest.raises(UserError, match="tile"):
        predict_tiled(_colour_detector(), image, tile, overlap)


def test_predict_command_with_tiles_writes_the_merged_detections(tmp_path):
    import json
    import warnings

    from PIL import Image

    import maskrcnn
    from maskrcnn.cli import main
    from maskrcnn.weights import save_weights

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        built = maskrcnn.load_model("maskrcnn_r18_fpn", precision=None, min_size=64, max_size=64, num_classes=3,
                                    box_detections_per_img=5, class_names=["__background__", "a", "b"])
    save_weights(built, tmp_path / "tiny.safetensors")
    pixels = np.random.default_rng(1).integers(0, 255, (80, 100, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "big.png")
    code = main(["predict", str(tmp_path / "big.png"), "--model", "maskrcnn_r18_fpn", "--weights",
                 str(tmp_path / "tiny.safetensors"), "--out", str(tmp_path / "out"), "--score-thresh", "0",
                 "--tile", "64", "--tile-overlap", "16"])
    assert code == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    model = maskrcnn.load_model("maskrcnn_r18_fpn", weights=tmp_path / "tiny.safetensors", box_score_thresh=0.0)
    image = torch.from_numpy(pixels).permute(2, 0, 1) / 255.0
    expected = predict_tiled(lambda tiles: [model.predict(t)[0] for t in tiles], image, 64, 16)
    assert len(results) == len(expected) > 0
    boxes = np.array([r["bbox"] for r in results])
    boxes[:, 2:] += boxes[:, :2]
    # the same fp32 model on the same tiles (0.0 apart); the JSON's float64 xywh and back rounds a
    # coordinate <= 100 px twice: 2 float64 ulps of 100 px
    np.testing.assert_allclose(boxes, expected.boxes.numpy(), rtol=0, atol=2 * np.finfo(np.float64).eps * 100)
    assert all(r["segmentation"]["size"] == [80, 100] for r in results)

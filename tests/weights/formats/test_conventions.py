"""detectron2 and mmdetection files load with their framework's pre- and post-processing
(docs/conventions.md), checked against each framework's formulas written out here by hand."""

import argparse
import pickle

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from maskrcnn.commands.train import build_config
from maskrcnn.model.detector import resized_size
from maskrcnn.weights import read_weights

from test_detectron2 import d2_mask_rcnn_state
from test_mmdet import mmdet_ms_rcnn_state


def d2_resize_shortest_edge(h: int, w: int, short: int = 800, max_size: int = 1333) -> tuple[int, int]:
    """detectron2 ResizeShortestEdge.get_output_shape (augmentation_impl.py:181-200)."""
    scale = short * 1.0 / min(h, w)
    newh, neww = (short * 1.0, scale * w) if h < w else (scale * h, short * 1.0)
    if max(newh, neww) > max_size:
        scale = max_size * 1.0 / max(newh, neww)
        newh, neww = newh * scale, neww * scale
    return int(newh + 0.5), int(neww + 0.5)


def mmcv_rescale_size(h: int, w: int, scale=(1333, 800)) -> tuple[int, int]:
    """mmcv rescale_size((w, h), scale) with _scale_size: mmdetection's Resize(keep_ratio=True)."""
    factor = min(max(scale) / max(h, w), min(scale) / min(h, w))
    return int(h * float(factor) + 0.5), int(w * float(factor) + 0.5)


@pytest.fixture(scope="module")
def d2_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("d2conv") / "model_final_f10217.pkl"
    with open(path, "wb") as f:
        pickle.dump({"model": d2_mask_rcnn_state(random=False), "__author__": "Detectron2 Model Zoo"}, f)
    return path


@pytest.fixture(scope="module")
def mmdet_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("mmconv") / "ms_rcnn_r50_caffe_fpn_1x_coco.pth"
    torch.save({"meta": {}, "state_dict": mmdet_ms_rcnn_state(50, make=torch.zeros)}, path)
    return path


def _config(path) -> dict:
    return read_weights(str(path))[1]


def test_input_size_of_every_pennfudan_image_is_the_frameworks(shared_data, d2_file, mmdet_file):
    files = sorted((shared_data / "pennfudan" / "PNGImages").glob("*.png"))
    sizes = [Image.open(p).size[::-1] for p in files]  # (h, w), header only
    assert len(sizes) >= 10
    for path, formula in ((d2_file, d2_resize_shortest_edge), (mmdet_file, mmcv_rescale_size)):
        inp = _config(path)["input"]
        assert (inp["min_size"][-1], inp["max_size"]) == (800, 1333)
        ours = [resized_size(h, w, 800, 1333, inp["resize_rounding"]) for h, w in sizes]
        assert ours == [formula(h, w) for h, w in sizes], path.name


def test_round_and_floor_differ_where_the_issue_says():
    # issue 31: 344x335 becomes 821x800 in detectron2 and 821x799 truncated; 369x576 -> 800x1249
    assert resized_size(335, 344, 800, 1333, "round") == d2_resize_shortest_edge(335, 344) == (800, 821)
    assert resized_size(335, 344, 800, 1333, "floor") == (799, 821)
    assert resized_size(576, 369, 800, 1333, "round") == d2_resize_shortest_edge(576, 369) == (1249, 800)


def test_detectron2_file_loads_with_aligned_paste_and_strict_filtering(d2_file):
    cfg = _config(d2_file)
    m, inp = cfg["model"], cfg["input"]
    assert m["mask"]["aligned"] is True
    assert (m["rpn"]["min_box_size"], m["rpn"]["min_box_strict"]) == (0.0, True)
    assert (m["box"]["min_box_size"], m["box"]["min_box_strict"]) == (0.0, True)
    assert m["anchors"]["strides"] == [4, 8, 16, 32, 64]
    assert (inp["resize_rounding"], inp["resize_backend"], inp["size_divisibility"]) == ("round", "pil", 32)


def test_mmdet_file_loads_with_padding_to_32(mmdet_file):
    cfg = _config(mmdet_file)
    m, inp = cfg["model"], cfg["input"]
    assert inp["size_divisibility"] == 32
    assert (inp["resize_rounding"], inp["resize_backend"]) == ("round", "cv2")
    assert m["anchors"]["strides"] == [4, 8, 16, 32, 64] and m["mask"]["aligned"] is True
    assert (m["rpn"]["min_box_size"], m["rpn"]["min_box_strict"]) == (0.0, True)
    # multiclass_nms filters no box by size: >= 0 keeps every clipped box
    assert (m["box"]["min_box_size"], m["box"]["min_box_strict"]) == (0.0, False)


def _train_args(weights, overrides, data, out):
    return argparse.Namespace(config=None, model="maskrcnn_r50_fpn", weights=str(weights), set=overrides, budget=None,
                              data=str(data), images=str(data.parent / "images"), val_data="", val_images="",
                              out=str(out))  # fmt: skip


def test_fine_tuning_keeps_the_conventions_unless_set(d2_file, synth_ann, tmp_path):
    kept = build_config(_train_args(d2_file, [], synth_ann, tmp_path))
    assert (kept.input.resize_rounding, kept.input.resize_backend) == ("round", "pil")
    assert kept.model.mask.aligned and kept.model.rpn.min_box_strict and kept.model.anchors.strides == (4, 8, 16, 32, 64)
    changed = build_config(_train_args(d2_file, ["input.resize_backend=torch", "model.anchors.strides=[]"],
                                       synth_ann, tmp_path))
    assert (changed.input.resize_rounding, changed.input.resize_backend) == ("round", "torch")
    assert changed.model.anchors.strides == () and changed.model.mask.aligned


def test_resampling_backends_are_the_frameworks_calls():
    from maskrcnn.model.detector import resize

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    image = torch.from_numpy(pixels).permute(2, 0, 1).float() / 255.0
    size = d2_resize_shortest_edge(37, 53, 80, 1333)  # (80, 115): an upscale
    pil = np.asarray(Image.fromarray(pixels).resize((size[1], size[0]), Image.BILINEAR))  # detectron2's call
    ocv = cv2.resize(pixels, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)  # mmcv imresize's call
    for backend, expected in (("pil", pil), ("cv2", ocv)):
        out, _ = resize(image, 80, 1333, None, rounding="round", backend=backend)
        assert out.shape[-2:] == size
        assert torch.equal((out * 255).round().to(torch.uint8).permute(1, 2, 0), torch.from_numpy(expected))
    assert np.abs(pil.astype(int) - ocv.astype(int)).max() >= 1  # the two filters do differ

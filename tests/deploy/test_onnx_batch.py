"""The batched ONNX graph (dynamic batch dimension) and masks pasted inside it (`--paste-masks`).

One export (ResNet-18 FPN, 320 px, seeded random weights, traced on a batch of two) runs a batch
of three images of different sizes, each padded to a different multiple of 32, one of them a
flat grey image. Random weights score every box alike, so the score cut is set from PyTorch's own
scores: halfway between the grey image's best score and the real images' scores, which leaves the
grey image with no detection and the others with some.
"""

import json

import numpy as np
import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from test_onnx_export import IMAGES, _export, _model, assert_matches  # noqa: E402

from maskrcnn.cli import main  # noqa: E402
from maskrcnn.data.images import read_image  # noqa: E402
from maskrcnn.deploy.onnx_export import INPUT_NAME, ORIGINAL_SIZES_NAME, SIZES_NAME  # noqa: E402
from maskrcnn.deploy.onnx_runner import OnnxPredictor  # noqa: E402
from maskrcnn.ops.masks import paste_masks  # noqa: E402

GREY = (200, 300)  # -> 320x480 (padded 320x480); the Penn-Fudan images pad to 416x320, 352x320
DETECTIONS = 30


@pytest.fixture(scope="module")
def images(shared_data):
    folder = shared_data / "pennfudan" / "PNGImages"
    return [read_image(folder / name) for name in IMAGES] + [torch.full((3, *GREY), 0.5)]


@pytest.fixture(scope="module")
def cut_export(images, tmp_path_factory):
    """(model with the score cut, predictor of its export with pasted masks, the cut)."""
    model = _model("maskrcnn_r18_fpn", box_score_thresh=0.0, box_detections_per_img=DETECTIONS)
    *real, grey = model.predict(images)
    best_real = min(float(inst.scores[DETECTIONS // 3]) for inst in real)
    assert float(grey.scores[0]) < best_real, "the grey image out-scores the real ones: pick another"
    cut = (float(grey.scores[0]) + best_real) / 2
    model.cfg.model.box.score_thresh = cut
    path = tmp_path_factory.mktemp("onnx_batch") / "pasted.onnx"
    assert _export(model, path, paste_masks=True) == []  # no size frozen into the trace
    return model, OnnxPredictor(path), cut


@pytest.fixture(scope="module")
def batch_run(cut_export, images):
    """The graph's inputs and raw outputs for the batch of three."""
    _, predictor, _ = cut_export
    feed = predictor.graph_inputs(images)
    return feed, predictor.run_graph(feed)


def test_batch_of_three_equals_single_runs_and_pytorch(cut_export, images, batch_run):
    model, predictor, cut = cut_export
    feed, out = batch_run
    assert feed[INPUT_NAME].shape == (3, 3, 411, 480)  # the largest height and width
    assert feed[SIZES_NAME].tolist() == [[411, 320], [326, 320], [320, 480]]
    counts = torch.bincount(out["batch_index"], minlength=3).tolist()
    assert counts[2] == 0 and 0 < counts[0] <= DETECTIONS and 0 < counts[1] <= DETECTIONS
    assert torch.equal(out["batch_index"], out["batch_index"].sort().values)  # grouped by image
    # each image's rows are what the graph gives that image alone, on the same padded canvas
    for i, rows in enumerate(out["batch_index"].bincount(minlength=3).cumsum(0).tolist()):
        alone = predictor.run_graph({k: v[i : i + 1] for k, v in feed.items()})
        assert len(alone["scores"]) == counts[i] and (alone["batch_index"] == 0).all()
        mine = slice(rows - counts[i], rows)
        assert_matches(_raw_instances(alone), _raw_instances({k: v[mine] for k, v in out.items()}))
    # and the runner's batch equals PyTorch's batch, image by image (single images alone, each
    # padded to its own size, equal PyTorch's: test_onnx_export.py)
    batch = predictor.predict(images)
    for ref, got in zip(model.predict(images), batch):
        assert (got.scores > cut).all()
        assert_matches(ref, got)
    assert len(batch[2]) == 0 and batch[2].masks.shape == (0, *GREY)


def test_pasted_masks_equal_the_runners(cut_export, images, batch_run):
    _, predictor, _ = cut_export
    feed, out = batch_run
    assert out["masks"].dtype == torch.bool
    assert out["masks"].shape[1:] == (342, 314)  # the largest original height and width
    for i, image in enumerate(images[:2]):  # the grey image has no detection
        mine = out["batch_index"] == i
        (h, w), (rh, rw) = image.shape[-2:], feed[SIZES_NAME][i].tolist()
        ratio = torch.tensor([w / rw, h / rh] * 2, dtype=torch.float32)
        runner = paste_masks(out["mask_probs"][mine], out["boxes"][mine] * ratio, (h, w)) > 0.5
        pasted = out["masks"][mine]
        assert not pasted[:, h:].any() and not pasted[:, :, w:].any()  # nothing outside the image
        pasted = pasted[:, :h, :w]
        inter = (runner & pasted).flatten(1).sum(1)
        union = (runner | pasted).flatten(1).sum(1)
        assert (union > 0).all()
        assert (inter / union).min() >= 0.99
    assert list(feed) == [INPUT_NAME, SIZES_NAME, ORIGINAL_SIZES_NAME]
    assert feed[ORIGINAL_SIZES_NAME].tolist() == [list(image.shape[-2:]) for image in images]


def test_batch_dimension_is_dynamic_and_documented(cut_export):
    import onnx

    _, predictor, _ = cut_export
    proto = onnx.load(str(predictor.path), load_external_data=False)
    dims = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in proto.graph.input}
    assert dims == {INPUT_NAME: ["batch", 3, "height", "width"], SIZES_NAME: ["batch", 2],
                    ORIGINAL_SIZES_NAME: ["batch", 2]}
    assert predictor.info["inputs"] == list(dims)
    assert predictor.info["outputs"] == ["boxes", "scores", "labels", "batch_index", "mask_probs", "masks"]


def test_zero_detections_through_the_cli(cut_export, images, tmp_path, capsys):
    """The grey image alone: every output empty, and `maskrcnn predict` writes an empty result."""
    _, predictor, cut = cut_export
    out = predictor.run_graph(predictor.graph_inputs([images[2]]))
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "boxes": (0, 4), "scores": (0,), "labels": (0,), "batch_index": (0,), "mask_probs": (0, 28, 28),
        "masks": (0, *GREY)}
    grey = tmp_path / "grey.png"
    from PIL import Image

    Image.fromarray(np.full((*GREY, 3), 128, np.uint8)).save(grey)
    code = main(["predict", "--backend", "onnxruntime", "--weights", str(predictor.path), str(grey),
                 "--out", str(tmp_path / "out"), "--score-thresh", str(cut)])
    assert code == 0
    assert json.loads((tmp_path / "out" / "results.json").read_text()) == []
    assert (tmp_path / "out" / "grey.png.png").is_file()  # the overlay
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("1 images, 0 instances")


def _raw_instances(out: dict):
    """One image's raw graph rows as `Instances` (boxes in resized pixels) for assert_matches,
    with the mask probabilities as soft "masks" compared through their 0.5 cut."""
    from maskrcnn.structures import Instances

    return Instances((0, 0), (), boxes=out["boxes"], scores=out["scores"], labels=out["labels"],
                     masks=out["mask_probs"] > 0.5)


def test_aligned_masks_in_the_graph_and_the_runner(images, tmp_path):
    """A model trained with `model.mask.aligned=true` is pasted the aligned way everywhere: the
    metadata says so, the runner's masks equal PyTorch's, and the graph's masks the runner's."""
    model = _model("maskrcnn_r18_fpn", box_score_thresh=0.0, box_detections_per_img=10)
    model.cfg.model.mask.aligned = True
    _export(model, tmp_path / "aligned.onnx", paste_masks=True)
    predictor = OnnxPredictor(tmp_path / "aligned.onnx")
    assert predictor.info["mask_aligned"] is True
    image = images[0]
    ref, got = model.predict([image])[0], predictor.predict([image])[0]
    assert_matches(ref, got)
    # the graph's masks (kept as `masks`) against the runner's aligned paste of the same probabilities
    feed = predictor.graph_inputs([image])
    out = predictor.run_graph(feed)
    (h, w), (rh, rw) = image.shape[-2:], feed[SIZES_NAME][0].tolist()
    ratio = torch.tensor([w / rw, h / rh] * 2, dtype=torch.float32)
    runner = paste_masks(out["mask_probs"], out["boxes"] * ratio, (h, w), aligned=True) > 0.5
    unaligned = paste_masks(out["mask_probs"], out["boxes"] * ratio, (h, w)) > 0.5
    pasted = out["masks"][:, :h, :w]
    assert (iou(runner, pasted) >= 0.99).all()
    assert not torch.equal(runner, unaligned)  # the switch changes the masks


def iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    inter = (a & b).flatten(1).sum(1)
    return inter / (a | b).flatten(1).sum(1).clamp(min=1)

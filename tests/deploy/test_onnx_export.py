"""ONNX export + the onnxruntime runner against PyTorch fp32 `model.predict` on Penn-Fudan images.

Every model is traced at EXPORT_SIZE and run on images that resize to other sizes (other padded
sizes, feature-map sizes and anchor counts per level), so a size baked into the trace shows up as
a mismatch. Random weights with box_score_thresh=0 give full detection lists (NMS, top-k and the
mask head all at work); models are exported once per module.
"""

import json
import warnings

import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

import maskrcnn  # noqa: E402
from maskrcnn.data.images import read_image  # noqa: E402
from maskrcnn.deploy.onnx_export import METADATA_KEY, ExportError, export_onnx  # noqa: E402
from maskrcnn.deploy.onnx_runner import OnnxPredictor  # noqa: E402
from maskrcnn.model.fast_inference import prepare_for_inference  # noqa: E402
from maskrcnn.errors import CheckpointError  # noqa: E402
from maskrcnn.presets import apply_kwargs, get_preset  # noqa: E402

SMALL = {"min_size": 320, "max_size": 533}
EXPORT_SIZE = (320, 480)  # traced size; padded 320x480, P6 5x8 -> 120 anchors on that level
# (H, W) 342x266 -> 411x320 (padded 416x320, P6 7x5: stride 59), 320x314 -> 326x320 (352x320)
IMAGES = ("FudanPed00017.png", "PennPed00061.png")
# Matching tolerances, not a precision judgement: onnxruntime runs its own kernels (other sums,
# other orders) through ~50 layers, whose effect no epsilon bound covers; its precision is judged
# against the model in float64 by `benchmarks/exactness_float64.py --onnx`, beside torchvision's.
# Here they only identify the same detection: BOX_TOL is 1/100 px (a wrong resize, anchor or
# half-pixel offset moves boxes by >= 0.5 px), SCORE_TOL and KEYPOINT_TOL likewise.
BOX_TOL, SCORE_TOL, MASK_IOU, KEYPOINT_TOL = 1e-2, 1e-4, 0.99, 1e-2


@pytest.fixture(scope="module")
def image_files(shared_data):
    return [shared_data / "pennfudan" / "PNGImages" / name for name in IMAGES]


@pytest.fixture(scope="module")
def images(image_files):
    return [read_image(path) for path in image_files]


def _model(name, **overrides):
    """The plain fp32 model with seeded random weights (the reference, whatever fast path
    load_model may apply by default; the CLI tests export through load_model)."""
    cfg = apply_kwargs(get_preset(name), {**SMALL, **overrides})
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return maskrcnn.build_model(cfg).eval()


def _export(model, path, **options):
    """Export; returns the trace warnings (a size frozen into the trace warns)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        export_onnx(model, path, sample_size=EXPORT_SIZE, **options)
    return [str(w.message) for w in caught if issubclass(w.category, torch.jit.TracerWarning)]


@pytest.fixture(scope="module")
def mask_export(tmp_path_factory):
    model = _model("maskrcnn_r18_fpn", box_score_thresh=0.0)
    folder = tmp_path_factory.mktemp("onnx")
    tracer_warnings = _export(model, folder / "model.onnx")
    return model, folder / "model.onnx", tracer_warnings


@pytest.fixture(scope="module")
def mask_predictions(mask_export, images):
    """(PyTorch, onnxruntime) Instances per image, from the mask model."""
    model, path, _ = mask_export
    predictor = OnnxPredictor(path)
    return [(model.predict(image)[0], predictor.predict(image)) for image in images]


def assert_matches(ref, out):
    """`out` (onnxruntime) holds the same detections as `ref` (PyTorch).

    Random-weight models score many detections almost alike, so two detections can swap places
    between backends on a last-bit difference. Detections are therefore matched (same label, box
    within BOX_TOL px, score within SCORE_TOL) instead of compared index by index."""
    assert len(out) == len(ref)
    assert out.image_size == ref.image_size and set(out.fields()) == set(ref.fields())
    unused = list(range(len(out)))
    pairs = []
    for i in range(len(ref)):
        # the same index first: it is the match unless a near-tie swapped two detections
        for j in sorted(unused, key=lambda j: abs(j - i)):
            if (out.labels[j] == ref.labels[i]
                    and (out.boxes[j] - ref.boxes[i]).abs().max() <= BOX_TOL
                    and (out.scores[j] - ref.scores[i]).abs() <= SCORE_TOL):
                pairs.append((i, j))
                unused.remove(j)
                break
        else:
            raise AssertionError(f"PyTorch detection {i} (label {int(ref.labels[i])}, score "
                                 f"{float(ref.scores[i]):.6f}, box {ref.boxes[i].tolist()}) has no "
                                 "onnxruntime match")
    i, j = (torch.tensor(p) for p in zip(*pairs)) if pairs else (torch.zeros(0, dtype=torch.long),) * 2
    if ref.has("masks"):
        assert out.masks.dtype == torch.bool and out.masks.shape == ref.masks.shape
        inter = (ref.masks[i] & out.masks[j]).flatten(1).sum(1)
        union = (ref.masks[i] | out.masks[j]).flatten(1).sum(1)
        iou = torch.where(union > 0, inter / union.clamp(min=1), 1.0)
        assert len(iou) == 0 or iou.min() >= MASK_IOU, f"mask IoU {iou.min():.4f} (detection {int(i[iou.argmin()])})"
    if ref.has("mask_scores"):
        # score x predicted IoU: a random MaskIoU head predicts "IoUs" up to ~2.5 (a trained one
        # stays in [0, 1]), so the error scales with the value: 1e-4 plus 1e-4 of the value
        torch.testing.assert_close(out.mask_scores[j], ref.mask_scores[i], atol=SCORE_TOL, rtol=1e-4)
    if ref.has("keypoints"):
        kp_ref, kp_out = ref.keypoints[i], out.keypoints[j]
        assert (kp_out[..., :2] - kp_ref[..., :2]).abs().max() <= KEYPOINT_TOL
        torch.testing.assert_close(kp_out[..., 2], kp_ref[..., 2], atol=1e-3, rtol=1e-4)  # logits
    return sum(a != b for a, b in pairs)  # detections whose rank differs


@pytest.mark.parametrize("index", range(len(IMAGES)))
def test_mask_model_matches_torch_at_other_sizes(mask_export, images, mask_predictions, index):
    _, path, _ = mask_export
    assert tuple(OnnxPredictor(path).resize(images[index]).shape[-2:]) != EXPORT_SIZE
    ref, out = mask_predictions[index]
    assert len(ref) == 100  # box_detections_per_img: NMS and top-k really cut
    assert_matches(ref, out)


def test_export_is_dynamic_self_describing_and_atomic(mask_export):
    import onnx

    model, path, tracer_warnings = mask_export
    assert tracer_warnings == []  # nothing derived from a shape was frozen into the trace
    assert [p.name for p in path.parent.iterdir()] == ["model.onnx"]  # no temp file left
    proto = onnx.load(str(path), load_external_data=False)
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", 3, "height", "width"]
    meta = json.loads({p.key: p.value for p in proto.metadata_props}[METADATA_KEY])
    assert meta["inputs"] == ["image", "image_sizes"]
    assert meta["outputs"] == ["boxes", "scores", "labels", "batch_index", "mask_probs"]
    assert meta["input"]["min_size"] == 320 and meta["input"]["max_size"] == 533
    predictor = OnnxPredictor(path)  # no model, no preset: the file alone
    assert predictor.class_names == model.class_names
    assert predictor.category_ids == model.cfg.model.category_ids
    assert predictor.output_names == meta["outputs"]


def test_norms_are_folded_in_the_file_not_in_the_model(mask_export):
    """The model as built keeps its frozen norms; its export has them folded into the convs
    (every Conv of the trunk reads its input directly; no norm Mul or Add is left)."""
    import onnx
    from torchvision.ops import FrozenBatchNorm2d

    model, path, _ = mask_export
    assert sum(isinstance(m, FrozenBatchNorm2d) for m in model.modules()) == 20  # ResNet-18: stem + 16 + 3 downsample
    nodes = onnx.load(str(path), load_external_data=False).graph.node
    assert not [n.name for n in nodes if n.op_type in ("Mul", "Add", "BatchNormalization")
                and ("/bn" in n.name or "downsample.1" in n.name)]  # fmt: skip
    assert sum(n.op_type == "Conv" and "/trunk/" in n.name for n in nodes) == 20


def test_maskiou_model(images, tmp_path):
    # A random caffe-style trunk fed 0-255 pixels (std 1) saturates every score to exactly 1.0,
    # which leaves the ranking to ties; an ImageNet std keeps activations in range while the
    # BGR, x255 and mean steps of the preset's normalisation are still exercised.
    model = _model("msrcnn_r50_fpn", box_score_thresh=0.0, box_detections_per_img=20,
                   rpn_post_nms_top_n_test=300, image_std=(57.375, 57.12, 58.395))
    _export(model, tmp_path / "ms.onnx")
    predictor = OnnxPredictor(tmp_path / "ms.onnx")
    assert predictor.output_names == ["boxes", "scores", "labels", "batch_index", "mask_probs", "mask_scores"]
    ref, out = model.predict(images[1])[0], predictor.predict(images[1])
    assert len(ref) == 20
    assert_matches(ref, out)


def test_keypoint_model(images, tmp_path):
    # 8 detections: the keypoint head costs ~7 GFLOP per detection; 300 proposals (of 1000, the
    # r18 tests run the full count) keep the ResNet-50 box head cheap too
    model = _model("keypointrcnn_r50_fpn", box_score_thresh=0.0, box_detections_per_img=8,
                   rpn_post_nms_top_n_test=300)
    _export(model, tmp_path / "kp.onnx")
    predictor = OnnxPredictor(tmp_path / "kp.onnx")
    assert predictor.output_names == ["boxes", "scores", "labels", "batch_index", "keypoint_heatmaps"]
    ref, out = model.predict(images[0])[0], predictor.predict(images[0])
    assert len(ref) == 8 and out.keypoints.shape == (8, 17, 3)
    assert_matches(ref, out)


def test_efficientnet_lite_model_matches_torch_at_other_sizes(images, tmp_path):
    # TensorFlow "SAME" padding of the stride-2 convolutions must not freeze the export size
    model = _model("maskrcnn_effl0_fpn", box_score_thresh=0.0, box_detections_per_img=20,
                   rpn_post_nms_top_n_test=300)
    _export(model, tmp_path / "effl0.onnx")  # (GroupNorm's batch-size check warns, harmlessly)
    predictor = OnnxPredictor(tmp_path / "effl0.onnx")
    assert tuple(predictor.resize(images[0]).shape[-2:]) != EXPORT_SIZE  # 416x320, traced 320x480
    ref = model.predict(images[0])[0]
    assert len(ref) == 20
    assert_matches(ref, predictor.predict(images[0]))


def test_c4_model(images, tmp_path):
    """The C4 model exports with no export code of its own: one-map RPN, res5 per RoI, 14 x 14
    masks (a ResNet-18 C4 keeps it quick)."""
    model = _model("maskrcnn_r50_c4", box_score_thresh=0.0, box_detections_per_img=20,
                   rpn_post_nms_top_n_test=100, model__backbone__depth=18)
    _export(model, tmp_path / "c4.onnx")
    predictor = OnnxPredictor(tmp_path / "c4.onnx")
    raw = predictor.run_graph(predictor.graph_inputs([images[1]]))
    assert raw["mask_probs"].shape == (20, 14, 14)
    ref, out = model.predict(images[1])[0], predictor.predict(images[1])
    assert len(ref) == 20
    assert_matches(ref, out)


def test_runner_score_thresh_filters_like_the_model(mask_export, images, mask_predictions):
    """A threshold raised in the runner (after NMS) keeps exactly what the model keeps with it
    before NMS: lower-scoring boxes never suppress higher ones, and the top-k are the best."""
    model, path, _ = mask_export
    full, _ = mask_predictions[1]
    # halfway across the widest gap between neighbouring scores near the middle: a threshold
    # on a score itself would be a knife edge between backends
    gaps = full.scores[30:60] - full.scores[31:61]
    cut = 31 + int(gaps.argmax())
    thresh = float(full.scores[cut - 1] + full.scores[cut]) / 2
    out = OnnxPredictor(path, score_thresh=thresh).predict(images[1])
    model.cfg.model.box.score_thresh = thresh
    try:
        ref = model.predict(images[1])[0]
    finally:
        model.cfg.model.box.score_thresh = 0.0
    assert len(ref) == cut
    assert_matches(ref, out)


def test_errors_are_one_line_user_errors(mask_export, tmp_path):
    model, path, _ = mask_export
    with pytest.raises(ExportError, match="opset 11 is too old"):
        export_onnx(model, tmp_path / "m.onnx", opset=11)
    with pytest.raises(ExportError, match="is a folder"):
        export_onnx(model, tmp_path)
    with pytest.raises(ExportError, match="--paste-masks: maskrcnn_r18_fpn has no mask head"):
        export_onnx(_model("maskrcnn_r18_fpn", model__mask__enabled=False), tmp_path / "m.onnx", paste_masks=True)
    with pytest.raises(CheckpointError, match="not found"):
        OnnxPredictor(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(CheckpointError, match="cannot load ONNX model"):
        OnnxPredictor(tmp_path / "junk.onnx")
    import onnx

    proto = onnx.load(str(path))
    meta = json.loads(proto.metadata_props[0].value)
    proto.metadata_props[0].value = json.dumps({**meta, "format_version": 1})  # one image, no batch
    onnx.save(proto, str(tmp_path / "v1.onnx"))
    with pytest.raises(CheckpointError, match="version 1 is not supported.*export the model again"):
        OnnxPredictor(tmp_path / "v1.onnx")
    del proto.metadata_props[:]
    onnx.save(proto, str(tmp_path / "plain.onnx"))
    with pytest.raises(CheckpointError, match="no 'maskrcnn' metadata"):
        OnnxPredictor(tmp_path / "plain.onnx")


def test_fast_path_model_exports_like_the_built_one(images, tmp_path):
    """`load_model`'s fp32 fast path (what `maskrcnn export` loads) swaps in the gather RoIAlign;
    traced, it pools with torchvision's registered ops as the built model does, so the graph
    holds no RoI count of the trace and matches the model at other sizes."""
    fast = prepare_for_inference(_model("maskrcnn_r18_fpn", box_score_thresh=0.0), "fp32")
    assert _export(fast, tmp_path / "fast.onnx") == []
    predictor = OnnxPredictor(tmp_path / "fast.onnx")
    for image in images:
        assert_matches(fast.predict(image)[0], predictor.predict(image))

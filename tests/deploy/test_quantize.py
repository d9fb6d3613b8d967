"""int8 export (`maskrcnn export --quantize int8`) of a small model, against the model itself.

A small model (ResNet-18 FPN, 160 px, trained-like BatchNorm statistics so that activations
have real ranges) is exported in int8 through the CLI. The int8 file must quantise
every matrix product except the output layers, say so in its metadata, and run in the
onnxruntime runner like the torch model.
"""

from __future__ import annotations

import json

import pytest
import torch

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from maskrcnn import build_model, save_weights  # noqa: E402
from maskrcnn.cli import main  # noqa: E402
from maskrcnn.data.images import read_image  # noqa: E402
from maskrcnn.deploy.onnx_export import METADATA_KEY  # noqa: E402
from maskrcnn.deploy.onnx_runner import OnnxPredictor  # noqa: E402
from maskrcnn.presets import apply_kwargs, get_preset  # noqa: E402

SMALL = {"min_size": 160, "max_size": 267, "box_score_thresh": 0.0, "box_detections_per_img": 20}
IMAGES = ("FudanPed00017.png", "PennPed00061.png", "FudanPed00001.png")


@pytest.fixture(scope="module")
def folder(shared_data):
    return shared_data / "pennfudan" / "PNGImages"


@pytest.fixture(scope="module")
def exported(tmp_path_factory, folder):
    """(the torch model, int8 path): its weights exported by the CLI, calibrated on 2 images."""
    tmp = tmp_path_factory.mktemp("int8")
    calib = tmp / "calibration"
    calib.mkdir()
    for name in IMAGES[:2]:
        (calib / name).write_bytes((folder / name).read_bytes())
    torch.manual_seed(0)
    model = build_model(apply_kwargs(get_preset("maskrcnn_r18_fpn"), SMALL)).eval()
    _trained_like_norms(model, read_image(folder / IMAGES[0]))
    save_weights(model, tmp / "model.safetensors")
    common = ["export", "--model", "maskrcnn_r18_fpn", "--weights", str(tmp / "model.safetensors")]
    assert main([*common, "--out", str(tmp / "int8.onnx"), "--quantize", "int8", "--paste-masks",
                 "--calibration-images", str(calib), "--calibration-count", "2"]) == 0
    return model, tmp / "int8.onnx"


@torch.no_grad()
def _trained_like_norms(model, image) -> None:
    """BatchNorm running statistics measured on an image (the preset's trunk norms in train
    mode for one pass), so activations have the ranges a trained trunk gives them."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    model([image])
    for m in norms:
        m.eval()


def test_every_matrix_product_but_the_output_layers_is_int8(exported):
    proto = onnx.load(str(exported[1]))
    meta = json.loads(next(p.value for p in proto.metadata_props if p.key == METADATA_KEY))
    quant = meta["quantization"]
    assert quant["calibration_images"] == 2 and quant["weights"].startswith("int8")
    floats = set(quant["float_nodes"])
    # the output layers by name: objectness, RPN deltas, class scores, box deltas, mask logits
    for layer in ("objectness", "deltas", "cls_score", "bbox_pred", "logits"):
        assert any(f"{layer}/" in name for name in floats), f"{layer} is not kept float"
    produced_by = {out: node for node in proto.graph.node for out in node.output}
    int8_weights = {init.name for init in proto.graph.initializer if init.data_type == onnx.TensorProto.INT8}
    products = [n for n in proto.graph.node if n.op_type in ("Conv", "ConvTranspose", "Gemm")]
    assert len(products) > 20
    for node in products:
        weight = produced_by.get(node.input[1])
        quantized = weight is not None and weight.op_type == "DequantizeLinear" and weight.input[0] in int8_weights
        assert quantized == (node.name not in floats), node.name
        if quantized:  # one scale per output channel
            scale = next(i for i in proto.graph.initializer if i.name == weight.input[1])
            assert scale.dims[0] > 1


def test_int8_runs_in_the_runner_like_the_float_model(exported, folder):
    """Same output contract as the torch model on an image not used for calibration. (Accuracy
    needs trained weights: benchmarks/int8_accuracy.py measures mask AP on the demo model.)"""
    image = read_image(folder / IMAGES[2])
    predictor = OnnxPredictor(exported[1])
    assert predictor.output_names[-1] == "masks"  # pasted in the graph (--paste-masks)
    ref, got = exported[0].predict(image)[0], predictor.predict(image, keep_mask_probs=True)
    assert len(ref) == len(got) == SMALL["box_detections_per_img"]
    assert got.masks.shape == ref.masks.shape and got.masks.any()
    # the graph pastes as the runner does (pixels at 0.5 may round either way)
    runner = got.mask_probs > 0.5
    iou = (runner & got.masks).flatten(1).sum(1) / (runner | got.masks).flatten(1).sum(1)
    assert iou.min() >= 0.99
    h, w = image.shape[-2:]
    assert (got.boxes >= 0).all() and (got.boxes[:, 2] <= w).all() and (got.boxes[:, 3] <= h).all()
    assert not torch.equal(got.scores, ref.scores)  # really a different (quantised) graph


def test_quantize_needs_calibration_images(tmp_path, capsys):
    code = main(["export", "--model", "maskrcnn_r18_fpn", "--out", str(tmp_path / "m.onnx"), "--quantize", "int8"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--calibration-images" in err[0]
    assert not (tmp_path / "m.onnx").exists()


def test_an_efficientnet_lite_trunk_stays_float():
    """EfficientNet-Lite's trunk is kept float whole (its depthwise-separable blocks lost 5 mask
    AP in int8 on the Penn-Fudan fine-tune); a ResNet's is quantised. Node names as exported."""
    from maskrcnn.deploy.quantize import float_layer_keys, float_node_pattern

    effl0 = build_model(get_preset("maskrcnn_effl0_fpn"))
    r18 = build_model(get_preset("maskrcnn_r18_fpn"))
    effl0_float, r18_float = float_node_pattern(float_layer_keys(effl0)), float_node_pattern(float_layer_keys(r18))
    for name in ("/backbone/trunk/blocks.0/depthwise/conv/Conv", "/backbone/trunk/stem/conv/Conv"):
        assert effl0_float.search(name)
    assert not r18_float.search("/backbone/trunk/layer1/layer1.0/conv1/Conv")
    for pattern in (effl0_float, r18_float):  # the output layers, also those run once per level
        assert pattern.search("/roi_heads/box_head/cls_score/Gemm") and pattern.search("/rpn/head/objectness_4/Conv")
        assert not pattern.search("/backbone/fpn/output.2/conv/Conv")

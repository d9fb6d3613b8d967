"""int8 ONNX: static QDQ quantisation of an exported model with onnxruntime.quantization.

Quantised: every Conv, ConvTranspose and Gemm / MatMul with constant weights, i.e. the trunk,
FPN, RPN conv and the box / mask / keypoint / MaskIoU head bodies. Weights are int8, symmetric,
one scale per output channel; activations uint8 per tensor with ranges measured by running the
float graph on real images (MinMax), resized exactly as the runner resizes them. onnxruntime
fuses each DequantizeLinear -> Conv -> QuantizeLinear into an integer convolution (VNNI on x86).

Kept float: the output layers (objectness, RPN deltas, class scores, box deltas, mask logits,
keypoint heatmaps, MaskIoU), whose outputs rank and place the detections; an EfficientNet-Lite
trunk (its depthwise-separable blocks lose accuracy to per-tensor uint8 activations: on the
Penn-Fudan fine-tune, mask AP 55.0 in fp32 fell to 50.0 with the trunk in int8, 52.4 with only
its depthwise convs float, 53.6 with percentile calibration; 55.3 with the trunk float); products of two
activations (the mask pasting of `--paste-masks`), and every op that is not a matrix product
(RoiAlign, NMS, top-k, box decoding, FPN upsampling and sums). The float matrix products are
listed in the file's metadata (`quantization.float_nodes`).
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path


from ..fileio import write_bytes_atomic
from .onnx_export import METADATA_KEY, ExportError

QUANTIZED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def output_layer_keys(model) -> list[str]:
    """'parent/leaf/' for each output layer the model's heads declare, as the ONNX exporter
    names their nodes ('/.../box_head/cls_score/Gemm')."""
    from ..model.head_contract import declared_outputs

    return ["/".join(layer.name.split(".")[-2:]) + "/" for layer in declared_outputs(model)]


def float_layer_keys(model) -> list[str]:
    """Name keys of the layers int8 export keeps in float: the output layers, and an
    EfficientNet-Lite trunk whole (see the module's docstring)."""
    from ..model.efficientnet_lite import EfficientNetLiteTrunk

    keys = output_layer_keys(model)
    if isinstance(model.backbone.trunk, EfficientNetLiteTrunk):
        keys.append("backbone/trunk/")
    return keys


def quantize_onnx(src: str | Path, dst: str | Path, calibration: Iterable[dict],
                  float_layer_keys: list[str]) -> dict:
    """Quantise the exported float model `src` into `dst` (written atomically).

    calibration: the graph's inputs for one or more batches of images (`OnnxPredictor(src)
    .graph_inputs([image])`, at least one); float_layer_keys: substrings naming the nodes to
    keep in float (`float_layer_keys`). Returns the metadata.
    """
    try:
        import onnx
        from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                              QuantType, quantize_static)
    except ImportError:
        raise ExportError("int8 quantisation needs 'onnx' and 'onnxruntime': pip install onnxruntime") from None
    proto = onnx.load(str(src))
    _inline_identities(proto)
    pattern = float_node_pattern(float_layer_keys)
    weights = {init.name for init in proto.graph.initializer}
    float_nodes = [n.name for n in proto.graph.node  # a layer run on 5 levels: 'objectness_4/Conv'
                   if n.op_type in QUANTIZED_OPS and (pattern.search(n.name) or n.input[1] not in weights)]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.feeds: Iterator[dict] = iter(calibration)
            self.seen = 0

        def get_next(self):
            feed = next(self.feeds, None)
            if feed is not None:
                self.seen += len(next(iter(feed.values())))
            return feed

    reader = Reader()
    with tempfile.TemporaryDirectory() as tmp:
        out, inlined = Path(tmp) / "int8.onnx", Path(tmp) / "float.onnx"
        onnx.save(proto, str(inlined))
        quantize_static(str(inlined), str(out), reader, quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=list(QUANTIZED_OPS), per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        nodes_to_exclude=float_nodes, calibrate_method=CalibrationMethod.MinMax,
                        extra_options={"MatMulConstBOnly": True})
        quantized = onnx.load(str(out))
    if reader.seen == 0:
        raise ExportError("no calibration images: int8 quantisation needs at least one")
    meta = json.loads(next(p.value for p in proto.metadata_props if p.key == METADATA_KEY))
    meta["quantization"] = {
        "method": "onnxruntime static QDQ, MinMax calibration",
        "weights": "int8 symmetric, per output channel",
        "activations": "uint8 asymmetric, per tensor",
        "quantized_ops": list(QUANTIZED_OPS),
        "calibration_images": reader.seen,
        "float_nodes": float_nodes,
    }
    del quantized.metadata_props[:]
    for p in proto.metadata_props:
        entry = quantized.metadata_props.add()
        entry.key, entry.value = p.key, json.dumps(meta) if p.key == METADATA_KEY else p.value
    quantized.doc_string = proto.doc_string + " (int8, see the 'quantization' metadata)"
    write_bytes_atomic(Path(dst), quantized.SerializeToString())
    return meta


def float_node_pattern(keys: list[str]) -> re.Pattern:
    """Matches the ONNX node names of the layers named by `keys`; a layer the exporter ran
    several times is numbered ('objectness_4/Conv')."""
    return re.compile("|".join(re.escape(k.rstrip("/")) + r"(_\d+)?/" for k in keys))


def _inline_identities(proto) -> None:
    """The exporter shares equal initializers through Identity nodes (e.g. zero conv biases);
    the quantiser wants weights and biases as initializers, so consumers read the source."""
    initializers = {init.name for init in proto.graph.initializer}
    graph_outputs = {out.name for out in proto.graph.output}
    alias = {}
    for node in list(proto.graph.node):
        if node.op_type == "Identity" and node.input[0] in initializers and node.output[0] not in graph_outputs:
            alias[node.output[0]] = node.input[0]
            proto.graph.node.remove(node)
    for node in proto.graph.node:
        for i, name in enumerate(node.input):
            if name in alias:
                node.input[i] = alias[name]

"""Export a `MaskRCNN` to ONNX: one traced graph from the resized image to per-detection outputs.

The graph's contract (input, outputs, metadata) is documented in `maskrcnn.deploy.onnx_runner`,
which runs it. In short: the graph takes one RGB image in [0, 1] already resized to the model's
scale and does normalisation, padding, backbone, RPN, box head and the instance heads. It returns
boxes in the pixels of its input and M x M mask probabilities; resizing the image, mapping boxes
back, pasting masks and decoding keypoint heatmaps are left to the runner.

The graph is traced from the model's own code (`MaskRCNN.normalize`, `pad_batch`, `MaskRCNN.detect`):
where the eager code would take a Python int from a tensor shape it has a tracing-aware form
beside it (symbolic padding, `at_most` for top-k sizes, per-image splits, pooling every level,
per-class NMS as ONNX NonMaxSuppression), so the graph is right at any input size, and a new
head or backbone exports without export code of its own.
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import torch
from torch import nn

from ..config import to_dict
from ..errors import UserError
from ..fileio import write_bytes_atomic
from ..model.detector import pad_batch

FORMAT = "maskrcnn-onnx"
FORMAT_VERSION = 1
METADATA_KEY = "maskrcnn"  # JSON: what a runner needs (see onnx_runner)
CONFIG_KEY = "maskrcnn.config"  # JSON: the model's full config, for the record
INPUT_NAME = "image"
DEFAULT_OPSET = 17
MIN_OPSET = 16  # RoiAlign's coordinate_transformation_mode (aligned=True) came with opset 16


class ExportError(UserError, ValueError):
    """A model or an option that cannot be exported."""


def export_onnx(model, path: str | Path, *, opset: int = DEFAULT_OPSET,
                sample_size: tuple[int, int] | None = None) -> dict:
    """Trace `model` (a fp32 `MaskRCNN`) into an ONNX file at `path`, written atomically.

    `sample_size` (h, w) is the size of the image traced (default: the model's short side by
    about 4/3 of it); the graph runs at any size. Returns the metadata embedded in the file.
    """
    try:
        import onnx
    except ImportError:
        raise ExportError("ONNX export needs the 'onnx' package: pip install onnx") from None
    if opset < MIN_OPSET:
        raise ExportError(f"opset {opset} is too old: RoiAlign needs opset >= {MIN_OPSET}")
    bad = sorted({str(p.dtype) for p in model.parameters() if p.dtype != torch.float32})
    if bad:
        raise ExportError(f"export needs a float32 model, this one has {', '.join(bad)} weights "
                          "(load it without a reduced precision)")
    path = Path(path)
    if path.is_dir():
        raise ExportError(f"{path}: is a folder; --out names the .onnx file to write")
    graph = ExportGraph(model).eval()
    h, w = sample_size or default_sample_size(model.cfg)
    sample = torch.rand((1, 3, h, w), generator=torch.Generator().manual_seed(0))
    sample = sample.to(model.pixel_mean.device)
    names = graph.output_names
    dynamic = {INPUT_NAME: {2: "height", 3: "width"}, **{n: {0: "detections"} for n in names}}
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        # the TorchScript exporter is deprecated in favour of dynamo=True, which cannot export
        # the data-dependent shapes here yet; its deprecation notice is not news to the user
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        torch.onnx.export(graph, (sample,), buffer, dynamo=False, opset_version=opset,
                          input_names=[INPUT_NAME], output_names=names, dynamic_axes=dynamic,
                          do_constant_folding=True)
    proto = onnx.load_from_string(buffer.getvalue())
    metadata = export_metadata(model.cfg, names, opset, (h, w))
    proto.doc_string = (f"{model.cfg.name} exported by maskrcnn; see the '{METADATA_KEY}' "
                        "metadata and maskrcnn/deploy/onnx_runner.py for pre/post-processing")
    for key, value in ((METADATA_KEY, metadata), (CONFIG_KEY, to_dict(model.cfg))):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    write_bytes_atomic(path, proto.SerializeToString())
    return metadata


def default_sample_size(cfg) -> tuple[int, int]:
    """A landscape image at the model's scale, (short side, ~4/3 of it within max_size)."""
    short = cfg.input.min_size[-1]
    return short, max(short, min(cfg.input.max_size, round(short * 4 / 3) + 5))


def export_metadata(cfg, outputs: list[str], opset: int, sample_size) -> dict:
    import maskrcnn

    inp, m = cfg.input, cfg.model
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "name": cfg.name,
        "class_names": list(m.class_names),
        "category_ids": list(m.category_ids),
        "num_classes": m.num_classes,
        "input": {
            "name": INPUT_NAME,
            "layout": "NCHW float32, batch 1, RGB in [0, 1]",
            "min_size": inp.min_size[-1],
            "max_size": inp.max_size,
            "resize": "bilinear, align_corners=False, scale = min(min_size / min(h, w), "
                      "max_size / max(h, w)), size = max(1, floor(h * scale)), max(1, floor(w * scale))",
            # done inside the graph, listed for the record
            "channel_order": inp.channel_order,
            "pixel_scale": inp.pixel_scale,
            "pixel_mean": list(inp.pixel_mean),
            "pixel_std": list(inp.pixel_std),
            "size_divisibility": inp.size_divisibility,
        },
        "outputs": outputs,
        "mask_threshold": 0.5,
        "mask_resolution": m.mask.resolution if m.mask.enabled else None,
        "num_keypoints": m.keypoint.num_keypoints if m.keypoint.enabled else None,
        "box": {"score_thresh": m.box.score_thresh, "nms_thresh": m.box.nms_thresh,
                "detections_per_img": m.box.detections_per_img},
        "export": {"sample_size": list(sample_size), "opset": opset, "torch": torch.__version__,
                   "maskrcnn": maskrcnn.__version__},
    }


class ExportGraph(nn.Module):
    """The traced module: `forward(image (1, 3, h, w))` -> the tuple named by `output_names`:
    the model's normalisation and padding, then `MaskRCNN.detect` on a batch of one."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        heads = model.roi_heads
        self.output_names = ["boxes", "scores", "labels"] + [
            name for name, present in (("mask_probs", hasattr(heads, "mask_head")),
                                       ("mask_scores", hasattr(heads, "maskiou_head")),
                                       ("keypoint_heatmaps", hasattr(heads, "keypoint_head"))) if present]

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        batch = pad_batch([self.model.normalize(image[0])], self.model.cfg.input.size_divisibility)
        detections = self.model.detect(batch)[0]
        return tuple(detections[name] for name in self.output_names)


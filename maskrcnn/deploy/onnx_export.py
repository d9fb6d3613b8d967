"""Export a `MaskRCNN` to ONNX: one traced graph from a batch of resized images to per-detection outputs.

The graph's contract (inputs, outputs, metadata) is documented in `maskrcnn.deploy.onnx_runner`,
which runs it. In short: the graph takes a batch of RGB images in [0, 1], each already resized to
the model's scale, stacked top-left in one (B, 3, H, W) tensor with their sizes beside, and does
normalisation, padding, backbone, RPN, box head and the instance heads. It returns every image's
detections concatenated, with the image of each (`batch_index`): boxes in the pixels of the
graph's input and M x M mask probabilities. With `paste_masks` it also takes each image's size
before resizing and returns masks pasted at that size. Resizing the images, mapping boxes back,
(otherwise) pasting masks and decoding keypoint heatmaps are left to the runner.

The graph is traced from the model's own code (`MaskRCNN.normalize`, `pad_stacked_batch`,
`MaskRCNN.detect`, `paste_masks`): where the eager code would take a Python int from a tensor
shape or loop over images, it has a tracing-aware form beside it (symbolic padding, `at_most`
for top-k sizes, `BatchedBoxes` for per-image lists, pooling every level, per-image per-class NMS
as ONNX NonMaxSuppression), so the graph is right at any batch and input size, and a new head or
backbone exports without export code of its own.
"""

from __future__ import annotations

import copy
import io
import json
import warnings
from pathlib import Path

import torch
from torch import nn

from ..config import to_dict
from ..errors import UserError
from ..fileio import write_bytes_atomic
from ..model.detector import pad_stacked_batch
from ..ops.masks import paste_masks

FORMAT = "maskrcnn-onnx"
FORMAT_VERSION = 2  # 2: batched inputs and outputs (1: one image, no batch_index)
METADATA_KEY = "maskrcnn"  # JSON: what a runner needs (see onnx_runner)
CONFIG_KEY = "maskrcnn.config"  # JSON: the model's full config, for the record
INPUT_NAME = "image"
SIZES_NAME = "image_sizes"  # (B, 2) int64 h, w of each resized image inside the batch
ORIGINAL_SIZES_NAME = "original_sizes"  # (B, 2) int64 H, W before resizing (with paste_masks)
MASK_THRESHOLD = 0.5
DEFAULT_OPSET = 17
MIN_OPSET = 16  # RoiAlign's coordinate_transformation_mode (aligned=True) came with opset 16


class ExportError(UserError, ValueError):
    """A model or an option that cannot be exported."""


def export_onnx(model, path: str | Path, *, opset: int = DEFAULT_OPSET,
                sample_size: tuple[int, int] | None = None, paste_masks: bool = False) -> dict:
    """Trace `model` (a fp32 `MaskRCNN`) into an ONNX file at `path`, written atomically.

    `sample_size` (h, w) is the size of the first of the two images traced (default: the model's
    short side by about 4/3 of it); the graph runs at any batch and image size. `paste_masks`
    adds full-resolution masks to the outputs. Frozen norms are exported folded into their
    convolutions (`with_folded_norms`; the model itself is left as it is). Returns the metadata
    embedded in the file.
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
    if paste_masks and not hasattr(model.roi_heads, "mask_head"):
        raise ExportError(f"--paste-masks: {model.cfg.name} has no mask head")
    graph = ExportGraph(with_folded_norms(model.eval()), paste_masks).eval()
    h, w = sample_size or default_sample_size(model.cfg)
    inputs = sample_inputs(h, w, paste_masks, model.pixel_mean.device)
    names = graph.output_names
    dynamic = {INPUT_NAME: {0: "batch", 2: "height", 3: "width"}, SIZES_NAME: {0: "batch"},
               **({ORIGINAL_SIZES_NAME: {0: "batch"}} if paste_masks else {}),
               **{n: {0: "detections"} for n in names}}
    if paste_masks:
        dynamic["masks"] = {0: "detections", 1: "original_height", 2: "original_width"}
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        # the TorchScript exporter is deprecated in favour of dynamo=True, which cannot export
        # the data-dependent shapes here yet; its deprecation notice is not news to the user
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        torch.onnx.export(graph, inputs, buffer, dynamo=False, opset_version=opset,
                          input_names=graph.input_names, output_names=names, dynamic_axes=dynamic,
                          do_constant_folding=True)
    proto = onnx.load_from_string(buffer.getvalue())
    metadata = export_metadata(model.cfg, graph.input_names, names, opset, (h, w))
    proto.doc_string = (f"{model.cfg.name} exported by maskrcnn; see the '{METADATA_KEY}' "
                        "metadata and maskrcnn/deploy/onnx_runner.py for pre/post-processing")
    for key, value in ((METADATA_KEY, metadata), (CONFIG_KEY, to_dict(model.cfg))):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    write_bytes_atomic(path, proto.SerializeToString())
    return metadata


def with_folded_norms(model):
    """`model`, or a copy of it with each conv + frozen norm folded into one conv (as
    `load_model`'s fast path has them): unfolded, a norm exports as a float Mul and Add, which
    int8 quantisation leaves between dequantise and quantise nodes (0.2 s per 800-px image)."""
    from ..model.fast_inference import fold_norms, has_unfolded_norms

    if not has_unfolded_norms(model):
        return model
    model = copy.deepcopy(model)
    fold_norms(model)
    return model


def sample_inputs(h: int, w: int, paste_masks: bool, device) -> tuple[torch.Tensor, ...]:
    """What is traced: a batch of two random images, (h, w) and a smaller one padded beside it
    (a batch of one would let the trace treat the batch size as 1)."""
    image = torch.rand((2, 3, h, w), generator=torch.Generator().manual_seed(0), device=device)
    sizes = torch.tensor([[h, w], [h * 3 // 4, w * 3 // 4]], device=device)
    return (image, sizes, sizes * 2) if paste_masks else (image, sizes)


def default_sample_size(cfg) -> tuple[int, int]:
    """A landscape image at the model's scale, (short side, ~4/3 of it within max_size)."""
    short = cfg.input.min_size[-1]
    return short, max(short, min(cfg.input.max_size, round(short * 4 / 3) + 5))


def export_metadata(cfg, inputs: list[str], outputs: list[str], opset: int, sample_size) -> dict:
    """The metadata stored in the .onnx file (json), everything a runner needs besides the graph:
    the format and its version, the model's name, class names and COCO category ids, the graph's
    `inputs` and `outputs` names, the input resize (min/max size in pixels) and normalisation
    (done in the graph, listed for the record), the mask threshold, resolution and geometry, the
    box thresholds baked in, and the opset, the traced `sample_size` (h, w) and the versions."""
    import maskrcnn

    inp, m = cfg.input, cfg.model
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "name": cfg.name,
        "class_names": list(m.class_names),
        "category_ids": list(m.category_ids),
        "num_classes": m.num_classes,
        "inputs": inputs,
        "input": {
            "name": INPUT_NAME,
            "layout": "NCHW float32, any batch size, RGB in [0, 1], each image top-left, its "
                      "(h, w) in image_sizes",
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
        "mask_threshold": MASK_THRESHOLD,
        "mask_resolution": m.mask.resolution if m.mask.enabled else None,
        "mask_aligned": m.mask.aligned,  # paste_masks(aligned=...): the geometry the masks were trained with
        "num_keypoints": m.keypoint.num_keypoints if m.keypoint.enabled else None,
        "box": {"score_thresh": m.box.score_thresh, "nms_thresh": m.box.nms_thresh,
                "detections_per_img": m.box.detections_per_img},
        "export": {"sample_size": list(sample_size), "opset": opset, "torch": torch.__version__,
                   "maskrcnn": maskrcnn.__version__},
    }


class ExportGraph(nn.Module):
    """The traced module: `forward(image (B, 3, H, W), image_sizes (B, 2)[, original_sizes (B, 2)])`
    -> the tuple named by `output_names`: the model's normalisation and padding, `MaskRCNN.detect`
    on the batch, and with `paste_masks` the masks pasted at each image's original size."""

    def __init__(self, model, paste_masks: bool = False):
        super().__init__()
        self.model = model
        self.paste_masks = paste_masks
        heads = model.roi_heads
        self.input_names = [INPUT_NAME, SIZES_NAME] + ([ORIGINAL_SIZES_NAME] if paste_masks else [])
        self.output_names = ["boxes", "scores", "labels", "batch_index"] + [
            name for name, present in (("mask_probs", hasattr(heads, "mask_head")),
                                       ("mask_scores", hasattr(heads, "maskiou_head")),
                                       ("keypoint_heatmaps", hasattr(heads, "keypoint_head")),
                                       ("masks", paste_masks)) if present]

    def forward(self, image: torch.Tensor, image_sizes: torch.Tensor,
                original_sizes: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """Detections of a batch, as traced.

        Args:
            image: (B, 3, H, W) float32 RGB in [0, 1], each image resized to the model's scale and
                placed top-left, zero-padded.
            image_sizes: (B, 2) int64, each image's (h, w) in `image` before padding.
            original_sizes: (B, 2) int64 (h, w) of the images before resizing; only with `paste_masks`.

        Returns:
            The tensors named by `output_names`, every detection of the batch in one set of rows (D):
            boxes (D, 4) x1y1x2y2 in `image` pixels, scores (D,), labels (D,) int64, batch_index (D,)
            int64 (non-decreasing), then as the model has them mask_probs (D, M, M) float in [0, 1],
            mask_scores (D,), keypoint_heatmaps (D, K, S, S) logits, and with `paste_masks` masks
            (D, H0, W0) bool at the batch's largest original size.
        """
        model = self.model
        batch = pad_stacked_batch(model.normalize(image), image_sizes, model.cfg.input.size_divisibility)
        detections = model.detect(batch)[0]
        if self.paste_masks:
            detections["masks"] = paste_original_size(detections, image_sizes, original_sizes, model.cfg.model.mask.aligned)
        return tuple(detections[name] for name in self.output_names)


def paste_original_size(detections: dict, image_sizes: torch.Tensor, original_sizes: torch.Tensor, aligned: bool):
    """Masks (D, H, W) bool at the largest original size (H, W) of the batch, each detection's
    inside its own image's (zero beyond): what the runner does with `mask_probs`, in the graph."""
    index = detections["batch_index"]
    own = original_sizes[index]  # (D, 2) h, w
    ratio = (own.float() / image_sizes[index].float()).flip(1).repeat(1, 2)  # (D, 4) x, y, x, y
    largest = original_sizes.max(0).values
    height, width = largest[0], largest[1]
    probs = paste_masks(detections["mask_probs"], detections["boxes"] * ratio, (height, width), aligned=aligned)
    rows = torch.arange(height, device=index.device)[None, :, None] < own[:, 0, None, None]
    cols = torch.arange(width, device=index.device)[None, None, :] < own[:, 1, None, None]
    return (probs > MASK_THRESHOLD) & rows & cols

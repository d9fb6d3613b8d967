"""Export a `MaskRCNN` to ONNX: one traced graph from the resized image to per-detection outputs.

The graph's contract (input, outputs, metadata) is documented in `maskrcnn.deploy.onnx_runner`,
which runs it. In short: the graph takes one RGB image in [0, 1] already resized to the model's
scale and does normalisation, padding, backbone, RPN (anchors, top-k, NMS per level), box head
(decoding, clipping, NMS per class, top detections), mask, MaskIoU and keypoint heads. It returns
boxes in the pixels of its input and 28x28 mask probabilities; resizing the image, mapping boxes
back, pasting masks and decoding keypoint heatmaps are left to the runner.

Why a wrapper instead of tracing `MaskRCNN.forward`: the eager code takes Python ints from tensor
shapes (image sizes for clipping, `min(pre_k, n)` for top-k, `len()` for label grids), which a
trace freezes at the export size. Here every such value is a tensor, so the graph is right at
any input size, while the model's layers (backbone, RPN head, heads) are reused as they are. NMS
is ONNX NonMaxSuppression with one class per level (RPN) or per object class (box head), which
is exact per-class NMS without the coordinate-offset trick, and with a per-class output cap that
keeps it fast with thousands of candidates.
"""

from __future__ import annotations

import io
import json
import math
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import nms

from ..config import to_dict
from ..errors import UserError
from ..fileio import write_bytes_atomic
from ..ops.poolers import assign_levels

FORMAT = "maskrcnn-onnx"
FORMAT_VERSION = 1
METADATA_KEY = "maskrcnn"  # JSON: what a runner needs (see onnx_runner)
CONFIG_KEY = "maskrcnn.config"  # JSON: the model's full config, for the record
INPUT_NAME = "image"
DEFAULT_OPSET = 17
MIN_OPSET = 16  # RoiAlign's coordinate_transformation_mode (aligned=True) came with opset 16
_DROPPED = -1.0  # score given to candidates that must not enter NMS (valid scores are >= 0)


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
        "mask_resolution": 2 * m.mask.pooler_resolution if m.mask.enabled else None,
        "num_keypoints": m.keypoint.num_keypoints if m.keypoint.enabled else None,
        "box": {"score_thresh": m.box.score_thresh, "nms_thresh": m.box.nms_thresh,
                "detections_per_img": m.box.detections_per_img},
        "export": {"sample_size": list(sample_size), "opset": opset, "torch": torch.__version__,
                   "maskrcnn": maskrcnn.__version__},
    }


class ExportGraph(nn.Module):
    """The traced module: `forward(image (1, 3, h, w))` -> the tuple named by `output_names`.

    Reuses the model's layers; everything between them is written so that sizes stay tensors.
    Runs eagerly too (same outputs, in the graph's conventions), which helps debugging.
    """

    def __init__(self, model):
        super().__init__()
        self.cfg = cfg = model.cfg
        self.register_buffer("pixel_mean", model.pixel_mean.detach().clone()[None], persistent=False)
        self.register_buffer("pixel_std", model.pixel_std.detach().clone()[None], persistent=False)
        self.backbone = model.backbone
        self.anchor_generator = model.rpn.anchor_generator
        self.rpn_head = model.rpn.head
        self.rpn_coder = model.rpn.coder
        heads = model.roi_heads
        self.min_level = getattr(heads.box_pooler, "min_level", 2)
        self.max_level = getattr(heads.box_pooler, "max_level", 5)
        self.box_head, self.box_predictor, self.box_coder = heads.box_head, heads.box_predictor, heads.coder
        self.mask_head = heads.mask_head if cfg.model.mask.enabled else None
        self.maskiou_head = heads.maskiou_head if cfg.model.maskiou.enabled else None
        self.keypoint_head = heads.keypoint_head if cfg.model.keypoint.enabled else None

    @property
    def output_names(self) -> list[str]:
        names = ["boxes", "scores", "labels"]
        if self.mask_head is not None:
            names.append("mask_probs")
        if self.maskiou_head is not None:
            names.append("mask_scores")
        if self.keypoint_head is not None:
            names.append("keypoint_heatmaps")
        return names

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        size = torch._shape_as_tensor(image)[2:]  # (h, w) int64; a Shape op in the graph
        x = self._pad(self._normalize(image))
        features = self.backbone(x)  # [P2..P6]
        features = [f.float().contiguous() for f in features]
        proposals = self._proposals(x, features, size)
        features = features[: self.max_level - self.min_level + 1]
        boxes, scores, labels = self._detect(features, proposals, size)
        outputs = [boxes, scores, labels]
        if self.mask_head is not None:
            res = self.cfg.model.mask.pooler_resolution
            pooled = self._pool(features, boxes, res)
            logits = self.mask_head(pooled).float()  # (D, K+1, M, M)
            m = logits.shape[-1]
            picked = logits.gather(1, labels[:, None, None, None].expand(-1, 1, m, m))[:, 0]
            outputs.append(picked.sigmoid())
            if self.maskiou_head is not None:
                iou = self.maskiou_head(pooled, picked).float()  # (D, K+1)
                outputs.append(scores * iou.gather(1, labels[:, None])[:, 0])
        if self.keypoint_head is not None:
            res = self.cfg.model.keypoint.pooler_resolution
            outputs.append(self.keypoint_head(self._pool(features, boxes, res)).float())
        return tuple(outputs)

    # -- pieces --------------------------------------------------------------------------------
    def _normalize(self, image: torch.Tensor) -> torch.Tensor:
        inp = self.cfg.input  # same steps, in the same order, as MaskRCNN.normalize
        if inp.channel_order == "BGR":
            image = image.flip(1)
        if inp.pixel_scale != 1.0:
            image = image * inp.pixel_scale
        return (image - self.pixel_mean) / self.pixel_std

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        """Zero-pad bottom/right to a multiple of size_divisibility (after normalising)."""
        d = self.cfg.input.size_divisibility
        if d <= 1:
            return x
        h, w = x.shape[-2:]  # tensors while tracing
        return F.pad(x, (0, (w + d - 1) // d * d - w, 0, (h + d - 1) // d * d - h))

    def _proposals(self, x, features, size) -> torch.Tensor:
        """RPN.select_proposals for one image: top-k per level, clip, drop tiny / low boxes,
        NMS per level, the best post_nms_topk_test overall -> (P, 4) in score order."""
        cfg = self.cfg.model.rpn
        anchors = self.anchor_generator(tuple(x.shape[-2:]), features)
        logits, deltas = self.rpn_head(features)
        boxes, scores, levels = [], [], []
        for level, (anc, logit, delta) in enumerate(zip(anchors, logits, deltas)):
            logit, delta = logit[0].float(), delta[0].float()
            top, idx = logit.topk(_at_most(logit.shape[0], cfg.pre_nms_topk_test))
            boxes.append(self.rpn_coder.decode(delta[idx], anc[idx])[:, 0])
            scores.append(top.sigmoid())
            levels.append(torch.full_like(idx, level))
        boxes, scores, levels = _clip(torch.cat(boxes), size), torch.cat(scores), torch.cat(levels)
        valid = _nonempty(boxes, cfg.min_box_size) & (scores >= cfg.score_thresh)
        per_level = torch.stack([torch.where(valid & (levels == lv), scores, _DROPPED)
                                 for lv in range(len(anchors))])  # (L, N)
        kept = non_max_suppression(boxes[None], per_level[None], cfg.post_nms_topk_test, cfg.nms_thresh)
        idx = kept[:, 2]
        order = _top_indices(scores[idx], cfg.post_nms_topk_test)
        return boxes[idx[order]]

    def _detect(self, features, proposals, size):
        """detect_boxes for one image -> boxes (D, 4), scores (D,), labels (D,) in score order."""
        cfg = self.cfg.model.box
        pooled = self._pool(features, proposals, cfg.pooler_resolution)
        logits, deltas = self.box_predictor(self.box_head(pooled))
        logits, deltas = logits.float(), deltas.float()
        boxes = _clip(self.box_coder.decode(deltas, proposals), size)[:, 1:]  # (N, K, 4)
        scores = F.softmax(logits, -1)[:, 1:]  # (N, K)
        num_fg = scores.shape[1]  # a constant: the number of foreground classes
        valid = (scores > cfg.score_thresh) & _nonempty(boxes, cfg.min_box_size)
        masked = torch.where(valid, scores, _DROPPED)
        # one NMS "batch" per class: boxes (K, N, 4), scores (K, 1, N)
        kept = non_max_suppression(boxes.transpose(0, 1), masked.t()[:, None], cfg.detections_per_img,
                                   cfg.nms_thresh)
        flat = kept[:, 2] * num_fg + kept[:, 0]  # index into (N * K)
        flat_scores = scores.reshape(-1)[flat]
        flat = flat[_top_indices(flat_scores, cfg.detections_per_img)]
        return boxes.reshape(-1, 4)[flat], scores.reshape(-1)[flat], flat % num_fg + 1

    def _pool(self, features, boxes, resolution: int) -> torch.Tensor:
        """MultiLevelRoIAlign for one image: (N, 4) boxes -> (N, C, R, R)."""
        ra = self.cfg.model.roi_align
        levels = assign_levels(boxes, self.min_level, self.max_level, ra.canonical_scale,
                               ra.canonical_level)
        rois = torch.cat([torch.zeros_like(boxes[:, :1]), boxes], dim=1)
        sampling = ra.sampling_ratio if ra.sampling_ratio > 0 else 0  # 0 = adaptive, as ONNX
        pooled, order = [], []
        for offset, feature in enumerate(features):
            idx = torch.where(levels == offset)[0]
            # torchvision's registered op, which exports as ONNX RoiAlign (the Python wrapper
            # only adds a shape assertion that the tracer would warn about)
            scale = 1.0 / math.pow(2, self.min_level + offset)
            pooled.append(torch.ops.torchvision.roi_align(feature, rois[idx], scale, resolution, resolution,
                                                          sampling, ra.aligned))
            order.append(idx)
        # pooled rows are grouped by level; put them back in box order
        return torch.cat(pooled)[torch.argsort(torch.cat(order))]


class _NonMaxSuppression(torch.autograd.Function):
    """ONNX NonMaxSuppression; the eager forward (used while tracing) computes the same."""

    @staticmethod
    def forward(ctx, boxes, scores, max_per_class: int, iou_threshold: float, score_threshold: float):
        rows = [boxes.new_zeros((0, 3), dtype=torch.int64)]
        for b in range(scores.shape[0]):
            for c in range(scores.shape[1]):
                cand = torch.where(scores[b, c] > score_threshold)[0]
                keep = cand[nms(boxes[b, cand], scores[b, c, cand], iou_threshold)[:max_per_class]]
                rows.append(torch.stack([torch.full_like(keep, b), torch.full_like(keep, c), keep], 1))
        return torch.cat(rows)

    @staticmethod
    def symbolic(g, boxes, scores, max_per_class, iou_threshold, score_threshold):
        def const(value, dtype):
            return g.op("Constant", value_t=torch.tensor([value], dtype=dtype))

        return g.op("NonMaxSuppression", boxes, scores, const(max_per_class, torch.int64),
                    const(iou_threshold, torch.float32), const(score_threshold, torch.float32))


def non_max_suppression(boxes, scores, max_per_class: int, iou_threshold: float) -> torch.Tensor:
    """Greedy NMS of each (batch b, class c): boxes (B, N, 4) xyxy, scores (B, C, N) -> (M, 3)
    int64 rows (b, c, box index), each (b, c) in descending score order, at most `max_per_class`
    per (b, c). Boxes scoring below 0 take no part."""
    return _NonMaxSuppression.apply(boxes, scores, int(max_per_class), float(iou_threshold), _DROPPED / 2)


def _at_most(n, k: int):
    """min(n, k) for a size n that is an int eagerly and a 0-dim tensor while tracing."""
    return torch.clamp(n, max=k) if torch.is_tensor(n) else min(n, k)


def _top_indices(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k best scores (or all), best first."""
    return scores.topk(_at_most(scores.shape[0], k)).indices


def _clip(boxes: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
    """clip_boxes with the image size (h, w) as a tensor."""
    h, w = size[0].to(boxes.dtype), size[1].to(boxes.dtype)
    x = torch.minimum(boxes[..., 0::2].clamp(min=0), w)
    y = torch.minimum(boxes[..., 1::2].clamp(min=0), h)
    return torch.stack((x[..., 0], y[..., 0], x[..., 1], y[..., 1]), dim=-1)


def _nonempty(boxes: torch.Tensor, min_size: float) -> torch.Tensor:
    return ((boxes[..., 2] - boxes[..., 0]) >= min_size) & ((boxes[..., 3] - boxes[..., 1]) >= min_size)


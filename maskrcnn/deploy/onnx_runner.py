"""Run a model exported by `maskrcnn export --format onnx` with onnxruntime.

`OnnxPredictor(path).predict(image)` returns the same `Instances` as `model.predict(image)[0]`.
The .onnx file is self-contained: the config the runner needs is in its metadata.

The graph (for a deployer in another language)
-----------------------------------------------
Input `image`: float32 (1, 3, h, w), RGB, values in [0, 1], batch size 1, any h and w. The image
must already be resized to the model's scale (the runner does this; see "Before" below). The
graph normalises it (channel order, pixel scale, mean / std) and zero-pads it to a multiple of
32 itself.

Outputs, one row per detection, D = 0 .. detections_per_img, best score first:
- `boxes`   float32 (D, 4)  x1, y1, x2, y2 in pixels of the graph's input (the resized image)
- `scores`  float32 (D,)    class probability
- `labels`  int64   (D,)    class index, 1 .. num_classes - 1 (0 is background)
- `mask_probs` float32 (D, M, M), M = the metadata's `mask_resolution` (28; 14 for C4 models):
  mask probability of the detected class inside its box (only if the model has a mask head)
- `mask_scores` float32 (D,): score x predicted mask IoU, ranks masks (Mask Scoring R-CNN only)
- `keypoint_heatmaps` float32 (D, K, 56, 56): keypoint logits over the box (keypoint models only)
Which outputs exist is listed in the metadata's "outputs". With no detections every output has
D = 0 (e.g. boxes (0, 4), mask_probs (0, 28, 28)).

Metadata (`metadata_props` of the ModelProto; onnxruntime: `session.get_modelmeta()
.custom_metadata_map`): key "maskrcnn" holds JSON with `class_names` (index = label),
`category_ids` (label -> dataset category id; empty = identity), `input.min_size`,
`input.max_size`, `outputs`, `mask_threshold` (0.5), `box.score_thresh` (the lowest score the graph
returns), and, for the record, the normalisation done in the graph. Key "maskrcnn.config" holds
the model's whole config.

Before the graph: scale the (H, W) image by s = min(min_size / min(H, W), max_size / max(H, W))
to (max(1, floor(H s)), max(1, floor(W s))) with bilinear interpolation, half-pixel centres,
no antialiasing (PyTorch `F.interpolate(..., size=..., mode="bilinear")`; the 1-pixel minimum
keeps a 3000x1 image from becoming 0 pixels high).

After the graph, with (h, w) the resized size:
- boxes back to the image: x * (W / w), y * (H / h) (computed in float32);
- masks: pad each M x M map by one zero pixel per side, grow its box by (M + 2) / M about its
  centre, truncate the grown box to integer pixels, resize the padded map bilinearly (half-pixel
  centres) onto that pixel span and threshold at 0.5 (`maskrcnn.ops.masks.paste_masks`);
- keypoints (in resized pixels, then scaled like boxes): per box, resize each heatmap bicubically
  (a = -0.75) to ceil(box width) x ceil(box height), take the argmax cell (x, y) and return
  x1 + (x + 0.5) * width / ceil(width) (same for y) and the resized logit there as the score
  (`maskrcnn.model.keypoint_head.decode_keypoints`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from ..errors import CheckpointError, UserError
from ..structures import Instances
from .onnx_export import FORMAT, FORMAT_VERSION, INPUT_NAME, METADATA_KEY


class OnnxPredictor:
    """An exported model in an onnxruntime session.

    providers: onnxruntime execution providers (default CPU). score_thresh: drop detections
    scoring at most this (as `box_score_thresh` does; it can only raise the exported threshold).
    num_threads: intra-op threads (default: $OMP_NUM_THREADS if set, else onnxruntime's choice).
    """

    def __init__(self, path: str | Path, providers=None, score_thresh: float | None = None,
                 num_threads: int | None = None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise UserError("the onnxruntime backend needs the 'onnxruntime' package: "
                            "pip install onnxruntime") from None
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"{path}: ONNX model file not found")
        options = ort.SessionOptions()
        threads = num_threads if num_threads is not None else _env_threads()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(path), options,
                                                providers=providers or ["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for bad files
            raise CheckpointError(f"{path}: cannot load ONNX model: {str(exc).splitlines()[0]}") from exc
        meta = self.session.get_modelmeta().custom_metadata_map
        if METADATA_KEY not in meta:
            raise CheckpointError(f"{path}: no '{METADATA_KEY}' metadata; export the model with "
                                  "`maskrcnn export --format onnx`")
        info = json.loads(meta[METADATA_KEY])
        if info.get("format") != FORMAT or info.get("format_version", 0) > FORMAT_VERSION:
            raise CheckpointError(f"{path}: export format {info.get('format')!r} version "
                                  f"{info.get('format_version')} is not supported by this runner")
        self.path = path
        self.info = info
        self.name = info["name"]
        self.class_names = tuple(info["class_names"])
        self.category_ids = tuple(info["category_ids"])
        self.min_size, self.max_size = int(info["input"]["min_size"]), int(info["input"]["max_size"])
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.score_thresh = score_thresh

    def predict(self, images, keep_mask_probs: bool = False):
        """One image (path, PIL image, HWC uint8 numpy array or CHW float tensor in [0, 1]) ->
        `Instances`; a list of images -> a list of `Instances`."""
        from ..image_io import as_tensor

        if isinstance(images, (list, tuple)):
            return [self._predict(as_tensor(img, index=i), keep_mask_probs) for i, img in enumerate(images)]
        return self._predict(as_tensor(images), keep_mask_probs)

    def run_graph(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """The graph's raw outputs for a (3, h, w) image already at the model's scale."""
        outputs = self.session.run(None, {INPUT_NAME: image[None].contiguous().numpy()})
        return {name: torch.from_numpy(value) for name, value in zip(self.output_names, outputs)}

    @torch.inference_mode()
    def _predict(self, image: torch.Tensor, keep_mask_probs: bool) -> Instances:
        from ..model.detector import scale_ratio

        h, w = image.shape[-2:]
        resized = self.resize(image.float())
        rh, rw = resized.shape[-2:]
        out = self.run_graph(resized)
        if self.score_thresh is not None:
            keep = out["scores"] > self.score_thresh
            out = {k: v[keep] for k, v in out.items()}
        ratio = scale_ratio(w, rw, h, rh, image.device)
        fields = {"boxes": out["boxes"] * ratio, "scores": out["scores"], "labels": out["labels"]}
        if "mask_probs" in out:
            from ..ops.masks import paste_masks

            probs = paste_masks(out["mask_probs"], fields["boxes"], (h, w))
            fields["masks"] = probs > self.info.get("mask_threshold", 0.5)
            if keep_mask_probs:
                fields["mask_probs"] = probs
        if "mask_scores" in out:
            fields["mask_scores"] = out["mask_scores"]
        if "keypoint_heatmaps" in out:
            from ..model.keypoint_head import decode_keypoints

            keypoints = decode_keypoints(out["keypoint_heatmaps"], out["boxes"])  # resized pixels
            keypoints[..., :2] *= ratio[:2]
            fields["keypoints"] = keypoints
        return Instances((h, w), self.class_names, **fields)

    def resize(self, image: torch.Tensor) -> torch.Tensor:
        """(3, H, W) -> (3, h, w) at the model's scale: MaskRCNN.preprocess's own resize."""
        from ..model.detector import resize

        return resize(image, self.min_size, self.max_size, None)[0]


def _env_threads() -> int | None:
    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else None

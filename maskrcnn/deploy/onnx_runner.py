"""Run a model exported by `maskrcnn export --format onnx` with onnxruntime.

`OnnxPredictor(path).predict(image)` returns the same `Instances` as `model.predict(image)[0]`,
and `predict(images)` the same as `model.predict(images)`: a list runs as one batch through the
graph (in batches of at most `batch_size`). The .onnx file is self-contained: the config the
runner needs is in its metadata.

The graph (for a deployer in another language)
-----------------------------------------------
Inputs:
- `image` float32 (B, 3, H, W): B >= 1 RGB images with values in [0, 1], each already resized to
  the model's scale (see "Before" below) and placed top-left in the batch; H, W at least the
  largest image's height and width. Pad with anything (zeros, say): the graph zeroes every image
  outside its size after normalising, as the model pads a batch. Give H, W as the largest image's
  size (rounding up to a multiple of 32 changes nothing; a larger canvas pads the features more
  than the model would, which moves results near the bottom and right edges slightly).
- `image_sizes` int64 (B, 2): (h, w) of each resized image.
- `original_sizes` int64 (B, 2): (H_i, W_i) of each image before resizing; only in a file exported
  with `--paste-masks`.
The graph normalises the batch (channel order, pixel scale, mean / std), zero-pads it to a
multiple of 32 and runs the whole model on it at once.

Outputs, one row per detection, every image's detections concatenated: image 0's first, then
image 1's, ...; within an image best score first; D = 0 .. B x detections_per_img rows, any image
may have none. A batch of images gives each image exactly the detections it gets in a batch of
the same padded size on its own (tests/deploy/test_onnx_batch.py).
- `boxes`   float32 (D, 4)  x1, y1, x2, y2 in pixels of the image's resized size (h, w)
- `scores`  float32 (D,)    class probability
- `labels`  int64   (D,)    class index, 1 .. num_classes - 1 (0 is background)
- `batch_index` int64 (D,)  the image (0 .. B - 1) of each detection, non-decreasing
- `mask_probs` float32 (D, M, M), M = the metadata's `mask_resolution` (28; 14 for C4 models):
  mask probability of the detected class inside its box (only if the model has a mask head)
- `mask_scores` float32 (D,): score x predicted mask IoU, ranks masks (Mask Scoring R-CNN only)
- `keypoint_heatmaps` float32 (D, K, 56, 56): keypoint logits over the box (keypoint models only)
- `masks` bool (D, max H_i, max W_i), only with `--paste-masks`: each detection's mask pasted at
  its image's original size (rows >= H_i, columns >= W_i are False), exactly as "After" below
  pastes `mask_probs`; crop image i's masks to [:, :H_i, :W_i].
Which inputs and outputs exist is listed in the metadata's "inputs" and "outputs". With no
detections every output has D = 0 (e.g. boxes (0, 4), mask_probs (0, 28, 28)).

Metadata (`metadata_props` of the ModelProto; onnxruntime: `session.get_modelmeta()
.custom_metadata_map`): key "maskrcnn" holds JSON with `class_names` (index = label),
`category_ids` (label -> dataset category id; empty = identity), `input.min_size`,
`input.max_size`, `inputs`, `outputs`, `mask_threshold` (0.5), `mask_aligned` (the paste), `box.score_thresh` (the lowest
score the graph returns), and, for the record, the normalisation done in the graph. Key
"maskrcnn.config" holds the model's whole config.

Before the graph: scale each (H, W) image by s = min(min_size / min(H, W), max_size / max(H, W))
to (max(1, floor(H s)), max(1, floor(W s))) with bilinear interpolation, half-pixel centres,
no antialiasing (PyTorch `F.interpolate(..., size=..., mode="bilinear")`; the 1-pixel minimum
keeps a 3000x1 image from becoming 0 pixels high).

After the graph, per image with (h, w) its resized size:
- boxes back to the image: x * (W / w), y * (H / h) (computed in float32);
- masks (unless pasted in the graph): pad each M x M map by one zero pixel per side, grow its box
  by (M + 2) / M about its centre, truncate the grown box to integer pixels, resize the padded
  map bilinearly (half-pixel centres) onto that pixel span and threshold at 0.5
  (`maskrcnn.ops.masks.paste_masks`);
- keypoints (in resized pixels, then scaled like boxes): per box, resize each heatmap bicubically
  (a = -0.75) to ceil(box width) x ceil(box height), take the argmax cell (x, y) and return
  x1 + (x + 0.5) * width / ceil(width) (same for y) and the resized logit there as the score
  (`maskrcnn.model.keypoint_head.decode_keypoints`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from ..errors import CheckpointError, UserError
from ..structures import Instances
from .onnx_export import FORMAT, FORMAT_VERSION, INPUT_NAME, METADATA_KEY, ORIGINAL_SIZES_NAME, SIZES_NAME


class OnnxPredictor:
    """An exported model in an onnxruntime session.

    providers: onnxruntime execution providers (default CPU). score_thresh: drop detections
    scoring at most this (as `box_score_thresh` does; it can only raise the exported threshold).
    num_threads: intra-op threads (default: $OMP_NUM_THREADS if set, else onnxruntime's choice).
    batch_size: most images per graph run when `predict` is given a list.
    """

    def __init__(self, path: str | Path, providers=None, score_thresh: float | None = None,
                 num_threads: int | None = None, batch_size: int = 8):
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
        if info.get("format") != FORMAT or info.get("format_version") != FORMAT_VERSION:
            raise CheckpointError(f"{path}: export format {info.get('format')!r} version "
                                  f"{info.get('format_version')} is not supported by this runner "
                                  f"(version {FORMAT_VERSION}); export the model again")
        self.path = path
        self.info = info
        self.name = info["name"]
        self.class_names = tuple(info["class_names"])
        self.category_ids = tuple(info["category_ids"])
        self.min_size, self.max_size = int(info["input"]["min_size"]), int(info["input"]["max_size"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.score_thresh = score_thresh
        self.batch_size = batch_size

    def predict(self, images, keep_mask_probs: bool = False):
        """One image (path, PIL image, HWC uint8 numpy array or CHW float tensor in [0, 1]) ->
        `Instances`; a list of images -> a list of `Instances`, run in batches."""
        from ..image_io import as_tensor

        if not isinstance(images, (list, tuple)):
            return self._predict([as_tensor(images)], keep_mask_probs)[0]
        tensors = [as_tensor(img, index=i) for i, img in enumerate(images)]
        return [inst for start in range(0, len(tensors), self.batch_size)
                for inst in self._predict(tensors[start : start + self.batch_size], keep_mask_probs)]

    def graph_inputs(self, images: list[torch.Tensor]) -> dict[str, np.ndarray]:
        """The graph's inputs for (3, H, W) images at their own size: each resized to the
        model's scale and placed top-left in one zero-padded batch, with the sizes."""
        resized = [self.resize(image.float()) for image in images]
        sizes = torch.tensor([r.shape[-2:] for r in resized], dtype=torch.int64).reshape(-1, 2)
        batch = torch.zeros((len(resized), 3, *sizes.amax(0).tolist()))
        for slot, image in zip(batch, resized):
            slot[:, : image.shape[-2], : image.shape[-1]] = image
        feed = {INPUT_NAME: batch.numpy(), SIZES_NAME: sizes.numpy()}
        if ORIGINAL_SIZES_NAME in self.input_names:
            feed[ORIGINAL_SIZES_NAME] = np.array([image.shape[-2:] for image in images], np.int64)
        return feed

    def run_graph(self, feed: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        """The graph's raw outputs (see the module docstring) for `graph_inputs`."""
        outputs = self.session.run(None, feed)
        return {name: torch.from_numpy(value) for name, value in zip(self.output_names, outputs)}

    @torch.inference_mode()
    def _predict(self, images: list[torch.Tensor], keep_mask_probs: bool) -> list[Instances]:
        feed = self.graph_inputs(images)
        out = self.run_graph(feed)
        if self.score_thresh is not None:
            keep = out["scores"] > self.score_thresh
            out = {k: v[keep] for k, v in out.items()}
        counts = torch.bincount(out["batch_index"], minlength=len(images)).tolist()
        per_image = [dict(zip(out, rows)) for rows in zip(*(v.split(counts) for v in out.values()))]
        return [self._instances(image, det, feed[SIZES_NAME][i].tolist(), keep_mask_probs)
                for i, (image, det) in enumerate(zip(images, per_image))]

    def _instances(self, image: torch.Tensor, out: dict, resized_size, keep_mask_probs: bool) -> Instances:
        """One image's rows of the graph's outputs -> its `Instances` at its own size."""
        from ..model.postprocess import to_instances

        return to_instances(out, resized_size, image.shape[-2:], self.class_names, self.info.get("mask_aligned", False),
                            keep_mask_probs, self.info.get("mask_threshold", 0.5))  # fmt: skip

    def resize(self, image: torch.Tensor) -> torch.Tensor:
        """(3, H, W) -> (3, h, w) at the model's scale: MaskRCNN.preprocess's own resize."""
        from ..model.detector import resize

        return resize(image, self.min_size, self.max_size, None)[0]


def _env_threads() -> int | None:
    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else None

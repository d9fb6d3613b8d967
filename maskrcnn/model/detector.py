"""The whole model, as in Figure 1 of the paper: preprocess -> backbone -> RPN -> RoI heads -> postprocess."""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from ..config import Config
from ..errors import ConfigError
from ..ops.image_resize import resize_8bit
from ..structures import ImageList, Instances
from .backbone import Backbone
from .postprocess import scale_ratio, to_instances
from .roi_heads import RoIHeads
from .rpn import RPN


class MaskRCNN(nn.Module):
    """Training: `model(images, targets)` -> dict of losses. Inference: `model(images)` ->
    list of `Instances` at each input's size. Images are (3, H, W) RGB float tensors in [0, 1]."""

    def __init__(self, cfg: Config):
        super().__init__()
        from ..training.auto_size import fill_auto_defaults

        fill_auto_defaults(cfg)  # sizes still "auto" (no training set chose them): the defaults
        self.cfg = cfg
        inp = cfg.input
        self.register_buffer("pixel_mean", torch.tensor(inp.pixel_mean).view(3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(inp.pixel_std).view(3, 1, 1), persistent=False)
        self.backbone = Backbone(cfg.model.backbone)
        self.rpn = RPN(cfg.model.rpn, cfg.model.anchors, self.backbone.out_channels, len(self.backbone.strides))
        self.roi_heads = RoIHeads(cfg.model, self.backbone.out_channels)
        self.precision: str | None = None  # "fp32" / "bf16" once prepared for fast inference

    def train(self, mode: bool = True):
        """`nn.Module.train`, refused for a model prepared for inference (its norms are folded)."""
        if mode and self.precision is not None:
            raise RuntimeError(
                f"this model was prepared for inference (precision={self.precision!r}: norms folded "
                "into convolutions) and cannot train; load it with precision=None to fine-tune"
            )
        return super().train(mode)

    @property
    def class_names(self) -> tuple[str, ...]:
        """The K class names (without the background), in label order 1..K."""
        return self.cfg.model.class_names

    def forward(self, images: list[torch.Tensor], targets: list[dict] | None = None, keep_mask_probs=False):
        """images: list of (3, H, W) floats in [0, 1]; targets (training): per image boxes (G, 4)
        xyxy px, labels (G,), masks (G, H, W) ... -> training: dict of losses; inference: one
        `Instances` per image at its input size."""
        if self.training and targets is None:
            raise ValueError("training mode needs targets; call model.eval() for inference")
        generators = _generators(targets)
        batch, targets = self.preprocess(images, targets, generators)
        features = self.backbone(batch.tensors)  # [P2..P6] (FPN) or [C4]
        proposals, rpn_losses = self.rpn(batch, features, targets, generators)
        detections, roi_losses = self.roi_heads(features, proposals, batch.image_sizes, targets, generators)
        if self.training:
            return {**rpn_losses, **roi_losses}
        sizes = [tuple(img.shape[-2:]) for img in images]
        return self.postprocess(detections, batch.image_sizes, sizes, keep_mask_probs)

    def detect(self, batch: ImageList) -> list[dict]:
        """Inference on a normalised, padded batch -> per image the RoI heads' detections in
        the batch's pixels (boxes, scores, labels, mask_probs, ...): the graph ONNX export traces."""
        features = self.backbone(batch.tensors)
        proposals, _ = self.rpn(batch, features)
        return self.roi_heads(features, proposals, batch.image_sizes)[0]

    @torch.inference_mode()
    def predict(self, images, keep_mask_probs: bool = False, tile: int | None = None,
                tile_overlap: int = 64, tta: bool | None = None) -> list[Instances]:
        """Detect instances in one image or a list: file paths, PIL images, HWC uint8 numpy
        arrays or CHW float tensors in [0, 1]. Returns one `Instances` per image.
        `tile`: run on overlapping tiles of this size at full resolution (`maskrcnn.tiling`).
        `tta`: test-time augmentation (`maskrcnn.tta`: scales and flip from `test.tta`);
        None follows `test.tta.enabled`."""
        from ..image_io import as_tensor_list

        was_training = self.training
        self.eval()
        try:
            device = self.pixel_mean.device
            tensors = [t.to(device) for t in as_tensor_list(images)]
            tta = self.cfg.test.tta.enabled if tta is None else tta
            if tile:
                from ..tiling import predict_tiled

                per_tile = partial(self.predict, tta=tta)
                return [predict_tiled(per_tile, t, tile, tile_overlap) for t in tensors]
            if tta:
                from ..tta import predict_tta

                return [predict_tta(self, t, keep_mask_probs) for t in tensors]
            return self(tensors, keep_mask_probs=keep_mask_probs)
        finally:
            self.train(was_training)

    # -- pre/post-processing ----------------------------------------------------------------
    def preprocess(self, images, targets, generators, min_size: int | None = None):
        """Normalise, resize (short side to min_size, long side capped), pad to a multiple of
        size_divisibility. Targets (boxes, masks) are resized alongside. `min_size` overrides
        the config's (test-time augmentation's scales)."""
        inp = self.cfg.input
        resized, new_targets = [], []
        for i, image in enumerate(images):
            if image.dim() != 3 or image.shape[0] != 3:
                raise ValueError(f"image {i}: expected a (3, H, W) tensor, got {tuple(image.shape)}")
            size = min_size or self._pick_min_size(generators[i] if generators else None)
            resample = partial(resize, min_size=size, max_size=inp.max_size, target=targets[i] if targets else None,
                               rounding=inp.resize_rounding, backend=inp.resize_backend)
            if inp.resize_backend == "torch":  # torchvision resizes the normalised image
                image, target = resample(self.normalize(image))
            else:  # detectron2 / mmdetection resize the 8-bit image, then normalise it
                image, target = resample(image)
                image = self.normalize(image)
            resized.append(image)
            new_targets.append(target)
        return pad_batch(resized, inp.size_divisibility), (new_targets if targets else None)

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        """(3, H, W) or (B, 3, H, W) RGB in [0, 1] -> the channel order, scale, mean and std the
        weights expect."""
        if self.cfg.input.channel_order == "BGR":
            image = image.flip(-3)  # (3, H, W) or a batch (B, 3, H, W)
        if self.cfg.input.pixel_scale != 1.0:
            image = image * self.cfg.input.pixel_scale
        return (image - self.pixel_mean) / self.pixel_std

    def _pick_min_size(self, generator) -> int:
        sizes = self.cfg.input.min_size
        if not self.training:
            return sizes[-1]
        # Same draw as torchvision (one uniform per image), so seeded runs sample alike.
        u = torch.empty(1).uniform_(0.0, float(len(sizes)), generator=generator)
        return sizes[int(u.item())]

    def postprocess(self, detections, resized_sizes, input_sizes, keep_mask_probs) -> list[Instances]:
        """Per image: detections in the batch's pixels -> `Instances` at its input size."""
        aligned = self.cfg.model.mask.aligned
        return [to_instances(det, resized, size, self.class_names, aligned, keep_mask_probs)
                for det, resized, size in zip(detections, resized_sizes, input_sizes)]


def resized_size(height: int, width: int, min_size: int, max_size: int, rounding: str = "floor") -> tuple[int, int]:
    """(h, w) with the short side at `min_size` unless the long side would pass `max_size`.

    "floor": floor(side * scale), as F.interpolate(scale_factor=scale, recompute_scale_factor=True)
    sizes it (torchvision's resize); "round": int(side * scale + 0.5) (detectron2's
    ResizeShortestEdge, mmdetection's keep-ratio Resize). At least 1: a 3000x1 image would
    otherwise become 0 pixels high.
    """
    if rounding not in ROUNDINGS:
        raise ConfigError(f"input.resize_rounding: unknown '{rounding}' (expected one of {', '.join(ROUNDINGS)})")
    scale = min(min_size / min(height, width), max_size / max(height, width))
    half = 0.5 if rounding == "round" else 0.0
    return max(1, int(height * scale + half)), max(1, int(width * scale + half))


ROUNDINGS = ("floor", "round")


def resize(image: torch.Tensor, min_size: int, max_size: int, target: dict | None,
           rounding: str = "floor", backend: str = "torch"):
    """Scale so the short side is `min_size` unless the long side would pass `max_size`; the
    size rounded by `rounding`, the image resampled by `backend` (input.resize_rounding /
    input.resize_backend: "torch" bilinear on floats, "pil" / "cv2" on the 8-bit image)."""
    h, w = image.shape[-2:]
    nh, nw = resized_size(h, w, min_size, max_size, rounding)
    if backend == "torch":
        image = F.interpolate(image[None], size=(nh, nw), mode="bilinear", align_corners=False)[0]
    else:
        image = resize_8bit(image, (nh, nw), backend)
    if target is None:
        return image, None
    target = dict(target)
    target["boxes"] = target["boxes"] * scale_ratio(nw, w, nh, h, image.device)
    if "masks" in target:
        masks = F.interpolate(target["masks"][:, None].float(), size=(nh, nw))
        target["masks"] = masks[:, 0].byte()
    if "keypoints" in target:
        kp = target["keypoints"].clone()
        kp[..., :2] *= scale_ratio(nw, w, nh, h, image.device)[:2]
        target["keypoints"] = kp
    return image, target


def pad_batch(images: list[torch.Tensor], divisor: int) -> ImageList:
    """Zero-pad bottom/right to a common size that is a multiple of `divisor`."""
    h = padded_size(max(img.shape[-2] for img in images), divisor)
    w = padded_size(max(img.shape[-1] for img in images), divisor)
    batch = torch.stack([F.pad(img, (0, w - img.shape[-1], 0, h - img.shape[-2])) for img in images])
    return ImageList(batch, [tuple(img.shape[-2:]) for img in images])


def pad_stacked_batch(images: torch.Tensor, image_sizes: torch.Tensor, divisor: int) -> ImageList:
    """`pad_batch` for images already stacked (an exported graph's input): images (B, C, H, W)
    whose image i fills its top-left image_sizes[i] = (h, w) -> each image zeroed outside its
    size, the batch zero-padded to a multiple of `divisor`. Sizes stay symbolic while tracing."""
    h, w = images.shape[-2:]
    rows = torch.arange(h, device=images.device)[None, :, None] < image_sizes[:, 0, None, None]
    cols = torch.arange(w, device=images.device)[None, None, :] < image_sizes[:, 1, None, None]
    images = torch.where((rows & cols)[:, None], images, 0.0)
    images = F.pad(images, (0, padded_size(w, divisor) - w, 0, padded_size(h, divisor) - h))
    return ImageList(images, image_sizes)


def padded_size(size, divisor: int):
    """The multiple of `divisor` at or above `size` (an int, or a 0-dim tensor while tracing)."""
    return (size + divisor - 1) // divisor * divisor


def _generators(targets) -> list[torch.Generator] | None:
    """Per-image RNGs from `target["seed"]`, so sampling does not depend on batch layout."""
    if not targets or any("seed" not in t for t in targets):
        return None
    return [torch.Generator().manual_seed(int(t["seed"])) for t in targets]


def build_model(cfg: Config) -> MaskRCNN:
    """Compose the model described by `cfg` (random initialisation)."""
    return MaskRCNN(cfg)

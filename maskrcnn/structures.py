"""Containers that flow between stages: `ImageList` (a padded batch) and `Instances` (detections)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class ImageList:
    """A padded batch (B, C, Hp, Wp) plus each image's size (h, w) before padding (while
    tracing a batch: a (B, 2) tensor)."""

    tensors: torch.Tensor
    image_sizes: list[tuple[int, int]] | torch.Tensor


@dataclass
class BatchedBoxes:
    """While tracing (ONNX export), where eager code keeps a list of per-image boxes: every
    image's boxes in one tensor, grouped by image in batch order, with each box's image. The
    traced graph then holds no per-image loop and runs a batch of any size."""

    boxes: torch.Tensor  # (N, 4) xyxy
    batch_index: torch.Tensor  # (N,) int64, non-decreasing

    @classmethod
    def from_list(cls, boxes: list[torch.Tensor]) -> "BatchedBoxes":
        """Per-image (Ni, 4) boxes -> one batch."""
        counts = torch.tensor([len(b) for b in boxes], device=boxes[0].device)
        return cls(torch.cat(boxes), torch.repeat_interleave(torch.arange(len(boxes), device=counts.device), counts))

    def counts(self, num_images: int) -> list[int]:
        """Rows per image, for `Tensor.split` (eager only: the counts become Python ints)."""
        return torch.bincount(self.batch_index, minlength=num_images).tolist()


def sizes_tensor(image_sizes: list[tuple[int, int]] | torch.Tensor, device) -> torch.Tensor:
    """Each image's (h, w) as a (B, 2) int64 tensor (a traced batch's already is one)."""
    return image_sizes if torch.is_tensor(image_sizes) else torch.tensor(image_sizes, device=device)


def split_per_image(x: torch.Tensor, counts: list) -> list[torch.Tensor]:
    """Rows of a batch (sum(counts), ...) back per image. A single entry (one image, or a traced
    batch's `BatchedBoxes`) takes all the rows, so that a traced graph does not freeze its row count."""
    return [x] if len(counts) == 1 else list(x.split(counts))


class Instances:
    """Per-instance fields of one image, all of the same length N.

    Usual fields: `boxes` (N, 4) xyxy pixels, `scores` (N,), `labels` (N,) int64,
    `masks` (N, H, W) bool, `mask_scores` (N,), `keypoints` (N, K, 3) x, y, score.
    `image_size` is (H, W) of the image the fields refer to; `class_names` maps label -> name.
    """

    def __init__(self, image_size: tuple[int, int], class_names=(), **fields):
        object.__setattr__(self, "image_size", tuple(int(s) for s in image_size))
        object.__setattr__(self, "class_names", tuple(class_names))
        object.__setattr__(self, "_fields", {})
        for name, value in fields.items():
            setattr(self, name, value)

    def __setattr__(self, name, value):
        if name in ("image_size", "class_names"):
            object.__setattr__(self, name, value)
            return
        if self._fields and len(value) != len(self):
            raise ValueError(f"field '{name}' has length {len(value)}, expected {len(self)}")
        self._fields[name] = value

    def __getattr__(self, name):
        fields = object.__getattribute__(self, "_fields")
        if name in fields:
            return fields[name]
        raise AttributeError(f"Instances has no field '{name}' (fields: {', '.join(fields)})")

    def has(self, name: str) -> bool:
        """Whether field `name` is set."""
        return name in self._fields

    def fields(self) -> dict:
        """The fields as a new dict name -> value (tensors not copied)."""
        return dict(self._fields)

    def __len__(self) -> int:
        for value in self._fields.values():
            return len(value)
        return 0

    def __getitem__(self, index) -> "Instances":
        if isinstance(index, int):
            index = slice(index, index + 1)
        return Instances(
            self.image_size, self.class_names, **{k: v[index] for k, v in self._fields.items()}
        )

    def to(self, device) -> "Instances":
        """A new Instances with every tensor field moved to `device` (others as they are)."""
        moved = {k: v.to(device) if torch.is_tensor(v) else v for k, v in self._fields.items()}
        return Instances(self.image_size, self.class_names, **moved)

    @property
    def label_names(self) -> list[str]:
        """Class name of each instance (falls back to `class_<label>`)."""
        names = self.class_names
        return [
            names[i] if i < len(names) else f"class_{i}" for i in self.labels.tolist()
        ]

    def measure(self, image=None, pixel_size: str | None = None):
        """Per-instance measurements (area, perimeter, centroid, box, axes, shape, mean
        intensity per channel of `image`, a (3, H, W) tensor or (H, W, C) array) with
        scikit-image's regionprops: a pandas DataFrame when pandas is installed, else a list of
        dicts. `pixel_size` ("0.5um") converts lengths and areas. See maskrcnn/measure.py."""
        from .measure import PixelSize, as_table, measure_masks

        if torch.is_tensor(image):
            image = image.detach().cpu().permute(1, 2, 0).numpy()  # (H, W, C)
        masks = self.masks.detach().cpu().numpy()
        scores = self.scores.tolist() if self.has("scores") else ()
        labels = self.label_names if self.has("labels") else ()
        return as_table(measure_masks(masks, image, labels, scores, pixel_size=PixelSize.parse(pixel_size)))

    def __repr__(self) -> str:
        parts = ", ".join(f"{k}={tuple(v.shape) if torch.is_tensor(v) else len(v)}"
                          for k, v in self._fields.items())
        return f"Instances(num={len(self)}, image_size={self.image_size}, {parts})"

"""RoI pooling: each RoI is pooled from the pyramid level that matches its size (FPN eq. 1) by
RoIAlign, RoIPool or RoIWarp (the paper's Table 2c).

RoIAlign has one implementation per case, chosen by constructing the pooler's class (the fast
paths swap it with `RoIPooler.as_variant`):
- `RoIPooler`: torchvision's kernels per level, RoIs split across threads (`ThreadedRoIAlign` in
  training): the model as built, the exact reference, and what ONNX export traces;
- `GatherRoIAlign`: a weighted gather of channel rows in the maps' own dtype and layout: the
  fp32 and bf16 inference fast paths;
- `SparseRoIAlign`: one sparse matrix product over all levels, channels-last: fast training;
- `Fp32RoIPooler`: torchvision's kernels on fp32 NCHW maps, for the poolers a fast path has no
  variant of (RoIPool, RoIWarp, adaptive sampling).
Each is kept because it wins a measured case (`benchmarks/roi_align_variants.py`, one run, calls
alternating, 800 x 1088 image, 256 channels, 2 threads, AMD EPYC under load; median ms,
benchmarks/results/roi_align_variants.json):
- inference fp32, 1000 RoIs: gather 190, torchvision threaded 1680, on 1 thread 2455: the gather
  wins (8.8x over threaded); threading wins over one thread (1.46x) for the model as built;
- inference bf16: gather in bf16 118, torchvision on fp32 NCHW copies 2189: the gather (18.5x);
- training fp32 forward + backward, 1024 RoIs: sparse 1412, threaded 6100, 1 thread 9112: the
  sparse product (4.3x over threaded); threading 1.49x over one thread for exact training.
`RoIPooler` itself stays as the exact reference (parity with torchvision digit for digit) and
what ONNX export traces; `Fp32RoIPooler` wins no timed case and serves the pooler kinds the fast
variants do not compute.
"""

from __future__ import annotations

import math
import weakref
from concurrent.futures import ThreadPoolExecutor

import torch
from torch import nn
from torchvision.ops import roi_align, roi_pool

from ..structures import BatchedBoxes
from .boxes import box_area
from .roi_align_sparse import pyramid_rows, roi_align_gather_levels, roi_align_sparse_levels

# torchvision's CPU RoIAlign kernels (forward and backward) run on one thread: RoIs are split
# across threads (the kernels release the GIL). Below this many RoIs a split is not worth it.
MIN_ROIS_PER_THREAD = 16
_POOL: ThreadPoolExecutor | None = None


def boxes_to_rois(boxes: list[torch.Tensor] | BatchedBoxes) -> torch.Tensor:
    """Per-image (Ni, 4) boxes (or a traced batch's) -> (sum Ni, 5) rois with the image index in column 0."""
    if isinstance(boxes, BatchedBoxes):
        return torch.cat([boxes.batch_index[:, None].to(boxes.boxes.dtype), boxes.boxes], dim=1)
    index = torch.cat([torch.full_like(b[:, :1], i) for i, b in enumerate(boxes)])
    return torch.cat([index, torch.cat(boxes)], dim=1)


def assign_levels(
    boxes: torch.Tensor, min_level: int, max_level: int, canonical_scale: int, canonical_level: int
) -> torch.Tensor:
    """(N, 4) boxes -> (N,) index into the pooled levels: floor(k0 + log2(sqrt(area)/s0))."""
    size = torch.sqrt(box_area(boxes))
    # The epsilon keeps boxes of exactly canonical size (224 px) at the canonical level.
    level = torch.floor(canonical_level + torch.log2(size / canonical_scale) + 1e-6)
    return level.clamp(min=min_level, max=max_level).to(torch.int64) - min_level


POOLERS = ("roialign", "roipool", "roiwarp")


class RoIPooler(nn.Module):
    """Pools (N, C, R, R) features for per-image boxes, each from the pyramid level P`min_level`..
    P`max_level` that matches its size (one level for C4), with the paper's Table 2c RoI layers:

    - "roialign": no quantisation, bilinear samples averaged per bin (RoIAlign);
    - "roipool": RoI and bins quantised to the feature grid, max per bin (Fast R-CNN's RoIPool);
    - "roiwarp": RoI quantised to the feature grid, then resampled bilinearly as RoIAlign does
      (MNC's RoIWarp): alignment lost at the RoI's edges only.
    """

    def __init__(
        self,
        sampling_ratio: int,
        aligned: bool,
        min_level: int = 2,
        max_level: int = 5,
        canonical_scale: int = 224,
        canonical_level: int = 4,
        kind: str = "roialign",
    ):
        super().__init__()
        if kind not in POOLERS:
            raise ValueError(f"unknown RoI pooler '{kind}' (expected one of {', '.join(POOLERS)})")
        self.kind = kind
        # torchvision's roi_align reads 0 as "adaptive", as detectron2's configs do.
        self.sampling_ratio = max(sampling_ratio, 0)
        self.aligned = aligned
        self.min_level, self.max_level = min_level, max_level
        self.canonical_scale, self.canonical_level = canonical_scale, canonical_level

    def extra_repr(self) -> str:
        """Kind, sampling ratio, alignment and levels, as `print(model)` shows them."""
        return (f"kind={self.kind}, sampling_ratio={self.sampling_ratio}, aligned={self.aligned}, "
                f"levels=P{self.min_level}..P{self.max_level}")

    def as_variant(self, cls: type[RoIPooler]) -> RoIPooler:
        """The same pooler (geometry, level mapping) computed by the variant `cls`."""
        return cls(self.sampling_ratio, self.aligned, self.min_level, self.max_level, self.canonical_scale,
                   self.canonical_level, self.kind)  # fmt: skip

    def rois_and_levels(self, features, boxes):
        """-> rois (N, 5), each RoI's level index (N,), the levels' scales (one per map pooled)."""
        rois = boxes_to_rois(boxes)
        levels = assign_levels(rois[:, 1:], self.min_level, self.max_level, self.canonical_scale,
                               self.canonical_level)  # fmt: skip
        num_levels = min(len(features), self.max_level - self.min_level + 1)
        return rois, levels, [1.0 / math.pow(2, self.min_level + offset) for offset in range(num_levels)]

    def forward(self, features: list[torch.Tensor], boxes: list[torch.Tensor], resolution: int) -> torch.Tensor:
        """features: [P`min_level`..] (B, C, Hl, Wl) at strides 2**level; boxes: per-image (Ni, 4)."""
        rois, levels, scales = self.rois_and_levels(features, boxes)  # (N, 5), (N,), per level
        num_levels = len(scales)
        if torch.jit.is_tracing():
            return self._pool_traced(features[:num_levels], rois, levels, resolution)
        channels = features[0].shape[1]
        out = features[0].new_zeros((rois.shape[0], channels, resolution, resolution))
        threads = _threads(features[0]) if self.kind == "roialign" else 1
        if torch.is_grad_enabled() and any(f.requires_grad for f in features):
            return self._pool_recorded(features[:num_levels], rois, levels, resolution, out, threads)
        jobs = []  # (level offset, indices of its RoIs), levels split into chunks for threads
        for offset in range(num_levels):
            idx = torch.where(levels == offset)[0]
            parts = min(threads, max(len(idx) // MIN_ROIS_PER_THREAD, 1))
            jobs += [(offset, part) for part in idx.tensor_split(parts) if len(part)]

        def pool(job):
            offset, idx = job
            return self._pool_level(features[offset], rois[idx], offset, resolution)

        for (_, idx), pooled in zip(jobs, _map(pool, jobs, threads)):
            out[idx] = pooled.to(out.dtype)
        return out

    def _pool_level(self, feature: torch.Tensor, rois: torch.Tensor, offset: int, resolution: int):
        """(K, 5) rois of one level -> (K, C, R, R)."""
        scale = 1.0 / math.pow(2, self.min_level + offset)
        if self.kind == "roipool":
            return roi_pool(feature, rois, resolution, scale)
        if self.kind == "roiwarp":
            return roi_align(feature, quantize_rois(rois, scale), resolution, 1.0, self.sampling_ratio, False)
        return roi_align(feature, rois, resolution, scale, self.sampling_ratio, self.aligned)

    def _pool_recorded(self, features, rois, levels, resolution, out, threads):
        """Training: one autograd node per level, RoIAlign splitting its RoIs across threads."""
        for offset in range(len(features)):
            idx = torch.where(levels == offset)[0]
            if len(idx) == 0:
                continue
            parts = min(threads, max(len(idx) // MIN_ROIS_PER_THREAD, 1))
            if parts > 1:
                scale = 1.0 / math.pow(2, self.min_level + offset)
                args = (features[offset], rois[idx], scale, resolution, self.sampling_ratio, self.aligned)
                pooled = ThreadedRoIAlign.apply(*args, parts)
            else:
                pooled = self._pool_level(features[offset], rois[idx], offset, resolution)
            out[idx] = pooled.to(out.dtype)
        return out

    def _pool_traced(self, features, rois, levels, resolution):
        """The traced (ONNX) form: every level pools its RoIs, however many there are at trace
        time, with torchvision's registered ops (they export as RoiAlign / MaxRoiPool)."""
        pooled, order = [], []
        for offset, feature in enumerate(features):
            idx = torch.where(levels == offset)[0]
            scale = 1.0 / math.pow(2, self.min_level + offset)
            if self.kind == "roipool":
                level = torch.ops.torchvision.roi_pool(feature, rois[idx], scale, resolution, resolution)[0]
            else:
                level_rois, level_scale, aligned = rois[idx], scale, self.aligned
                if self.kind == "roiwarp":
                    level_rois, level_scale, aligned = quantize_rois(level_rois, scale), 1.0, False
                level = torch.ops.torchvision.roi_align(feature, level_rois, level_scale, resolution,
                                                        resolution, self.sampling_ratio, aligned)
            pooled.append(level)
            order.append(idx)
        # rows are grouped by level; put them back in RoI order
        return torch.cat(pooled)[torch.argsort(torch.cat(order))]


class GatherRoIAlign(RoIPooler):
    """Inference-only RoIAlign (fixed sampling ratio) that reads the maps in their own dtype and
    layout: every bin a weighted gather of channel rows (`roi_align_gather_levels`). The bf16
    fast path's pooler: no fp32 NCHW copy of the pyramid, bf16 channels-last RoI features out,
    as the heads' convolutions want them. The maps' rows are copied once per image batch and
    kept for the next call on the same maps (the mask head's after the box head's) while the
    maps live."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.kind != "roialign" or self.sampling_ratio <= 0:
            raise ValueError("GatherRoIAlign needs RoIAlign with a fixed sampling ratio")
        self._rows: tuple[list[weakref.ref], torch.Tensor] | None = None

    def rows(self, features: list[torch.Tensor]) -> torch.Tensor:
        """`pyramid_rows(features)`, reused while the same map tensors are passed."""
        if self._rows is not None and len(self._rows[0]) == len(features) and all(
                ref() is f for ref, f in zip(self._rows[0], features)):  # fmt: skip
            return self._rows[1]
        self._rows = None
        refs = [weakref.ref(f, self._forget) for f in features]  # a freed map drops the copy
        self._rows = (refs, pyramid_rows(features))
        return self._rows[1]

    def _forget(self, _ref) -> None:
        self._rows = None

    def __getstate__(self) -> dict:  # weak references do not pickle; the copy is not state
        return {**self.__dict__, "_rows": None}

    def forward(self, features: list[torch.Tensor], boxes: list[torch.Tensor], resolution: int) -> torch.Tensor:
        """features [P2..] in their dtype and layout, per-image boxes (Ni, 4) -> (N, C, R, R)
        channels-last, in the maps' dtype."""
        if torch.jit.is_tracing():  # an export: torchvision's registered ops, as the built model's
            return super().forward([f.float() for f in features], boxes, resolution)
        rois, levels, scales = self.rois_and_levels(features, boxes)
        maps = features[: len(scales)]
        return roi_align_gather_levels(maps, rois, levels, scales, resolution, self.sampling_ratio, self.aligned,
                                       self.rows(maps))  # fmt: skip


class SparseRoIAlign(RoIPooler):
    """Training RoIAlign (fixed sampling ratio) over all levels as one sparse matrix product on
    the channels-last maps (`roi_align_sparse_levels`), in fp32 with autocast off: the fast
    training path's pooler (no NCHW copy of the maps, no per-sample scatter in backward)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.kind != "roialign" or self.sampling_ratio <= 0:
            raise ValueError("SparseRoIAlign needs RoIAlign with a fixed sampling ratio")

    def forward(self, features: list[torch.Tensor], boxes: list[torch.Tensor], resolution: int) -> torch.Tensor:
        """features [P2..] (B, C, Hl, Wl) channels-last, per-image boxes (Ni, 4) -> (N, C, R, R) fp32."""
        rois, levels, scales = self.rois_and_levels(features, boxes)
        with torch.autocast(features[0].device.type, enabled=False):
            return roi_align_sparse_levels(features[: len(scales)], rois, levels, scales, resolution,
                                           self.sampling_ratio, self.aligned)  # fmt: skip


class Fp32RoIPooler(RoIPooler):
    """The pooler as built, on fp32 NCHW copies of the maps with autocast off: what a fast path
    runs for a pooler it has no variant of (adaptive sampling, RoIPool, RoIWarp)."""

    def forward(self, features: list[torch.Tensor], boxes: list[torch.Tensor], resolution: int) -> torch.Tensor:
        """features [P2..] in any dtype / layout, per-image boxes (Ni, 4) -> (N, C, R, R) fp32."""
        with torch.autocast(features[0].device.type, enabled=False):
            return super().forward([f.float().contiguous() for f in features], boxes, resolution)


def quantize_rois(rois: torch.Tensor, scale: float) -> torch.Tensor:
    """(K, 5) rois in image pixels -> the same rois in feature cells, each coordinate rounded to
    the nearest cell as RoIPool does (half away from zero for the non-negative coordinates)."""
    return torch.cat([rois[:, :1], torch.floor(rois[:, 1:] * scale + 0.5)], dim=1)


class ThreadedRoIAlign(torch.autograd.Function):
    """torchvision's RoIAlign with its RoIs split into `parts` chunks run on threads, in forward
    and backward. Forward is identical to one call; backward adds the chunks' gradient maps."""

    @staticmethod
    def forward(ctx, feature, rois, scale, resolution, sampling_ratio, aligned, parts):
        """feature (B, C, H, W), rois (K, 5) -> (K, C, R, R), chunks of RoIs pooled on threads."""
        ctx.save_for_backward(rois)
        ctx.args = (scale, resolution, sampling_ratio, aligned, parts, feature.shape)
        chunks = rois.tensor_split(parts)
        pooled = _map(lambda r: roi_align(feature, r, resolution, scale, sampling_ratio, aligned), chunks, parts)
        return torch.cat(pooled)

    @staticmethod
    def backward(ctx, grad):
        """grad (K, C, R, R) -> the feature's gradient (B, C, H, W), the chunks' maps added."""
        (rois,) = ctx.saved_tensors
        scale, resolution, sampling_ratio, aligned, parts, (b, c, h, w) = ctx.args

        def chunk_grad(job):
            g, r = job
            return torch.ops.torchvision._roi_align_backward(
                g.contiguous(), r, scale, resolution, resolution, b, c, h, w, sampling_ratio, aligned)

        grads = _map(chunk_grad, list(zip(grad.tensor_split(parts), rois.tensor_split(parts))), parts)
        return sum(grads[1:], grads[0]), None, None, None, None, None, None


def _threads(feature: torch.Tensor) -> int:
    """Threads for the CPU kernels; 1 on other devices or when a tracer / compiler is watching."""
    watched = torch.jit.is_tracing() or torch.compiler.is_compiling()
    if feature.device.type != "cpu" or watched:
        return 1
    return torch.get_num_threads()


def _map(fn, jobs: list, threads: int) -> list:
    """`[fn(job) for job in jobs]`, on a thread pool when there are threads and jobs to share."""
    global _POOL
    if threads <= 1 or len(jobs) <= 1:
        return [fn(job) for job in jobs]
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="roi_align")
    inference, grad = torch.is_inference_mode_enabled(), torch.is_grad_enabled()

    def run(job):
        with torch.inference_mode(inference), torch.set_grad_enabled(grad):  # modes are per thread
            return fn(job)

    return list(_POOL.map(run, jobs))

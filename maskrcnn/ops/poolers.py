"""Multi-level RoIAlign: each RoI is pooled from the FPN level that matches its size (FPN eq. 1)."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import torch
from torch import nn
from torchvision.ops import roi_align

from .boxes import box_area

# torchvision's CPU RoIAlign kernels (forward and backward) run on one thread: RoIs are split
# across threads (the kernels release the GIL). Below this many RoIs a split is not worth it.
MIN_ROIS_PER_THREAD = 16
_POOL: ThreadPoolExecutor | None = None


def boxes_to_rois(boxes: list[torch.Tensor]) -> torch.Tensor:
    """Per-image (Ni, 4) boxes -> (sum Ni, 5) rois with the image index in column 0."""
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


class MultiLevelRoIAlign(nn.Module):
    """Pools (N, C, R, R) features for per-image boxes from levels P`min_level`..P`max_level`."""

    def __init__(
        self,
        resolution: int,
        sampling_ratio: int,
        aligned: bool,
        min_level: int = 2,
        max_level: int = 5,
        canonical_scale: int = 224,
        canonical_level: int = 4,
    ):
        super().__init__()
        self.resolution = resolution
        # torchvision's roi_align takes -1 for "adaptive" sampling, configs use 0 as in detectron2.
        self.sampling_ratio = sampling_ratio if sampling_ratio > 0 else -1
        self.aligned = aligned
        self.min_level, self.max_level = min_level, max_level
        self.canonical_scale, self.canonical_level = canonical_scale, canonical_level

    def forward(self, features: list[torch.Tensor], boxes: list[torch.Tensor]) -> torch.Tensor:
        """features: [P2..P5] (B, C, Hl, Wl) at strides 2**level; boxes: per-image (Ni, 4)."""
        rois = boxes_to_rois(boxes)  # (N, 5)
        levels = assign_levels(
            rois[:, 1:], self.min_level, self.max_level, self.canonical_scale, self.canonical_level
        )
        channels = features[0].shape[1]
        out = features[0].new_zeros((rois.shape[0], channels, self.resolution, self.resolution))
        threads = _threads(features[0])
        if torch.is_grad_enabled() and any(f.requires_grad for f in features):
            return self._pool_recorded(features, rois, levels, out, threads)
        jobs = []  # (level offset, indices of its RoIs), levels split into chunks for threads
        for offset in range(min(len(features), self.max_level - self.min_level + 1)):
            idx = torch.where(levels == offset)[0]
            parts = min(threads, max(len(idx) // MIN_ROIS_PER_THREAD, 1))
            jobs += [(offset, part) for part in idx.tensor_split(parts) if len(part)]

        def pool(job):
            offset, idx = job
            return roi_align(
                features[offset],
                rois[idx],
                output_size=self.resolution,
                spatial_scale=1.0 / math.pow(2, self.min_level + offset),
                sampling_ratio=self.sampling_ratio,
                aligned=self.aligned,
            )

        for (_, idx), pooled in zip(jobs, _map(pool, jobs, threads)):
            out[idx] = pooled.to(out.dtype)
        return out


    def _pool_recorded(self, features, rois, levels, out, threads):
        """Training: one autograd node per level, each splitting its RoIs across threads."""
        for offset in range(min(len(features), self.max_level - self.min_level + 1)):
            idx = torch.where(levels == offset)[0]
            if len(idx) == 0:
                continue
            scale = 1.0 / math.pow(2, self.min_level + offset)
            parts = min(threads, max(len(idx) // MIN_ROIS_PER_THREAD, 1))
            args = (features[offset], rois[idx], scale, self.resolution, self.sampling_ratio, self.aligned)
            pooled = ThreadedRoIAlign.apply(*args, parts) if parts > 1 else roi_align(
                args[0], args[1], self.resolution, scale, self.sampling_ratio, self.aligned)
            out[idx] = pooled.to(out.dtype)
        return out


class ThreadedRoIAlign(torch.autograd.Function):
    """torchvision's RoIAlign with its RoIs split into `parts` chunks run on threads, in forward
    and backward. Forward is identical to one call; backward adds the chunks' gradient maps."""

    @staticmethod
    def forward(ctx, feature, rois, scale, resolution, sampling_ratio, aligned, parts):
        ctx.save_for_backward(rois)
        ctx.args = (scale, resolution, sampling_ratio, aligned, parts, feature.shape)
        chunks = rois.tensor_split(parts)
        pooled = _map(lambda r: roi_align(feature, r, resolution, scale, sampling_ratio, aligned), chunks, parts)
        return torch.cat(pooled)

    @staticmethod
    def backward(ctx, grad):
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

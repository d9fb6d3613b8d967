"""Inference benchmarking: per-image latency, per-stage times and peak memory of several runners
measured on the same images in one run, alternating image by image so that every runner sees
the same machine load.

A runner is a name, a callable `image -> number of detections`, and optionally the modules that
open and close each stage (`StageSpans`), timed by `StageTimer`'s timing variants.
"""

from __future__ import annotations

import functools
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

# stage name -> (module whose forward opens it, module whose forward closes it)
StageSpans = dict[str, tuple[nn.Module, nn.Module]]
STAGES = ("preprocess", "backbone", "rpn", "box head", "mask head", "keypoint head", "maskiou head",
          "postprocess")


@dataclass
class Runner:
    """One measured variant: its `name`, `run` (a (3, H, W) float image in [0, 1] -> its number of
    detections), the `spans` of its stages (None: not timed per stage), and what `run_benchmark`
    records per call: `latencies` (seconds), `peaks` (bytes above the level before the call:
    resident memory on the CPU, allocated memory on CUDA), `stages` (stage -> seconds per call),
    `detections`."""

    name: str
    run: Callable[[torch.Tensor], int]  # image (3, H, W) float in [0, 1] -> detections
    spans: StageSpans | None = None
    latencies: list[float] = field(default_factory=list)
    peaks: list[int] = field(default_factory=list)  # bytes above the pre-call level
    stages: dict[str, list[float]] = field(default_factory=dict)
    detections: list[int] = field(default_factory=list)


def our_stage_spans(model) -> StageSpans:
    """Stages of `maskrcnn.MaskRCNN`; preprocess and postprocess are the time around them."""
    heads = model.roi_heads
    spans = {"backbone": (model.backbone, model.backbone), "rpn": (model.rpn, model.rpn),
             "box head": (heads.pooler, heads.box_head)}
    # the pooler runs again before each head that pools: a span opens at the latest pooling
    # a head's span closes with its last module run: the fp32 fast path's mask tail, if set
    spans.update({f"{name} head": (heads.pooler if name != "maskiou" else head, getattr(head, "fast_tail", None) or head)
                  for name, head in heads.instance_heads()})
    return spans


class StageTimer:
    """Adds up the time between each span's opening and closing module: wall time, or another
    `clock` (time.process_time: CPU time, unaffected by other jobs' load).

    Inside `with`, each module that opens or closes a span runs as a named timing variant of its
    class (`Timed<Class>`, shown by `print(model)`): its forward reads the clock before and after
    the module's own forward and returns the same output. On exit every module gets its class back.
    """

    def __init__(self, spans: StageSpans, clock: Callable[[], float] = time.perf_counter):
        self.spans, self.times, self._open, self._swapped = spans, {}, {}, []
        self.clock = clock

    def __enter__(self):
        roles: dict[int, tuple[nn.Module, list[str], list[str]]] = {}  # id -> (module, opens, closes)
        for name, (first, last) in self.spans.items():
            roles.setdefault(id(first), (first, [], []))[1].append(name)
            roles.setdefault(id(last), (last, [], []))[2].append(name)
        for module, opens, closes in roles.values():
            self._swapped.append((module, type(module)))
            module.__class__ = _timed_class(type(module))
            module._stage_timing = (self, opens, closes)
        self.times = {name: 0.0 for name in self.spans}
        self.first_start = None
        return self

    def __exit__(self, *exc):
        for module, cls in self._swapped:
            module.__class__ = cls
            del module._stage_timing
        self._swapped.clear()

    def opened(self, names: list[str]) -> None:
        """The stages `names` open now (a timing variant's forward starts)."""
        now = self.clock()
        self._open.update(dict.fromkeys(names, now))
        self.first_start = self.first_start or now

    def closed(self, names: list[str]) -> None:
        """The stages `names` close now: their time since opening is added (seconds of `clock`)."""
        now = self.clock()
        for name in names:
            self.times[name] += now - self._open.pop(name)


class TimedStage:
    """Mixin of the timing variants: the module's forward between two clock readings."""

    def forward(self, *args, **kwargs):
        """The module's own forward, unchanged output, between the timer's two clock readings."""
        timer, opens, closes = self._stage_timing
        timer.opened(opens)
        output = super().forward(*args, **kwargs)
        timer.closed(closes)
        return output


@functools.cache
def _timed_class(cls: type[nn.Module]) -> type[nn.Module]:
    """`Timed<cls>`: `cls` with `TimedStage`'s forward."""
    return type(f"Timed{cls.__name__}", (TimedStage, cls), {})


class PeakMemory:
    """Peak memory above the level at entry: CUDA allocator statistics on a GPU, otherwise the
    process's resident set sampled every millisecond from /proc (Linux)."""

    def __init__(self, device: torch.device):
        self.device, self.peak = torch.device(device), 0

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
            return self
        self._base = _rss()
        self._max, self._stop = self._base, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.001):
            self._max = max(self._max, _rss())

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device) - self._base
            return
        self._stop.set()
        self._thread.join()
        self.peak = max(self._max, _rss()) - self._base


def _rss() -> int:
    """Resident set size in bytes (0 where /proc is missing, so memory reads as unknown)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0
    import os

    return pages * os.sysconf("SC_PAGE_SIZE")


def run_benchmark(runners: list[Runner], images: list[torch.Tensor], repeats: int = 1, warmup: int = 1,
                  device="cpu", progress: Callable[[str], None] | None = None) -> list[Runner]:
    """Time every runner on every image `repeats` times, runners alternating per image."""
    for runner in runners:
        for image in images[:warmup]:
            runner.run(image)
    for rep in range(repeats):
        for i, image in enumerate(images):
            for runner in runners:
                _measure(runner, image, device)
            if progress:
                progress(f"repeat {rep + 1}/{repeats}, image {i + 1}/{len(images)}")
    return runners


def _measure(runner: Runner, image: torch.Tensor, device) -> None:
    timer = StageTimer(runner.spans or {})
    with timer, PeakMemory(device) as memory:
        _sync(device)
        start = time.perf_counter()
        runner.detections.append(runner.run(image))
        _sync(device)
        total = time.perf_counter() - start
    runner.latencies.append(total)
    runner.peaks.append(memory.peak)
    if runner.spans:
        stages = dict(timer.times)
        stages.setdefault("preprocess", (timer.first_start or start) - start)
        stages["postprocess"] = total - sum(stages.values())
        for name, value in stages.items():
            runner.stages.setdefault(name, []).append(value)


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile, q in [0, 100]."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def summary(runner: Runner) -> dict:
    """A runner's measurements as numbers: p50 and p90 latency (ms), images per second, peak memory
    (MiB above the pre-call level, the largest call), median detections, median time per stage
    (ms). What `maskrcnn bench --json` writes per runner."""
    lat = runner.latencies
    return {
        "name": runner.name,
        "p50_ms": 1000 * percentile(lat, 50),
        "p90_ms": 1000 * percentile(lat, 90),
        "images_per_s": len(lat) / sum(lat),
        "peak_mb": max(runner.peaks) / 2**20,
        "detections": statistics.median(runner.detections),
        "stages_ms": {k: 1000 * statistics.median(v) for k, v in runner.stages.items()},
    }


def format_report(runners: list[Runner], reference: str | None = None) -> str:
    """A latency table (speed-up against `reference` by p50) and a per-stage table."""
    rows = [summary(r) for r in runners]
    ref = next((r for r in rows if r["name"] == reference), None)
    width = max(len(r["name"]) for r in rows) + 2
    lines = [f"{'runner':{width}s}{'p50 ms':>10s}{'p90 ms':>10s}{'img/s':>8s}{'peak MB':>9s}{'dets':>6s}"
             + ("  speed-up" if ref else "")]
    for r in rows:
        line = (f"{r['name']:{width}s}{r['p50_ms']:10.1f}{r['p90_ms']:10.1f}{r['images_per_s']:8.2f}"
                f"{r['peak_mb']:9.0f}{r['detections']:6.0f}")
        if ref:
            line += f"  {ref['p50_ms'] / r['p50_ms']:8.2f}x"
        lines.append(line)
    staged = [r for r in rows if r["stages_ms"]]
    if staged:
        names = [s for s in STAGES if any(s in r["stages_ms"] for r in staged)]
        lines += ["", "median ms per stage", f"{'runner':{width}s}" + "".join(f"{s:>14s}" for s in names)]
        for r in staged:
            lines.append(f"{r['name']:{width}s}"
                         + "".join(f"{r['stages_ms'].get(s, float('nan')):14.1f}" for s in names))
    return "\n".join(lines)

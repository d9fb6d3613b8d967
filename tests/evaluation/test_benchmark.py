"""The benchmark machinery: percentiles, stage timing by timing variants, peak memory, alternation."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
import torch
from torch import nn

from maskrcnn.evaluation.benchmark import PeakMemory, Runner, StageTimer, percentile, run_benchmark


class Sleep(nn.Module):
    def __init__(self, seconds):
        super().__init__()
        self.seconds = seconds

    def forward(self, x):
        start = time.perf_counter()
        time.sleep(self.seconds)
        self.took = time.perf_counter() - start  # the sleep as this module saw it
        return x


@pytest.mark.parametrize("q", [0, 10, 50, 90, 100])
def test_percentile_matches_numpy(q):
    values = list(np.random.default_rng(q).random(17))
    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_stage_timer_times_each_span_and_restores_the_modules():
    a, b, c = Sleep(0.05), Sleep(0.02), Sleep(0.1)
    net = nn.Sequential(a, b, c)
    x = torch.arange(3.0)
    with StageTimer({"first": (a, a), "rest": (b, c)}) as timer:
        assert [type(m).__name__ for m in net] == ["TimedSleep"] * 3  # print(net) shows them
        start = time.perf_counter()
        assert net(x) is x
        total = time.perf_counter() - start
    # each span holds its modules' own time, and the spans do not overlap (robust to load)
    assert timer.times["first"] >= a.took >= 0.05 and timer.times["rest"] >= b.took + c.took >= 0.12
    assert timer.times["first"] + timer.times["rest"] <= total
    assert all(type(m) is Sleep and "_stage_timing" not in vars(m) for m in (a, b, c))


def test_every_stage_of_the_fast_model_is_timed():
    """The fp32 fast path's mask head ends in its tail, not its forward: the span still closes,
    and the stages add up to at most the call."""
    from maskrcnn.model.detector import build_model
    from maskrcnn.model.fast_inference import prepare_for_inference
    from maskrcnn.evaluation.benchmark import our_stage_spans
    from maskrcnn.presets import apply_kwargs, get_preset

    torch.manual_seed(0)
    cfg = apply_kwargs(get_preset("maskrcnn_r18_fpn"), {"min_size": 128, "max_size": 160, "box_score_thresh": 0.0})
    model = prepare_for_inference(build_model(cfg), "fp32")
    assert model.roi_heads.mask_head.fast_tail is not None
    with torch.inference_mode(), StageTimer(our_stage_spans(model)) as timer:
        start = time.perf_counter()
        assert len(model.predict(torch.rand(3, 120, 150))[0]) > 0
        total = time.perf_counter() - start
    assert all(t > 0 for t in timer.times.values()), timer.times
    assert sum(timer.times.values()) <= total


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"),
                    reason="resident-set sampling needs /proc")
def test_peak_memory_sees_a_transient_allocation():
    with PeakMemory("cpu") as memory:
        big = torch.ones(50 * 2**20)  # 200 MB, written so the pages are resident
        time.sleep(0.02)
        del big
    assert 180 * 2**20 <= memory.peak <= 400 * 2**20


def test_runners_alternate_image_by_image():
    calls = []
    runners = [Runner(name, (lambda n: lambda img: calls.append((n, int(img))) or 1)(name)) for name in "ab"]
    run_benchmark(runners, [torch.tensor(0), torch.tensor(1)], repeats=2, warmup=0)
    assert calls == [("a", 0), ("b", 0), ("a", 1), ("b", 1)] * 2
    assert all(len(r.latencies) == 4 and r.detections == [1] * 4 for r in runners)

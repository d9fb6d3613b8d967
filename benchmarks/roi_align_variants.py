"""The package's RoIAlign implementations side by side, on the same FPN maps and RoIs in one run,
alternating call by call: which one wins which case (the docstring of maskrcnn/ops/poolers.py
quotes the result). Cases:

- inference fp32, NCHW maps (the model as built): torchvision per level on one thread, the same
  split across threads (`RoIPooler`), the row gather (`GatherRoIAlign`);
- inference bf16, channels-last maps (the bf16 fast path): torchvision on fp32 NCHW copies
  (`Fp32RoIPooler`) vs the row gather in bf16;
- training fp32 forward + backward: torchvision per level on one thread, threaded
  (`ThreadedRoIAlign`, the model as built), the sparse product (`SparseRoIAlign`, channels-last).
Every variant's output is checked against torchvision's per-level result first.

    nice -n 19 python benchmarks/roi_align_variants.py [--smoke] [--out benchmarks/results/roi_align_variants]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from maskrcnn.ops import poolers  # noqa: E402
from maskrcnn.ops.poolers import Fp32RoIPooler, GatherRoIAlign, RoIPooler, SparseRoIAlign  # noqa: E402


def pyramid(size: tuple[int, int], channels: int, gen) -> list[torch.Tensor]:
    """P2..P5 maps (1, C, H / s, W / s) for an image of `size`."""
    return [torch.randn(1, channels, size[0] // s, size[1] // s, generator=gen) for s in (4, 8, 16, 32)]


def boxes(n: int, size: tuple[int, int], gen) -> list[torch.Tensor]:
    """n boxes of every scale (8 .. 512 px sides) inside the image: every level gets RoIs."""
    h, w = size
    side = 2 ** (3 + 6 * torch.rand(n, 2, generator=gen))  # (n, 2) widths, heights
    x1 = torch.rand(n, generator=gen) * (w - side[:, 0]).clamp(min=1)
    y1 = torch.rand(n, generator=gen) * (h - side[:, 1]).clamp(min=1)
    return [torch.stack([x1, y1, x1 + side[:, 0], y1 + side[:, 1]], 1)]


def one_thread(pooler: RoIPooler) -> RoIPooler:
    """The built pooler with its thread split off: torchvision's kernel once per level."""

    class Single(type(pooler)):
        def forward(self, *args):
            saved = poolers.MIN_ROIS_PER_THREAD
            poolers.MIN_ROIS_PER_THREAD = 1 << 30
            try:
                return super().forward(*args)
            finally:
                poolers.MIN_ROIS_PER_THREAD = saved

    return pooler.as_variant(Single)


def timed(runs: dict, repeats: int) -> dict[str, float]:
    """Median milliseconds of each callable, the callables alternating call by call."""
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            start = time.perf_counter()
            fn()
            times[name].append(1000 * (time.perf_counter() - start))
    return {name: round(statistics.median(t), 2) for name, t in times.items()}


def tolerance(maps: list[torch.Tensor]) -> float:
    """Variants compute sampling positions in another order: fp32 rounding of a coordinate up to
    the largest map side moves a bilinear weight by side * eps, times the largest step between
    neighbouring values (2 max|map|), for each of the 4 taps."""
    side = max(max(m.shape[-2:]) for m in maps)
    return 4 * side * torch.finfo(torch.float32).eps * 2 * max(float(m.abs().max()) for m in maps)


def inference_cases(maps, rois, repeats):
    built = RoIPooler(2, aligned=False)
    variants = {"torchvision, 1 thread": one_thread(built), "torchvision, threaded": built,
                "gather": built.as_variant(GatherRoIAlign)}  # fmt: skip
    reference = variants["torchvision, 1 thread"](maps, rois, 7)
    for name, pooler in variants.items():
        torch.testing.assert_close(pooler(maps, rois, 7), reference, rtol=0, atol=tolerance(maps), msg=name)
    with torch.inference_mode():
        fp32 = timed({name: lambda p=p: p(maps, rois, 7) for name, p in variants.items()}, repeats)
        bf16_maps = [m.to(torch.bfloat16, memory_format=torch.channels_last) for m in maps]
        bf16 = timed({"torchvision on fp32 NCHW copies": lambda: built.as_variant(Fp32RoIPooler)(bf16_maps, rois, 7),
                      "gather (bf16)": lambda: variants["gather"](bf16_maps, rois, 7)}, repeats)  # fmt: skip
    return {"inference fp32": fp32, "inference bf16": bf16}


def training_case(maps, rois, repeats):
    built = RoIPooler(2, aligned=False)
    variants = {"torchvision, 1 thread": (one_thread(built), torch.contiguous_format),
                "threaded (built)": (built, torch.contiguous_format),
                "sparse": (built.as_variant(SparseRoIAlign), torch.channels_last)}  # fmt: skip
    grad = torch.randn(len(rois[0]), maps[0].shape[1], 7, 7, generator=torch.Generator().manual_seed(1))
    inputs = {name: [m.clone(memory_format=layout).requires_grad_() for m in maps] for name, (_, layout) in variants.items()}

    def step(name):
        out = variants[name][0](inputs[name], rois, 7)
        out.backward(grad)
        return out

    ref = step("torchvision, 1 thread")
    truth = _float64_grads(variants["torchvision, 1 thread"][0], maps, rois, grad)
    # a gradient sums many RoIs' bins in fp32 in some order: each variant is judged against
    # float64, no further from it than twice torchvision's own fp32 result (floor: fp32 eps)
    floor = torch.finfo(torch.float32).eps * max(float(t.abs().max()) for t in truth)
    their_err = _grad_error(inputs["torchvision, 1 thread"], truth)
    for name in variants:
        for m in inputs[name]:
            m.grad = None
        torch.testing.assert_close(step(name), ref, rtol=0, atol=tolerance(maps), msg=name)
        err = _grad_error(inputs[name], truth)
        assert err <= 2 * their_err + floor, f"{name}: gradient error {err:.3g} > 2 x {their_err:.3g} + {floor:.3g}"
    return {"training fp32 forward + backward": timed({name: lambda n=name: step(n) for name in variants}, repeats)}


def _float64_grads(pooler, maps, rois, grad) -> list[torch.Tensor]:
    """The maps' gradients computed in float64 by torchvision's kernel: the referee."""
    maps64 = [m.detach().double().requires_grad_() for m in maps]
    pooler(maps64, [r.double() for r in rois], 7).backward(grad.double())
    return [_grad(m) for m in maps64]


def _grad_error(inputs, truth) -> float:
    return max(float((_grad(m).double() - t).abs().max()) for m, t in zip(inputs, truth))


def _grad(m: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(m) if m.grad is None else m.grad


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a small image, few RoIs, 2 repeats")
    parser.add_argument("--repeats", type=int, default=15, help="timed calls per variant (full run)")
    parser.add_argument("--out", default=None, help="write <out>.json")
    args = parser.parse_args(argv)
    gen = torch.Generator().manual_seed(0)
    size, channels, n_infer, n_train, repeats = ((128, 160), 16, 40, 64, 2) if args.smoke else \
        ((800, 1088), 256, 1000, 1024, args.repeats)  # fmt: skip
    maps = pyramid(size, channels, gen)
    report = {"threads": torch.get_num_threads(), "image": list(size), "channels": channels,
              "rois": {"inference": n_infer, "training": n_train}, "median_ms": {}}  # fmt: skip
    report["median_ms"].update(inference_cases(maps, boxes(n_infer, size, gen), repeats))
    report["median_ms"].update(training_case(maps, boxes(n_train, size, gen), repeats))
    print(json.dumps(report, indent=1))
    if args.out:
        Path(f"{args.out}.json").write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

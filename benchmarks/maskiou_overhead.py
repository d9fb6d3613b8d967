"""What the MaskIoU head adds to inference time: one model, one set of weights, the same images,
with `model.maskiou.enabled` switched off and on between interleaved runs.

The box score threshold is 0, so every image yields `detections_per_img` (100) detections: the
head's worst case, as the mask and MaskIoU heads both run once per detection.

    .venv/bin/python benchmarks/maskiou_overhead.py                      # msrcnn_r50_fpn, 800 px
    .venv/bin/python benchmarks/maskiou_overhead.py --preset maskrcnn_r18_fpn \
        --weights runs/msrcnn_quality/run/model_final.pt --size 128     # the trained demo model
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch
from torch.utils.flop_counter import FlopCounterMode

from maskrcnn import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="msrcnn_r50_fpn")
    parser.add_argument("--weights", default=None, help="default: seeded random weights")
    parser.add_argument("--size", type=int, default=800, help="short side; images are 4:3")
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the random-weights warning
        model = load_model(args.preset, weights=args.weights, box_score_thresh=0.0, min_size=args.size,
                           max_size=args.size * 2)  # fmt: skip
    if not model.cfg.model.maskiou.enabled:
        raise SystemExit(f"{args.preset}: the weights have no MaskIoU head")
    gen = torch.Generator().manual_seed(0)
    images = [torch.rand(3, args.size, args.size * 4 // 3, generator=gen) for _ in range(args.images)]
    head_seconds = []
    model.roi_heads.maskiou_head.register_forward_pre_hook(lambda *_: head_seconds.append(-time.perf_counter()))
    model.roi_heads.maskiou_head.register_forward_hook(lambda *_: head_seconds.append(time.perf_counter()))
    model.predict(images[0])  # warm-up
    head_seconds.clear()
    times = {False: [], True: []}
    for _ in range(args.repeats):
        for enabled in (False, True):
            model.cfg.model.maskiou.enabled = enabled  # the one field; weights stay loaded
            for image in images:
                start = time.perf_counter()
                detections = len(model.predict(image)[0])
                times[enabled].append(time.perf_counter() - start)
    off, on = statistics.median(times[False]), statistics.median(times[True])
    head = statistics.median(a + b for a, b in zip(head_seconds[::2], head_seconds[1::2]))
    print(f"{args.preset} ({args.weights or 'random weights'}), {args.size}x{args.size * 4 // 3} px, "
          f"{detections} detections/image, {torch.get_num_threads()} threads, "
          f"median of {len(times[True])} images")  # fmt: skip
    print(f"  head off: {off * 1000:.0f} ms   head on: {on * 1000:.0f} ms   "
          f"overhead {100 * (on - off) / off:+.1f}%")
    print(f"  MaskIoU head alone: {head * 1000:.0f} ms = {100 * head / off:.1f}% of the time without it")
    flops = {}
    for enabled in (False, True):  # load-independent: the arithmetic each variant does
        model.cfg.model.maskiou.enabled = enabled
        with FlopCounterMode(display=False) as counter:
            model.predict(images[0])
        flops[enabled] = counter.get_total_flops()
    print(f"  FLOPs (convs and matmuls): head off {flops[False] / 1e9:.1f} G, head on {flops[True] / 1e9:.1f} G, "
          f"+{100 * (flops[True] - flops[False]) / flops[False]:.1f}%")


if __name__ == "__main__":
    main()

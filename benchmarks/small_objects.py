"""What makes objects under 96 px detectable: anchor coverage and RPN sampling, without training.

The RPN can only propose an object that some anchor overlaps: an object whose best anchor has IoU
< 0.7 (rpn.fg_iou_thresh) gets a positive anchor only through the "best anchor of each object"
rule, and under 0.3 not even a useful one. For each input size S, smallest anchor s0 (the FPN's
five levels get s0 x 1, 2, 4, 8, 16) and with or without the stride-4 P2 level, this measures on
a training set, at the model's resize and anchor positions (`maskrcnn.model.rpn.AnchorGenerator`):
- objects under 16 px after the resize (too small for the stride-4 map's 3x3 RPN convolutions);
- the share of objects whose best anchor has IoU >= 0.7 / >= 0.5;
- the median over images of positive anchors per object in one RPN sample (256 anchors per image
  with at most half positive: images with many objects get under one positive sample per object
  per step, whatever the anchors).
It also prints the size and anchors `auto` chooses. Usage:
    python benchmarks/small_objects.py [--data ANN.json --images DIR] [--out benchmarks/results/small_objects.md]
Without --data: the DSB2018 nuclei training split of benchmarks/finetune_datasets.py and Penn-Fudan's.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from torchvision.ops import box_iou

REPO = Path(__file__).resolve().parents[1]
SIZES = (256, 384, 512, 800)
BASES = (8, 16, 32)
STRIDES = (4, 8, 16, 32, 64)


def anchors_for(size_hw: tuple[int, int], base: int, p2: bool) -> torch.Tensor:
    """(A, 4) anchors of an image padded to a multiple of 32, all levels (P2 dropped if not p2)."""
    from maskrcnn.config import AnchorConfig
    from maskrcnn.model.rpn import AnchorGenerator

    h, w = (-(-s // 32) * 32 for s in size_hw)
    generator = AnchorGenerator(AnchorConfig(sizes=tuple(base * 2**k for k in range(5))))
    features = [torch.empty(1, 1, -(-h // s), -(-w // s)) for s in STRIDES]
    levels = generator((h, w), features)
    return torch.cat(levels if p2 else levels[1:])


def measure(dataset, size: int, base: int, p2: bool, max_size: int) -> dict:
    from maskrcnn.model.detector import resized_size

    best, tiny, per_object = [], 0, []
    for record in dataset.images:
        anns = dataset._anns[record["id"]]
        if not anns:
            continue
        h, w = record["height"], record["width"]
        nh, nw = resized_size(h, w, size, max_size)
        boxes = torch.tensor([a["bbox_xyxy"] for a in anns], dtype=torch.float32) * torch.tensor(
            [nw / w, nh / h, nw / w, nh / h])
        sides = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).sqrt()
        tiny += int((sides < 16).sum())
        iou = box_iou(boxes, anchors_for((nh, nw), base, p2))  # (N, A)
        best.append(iou.max(dim=1).values)
        positives = int((iou.max(dim=0).values >= 0.7).sum()) + len(anns)  # + each object's best
        per_object.append(min(positives, 128) / len(anns))
    best = torch.cat(best)
    return {"tiny": 100 * tiny / len(best), "iou70": 100 * float((best >= 0.7).float().mean()),
            "iou50": 100 * float((best >= 0.5).float().mean()), "pos_per_object": float(np.median(per_object))}


def report(name: str, dataset) -> list[str]:
    from maskrcnn.config import Config
    from maskrcnn.training.auto_size import resolve_auto_sizes

    cfg = Config()
    cfg.input.min_size = cfg.model.anchors.sizes = "auto"
    chosen = []
    resolve_auto_sizes(cfg, dataset, say=chosen.append)
    lines = [f"### {name}", "", *[f"- {c}" for c in chosen], "",
             "| input S | smallest anchor | P2 | objects < 16 px | best anchor IoU >= 0.7 | >= 0.5 | "
             "sampled positives per object |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for size in SIZES:
        for base in BASES:
            for p2 in (True, False) if base == 32 else (True,):
                m = measure(dataset, size, base, p2, round(size * 1333 / 800))
                lines.append(f"| {size} | {base} | {'yes' if p2 else 'no'} | {m['tiny']:.0f}% | {m['iou70']:.0f}% | "
                             f"{m['iou50']:.0f}% | {m['pos_per_object']:.2f} |")  # fmt: skip
        print("\n".join(lines[-4:]), flush=True)
    return lines + [""]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="COCO json (default: nuclei and Penn-Fudan training splits)")
    parser.add_argument("--images", help="its image folder")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "small_objects.md"))
    args = parser.parse_args()
    from maskrcnn.data.coco import CocoDataset

    if args.data:
        sets = {Path(args.data).name: CocoDataset(args.data, args.images, check_files=False)}
    else:
        sys.path.insert(0, str(REPO / "benchmarks"))
        from finetune_datasets import SHARED, write_splits

        work = REPO / "runs" / "small_objects"
        sets = {}
        for name in ("nuclei", "pennfudan"):
            root = (SHARED / ("dsb2018_nuclei" if name == "nuclei" else name)).resolve()
            train, _ = write_splits(name, root, work)
            sets[f"{name} (training split)"] = CocoDataset(train, root, check_files=False)
    lines = []
    for name, dataset in sets.items():
        lines += report(name, dataset)
    Path(args.out).write_text("\n".join(lines))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

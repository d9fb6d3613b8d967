"""Inference latency of ours vs torchvision's Mask R-CNN R50-FPN: same weights, same images, one run.

Penn-Fudan images are resized by both models to 800 px (short side); box_score_thresh=0 so that
100 detections reach the mask head. Runs alternate between the two models to share any drift of
the machine. Usage: python benchmarks/infer_vs_torchvision.py [--images N] [--repeats R] [--v2]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from torch import nn
from torchvision.models import detection as tvdet
from torchvision.ops import FrozenBatchNorm2d

from maskrcnn.convert.torchvision import convert_torchvision
from maskrcnn.data.images import read_image
from maskrcnn.model.detector import build_model
from maskrcnn.weights import load_state
from maskrcnn.zoo import apply_kwargs, get_preset

PENNFUDAN = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "pennfudan" / "PNGImages"


def frozen_trunk(model: nn.Module, eps: float) -> nn.Module:
    """torchvision runs trained weights with FrozenBatchNorm2d in the trunk; do the same here."""
    body = model.backbone.body
    for name, module in list(body.named_modules()):
        if isinstance(module, nn.BatchNorm2d):
            parent = body.get_submodule(name.rpartition(".")[0]) if "." in name else body
            setattr(parent, name.rpartition(".")[2], FrozenBatchNorm2d(module.num_features, eps=eps))
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--v2", action="store_true", help="compare the v2 models instead of v1")
    args = parser.parse_args()

    torch.manual_seed(0)
    if args.v2:
        ref = frozen_trunk(tvdet.maskrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None, box_score_thresh=0.0), 1e-5)
        cfg = get_preset("maskrcnn_r50_fpn_v2")
    else:
        ref = frozen_trunk(tvdet.maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, box_score_thresh=0.0), 0.0)
        cfg = get_preset("maskrcnn_r50_fpn")
    ref.eval()
    ours = build_model(apply_kwargs(cfg, {"box_score_thresh": 0.0})).eval()
    load_state(ours, convert_torchvision(ref.state_dict()), source="torchvision")

    paths = sorted(PENNFUDAN.glob("*.png"))[: args.images]
    images = [read_image(p) for p in paths]
    times = {"torchvision": [], "maskrcnn": []}
    with torch.inference_mode():
        ref([images[0]]), ours([images[0]])  # warm-up
        for _ in range(args.repeats):
            for image in images:
                for name, model in (("torchvision", ref), ("maskrcnn", ours)):
                    start = time.perf_counter()
                    out = model([image])
                    times[name].append(time.perf_counter() - start)
                    n = len(out[0]["boxes"]) if isinstance(out[0], dict) else len(out[0])
                    assert n == 100, f"{name}: {n} detections, expected 100"

    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{len(images)} Penn-Fudan images at 800 px x {args.repeats} repeats, 100 detections each")
    for name, value in med.items():
        print(f"  {name:12s} median {value * 1000:8.1f} ms  (min {min(times[name]) * 1000:.1f})")
    print(f"  ratio maskrcnn / torchvision = {med['maskrcnn'] / med['torchvision']:.3f}")


if __name__ == "__main__":
    main()

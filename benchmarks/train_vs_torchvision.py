"""Training speed of ours vs torchvision's Mask R-CNN R50-FPN: same weights, images, targets, batch.

Both models get the same weights (torchvision's trunk with FrozenBatchNorm, as when it fine-tunes
from ImageNet weights), the same Penn-Fudan images and targets, batch 2, SGD; iterations alternate
between the two models. Usage: python benchmarks/train_vs_torchvision.py [--iters N] [--size 512]
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
from maskrcnn.data import InstanceIdPngDataset
from maskrcnn.model.detector import build_model
from maskrcnn.weights import load_state
from maskrcnn.zoo import apply_kwargs, get_preset

PENNFUDAN = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "pennfudan"


def frozen_trunk(model: nn.Module, eps: float) -> nn.Module:
    """torchvision fine-tunes from ImageNet weights with FrozenBatchNorm2d in the trunk."""
    body = model.backbone.body
    for name, module in list(body.named_modules()):
        if isinstance(module, nn.BatchNorm2d):
            parent = body.get_submodule(name.rpartition(".")[0]) if "." in name else body
            setattr(parent, name.rpartition(".")[2], FrozenBatchNorm2d(module.num_features, eps=eps))
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=6)
    parser.add_argument("--size", type=int, default=512, help="short side of the training images")
    args = parser.parse_args()

    size = {"min_size": args.size, "max_size": int(args.size * 1333 / 800), "num_classes": 2}
    torch.manual_seed(0)
    ref = frozen_trunk(tvdet.maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, **size), 0.0)
    # torchvision fine-tunes with conv1 + layer1 frozen (trainable_backbone_layers=3)
    for name, p in ref.backbone.body.named_parameters():
        if name.startswith(("conv1", "layer1")):
            p.requires_grad_(False)
    ours = build_model(apply_kwargs(get_preset("maskrcnn_r50_fpn"), size))
    load_state(ours, convert_torchvision(ref.state_dict()), source="torchvision")

    data = InstanceIdPngDataset(PENNFUDAN)
    samples = [data[i] for i in range(2 * args.iters)]
    models = {"torchvision": ref.train(), "maskrcnn": ours.train()}
    optims = {k: torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=1e-3, momentum=0.9)
              for k, m in models.items()}
    times = {k: [] for k in models}
    cpu = {k: [] for k in models}  # process CPU time: less sensitive to other load on the machine
    for it in range(args.iters + 1):  # the first iteration is warm-up
        batch = samples[2 * (it % args.iters): 2 * (it % args.iters) + 2]
        for name, model in models.items():
            images = [s[0] for s in batch]
            targets = [{k: s[1][k] for k in ("boxes", "labels", "masks")} for s in batch]
            torch.manual_seed(it)
            start, start_cpu = time.perf_counter(), time.process_time()
            loss = sum(model(images, targets).values())
            optims[name].zero_grad()
            loss.backward()
            optims[name].step()
            if it:
                times[name].append(time.perf_counter() - start)
                cpu[name].append(time.process_time() - start_cpu)

    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, R50-FPN, batch 2, "
          f"Penn-Fudan at {args.size} px, {args.iters} timed iterations each")
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    for name, value in med.items():
        print(f"  {name:12s} median {value:6.2f} s/iter = {1 / value:.3f} iter/s  (CPU {med_cpu[name]:.2f} s/iter)")
    print(f"  speed ratio maskrcnn / torchvision (iter/s) = {med['torchvision'] / med['maskrcnn']:.3f}"
          f"  (by CPU time {med_cpu['torchvision'] / med_cpu['maskrcnn']:.3f})")


if __name__ == "__main__":
    main()

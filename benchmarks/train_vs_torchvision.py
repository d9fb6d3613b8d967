"""Training speed of ours vs torchvision's Mask R-CNN R50-FPN: same weights, images, targets, batch.

Both models get the same weights (torchvision's trunk with FrozenBatchNorm, as when it fine-tunes
from ImageNet weights), the same Penn-Fudan images and targets, batch 2, SGD; steps alternate
between the two models, so both see the same machine load. Ours runs the trainer's own step
(`Trainer.run_step`) in `--mode exact` (fp32, torchvision's losses) or `--mode fast`
(solver.fast=true). The last line is `speedup: X.XX` (torchvision's median wall time per step
over ours) with the same ratio of CPU time beside it.
Usage: python benchmarks/train_vs_torchvision.py --mode exact|fast [--iters N] [--size 512] [--threads T]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch
from torch import nn
from torchvision.models import detection as tvdet
from torchvision.ops import FrozenBatchNorm2d

from maskrcnn.config import apply_overrides
from maskrcnn.weights.formats.torchvision import convert_torchvision
from maskrcnn.data import InstanceIdPngDataset
from maskrcnn.training.trainer import build_trainer
from maskrcnn.model.detector import build_model
from maskrcnn.weights import load_state
from maskrcnn.presets import apply_kwargs, get_preset

PENNFUDAN = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "pennfudan"


def frozen_trunk(model: nn.Module, eps: float) -> nn.Module:
    """torchvision fine-tunes from ImageNet weights with FrozenBatchNorm2d in the trunk."""
    body = model.backbone.body
    for name, module in list(body.named_modules()):
        if isinstance(module, nn.BatchNorm2d):
            parent = body.get_submodule(name.rpartition(".")[0]) if "." in name else body
            setattr(parent, name.rpartition(".")[2], FrozenBatchNorm2d(module.num_features, eps=eps))
    return model


def calibrate_frozen_norms(model: nn.Module, image: torch.Tensor) -> None:
    """Set each FrozenBatchNorm2d's statistics to those of its input on `image`, as trained
    statistics would be: activations stay normalised through the random trunk (with the default
    statistics they grow by orders of magnitude and SGD diverges in the first steps)."""

    def record(norm, args):
        x = args[0]
        norm.running_mean.copy_(x.mean(dim=(0, 2, 3)))
        norm.running_var.copy_(x.var(dim=(0, 2, 3)).clamp(min=1e-5))

    norms = [m for m in model.backbone.body.modules() if isinstance(m, FrozenBatchNorm2d)]
    handles = [norm.register_forward_pre_hook(record) for norm in norms]
    with torch.no_grad():
        model.backbone.body(model.transform([image])[0].tensors)
    for handle in handles:
        handle.remove()


def build_pair(size: int, mode: str):
    """(torchvision model, its SGD, our Trainer) with the same weights and optimiser settings."""
    kwargs = {"min_size": size, "max_size": int(size * 1333 / 800), "num_classes": 2}
    torch.manual_seed(0)
    ref = frozen_trunk(tvdet.maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, **kwargs), 0.0)
    # torchvision fine-tunes with conv1 + layer1 frozen (trainable_backbone_layers=3)
    for name, p in ref.backbone.body.named_parameters():
        if name.startswith(("conv1", "layer1")):
            p.requires_grad_(False)
    calibrate_frozen_norms(ref.eval(), InstanceIdPngDataset(PENNFUDAN)[0][0])
    cfg = apply_kwargs(get_preset("maskrcnn_r50_fpn"), kwargs)
    apply_overrides(cfg, ["solver.base_lr=0.001", "solver.momentum=0.9", "solver.weight_decay=0",
                          "solver.warmup_iters=0", "solver.ims_per_batch=2", f"solver.fast={mode == 'fast'}"])
    ours = build_model(cfg)
    load_state(ours, convert_torchvision(ref.state_dict()), source="torchvision")
    trainer = build_trainer(cfg, ours, torch.device("cpu"))
    trainer.model.train()
    ref_opt = torch.optim.SGD([p for p in ref.parameters() if p.requires_grad], lr=1e-3, momentum=0.9)
    return ref.train(), ref_opt, trainer


def pennfudan_batches(count: int) -> list:
    data = InstanceIdPngDataset(PENNFUDAN)
    samples = [data[i] for i in range(2 * count)]
    return [([s[0] for s in samples[i:i + 2]],
             [{k: s[1][k] for k in ("boxes", "labels", "masks")} for s in samples[i:i + 2]])
            for i in range(0, len(samples), 2)]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("exact", "fast"), default="exact")
    parser.add_argument("--iters", type=int, default=6, help="timed steps per model (after one warm-up)")
    parser.add_argument("--size", type=int, default=512, help="short side of the training images")
    parser.add_argument("--threads", type=int, default=None,
                        help="intra-op threads (default: torch's); 1 measures compute alone on a loaded machine")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    ref, ref_opt, trainer = build_pair(args.size, args.mode)
    batches = pennfudan_batches(args.iters)

    def torchvision_step(images, targets):
        loss = sum(ref(images, targets).values())
        ref_opt.zero_grad()
        loss.backward()
        ref_opt.step()

    steps = {"torchvision": torchvision_step, "maskrcnn": trainer.run_step}
    times = {k: [] for k in steps}
    cpu = {k: [] for k in steps}  # process CPU time: less sensitive to other load on the machine
    load = os.getloadavg()[0]
    for it in range(args.iters + 1):  # the first step is warm-up
        images, targets = batches[it % args.iters]
        for name, step in steps.items():
            torch.manual_seed(it)  # same training sizes and sampling draws for both
            start, start_cpu = time.perf_counter(), time.process_time()
            step(images, [dict(t) for t in targets])
            if it:
                times[name].append(time.perf_counter() - start)
                cpu[name].append(time.process_time() - start_cpu)

    med = {k: statistics.median(v) for k, v in times.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, R50-FPN, batch 2, Penn-Fudan at "
          f"{args.size} px, mode {args.mode}, {args.iters} timed steps each, load average "
          f"{load:.2f} -> {os.getloadavg()[0]:.2f}")
    for name, value in med.items():
        print(f"  {name:12s} median {value:6.2f} s/step  (CPU {med_cpu[name]:.2f} s/step)")
    print(f"speedup: {med['torchvision'] / med['maskrcnn']:.2f}  "
          f"(CPU time: {med_cpu['torchvision'] / med_cpu['maskrcnn']:.2f})")


if __name__ == "__main__":
    main()

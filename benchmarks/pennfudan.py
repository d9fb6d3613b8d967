"""Penn-Fudan from scratch: ours vs torchvision's reference recipe, same wall-clock budget each.

Fixed split: the first 120 images (sorted names) train, the last 50 validate. Both models are
R50-FPN built without pretrained weights (trainable BatchNorm trunk, as torchvision builds it for
weights=None) and trained with torchvision's reference recipe (SGD 0.9, weight decay 1e-4,
lr 0.02 x batch / 16 with linear warm-up, horizontal flips), batch 2. Steps alternate between
the two models and each accumulates its own step time until the budget, so load on the machine
affects both alike. Then COCO box and mask AP of both on the 50 validation images.
Usage: python benchmarks/pennfudan.py [--minutes 10] [--size 512]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from torchvision.models import detection as tvdet

from maskrcnn.data import InstanceIdPngDataset, RandomHorizontalFlip, to_coco
from maskrcnn.evaluation.evaluator import evaluate_results, instances_to_results
from maskrcnn.model.detector import build_model
from maskrcnn.structures import Instances
from maskrcnn.presets import apply_kwargs, get_preset

PENNFUDAN = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "pennfudan"


def build_models(size: int):
    kw = {"min_size": size, "max_size": int(size * 1333 / 800), "num_classes": 2}
    torch.manual_seed(0)
    ref = tvdet.maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, **kw)
    cfg = apply_kwargs(get_preset("maskrcnn_r50_fpn"), kw)
    cfg.model.backbone.norm, cfg.model.backbone.freeze_at = "bn", 0
    torch.manual_seed(0)
    return {"torchvision": ref, "maskrcnn": build_model(cfg)}


def lr_at(step: int, base: float, warmup: int = 200) -> float:
    return base * (0.001 + (1 - 0.001) * step / warmup) if step < warmup else base


def train_both(models, data, seconds: float) -> dict:
    flip = RandomHorizontalFlip(0.5)
    opts = {k: torch.optim.SGD(m.parameters(), lr=0.0, momentum=0.9, weight_decay=1e-4)
            for k, m in models.items()}
    spent, steps = {k: 0.0 for k in models}, {k: 0 for k in models}
    gen = torch.Generator().manual_seed(0)
    while min(spent.values()) < seconds:
        idx = torch.randint(len(data), (2,), generator=gen).tolist()
        batch = [flip(*data[i]) for i in idx]
        images = [b[0] for b in batch]
        targets = [{k: b[1][k] for k in ("boxes", "labels", "masks")} for b in batch]
        for name, model in models.items():
            if spent[name] >= seconds:
                continue
            start = time.perf_counter()
            for group in opts[name].param_groups:
                group["lr"] = lr_at(steps[name], 0.02 * 2 / 16)
            loss = sum(model.train()(images, [dict(t) for t in targets]).values())
            opts[name].zero_grad()
            loss.backward()
            opts[name].step()
            spent[name] += time.perf_counter() - start
            steps[name] += 1
    return steps


@torch.inference_mode()
def evaluate(models, val, ann_file) -> dict:
    out = {}
    for name, model in models.items():
        model.eval()
        results = []
        for index in range(len(val)):
            image = val[index][0]
            det = model([image])[0]
            if name == "torchvision":
                det = Instances(image.shape[-2:], boxes=det["boxes"], scores=det["scores"],
                                labels=det["labels"], masks=det["masks"][:, 0] > 0.5)
            results += instances_to_results(det, index + 1, (0, 1))
        out[name] = evaluate_results(results, ann_file, tasks=["bbox", "segm"]) if results else {}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="training budget per model")
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()

    full = InstanceIdPngDataset(PENNFUDAN)
    train, val = InstanceIdPngDataset(PENNFUDAN), InstanceIdPngDataset(PENNFUDAN)
    train.items, val.items = full.items[:120], full.items[120:]
    with tempfile.TemporaryDirectory() as tmp:
        ann_file = Path(tmp) / "val.json"
        ann_file.write_text(json.dumps(to_coco(val)))
        models = build_models(args.size)
        steps = train_both(models, train, args.minutes * 60)
        metrics = evaluate(models, val, ann_file)
    print(f"Penn-Fudan 120 train / 50 val, {args.size} px, {args.minutes:g} min of training each")
    for name in models:
        m = metrics[name]
        print(f"  {name:12s} {steps[name]:5d} iterations  box AP {m.get('bbox/AP', 0) * 100:5.1f}"
              f"  mask AP {m.get('segm/AP', 0) * 100:5.1f}")


if __name__ == "__main__":
    main()

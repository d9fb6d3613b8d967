"""detectron2's own Mask R-CNN vs this package loading the same model-zoo-layout file (issue 31).

detectron2's Python source (no C++ extension: its R-CNN layers use torchvision's ops) builds the
model of configs/COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml with seeded random weights,
made trained-like on the first image: every FrozenBatchNorm takes the mean and variance of its
input (so activations keep unit scale through the trunk) and the last layer of each head is
rescaled to a set logit spread (objectness, classes, deltas, mask logits), so there are many
confident detections with sharp masks. Then the last layer of each head is rescaled once more so
that its spread holds on ALL the compared images (resized as DefaultPredictor does): the largest
over images of its output's standard deviation becomes the set spread, and the RPN objectness is
scaled further if needed so that its largest logit on any image stays below LOGIT_BOUND (12:
sigmoid = 1 - 6e-6, distinct in fp32), as in benchmarks/vs_mmdetection.py, which imports the
shared pieces from here. Per image, the results record the largest RPN logit, the anchors whose
fp32 sigmoid is exactly 1.0, and the kept candidates (top NMS_PRE per level) that share their fp32
score with another (detectron2 ranks by the logit itself; this package by the sigmoid). The weights
are saved as a model-zoo .pkl
({"model": {name: ndarray}, "__author__": ...}). Then, on each raw Penn-Fudan image (uint8),
detectron2's DefaultPredictor (its ResizeShortestEdge with Pillow, its postprocess and paste)
and `load_model(..., weights=that .pkl)` + `predict` each give their detections, compared:
- twins: same class, every box coordinate within 1 px, one-to-one (closest first);
- of the detections above the 20th score percentile (pooled over images), the share with a twin,
  both ways; among twins, the share whose boxes agree within 0.05 px, the largest score gap,
  and the mask IoU pooled over all twin pairs (sum of intersections / sum of unions).

Needs detectron2's source tree (git clone; nothing to build) and its pure-Python dependencies
(fvcore, iopath, omegaconf, hydra-core, pycocotools; a separate venv is fine, with this package
and torch importable).
Usage: python benchmarks/vs_detectron2.py --detectron2 /path/to/detectron2 [--images 20]
       [--detectron2-commit SHA] [--precision none|fp32] [--seed 0]
       [--out benchmarks/results/vs_detectron2.json]   (also writes the .md beside it)
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from maskrcnn.fileio import write_text_atomic

ROOT = Path(__file__).resolve().parents[1]
PENNFUDAN = ROOT / ".." / "shared" / "data" / "pennfudan" / "PNGImages"
D2_CONFIG = "configs/COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml"
# last layer of a head -> (standard deviation of its outputs, offset added) on the first image
HEAD_SPREAD = {
    "proposal_generator.rpn_head.objectness_logits": (2.0, -1.0),
    "proposal_generator.rpn_head.anchor_deltas": (0.2, 0.0),
    "roi_heads.box_predictor.cls_score": (2.5, 0.0),
    "roi_heads.box_predictor.bbox_pred": (1.0, 0.0),
    "roi_heads.mask_head.predictor": (4.0, 0.0),
}
RPN_CLS = "proposal_generator.rpn_head.objectness_logits"
LOGIT_BOUND = 12.0  # the largest RPN objectness logit on any compared image stays below this
NMS_PRE = 1000  # candidates detectron2's RPN keeps per level (RPN.PRE_NMS_TOPK_TEST)
TWIN_PX = 1.0  # a twin's box coordinates all lie within this many pixels
CLOSE_PX = 0.05


def d2_cfg(detectron2: Path, weights: str = ""):
    from detectron2.config import get_cfg

    cfg = get_cfg()
    cfg.merge_from_file(str(detectron2 / D2_CONFIG))
    cfg.MODEL.DEVICE, cfg.MODEL.WEIGHTS = "cpu", weights
    return cfg


@torch.no_grad()
def trained_like_pkl(detectron2: Path, images: list[np.ndarray], path: Path, seed: int) -> dict:
    """detectron2's model with seeded weights made trained-like on `images` (BGR uint8; calibrated
    on the first, then head spreads held on all), saved as a model-zoo .pkl; returns the per-image
    output statistics the second step measured ({layer: [(std, max), ...]})."""
    import detectron2.data.transforms as T
    from detectron2.layers import FrozenBatchNorm2d
    from detectron2.modeling import build_model

    torch.manual_seed(seed)
    model = build_model(d2_cfg(detectron2)).eval()
    hooks = []
    for module in model.modules():
        if isinstance(module, FrozenBatchNorm2d):
            module.weight.uniform_(0.5, 1.5)
            module.bias.normal_(0.0, 0.2)
            hooks.append(module.register_forward_pre_hook(_standardise))
    for name, (std, offset) in HEAD_SPREAD.items():
        hooks.append(model.get_submodule(name).register_forward_hook(_spread(std, offset)))
    image = images[0]
    tensor = torch.as_tensor(image.astype("float32").transpose(2, 0, 1))
    model([{"image": tensor, "height": image.shape[0], "width": image.shape[1]}])
    for hook in hooks:
        hook.remove()
    cfg = d2_cfg(detectron2)
    resize = T.ResizeShortestEdge([cfg.INPUT.MIN_SIZE_TEST] * 2, cfg.INPUT.MAX_SIZE_TEST)  # as DefaultPredictor

    def run(image):
        resized = resize.get_transform(image).apply_image(image)
        tensor = torch.as_tensor(resized.astype("float32").transpose(2, 0, 1))
        model([{"image": tensor, "height": image.shape[0], "width": image.shape[1]}])

    stats = head_stats(model, run, images, HEAD_SPREAD)
    hold_spreads(model, stats, HEAD_SPREAD, RPN_CLS)
    state = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    with open(path, "wb") as f:
        pickle.dump({"model": state, "__author__": "benchmarks/vs_detectron2.py (random, trained-like)"}, f)
    return stats


def head_stats(model, run, images: list, spread: dict) -> dict[str, list[tuple[float, float]]]:
    """Per image (each given to `run`), the standard deviation and largest value of each `spread`
    layer's outputs (the RPN's over all FPN levels of the image)."""
    outputs: dict[str, list[torch.Tensor]] = {name: [] for name in spread}
    hooks = [model.get_submodule(name).register_forward_hook(
        lambda module, inputs, output, name=name: outputs[name].append(output.detach().flatten()))
        for name in spread]  # fmt: skip
    stats: dict[str, list[tuple[float, float]]] = {name: [] for name in spread}
    for image in images:
        run(image)
        for name, parts in outputs.items():
            if parts:
                values = torch.cat(parts)
                stats[name].append((float(values.std()), float(values.max())))
            parts.clear()
    for hook in hooks:
        hook.remove()
    return stats


def hold_spreads(model, stats: dict, spread: dict, rpn_cls: str) -> None:
    """Rescales each `spread` layer about its offset so that the largest per-image std in `stats`
    becomes the set spread, and `rpn_cls` further so that its largest logit stays below LOGIT_BOUND."""
    for name, (std, offset) in spread.items():
        factor = std / max(s for s, _ in stats[name])
        if name == rpn_cls:
            peak = max(m for _, m in stats[name])  # after the rescale: offset + factor * (peak - offset)
            factor = min(factor, 0.99 * (LOGIT_BOUND - offset) / (peak - offset))
        layer = model.get_submodule(name)
        layer.weight.mul_(factor)
        layer.bias.sub_(offset).mul_(factor).add_(offset)


class RpnTies:
    """Forward hook on the RPN's objectness layer recording, per image, the largest objectness
    logit, the anchors whose fp32 sigmoid is exactly 1.0, and the kept candidates (top NMS_PRE per
    level, by fp32 sigmoid) whose score equals another kept one's."""

    def __init__(self) -> None:
        self.levels: list[torch.Tensor] = []
        self.per_image: list[dict] = []

    def __call__(self, module, inputs, output) -> None:
        self.levels.append(output.detach().flatten())

    def close_image(self, name: str) -> None:
        scores = [level.sigmoid() for level in self.levels]  # fp32
        kept = torch.cat([s.topk(min(NMS_PRE, s.numel())).values for s in scores])
        _, counts = kept.unique(return_counts=True)
        self.per_image.append({"image": name, "max_rpn_logit": round(max(float(lv.max()) for lv in self.levels), 3),
                               "anchors_sigmoid_1": int(sum(int((s == 1.0).sum()) for s in scores)),
                               "kept_candidates": int(kept.numel()),
                               "kept_tied_fp32": int(counts[counts > 1].sum())})  # fmt: skip
        self.levels.clear()


def calibration_summary(stats: dict) -> dict:
    """The RPN bound and per-layer spreads measured before the all-image step, for the results."""
    return {"rpn_logit_bound": LOGIT_BOUND,
            "head_spread_before_all_image_step": {name: {"std_max_over_images": round(max(s for s, _ in v), 4),
                                                         "max_over_images": round(max(m for _, m in v), 4)}
                                                  for name, v in stats.items() if v}}  # fmt: skip


def rpn_markdown(summary: dict) -> str:
    """The per-image RPN saturation record as a Markdown paragraph and table."""
    rows = summary["rpn_per_image"]
    lines = ["", f"RPN objectness per image (weights held below a logit of {summary['rpn_logit_bound']:g} on every "
             "image): largest logit, anchors whose fp32 sigmoid is exactly 1.0, and kept candidates (top "
             f"{NMS_PRE} per level) whose fp32 score equals another's.", "",
             "| image | max logit | sigmoid = 1.0 | kept tied / kept |", "|---|---|---|---|"]  # fmt: skip
    lines += [f"| {r['image']} | {r['max_rpn_logit']:.2f} | {r['anchors_sigmoid_1']} | "
              f"{r['kept_tied_fp32']} / {r['kept_candidates']} |" for r in rows]  # fmt: skip
    return "\n".join(lines) + "\n"


def _standardise(module, inputs):
    x = inputs[0]
    module.running_mean.copy_(x.mean((0, 2, 3)))
    module.running_var.copy_(x.var((0, 2, 3)))


def _spread(std: float, offset: float):
    done = []

    def hook(module, inputs, output):
        if done or output.numel() < 2:
            return None
        done.append(True)
        factor = std / float(output.std())
        module.weight.mul_(factor)
        module.bias.mul_(factor).add_(offset)
        return module(inputs[0])

    return hook


def d2_detections(predictor, image_bgr: np.ndarray) -> dict:
    out = predictor(image_bgr)["instances"]
    return {"boxes": out.pred_boxes.tensor.double(), "scores": out.scores.double(),
            "labels": out.pred_classes + 1, "masks": out.pred_masks}  # fmt: skip


def our_detections(model, image_rgb: np.ndarray) -> dict:
    out = model.predict(image_rgb)[0]
    return {"boxes": out.boxes.double(), "scores": out.scores.double(), "labels": out.labels, "masks": out.masks}


def match_twins(a: dict, b: dict, tol: float = TWIN_PX) -> list[tuple[int, int]]:
    """One-to-one pairs (i in a, j in b) of the same label whose box coordinates all lie within
    `tol` px, closest pairs first."""
    if len(a["boxes"]) == 0 or len(b["boxes"]) == 0:
        return []
    gap = (a["boxes"][:, None] - b["boxes"][None]).abs().amax(-1)  # (Na, Nb)
    gap[a["labels"][:, None] != b["labels"][None]] = float("inf")
    pairs, used_a, used_b = [], set(), set()
    for flat in torch.argsort(gap.flatten()).tolist():
        i, j = divmod(flat, gap.shape[1])
        if gap[i, j] > tol:
            break
        if i not in used_a and j not in used_b:
            pairs.append((i, j))
            used_a.add(i)
            used_b.add(j)
    return pairs


def compare(d2_runs: list[dict], our_runs: list[dict], percentile: float = 20.0, ref: str = "detectron2") -> dict:
    """Summary of twins over images: the numbers the issue asks for (`ref`: the framework whose
    detections `d2_runs` are, in the keys)."""
    cut_d2 = float(np.percentile(torch.cat([r["scores"] for r in d2_runs]).numpy(), percentile))
    cut_ours = float(np.percentile(torch.cat([r["scores"] for r in our_runs]).numpy(), percentile))
    above_d2 = above_ours = twins_d2 = twins_ours = 0
    gaps, score_gaps, inter, union = [], [], 0, 0
    for a, b in zip(d2_runs, our_runs):
        pairs = match_twins(a, b)
        paired_a, paired_b = {i for i, _ in pairs}, {j for _, j in pairs}
        above_a, above_b = torch.where(a["scores"] > cut_d2)[0].tolist(), torch.where(b["scores"] > cut_ours)[0].tolist()
        above_d2, above_ours = above_d2 + len(above_a), above_ours + len(above_b)
        twins_d2 += sum(i in paired_a for i in above_a)
        twins_ours += sum(j in paired_b for j in above_b)
        for i, j in pairs:
            gaps.append(float((a["boxes"][i] - b["boxes"][j]).abs().max()))
            score_gaps.append(float((a["scores"][i] - b["scores"][j]).abs()))
            ma, mb = a["masks"][i].bool(), b["masks"][j].bool()
            inter += int((ma & mb).sum())
            union += int((ma | mb).sum())
    gaps_t = torch.tensor(gaps or [float("nan")], dtype=torch.float64)
    scores_t = torch.tensor(score_gaps or [float("nan")], dtype=torch.float64)
    return {
        f"detections_{ref}": sum(len(r["scores"]) for r in d2_runs),
        "detections_ours": sum(len(r["scores"]) for r in our_runs),
        f"score_cut_p20_{ref}": cut_d2,
        f"above_p20_{ref}": above_d2,
        f"twins_above_p20_{ref}": twins_d2,
        f"twin_share_above_p20_{ref}": twins_d2 / max(above_d2, 1),
        "above_p20_ours": above_ours,
        "twins_above_p20_ours": twins_ours,
        "twin_share_above_p20_ours": twins_ours / max(above_ours, 1),
        "pairs": len(gaps),
        "pairs_within_0.05px": float((gaps_t <= CLOSE_PX).double().mean()),
        "box_gap_px_median": float(torch.quantile(gaps_t, 0.5)),
        "box_gap_px_p90": float(torch.quantile(gaps_t, 0.9)),
        "box_gap_px_max": float(gaps_t.max()),
        "score_gap_median": float(torch.quantile(scores_t, 0.5)),
        "score_gap_max": float(scores_t.max()),
        "pooled_mask_iou": inter / max(union, 1),
    }


def targets_met(summary: dict, ref: str = "detectron2") -> dict:
    """Issue 31's targets: every detection above the 20th score percentile has a twin (both
    ways), 90 % of twin boxes within 0.05 px, pooled mask IoU at least 0.98."""
    return {
        "all_above_p20_twinned": summary[f"twin_share_above_p20_{ref}"] == 1.0
        and summary["twin_share_above_p20_ours"] == 1.0,
        "boxes_within_0.05px_for_90pct": summary["pairs_within_0.05px"] >= 0.9,
        "pooled_mask_iou_at_least_0.98": summary["pooled_mask_iou"] >= 0.98,
    }


def markdown(summary: dict, ref: str = "detectron2") -> str:
    """The summary as a short Markdown report."""
    s, met = summary, summary["targets"]
    rows = [
        (f"detections above the 20th score percentile with a twin ({ref}'s)",
         f"{s[f'twins_above_p20_{ref}']} / {s[f'above_p20_{ref}']}", met["all_above_p20_twinned"]),
        ("the same, this package's detections", f"{s['twins_above_p20_ours']} / {s['above_p20_ours']}",
         met["all_above_p20_twinned"]),
        ("twin boxes within 0.05 px", f"{s['pairs_within_0.05px']:.1%} of {s['pairs']}",
         met["boxes_within_0.05px_for_90pct"]),
        ("box gap (largest coordinate), median / 90th pct / max",
         f"{s['box_gap_px_median']:.2e} / {s['box_gap_px_p90']:.2e} / {s['box_gap_px_max']:.2e} px", None),
        ("score gap, median / max", f"{s['score_gap_median']:.1e} / {s['score_gap_max']:.1e}", None),
        ("mask IoU pooled over twin pairs", f"{s['pooled_mask_iou']:.4f}", met["pooled_mask_iou_at_least_0.98"]),
    ]  # fmt: skip
    lines = [f"# {ref}'s own code vs this package, {s['images']} Penn-Fudan images (issue 31)", "",
             f"`{s['config']}`, seeded trained-like weights (seed {s['seed']}) saved in its model-zoo file layout; "
             f"this package at precision `{s['precision']}`. Detections: {ref} {s[f'detections_{ref}']}, "
             f"this package {s['detections_ours']}. Seconds: {ref} {s['seconds'][ref]}, "
             f"this package {s['seconds']['ours']}. {s['machine']}.", "",
             "| measure | value | target met |", "|---|---|---|"]  # fmt: skip
    lines += [f"| {name} | {value} | {'' if ok is None else ('yes' if ok else 'NO')} |" for name, value, ok in rows]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--detectron2", type=Path, required=True, help="detectron2 source tree (imported from here)")
    parser.add_argument("--detectron2-commit", default="unknown", help="recorded in the results (git rev-parse HEAD)")
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--data", type=Path, default=PENNFUDAN, help="folder of images (sorted; the first N)")
    parser.add_argument("--precision", choices=("none", "fp32"), default="none", help="our load_model precision")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/vs_detectron2"))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "vs_detectron2.json")
    args = parser.parse_args()
    sys.path.insert(0, str(args.detectron2.resolve()))
    from detectron2.engine import DefaultPredictor

    from maskrcnn import load_model

    files = sorted(p for p in args.data.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))[: args.images]
    images = [np.asarray(Image.open(p).convert("RGB")) for p in files]
    args.workdir.mkdir(parents=True, exist_ok=True)
    pkl = args.workdir / f"d2_r50_fpn_seed{args.seed}.pkl"
    calibration = trained_like_pkl(args.detectron2, [np.ascontiguousarray(im[..., ::-1]) for im in images], pkl,
                                   args.seed)  # fmt: skip
    predictor = DefaultPredictor(d2_cfg(args.detectron2, str(pkl)))
    ties = RpnTies()
    predictor.model.get_submodule(RPN_CLS).register_forward_hook(ties)
    precision = None if args.precision == "none" else args.precision
    ours = load_model("maskrcnn_r50_fpn", weights=str(pkl), precision=precision)
    d2_runs, our_runs, times = [], [], {"detectron2": 0.0, "ours": 0.0}
    with torch.inference_mode():
        for path, image in zip(files, images):
            start = time.perf_counter()
            d2_runs.append(d2_detections(predictor, np.ascontiguousarray(image[..., ::-1])))
            times["detectron2"] += time.perf_counter() - start
            ties.close_image(path.name)
            start = time.perf_counter()
            our_runs.append(our_detections(ours, image))
            times["ours"] += time.perf_counter() - start
            print(f"{path.name}: detectron2 {len(d2_runs[-1]['scores'])}, ours {len(our_runs[-1]['scores'])} detections",
                  flush=True)
    torch.save({"detectron2": d2_runs, "ours": our_runs}, args.workdir / f"runs_seed{args.seed}.pt")
    summary = {"images": len(files), "seed": args.seed, "precision": args.precision,
               "config": D2_CONFIG, "detectron2_commit": args.detectron2_commit, **compare(d2_runs, our_runs),
               **calibration_summary(calibration), "rpn_per_image": ties.per_image,
               "seconds": {k: round(v, 1) for k, v in times.items()},
               "machine": _machine()}  # fmt: skip
    summary["targets"] = targets_met(summary)
    print(json.dumps(summary, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out, json.dumps(summary, indent=1) + "\n")
    write_text_atomic(args.out.with_suffix(".md"), markdown(summary) + rpn_markdown(summary))
    return 0


def _machine() -> str:
    """CPU model, torch threads, torch version and load average at the end of the run."""
    info = Path("/proc/cpuinfo")
    names = [line.split(":", 1)[1].strip() for line in info.read_text().splitlines()
             if line.startswith("model name")] if info.is_file() else []  # fmt: skip
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"{names[0] if names else platform.machine()}, {torch.get_num_threads()} torch threads, "
            f"torch {torch.__version__}, load average {load}")


if __name__ == "__main__":
    sys.exit(main())

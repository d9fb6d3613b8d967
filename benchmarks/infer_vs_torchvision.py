"""Inference of ours vs torchvision's Mask R-CNN R50-FPN: same weights, same images, one run.

Penn-Fudan images are resized by every model to --size px (short side); box_score_thresh=0 so
that 100 detections reach the mask head. Runners alternate image by image (same machine load):
torchvision, ours as built ("plain", the before), the fp32 and bf16 fast paths ("after") and,
with --onnx, an exported model in ONNX Runtime. Reports p50/p90 latency, images/s, peak memory
above the pre-call level, the median time per stage, and output agreement with torchvision.

The weights are torchvision's seeded random init made trained-like (random BatchNorm statistics,
output layers rescaled so that scores spread out; tests/model/torchvision_reference.py), so that
matching detections is meaningful. Usage:
  python benchmarks/infer_vs_torchvision.py [--images 4] [--repeats 2] [--size 800] [--v2] [--onnx F]
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
from pathlib import Path

import torch
from torchvision.models import detection as tvdet

from maskrcnn.weights.formats.torchvision import convert_torchvision
from maskrcnn.data.images import read_image
from maskrcnn.evaluation.benchmark import Runner, format_report, our_stage_spans, run_benchmark
from maskrcnn.model.detector import build_model
from maskrcnn.model.fast_inference import prepare_for_inference
from maskrcnn.weights import load_state
from maskrcnn.presets import apply_kwargs, get_preset

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "model"))
from torchvision_reference import harden  # noqa: E402

PENNFUDAN = ROOT / ".." / "shared" / "data" / "pennfudan" / "PNGImages"


def torchvision_spans(model):
    rh = model.roi_heads
    return {"preprocess": (model.transform, model.transform), "backbone": (model.backbone, model.backbone),
            "rpn": (model.rpn, model.rpn), "box head": (rh.box_roi_pool, rh.box_predictor),
            "mask head": (rh.mask_roi_pool, rh.mask_predictor)}


def build(args, first_image):
    size = {"min_size": args.size, "max_size": round(args.size * 1333 / 800), "box_score_thresh": 0.0}
    torch.manual_seed(0)
    if args.v2:
        ref = tvdet.maskrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None, **size)
        harden(ref, eps=None, seed=1, image=first_image)
        cfg = get_preset("maskrcnn_r50_fpn_v2")
    else:
        ref = tvdet.maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, **size)
        harden(ref, eps=0.0, seed=1, image=first_image)  # released v1 weights run FrozenBN eps 0
        cfg = get_preset("maskrcnn_r50_fpn")
    plain = build_model(apply_kwargs(cfg, size)).eval()
    load_state(plain, convert_torchvision(ref.state_dict()), source="torchvision")
    fast = {p: prepare_for_inference(copy.deepcopy(plain), p) for p in ("fp32", "bf16")}
    return ref.eval(), plain, fast


def agreement(ref_out: dict, ours) -> tuple[float, float, float, int]:
    """Greedy match by label and box: (max box error px, max score error, max mask prob error,
    unmatched count)."""
    used = torch.zeros(len(ours), dtype=torch.bool)
    box_err = score_err = mask_err = 0.0
    unmatched = abs(len(ours) - len(ref_out["boxes"]))
    for i in range(min(len(ref_out["boxes"]), len(ours))):
        diff = (ours.boxes - ref_out["boxes"][i]).abs().amax(dim=1)
        diff[(ours.labels != ref_out["labels"][i]) | used] = float("inf")
        j = int(diff.argmin())
        if not torch.isfinite(diff[j]) or diff[j] > 1.0:
            unmatched += 1
            continue
        used[j] = True
        box_err = max(box_err, float(diff[j]))
        score_err = max(score_err, abs(float(ours.scores[j] - ref_out["scores"][i])))
        mask_err = max(mask_err, float((ours.mask_probs[j] - ref_out["masks"][i, 0]).abs().max()))
    return box_err, score_err, mask_err, unmatched


def exported(model, images, calibration, int8: bool):
    """Export `model` to ONNX (int8: quantised, calibrated on `calibration` files) and report
    how ONNX Runtime's outputs agree with it. `model` is the fp32 fast path, as `maskrcnn
    export` loads it: its norms are folded into the convolutions (exported unfolded, an int8
    graph keeps each norm as a float Mul and Add between dequantise and quantise nodes)."""
    import tempfile

    from maskrcnn.deploy import OnnxPredictor, export_onnx
    from maskrcnn.deploy.quantize import float_layer_keys, quantize_onnx

    path = Path(tempfile.mkdtemp()) / "model.onnx"
    export_onnx(model, path)
    if int8:
        runner = OnnxPredictor(path)
        quantize_onnx(path, path.with_name("int8.onnx"), (runner.graph_inputs([read_image(f)]) for f in calibration),
                      float_layer_keys(model))
        path = path.with_name("int8.onnx")
    onnx = OnnxPredictor(path)
    box_err, min_iou, unmatched = 0.0, 1.0, 0
    with torch.inference_mode():
        for img in images:
            ours, theirs = model.predict(img)[0], onnx.predict(img)
            unmatched += abs(len(ours) - len(theirs))
            for i in range(min(len(ours), len(theirs))):
                diff = (theirs.boxes - ours.boxes[i]).abs().amax(dim=1)
                diff[theirs.labels != ours.labels[i]] = float("inf")
                j = int(diff.argmin())
                if not torch.isfinite(diff[j]):  # no detection of this label: not a box error
                    unmatched += 1
                    continue
                box_err = max(box_err, float(diff[j]))
                inter = (theirs.masks[j] & ours.masks[i]).sum()
                union = (theirs.masks[j] | ours.masks[i]).sum()
                min_iou = min(min_iou, float(inter / union) if union else 1.0)
    print(f"onnxruntime {'int8' if int8 else 'fp32'} vs torch fp32 fast path: max box error {box_err:.2e} px, min mask IoU {min_iou:.4f}, "
          f"count differences and label mismatches {unmatched} (file {path}, {path.stat().st_size / 2**20:.0f} MB)")
    return onnx


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--size", type=int, default=800)
    parser.add_argument("--threads", type=int, help="torch and ONNX Runtime threads (default: torch's)")
    parser.add_argument("--v2", action="store_true", help="compare the v2 models instead of v1")
    parser.add_argument("--onnx", action="store_true", help="also export the weights to ONNX and time "
                        "ONNX Runtime, fp32 and int8 (calibrated on 16 Penn-Fudan images not timed)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # OnnxPredictor's default

    files = sorted(PENNFUDAN.glob("*.png"))
    images = [read_image(p) for p in files[: args.images]]
    ref, plain, fast = build(args, images[0])
    with torch.inference_mode():
        print("agreement with torchvision (max over images: box px, score, mask prob, unmatched)")
        for name, model in (("plain", plain), *fast.items()):
            errs = [agreement(ref([img])[0], model.predict(img, keep_mask_probs=True)[0]) for img in images]
            worst = [max(e[k] for e in errs) for k in range(4)]
            print(f"  maskrcnn {name:6s} {worst[0]:.2e} px  {worst[1]:.2e}  {worst[2]:.2e}  {worst[3]}")

    runners = [Runner("torchvision", lambda img: len(ref([img])[0]["boxes"]), torchvision_spans(ref)),
               Runner("maskrcnn plain", lambda img: len(plain.predict(img)[0]), our_stage_spans(plain))]
    runners += [Runner(f"maskrcnn {p}", (lambda m: lambda img: len(m.predict(img)[0]))(m), our_stage_spans(m))
                for p, m in fast.items()]
    if args.onnx:
        for int8 in (False, True):
            onnx = exported(fast["fp32"], images, files[-16:], int8)
            runners.append(Runner(f"onnxruntime {'int8' if int8 else 'fp32'}",
                                  (lambda o: lambda img: len(o.predict(img)))(onnx)))
    with torch.inference_mode():
        run_benchmark(runners, images, args.repeats)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {len(images)} Penn-Fudan images "
          f"at {args.size} px x {args.repeats} repeats, box_score_thresh 0")
    print(format_report(runners, reference="torchvision"))


if __name__ == "__main__":
    main()

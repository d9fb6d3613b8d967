"""mmdetection's own Mask R-CNN vs this package loading the same checkpoint (issue 31).

mmdetection 3.3.0 and mmengine are pure Python on PyPI; mmcv's full build (its compiled ops) is a
source distribution only, so mmcv-lite 2.1.0 (the same Python, no compiled `mmcv._ext`) is used
and `mmcv._ext` is given here as a module whose two ops this model calls are torchvision's
identical kernels: `nms` (mmcv's CPU kernel: boxes sorted by score, suppressed where IoU >
threshold, offset 0 = torchvision.ops.nms) and `roi_align_forward` with average pooling
(= torchvision.ops.roi_align with the same output size, scale, sampling ratio and `aligned`).
Every other compiled op raises if called. Nothing else of mmdetection or mmcv is changed.

mmdetection's `mask-rcnn_r50_fpn_1x_coco.py` model gets seeded random weights made trained-like
(as benchmarks/vs_detectron2.py: each BatchNorm takes the first image's mean and variance, the last
layer of each head is rescaled to a set logit spread on the first image), then the last layer of
each head is rescaled once more so that its spread holds on ALL the compared images: the largest
over images of its output's standard deviation becomes the set spread, and the RPN objectness is
scaled further if needed so that its largest logit on any image stays below common.LOGIT_BOUND (12:
sigmoid = 1 - 6e-6, distinct in fp32). Without this, a spread set on one image reached logits
above 17 on others, where the fp32 sigmoid that mmdetection ranks proposals by is exactly 1.0 for
thousands of anchors, and their tied order (torch's unstable sort) decided the proposals: an
artefact of the random weights, not of either implementation. Per image, the results record the
largest RPN logit, how many anchors have an fp32 sigmoid of exactly 1.0, and how many of the
candidates mmdetection keeps (top 1000 per level) share their fp32 score with another. Saved as a
model-zoo checkpoint ({"meta", "state_dict"}), read back by mmdetection's `init_detector` and by
`load_model`. On each raw Penn-Fudan image, `inference_detector` (its LoadImageFromNDArray,
Resize(scale=(1333, 800), keep_ratio=True) with OpenCV, PackDetInputs, DetDataPreprocessor with
padding to 32, its model's test path and mask paste) and this package's `predict` give detections,
compared as in vs_detectron2.py (twins, share above the 20th score percentile, box gaps, pooled
mask IoU).

Needs (a separate venv that sees this project's torch is fine):
    pip install --no-deps mmcv-lite==2.1.0 mmengine mmdet==3.3.0 addict yapf rich termcolor \
        terminaltables shapely six markdown-it-py mdurl pygments platformdirs
Usage: python benchmarks/vs_mmdetection.py [--images 20] [--seed 0]
       [--out benchmarks/results/vs_mmdetection.json]   (also writes the .md beside it)
"""

from __future__ import annotations

import argparse
import importlib.machinery
import json
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import vs_detectron2 as common  # noqa: E402

from maskrcnn.fileio import write_text_atomic  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MM_CONFIG = "mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py"  # under mmdet's packaged .mim/configs
# last layer of a head -> (standard deviation of its outputs, offset added) on the first image
HEAD_SPREAD = {
    "rpn_head.rpn_cls": (2.0, -1.0),
    "rpn_head.rpn_reg": (0.2, 0.0),
    "roi_head.bbox_head.fc_cls": (2.5, 0.0),
    "roi_head.bbox_head.fc_reg": (1.0, 0.0),
    "roi_head.mask_head.conv_logits": (4.0, 0.0),
}
REF = "mmdetection"
RPN_CLS = "rpn_head.rpn_cls"
# common.NMS_PRE (1000) is also the candidates mmdetection's RPN keeps per level (its test_cfg.rpn.nms_pre)


def install_mmcv_ext() -> None:
    """`mmcv._ext` with torchvision's nms and roi_align (the only compiled ops Mask R-CNN calls at
    test time); any other op raises NotImplementedError when called."""
    from torchvision.ops import nms, roi_align

    ext = types.ModuleType("mmcv._ext")
    ext.__spec__ = importlib.machinery.ModuleSpec("mmcv._ext", None)  # mmengine's find_loader looks

    def ext_nms(bboxes, scores, iou_threshold: float, offset: int):
        if offset != 0:
            raise NotImplementedError("nms with offset 1 is not torchvision's kernel")
        return nms(bboxes, scores, iou_threshold)

    def roi_align_forward(input, rois, output, argmax_y, argmax_x, aligned_height, aligned_width,
                          spatial_scale, sampling_ratio, pool_mode, aligned):  # fmt: skip
        if pool_mode != 1:
            raise NotImplementedError("roi_align with max pooling is not torchvision's kernel")
        output.copy_(roi_align(input, rois, (aligned_height, aligned_width), spatial_scale, sampling_ratio, aligned))

    def missing(name):
        def op(*args, **kwargs):
            raise NotImplementedError(f"mmcv._ext.{name} is compiled code, not available here")

        return op

    ext.nms, ext.roi_align_forward = ext_nms, roi_align_forward
    ext.__getattr__ = lambda name: missing(name) if not name.startswith("__") else _no_attr(name)
    sys.modules["mmcv._ext"] = ext


def _no_attr(name: str):
    raise AttributeError(name)


def config_path() -> Path:
    import mmdet

    return Path(mmdet.__file__).parent / ".mim" / "configs" / MM_CONFIG


@torch.no_grad()
def trained_like_checkpoint(images_bgr: list[np.ndarray], path: Path, seed: int) -> dict:
    """mmdetection's model with seeded weights made trained-like on `images_bgr` (calibrated on the
    first, then head spreads held on all), saved as a model-zoo checkpoint; returns the per-image
    output statistics the second step measured ({layer: [(std, max), ...]})."""
    from mmdet.apis import inference_detector, init_detector

    torch.manual_seed(seed)
    model = init_detector(str(config_path()), checkpoint=None, device="cpu").eval()
    hooks = []
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.weight.uniform_(0.5, 1.5)
            module.bias.normal_(0.0, 0.2)
            hooks.append(module.register_forward_pre_hook(common._standardise))
    for name, (std, offset) in HEAD_SPREAD.items():
        hooks.append(model.get_submodule(name).register_forward_hook(common._spread(std, offset)))
    inference_detector(model, images_bgr[0])
    for hook in hooks:
        hook.remove()
    stats = common.head_stats(model, lambda image: inference_detector(model, image), images_bgr, HEAD_SPREAD)
    common.hold_spreads(model, stats, HEAD_SPREAD, RPN_CLS)
    meta = {"dataset_meta": {"classes": tuple(model.dataset_meta["classes"])}, "config": model.cfg.pretty_text,
            "__author__": "benchmarks/vs_mmdetection.py (random, trained-like)"}  # fmt: skip
    torch.save({"meta": meta, "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()}}, path)
    return stats


def mm_detections(model, image_bgr: np.ndarray) -> dict:
    from mmdet.apis import inference_detector

    out = inference_detector(model, image_bgr).pred_instances
    return {"boxes": out.bboxes.double(), "scores": out.scores.double(), "labels": out.labels + 1,
            "masks": out.masks}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--data", type=Path, default=common.PENNFUDAN, help="folder of images (sorted; the first N)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/vs_mmdetection"))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "vs_mmdetection.json")
    args = parser.parse_args()
    install_mmcv_ext()
    import mmdet
    from mmdet.apis import init_detector

    from maskrcnn import load_model

    files = sorted(p for p in args.data.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))[: args.images]
    images = [np.asarray(Image.open(p).convert("RGB")) for p in files]
    args.workdir.mkdir(parents=True, exist_ok=True)
    ckpt = args.workdir / f"mmdet_r50_fpn_seed{args.seed}.pth"
    calibration = trained_like_checkpoint([np.ascontiguousarray(im[..., ::-1]) for im in images], ckpt, args.seed)
    theirs = init_detector(str(config_path()), checkpoint=str(ckpt), device="cpu").eval()
    ties = common.RpnTies()
    theirs.get_submodule(RPN_CLS).register_forward_hook(ties)
    ours = load_model("maskrcnn_r50_fpn", weights=str(ckpt))
    mm_runs, our_runs, times = [], [], {REF: 0.0, "ours": 0.0}
    with torch.inference_mode():
        for path, image in zip(files, images):
            start = time.perf_counter()
            mm_runs.append(mm_detections(theirs, np.ascontiguousarray(image[..., ::-1])))
            times[REF] += time.perf_counter() - start
            ties.close_image(path.name)
            start = time.perf_counter()
            our_runs.append(common.our_detections(ours, image))
            times["ours"] += time.perf_counter() - start
            print(f"{path.name}: {REF} {len(mm_runs[-1]['scores'])}, ours {len(our_runs[-1]['scores'])} detections",
                  flush=True)
    torch.save({REF: mm_runs, "ours": our_runs}, args.workdir / f"runs_seed{args.seed}.pt")
    summary = {"images": len(files), "seed": args.seed, "precision": "none",
               "config": f"configs/{MM_CONFIG}", "mmdetection_version": mmdet.__version__,
               **common.compare(mm_runs, our_runs, ref=REF),
               **common.calibration_summary(calibration), "rpn_per_image": ties.per_image,
               "seconds": {k: round(v, 1) for k, v in times.items()}, "machine": common._machine()}  # fmt: skip
    summary["targets"] = common.targets_met(summary, ref=REF)
    print(json.dumps(summary, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out, json.dumps(summary, indent=1) + "\n")
    write_text_atomic(args.out.with_suffix(".md"), common.markdown(summary, ref=REF) + common.rpn_markdown(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())

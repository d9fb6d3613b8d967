"""Exactness against float64: how far each runner's detections are from the same model run in
double precision, beside how far torchvision's own fp32 output is.

torchvision's fp32 output is not the truth: with trained-like weights any reordering of fp32
arithmetic moves boxes by ~1e-2 px. The referee is our plain model converted to float64. A runner
is "no less exact than torchvision" when, on every image, the RMS and the worst error of its
matched detections (boxes, scores, pasted mask probabilities, keypoints) are within a slack of
torchvision's (see RMS_SLACK), and no float64 detection well above the score cut is missing.
torchvision's error is that of its model run both ways it can be (`torchvision_envelope`): in
the default NCHW layout and channels-last (`channels_last`: oneDNN's NHWC kernels, which the
fast path's convolutions use and which sum in another order). Each is a legitimate fp32 run; the
larger of their errors, per quantity and statistic, is what fp32 itself costs on that image.

Weights are trained-like: BatchNorm running statistics are measured on a real image (a forward
pass with only the norm layers in train mode), then perturbed, and run with the eps the real
weights use (0 for torchvision's v1 trunk); output layers are scaled so that scores spread out.

Used by tests/model/test_exactness_float64.py (3 seeds per model) and
benchmarks/exactness_float64.py (more seeds, all runners, a table).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import nn
from torchvision.models import detection as tvdet
from torchvision_reference import _calibrate, _freeze_trunk_norms

from maskrcnn.weights.formats.torchvision import convert_torchvision
from maskrcnn.model.detector import build_model
from maskrcnn.weights import load_state
from maskrcnn.presets import apply_kwargs, get_preset

# kind -> (torchvision builder, our preset, trunk eps as the released weights run)
KINDS = {
    "v1": (tvdet.maskrcnn_resnet50_fpn, "maskrcnn_r50_fpn", 0.0),
    "v2": (tvdet.maskrcnn_resnet50_fpn_v2, "maskrcnn_r50_fpn_v2", 1e-5),
    "keypoint": (tvdet.keypointrcnn_resnet50_fpn, "keypointrcnn_r50_fpn", 0.0),
}
QUANTITIES = ("box", "score", "mask", "keypoint")
# fp32 re-association alone moves torchvision's own worst error of ~30 detections by up to ~1.6x
# between images (folding the frozen norms: <= 1.06x), hence 2x on the RMS and 2.5x on the worst
# error. One torchvision run is one draw of that error: against its NCHW run alone the fast path's
# score RMS on v2 reached 2.03x (one thread), against its NHWC run alone 3.5x in the worst score
# error (another image, two threads); the envelope of both runs is the referee.
# Below the floors every error is the rounding of the quantity itself, in fp32 units
# (U = 2^-24, the unit roundoff) of its scale:
# - box: 2 roundings of a coordinate up to MAX_SIDE px (the longest input side, 1333);
# - score: 32 U of a probability <= 1 (a softmax over <= 91 classes, then one product);
# - mask: twice the bilinear paste bound U * (6 * 30 + 6) of tests/ops/test_masks.py;
# - keypoint: 16 U of a coordinate up to MAX_SIDE (heat-map argmax offset, scale, shift).
RMS_SLACK, WORST_SLACK = 2.0, 2.5
KEYPOINT_FLIP_PX = 1.0  # a keypoint further off than this moved cells: counted, not measured
U, MAX_SIDE = 2.0**-24, 1333
FLOORS = {"box": 2 * U * MAX_SIDE, "score": 32 * U, "mask": 2 * U * (6 * 30 + 6), "keypoint": 16 * U * MAX_SIDE}


def build_pair(kind: str, seed: int, image: torch.Tensor, **size):
    """torchvision's model (fp32, eval) and our plain model on the same trained-like weights."""
    builder, preset, eps = KINDS[kind]
    torch.manual_seed(seed)
    ref = builder(weights=None, weights_backbone=None, **size)
    measure_norms(ref, image, seed)
    _freeze_trunk_norms(ref, eps)
    with torch.no_grad():
        _calibrate(ref.eval(), image)
    ours = build_model(apply_kwargs(get_preset(preset), size)).eval()
    load_state(ours, convert_torchvision(ref.state_dict()), source="torchvision reference")
    return ref, ours


@torch.no_grad()
def measure_norms(model: nn.Module, image: torch.Tensor, seed: int, jitter: float = 0.1) -> None:
    """Random affine terms; running statistics measured on `image` (only the BatchNorms in train
    mode, cumulative average over one pass), then mean and variance perturbed by `jitter` so
    that no layer is exactly normalised."""
    g = torch.Generator().manual_seed(seed)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    model.eval()
    for m in norms:
        n = m.num_features
        m.weight.copy_(torch.rand(n, generator=g) * 0.5 + 0.75)
        m.bias.copy_(torch.randn(n, generator=g) * 0.1)
        m.reset_running_stats()
        m.momentum = None
        m.train()
    # every box reaches the mask head: random class scores sit below any useful threshold
    thresh, model.roi_heads.score_thresh = model.roi_heads.score_thresh, 0.0
    model([image])
    model.roi_heads.score_thresh = thresh
    for m in norms:
        n = m.num_features
        std = m.running_var.sqrt()
        m.running_mean.add_(torch.randn(n, generator=g) * jitter * std)
        m.running_var.mul_(torch.exp(torch.randn(n, generator=g) * jitter))
        m.momentum = 0.1
        m.eval()


def float64_model(plain: nn.Module) -> nn.Module:
    """The referee: the plain model in double precision."""
    return copy.deepcopy(plain).double().eval()


@dataclass
class Detections:
    """One image's detections in a common form; mask_probs pasted (N, H, W), keypoints (N, K, 2)."""

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor
    mask_probs: torch.Tensor | None = None
    keypoints: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.boxes)


def from_torchvision(out: dict) -> Detections:
    masks = out["masks"][:, 0] if "masks" in out else None
    keypoints = out["keypoints"][..., :2] if "keypoints" in out else None
    return Detections(out["boxes"], out["scores"], out["labels"], masks, keypoints)


def from_instances(inst) -> Detections:
    def get(name):
        return getattr(inst, name) if inst.has(name) else None

    keypoints = get("keypoints")
    return Detections(inst.boxes, inst.scores, inst.labels, get("mask_probs"),
                      None if keypoints is None else keypoints[..., :2])


@torch.inference_mode()
def run_torchvision(model, image: torch.Tensor) -> Detections:
    return from_torchvision(model([image])[0])


def channels_last(torchvision_model: nn.Module) -> nn.Module:
    """torchvision's model with channels-last weights: each convolution then runs oneDNN's NHWC
    kernel, as the fast path's do (the input follows the weight's memory format)."""
    return copy.deepcopy(torchvision_model).to(memory_format=torch.channels_last)


@torch.inference_mode()
def run_ours(model, image: torch.Tensor) -> Detections:
    """Any of our models, fp32 or float64 (the image follows the model's dtype)."""
    dtype = model.pixel_mean.dtype
    return from_instances(model([image.to(dtype)], keep_mask_probs=True)[0])


@dataclass
class Comparison:
    """Errors of a runner's matched detections against float64, and the float64 detections
    well above the score cut that it lost."""

    errors: dict[str, list[float]] = field(default_factory=lambda: {q: [] for q in QUANTITIES})
    lost: list[float] = field(default_factory=list)  # float64 scores of lost detections
    matched: int = 0
    keypoint_flips: int = 0  # keypoints whose heatmap argmax moved to another cell (near-ties)

    def worst(self, quantity: str) -> float:
        values = self.errors[quantity]
        return max(values) if values else 0.0

    def rms(self, quantity: str) -> float:
        values = self.errors[quantity]
        return (sum(v * v for v in values) / len(values)) ** 0.5 if values else 0.0


def compare(reference: Detections, got: Detections, score_cut: float, margin: float = 0.05,
            match_px: float = 2.0) -> Comparison:
    """Match each float64 detection (best score first) to the nearest unused detection of the
    same label whose box is within `match_px`; record errors. A float64 detection scoring above
    `score_cut + margin` without a match is lost; nearer the cut, fp32 may legitimately reorder."""
    result = Comparison()
    used = torch.zeros(len(got), dtype=torch.bool)
    for i in reference.scores.argsort(descending=True).tolist():
        j = _nearest(reference.boxes[i].to(got.boxes.dtype), reference.labels[i], got, used)
        if j is None or float((got.boxes[j].double() - reference.boxes[i]).abs().max()) > match_px:
            if float(reference.scores[i]) > score_cut + margin:
                result.lost.append(float(reference.scores[i]))
            continue
        used[j] = True
        result.matched += 1
        _record(result, reference, i, got, j)
    return result


def _nearest(box, label, got: Detections, used) -> int | None:
    if len(got) == 0:
        return None
    diff = (got.boxes - box).abs().amax(dim=1)
    diff[(got.labels != label) | used] = float("inf")
    j = int(diff.argmin())
    return j if torch.isfinite(diff[j]) else None


def _record(result: Comparison, ref: Detections, i: int, got: Detections, j: int) -> None:
    def err(a, b):
        return float((a.double() - b.double()).abs().max())

    errors = result.errors
    errors["box"].append(err(got.boxes[j], ref.boxes[i]))
    errors["score"].append(err(got.scores[j], ref.scores[i]))
    if ref.mask_probs is not None:
        errors["mask"].append(err(got.mask_probs[j], ref.mask_probs[i]))
    if ref.keypoints is not None:
        per_point = (got.keypoints[j].double() - ref.keypoints[i].double()).abs().amax(dim=1)  # (K,)
        moved = per_point > KEYPOINT_FLIP_PX
        result.keypoint_flips += int(moved.sum())
        errors["keypoint"].append(float(per_point[~moved].max()) if (~moved).any() else 0.0)


@dataclass
class Envelope:
    """The larger error of several runs of one model (torchvision NCHW and NHWC), per quantity and
    statistic; read by `judge` as a Comparison is."""

    runs: tuple[Comparison, ...]

    def rms(self, quantity: str) -> float:
        return max(run.rms(quantity) for run in self.runs)

    def worst(self, quantity: str) -> float:
        return max(run.worst(quantity) for run in self.runs)

    @property
    def keypoint_flips(self) -> int:
        return max(run.keypoint_flips for run in self.runs)


def torchvision_envelope(model: nn.Module, image: torch.Tensor, truth: Detections, cut: float,
                         **match) -> Envelope:  # fmt: skip
    """torchvision's errors against `truth`, run in NCHW and channels-last."""
    return Envelope(tuple(compare(truth, run_torchvision(m, image), cut, **match)
                          for m in (model, channels_last(model))))


def score_cut(reference: Detections, score_thresh: float, detections_per_img: int) -> float:
    """The lowest score a detection can have and still be returned: the threshold, or the last
    kept score when the detection cap is reached."""
    if len(reference) >= detections_per_img:
        return float(reference.scores.min())
    return score_thresh


def judge(ours: Comparison, torchvision: Comparison | Envelope) -> list[str]:
    """Why `ours` is less exact than torchvision's fp32 on one image (empty: it is not)."""
    problems = [f"lost float64 detections scoring {ours.lost}"] if ours.lost else []
    for q in QUANTITIES:
        for stat, slack in (("rms", RMS_SLACK), ("worst", WORST_SLACK)):
            mine, theirs = getattr(ours, stat)(q), getattr(torchvision, stat)(q)
            if mine > max(slack * theirs, FLOORS[q]):
                problems.append(f"{q} {stat} error {mine:.2e} > {slack} x torchvision's {theirs:.2e}")
    if ours.keypoint_flips > torchvision.keypoint_flips + 1:
        problems.append(f"{ours.keypoint_flips} keypoints moved cells (torchvision "
                        f"{torchvision.keypoint_flips})")
    return problems

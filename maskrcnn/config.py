"""Typed configuration: model, input, data and solver dataclasses, YAML I/O and dotted overrides.

Every hyper-parameter that differs between frameworks (torchvision, detectron2, mmdetection) is a
field here, so switching conventions is a config change, never a code fork. Defaults follow
torchvision's `maskrcnn_resnet50_fpn` (see REFERENCE.md §3).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Literal
from pathlib import Path

import yaml

from .config_ranges import check_range
from .errors import ConfigError


@dataclass
class BackboneConfig:
    """The trunk (ResNet / ResNeXt / EfficientNet-Lite) and the FPN on it."""

    arch: str = "resnet"  # "resnet" (depth, groups, width) | "efficientnet_lite0" .. "efficientnet_lite4"
    kind: str = "fpn"  # "fpn": trunk + FPN, P2..P6 | "c4": trunk cut after conv4 (stride 16), res5 per RoI
    depth: int = 50  # 18, 34, 50, 101, 152
    groups: int = 1  # ResNeXt cardinality (32 or 64)
    width_per_group: int = 64  # ResNeXt bottleneck width (4 for 32x4d / 64x4d)
    norm: str = "frozen_bn"  # trunk norm: "frozen_bn" (pretrained trunks) | "bn" | "gn" (from scratch)
    norm_eps: float = 0.0  # FrozenBatchNorm eps: torchvision's v1 weights run with 0, v2 with 1e-5
    # (EfficientNet-Lite: the eps its norms use in any mode, 1e-3 as TensorFlow trained them)
    stride_in_1x1: bool = False  # caffe-style bottleneck (mmdetection "caffe" ResNets)
    freeze_at: int = 2  # 0: train all, 1: freeze stem, 2: stem + res2, ... 5: whole trunk
    fpn_channels: int = 256  # channels of every FPN output map (P2..P6)
    fpn_norm: str = "none"  # "none" | "bn" (v2) | "gn"
    fpn_norm_eps: float = 1e-5  # eps of the FPN's norms when fpn_norm is set


@dataclass
class InputConfig:
    """How images are normalised, resized and padded before the backbone."""

    # short side; training picks one per image. "auto": chosen when a run starts from the training
    # set's object sizes (training/auto_size.py), recorded in the run's config.yaml
    min_size: tuple[int, ...] | Literal["auto"] = (800,)
    max_size: int = 1333  # cap on the long side
    pixel_mean: tuple[float, float, float] = (0.485, 0.456, 0.406)  # in channel_order
    pixel_std: tuple[float, float, float] = (0.229, 0.224, 0.225)  # divides pixels after the mean is subtracted, per channel
    pixel_scale: float = 1.0  # 1.0: pixels in [0, 1]; 255.0: pixels in [0, 255] (caffe, detectron2)
    channel_order: str = "RGB"  # "RGB" | "BGR"
    size_divisibility: int = 32  # pad to a multiple (detectron2 FPN: p6 stride, mmdetection: Pad(size_divisor=32))
    hflip_prob: float = 0.5  # training only
    # Framework conventions of the resize (docs/conventions.md). Rounding of the resized size:
    # "floor" (torchvision's F.interpolate with recompute_scale_factor) | "round": detectron2
    # data/transforms/augmentation_impl.py:198-199 `int(neww + 0.5)` (ResizeShortestEdge), mmcv
    # image/geometric.py `_scale_size`: `int(w * float(scale[0]) + 0.5)` (mmdetection's Resize).
    resize_rounding: str = "floor"
    # Resampling filter: "torch" (bilinear on the normalised float image, torchvision's) | "pil"
    # (Pillow's bilinear on the 8-bit image, then normalised: detectron2
    # data/transforms/transform.py:117-123 ResizeTransform.apply_image, interp=Image.BILINEAR at :109)
    # | "cv2" (OpenCV's INTER_LINEAR on the 8-bit image: mmcv image/geometric.py `imresize`, the
    # default backend of mmdetection's Resize; needs opencv-python-headless).
    resize_backend: str = "torch"


@dataclass
class AnchorConfig:
    """The RPN's anchors: one size per FPN level, the same aspect ratios at each."""

    # one per FPN level P2..P6; "auto": from the training set's object sizes when a run starts
    sizes: tuple[int, ...] | Literal["auto"] = (32, 64, 128, 256, 512)
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)  # height / width of the anchors at every position
    round_base: bool = True  # torchvision rounds base anchors; detectron2 does not
    # Anchor stride of each level in pixels. Empty: padded image size // feature size, per axis
    # (torchvision's AnchorGenerator; 800 // 13 = 61 for P6 of an 800-high batch). detectron2:
    # the backbone's fixed strides 4..64 (modeling/anchor_generator.py:132 `x.stride for x in
    # input_shape`, backbone/fpn.py:105-109); mmdetection: AnchorGenerator strides=[4, 8, 16, 32, 64]
    # (configs/_base_/models/mask-rcnn_r50_fpn.py, rpn_head.anchor_generator).
    strides: tuple[int, ...] = ()


@dataclass
class RPNConfig:
    """The region proposal network: its head, proposal selection and training targets."""

    num_convs: int = 1  # v2: 2
    norm: str = "none"  # "none" | "bn"
    pre_nms_topk_train: int = 2000  # per level
    pre_nms_topk_test: int = 1000  # inference: proposals kept per level before NMS
    post_nms_topk_train: int = 2000  # per image
    post_nms_topk_test: int = 1000  # inference: proposals kept per image after NMS
    nms_thresh: float = 0.7  # IoU above which NMS suppresses a proposal
    min_box_size: float = 1e-3  # proposals narrower or lower than this (px) are dropped
    # False: keep proposals with width and height >= min_box_size (torchvision); True: > (detectron2
    # structures/boxes.py:212 `(widths > threshold) & (heights > threshold)`, called by
    # proposal_generator/proposal_utils.py:117; mmdetection dense_heads/rpn_head.py
    # `_bbox_post_process`: `valid_mask = (w > cfg.min_bbox_size) & (h > cfg.min_bbox_size)`).
    # With min_box_size 0, True drops the zero-width proposals of anchors clipped in the padding.
    min_box_strict: bool = False
    score_thresh: float = 0.0  # proposals scoring below this (objectness probability) are dropped
    fg_iou_thresh: float = 0.7  # anchors at this IoU with a GT box or more are positives
    bg_iou_thresh: float = 0.3  # anchors below this IoU with every GT box are negatives
    batch_size_per_image: int = 256  # anchors sampled per image for the loss
    positive_fraction: float = 0.5  # at most this share of the sampled anchors are positives
    box_weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)  # box coder weights (dx, dy, dw, dh) of the anchor deltas
    smooth_l1_beta: float = 1.0 / 9  # 0 = L1
    loss_weight: float = 1.0  # multiplies both RPN losses


@dataclass
class RoIAlignConfig:
    """RoIAlign's sampling and the FPN level each box is pooled from."""

    aligned: bool = False  # detectron2 / mmdetection: True (half-pixel offset)
    sampling_ratio: int = 2  # 0 = adaptive
    canonical_scale: int = 224  # FPN level mapping: a box of this size (px) goes to canonical_level
    canonical_level: int = 4  # FPN level mapping: the level of a canonical_scale box (4 = P4)


@dataclass
class BoxHeadConfig:
    """The box head: its layers, RoI sampling, losses and detection post-processing."""

    head: str = "2fc"  # "2fc" (v1) | "4conv1fc" (v2) | "avgpool" (C4: average of res5's 7x7 output)
    norm: str = "none"  # "none" | "bn" (v2 conv layers)
    pooler_resolution: int = 7  # side of the RoI features the box head reads
    fc_dim: int = 1024  # width of the box head's fully connected layers
    conv_dim: int = 256  # channels of the 4conv1fc head's convolutions
    box_weights: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0)  # box coder weights (dx, dy, dw, dh) of the box deltas
    fg_iou_thresh: float = 0.5  # proposals at this IoU with a GT box or more are foreground
    bg_iou_thresh: float = 0.5  # proposals below this IoU with every GT box are background
    batch_size_per_image: int = 512  # RoIs sampled per image for the losses
    positive_fraction: float = 0.25  # at most this share of the sampled RoIs are foreground
    smooth_l1_beta: float = 1.0 / 9  # smooth L1 transition point of the box loss (0 = L1)
    score_thresh: float = 0.05  # detections scoring below this are dropped
    nms_thresh: float = 0.5  # per-class NMS IoU threshold of the detections
    detections_per_img: int = 100  # at most this many detections per image, best first
    min_box_size: float = 1e-2  # detections narrower or lower than this (px) are dropped
    # as model.rpn.min_box_strict, for the detections. detectron2 drops empty boxes (strict, 0)
    # in modeling/postprocessing.py:55-58 (`results[output_boxes.nonempty()]`, after NMS and top-k);
    # mmdetection's multiclass_nms keeps every box above score_thr (False with 0: no filter).
    min_box_strict: bool = False
    loss_weight: float = 1.0  # multiplies both box losses
    classifier: str = "softmax"  # "softmax" over background and the classes (the paper's) | "sigmoid": one per class
    federated_classes: int = 0  # sigmoid: > 0 counts only the batch's classes and sampled negatives, this many in all (LVIS: 50)


@dataclass
class MaskHeadConfig:
    """The mask head (the paper's FCN, or the MLP of Table 2e) and its mask geometry."""

    enabled: bool = True  # the mask branch (False: a Faster R-CNN)
    pooler_resolution: int = 14  # FPN; C4 heads read res5's output of the box pooler's RoIs
    resolution: int = 28  # mask size m (m x m); the FCN upsamples its input by m / input size
    head: str = "fcn"  # "fcn" | "mlp" (the paper's fc mask head, Table 2e)
    conv_dims: tuple[int, ...] = (256, 256, 256, 256)  # fcn: one 3x3 conv per entry
    deconv_dim: int = 0  # fcn: channels of the upsampling deconv; 0 = as its input (C4: 256)
    mlp_dims: tuple[int, ...] = (1024, 1024)  # mlp: hidden fc widths
    norm: str = "none"  # "none" | "bn" (v2)
    loss: str = "sigmoid"  # "sigmoid" (per-class binary, the paper's) | "softmax" (over classes per pixel)
    class_agnostic: bool = False  # one mask for every class
    # False: torchvision's mask geometry (GT cropped by unaligned RoIAlign, half a pixel off; masks
    # pasted on integer-truncated boxes one pixel wider). True: detectron2's (aligned crops, masks
    # pasted on the float box), which puts small objects' masks where they are; weights trained
    # one way should be run the same way. Paste with True is detectron2's layers/mask_ops.py:51-64
    # (pixel centres + 0.5 sampled on the float box by grid_sample) and mmdetection's
    # roi_heads/mask_heads/fcn_mask_head.py `_do_paste_mask` (the same arithmetic).
    aligned: bool = False
    loss_weight: float = 1.0  # multiplies the mask loss


@dataclass
class MaskIoUHeadConfig:
    """Mask Scoring R-CNN's MaskIoU head, which predicts each mask's IoU with its object."""

    enabled: bool = False  # Mask Scoring R-CNN: needs model.mask.enabled; adds Instances.mask_scores
    conv_dim: int = 256  # channels of the MaskIoU head's convolutions
    fc_dim: int = 1024  # width of its fully connected layers
    loss_weight: float = 0.5  # multiplies the MaskIoU regression loss


@dataclass
class KeypointHeadConfig:
    """The keypoint head of Keypoint R-CNN (the paper's sec. 5)."""

    enabled: bool = False  # the keypoint branch (Keypoint R-CNN, paper sec. 5)
    num_keypoints: int = 17  # keypoints per instance (COCO persons: 17)
    pooler_resolution: int = 14  # side of the RoI features the keypoint head reads
    conv_dims: tuple[int, ...] = (512,) * 8  # one 3x3 conv per entry before the heatmap deconv
    loss_weight: float = 1.0  # multiplies the keypoint loss


@dataclass
class ModelConfig:
    """The whole network: classes, the weights training starts from, and each part's fields."""

    num_classes: int = 91  # including background (label 0)
    class_names: tuple[str, ...] = ()  # index = label; empty means "class_<i>"
    category_ids: tuple[int, ...] = ()  # label -> dataset category id; empty means identity
    weights: str = ""  # training starts from: a weights file or named source; "" = the preset's init
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    anchors: AnchorConfig = field(default_factory=AnchorConfig)
    rpn: RPNConfig = field(default_factory=RPNConfig)
    roi_pooler: str = "roialign"  # "roialign" | "roipool" | "roiwarp" (paper Table 2c)
    roi_align: RoIAlignConfig = field(default_factory=RoIAlignConfig)
    box: BoxHeadConfig = field(default_factory=BoxHeadConfig)
    mask: MaskHeadConfig = field(default_factory=MaskHeadConfig)
    maskiou: MaskIoUHeadConfig = field(default_factory=MaskIoUHeadConfig)
    keypoint: KeypointHeadConfig = field(default_factory=KeypointHeadConfig)


@dataclass
class DataConfig:
    """Training and validation data and how it is loaded and sampled."""

    train_ann: str = ""  # COCO json
    train_images: str = ""  # folder the training json's file names are relative to
    val_ann: str = ""  # COCO json evaluated during and after training (optional)
    val_images: str = ""  # folder the validation json's file names are relative to
    skip_empty: bool = False  # drop images without annotations from training
    num_workers: int = 2  # data loading processes (0: in the training process)
    aspect_ratio_grouping: bool = True  # batch wide images with wide ones and tall with tall
    sampler: str = "uniform"  # "uniform": each image once per epoch | "repeat_factor": LVIS's, rare classes repeated
    repeat_threshold: float = 0.001  # repeat_factor: t in r(c) = max(1, sqrt(t / f(c))), the LVIS paper's


@dataclass
class SolverConfig:
    """Optimiser, learning-rate schedule, precision, checkpoints and evaluation of a training run."""

    recipe: str = ""  # "finetune": lr, warm-up and schedule from the batch, data size, max_iter
    max_iter: int = 90000  # optimiser steps of the run (a recipe or epochs may set it)
    epochs: float = 0.0  # > 0: max_iter = ceil(epochs x training images / ims_per_batch)
    time_limit: float = 0.0  # minutes of training steps (evaluation excluded) that end the run early
    # > 0: the run takes this many minutes of wall time (steps, evaluations, checkpoints) and its
    # warm-up and decay are spread over them, re-planned from the measured step time
    # (training/budget.py); max_iter and epochs then only size the warm-up and the log's estimate
    time_budget: float = 0.0
    budget_evals: int = 4  # with time_budget and a validation set: evaluations spread evenly over it
    early_stop_patience: int = 0  # > 0: stop after this many evaluations without a better segm/AP
    ims_per_batch: int = 2  # global batch, split across processes
    optimizer: str = "sgd"  # "sgd" | "adamw"
    base_lr: float = 0.02  # learning rate after warm-up
    momentum: float = 0.9  # SGD momentum
    weight_decay: float = 1e-4  # L2 weight decay
    weight_decay_norm_bias: bool = True  # False: no weight decay on norm and bias parameters
    schedule: str = "multistep"  # "multistep" | "cosine"
    steps: tuple[int, ...] = (60000, 80000)  # multistep: the iterations at which the LR is multiplied by gamma
    gamma: float = 0.1  # multistep: the LR factor at each step
    warmup_iters: int = 1000  # linear warm-up length in steps
    warmup_factor: float = 0.001  # the warm-up starts at base_lr times this
    clip_grad_norm: float = 0.0  # 0 = no clipping
    amp: str = "none"  # "none" | "bf16" | "fp16"
    # Optimiser step every `accumulate` micro-batches of ims_per_batch images: the step of a batch
    # ims_per_batch * accumulate (in the sense of Trainer.run_step's docstring). max_iter, steps,
    # warm-up, logging and checkpoints count optimiser steps.
    accumulate: int = 1
    deterministic: bool = False  # CPU: bit-identical runs; CUDA: PyTorch's deterministic algorithms
    # The step with everything that changes the maths only by rounding: low-precision autocast
    # (bf16 on CPUs that have it, bf16/fp16 on CUDA), channels-last, frozen norms folded into
    # their convolutions. False (default): fp32, matching torchvision's losses.
    fast: bool = False
    checkpoint_period: int = 5000  # write a checkpoint every this many steps
    keep_checkpoints: int = 3  # periodic checkpoints kept (older ones are deleted)
    eval_period: int = 0  # 0 = only at the end
    log_period: int = 20  # log losses every this many steps
    seed: int = 0  # seeds weights, data order, augmentation and sampling
    # > 0: evaluations and model_best.pt / model_final.pt use an exponential moving average of the
    # weights with this decay, ramped up over the first steps (training/weight_average.py)
    ema_decay: float = 0.0


@dataclass
class TTAConfig:
    """Test-time augmentation (maskrcnn/tta.py)."""

    enabled: bool = False  # test-time augmentation in predict/eval/serve (also their --tta)
    scales: tuple[int, ...] = ()  # short sides to run at; empty = input.min_size's last entry only
    flip: bool = True  # also run each scale horizontally flipped
    box_voting: bool = False  # replace each kept box by the score-weighted mean of its cluster (IoU >= 0.5)


@dataclass
class TestConfig:
    """Inference-only options."""

    tta: TTAConfig = field(default_factory=TTAConfig)


@dataclass
class Config:
    """Everything about a model and its training: what `--set KEY=VALUE`, YAML files and presets fill."""

    name: str = "maskrcnn_r50_fpn"  # the preset this config started from
    model: ModelConfig = field(default_factory=ModelConfig)
    input: InputConfig = field(default_factory=InputConfig)
    data: DataConfig = field(default_factory=DataConfig)
    solver: SolverConfig = field(default_factory=SolverConfig)
    test: TestConfig = field(default_factory=TestConfig)


# ---------------------------------------------------------------------------------------------
# Dotted access, overrides and YAML


def to_dict(cfg) -> dict:
    """Nested plain dict (tuples become lists) for YAML and checkpoints."""
    out = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            value = to_dict(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


def from_dict(data: dict, base: Config | None = None, source: str = "config") -> Config:
    """Apply a nested dict onto `base` (default: a fresh Config). Unknown keys are errors."""
    cfg = dataclasses.replace(base) if base is not None else Config()
    cfg = _deep_copy(cfg)
    for key, value in flatten_dict(data):
        set_value(cfg, key, value, source=source)
    return cfg


def set_value(cfg, dotted: str, value, source: str = "override") -> None:
    """Set `a.b.c` on a config tree, coercing `value` to the field's type."""
    parts = dotted.split(".")
    node = cfg
    for i, part in enumerate(parts):
        names = {f.name: f for f in dataclasses.fields(node)}
        if part not in names:
            where = ".".join(parts[:i]) or "the top level"
            near = difflib.get_close_matches(dotted, list(dotted_keys(cfg)), n=3, cutoff=0.5)
            hint = f"; nearest: {', '.join(near)}" if near else ""
            raise ConfigError(
                f"{source}: unknown key '{dotted}'{hint} ('{part}' is not a field of {where}; "
                f"known: {', '.join(sorted(names))})"
            )
        if i == len(parts) - 1:
            hint = typing.get_type_hints(type(node))[part]
            coerced = _coerce(value, hint, dotted, source)
            check_range(dotted, coerced, source)
            setattr(node, part, coerced)
        else:
            node = getattr(node, part)
            if not dataclasses.is_dataclass(node):
                raise ConfigError(f"{source}: '{'.'.join(parts[: i + 1])}' is a value, not a section")


def dotted_keys(cfg, prefix: str = ""):
    """Every settable key of a config tree, dotted (`solver.base_lr`)."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            yield from dotted_keys(value, f"{prefix}{f.name}.")
        else:
            yield prefix + f.name


def parse_overrides(items: list[str], source: str = "--set") -> dict:
    """`key=value` strings -> {key: value}, values parsed as YAML scalars/lists (`steps=[10,20]`)."""
    overrides = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"{source}: '{item}' is not of the form key=value (--set takes the "
                              "words after it up to the next option: put other arguments before it)")
        key, text = item.split("=", 1)
        overrides[key.strip()] = yaml.safe_load(text) if text.strip() else ""  # `key=` clears a string
    return overrides


def apply_overrides(cfg: Config, overrides: list[str], source: str = "--set") -> Config:
    """Apply `key=value` strings (see parse_overrides) onto `cfg`."""
    for key, value in parse_overrides(overrides, source).items():
        set_value(cfg, key, value, source=source)
    return cfg


def load_yaml(path: str | Path, base: Config | None = None) -> Config:
    """The Config in the YAML file `path` (sections as in `to_dict`), applied onto `base` (default:
    a fresh Config); every key is checked like a `--set` key.

    Raises:
        ConfigError: the file is missing, not YAML, not a mapping, or has an unknown key or a
            value of the wrong type (the message names the file).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return from_dict(data, base=base, source=str(path))


def save_yaml(cfg: Config, path: str | Path) -> None:
    """Write `cfg` as YAML to `path` (nested sections, atomically); `load_yaml` reads it back."""
    from .fileio import write_text_atomic

    write_text_atomic(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))


def flatten_dict(data: dict, prefix: str = ""):
    """Nested dict -> (dotted key, leaf value) pairs."""
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from flatten_dict(value, dotted + ".")
        else:
            yield dotted, value


def _deep_copy(cfg):
    kwargs = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        kwargs[f.name] = _deep_copy(value) if dataclasses.is_dataclass(value) else value
    return type(cfg)(**kwargs)


def _coerce(value, hint, key: str, source: str):
    """Check/convert a YAML value to the annotated type; raise ConfigError naming the key."""
    origin = typing.get_origin(hint)
    try:
        if origin is tuple:
            if not isinstance(value, (list, tuple)):
                value = [value]
            args = typing.get_args(hint)
            item_types = [args[0]] * len(value) if args[-1] is Ellipsis else list(args)
            if len(item_types) != len(value):
                raise TypeError(f"expected {len(item_types)} items, got {len(value)}")
            return tuple(_scalar(v, t) for v, t in zip(value, item_types))
        if origin in (typing.Union, types.UnionType):
            return _coerce_union(value, typing.get_args(hint), key, source)
        return _scalar(value, hint)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: bad value for '{key}': {value!r} ({exc})") from None


def _coerce_union(value, options: tuple, key: str, source: str):
    """`X | Literal["auto"]`: one of the literal words, else a value of the other type."""
    words = [w for o in options if typing.get_origin(o) is typing.Literal for w in typing.get_args(o)]
    others = [o for o in options if typing.get_origin(o) is not typing.Literal]
    if value in words:
        return value
    if len(others) != 1:
        return value
    if isinstance(value, str) and words:
        raise TypeError(f"expected {' or '.join(map(repr, words))} or a value of type {others[0]}")
    return _coerce(value, others[0], key, source)


def is_auto(value) -> bool:
    """True for a field left to be chosen when the run starts (`min_size=auto`)."""
    return isinstance(value, str) and value == "auto"


def _scalar(value, typ):
    if typ is bool:
        if isinstance(value, bool):
            return value
        raise TypeError("expected true or false")
    if typ is int:
        if isinstance(value, (bool, str)) or not float(value).is_integer():
            raise TypeError("expected an integer")
        return int(value)
    if typ is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError("expected a number")
        if not math.isfinite(float(value)):
            raise ValueError("must be finite")
        return float(value)
    if typ is str:
        if not isinstance(value, str):
            raise TypeError("expected a string")
        return value
    raise TypeError(f"unsupported field type {typ}")

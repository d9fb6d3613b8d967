"""YOLO segmentation (Ultralytics layout) -> COCO: label files written by hand to the format
(normalised polygons, a detection box line, images without labels) against a COCO file written
by hand; the class list from data.yaml, classes.txt or --classes; bad lines named."""

import json

import numpy as np
from PIL import Image

from coco_expect import assert_coco_equal
from maskrcnn.cli import main

# a.png is 20 x 10: x is divided by 20, y by 10
A_LABELS = """\
1 0.05 0.1 0.25 0.1 0.25 0.2 0.15 0.2 0.15 0.4 0.05 0.4
0 0.375 0.2 0.15 0.2
"""

EXPECTED = {
    "images": [{"id": 1, "file_name": "images/train/a.png", "height": 10, "width": 20},
               {"id": 2, "file_name": "images/train/b.png", "height": 4, "width": 6},
               {"id": 3, "file_name": "images/val/c.png", "height": 4, "width": 6}],
    "annotations": [
        {"id": 1, "image_id": 1, "category_id": 2, "iscrowd": 0, "area": 8.0, "bbox": [1, 1, 4, 3],
         "segmentation": [[1, 1, 5, 1, 5, 2, 3, 2, 3, 4, 1, 4]]},
        # the box line: centre (7.5, 2), 3 x 2 pixels
        {"id": 2, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": 6.0, "bbox": [6, 1, 3, 2],
         "segmentation": [[6, 1, 9, 1, 9, 3, 6, 3]]},
    ],
    "categories": [{"id": 1, "name": "dog"}, {"id": 2, "name": "cat"}],
}


def _dataset(root, class_file=("data.yaml", "path: .\ntrain: images/train\nnames:\n  0: dog\n  1: cat\n")):
    rng = np.random.default_rng(0)
    for split, name, size in (("train", "a", (10, 20)), ("train", "b", (4, 6)), ("val", "c", (4, 6))):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (*size, 3), np.uint8)).save(root / "images" / split / f"{name}.png")
    (root / "labels" / "train" / "a.txt").write_text(A_LABELS)
    (root / "labels" / "val" / "c.txt").write_text("")  # labelled: nothing there
    (root / "labels" / "train" / "orphan.txt").write_text("0 0.1 0.1 0.2 0.1 0.2 0.2\n")
    if class_file:
        (root / class_file[0]).write_text(class_file[1])


def _convert(root, out, *extra):
    return main(["convert-dataset", "--format", "yolo-seg", str(root), "--out", str(out), *extra])


def test_dataset_converts_to_the_expected_coco(tmp_path):
    _dataset(tmp_path)
    assert _convert(tmp_path, tmp_path / "coco.json") == 0
    assert_coco_equal(json.loads((tmp_path / "coco.json").read_text()), EXPECTED)


def test_class_list_sources(tmp_path):
    _dataset(tmp_path, ("classes.txt", "dog\ncat\n"))
    assert _convert(tmp_path, tmp_path / "a.json") == 0
    assert_coco_equal(json.loads((tmp_path / "a.json").read_text()), EXPECTED)
    # --classes reorders the categories; the indices in the files keep their names
    assert _convert(tmp_path, tmp_path / "b.json", "--classes", "cat,dog") == 0
    data = json.loads((tmp_path / "b.json").read_text())
    assert data["categories"] == [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]
    assert [a["category_id"] for a in data["annotations"]] == [1, 2]


def test_without_a_class_list_classes_name_the_indices(tmp_path, capsys):
    _dataset(tmp_path / "d", class_file=None)
    assert _convert(tmp_path / "d", tmp_path / "o.json") == 2
    assert "give the names in index order with --classes" in capsys.readouterr().err
    assert _convert(tmp_path / "d", tmp_path / "o.json", "--classes", "dog,cat") == 0
    assert_coco_equal(json.loads((tmp_path / "o.json").read_text()), EXPECTED)


def test_bad_lines_are_named(tmp_path, capsys):
    _dataset(tmp_path)
    label = tmp_path / "labels" / "train" / "a.txt"
    for text, expected in (("0 0.1 0.1 0.2 0.1 0.2 0.2\n2 0.1 0.1 0.2 0.1 0.2 0.2\n", "a.txt: line 2: class index 2"),
                           ("0 0.1 0.1 1.2 0.1 0.2 0.2\n", "a.txt: line 1: coordinates must be normalised"),
                           ("0 0.1 0.1 0.2 0.1 0.2\n", "a.txt: line 1: an odd number (5)"),
                           ("0 0.1 0.1 0.2 0.1 x 0.2\n", "a.txt: line 1: not numbers"),
                           ("1 0.1 0.1\n", "a.txt: line 1: a polygon needs at least 3")):
        label.write_text(text)
        assert _convert(tmp_path, tmp_path / "o.json") == 2
        err = capsys.readouterr().err
        assert expected in err and len(err.strip().splitlines()) == 1, err


def test_roboflow_split_layout(tmp_path, capsys):
    """Roboflow's YOLOv8 export: train/ and valid/ each with images/ + labels/, data.yaml at the
    root with `train: ../train/images` (outside the folder: not read) and the class names."""
    from real_exports import blank_image, converted_masks, polygon_mask, read_json

    (tmp_path / "data.yaml").write_text(
        "train: ../train/images\nval: ../valid/images\ntest: ../test/images\n\nnc: 2\n"
        "names: ['crack', 'hole']\n\nroboflow:\n  workspace: w\n  project: p\n  version: 1\n"
        "  license: CC BY 4.0\n")
    lines = {"train": "1 0.1 0.2 0.6 0.2 0.5 0.9\n", "valid": "0 0 0 1 0 1 0.5 0 0.5\n"}
    for split, line in lines.items():
        blank_image(tmp_path / split / "images" / f"{split}_1.jpg", 10, 20)
        (tmp_path / split / "labels").mkdir()
        (tmp_path / split / "labels" / f"{split}_1.txt").write_text(line)
    out = tmp_path / "coco.json"
    assert main(["convert-dataset", str(tmp_path), "--out", str(out)]) == 0
    assert "format: yolo-seg" in capsys.readouterr().out
    masks = converted_masks(read_json(out))
    for split, line in lines.items():
        values = [float(v) for v in line.split()]
        points = [v * (20 if i % 2 == 0 else 10) for i, v in enumerate(values[1:])]
        (name, mask), = masks[f"{split}/images/{split}_1.jpg"]
        assert name == ["crack", "hole"][int(values[0])]
        assert np.array_equal(mask, polygon_mask([points], 10, 20))


def test_real_label_file(tmp_path, capsys):
    """A real YOLO-seg label file and class list (tests/data/fixtures/yolo_seg/SOURCE.md) on a
    blank 640 x 329 image: every object's mask equals COCO's rasterisation of its raw points."""
    import shutil

    from real_exports import FIXTURES, blank_image, converted_masks, polygon_mask, read_json

    root = tmp_path / "export"
    shutil.copytree(FIXTURES / "yolo_seg", root, ignore=shutil.ignore_patterns("SOURCE.md"))
    blank_image(root / "images" / "img_2.jpg", 329, 640)
    out = tmp_path / "coco.json"
    assert main(["convert-dataset", str(root), "--out", str(out)]) == 0
    assert "format: yolo-seg" in capsys.readouterr().out
    names = (root / "classes.txt").read_text().split()
    expected = []
    for line in (root / "labels" / "img_2.txt").read_text().splitlines():
        cls, *coords = line.split()
        points = [float(v) * (640 if i % 2 == 0 else 329) for i, v in enumerate(coords)]
        expected.append((names[int(cls)], polygon_mask([points], 329, 640)))
    got = converted_masks(read_json(out))["images/img_2.jpg"]
    assert len(got) == len(expected) == 4
    for (name, mask), (true_name, truth) in zip(got, expected):
        assert name == true_name and truth.sum() > 300 and np.array_equal(mask, truth)

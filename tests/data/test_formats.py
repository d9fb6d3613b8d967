"""Format detection from a file's content or a folder's layout, and train / check-data taking a
tool's export directly (converted into the output folder)."""

import json

import numpy as np
import pytest
import yaml
from PIL import Image

from maskrcnn.cli import main
from maskrcnn.data.formats import detect_format
from maskrcnn.errors import DatasetError
from real_exports import blank_image, copy_fixture, read_json


def _write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


LAYOUTS = {
    "coco": lambda p: _write(p / "a.json", {"images": [], "annotations": [], "categories": []}),
    "via": lambda p: _write(p / "a.json", {"x.png1": {"filename": "x.png", "regions": {}}}),
    "via2 project": lambda p: _write(p / "a.json", {"_via_img_metadata": {}, "_via_attributes": {}}),
    "via3": lambda p: _write(p / "a.json", {"project": {}, "file": {}, "metadata": {}, "view": {}}),
    "label-studio": lambda p: _write(p / "a.json", [{"id": 1, "data": {"image": "x"}, "annotations": []}]),
    "cvat": lambda p: _write(p / "annotations.xml", "<annotations><version>1.1</version></annotations>").parent,
    "cvat file": lambda p: _write(p / "a.xml", "<annotations></annotations>"),
    "labelme": lambda p: _write(p / "sub" / "a.json", {"shapes": [], "imagePath": "a.png"}).parent.parent,
    "yolo-seg": lambda p: _write(p / "labels" / "a.txt", "").parent.parent / "images",
    "yolo-seg splits": lambda p: _write(p / "valid" / "labels" / "a.txt", "").parent.parent / "images",
    "pennfudan": lambda p: (p / "PNGImages").mkdir() or (p / "PedMasks").mkdir() or p,
}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_detects_each_format(tmp_path, layout):
    src = LAYOUTS[layout](tmp_path)
    if layout.startswith("yolo-seg"):
        src.mkdir()
        src = src.parent if layout == "yolo-seg" else src.parent.parent
    assert detect_format(src)[0] == {"via2 project": "via", "cvat file": "cvat"}.get(
        layout, layout.split()[0])


def test_unknown_content_is_one_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="unknown annotation format"):
        detect_format(_write(tmp_path / "a.json", {"hello": 1}))
    with pytest.raises(DatasetError, match="give the folder of LabelMe files"):
        detect_format(_write(tmp_path / "b.json", {"shapes": []}))
    with pytest.raises(DatasetError, match="unknown dataset layout"):
        detect_format(_write(tmp_path / "e" / "x.txt", "").parent)


def test_check_data_takes_a_roboflow_export(tmp_path, capsys):
    path = copy_fixture("roboflow_coco", "_annotations.coco.json", tmp_path / "train")
    for image in read_json(path)["images"]:
        blank_image(tmp_path / "train" / image["file_name"], image["height"], image["width"])
    out = tmp_path / "check"
    assert main(["check-data", "--data", str(path), "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert "dropped category 0 'court'" in stdout and "converted to" in stdout
    assert (out / "data" / "train" / "_annotations.coco.json").is_file()
    stats = read_json(out / "check.json")["stats"]
    assert stats["instances_per_class"] == {"court": 9, "net": 9} and stats["images"] == 9


def _labelme_folder(folder, count=2, size=64):
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 255, (size, size, 3), np.uint8)).save(folder / f"{i}.png")
        shapes = [{"label": "box", "points": [[8, 8], [40, 30]], "shape_type": "rectangle",
                   "group_id": None, "flags": {}}]
        _write(folder / f"{i}.json", {"version": "5.4.1", "shapes": shapes, "imagePath": f"{i}.png",
                                      "imageData": None, "imageHeight": size, "imageWidth": size})


def test_train_takes_a_labelme_folder(tmp_path, capsys):
    folder = tmp_path / "labelled"
    folder.mkdir()
    _labelme_folder(folder)
    tiny = ["input.min_size=[64]", "input.max_size=64", "model.backbone.fpn_channels=32",
            "model.rpn.pre_nms_topk_train=100", "model.rpn.post_nms_topk_train=50",
            "model.rpn.batch_size_per_image=64", "model.box.batch_size_per_image=32",
            "model.box.fc_dim=64", "model.mask.conv_dims=[16]", "data.num_workers=0",
            "solver.ims_per_batch=1", "solver.warmup_iters=1", "solver.max_iter=1"]
    run = tmp_path / "run"
    assert main(["train", "--model", "maskrcnn_r18_fpn", "--data", str(folder), "--out", str(run),
                 "--set", *tiny]) == 0
    assert "detected labelme" in capsys.readouterr().out
    converted = run / "data" / "train" / "labelled.coco.json"
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["data"]["train_ann"] == str(converted.resolve())
    assert config["data"]["train_images"] == str(folder.resolve())
    assert (run / "model_final.pt").is_file()

"""VIA 3 project json -> COCO: a project in the layout VIA 3.0 saves (the structure of the demo
project shipped in VIA 3's source: `project`, `config`, `attribute`, `file`, `metadata`, `view`),
masks against hand-computed pixels and COCO's rasterisation of the raw coordinates."""

import json

import numpy as np

from maskrcnn.cli import main
from real_exports import blank_image, converted_masks, polygon_mask, read_json


def _project(classes=True):
    attribute = {"1": {"aname": "screws", "anchor_id": "FILE1_Z0_XY1", "type": 3, "desc": "",
                       "options": {"0": "cyl", "1": "hex"}, "default_option_id": ""}}
    av = (lambda v: {"1": v}) if classes else (lambda v: {})
    return {
        "project": {"pid": "__VIA_PROJECT_ID__", "rev": "__VIA_PROJECT_REV_ID__",
                    "pname": "Unnamed VIA Project", "vid_list": ["1"]},
        "config": {"file": {"loc_prefix": {"1": "", "2": "", "3": "", "4": ""}}},
        "attribute": attribute if classes else {},
        "file": {"1": {"fid": "1", "fname": "a.png", "type": 2, "loc": 1, "src": "a.png"}},
        "metadata": {
            "1_c": {"vid": "1", "flg": 0, "z": [], "xy": [3, 5, 4, 2], "av": av("0")},
            "1_p": {"vid": "1", "flg": 0, "z": [], "xy": [7, 1.5, 1, 9, 2, 6.5, 8], "av": av("1")},
            "1_r": {"vid": "1", "flg": 0, "z": [], "xy": [2, 10, 1, 3, 2.5], "av": av("1")},
            "1_x": {"vid": "1", "flg": 0, "z": [], "xy": [8, 1, 1, 4, 4, 2, 6, 3, 3], "av": av("0")},
        },
        "view": {"1": {"fid_list": ["1"]}},
    }


def test_project_converts(tmp_path, capsys):
    blank_image(tmp_path / "a.png", 10, 14)
    (tmp_path / "project.json").write_text(json.dumps(_project()))
    out = tmp_path / "coco.json"
    assert main(["convert-dataset", str(tmp_path / "project.json"), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "format: via3" in captured.out and "VIA extreme rectangle" in captured.err
    coco = read_json(out)
    assert [c["name"] for c in coco["categories"]] == ["cyl", "hex"]
    got = converted_masks(coco)["a.png"]
    ys, xs = np.mgrid[0:10, 0:14] + 0.5
    circle = (xs - 5) ** 2 + (ys - 4) ** 2 <= 4  # pixels whose centre is within r = 2
    polygon = polygon_mask([[1.5, 1, 9, 2, 6.5, 8]], 10, 14)
    rect = polygon_mask([[10, 1, 13, 1, 13, 3.5, 10, 3.5]], 10, 14)  # x, y, w, h = 10, 1, 3, 2.5
    assert [n for n, _ in got] == ["cyl", "hex", "hex"]
    for (_, mask), truth in zip(got, (circle, polygon, rect)):
        assert truth.any() and np.array_equal(mask, truth)


def test_project_without_attributes_is_one_class(tmp_path, capsys):
    blank_image(tmp_path / "screws" / "a.png", 10, 14)
    (tmp_path / "screws" / "project.json").write_text(json.dumps(_project(classes=False)))
    out = tmp_path / "coco.json"
    assert main(["convert-dataset", str(tmp_path / "screws" / "project.json"), "--out", str(out)]) == 0
    assert "every region is one class, 'screws'" in capsys.readouterr().err
    assert read_json(out)["categories"] == [{"id": 1, "name": "screws"}]

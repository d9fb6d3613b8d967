"""VIA 2.x project json -> COCO: a project written by hand to the VIA 2 format against a COCO
file written by hand (masks pixel by pixel), class order, and bad files named with the item."""

import json
import math

import numpy as np
from PIL import Image

from maskrcnn.cli import main

from coco_expect import assert_coco_equal

PROJECT = {
    "_via_settings": {"ui": {}, "core": {"buffer_size": 18, "filepath": {}, "default_filepath": ""},
                      "project": {"name": "pets"}},
    "_via_img_metadata": {
        "img1.png360": {"filename": "img1.png", "size": 360, "file_attributes": {}, "regions": [
            {"shape_attributes": {"name": "polygon", "all_points_x": [1, 5, 5, 3, 3, 1],
                                  "all_points_y": [1, 1, 2, 2, 4, 4]},
             "region_attributes": {"species": "cat", "notes": "an L"}},
            {"shape_attributes": {"name": "rect", "x": 6, "y": 1, "width": 3, "height": 2},
             "region_attributes": {"species": "dog", "notes": ""}},
            {"shape_attributes": {"name": "circle", "cx": 5, "cy": 7, "r": 2},
             "region_attributes": {"species": "cat", "notes": ""}},
            {"shape_attributes": {"name": "ellipse", "cx": 10, "cy": 5, "rx": 3, "ry": 1,
                                  "theta": math.pi / 2},
             "region_attributes": {"species": "dog", "notes": ""}},
            {"shape_attributes": {"name": "point", "cx": 2, "cy": 8},
             "region_attributes": {"species": "dog", "notes": "a point has no area"}},
        ]},
        "img2.png100": {"filename": "img2.png", "size": 100, "file_attributes": {}, "regions": []},
    },
    "_via_attributes": {
        "region": {
            "species": {"type": "dropdown", "description": "", "options": {"dog": "", "cat": ""},
                        "default_options": {}},
            "notes": {"type": "text", "description": "", "default_value": ""},
        },
        "file": {},
    },
    "_via_data_format_version": "2.0.10",
    "_via_image_id_list": ["img1.png360", "img2.png100"],
}

# pixel edges: the rect covers x 6..8, y 1..2; the circle (centre 5, 7, radius 2) the 12 pixels
# whose centres are within 2 of it; the ellipse (radii 3 and 1 turned 90 degrees) x 9..10, y 2..7
EXPECTED = {
    "images": [{"id": 1, "file_name": "img1.png", "height": 10, "width": 12},
               {"id": 2, "file_name": "img2.png", "height": 4, "width": 6}],
    "annotations": [
        {"id": 1, "image_id": 1, "category_id": 2, "iscrowd": 0, "area": 8.0, "bbox": [1, 1, 4, 3],
         "segmentation": [[1, 1, 5, 1, 5, 2, 3, 2, 3, 4, 1, 4]]},
        {"id": 2, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": 6.0, "bbox": [6, 1, 3, 2],
         "segmentation": [[6, 1, 9, 1, 9, 3, 6, 3]]},
        {"id": 3, "image_id": 1, "category_id": 2, "iscrowd": 0, "area": 12.0, "bbox": [3, 5, 4, 4],
         "segmentation": [[4, 5, 6, 5, 6, 6, 7, 6, 7, 8, 6, 8, 6, 9, 4, 9, 4, 8, 3, 8, 3, 6, 4, 6]]},
        {"id": 4, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": 12.0, "bbox": [9, 2, 2, 6],
         "segmentation": [[9, 2, 11, 2, 11, 8, 9, 8]]},
    ],
    "categories": [{"id": 1, "name": "dog"}, {"id": 2, "name": "cat"}],
}


def _project(tmp_path, project=PROJECT):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (10, 12, 3), np.uint8)).save(tmp_path / "img1.png")
    Image.fromarray(rng.integers(0, 255, (4, 6, 3), np.uint8)).save(tmp_path / "img2.png")
    path = tmp_path / "project.json"
    path.write_text(json.dumps(project))
    return path


def _convert(path, out, *extra):
    return main(["convert-dataset", "--format", "via", str(path), "--out", str(out), *extra])


def test_project_converts_to_the_expected_coco(tmp_path):
    out = tmp_path / "coco.json"
    assert _convert(_project(tmp_path), out, "--class-attribute", "species") == 0
    assert_coco_equal(json.loads(out.read_text()), EXPECTED)


def test_classes_fix_the_category_order(tmp_path):
    out = tmp_path / "coco.json"
    assert _convert(_project(tmp_path), out, "--class-attribute", "species", "--classes", "cat,dog") == 0
    data = json.loads(out.read_text())
    assert data["categories"] == [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]
    assert [a["category_id"] for a in data["annotations"]] == [1, 2, 1, 2]


def _fails(capsys, argv_result, *expected):
    assert argv_result == 2
    err = capsys.readouterr().err  # warnings for skipped regions may come before it
    assert len([line for line in err.strip().splitlines() if ": error: " in line]) == 1
    for text in expected:
        assert text in err, err


def test_bad_files_are_named_with_the_item(tmp_path, capsys):
    path = _project(tmp_path)
    _fails(capsys, _convert(path, tmp_path / "o.json"), "project.json", "2 region attributes",
           "--class-attribute")
    _fails(capsys, _convert(path, tmp_path / "o.json", "--class-attribute", "species",
                            "--classes", "cat"), "img1.png' region 1", "class 'dog' is not in --classes")
    broken = json.loads(json.dumps(PROJECT))
    del broken["_via_img_metadata"]["img1.png360"]["regions"][2]["shape_attributes"]["r"]
    path.write_text(json.dumps(broken))
    _fails(capsys, _convert(path, tmp_path / "o.json", "--class-attribute", "species"),
           "img1.png' region 2", "circle lacks 'r'")
    broken = json.loads(json.dumps(PROJECT))
    broken["_via_img_metadata"]["img2.png100"]["filename"] = "gone.png"
    path.write_text(json.dumps(broken))
    _fails(capsys, _convert(path, tmp_path / "o.json", "--class-attribute", "species"),
           "image 'gone.png'", "not found")
    path.write_text(json.dumps(PROJECT)[:-20])
    _fails(capsys, _convert(path, tmp_path / "o.json"), "project.json", "not valid JSON")
    assert not (tmp_path / "o.json").exists()


# --- real exports (tests/data/fixtures/via/SOURCE.md) ---

# The Matterport Mask_RCNN balloon tutorial's val/via_region_data.json (VIA 1.x: regions in a
# dict, no region attributes), its first 4 images. The photos are not in the fixture: blank
# images of the Flickr size classes stand in (_k: 2048 px long side, _b: 1024 px; 4:3 assumed),
# only their size matters here.
BALLOON_SIZES = {"24631331976_defa3bb61f_k.jpg": (1536, 2048), "5555705118_3390d70abe_b.jpg": (768, 1024),
                 "4838031651_3e7b5ea5c7_b.jpg": (768, 1024), "4581425993_72b9b15fc0_b.jpg": (768, 1024)}


def test_balloon_tutorial_project_converts_with_no_flags(tmp_path, capsys):
    from real_exports import blank_image, converted_masks, copy_fixture, polygon_mask, read_json

    folder = tmp_path / "balloon" / "train"  # the tutorial's layout
    path = copy_fixture("via", "via_region_data.json", folder)
    for name, (h, w) in BALLOON_SIZES.items():
        blank_image(folder / name, h, w)
    out = tmp_path / "coco.json"
    assert main(["convert-dataset", str(path), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "format: via" in captured.out
    notice = [line for line in captured.err.splitlines() if "no region attribute" in line]
    assert len(notice) == 1 and "'balloon'" in notice[0], captured.err
    coco = read_json(out)
    assert coco["categories"] == [{"id": 1, "name": "balloon"}]
    masks = converted_masks(coco)
    for entry in read_json(path).values():  # the raw file, read independently
        h, w = BALLOON_SIZES[entry["filename"]]
        expected = [polygon_mask([[v for xy in zip(r["shape_attributes"]["all_points_x"],
                                                   r["shape_attributes"]["all_points_y"]) for v in xy]], h, w)
                    for r in entry["regions"].values()]
        got = masks[entry["filename"]]
        assert [name for name, _ in got] == ["balloon"] * len(expected)
        for (_, mask), truth in zip(got, expected):
            assert truth.any() and np.array_equal(mask, truth)


def test_one_class_project_takes_class_name(tmp_path, capsys):
    from real_exports import blank_image, copy_fixture, read_json

    path = copy_fixture("via", "via_region_data.json", tmp_path / "photos")
    for name, (h, w) in BALLOON_SIZES.items():
        blank_image(tmp_path / "photos" / name, h, w)
    assert main(["convert-dataset", "--format", "via", str(path), "--out", str(tmp_path / "a.json")]) == 0
    assert read_json(tmp_path / "a.json")["categories"] == [{"id": 1, "name": "photos"}]
    assert main(["convert-dataset", str(path), "--out", str(tmp_path / "b.json"),
                 "--class-name", "ballon"]) == 0
    assert read_json(tmp_path / "b.json")["categories"] == [{"id": 1, "name": "ballon"}]


def test_vertex_past_the_far_edge_is_clipped(tmp_path, capsys):
    """A rect drawn to x == width and a polygon past it: both end at the image's edge; check-data
    then reports nothing skipped or clipped."""
    Image.new("RGB", (20, 10)).save(tmp_path / "a.png")
    regions = [{"shape_attributes": {"name": "polygon", "all_points_x": [10, 20, 20, 10],
                                     "all_points_y": [0, 0, 10, 10]}, "region_attributes": {}},
               {"shape_attributes": {"name": "polygon", "all_points_x": [12, 23, 23, 12],
                                     "all_points_y": [2, 2, 12, 12]}, "region_attributes": {}}]
    (tmp_path / "v.json").write_text(json.dumps({"a.png1": {"filename": "a.png", "regions": regions}}))
    assert main(["convert-dataset", str(tmp_path / "v.json"), "--out", str(tmp_path / "c.json")]) == 0
    assert "clipped 1 polygons" in capsys.readouterr().err
    anns = json.loads((tmp_path / "c.json").read_text())["annotations"]
    assert anns[0]["segmentation"] == [[10, 0, 20, 0, 20, 10, 10, 10]]  # on the edge: unchanged
    assert anns[1]["segmentation"] == [[12, 2, 20, 2, 20, 10, 12, 10]]  # past it: clipped
    assert anns[1]["bbox"] == [12, 2, 8, 8] and anns[1]["area"] == 64

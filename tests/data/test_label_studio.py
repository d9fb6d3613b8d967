"""Label Studio JSON export -> COCO: a real export (tests/data/fixtures/label_studio/SOURCE.md)
against COCO's rasterisation of its raw percent coordinates; rotated rectangles, brush masks and
`labels` results joined to their shape, against hand-computed pixels."""

import json

import numpy as np
import pytest

from maskrcnn.cli import main
from real_exports import blank_image, converted_masks, copy_fixture, polygon_mask, read_json


def test_real_polygon_export(tmp_path, capsys):
    path = copy_fixture("label_studio", "data_polygons.json", tmp_path / "export")
    blank_image(tmp_path / "export" / "000000000025.jpg", 426, 640)  # upload name minus its prefix
    out = tmp_path / "coco.json"
    assert main(["convert-dataset", str(path), "--out", str(out)]) == 0
    assert "format: label-studio" in capsys.readouterr().out
    coco = read_json(out)
    result = read_json(path)[0]["annotations"][0]["result"][0]
    w, h = result["original_width"], result["original_height"]
    points = [v for x, y in result["value"]["points"] for v in (x * w / 100, y * h / 100)]
    (name, mask), = converted_masks(coco)["000000000025.jpg"]
    assert name == "Airplane"
    truth = polygon_mask([points], h, w)
    assert truth.sum() > 1000 and np.array_equal(mask, truth)


def test_brush_decoder_matches_label_studios_encoder():
    """Label Studio's own encoder (label-studio-converter, Apache-2.0: tests/test_brush.py,
    `test_rle_encoding`) packs these 18 values into these 21 bytes; decoding gives them back."""
    from maskrcnn.data.label_studio_rle import decode_values

    packed = [0, 0, 0, 18, 57, 27, 252, 96, 32, 1, 0, 6, 0, 40, 0, 192, 3, 128, 17, 56, 32]
    assert decode_values(packed).tolist() == [1, 1, 1, 1, 2, 3, 5, 6, 7, 8] + [4] * 8


def _task(results, image="/data/upload/3/0a1b2c3d-a.png"):
    return {"id": 7, "data": {"image": image},
            "annotations": [{"id": 1, "was_cancelled": True, "result": []},
                            {"id": 2, "was_cancelled": False, "result": results}]}


def _bits(values, width):
    return "".join(format(v, f"0{width}b") for v in values)


def brush_rle(alpha: np.ndarray) -> list[int]:
    """A hand encoding of the documented rle-pack layout: every pixel's RGBA as literal blocks of
    4 values (a different block structure than Label Studio's encoder writes, same format)."""
    values = np.zeros((*alpha.shape, 4), np.int64)
    values[..., 3] = alpha
    flat = values.reshape(-1).tolist()
    bits = _bits([len(flat)], 32) + _bits([8 - 1], 5) + _bits([2 - 1] * 4, 4)  # run fields: 2 bits
    for i in range(0, len(flat), 4):
        bits += "0" + "00" + _bits([4 - 1], 2) + _bits(flat[i:i + 4], 8)  # literal run of 4
    bits += "0" * (-len(bits) % 8)
    return [int(bits[i:i + 8], 2) for i in range(0, len(bits), 8)]


def test_brush_rectangle_and_joined_labels(tmp_path):
    blank_image(tmp_path / "a.png", 3, 5)
    alpha = np.zeros((3, 5), np.int64)
    alpha[0, 1], alpha[1, 1:3], alpha[2, 4] = 255, 200, 127  # 127: under half coverage
    results = [
        {"id": "b", "type": "brushlabels", "original_width": 5, "original_height": 3,
         "value": {"format": "rle", "rle": brush_rle(alpha), "brushlabels": ["cat"]}},
        {"id": "r", "type": "rectanglelabels", "original_width": 5, "original_height": 3,
         "value": {"x": 20, "y": 0, "width": 40, "height": 100 / 3, "rotation": 90,
                   "rectanglelabels": ["dog"]}},
        {"id": "p", "type": "polygon", "original_width": 5, "original_height": 3,
         "value": {"points": [[0, 0], [40, 0], [40, 100], [0, 100]]}},
        {"id": "p", "type": "labels", "value": {"labels": ["dog"]}},
        {"id": "k", "type": "keypointlabels", "value": {"x": 1, "y": 1, "keypointlabels": ["dog"]}},
    ]
    (tmp_path / "export.json").write_text(json.dumps([_task(results)]))
    out = tmp_path / "coco.json"
    assert main(["convert-dataset", "--format", "label-studio", str(tmp_path / "export.json"),
                 "--out", str(out)]) == 0
    got = converted_masks(read_json(out))["a.png"]
    brush = np.zeros((3, 5), bool)
    brush[0, 1] = brush[1, 1] = brush[1, 2] = True
    # the 2 x 1 px box at (1, 0) turned 90 degrees clockwise about its top-left corner covers
    # x in [0, 1], y in [0, 2]: pixel column 0, rows 0-1
    rotated = np.zeros((3, 5), bool)
    rotated[0:2, 0] = True
    polygon = np.zeros((3, 5), bool)
    polygon[:, 0:2] = True
    assert [n for n, _ in got] == ["cat", "dog", "dog"]
    for (_, mask), truth in zip(got, (brush, rotated, polygon)):
        assert np.array_equal(mask, truth)


@pytest.mark.parametrize("image", ["/data/local-files/?d=../outside.png", "/data/upload/1/x.png"])
def test_missing_or_escaping_image_is_one_line(tmp_path, capsys, image):
    blank_image(tmp_path / "outside.png", 3, 5)
    (tmp_path / "ls").mkdir()
    (tmp_path / "ls" / "export.json").write_text(json.dumps([_task([], image)]))
    assert main(["convert-dataset", str(tmp_path / "ls" / "export.json"), "--out",
                 str(tmp_path / "o.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "export.json: task 7" in err
    assert ("leaves the dataset folder" if "outside" in image else "not found") in err


# --- Label Studio's own files (tests/data/fixtures/label_studio/SOURCE.md) ---


def _corners(value, w, h):
    """An unrotated rectangle result's 4 corners in pixels, from its raw percent values."""
    x, y = value["x"] * w / 100, value["y"] * h / 100
    x2, y2 = x + value["width"] * w / 100, y + value["height"] * h / 100
    return [x, y, x2, y, x2, y2, x, y2]


def test_editor_example_with_brush_relations_and_joined_labels(tmp_path, capsys):
    """The Label Studio editor's own example annotation (examples/image_tools): a brush stroke the
    editor encoded, rectangles, an ellipse (a mask), keypoints and a polygon whose classes are separate
    `labels` results, 2 rectanglelabels and 2 `relation` results (no 'value'). The brush must
    equal Label Studio's own decoder's mask (alpha >= 128, stored as COCO RLE); the polygons
    pycocotools' rasterisation of the raw percent coordinates."""
    import gzip

    from real_exports import FIXTURES

    folder = FIXTURES / "label_studio"
    annotation = json.loads(gzip.decompress((folder / "image_tools_annotation.json.gz").read_bytes()))
    data = read_json(folder / "image_tools_tasks.json")[0]["data"]
    # the example keeps the task's data and its annotation in two files: joined into one task
    (tmp_path / "export.json").write_text(json.dumps([{"id": annotation["id"], "data": data,
                                                       "annotations": annotation["annotations"]}]))
    results = annotation["annotations"][0]["result"]
    h, w = results[0]["original_height"], results[0]["original_width"]
    blank_image(tmp_path / data["image"].rsplit("/", 1)[1], h, w)  # found by the URL's file name
    out = tmp_path / "coco.json"
    assert main(["convert-dataset", str(tmp_path / "export.json"), "--out", str(out)]) == 0
    assert "3 x Label Studio keypoint, 2 x Label Studio relation" in capsys.readouterr().err
    labels = {r["id"]: r["value"]["labels"][0] for r in results if r["type"] == "labels"}
    expected = []  # (class, truth) in the order of the raw results
    for r in (r for r in results if r["type"] in ("rectangle", "rectanglelabels", "polygon", "brush", "ellipse")):
        name = labels.get(r["id"]) or r["value"].get("rectanglelabels", [None])[0]
        if r["type"] in ("rectangle", "rectanglelabels"):
            expected.append((name, polygon_mask([_corners(r["value"], w, h)], h, w)))
        elif r["type"] == "polygon":
            points = [v for x, y in r["value"]["points"] for v in (x * w / 100, y * h / 100)]
            expected.append((name, polygon_mask([points], h, w)))
        elif r["type"] == "ellipse":  # unrotated: pixel centres inside, about the centre x, y
            v = r["value"]
            assert v["rotation"] == 0
            ys, xs = np.mgrid[0:h, 0:w] + 0.5
            inside = (((xs - v["x"] * w / 100) / (v["radiusX"] * w / 100)) ** 2
                      + ((ys - v["y"] * h / 100) / (v["radiusY"] * h / 100)) ** 2) <= 1
            expected.append((name, inside))
        else:  # brush
            from pycocotools import mask as mask_utils

            truth = mask_utils.decode(read_json(folder / "image_tools_brush_mask.json")).astype(bool)
            expected.append((name, truth))
    got = converted_masks(read_json(out))[data["image"].rsplit("/", 1)[1]]
    assert [n for n, _ in got] == [n for n, _ in expected] == (
        ["Moonwalker", "Moonwalker", "Moonwalker", "Planet", "Planet", "Moonwalker", "Planet"])
    for (_, mask), (_, truth) in zip(got, expected):
        assert truth.sum() > 50_000 and np.array_equal(mask, truth)


def test_real_export_with_rectangle_polygon_and_keypoints(tmp_path, capsys):
    """label-studio-sdk's test export (a task as a Label Studio server exported it): a rectangle
    and a 3-point polygon on a 500 x 320 image, against pycocotools' rasterisation of the raw
    percent coordinates; its two keypoints are skipped."""
    path = copy_fixture("label_studio", "export_for_coco.json", tmp_path / "export")
    blank_image(tmp_path / "export" / "test_image1.jpg", 320, 500)
    out = tmp_path / "coco.json"
    assert main(["convert-dataset", str(path), "--out", str(out)]) == 0
    assert "2 x Label Studio keypointlabels" in capsys.readouterr().err
    results = read_json(path)[0]["annotations"][0]["result"]
    rect, polygon = results[0]["value"], results[1]["value"]
    points = [v for x, y in polygon["points"] for v in (x * 500 / 100, y * 320 / 100)]
    got = converted_masks(read_json(out))["test_image1.jpg"]
    assert [n for n, _ in got] == ["rectangle_label", "polygon_label"]
    for (_, mask), truth in zip(got, (polygon_mask([_corners(rect, 500, 320)], 320, 500),
                                      polygon_mask([points], 320, 500))):
        assert truth.sum() > 100 and np.array_equal(mask, truth)


def test_ellipse_turns_clockwise_about_its_centre(tmp_path):
    """Label Studio's editor draws an ellipse centred at x, y and turns it `rotation` degrees
    clockwise on screen (Konva's convention, y down): at 45 degrees the long axis runs from the
    top left to the bottom right. Radii are percent of the width and of the height."""
    blank_image(tmp_path / "a.png", 50, 200)  # 1 % = 2 px across, 0.5 px down
    value = {"x": 25, "y": 50, "radiusX": 10, "radiusY": 8, "rotation": 45}  # 20 x 4 px radii
    results = [{"id": "e", "type": "ellipselabels", "original_width": 200, "original_height": 50,
                "value": {**value, "ellipselabels": ["cell"]}},
               {"id": "f", "type": "ellipselabels", "original_width": 200, "original_height": 50,
                "value": {**value, "x": 75, "rotation": 90, "ellipselabels": ["cell"]}}]
    (tmp_path / "export.json").write_text(json.dumps([_task(results)]))
    out = tmp_path / "coco.json"
    assert main(["convert-dataset", str(tmp_path / "export.json"), "--out", str(out)]) == 0
    (_, turned), (_, upright) = converted_masks(read_json(out))["a.png"]
    # centre (50, 25) px; 12 px along the long axis: down-right and up-left inside, the others out
    assert turned[25 + 8, 50 + 8] and turned[25 - 9, 50 - 9]
    assert not turned[25 - 9, 50 + 8] and not turned[25 + 8, 50 - 9]
    # at 90 degrees the 20 px radius runs down the image and the 4 px one across
    ys, xs = np.mgrid[0:50, 0:200] + 0.5
    assert np.array_equal(upright, ((xs - 150) / 4) ** 2 + ((ys - 25) / 20) ** 2 <= 1)

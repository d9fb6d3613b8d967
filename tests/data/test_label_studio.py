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

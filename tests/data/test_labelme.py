"""LabelMe json -> COCO: files written by hand to LabelMe's format (polygon, rectangle, circle,
mask, grouped shapes, embedded imageData) against a COCO file written by hand."""

import base64
import io
import json

import numpy as np
from PIL import Image

from coco_expect import assert_coco_equal
from maskrcnn.cli import main


def _png_base64(array) -> str:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _shape(label, points, kind, group=None, **extra):
    return {"label": label, "points": points, "group_id": group, "description": "",
            "shape_type": kind, "flags": {}, **extra}


A_SHAPES = [
    _shape("cat", [[1, 1], [5, 1], [5, 2], [3, 2], [3, 4], [1, 4]], "polygon"),
    _shape("dog", [[9, 3], [6, 1]], "rectangle"),  # opposite corners, in either order
    _shape("cat", [[5, 7], [7, 7]], "circle"),  # centre, then a point on the circle: radius 2
    _shape("dog", [[9, 5], [11, 5], [11, 6], [9, 6]], "polygon", group=1),
    _shape("line", [[0, 0], [3, 3]], "line"),
    _shape("dog", [[9, 8], [11, 8], [11, 9], [9, 9]], "polygon", group=1),  # same dog, 2nd part
    _shape("cat", [[0, 8], [1, 9]], "mask",
           mask=_png_base64(np.array([[255, 0], [255, 255]], np.uint8))),
]

EXPECTED = {
    "images": [{"id": 1, "file_name": "a.png", "height": 10, "width": 12},
               {"id": 2, "file_name": "sub/b.png", "height": 4, "width": 6}],
    "annotations": [
        {"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": 8.0, "bbox": [1, 1, 4, 3],
         "segmentation": [[1, 1, 5, 1, 5, 2, 3, 2, 3, 4, 1, 4]]},
        {"id": 2, "image_id": 1, "category_id": 2, "iscrowd": 0, "area": 6.0, "bbox": [6, 1, 3, 2],
         "segmentation": [[6, 1, 9, 1, 9, 3, 6, 3]]},
        {"id": 3, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": 12.0, "bbox": [3, 5, 4, 4],
         "segmentation": [[4, 5, 6, 5, 6, 6, 7, 6, 7, 8, 6, 8, 6, 9, 4, 9, 4, 8, 3, 8, 3, 6, 4, 6]]},
        {"id": 4, "image_id": 1, "category_id": 2, "iscrowd": 0, "area": 4.0, "bbox": [9, 5, 2, 4],
         "segmentation": [[9, 5, 11, 5, 11, 6, 9, 6], [9, 8, 11, 8, 11, 9, 9, 9]]},
        {"id": 5, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": 3.0, "bbox": [0, 8, 2, 2],
         "segmentation": [[0, 8, 1, 8, 1, 9, 2, 9, 2, 10, 0, 10]]},
    ],
    "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
}


def _folder(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (10, 12, 3), np.uint8)).save(tmp_path / "a.png")
    a = {"version": "5.4.1", "flags": {}, "shapes": A_SHAPES, "imagePath": "a.png",
         "imageData": None, "imageHeight": 10, "imageWidth": 12}
    (tmp_path / "a.json").write_text(json.dumps(a))
    (tmp_path / "sub").mkdir()
    embedded = rng.integers(0, 255, (4, 6, 3), np.uint8)
    b = {"version": "5.4.1", "flags": {}, "shapes": [], "imagePath": "b.png",
         "imageData": _png_base64(embedded), "imageHeight": 4, "imageWidth": 6}
    (tmp_path / "sub" / "b.json").write_text(json.dumps(b))
    return embedded


def _convert(tmp_path, out):
    return main(["convert-dataset", "--format", "labelme", str(tmp_path), "--out", str(out)])


def test_folder_converts_to_the_expected_coco(tmp_path):
    embedded = _folder(tmp_path)
    out = tmp_path / "out" / "coco.json"
    assert _convert(tmp_path, out) == 0
    assert_coco_equal(json.loads(out.read_text()), EXPECTED)
    assert _convert(tmp_path, out) == 0  # again: its own output in the folder is not read
    assert_coco_equal(json.loads(out.read_text()), EXPECTED)
    # the image that only existed as imageData is now where LabelMe looks for it
    assert np.array_equal(np.asarray(Image.open(tmp_path / "sub" / "b.png")), embedded)


def test_bad_files_are_named_with_the_item(tmp_path, capsys):
    _folder(tmp_path)
    a = json.loads((tmp_path / "a.json").read_text())

    def fails(data, *expected):
        (tmp_path / "a.json").write_text(json.dumps(data))
        assert _convert(tmp_path, tmp_path / "o.json") == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1
        for text in expected:
            assert text in err, err

    fails({**a, "shapes": a["shapes"][:1] + [_shape("dog", [[1, 1], [2, 2], [3, 3]], "rectangle")]},
          "a.json: shape 1", "rectangle needs 2 points")
    fails({**a, "shapes": [_shape("dog", [[1, 1], [2, 2]], "polygon")]},
          "a.json: shape 0", "at least 3")
    fails({**a, "imageHeight": 11}, "a.json", "imageHeight x imageWidth 11 x 12", "10 x 12")
    fails({**a, "imagePath": "missing.png", "imageData": "bm90IGFuIGltYWdl"},
          "a.json", "imageData is not a base64-encoded image")
    fails({**a, "shapes": [_shape("cat", [[0, 0], [1, 1]], "mask", mask="xx")]},
          "a.json: shape 0", "not a base64-encoded PNG")
    assert not (tmp_path / "o.json").exists()


# --- real export (tests/data/fixtures/labelme/SOURCE.md) ---


def test_real_labelme_3_file_with_embedded_image(tmp_path, capsys):
    """LabelMe 3.16.2 json with imageData and no image file: auto-detected, the image written
    inside the folder, every polygon equal to COCO's rasterisation of the raw points."""
    from real_exports import converted_masks, copy_fixture, polygon_mask, read_json

    path = copy_fixture("labelme", "1.json", tmp_path / "fruit")
    out = tmp_path / "coco.json"
    assert main(["convert-dataset", str(tmp_path / "fruit"), "--out", str(out)]) == 0
    assert "format: labelme" in capsys.readouterr().out
    raw = read_json(path)
    written = tmp_path / "fruit" / raw["imagePath"]
    assert written.read_bytes() == base64.b64decode(raw["imageData"])
    coco = read_json(out)
    assert [c["name"] for c in coco["categories"]] == sorted({s["label"] for s in raw["shapes"]})
    got = converted_masks(coco)["1.jpg"]
    h, w = raw["imageHeight"], raw["imageWidth"]
    assert len(got) == len(raw["shapes"])
    for (name, mask), shape in zip(got, raw["shapes"]):
        truth = polygon_mask([np.ravel(shape["points"]).tolist()], h, w)
        assert name == shape["label"] and truth.any() and np.array_equal(mask, truth)

"""CVAT for images 1.1 XML -> COCO: a file written by hand to the format (polygon, box, mask RLE,
grouped shapes, shapes without area) against a COCO file written by hand."""

import json

import numpy as np
from PIL import Image

from coco_expect import assert_coco_equal
from maskrcnn.cli import main

XML = """<?xml version="1.0" encoding="utf-8"?>
<annotations>
  <version>1.1</version>
  <meta>
    <task>
      <id>7</id>
      <name>pets</name>
      <size>2</size>
      <mode>annotation</mode>
      <labels>
        <label><name>dog</name><color>#ff0000</color><type>any</type><attributes></attributes></label>
        <label><name>cat</name><color>#00ff00</color><type>any</type><attributes></attributes></label>
      </labels>
    </task>
    <dumped>2024-01-01 00:00:00.000000+00:00</dumped>
  </meta>
  <image id="0" name="a.png" width="12" height="10">
    <polygon label="cat" source="manual" occluded="0" points="1.00,1.00;5.00,1.00;5.00,2.00;3.00,2.00;3.00,4.00;1.00,4.00" z_order="0">
    </polygon>
    <box label="dog" source="manual" occluded="0" xtl="6.00" ytl="1.00" xbr="9.00" ybr="3.00" z_order="0">
    </box>
    <mask label="cat" source="manual" occluded="0" rle="1, 2, 1, 8, 1, 2, 1" left="3" top="5" width="4" height="4" z_order="0">
    </mask>
    <polyline label="dog" source="manual" occluded="0" points="0.00,0.00;3.00,3.00" z_order="0">
    </polyline>
    <polygon label="dog" source="manual" occluded="0" points="9.00,5.00;11.00,5.00;11.00,6.00;9.00,6.00" group_id="1" z_order="0">
    </polygon>
    <polygon label="dog" source="manual" occluded="0" points="9.00,8.00;11.00,8.00;11.00,9.00;9.00,9.00" group_id="1" z_order="0">
    </polygon>
    <mask label="dog" source="manual" occluded="0" rle="0, 3, 1" left="0" top="8" width="2" height="2" z_order="0">
    </mask>
    <tag label="cat" source="manual">
    </tag>
  </image>
  <image id="1" name="b.png" width="6" height="4">
  </image>
</annotations>
"""

EXPECTED = {
    "images": [{"id": 1, "file_name": "a.png", "height": 10, "width": 12},
               {"id": 2, "file_name": "b.png", "height": 4, "width": 6}],
    "annotations": [
        {"id": 1, "image_id": 1, "category_id": 2, "iscrowd": 0, "area": 8.0, "bbox": [1, 1, 4, 3],
         "segmentation": [[1, 1, 5, 1, 5, 2, 3, 2, 3, 4, 1, 4]]},
        {"id": 2, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": 6.0, "bbox": [6, 1, 3, 2],
         "segmentation": [[6, 1, 9, 1, 9, 3, 6, 3]]},
        # rle over the 4 x 4 box at (3, 5), row by row: 0110 1111 1111 0110
        {"id": 3, "image_id": 1, "category_id": 2, "iscrowd": 0, "area": 12.0, "bbox": [3, 5, 4, 4],
         "segmentation": [[4, 5, 6, 5, 6, 6, 7, 6, 7, 8, 6, 8, 6, 9, 4, 9, 4, 8, 3, 8, 3, 6, 4, 6]]},
        {"id": 4, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": 4.0, "bbox": [9, 5, 2, 4],
         "segmentation": [[9, 5, 11, 5, 11, 6, 9, 6], [9, 8, 11, 8, 11, 9, 9, 9]]},
        # rle "0, 3, 1" over the 2 x 2 box at (0, 8): no 0s first, then 1 1 / 1 0
        {"id": 5, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": 3.0, "bbox": [0, 8, 2, 2],
         "segmentation": [[0, 8, 2, 8, 2, 9, 1, 9, 1, 10, 0, 10]]},
    ],
    "categories": [{"id": 1, "name": "dog"}, {"id": 2, "name": "cat"}],
}


def _export(tmp_path, xml=XML):
    (tmp_path / "images").mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (10, 12, 3), np.uint8)).save(tmp_path / "images" / "a.png")
    Image.fromarray(rng.integers(0, 255, (4, 6, 3), np.uint8)).save(tmp_path / "images" / "b.png")
    (tmp_path / "annotations.xml").write_text(xml)


def _convert(tmp_path, out, *extra):
    return main(["convert-dataset", "--format", "cvat", str(tmp_path), "--out", str(out), *extra])


def test_export_converts_to_the_expected_coco(tmp_path, capsys):
    _export(tmp_path)
    out = tmp_path / "coco.json"
    assert _convert(tmp_path, out) == 0
    assert_coco_equal(json.loads(out.read_text()), EXPECTED)
    assert f"--images {tmp_path / 'images'}" in capsys.readouterr().out


def test_bad_files_are_named_with_the_item(tmp_path, capsys):
    def fails(xml, *expected):
        _export(tmp_path, xml)
        assert _convert(tmp_path, tmp_path / "o.json") == 2
        err = capsys.readouterr().err  # the skipped <polyline> and <tag> are warnings before it
        assert len([line for line in err.strip().splitlines() if ": error: " in line]) == 1
        for text in expected:
            assert text in err, err

    fails(XML.replace('rle="1, 2, 1, 8, 1, 2, 1"', 'rle="1, 2, 1, 8"'),
          "annotations.xml: image id 0 'a.png' <mask> 2", "sum to 12", "16 pixels")
    fails(XML.replace("points=\"9.00,5.00;11.00,5.00", "points=\"9.00,5.00;11.00;"),
          "image id 0 'a.png' <polygon> 4", "not a number")
    fails(XML.replace('width="6" height="4"', 'width="6" height="5"'),
          "image id 1 'b.png'", "the XML says 6 x 5", "is 6 x 4")
    fails(XML[:-30], "annotations.xml", "not valid XML")
    _export(tmp_path)
    assert main(["convert-dataset", "--format", "cvat", str(tmp_path), "--out",
                 str(tmp_path / "o.json"), "--classes", "dog"]) == 2
    assert "class 'cat' is not in --classes" in capsys.readouterr().err


# --- a CVAT-format file from another code base (tests/data/fixtures/cvat/SOURCE.md) ---


def test_datumaro_cvat_asset_with_occluded_attributes_and_z_order(tmp_path, capsys):
    """Datumaro's CVAT-for-images 1.1 test asset: an occluded box with 4 attributes and z_order,
    a polyline, an unlabelled polygon and points. Only the box is an instance: its mask is the
    hand-computed pixel block x 0..3, y 2..3."""
    from real_exports import blank_image, converted_masks, copy_fixture, read_json

    path = copy_fixture("cvat", "train.xml", tmp_path / "export")
    blank_image(tmp_path / "export" / "img0.jpg", 8, 8)
    blank_image(tmp_path / "export" / "img1.jpg", 10, 10)
    out = tmp_path / "coco.json"
    assert main(["convert-dataset", str(path), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "format: cvat" in captured.out
    assert "1 x CVAT <polyline>" in captured.err and "1 x CVAT shape without a label" in captured.err
    coco = read_json(out)
    assert [c["name"] for c in coco["categories"]] == ["label1", "label2"]  # as <labels> declares
    masks = converted_masks(coco)
    truth = np.zeros((8, 8), bool)
    truth[2:4, 0:4] = True
    assert [name for name, _ in masks["img0.jpg"]] == ["label1"]
    assert np.array_equal(masks["img0.jpg"][0][1], truth)
    assert masks["img1.jpg"] == []


# --- an export a CVAT server wrote (tests/data/fixtures/cvat/SOURCE.md) ---


def test_cvat_server_job_export_with_boxes(tmp_path, capsys):
    """A job exported from a CVAT server as "CVAT for images 1.1" (labels under <meta><job>,
    two of its 14 images kept byte for byte): 4 boxes of 2 classes, one drawn to the image's right
    edge. Masks against pycocotools' rasterisation of the raw box corners."""
    import xml.etree.ElementTree as ET

    from real_exports import blank_image, converted_masks, copy_fixture, polygon_mask, read_json

    path = copy_fixture("cvat", "annotations.xml", tmp_path / "job")
    images = ET.parse(path).getroot().findall("image")
    for image in images:
        blank_image(tmp_path / "job" / "images" / image.get("name"), int(image.get("height")),
                    int(image.get("width")))
    out = tmp_path / "coco.json"
    assert main(["convert-dataset", str(tmp_path / "job"), "--out", str(out)]) == 0
    assert "format: cvat" in capsys.readouterr().out
    coco = read_json(out)
    assert [c["name"] for c in coco["categories"]] == ["Cat", "Cats"]  # as <labels> declares
    masks = converted_masks(coco)
    for image in images:
        h, w = int(image.get("height")), int(image.get("width"))
        boxes = image.findall("box")
        got = masks[image.get("name")]
        assert [name for name, _ in got] == [b.get("label") for b in boxes]
        for (_, mask), box in zip(got, boxes):
            x1, y1, x2, y2 = (float(box.get(k)) for k in ("xtl", "ytl", "xbr", "ybr"))
            truth = polygon_mask([[x1, y1, x2, y1, x2, y2, x1, y2]], h, w)
            assert truth.sum() > 100_000 and np.array_equal(mask, truth)
    assert sum(len(v) for v in masks.values()) == 4

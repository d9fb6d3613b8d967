"""Predictions -> each tool's file -> this project's importer (Label Studio: decoded here from
its percent polygons) -> the same masks (IoU >= 0.98 at tolerance 1) and labels. The masks
include one with a hole and one in two parts; truth is pycocotools' rasterisation."""

import json

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from maskrcnn.data.coco import CocoDataset
from maskrcnn.data.cvat import read_cvat
from maskrcnn.data.labelme import read_labelme
from maskrcnn.data.via import read_via
from maskrcnn.export_formats import FORMATS, export_files, traced
from maskrcnn.fileio import write_bytes_atomic

H, W = 160, 200
CLASSES = ["cell", "grain"]


def _masks() -> np.ndarray:
    """(4, H, W): a ring (hole), two disks as one instance, a square, a thin diagonal ellipse."""
    yy, xx = np.mgrid[:H, :W]
    ring = ((yy - 55) ** 2 + (xx - 55) ** 2 < 40 ** 2) & ((yy - 55) ** 2 + (xx - 60) ** 2 >= 14 ** 2)
    two = ((yy - 35) ** 2 + (xx - 150) ** 2 < 24 ** 2) | ((yy - 115) ** 2 + (xx - 150) ** 2 < 26 ** 2)
    square = (yy >= 110) & (yy < 150) & (xx >= 20) & (xx < 60)
    u, v = (xx - 95 + yy - 120) / np.sqrt(2), (xx - 95 - (yy - 120)) / np.sqrt(2)
    ellipse = (u / 30) ** 2 + (v / 12) ** 2 < 1
    return np.stack([ring, two, square, ellipse])


LABELS = ["cell", "grain", "cell", "grain"]
IMAGE_PLACE = {"labelme": "labelme", "cvat": "cvat/images"}  # else images/ beside the export
SCORES = [0.97, 0.88, 0.61, 0.55]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """{format: output folder} with every format written for one image file."""
    root = tmp_path_factory.mktemp("export")
    folders = {}
    for format in FORMATS:
        # the image where each tool keeps it beside its file (LabelMe: beside the json; CVAT:
        # images/ beside the XML): importers never follow a path out of their folder
        out = root / format
        image_path = out / IMAGE_PLACE.get(format, "images") / "plate.png"
        image_path.parent.mkdir(parents=True)
        Image.fromarray(np.full((H, W, 3), 90, np.uint8)).save(image_path)
        image = traced(str(image_path), _masks(), LABELS, SCORES, tolerance=1.0)
        for name, data in export_files(format, [image], CLASSES, root=out).items():
            write_bytes_atomic(out / name, data)
        folders[format] = out
    return folders


def _from_builder(builder) -> tuple[list[str], list[np.ndarray]]:
    coco = builder.to_coco()
    names = {c["id"]: c["name"] for c in coco["categories"]}
    rles = [mask_utils.frPyObjects(a["segmentation"], H, W) for a in coco["annotations"]]
    masks = [mask_utils.decode(mask_utils.merge(r)).astype(bool) for r in rles]
    return [names[a["category_id"]] for a in coco["annotations"]], masks


def _label_studio(folder) -> tuple[list[str], list[np.ndarray]]:
    """Decoded independently: percent points -> pixels -> pycocotools polygon."""
    task, = json.loads((folder / "label_studio.json").read_text())
    labels, masks = [], []
    for result in task["predictions"][0]["result"]:
        assert result["type"] == "polygonlabels" and 0 < result["score"] <= 1
        points = np.array(result["value"]["points"]) * [result["original_width"] / 100,
                                                          result["original_height"] / 100]
        rle = mask_utils.frPyObjects([points.reshape(-1).tolist()], H, W)
        masks.append(mask_utils.decode(mask_utils.merge(rle)).astype(bool))
        labels.append(result["value"]["polygonlabels"][0])
    return labels, masks


def _coco(folder) -> tuple[list[str], list[np.ndarray]]:
    dataset = CocoDataset(folder / "coco.json", image_dir=folder)
    _, target = dataset[0]
    names = [dataset.class_names[i] for i in target["labels"].tolist()]
    return names, list(target["masks"].numpy().astype(bool))


READERS = {
    "labelme": lambda folder: _from_builder(read_labelme(folder / "labelme")[0]),
    "cvat": lambda folder: _from_builder(read_cvat(folder / "cvat" / "annotations.xml")[0]),
    "via": lambda folder: _from_builder(read_via(folder / "via_project.json", class_attribute="class")[0]),
    "label-studio": _label_studio,
    "coco": _coco,
}


@pytest.mark.parametrize("format", FORMATS)
def test_round_trip(exported, format):
    labels, masks = READERS[format](exported[format])
    truth = _masks()
    assert labels == LABELS
    ious = [(m & t).sum() / (m | t).sum() for m, t in zip(masks, truth)]
    assert len(masks) == len(truth) and min(ious) >= 0.98, ious
    assert not masks[0][55, 60], "the ring's hole was filled"


def test_parts_and_holes_traced():
    """One polygon per 4-connected part; at tolerance 0 the polygons rasterise to the mask."""
    from maskrcnn.export_formats.polygons import mask_to_polygons

    masks = _masks()
    assert [len(mask_to_polygons(m)) for m in masks] == [1, 2, 1, 1]
    for mask in masks:
        rle = mask_utils.frPyObjects([p.reshape(-1).tolist() for p in mask_to_polygons(mask, 0)], H, W)
        np.testing.assert_array_equal(mask_utils.decode(mask_utils.merge(rle)).astype(bool), mask)


def test_scores_are_written(exported):
    shapes = json.loads(next((exported["labelme"] / "labelme").glob("*.json")).read_text())["shapes"]
    assert {s["group_id"]: s["description"] for s in shapes} == {
        i + 1: f"score={s:.4f}" for i, s in enumerate(SCORES)}
    xml = (exported["cvat"] / "cvat" / "annotations.xml").read_text()
    assert xml.count('<attribute name="score">0.8800</attribute>') == 2  # the two parts
    via = json.loads((exported["via"] / "via_project.json").read_text())["_via_img_metadata"]
    assert [r["region_attributes"]["score"] for e in via.values() for r in e["regions"]] == [
        f"{s:.4f}" for s in SCORES]
    coco = json.loads((exported["coco"] / "coco.json").read_text())
    assert [a["score"] for a in coco["annotations"]] == SCORES

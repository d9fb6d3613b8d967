"""`maskrcnn check-data` (maskrcnn/data/check.py): statistics equal counts taken here straight
from the json on real data; every error listed with its file; the warnings fire on data built
to trigger them."""

import json
import re
import statistics

import pytest
from PIL import Image

from maskrcnn.cli import main
from maskrcnn.data.mask_folders import InstanceIdPngDataset, to_coco
from maskrcnn.data.synthetic import write_synthetic_dataset


def _expected_stats(data: dict) -> dict:
    """The statistics counted directly from the COCO json (non-crowd instances)."""
    names = {c["id"]: c["name"] for c in data["categories"]}
    objects = [a for a in data["annotations"] if not a.get("iscrowd", 0)]
    per_image = [sum(a["image_id"] == im["id"] for a in objects) for im in data["images"]]
    areas = [a["area"] for a in objects]
    return {
        "images": len(data["images"]),
        "instances": len(objects),
        "crowd_regions": len(data["annotations"]) - len(objects),
        "empty_images": per_image.count(0),
        "instances_per_class": {names[i]: sum(a["category_id"] == i for a in objects)
                                for i in sorted(names)},
        "per_image": (min(per_image), statistics.median(per_image), max(per_image)),
        "mean_per_image": sum(per_image) / len(per_image),
        "object_sizes": {"small": sum(a < 32 * 32 for a in areas),
                         "medium": sum(32 * 32 <= a < 96 * 96 for a in areas),
                         "large": sum(a >= 96 * 96 for a in areas)},
        "median_aspect": statistics.median(a["bbox"][2] / a["bbox"][3] for a in objects),
    }


def _check(data_file, images, out, *extra):
    code = main(["check-data", "--data", str(data_file), "--images", str(images), "--out", str(out), *extra])
    return code, json.loads((out / "check.json").read_text())


def _assert_stats_match(report: dict, data: dict) -> None:
    stats, expected = report["stats"], _expected_stats(data)
    for key in ("images", "instances", "crowd_regions", "empty_images", "instances_per_class",
                "object_sizes"):
        assert stats[key] == expected[key], key
    per_image = stats["instances_per_image"]
    assert (per_image["min"], per_image["median"], per_image["max"]) == expected["per_image"]
    assert per_image["mean"] == pytest.approx(expected["mean_per_image"])
    assert stats["aspect_ratio"]["median"] == pytest.approx(expected["median_aspect"], rel=1e-6)
    assert stats["skipped_annotations"] == {}


@pytest.mark.parametrize("subset", ["val2017-32", "train2017-6", "train2017-16",
                                    "keypoints-val2017-30"])
def test_coco_subsets(shared_data, subset, tmp_path):
    root = shared_data / "coco" / subset
    code, report = _check(root / "annotations.json", root / "images", tmp_path)
    assert code == 0 and report["errors"] == []
    _assert_stats_match(report, json.loads((root / "annotations.json").read_text()))
    grid = Image.open(tmp_path / "overlays.png")
    assert grid.size[0] == 4 * 320 and grid.size[1] >= 320


def test_penn_fudan(shared_data, tmp_path):
    root = shared_data / "pennfudan"
    data = to_coco(InstanceIdPngDataset(root))
    (tmp_path / "pf.json").write_text(json.dumps(data))
    code, report = _check(tmp_path / "pf.json", root, tmp_path / "out")
    assert code == 0 and report["errors"] == []
    _assert_stats_match(report, data)
    # the count the dataset's PASCAL annotation files give (423 for the real Penn-Fudan)
    pascal = [re.search(r"Objects with ground truth : (\d+)", p.read_text())[1]
              for p in (root / "Annotation").glob("*.txt")]
    assert report["stats"]["instances_per_class"] == {"person": sum(map(int, pascal))}
    assert (tmp_path / "out" / "overlays.png").is_file()


@pytest.fixture()
def synth(tmp_path):
    ann = write_synthetic_dataset(tmp_path / "synth", num_images=4, seed=0, size=96)
    return ann, json.loads(ann.read_text())


def test_every_error_is_listed_and_exits_2(synth, tmp_path, capsys):
    ann, data = synth
    images = ann.parent / "images"
    names = [im["file_name"] for im in data["images"]]
    (images / names[0]).unlink()
    (images / names[1]).write_bytes((images / names[1]).read_bytes()[:100])  # truncated
    Image.new("RGB", (97, 96)).save(images / names[2])
    code, report = _check(ann, images, tmp_path / "out")
    assert code == 2 and len(report["errors"]) == 3
    assert names[0] in report["errors"][0] and "not found" in report["errors"][0]
    assert names[1] in report["errors"][1] and "cannot decode" in report["errors"][1]
    assert names[2] in report["errors"][2] and "is 97x96" in report["errors"][2]
    assert report["stats"]["images"] == 4  # still described
    assert "3 errors" in capsys.readouterr().out
    # an annotation file the reader refuses: the reader's message, exit 2, no grid
    data["annotations"][0]["category_id"] = 999
    ann.write_text(json.dumps(data))
    code, report = _check(ann, images, tmp_path / "out2")
    assert code == 2 and "category_id 999" in report["errors"][0]
    assert not (tmp_path / "out2" / "overlays.png").exists()


def test_warnings(synth, tmp_path):
    ann, data = synth
    moved = max(data["annotations"], key=lambda a: a["area"])
    x, y, w, h = moved["bbox"]
    moved["bbox"] = [x + w / 2, y, w, h]  # half off its mask: IoU 1/3
    ann.write_text(json.dumps(data))
    code, report = _check(ann, ann.parent / "images", tmp_path / "out", "--set", "input.max_size=40",
                          "input.min_size=[32]", "model.anchors.sizes=[64,128,256,512,1024]")
    assert code == 0
    text = "\n".join(report["warnings"])
    assert f"annotations have a bbox that disagrees with their mask's tight box (first ids: [{moved['id']}])" in text
    # at 96 -> 40 px every synthetic object is smaller than a 64 px anchor
    assert f"{len(data['annotations'])} of {len(data['annotations'])} objects (100%) are smaller" in text
    assert "4 images have a long side over 2 x input.max_size (40 px)" in text
    counts = report["stats"]["instances_per_class"]
    assert f"{sum(c < 10 for c in counts.values())} classes have fewer than 10 instances" in text


def test_a_box_past_the_far_edge_is_reported_clipped_not_skipped(tmp_path, capsys):
    """A hand-made COCO file whose box reaches x = 21 on a 20-px-wide image (a polygon vertex
    past the edge, boxed by hand): kept and clipped; check-data says "clipped"."""
    Image.new("RGB", (20, 10)).save(tmp_path / "a.png")
    data = {"images": [{"id": 1, "file_name": "a.png", "width": 20, "height": 10}],
            "categories": [{"id": 1, "name": "x"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": 45,
                             "bbox": [12, 2, 9, 5],
                             "segmentation": [[12, 2, 21, 2, 21, 7, 12, 7]]}]}
    (tmp_path / "a.json").write_text(json.dumps(data))
    code, report = _check(tmp_path / "a.json", tmp_path, tmp_path / "out")
    assert code == 0
    stats = report["stats"]
    assert stats["clipped_boxes"] == 1 and stats["skipped_annotations"] == {}
    assert stats["instances"] == 1
    printed = capsys.readouterr().out
    assert "1 boxes reach outside their image and are clipped" in printed and "skips" not in printed

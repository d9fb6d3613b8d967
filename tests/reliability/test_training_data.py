"""Issue 18, case 9: an empty training set gave a ValueError traceback; a corrupt training image
was found only at the iteration that read it, with the loader process's whole traceback in the
message. Now: one line for an empty set; every image's header is read before training (so an
undecodable or mis-sized image stops the run before it starts); pixels cut short, which only a
full decode finds, stop the run at that image with one line, checkpoints before it kept."""

import json
from pathlib import Path

import pytest
from PIL import Image
from reliability_helpers import TINY_TRAIN, assert_one_line_error, run_cli, write_png

from maskrcnn.data.loader import GroupedBatches
from maskrcnn.training.checkpoint import load_checkpoint


def _train(capsys, ann, images, out, *overrides):
    return run_cli(capsys, "train", "--model", "maskrcnn_r18_fpn", "--data", ann, "--images", images,
                   "--out", out, "--set", *TINY_TRAIN, "solver.max_iter=1", *overrides)


def _copy(shapes, tmp_path):
    ann, images = shapes
    folder = tmp_path / "images"
    folder.mkdir()
    for image in images.iterdir():
        (folder / image.name).write_bytes(image.read_bytes())
    return json.loads(ann.read_text()), folder


def test_no_images(tmp_path, capsys):
    ann = tmp_path / "empty.json"
    ann.write_text(json.dumps({"images": [], "annotations": [], "categories": [{"id": 1, "name": "a"}]}))
    code, _, err = _train(capsys, ann, tmp_path, tmp_path / "run")
    assert code == 2
    assert_one_line_error(err, "train", f"{ann}: no training images (the file lists none)")
    assert not (tmp_path / "run").exists()


def test_no_annotated_images_with_skip_empty(tmp_path, capsys):
    write_png(tmp_path / "a.png", 20, 30)
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.png", "height": 20, "width": 30}],
                               "annotations": [], "categories": [{"id": 1, "name": "a"}]}))
    code, _, err = _train(capsys, ann, tmp_path, tmp_path / "run", "data.skip_empty=true")
    assert code == 2
    assert_one_line_error(err, "train", f"{ann}: no training images (no image has annotations and "
                                        "data.skip_empty=true)")


@pytest.mark.parametrize("damage, message", [
    ("text", "cannot decode image: not an image file Pillow can read"),
    ("empty", "empty file (0 bytes), not an image"),
    ("resized", "is 40x30 after EXIF orientation but"),
])
def test_bad_image_is_found_before_training(tmp_path, shapes, capsys, damage, message):
    data, folder = _copy(shapes, tmp_path)
    bad = folder / data["images"][2]["file_name"]
    if damage == "text":
        bad.write_text("not a png")
    elif damage == "empty":
        bad.write_bytes(b"")
    else:
        write_png(bad, 30, 40)
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps(data))
    code, _, err = _train(capsys, ann, folder, tmp_path / "run")
    assert code == 2
    assert_one_line_error(err, "train", f"{bad}: ", message)
    assert not (tmp_path / "run").exists()  # found before any output


def test_truncated_pixels_stop_training_at_that_image_in_one_line(tmp_path, shapes, capsys):
    """A JPEG whose header is fine, so only decoding finds it, in a loader worker: one line, no
    traceback; the checkpoint of the iteration before is kept."""
    data, folder = _copy(shapes, tmp_path)
    order = iter(GroupedBatches(len(data["images"]), batch_size=1, seed=0))  # solver.seed=0, batch 1
    next(order)
    (_, second), = next(order)  # the image of iteration 2
    record = data["images"][second]
    bad = folder / (Path(record["file_name"]).stem + ".jpg")  # a PNG's chunks are read with its header
    Image.open(folder / record["file_name"]).save(bad, quality=95)
    bad.write_bytes(bad.read_bytes()[:-600])
    record["file_name"] = bad.name
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps(data))
    run = tmp_path / "run"
    code, _, err = _train(capsys, ann, folder, run, "solver.max_iter=3", "solver.checkpoint_period=1",
                          "data.num_workers=1", "data.aspect_ratio_grouping=false")
    assert code == 2
    assert_one_line_error(err, "train", f"{bad}: cannot decode image (image file is truncated")
    assert (run / "last_checkpoint").read_text() == "model_0000001.pt\n"
    assert load_checkpoint(run / "model_0000001.pt")["iter"] == 1

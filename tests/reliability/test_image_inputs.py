"""Issue 25, cases 10-13: float TIFFs, GIFs inside a folder, symbolic link loops and folders named
like images (maskrcnn/data/images.py, maskrcnn/data/image_folder.py)."""

import json

import numpy as np
import pytest
from hostile_checks import assert_refused, train_argv, write_coco
from PIL import Image
from reliability_helpers import SMALL, run_cli, write_png

from maskrcnn.data.image_folder import scan_folder
from maskrcnn.data.images import read_image
from maskrcnn.errors import ImageError


def _float_tiff(path, pixels):
    Image.fromarray(pixels.astype(np.float32), mode="F").save(path)
    return path


@pytest.mark.parametrize("scale", [1.0, 255.0, 65535.0])
def test_float_tiff_is_scaled_by_its_range(tmp_path, scale):
    gray = np.random.default_rng(0).random((12, 20))  # (H, W) in [0, 1)
    image = read_image(_float_tiff(tmp_path / "f.tif", gray * scale))
    expected = np.float32(gray * scale) / np.float32(scale)  # the file holds float32 values
    assert image.shape == (3, 12, 20)
    assert np.array_equal(image[0].numpy(), expected) and np.array_equal(image[2].numpy(), expected)


@pytest.mark.parametrize("values, shown", [((-1.0, 0.5), "values from -1 to 0.5"),
                                           ((0.0, 70000.0), "values from 0 to 70000"),
                                           ((0.0, np.nan), "NaN or infinite")])
def test_float_tiff_out_of_every_range_is_refused(tmp_path, values, shown):
    path = _float_tiff(tmp_path / "f.tif", np.array([values, values]))
    with pytest.raises(ImageError, match=rf"f\.tif: 32-bit float image .*{shown}.*refused"):
        read_image(path)


def test_predict_on_a_float_tiff_says_how_it_was_read(capsys, tmp_path, tiny_weights):
    path = _float_tiff(tmp_path / "f.tif", np.random.default_rng(0).random((40, 50)))
    code, _, err = run_cli(capsys, "predict", "--model", "maskrcnn_r18_fpn", "--weights", tiny_weights, path,
                           "--out", tmp_path / "out", "--score-thresh", "0", *SMALL)
    assert code == 0 and "Traceback" not in err
    assert f"{path}: 32-bit float image with values from" in err and "read as values in [0, 1]" in err


def _folder(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    write_png(folder / "a.png", 30, 40)
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_gif_in_a_folder_is_read_as_its_first_frame(capsys, tmp_path, tiny_weights):
    folder = _folder(tmp_path)
    frames = [Image.fromarray(np.full((30, 40, 3), v, np.uint8)) for v in (60, 200)]
    frames[0].save(folder / "x.gif", save_all=True, append_images=frames[1:], duration=100)
    assert scan_folder(folder) == ([folder / "a.png", folder / "x.gif"], [])
    assert np.allclose(read_image(folder / "x.gif").numpy(), 60 / 255)
    code, _, err = run_cli(capsys, "predict", "--model", "maskrcnn_r18_fpn", "--weights", tiny_weights, folder,
                           "--out", tmp_path / "out", "--score-thresh", "0", *SMALL)
    assert code == 0 and err.strip() == ""
    done = {r["file_name"] for r in json.loads((tmp_path / "out" / "results.json").read_text())}
    assert done == {str(folder / "a.png"), str(folder / "x.gif")}
    assert (tmp_path / "out" / "x.gif.png").is_file()


@pytest.mark.parametrize("make, reason", [
    (lambda p: p.symlink_to(p.name), "symbolic link loop, not an image file"),
    (lambda p: p.mkdir(), "is a folder, not an image file"),
    (lambda p: p.symlink_to("missing.jpg"), "broken symbolic link"),
])  # fmt: skip
def test_odd_entry_in_a_folder_is_one_skipped_file(capsys, tmp_path, tiny_weights, make, reason):
    folder = _folder(tmp_path)
    make(folder / "x.jpg")
    assert scan_folder(folder) == ([folder / "a.png"], [f"{folder / 'x.jpg'}: {reason}"])
    code, out, err = run_cli(capsys, "predict", "--model", "maskrcnn_r18_fpn", "--weights", tiny_weights, folder,
                             "--out", tmp_path / "out", "--score-thresh", "0", *SMALL)
    assert code == 0 and "Traceback" not in err
    assert err.strip() == f"maskrcnn predict: warning: skipped {folder / 'x.jpg'}: {reason}"
    assert len(json.loads((tmp_path / "out" / "results.json").read_text())) > 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png.png", "results.json"]


def test_folder_named_like_an_image_in_a_dataset(capsys, tmp_path, shapes):
    ann, images = shapes
    data = json.loads(ann.read_text())
    (tmp_path / "imgs").mkdir()
    for record in data["images"][1:]:
        (tmp_path / "imgs" / record["file_name"]).write_bytes((images / record["file_name"]).read_bytes())
    (tmp_path / "imgs" / data["images"][0]["file_name"]).mkdir()
    path = write_coco(tmp_path / "ann.json", data)
    folder = tmp_path / "imgs" / data["images"][0]["file_name"]
    assert_refused(capsys, tmp_path, "train", train_argv(path, str(tmp_path / "imgs"), tmp_path / "run"),
                   f"{folder}: is a folder, not an image file")
    with pytest.raises(ImageError, match=f"{folder}: is a folder, not an image file"):
        read_image(folder)

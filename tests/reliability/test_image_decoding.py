"""Issue 18, case 2: an image that cannot be decoded (a 60000x60000 header: Pillow's
DecompressionBombError; truncated; not an image; empty) is an ImageError naming the file, from
read_image and image_size alike, and costs `maskrcnn predict` only that image."""

import pytest
from reliability_helpers import SMALL, png_claiming_size, read_json, run_cli, write_png

from maskrcnn.data.images import image_size, read_image
from maskrcnn.errors import ImageError


def _bad_files(folder):
    """name -> (path, expected words in the error)."""
    folder.mkdir(exist_ok=True)
    good = write_png(folder / "good.png", 40, 50)
    truncated = folder / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:-60])
    (folder / "text.jpg").write_text("hello, not an image\n")
    (folder / "empty.png").write_bytes(b"")
    return {
        "bomb": (png_claiming_size(folder / "bomb.png", 60000, 60000),
                 "image of 3,600,000,000 pixels is over Pillow's limit of 178,956,970"),
        "truncated": (truncated, "cannot decode image (image file is truncated"),
        "not an image": (folder / "text.jpg", "not an image file Pillow can read"),
        "empty": (folder / "empty.png", "empty file (0 bytes)"),
    }


@pytest.mark.parametrize("case", ["bomb", "truncated", "not an image", "empty"])
def test_read_image_names_the_file_and_problem(tmp_path, case):
    path, words = _bad_files(tmp_path / "imgs")[case]
    with pytest.raises(ImageError) as err:
        read_image(path)
    assert str(err.value).startswith(f"{path}: ") and words in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("case", ["bomb", "not an image", "empty"])  # a header alone cannot be truncated
def test_image_size_names_the_file_and_problem(tmp_path, case):
    path, words = _bad_files(tmp_path / "imgs")[case]
    with pytest.raises(ImageError) as err:
        image_size(path)
    assert str(err.value).startswith(f"{path}: ") and words in str(err.value)


def test_predict_skips_a_bomb_and_keeps_the_other_images(tmp_path, tiny_weights, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    write_png(folder / "a.png", 40, 60)
    png_claiming_size(folder / "b_bomb.png", 60000, 60000)
    write_png(folder / "c.png", 50, 40, seed=1)
    out = tmp_path / "out"
    code, stdout, err = run_cli(capsys, "predict", "--model", "maskrcnn_r18_fpn", "--weights", tiny_weights,
                                folder, "--out", out, "--score-thresh", "0", *SMALL)
    assert code == 1  # finished, but not every image
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("maskrcnn predict: warning: ")
    assert "b_bomb.png: image of 3,600,000,000 pixels is over Pillow's limit of 178,956,970" in lines[0]
    assert stdout.startswith("2 of 3 images done, ") and f"; 1 failed: {folder / 'b_bomb.png'}\n" in stdout
    results = read_json(out / "results.json")
    assert {r["file_name"] for r in results} == {str(folder / "a.png"), str(folder / "c.png")}
    assert sorted(p.name for p in out.glob("*.png")) == ["a.png.png", "c.png.png"]

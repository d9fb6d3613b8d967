"""`maskrcnn predict` end to end on files and folders, with bad inputs among them."""

import json
import warnings

import numpy as np
import pytest
from PIL import Image

import maskrcnn
from maskrcnn.cli import main
from maskrcnn.weights import save_weights


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = maskrcnn.load_model("maskrcnn_r18_fpn", precision=None, min_size=96, max_size=128, num_classes=3,
                                    rpn_post_nms_top_n_test=100, box_detections_per_img=10,
                                    class_names=["__background__", "circle", "square"])
    path = tmp_path_factory.mktemp("w") / "tiny.safetensors"
    save_weights(model, path)
    return path


def _images(folder, n):
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (60 + 10 * i, 80, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def test_folder_gives_overlays_and_coco_results(tmp_path, weights, capsys):
    folder = _images(tmp_path / "imgs", 3)
    code = main(["predict", "--model", "maskrcnn_r18_fpn", "--weights", str(weights), str(folder),
                 "--out", str(tmp_path / "out"), "--score-thresh", "0.0"])
    assert code == 0
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["0.png.png", "1.png.png", "2.png.png"]
    assert Image.open(tmp_path / "out" / "1.png.png").size == (80, 70)
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert {r["image_id"] for r in results} == {0, 1, 2}
    assert all(set(r) >= {"bbox", "score", "category_id", "segmentation"} for r in results)
    assert all(r["category_id"] in (1, 2) for r in results)
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert summary.startswith(f"3 images, {len(results)} instances")


def test_missing_input_is_an_error_before_any_work(tmp_path, weights, capsys):
    code = main(["predict", "--model", "maskrcnn_r18_fpn", "--weights", str(weights),
                 str(tmp_path / "nope.png"), "--out", str(tmp_path / "out")])
    assert code == 2
    assert "nope.png: no such image file or folder" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_corrupt_image_in_a_folder_is_skipped_and_counted(tmp_path, weights, capsys):
    folder = _images(tmp_path / "imgs", 2)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    code = main(["predict", "--model", "maskrcnn_r18_fpn", "--weights", str(weights), str(folder),
                 "--out", str(tmp_path / "out")])
    assert code == 1
    out = capsys.readouterr().out
    assert out.startswith("2 of 3 images done, ") and out.endswith(f"; 1 failed: {folder / 'broken.png'}\n")
    assert (tmp_path / "out" / "results.json").is_file()
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["0.png.png", "1.png.png"]

"""`maskrcnn predict --measure / --export`: DSB2018 nuclei ground truth (or the stand-in's
generated nuclei) passed off as the model's predictions, so the measurements can be checked
against regionprops computed here; and the bad-input errors."""

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.measure import regionprops

from maskrcnn.cli import main
from maskrcnn.commands import predict
from maskrcnn.structures import Instances

NUCLEI_IMAGES = 3  # a few images keep the test cheap


def _nuclei_folders(shared_data) -> list:
    """A few DSB2018 image folders (images/<id>.png, masks/*.png): real, or the generated stand-in."""
    root = shared_data / "dsb2018_nuclei"
    return sorted(p for p in root.iterdir() if (p / "masks").is_dir())[:NUCLEI_IMAGES]


def _ground_truth(folder) -> np.ndarray:
    """(N, H, W) bool of the folder's mask files, sorted by name."""
    return np.stack([np.asarray(Image.open(p)) > 0 for p in sorted((folder / "masks").glob("*.png"))])


def test_measure_on_nuclei_ground_truth(shared_data, tmp_path, monkeypatch, capsys):
    folders = _nuclei_folders(shared_data)
    images = [next((f / "images").glob("*.png")) for f in folders]
    truth = {str(path): _ground_truth(folder) for path, folder in zip(images, folders)}
    queue = [truth[str(p)] for p in images]  # predict runs the images in the order given

    def as_predicted(image):
        masks = torch.from_numpy(queue.pop(0))
        boxes = torch.zeros(len(masks), 4)
        return Instances(masks.shape[1:], ("__background__", "nucleus"), boxes=boxes,
                         scores=torch.linspace(1, 0.5, len(masks)), labels=torch.ones(len(masks), dtype=torch.int64),
                         masks=masks)

    monkeypatch.setattr(predict, "_load_tiled_predictor", lambda args: (as_predicted, ()))
    out = tmp_path / "out"
    assert main(["predict", "--model", "maskrcnn_r18_fpn", *map(str, images), "--out", str(out),
                 "--measure", "--pixel-size", "0.5um"]) == 0
    assert "measurements.csv, summary.csv" in capsys.readouterr().out
    rows = list(csv.DictReader((out / "measurements.csv").open()))
    summary = list(csv.DictReader((out / "summary.csv").open()))
    for path in images:
        masks = truth[str(path)]
        mine = [r for r in rows if r["image"] == str(path)]
        assert len(mine) == len(masks) == int(next(s for s in summary if s["image"] == str(path))["count"])
        for row, mask in zip(mine, masks):
            region, = regionprops(mask.astype(np.uint8))
            assert float(row["area_um2"]) == pytest.approx(region.area * 0.25, rel=1e-12)
            assert float(row["perimeter_um"]) == pytest.approx(region.perimeter * 0.5, rel=1e-9)
            assert (float(row["centroid_y"]), float(row["centroid_x"])) == pytest.approx(region.centroid, abs=1e-9)
            assert [int(row[k]) for k in ("bbox_y0", "bbox_x0", "bbox_y1", "bbox_x1")] == list(region.bbox)
        areas = [float(r["area_um2"]) for r in mine]
        row = next(s for s in summary if s["image"] == str(path))
        assert float(row["median_area_um2"]) == pytest.approx(np.median(areas))


@pytest.mark.parametrize("extra, message", [
    (["--export", "paint"], "--export paint: unknown format (one of labelme, cvat, label-studio, via, coco)"),
    (["--measure", "--pixel-size", "abc"], "--pixel-size abc: expected a positive number and a unit"),
    (["--pixel-size", "1um"], "--pixel-size applies to --measure"),
    (["--export", "coco", "--polygon-tolerance", "-1"], "--polygon-tolerance -1.0: must be >= 0"),
])
def test_bad_options_are_one_line_errors_before_any_output(tmp_path, capsys, extra, message):
    Image.new("RGB", (20, 20)).save(tmp_path / "a.png")
    code = main(["predict", "--model", "maskrcnn_r18_fpn", str(tmp_path / "a.png"), "--out",
                 str(tmp_path / "out"), *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_export_from_the_cli(tmp_path, monkeypatch):
    """Every format written beside results.json, images named relative to each file."""
    yy, xx = np.mgrid[:64, :80]
    disk = torch.from_numpy(((yy - 30) ** 2 + (xx - 40) ** 2) < 15 ** 2)
    Image.new("RGB", (80, 64)).save(tmp_path / "a.png")
    one = Instances((64, 80), ("__background__", "cell"), boxes=torch.tensor([[25., 15, 55, 45]]),
                    scores=torch.tensor([0.9]), labels=torch.tensor([1]), masks=disk[None])
    monkeypatch.setattr(predict, "_load_tiled_predictor", lambda args: ((lambda image: one), ()))
    out = tmp_path / "out"
    args = ["predict", "--model", "maskrcnn_r18_fpn", str(tmp_path / "a.png"), "--out", str(out)]
    for format in ("labelme", "cvat", "label-studio", "via", "coco"):
        args += ["--export", format]
    assert main(args) == 0
    labelme = json.loads((out / "labelme" / "a.json").read_text())
    assert (out / "labelme" / labelme["imagePath"]).resolve() == (tmp_path / "a.png").resolve()
    assert json.loads((out / "coco.json").read_text())["images"][0]["file_name"] == "../a.png"
    assert json.loads((out / "label_studio.json").read_text())[0]["data"]["image"] == "../a.png"
    assert '<image id="0" name="../../a.png"' in (out / "cvat" / "annotations.xml").read_text()
    assert (out / "via_project.json").is_file()

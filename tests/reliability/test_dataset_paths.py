"""Issue 25, case 1: a LabelMe json with `imagePath: "../../../tmp/x.png"` and embedded imageData
made convert-dataset write the image outside the dataset (and say "beside their json"). Now one
rule (`maskrcnn/data/safe_paths.py`) for every importer: a path from a data file never leaves
the folder the file describes - refused in one line before anything is read or written."""

import base64
import io
import json
import os

import pytest
from PIL import Image
from reliability_helpers import assert_one_line_error, run_cli, write_png


def _png_base64(height=4, width=6) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (1, 2, 3)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _labelme(folder, image_path, name="a.json"):
    folder.mkdir(parents=True, exist_ok=True)
    data = {"version": "5.4.1", "shapes": [], "imagePath": image_path, "imageData": _png_base64(),
            "imageHeight": 4, "imageWidth": 6}
    (folder / name).write_text(json.dumps(data))


def _files(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_labelme_image_data_is_never_written_outside(tmp_path, capsys):
    dataset = tmp_path / "downloads" / "dataset"
    _labelme(dataset / "ann", "../../../tmp/x.png")  # -> tmp_path/tmp/x.png: outside the dataset
    before = _files(tmp_path)
    code, _, err = run_cli(capsys, "convert-dataset", dataset, "--out", tmp_path / "out" / "c.json")
    assert code == 2
    assert_one_line_error(err, "convert-dataset", "a.json", "'../../../tmp/x.png'",
                          "leaves the dataset folder", "nothing was read or written")
    assert _files(tmp_path) == before  # nothing written anywhere


def test_labelme_write_through_a_symlink_out_is_refused(tmp_path, capsys):
    outside = tmp_path / "outside"
    outside.mkdir()
    dataset = tmp_path / "dataset"
    _labelme(dataset, "imgs/x.png")
    os.symlink(outside, dataset / "imgs")  # a link shipped inside the dataset
    code, _, err = run_cli(capsys, "convert-dataset", "--format", "labelme", dataset,
                           "--out", tmp_path / "c.json")
    assert code == 2
    assert_one_line_error(err, "convert-dataset", "a.json", "symbolic link", "nothing was written")
    assert list(outside.iterdir()) == []


def test_labelme_absolute_image_path_is_written_beside_the_json(tmp_path, capsys):
    """Older LabelMe wrote absolute paths: the image of that name beside the json, inside."""
    dataset = tmp_path / "dataset"
    _labelme(dataset / "sub", "C:\\Users\\me\\photos\\x.png")
    code, out, err = run_cli(capsys, "convert-dataset", dataset, "--out", tmp_path / "c.json")
    assert code == 0, err
    assert (dataset / "sub" / "x.png").is_file() and "inside this folder" in err
    assert json.loads((tmp_path / "c.json").read_text())["images"][0]["file_name"] == "sub/x.png"


# every importer that reads a path from a data file: (file to write, its content, path in it)
def _via(path):
    region = {"shape_attributes": {"name": "rect", "x": 0, "y": 0, "width": 2, "height": 2},
              "region_attributes": {"class": "a"}}
    return {"a.png1": {"filename": path, "regions": [region]}}


def _via3(path):
    attribute = {"1": {"aname": "class", "anchor_id": "FILE1_Z0_XY1", "type": 1}}
    return {"project": {}, "attribute": attribute, "file": {"1": {"fid": "1", "fname": path, "type": 2,
                                                          "loc": 1, "src": path}},
            "metadata": {}, "view": {"1": {"fid_list": ["1"]}}}


def _cvat(path):
    return f'<annotations><image id="0" name="{path}" width="6" height="4"/></annotations>'


def _label_studio(path):
    return [{"id": 1, "data": {"image": f"/data/local-files/?d={path}"}, "annotations": []}]


def _coco(path):
    return {"images": [{"id": 1, "file_name": path, "width": 6, "height": 4}],
            "annotations": [], "categories": [{"id": 1, "name": "a"}]}


READERS = {"via": ("v.json", _via), "via3": ("v3.json", _via3), "cvat": ("annotations.xml", _cvat),
           "label-studio": ("ls.json", _label_studio), "coco": ("c.json", _coco)}


@pytest.mark.parametrize("importer", READERS)
def test_no_importer_reads_outside_the_dataset(tmp_path, capsys, importer):
    write_png(tmp_path / "secret.png", 4, 6)  # exists, outside the dataset
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    name, content = READERS[importer]
    data = content("../secret.png")
    (dataset / name).write_text(data if isinstance(data, str) else json.dumps(data))
    code, _, err = run_cli(capsys, "convert-dataset", dataset / name, "--out", tmp_path / "o.json")
    assert code == 2
    assert_one_line_error(err, "convert-dataset", name, "'../secret.png'", "leaves the dataset folder")
    assert not (tmp_path / "o.json").exists()

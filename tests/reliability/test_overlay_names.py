"""Issue 18, case 4: overlays were named `out/<stem>.png`, so `a.jpg` and `a.png`, or one name in
two input folders, silently overwrote each other. Now every image has its own overlay."""

from pathlib import Path

from PIL import Image
from reliability_helpers import SMALL, read_json, run_cli, write_png

from maskrcnn.commands.predict import collect_images, overlay_names


def test_same_stem_and_same_name_in_two_folders(tmp_path, tiny_weights, capsys):
    for folder in ("day", "night"):
        (tmp_path / folder).mkdir()
    write_png(tmp_path / "day" / "a.png", 40, 50)
    Image.open(tmp_path / "day" / "a.png").save(tmp_path / "day" / "a.jpg")
    write_png(tmp_path / "night" / "a.png", 30, 70, seed=1)
    out = tmp_path / "out"
    code, stdout, err = run_cli(capsys, "predict", "--model", "maskrcnn_r18_fpn", "--weights", tiny_weights,
                                tmp_path / "day", tmp_path / "night", tmp_path / "day" / "a.jpg",  # a.jpg twice
                                "--out", out, "--score-thresh", "0", *SMALL)
    assert (code, err) == (0, "")
    assert stdout.startswith("3 images, ")  # the file given twice is done once
    overlays = sorted(str(p.relative_to(out)) for p in out.rglob("*.png"))
    assert overlays == ["a.jpg.png", "day/a.png.png", "night/a.png.png"]
    assert Image.open(out / "night" / "a.png.png").size == (70, 30)  # each overlay is its own image
    assert Image.open(out / "day" / "a.png.png").size == (50, 40)
    assert {r["file_name"] for r in read_json(out / "results.json")} == {
        str(tmp_path / "day" / "a.jpg"), str(tmp_path / "day" / "a.png"), str(tmp_path / "night" / "a.png")}


def test_names_are_unique_and_stay_under_out():
    paths = [Path("/a/b.png"), Path("/x/a/b.png"), Path("/x/c.jpg"), Path("/x/c.png"),
             Path("/y/d1/img/q.jpg"), Path("/y/d2/img/q.jpg"), Path("/q.jpg")]
    names = overlay_names(paths)
    assert [str(names[p]) for p in paths] == [
        "a/b.png.png", "x/a/b.png.png", "c.jpg.png", "c.png.png", "d1/img/q.jpg.png", "d2/img/q.jpg.png",
        "q.jpg.png"]
    assert not any(n.is_absolute() or ".." in n.parts for n in names.values())


def test_an_image_given_twice_is_done_once_in_first_place(tmp_path):
    for name in ("a.png", "b.png", "c.png"):
        write_png(tmp_path / name, 4, 4)
    paths = collect_images([str(tmp_path / "c.png"), str(tmp_path), str(tmp_path / "a.png")])
    assert [p.name for p in paths] == ["c.png", "a.png", "b.png"]

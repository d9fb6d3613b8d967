"""Issue 18, case 6: an --out that cannot be written (under a regular file, under /proc) ended in a
traceback in every command; `export` found out only after tracing, and its clean-up then raised a
second error. Now every command checks its output path before any work: one line, exit 2."""

import pytest
from reliability_helpers import SMALL, TINY_TRAIN, assert_one_line_error, run_cli, write_png

import maskrcnn


def _argv(command, out, tiny_weights, shapes, tmp_path):
    ann, images = shapes
    image = write_png(tmp_path / "x.png", 40, 50)
    model = ["--model", "maskrcnn_r18_fpn", "--weights", tiny_weights]
    return {
        "predict": ["predict", *model, image, "--out", out, *SMALL],
        "eval": ["eval", *model, "--data", ann, "--images", images, "--out", out, *SMALL],
        "train": ["train", "--model", "maskrcnn_r18_fpn", "--data", ann, "--images", images, "--out", out,
                  "--set", *TINY_TRAIN, "solver.max_iter=1"],
        "export": ["export", *model, "--out", out / "m.onnx"],
        "synth": ["synth", "--out", out, "--num-images", "1", "--size", "32"],
        "convert-dataset": ["convert-dataset", "--format", "pennfudan", tmp_path, "--out", out / "c.json"],
        "demo": ["demo", "--out", out],
        "bench": ["bench", *model, "--images", image, "--json", out / "b.json"],
    }[command]


COMMANDS = ["predict", "eval", "train", "export", "synth", "convert-dataset", "demo", "bench"]


@pytest.fixture
def no_model_loading(monkeypatch):
    """Loading a model is work: the output check must come first."""
    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the output path was checked")

    monkeypatch.setattr(maskrcnn, "load_model", refuse)


@pytest.mark.parametrize("command", COMMANDS)
def test_out_under_a_regular_file(tmp_path, tiny_weights, shapes, capsys, no_model_loading, command):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("keep me\n")
    argv = _argv(command, blocker / "out", tiny_weights, shapes, tmp_path)
    option = "--json" if command == "bench" else "--out"
    code, _, err = run_cli(capsys, *argv)
    assert code == 2
    assert_one_line_error(err, command, f"{option} {blocker / 'out'}", f"{blocker} is a file, not a folder")
    assert blocker.read_text() == "keep me\n"


@pytest.mark.parametrize("command", ["predict", "train", "export", "synth"])
def test_out_where_no_file_can_be_created(tmp_path, tiny_weights, shapes, capsys, no_model_loading, command):
    argv = _argv(command, maskrcnn.fileio.Path("/proc/maskrcnn-out"), tiny_weights, shapes, tmp_path)
    code, _, err = run_cli(capsys, *argv)
    assert code == 2
    assert_one_line_error(err, command, "/proc/maskrcnn-out", "cannot write in /proc")


def test_out_that_is_a_folder_for_export(tmp_path, tiny_weights, shapes, capsys, no_model_loading):
    argv = _argv("export", tmp_path, tiny_weights, shapes, tmp_path)
    argv[argv.index("--out") + 1] = tmp_path
    code, _, err = run_cli(capsys, *argv)
    assert code == 2
    assert_one_line_error(err, "export", f"--out {tmp_path}: is a folder; give the path of the file")

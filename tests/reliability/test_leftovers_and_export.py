"""Issue 25, cases 15, 16 and the loader's one line: a killed writer's temp files are removed by the
next write of the same file; int8 export checks its calibration images before any work; a data
loader worker's error is one line without the worker's traceback."""

import os
import subprocess
import sys

from hostile_checks import assert_refused

from maskrcnn.cli import one_line
from maskrcnn.fileio import write_json_atomic


def _dead_pid() -> int:
    """The id of a process that has ended."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_next_write_removes_the_stale_temporaries_of_its_own_file(tmp_path):
    dead, alive = _dead_pid(), os.getppid()
    stale = tmp_path / f".metrics.json.{dead}.0123abcd.tmp"
    running = tmp_path / f".metrics.json.{alive}.0123abcd.tmp"  # another writer still at work
    other = tmp_path / f".results.json.{dead}.0123abcd.tmp"  # another output's: not ours to remove
    for path in (stale, running, other):
        path.write_bytes(b"x" * 100)
    write_json_atomic(tmp_path / "metrics.json", {"AP": 1.0})
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([running.name, other.name, "metrics.json"])


def test_int8_export_checks_calibration_images_before_any_work(capsys, tmp_path, tiny_weights):
    calibration = tmp_path / "calib"
    calibration.mkdir()
    (calibration / "a.png").write_text("not an image")
    out = tmp_path / "m.onnx"
    assert_refused(capsys, tmp_path, "export", ["--model", "maskrcnn_r18_fpn", "--weights", tiny_weights,
                   "--quantize", "int8", "--calibration-images", calibration, "--out", out],
                   f"{calibration / 'a.png'}: cannot decode image")
    assert not out.exists()


def test_worker_traceback_is_left_out_of_the_one_line():
    message = ("Caught ValueError in DataLoader worker process 0.\nOriginal Traceback (most recent call "
               "last):\n  File \"x.py\", line 1, in f\nValueError: RLE counts exceed the mask dimensions.")
    assert one_line(ValueError(message)) == ("Caught ValueError in DataLoader worker process 0.; "
                                             "ValueError: RLE counts exceed the mask dimensions.")
    assert one_line(ValueError("a\nb")) == "a; b"

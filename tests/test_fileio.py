"""The one atomic writer and the output-path check (maskrcnn/fileio.py)."""

import errno
import json
import os
import stat

import pytest
import torch

from maskrcnn import fileio
from maskrcnn.errors import OutputError, UserError


def test_replaces_and_leaves_no_temp_file(tmp_path):
    fileio.write_json_atomic(tmp_path / "m.json", {"a": 1})
    fileio.write_json_atomic(tmp_path / "m.json", {"a": 2})
    assert json.loads((tmp_path / "m.json").read_text()) == {"a": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_failed_write_keeps_old_file_and_says_so_in_one_line(tmp_path, monkeypatch):
    path = tmp_path / "model.pt"
    fileio.torch_save_atomic(path, {"model": {"w": torch.ones(3)}})
    before = path.read_bytes()

    def full_disk(obj, f):
        f.write(b"half a checkpoint")  # bytes reach the temp file, then the disk is full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OutputError) as err:
        fileio.torch_save_atomic(path, {"model": {"w": torch.zeros(3)}})
    assert str(err.value) == f"{path}: cannot write it (No space left on device); the previous file is unchanged"
    assert isinstance(err.value, UserError) and isinstance(err.value, OSError)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]  # temp file cleaned up


def test_written_with_umask_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        fileio.write_bytes_atomic(tmp_path / "a.bin", b"x")
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "a.bin").stat().st_mode) == 0o644


def test_writing_under_a_file_names_the_file(tmp_path):
    (tmp_path / "plain").write_text("x")
    with pytest.raises(OutputError, match=r"m.json: cannot write it \(.*plain is a file, not a folder\); "
                                          "nothing was written"):
        fileio.write_json_atomic(tmp_path / "plain" / "m.json", {})


@pytest.mark.parametrize("kind", ["dir", "file"])
def test_output_check_creates_nothing(tmp_path, kind):
    target = tmp_path / "a" / "b"
    check = fileio.check_output_dir if kind == "dir" else fileio.check_output_file
    assert check(target) == target
    assert list(tmp_path.iterdir()) == []  # neither the folders nor the probe file remain


def test_output_check_refuses_unwritable_places(tmp_path):
    (tmp_path / "plain").write_text("x")
    (tmp_path / "folder").mkdir()
    cases = [
        (fileio.check_output_dir, tmp_path / "plain" / "out", "plain is a file, not a folder"),
        (fileio.check_output_dir, tmp_path / "plain", "is a file, not a folder"),
        (fileio.check_output_file, tmp_path / "folder", "is a folder; give the path of the file"),
        (fileio.check_output_dir, "/proc/out", "cannot write in /proc"),
    ]
    for check, path, message in cases:
        with pytest.raises(OutputError, match=message) as err:
            check(path)
        assert str(err.value).startswith(f"--out {path}: ") and "\n" not in str(err.value)


def test_json_list_writer_keeps_items_on_disk_as_they_come(tmp_path):
    items = [{"a": 1, "b": [1.5, 2]}, {"a": 2}, {"a": "x"}]
    with fileio.JsonListWriter(tmp_path / "r.json") as writer:
        writer.extend(items[:2])
        partial = tmp_path / "r.json.partial"  # what a killed run leaves: one item per line
        assert [json.loads(line) for line in partial.read_text().splitlines()] == items[:2]
        assert not (tmp_path / "r.json").exists()
        writer.extend(items[2:])
    assert json.loads((tmp_path / "r.json").read_text()) == items
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_json_list_writer_writes_what_it_has_when_stopped_by_an_error(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with fileio.JsonListWriter(tmp_path / "r.json") as writer:
            writer.extend([{"a": 1}])
            raise KeyboardInterrupt
    assert json.loads((tmp_path / "r.json").read_text()) == [{"a": 1}]


def test_read_only_filesystem_is_named(tmp_path, monkeypatch):
    def read_only(path, mode="r", *args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

    monkeypatch.setattr(fileio, "open", read_only, raising=False)  # the probe's open
    with pytest.raises(OutputError) as err:
        fileio.check_output_dir(tmp_path / "out")
    assert str(err.value) == f"--out {tmp_path / 'out'}: cannot write in {tmp_path} (Read-only file system)"

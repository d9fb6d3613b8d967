"""Writing files: the package's one atomic writer, and the check that an output path can be
written, run before any work so a long job never fails at its last step.

A file is written to a temp file in the same folder, fsynced, then renamed over the target: a
crash or a full disk at any moment leaves the old file or the new one, never half a file. The
temp file of a writer killed outright (`kill -9`) stays; the next write of the same file removes
it when its process is gone (`remove_stale_temporaries`).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import uuid
from pathlib import Path
from typing import BinaryIO, Callable

from .errors import OutputError


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None], temp_suffix: str = ".tmp") -> None:
    """Call `write(binary_file)` on a temp file beside `path`, then rename it to `path`.

    Any OSError (disk full, permission, read-only filesystem) becomes one OutputError naming
    the file; the previous file, if any, is left as it was.
    """
    path = Path(path)
    remove_stale_temporaries(path, temp_suffix)
    # "xb" on a unique name rather than tempfile.mkstemp: the file gets the usual umask
    # permissions (mkstemp's are 0600) and is still never shared with another writer.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}{temp_suffix}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "xb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        kept = "the previous file is unchanged" if path.is_file() else "nothing was written"
        blocker = _file_in_the_way(path.parent)
        reason = f"{blocker} is a file, not a folder" if blocker else describe_os_error(exc)
        raise OutputError(f"{path}: cannot write it ({reason}); {kept}") from exc
    finally:
        with contextlib.suppress(OSError):  # only still there if something failed
            tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)  # make the rename itself durable


def remove_stale_temporaries(path: Path, temp_suffix: str = ".tmp") -> list[Path]:
    """Delete the temp files a killed writer of `path` left (`.NAME.PID.HEX.tmp` whose PID is no
    longer a running process); returns them. A folder is listed once per process (a run writing
    thousands of files into one folder lists it once), so only leftovers of earlier runs count."""
    folder = path.parent.absolute()
    if folder not in _STALE_BY_FOLDER:
        _STALE_BY_FOLDER[folder] = _stale_temporaries(folder)
    removed = []
    for tmp in _STALE_BY_FOLDER[folder].pop((path.name, temp_suffix), []):
        with contextlib.suppress(OSError):
            tmp.unlink()
            removed.append(tmp)
    return removed


def _stale_temporaries(folder: Path) -> dict[tuple[str, str], list[Path]]:
    """(target name, temp suffix) -> temp files in `folder` whose writing process is gone."""
    stale: dict[tuple[str, str], list[Path]] = {}
    try:
        entries = [e.name for e in os.scandir(folder) if e.name.startswith(".")]
    except OSError:  # no folder yet (nothing to clean) or not listable
        return stale
    for name in entries:
        match = _TEMP_NAME.match(name)
        if match and not _pid_alive(int(match["pid"])):
            stale.setdefault((match["name"], match["suffix"]), []).append(folder / name)
    return stale


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. another user's process: alive
        return True
    return True


_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[0-9a-f]{8}(?P<suffix>\.[A-Za-z]+)$")
_STALE_BY_FOLDER: dict[Path, dict[tuple[str, str], list[Path]]] = {}


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` atomically (`atomic_write`; OutputError naming the file on failure)."""
    atomic_write(path, lambda f: f.write(data))


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write `text` UTF-8 encoded to `path` atomically (`atomic_write`)."""
    atomic_write(path, lambda f: f.write(text.encode()))


def write_json_atomic(path: str | Path, obj) -> None:
    """Write `obj` as JSON (one line) to `path` atomically (`atomic_write`)."""
    write_text_atomic(path, json.dumps(obj))


def torch_save_atomic(path: str | Path, obj) -> None:
    """`torch.save(obj)` to `path` atomically (`atomic_write`): a killed run never leaves half a checkpoint."""
    import torch

    atomic_write(path, lambda f: torch.save(obj, f))


class JsonListWriter:
    """A JSON list written item by item, for long runs (predict, eval) that must keep what they did.

    `extend(items)` appends to `<path>.partial`, one JSON value per line, flushed: a killed run
    leaves its finished items there. `close()` (also on an error, as a context manager) writes the
    whole list to `path` atomically and removes the partial file.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.count = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.partial, "w")
        except OSError as exc:
            raise OutputError(f"{self.partial}: cannot write it ({describe_os_error(exc)})") from exc

    def extend(self, items: list) -> None:
        """Append `items` (JSON-serialisable values) to the partial file, flushed.

        Raises:
            OutputError: the write failed (disk full, ...); the items written before are kept.
        """
        try:
            self._file.write("".join(json.dumps(item) + "\n" for item in items))
            self._file.flush()
        except OSError as exc:
            raise OutputError(f"{self.partial}: cannot write it ({describe_os_error(exc)}); "
                              f"the {self.count} items before are kept in it") from exc
        self.count += len(items)

    def close(self) -> None:
        """Write the whole list to `path` atomically and remove the partial file."""
        self._file.close()
        atomic_write(self.path, self._write_list)
        self.partial.unlink()

    def _write_list(self, out: BinaryIO) -> None:
        out.write(b"[")
        with open(self.partial, "rb") as lines:
            for i, line in enumerate(lines):
                out.write(b", " if i else b"")
                out.write(line.rstrip(b"\n"))
        out.write(b"]")

    def __enter__(self) -> JsonListWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc is None:
            self.close()
            return
        with contextlib.suppress(OutputError):  # the error in flight is the one to report
            self.close()


def check_output_dir(path: str | Path, option: str = "--out") -> Path:
    """Raise OutputError unless files can be created in folder `path` (made later if missing).

    Nothing is created: the probe is a temp file in the deepest folder that exists.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{option} {path}: is a file, not a folder")
    _check_creatable(path, option)
    return path


def check_output_file(path: str | Path, option: str = "--out") -> Path:
    """Raise OutputError unless file `path` can be written (its folders made later if missing)."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{option} {path}: is a folder; give the path of the file to write")
    _check_creatable(path.parent, option, target=path)
    return path


def describe_os_error(exc: OSError) -> str:
    """'No space left on device' rather than '[Errno 28] No space left on device: /a/b'."""
    if exc.errno is not None:
        return exc.strerror or os.strerror(exc.errno)
    return str(exc) or type(exc).__name__


def _file_in_the_way(folder: Path) -> Path | None:
    """The deepest existing ancestor of `folder` (or itself) when it is not a folder."""
    existing = _deepest_existing(folder)
    return None if existing.is_dir() else existing


def _deepest_existing(folder: Path) -> Path:
    existing = folder.absolute()
    while not existing.exists():
        existing = existing.parent
    return existing


def _check_creatable(folder: Path, option: str, target: Path | None = None) -> None:
    target = target or folder
    existing = _deepest_existing(folder)
    if not existing.is_dir():
        raise OutputError(f"{option} {target}: cannot be created, {existing} is a file, not a folder")
    probe = existing / f".maskrcnn-write-check.{os.getpid()}.{uuid.uuid4().hex[:8]}"
    try:
        with open(probe, "xb"):
            pass
    except OSError as exc:
        reason = describe_os_error(exc)
        if exc.errno == errno.ENOENT:  # e.g. /proc: the folder exists but takes no new files
            reason = "the folder takes no new files"
        raise OutputError(f"{option} {target}: cannot write in {existing} ({reason})") from None
    with contextlib.suppress(OSError):
        probe.unlink()


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # some platforms cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)

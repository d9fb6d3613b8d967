"""The one rule for paths taken from a data file: they never leave the folder the file describes.

A dataset downloaded from the internet is untrusted input. An annotation file naming
`../../../home/user/.bashrc` as an image must neither be read from there nor - worse - written
there (LabelMe's embedded `imageData` is written out when the image file is missing). Every
importer turns a path from a data file into a file through `path_inside`:

- `\\` separators (Windows tools) become `/`;
- the path is joined to the folder it is relative to and normalised lexically; if the result is
  not inside `root` (the dataset folder the user named), it is refused with one line naming the
  data file, the path and the folder;
- for a file about to be written, symlinks are resolved too (a link inside the dataset pointing
  elsewhere is refused as well): nothing is ever written outside `root`.
Absolute paths are outside by definition (`C:/...` and `/...` alike); `basename_inside` is the
fallback an importer may offer for them (the file of that name beside the data file).
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath

from ..errors import DatasetError

_DRIVE = re.compile(r"^[A-Za-z]:/")


def is_absolute(name: str) -> bool:
    """True for `/x`, `C:/x` and `C:\\x` (the latter two from Windows tools)."""
    name = name.replace("\\", "/")
    return name.startswith("/") or bool(_DRIVE.match(name))


def path_inside(root, base, name: str, where: str, *, writing: bool = False) -> Path:
    """`base / name` (lexically normalised), refused with a DatasetError unless inside `root`.

    root: the dataset folder; base: the folder `name` is relative to (root or a folder in it);
    where: the data file and record, for the message; writing: also resolve symlinks.
    """
    if not isinstance(name, str) or not name.strip():
        raise DatasetError(f"{where}: empty file name")
    root = Path(os.path.abspath(root))
    posix = name.replace("\\", "/")
    candidate = Path(os.path.normpath(os.path.join(os.path.abspath(base), posix)))
    if is_absolute(posix) or not _within(candidate, root):
        raise DatasetError(f"{where}: the path '{name}' leaves the dataset folder {root}; paths "
                           "in annotation files must stay inside it (nothing was read or written "
                           "there)")
    if writing and not _within(Path(os.path.realpath(candidate)), Path(os.path.realpath(root))):
        raise DatasetError(f"{where}: '{name}' goes through a symbolic link to "
                           f"{os.path.realpath(candidate)}, outside the dataset folder {root}; "
                           "nothing was written")
    return candidate


def basename_inside(base, name: str) -> Path:
    """The file called like the last part of `name` in `base` (for absolute paths in old files)."""
    return Path(base) / PurePosixPath(name.replace("\\", "/")).name


def relative_name(path: Path, root) -> str:
    """`path` (from `path_inside`) as a `/`-separated name relative to `root`: a COCO file_name."""
    return Path(os.path.relpath(path, os.path.abspath(root))).as_posix()


def _within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents

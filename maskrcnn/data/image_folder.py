"""The one folder scan for image inputs: which entries of a folder are images, and why others
are skipped.

Rules, in order, for each entry of the folder (not recursive), in sorted order:
- a name without an image extension (IMAGE_SUFFIXES) is not an image: left out silently (a
  folder of photos often holds a notes.txt or a .DS_Store);
- a name with one is an image when it is a regular file (or a symbolic link to one); otherwise it
  is skipped with its reason: a folder (`x.jpg/`), a symbolic link loop, a broken link, a device.
Animated GIFs are images: every reader reads their first frame.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from ..errors import ImageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif")


def scan_folder(folder: str | Path) -> tuple[list[Path], list[str]]:
    """-> (image files, sorted; skipped entries as 'PATH: reason'). ImageError when the folder
    cannot be listed (no permission)."""
    images, skipped = [], []
    try:
        entries = sorted(Path(folder).iterdir())
    except OSError as exc:
        raise ImageError(f"{folder}: cannot list the folder ({exc.strerror})") from None
    for entry in entries:
        if entry.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        reason = not_a_file(entry)
        if reason:
            skipped.append(f"{entry}: {reason}")
        else:
            images.append(entry)
    return images, skipped


def not_a_file(path: str | Path) -> str | None:
    """Why `path` cannot be read as a file ("is a folder, not an image file", "symbolic link
    loop", ...), or None when it is a regular file."""
    try:
        mode = os.stat(path).st_mode  # follows links
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symbolic link loop, not an image file"
        if exc.errno == errno.ENOENT:
            return "broken symbolic link" if os.path.islink(path) else "no such file"
        return f"cannot be read ({exc.strerror})"
    if stat.S_ISDIR(mode):
        return "is a folder, not an image file"
    if not stat.S_ISREG(mode):
        return "not a regular file"
    return None

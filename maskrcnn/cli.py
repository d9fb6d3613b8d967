"""`maskrcnn` command line: one sub-command per module in `maskrcnn/commands/`.

Each command module defines `add_parser(subparsers)` and `run(args) -> int`; this file only
dispatches and turns user errors into one clear line and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Sub-command name -> module in maskrcnn.commands
COMMANDS = {
    "predict": "predict",
    "synth": "synth",
    "convert-dataset": "convert_dataset",
    "check-data": "check_data",
    "eval": "evaluate",
    "train": "train",
    "demo": "demo",
    "bench": "bench",
    "export": "export",
    "serve": "serve",
    "weights": "weights",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="maskrcnn", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module in COMMANDS.items():
        try:
            mod = importlib.import_module(f"maskrcnn.commands.{module}")
        except ModuleNotFoundError as exc:
            if exc.name == f"maskrcnn.commands.{module}":
                continue  # command not built yet
            raise
        mod.add_parser(sub, name)
    return parser


def main(argv=None) -> int:
    from .errors import UserError

    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except UserError as exc:
        print(f"maskrcnn {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

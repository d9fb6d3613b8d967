"""`maskrcnn` command line: one sub-command per module in `maskrcnn/commands/`.

Each command module defines `add_parser(subparsers)` and `run(args) -> int`; this file dispatches
and decides what the user sees when something goes wrong:
- an error the user can fix (`maskrcnn.errors.UserError` and its kin): one line on stderr, exit 2;
- anything unexpected: one line naming the exception and a log file holding the traceback, exit 1;
- Ctrl-C: one line, exit 130;
- warnings (Python's and the package's log): one line each, `maskrcnn CMD: warning: ...`.
`maskrcnn --debug CMD ...` (or `CMD ... --debug`) shows the traceback instead.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

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
EXIT_USER_ERROR, EXIT_INTERNAL_ERROR, EXIT_INTERRUPTED = 2, 1, 130
# One example per command, shown at the end of its --help.
EXAMPLES = {
    "predict": "maskrcnn predict --model maskrcnn_effl0_fpn --weights runs/pf/model_best.pt photos/ --out out/",
    "synth": "maskrcnn synth --out shapes/ --num-images 100",
    "convert-dataset": "maskrcnn convert-dataset --format pennfudan PennFudanPed/ --out train.json "
                       "--val-out val.json --val-count 50",
    "check-data": "maskrcnn check-data --model maskrcnn_effl0_fpn --data train.json --images PennFudanPed --out check/",
    "eval": "maskrcnn eval --model maskrcnn_effl0_fpn --weights runs/pf/model_best.pt --data val.json "
            "--images PennFudanPed --out runs/pf/eval",
    "train": "maskrcnn train --model maskrcnn_effl0_fpn --weights imagenet --data train.json --images "
             "PennFudanPed --val-data val.json --val-images PennFudanPed --out runs/pf --budget 30m",
    "demo": "maskrcnn demo --out runs/demo",
    "bench": "maskrcnn bench --model maskrcnn_r50_fpn --images photos/ --size 800",
    "export": "maskrcnn export --model maskrcnn_effl0_fpn --weights runs/pf/model_best.pt --out model.onnx",
    "serve": "maskrcnn serve --model maskrcnn_effl0_fpn --weights runs/pf/model_best.pt --port 8000",
    "weights": "maskrcnn weights list",
}


class Parser(argparse.ArgumentParser):
    """argparse, except that `--set` takes only the KEY=VALUE words after it: the first word
    without '=' ends the list (`predict --set input.min_size=[96] photos/ --out o` works)."""

    def parse_known_args(self, args=None, namespace=None):
        """argparse's `parse_known_args` on `split_set_lists(args)` (each KEY=VALUE after `--set` its
        own option); remembers whether `--set` was given, for `error`. `args` default: sys.argv[1:]."""
        args = sys.argv[1:] if args is None else list(args)
        self.saw_set = any(a == "--set" or a.startswith("--set=") for a in args)
        return super().parse_known_args(split_set_lists(args), namespace)

    def error(self, message):
        """argparse's error (usage and `message` on stderr, exit status 2), plus a hint on how `--set`
        ends its list when an unrecognised argument followed a `--set`."""
        if message.startswith("unrecognized arguments") and getattr(self, "saw_set", False):
            message += " (--set takes the KEY=VALUE words after it; the first word without '=' ends its list)"
        super().error(message)


def split_set_lists(argv: list[str]) -> list[str]:
    """`--set a=1 b=2 DIR` -> `--set=a=1 --set=b=2 DIR` (each value its own option)."""
    out, taken = [], None  # values after the current --set; None outside one
    for token in argv:
        if token != "--set" and taken is not None and "=" in token and not token.startswith("-"):
            out.append(f"--set={token}")
            taken += 1
            continue
        if taken == 0:
            out.append("--set")  # with nothing after it: argparse says what is missing
        taken = 0 if token == "--set" else None
        if taken is None:
            out.append(token)
    if taken == 0:
        out.append("--set")
    return out


def build_parser() -> argparse.ArgumentParser:
    """The `maskrcnn` parser: one sub-parser per entry of `COMMANDS` (from that module's
    `add_parser`, which sets `args.run`), its `EXAMPLES` line at the end of its `--help`, and
    `--debug` accepted before or after the sub-command. The CLI reference page is generated from it."""
    parser = Parser(prog="maskrcnn", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module in COMMANDS.items():
        importlib.import_module(f"maskrcnn.commands.{module}").add_parser(sub, name)
        _add_example(sub.choices[name], EXAMPLES[name])
        # also accepted after the sub-command; SUPPRESS keeps the global flag's value otherwise
        sub.choices[name].add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                                       help=argparse.SUPPRESS)
    return parser


def _add_example(parser: argparse.ArgumentParser, example: str) -> None:
    parser.epilog = (parser.epilog.rstrip() + "\n\n" if parser.epilog else "") + f"example:\n  {example}"
    parser.formatter_class = argparse.RawDescriptionHelpFormatter


def add_set_option(parser: argparse.ArgumentParser, help: str) -> None:
    """`--set KEY=VALUE ...` the same on every command: several values after one --set, the
    option repeated, or both, all collect into `args.set` in order; the first word without '='
    ends a list (`Parser`), so positional arguments may follow."""
    parser.add_argument("--set", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                        help=f"{help}; several after one --set or --set repeated")


def add_tta_option(parser: argparse.ArgumentParser) -> None:
    """`--tta` the same on predict, eval and serve: test-time augmentation (maskrcnn.tta)."""
    parser.add_argument("--tta", action="store_true",
                        help="test-time augmentation: the scales in test.tta.scales (default: the model's "
                             "input size) and their mirror images, merged (torch backend; set "
                             "test.tta.scales=[...] and test.tta.flip with --set)")


def tta_overrides(args) -> dict:
    """load_model overrides that --tta stands for."""
    if getattr(args, "tta", False) and getattr(args, "backend", "torch") != "torch":
        from .errors import UserError

        raise UserError("--tta runs the PyTorch model: it does not apply to --backend onnxruntime")
    return {"test.tta.enabled": True} if getattr(args, "tta", False) else {}


def main(argv=None) -> int:
    """Run `maskrcnn` on `argv` (default: sys.argv[1:]) and return the exit status: the command's
    own (0 done; 1 when some inputs failed), 2 for a `UserError` (one line on stderr), 1 for an
    unexpected exception (one line; the traceback in a log file under the temp folder), 130 on
    Ctrl-C. With `--debug` the exception propagates instead."""
    from .errors import UserError

    args = build_parser().parse_args(argv)
    prefix = f"maskrcnn {args.command}"
    with warnings.catch_warnings(), _one_line_log(prefix):
        warnings.showwarning = lambda message, *_, **__: _say(f"{prefix}: warning: {one_line(message)}")
        # libraries' deprecation notices are for developers (Python hides them outside __main__;
        # a test runner turns them on), not for the user of a command
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        try:
            return int(args.run(args) or 0)
        except UserError as exc:
            if args.debug:
                raise
            _say(f"{prefix}: error: {one_line(exc)}")
            return EXIT_USER_ERROR
        except KeyboardInterrupt:
            if args.debug:
                raise
            _say(f"{prefix}: interrupted")
            return EXIT_INTERRUPTED
        except Exception as exc:
            if args.debug:
                raise
            log = _write_crash_log(args.command, sys.argv[1:] if argv is None else argv)
            where = f"traceback in {log}" if log else "no log could be written"
            _say(f"{prefix}: internal error: {type(exc).__name__}: {one_line(exc)} ({where}; "
                 "rerun with --debug to see it; please report it)")
            return EXIT_INTERNAL_ERROR


def one_line(exc: BaseException, limit: int = 1000) -> str:
    """The exception's message on one line (line breaks become '; '), shortened past `limit`.
    A data-loader worker's error carries the worker's traceback in its message: only its last
    line (the worker's exception) is kept (the crash log keeps the whole)."""
    message, _, traceback_text = str(exc).partition("Original Traceback (most recent call last):")
    message += "\n" + ([ln for ln in traceback_text.splitlines() if ln.strip()] or [""])[-1]
    text = "; ".join(part.strip() for part in message.splitlines() if part.strip())
    text = text or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class _OneLine(logging.Formatter):
    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def format(self, record: logging.LogRecord) -> str:
        return f"{self.prefix}: {record.levelname.lower()}: {' '.join(record.getMessage().split())}"


@contextlib.contextmanager
def _one_line_log(prefix: str):
    """The package's log warnings as `maskrcnn CMD: warning: ...` on stderr while a command runs."""
    handler = logging.StreamHandler(sys.stderr)  # the stream of this moment (pytest swaps it)
    handler.setFormatter(_OneLine(prefix))
    handler.setLevel(logging.WARNING)
    logger = logging.getLogger("maskrcnn")
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


def _write_crash_log(command: str, argv: list[str]) -> Path | None:
    """The current exception's traceback in a file under the temp folder; None if that fails."""
    folder = Path(tempfile.gettempdir()) / "maskrcnn-logs"
    path = folder / f"{command}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path.write_text(f"maskrcnn {' '.join(map(str, argv))}\n\n{traceback.format_exc()}")
    except OSError:
        return None
    return path


if __name__ == "__main__":
    sys.exit(main())

"""Issue 25: what every refused hostile input must show (a module, not conftest, so tests import it).

`assert_refused`: exit status 2, one line on stderr naming the file and the problem, no
traceback, and nothing written outside the --out folder.
"""

import json

from reliability_helpers import TINY_TRAIN, assert_one_line_error, run_cli


def listing(folder) -> dict:
    """Relative path -> size of every file under `folder`."""
    return {str(p.relative_to(folder)): p.stat().st_size for p in folder.rglob("*") if p.is_file()}


def assert_refused(capsys, workspace, command: str, argv: list, *expected: str, out=None) -> str:
    """Run `maskrcnn COMMAND ARGV`; assert the refusal; returns the error line. `workspace`: the
    folder holding the inputs (and the --out folder `out`, whose contents are not compared)."""
    before = {k: v for k, v in listing(workspace).items() if not _under(k, out, workspace)}
    code, _, err = run_cli(capsys, command, *argv)
    assert code == 2, err
    assert "Traceback" not in err
    line = assert_one_line_error(err, command, *expected)
    after = {k: v for k, v in listing(workspace).items() if not _under(k, out, workspace)}
    assert after == before, "files written outside the output folder"
    return line


def _under(relative: str, out, workspace) -> bool:
    return out is not None and (workspace / relative).is_relative_to(out)


def write_coco(path, data) -> str:
    path.write_text(json.dumps(data))
    return str(path)


def train_argv(ann, images, out, *extra) -> list:
    return ["--model", "maskrcnn_r18_fpn", "--data", ann, "--images", images, "--out", out,
            "--set", *TINY_TRAIN, "solver.max_iter=2", *extra]

"""What the command line prints when something goes wrong: one line per user error (exit 2), one
line plus a log file for anything unexpected (exit 1), a traceback only with --debug."""

import pytest

from maskrcnn import cli
from maskrcnn.errors import DatasetError


@pytest.fixture
def synth_fails(monkeypatch):
    """`maskrcnn synth` raising what the test sets in `raised[0]`."""
    from maskrcnn.commands import synth

    raised = []

    def fail(*args, **kwargs):
        raise raised[0]

    monkeypatch.setattr(synth, "write_synthetic_dataset", fail)
    return raised


def _synth(tmp_path, *extra):
    return ["synth", "--out", str(tmp_path / "s"), "--num-images", "1", *extra]


def test_user_error_is_one_line_exit_2(tmp_path, capsys, synth_fails):
    synth_fails.append(DatasetError("a.json: annotation 3 is bad\n  first detail\n  second detail"))
    assert cli.main(_synth(tmp_path)) == 2
    assert capsys.readouterr().err == ("maskrcnn synth: error: a.json: annotation 3 is bad; first detail; "
                                       "second detail\n")


def test_unexpected_error_is_one_line_with_a_log(tmp_path, capsys, synth_fails):
    synth_fails.append(ZeroDivisionError("division by zero"))
    assert cli.main(_synth(tmp_path)) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    head = "maskrcnn synth: internal error: ZeroDivisionError: division by zero (traceback in "
    assert err.startswith(head) and err.endswith("; rerun with --debug to see it; please report it)\n")
    log = err[len(head):].split(";")[0]
    text = open(log).read()
    assert text.startswith("maskrcnn synth --out") and "Traceback (most recent call last)" in text
    assert "ZeroDivisionError: division by zero" in text


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_shows_the_traceback(tmp_path, synth_fails, where):
    synth_fails.append(DatasetError("a.json: bad"))
    argv = ["--debug", *_synth(tmp_path)] if where == "before" else _synth(tmp_path, "--debug")
    with pytest.raises(DatasetError, match="a.json: bad"):
        cli.main(argv)


def test_interrupt_is_one_line_exit_130(tmp_path, capsys, synth_fails):
    synth_fails.append(KeyboardInterrupt())
    assert cli.main(_synth(tmp_path)) == 130
    assert capsys.readouterr().err == "maskrcnn synth: interrupted\n"


def test_warnings_are_one_line(tmp_path, capsys, monkeypatch):
    import logging
    import warnings

    from maskrcnn.commands import synth

    def warn(*args, **kwargs):
        warnings.warn("python warning\nover two lines")
        logging.getLogger("maskrcnn.data").warning("log   warning")
        return tmp_path / "annotations.json"

    monkeypatch.setattr(synth, "write_synthetic_dataset", warn)
    assert cli.main(_synth(tmp_path)) == 0
    assert capsys.readouterr().err == ("maskrcnn synth: warning: python warning; over two lines\n"
                                       "maskrcnn synth: warning: log warning\n")

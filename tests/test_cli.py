"""What the command line prints when something goes wrong: one line per user error (exit 2), one
line plus a log file for anything unexpected (exit 1), a traceback only with --debug; and `--set`,
which has one shape on every command that has it."""

import pytest

from maskrcnn import cli
from maskrcnn.config import ConfigError, parse_overrides
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


# the other arguments each command requires, so that only --set varies
REQUIRED = {
    "train": ["--model", "maskrcnn_r18_fpn", "--data", "a.json", "--images", "i", "--out", "o"],
    "eval": ["--data", "a.json", "--out", "o"],
    "predict": ["image.png", "--out", "o"],
    "bench": ["--model", "m", "--images", "i"],
    "export": ["--model", "m", "--out", "m.onnx"],
    "check-data": ["--data", "a.json", "--out", "o"],
    "serve": [],
}
FORMS = {
    "one --set, several values": ["--set", "a=1", "b.c=[2, 3]", "d="],
    "--set repeated": ["--set", "a=1", "--set", "b.c=[2, 3]", "--set", "d="],
    "both": ["--set", "a=1", "b.c=[2, 3]", "--set", "d="],
}


def _commands_with_set() -> list[str]:
    subparsers = next(a for a in cli.build_parser()._actions if a.dest == "command")
    return sorted(name for name, p in subparsers.choices.items() if "--set" in p._option_string_actions)


def test_every_command_with_set_is_covered():
    assert _commands_with_set() == sorted(REQUIRED)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("command", sorted(REQUIRED))
def test_set_collects_the_same_in_every_form(command, form):
    args = cli.build_parser().parse_args([command, *REQUIRED[command], *FORMS[form]])
    assert args.set == ["a=1", "b.c=[2, 3]", "d="]
    assert cli.build_parser().parse_args([command, *REQUIRED[command]]).set == []


def test_parse_overrides_reads_yaml_values():
    assert parse_overrides(["a=1", " b.c =[2, 3]", "d=", "e=x=y", "f=true"]) == {
        "a": 1, "b.c": [2, 3], "d": "", "e": "x=y", "f": True}


def test_a_word_without_equals_is_one_clear_error(tmp_path, capsys):
    with pytest.raises(ConfigError, match="'photo.png' is not of the form key=value"):
        parse_overrides(["a=1", "photo.png"])
    # through the CLI the first word without '=' ends the --set list (positional arguments may
    # follow it); train takes none, so argparse refuses the word, with exit status 2
    with pytest.raises(SystemExit) as stop:
        cli.main(["train", *REQUIRED["train"][:-1], str(tmp_path), "--set", "solver.max_iter=1", "oops"])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == ("maskrcnn: error: unrecognized arguments: oops (--set takes the KEY=VALUE "
                   "words after it; the first word without '=' ends its list)")

"""Every public function, class and method of the package has a docstring (the Python API
reference is generated from them), and every command's entry point has one besides its parser's
help text (what the CLI reference page shows).

What counts as public, read from the source with `ast` (nothing is imported):
- modules: every `maskrcnn/**/*.py` with no `_`-prefixed part in its path (`__init__.py`
  stands for its package and counts; `__main__.py` does not);
- in them, functions and classes at module level (also inside a module-level `if` / `try`)
  whose name does not start with `_`, and in such a class every method, property and nested
  class whose name does not start with `_`, `forward` included;
- exempt: dunder methods, `__init__` included (the class docstring says what the constructor
  arguments mean, as in the rest of the package); property setters and deleters (the getter's
  docstring is the property's); `typing.overload` stubs (the implementation's docstring
  documents them); functions and classes defined inside a function (not reachable from outside).
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "maskrcnn"
sys.path.insert(0, str(ROOT / "docs" / "_hooks"))
import reference_pages  # noqa: E402

DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def public_modules(package: Path = PACKAGE) -> list[Path]:
    """The package's .py files whose path (relative to the repository) has no `_`-prefixed part
    other than `__init__.py`."""
    return [path for path in sorted(package.rglob("*.py"))
            if not any(part.startswith("_") and part != "__init__.py"
                       for part in path.relative_to(package.parent).parts)]


def _exempt(node: ast.AST) -> bool:
    for decorator in getattr(node, "decorator_list", []):
        if isinstance(decorator, ast.Attribute) and decorator.attr in ("setter", "deleter"):
            return True
        name = decorator.attr if isinstance(decorator, ast.Attribute) else getattr(decorator, "id", "")
        if name == "overload":
            return True
    return False


def _definitions(body: list[ast.stmt]):
    """Function and class definitions of a module or class body, also inside `if` / `try` blocks."""
    for node in body:
        if isinstance(node, DEFINITIONS):
            yield node
        elif isinstance(node, (ast.If, ast.Try)):
            blocks = [node.body, node.orelse] + ([node.finalbody] + [h.body for h in node.handlers]
                                                 if isinstance(node, ast.Try) else [])
            for block in blocks:
                yield from _definitions(block)


def undocumented(source: str, module: str) -> list[str]:
    """`module:line name` of every public definition in `source` without a docstring (or with an
    empty one)."""
    missing = []

    def visit(body: list[ast.stmt], prefix: str) -> None:
        for node in _definitions(body):
            if node.name.startswith("_") or _exempt(node):
                continue
            if not (ast.get_docstring(node) or "").strip():
                missing.append(f"{module}:{node.lineno} {prefix}{node.name}")
            if isinstance(node, ast.ClassDef):
                visit(node.body, f"{prefix}{node.name}.")

    visit(ast.parse(source).body, "")
    return missing


def test_the_scan_finds_what_it_should():
    """The rules above on a hand-written module: exactly its five undocumented public items."""
    source = '''
def documented():
    """Yes."""

def bare(): pass

def _private(): pass

class Public:
    def __init__(self): pass

    def forward(self, x): return x

    @property
    def size(self):
        """The size."""

    @size.setter
    def size(self, value): pass

    def _helper(self): pass

    class Inner: pass

class _Hidden:
    def method(self): pass

if True:
    def conditional(): pass

def outer():
    """Has one."""
    def inner(): pass
'''
    assert [m.split(" ", 1)[1] for m in undocumented(source, "m")] == [
        "bare", "Public", "Public.forward", "Public.Inner", "conditional"]


def test_every_public_definition_has_a_docstring():
    missing = [item for path in public_modules()
               for item in undocumented(path.read_text(), path.relative_to(ROOT).as_posix())]
    assert not missing, f"{len(missing)} public definitions without a docstring:\n" + "\n".join(missing)


def _entry_points(name: str, parser: argparse.ArgumentParser) -> dict:
    """`maskrcnn NAME [ACTION]` -> the function it runs, nested sub-commands too."""
    nested = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not nested:
        return {name: parser.get_default("run")}
    return {key: run for action in nested for sub, child in action.choices.items()
            for key, run in _entry_points(f"{name} {sub}", child).items()}


def test_every_command_function_has_a_docstring():
    """The function each command runs says what the command does, for the reader of the code;
    the parser's description or help, what `--help` and the CLI reference page show, is checked
    by tests/docs/test_site.py."""
    commands = {}
    for name, parser in reference_pages.subcommands().items():
        commands.update(_entry_points(name, parser))
    assert "weights list" in commands and all(callable(run) for run in commands.values()), commands
    missing = [f"maskrcnn {name}: {run.__module__}.{run.__qualname__}"
               for name, run in commands.items() if not (run.__doc__ or "").strip()]
    assert not missing, "commands whose function has no docstring: " + ", ".join(missing)

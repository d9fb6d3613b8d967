"""The package never changes what a built module computes out of sight: no instance `forward`
is assigned and no forward hook is registered anywhere in it (fast paths and stage timing swap
in named module variants instead, which `print(model)` shows). Read from the source with `ast`."""

from __future__ import annotations

import ast
from pathlib import Path

import maskrcnn

PACKAGE = Path(maskrcnn.__file__).parent
HOOKS = {"register_forward_pre_hook", "register_forward_hook", "register_module_forward_hook",
         "register_module_forward_pre_hook"}  # fmt: skip


def hidden_rewrites(source: str) -> list[int]:
    """Line numbers of `<something>.forward = ...` and of calls to a forward-hook registration."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        targets = node.targets if isinstance(node, ast.Assign) else \
            [node.target] if isinstance(node, (ast.AnnAssign, ast.AugAssign)) else []  # fmt: skip
        if any(isinstance(t, ast.Attribute) and t.attr == "forward" for t in targets):
            lines.append(node.lineno)
        if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) in HOOKS:
            lines.append(node.lineno)
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "setattr" and \
                len(node.args) > 1 and isinstance(node.args[1], ast.Constant) and node.args[1].value == "forward":  # fmt: skip
            lines.append(node.lineno)
    return lines


def test_the_scan_finds_each_kind_of_rewrite():
    source = ("m.forward = f\nh = layer.register_forward_pre_hook(f)\nlayer.register_forward_hook(g)\n"
              "setattr(m, 'forward', f)\nx.forwarded = 1\nlayer.register_buffer('forward', t)\n")  # fmt: skip
    assert hidden_rewrites(source) == [1, 2, 3, 4]


def test_no_forward_is_rewritten_in_the_package():
    found = [f"{path.relative_to(PACKAGE.parent)}:{line}" for path in sorted(PACKAGE.rglob("*.py"))
             for line in hidden_rewrites(path.read_text())]  # fmt: skip
    assert not found, "forward replaced or hooked at " + ", ".join(found)
    text = [p for p in PACKAGE.rglob("*.py") if ".forward = " in p.read_text() or "_forward_hook(" in p.read_text()
            or "register_forward_pre_hook" in p.read_text()]  # fmt: skip
    assert not text, text  # the grep, as text

"""The generated reference pages as Markdown text: the command line from its argparse parsers,
the `--set` keys from maskrcnn/config.py (type, default, and the comment beside each field), the
HTTP API from the app's OpenAPI schema. Also used by tests/docs to find undocumented items."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import io
import tokenize
import typing
from pathlib import Path

CONFIG_SOURCE = Path(__file__).resolve().parents[2] / "maskrcnn" / "config.py"


# ------------------------------------------------------------------------------------------
# Command line


def subcommands() -> dict[str, argparse.ArgumentParser]:
    """`maskrcnn` sub-command name -> its parser."""
    from maskrcnn.cli import build_parser

    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def visible_options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.help != argparse.SUPPRESS and not isinstance(a, argparse._HelpAction)]


def cli_reference() -> str:
    lines = ["# Command line", "",
             "Generated from the parsers in `maskrcnn/commands/` when this site was built. "
             "Every command also answers `--help` and takes `--debug` (tracebacks instead of one-line errors).", ""]
    for name, parser in subcommands().items():
        lines += [f"## maskrcnn {name}", "", _escape(parser.description or _help_of(name)), "",
                  "```text", parser.format_usage().strip(), "```", ""]
        if parser.epilog:
            lines += ["```text", parser.epilog.strip(), "```", ""]
        lines += ["| option | default | meaning |", "|---|---|---|"]
        for action in visible_options(parser):
            flags = ", ".join(f"`{f}`" for f in action.option_strings) or f"`{action.metavar or action.dest}`"
            default = "" if action.default in (None, argparse.SUPPRESS, [], False) else f"`{action.default}`"
            lines.append(f"| {flags} | {default} | {_escape(action.help or '')} |")
        lines.append("")
    return "\n".join(lines)


def _help_of(name: str) -> str:
    from maskrcnn.cli import build_parser

    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return next((c.help for c in action._choices_actions if c.dest == name), "") or ""


def _escape(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|").replace("%%", "%")


# ------------------------------------------------------------------------------------------
# Configuration


def field_comments(source: Path = CONFIG_SOURCE) -> dict[tuple[str, str], str]:
    """(dataclass name, field name) -> the comment on the field's line, or the comment lines
    right above it."""
    text = source.read_text()
    comments = {tok.start[0]: tok.string.lstrip("#").strip()
                for tok in tokenize.generate_tokens(io.StringIO(text).readline) if tok.type == tokenize.COMMENT}
    lines = text.splitlines()
    out = {}
    for node in ast.parse(text).body:
        if not isinstance(node, ast.ClassDef):
            continue
        for stmt in node.body:
            if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                out[(node.name, stmt.target.id)] = _comment_for(stmt.lineno, comments, lines)
    return out


def _comment_for(lineno: int, comments: dict[int, str], lines: list[str]) -> str:
    if lineno in comments and not lines[lineno - 1].lstrip().startswith("#"):
        parts, below = [comments[lineno]], lineno + 1
        while below in comments and lines[below - 1].lstrip().startswith("#"):  # continued below
            parts.append(comments[below])
            below += 1
        return " ".join(parts)
    above, parts = lineno - 1, []
    while above in comments and lines[above - 1].lstrip().startswith("#"):
        parts.insert(0, comments[above])
        above -= 1
    return " ".join(parts)


def config_keys() -> list[tuple[str, str, object, str]]:
    """Every `--set` key: (dotted key, type, default, meaning)."""
    from maskrcnn.config import Config

    comments = field_comments()
    rows = []

    def walk(cls, prefix):
        hints = typing.get_type_hints(cls)
        instance = cls()
        for f in dataclasses.fields(cls):
            value = getattr(instance, f.name)
            if dataclasses.is_dataclass(value):
                walk(type(value), f"{prefix}{f.name}.")
            else:
                rows.append((f"{prefix}{f.name}", _type_name(hints[f.name]), value,
                             comments.get((cls.__name__, f.name), "")))

    walk(Config, "")
    return rows


def _type_name(hint) -> str:
    return str(hint).replace("typing.", "").replace("<class '", "").replace("'>", "")


def config_reference() -> str:
    lines = ["# Configuration keys", "",
             "Every field of `maskrcnn/config.py`, as `--set KEY=VALUE` takes it (also in a YAML config "
             "and as `load_model(..., key=value)` keyword overrides). Generated from the dataclasses and "
             "the comment beside each field when this site was built.", ""]
    section = None
    for key, kind, default, meaning in config_keys():
        head = key.rsplit(".", 1)[0] if "." in key else "(top level)"
        if head != section:
            section = head
            lines += ["", f"## {head}", "", "| key | type | default | meaning |", "|---|---|---|---|"]
        lines.append(f"| `{key}` | `{_escape(kind)}` | `{default!r}` | {_escape(meaning)} |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------
# HTTP


# FastAPI's own schemas (every route's 422 answer) come without a description
FASTAPI_SCHEMAS = {
    "HTTPValidationError": "FastAPI's answer, status 422, to a request whose parameters or body do not "
                           "fit the route: `detail` lists each problem.",
    "ValidationError": "One problem in a 422 answer: `loc` where in the request (e.g. "
                       "[\"query\", \"score_thresh\"]), `msg` what is wrong, `type` its kind, `input` the value given.",
}


def schema_description(name: str, model: dict) -> str:
    """A schema's description: the pydantic model's docstring, or ours for FastAPI's own."""
    return model.get("description") or FASTAPI_SCHEMAS.get(name, "")


def openapi_schema() -> dict:
    from maskrcnn.serve.app import ServedModel, create_app

    app = create_app(ServedModel("docs", ("__background__",), predict=lambda images: []))
    return app.openapi()


def http_reference() -> str:
    schema = openapi_schema()
    lines = ["# HTTP API", "", "`maskrcnn serve` answers these routes (generated from the app's OpenAPI "
             "schema; a running server also serves it at `/openapi.json` and an explorer at `/docs`). "
             "`GET /` is the web page.", ""]
    for path, methods in schema["paths"].items():
        for method, op in methods.items():
            lines += [f"## {method.upper()} {path}", "", _escape(op.get("description") or op.get("summary", "")), ""]
            params = op.get("parameters", [])
            if params:
                lines += ["| parameter | in | type | required |", "|---|---|---|---|"]
                for p in params:
                    kind = p.get("schema", {}).get("type") or " or ".join(
                        s.get("type", "") for s in p.get("schema", {}).get("anyOf", []))
                    lines.append(f"| `{p['name']}` | {p['in']} | {kind} | {p.get('required', False)} |")
                lines.append("")
            for code, response in op.get("responses", {}).items():
                ref = response.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref", "")
                lines.append(f"- **{code}** {response.get('description', '')}" + (f": `{ref.rsplit('/', 1)[-1]}`" if ref else ""))
            lines.append("")
    lines += ["## Schemas", ""]
    for name, model in schema.get("components", {}).get("schemas", {}).items():
        lines += [f"### {name}", "", _escape(schema_description(name, model)), "",
                  "| field | type |", "|---|---|"]
        for field, spec in model.get("properties", {}).items():
            kind = spec.get("type") or spec.get("$ref", "").rsplit("/", 1)[-1] or " or ".join(
                s.get("type", s.get("$ref", "").rsplit("/", 1)[-1]) for s in spec.get("anyOf", []))
            lines.append(f"| `{field}` | {kind} |")
        lines.append("")
    return "\n".join(lines)

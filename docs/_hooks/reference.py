"""MkDocs hooks: the reference pages are generated at build time from the code itself, and the
benchmark pages read their tables and plots from benchmarks/results/, so nothing is retyped.

- reference/cli.md: every sub-command and option of `maskrcnn` (maskrcnn.cli.build_parser);
- reference/config.md: every `--set` key with its type, default and the comment beside its field
  in maskrcnn/config.py;
- reference/http.md: the HTTP API from the FastAPI app's OpenAPI schema;
- `{{ include benchmarks/results/NAME.md }}` in any page: that file's text; plots referenced as
  `results/NAME.png` are copied from benchmarks/results/.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(Path(__file__).parent)]

from reference_pages import cli_reference, config_reference, http_reference  # noqa: E402

INCLUDE = re.compile(r"\{\{\s*include\s+(\S+)\s*\}\}")
GENERATED = {"reference/cli.md": cli_reference, "reference/config.md": config_reference,
             "reference/http.md": http_reference}


def on_files(files, config):
    for uri, make in GENERATED.items():
        files.append(File.generated(config, uri, content=make()))
    for plot in sorted((ROOT / "benchmarks" / "results").glob("*.png")):
        files.append(File.generated(config, f"results/{plot.name}", abs_src_path=str(plot)))
    return files


def on_page_markdown(markdown, page, config, files):
    def include(match):
        path = ROOT / match.group(1)
        if not path.is_file():
            raise FileNotFoundError(f"{page.file.src_uri}: include {match.group(1)}: no such file")
        return path.read_text()

    return INCLUDE.sub(include, markdown)

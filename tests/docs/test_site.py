"""The documentation site: built with `mkdocs build --strict` (no warning, no broken internal
link, every page in the navigation), then opened in headless Chromium: the search finds a config
key, the CLI reference lists every sub-command the parser has, no console errors. And nothing the
user can set is undocumented: every config field has its comment, every CLI option its help."""

from __future__ import annotations

import functools
import http.server
import shutil
import subprocess
import sys
import threading
from html.parser import HTMLParser
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "docs" / "_hooks"))
import reference_pages  # noqa: E402

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    run = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"),
                          "-d", str(out)], capture_output=True, text=True, cwd=ROOT,
                         env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stderr[-3000:]
    assert "WARNING" not in run.stderr, run.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def served(site):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def browser():
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver_path, "install chromium and chromium-driver (apt), as .ci/run does"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    yield driver
    driver.quit()


def _errors(browser) -> list[str]:
    return [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]


def test_every_page_is_built_and_in_the_navigation(site):
    nav_pages = {p.relative_to(site).as_posix() for p in site.rglob("index.html")}
    sources = {p.relative_to(ROOT / "docs").with_suffix("").as_posix() for p in (ROOT / "docs").rglob("*.md")}
    sources |= {"reference/cli", "reference/config", "reference/http"}  # generated at build time
    expected = {"index.html" if s == "index" else f"{s}/index.html" for s in sources}
    assert expected <= nav_pages


class _ApiEntries(HTMLParser):
    """mkdocstrings' entries of a page: heading id -> the text of its `doc-contents` block, without
    the text of its members (the nested `doc-children` block, each member an entry of its own)."""

    def __init__(self):
        super().__init__()
        self.entries: dict[str, str] = {}
        self.divs: list[str | None] = []  # per open <div>: entry id (contents), "" (children), None
        self.heading = ""

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        classes = (attrs.get("class") or "").split()
        if "doc-heading" in classes:
            self.heading = attrs.get("id") or ""
        if tag == "div":
            kind = self.heading if "doc-contents" in classes else "" if "doc-children" in classes else None
            if kind:
                self.entries[kind] = ""
            self.divs.append(kind)

    def handle_endtag(self, tag):
        if tag == "div" and self.divs:
            self.divs.pop()

    def handle_data(self, data):
        owner = next((kind for kind in reversed(self.divs) if kind is not None), None)
        if owner:
            self.entries[owner] += data


def test_api_reference_has_no_empty_entry(site):
    """Every object the Python API pages show (a `::: name` and its documented members) has text:
    mkdocstrings hides members without a docstring, but renders a `:::` object without one as a
    bare heading."""
    directives = sum(line.startswith(":::") for page in (ROOT / "docs").rglob("*.md")
                     for line in page.read_text().splitlines())
    entries = {}
    for page in site.rglob("*.html"):
        text = page.read_text()
        if "doc-contents" in text:
            parser = _ApiEntries()
            parser.feed(text)
            entries.update({f"{page.relative_to(site)}#{key}": body for key, body in parser.entries.items()})
    assert directives and len(entries) >= directives, (directives, sorted(entries))
    empty = [key for key, body in entries.items() if not body.strip()]
    assert not empty, f"API reference entries without text (add a docstring): {empty}"


def test_cli_reference_lists_every_subcommand(served, browser):
    browser.get(f"{served}/reference/cli/")
    headings = {h.text.strip().rstrip("¶").strip() for h in browser.find_elements(By.CSS_SELECTOR, "article h2")}
    assert headings == {f"maskrcnn {name}" for name in reference_pages.subcommands()}
    assert not _errors(browser)


def test_search_finds_a_config_key(served, browser):
    browser.get(f"{served}/")
    WebDriverWait(browser, 20).until(lambda b: b.execute_script("return typeof document$ !== 'undefined'"))
    browser.find_element(By.CSS_SELECTOR, "label.md-search__icon, label[for='__search']").click()
    box = browser.find_element(By.CSS_SELECTOR, "input.md-search__input")
    box.send_keys("model.mask.aligned")

    def links(b):
        """The result links once they hold still (the list re-renders while results arrive)."""
        try:
            found = b.find_elements(By.CSS_SELECTOR, ".md-search-result__item a")
            return [a.get_attribute("href") for a in found] or False
        except StaleElementReferenceException:
            return False

    hrefs = WebDriverWait(browser, 30).until(links)
    assert any("reference/config" in h for h in hrefs) and any("mask-geometry" in h for h in hrefs), hrefs
    assert not _errors(browser)


def test_every_config_field_has_a_meaning():
    missing = [key for key, _, _, meaning in reference_pages.config_keys() if not meaning.strip()]
    assert not missing, f"config fields without a comment in maskrcnn/config.py: {missing}"


def test_every_http_route_and_schema_has_a_description():
    """The HTTP reference shows the route functions' docstrings and the pydantic models' ones."""
    schema = reference_pages.openapi_schema()
    routes = [f"{method.upper()} {path}" for path, methods in schema["paths"].items()
              for method, op in methods.items() if not (op.get("description") or "").strip()]
    models = [name for name, model in schema["components"]["schemas"].items()
              if not reference_pages.schema_description(name, model).strip()]
    assert schema["paths"] and not routes and not models, (routes, models)


def test_every_cli_option_has_help():
    missing = [f"{name} {action.option_strings or action.dest}"
               for name, parser in reference_pages.subcommands().items()
               for action in reference_pages.visible_options(parser) if not (action.help or "").strip()]
    undescribed = [name for name, parser in reference_pages.subcommands().items()
                   if not (parser.description or reference_pages._help_of(name)).strip()]
    assert not missing and not undescribed, (missing, undescribed)

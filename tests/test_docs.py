"""The documentation site: every lesson has a page, every picture a page shows exists,
the Tour prints what it says it prints, and `mkdocs build --strict` passes with an
entry in the API reference (generated from the docstrings) for every public name.

The build test needs the docs extra, which the test extra brings along
(pip install ".[test]"); without it the test fails and says so, it is not skipped.
"""
import contextlib
import importlib.util
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import tinyad
import tinyad.backend
import tinyad.check
import tinyad.nn
import tinyad.nn.functional
import tinyad.nn.init
import tinyad.optim
import tinyad.viz

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
MKDOCS_YML = REPO / "mkdocs.yml"
LESSON_SCRIPTS = sorted((REPO / "lessons").glob("[0-9][0-9]_*.py"))
PUBLIC_MODULES = [tinyad, tinyad.nn, tinyad.nn.functional, tinyad.nn.init, tinyad.optim, tinyad.check, tinyad.viz,
                  tinyad.backend]
FENCE = re.compile(r"^(```+|~~~+)([^\n]*)\n(.*?)^\1[ \t]*$", re.M | re.S)


def markdown_pages() -> list[Path]:
    return sorted(DOCS.rglob("*.md"))


def without_code(text: str) -> str:
    """Markdown text with fenced code blocks and inline code removed (links there are not links)."""
    text = FENCE.sub("", text)
    return re.sub(r"`[^`\n]*`", "", text)


def referenced_files(page: Path) -> list[str]:
    """Local files a page embeds or links to: images, iframes, and links into images/."""
    text = without_code(page.read_text(encoding="utf-8"))
    targets = re.findall(r"!\[[^\]]*\]\(\s*<?([^)\s>]+)", text)  # ![alt](path "title")
    targets += re.findall(r"""<(?:img|iframe|source|embed)\b[^>]*\bsrc=["']([^"']+)["']""", text)
    targets += [t for t in re.findall(r"\]\(\s*<?([^)\s>]+)", text) if "images/" in t]
    return [t for t in targets if not re.match(r"^[a-z]+:", t)]


def test_every_lesson_has_a_docs_page_in_the_nav():
    nav = MKDOCS_YML.read_text(encoding="utf-8")
    assert LESSON_SCRIPTS, "no lessons found in lessons/"
    for script in LESSON_SCRIPTS:
        page = DOCS / "lessons" / f"{script.stem}.md"
        assert page.is_file(), f"lessons/{script.name} has no page: write docs/lessons/{script.stem}.md"
        assert f"lessons/{script.stem}.md" in nav, f"docs/lessons/{script.stem}.md is not in mkdocs.yml's nav"


def test_every_lesson_has_been_run_for_the_docs():
    for script in LESSON_SCRIPTS:
        folder = DOCS / "images" / "lessons" / script.stem
        assert folder.is_dir() and any(folder.iterdir()), (
            f"no pictures of lessons/{script.name} in docs/images/lessons/{script.stem}/: "
            f"run python docs/make_pictures.py --only {script.stem[:2]}"
        )


def test_every_picture_a_page_shows_exists():
    checked = 0
    for page in markdown_pages():
        for target in referenced_files(page):
            path = (page.parent / target.split("#")[0].split("?")[0]).resolve()
            assert path.is_file(), f"{page.relative_to(REPO)} shows {target}, which does not exist ({path})"
            assert DOCS in path.parents, f"{page.relative_to(REPO)} shows {target}, which is outside docs/"
            checked += 1
    assert checked > 10, "found suspiciously few pictures in the pages: is the parser broken?"


def tour_blocks() -> list[tuple[str, str | None]]:
    """(code, expected output) for every python block of the Tour; the expected output is
    the text block that follows it with nothing but blank lines between, or None."""
    text = (DOCS / "tour.md").read_text(encoding="utf-8")
    blocks = list(FENCE.finditer(text))
    pairs = []
    for index, block in enumerate(blocks):
        if block.group(2).strip() != "python":
            continue
        after = blocks[index + 1] if index + 1 < len(blocks) else None
        is_output = (after is not None and after.group(2).strip() == "text"
                     and not text[block.end():after.start()].strip())
        pairs.append((block.group(3), after.group(3) if is_output else None))
    return pairs


def test_the_tour_prints_what_it_says(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "tour"}
    pairs = tour_blocks()
    assert len(pairs) >= 5 and sum(expected is not None for _, expected in pairs) >= 5
    for number, (code, expected) in enumerate(pairs, start=1):
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(compile(code, f"docs/tour.md, python block {number}", "exec"), namespace)
        if expected is not None:
            got = [line.rstrip() for line in printed.getvalue().strip("\n").splitlines()]
            want = [line.rstrip() for line in expected.strip("\n").splitlines()]
            assert got == want, f"docs/tour.md, python block {number} printed:\n" + "\n".join(got)


def entry_names(obj, module, name: str) -> set[str]:
    """The anchors under which the API page may document ``module.name``: its public
    path, or the path where it is defined (``tinyad.manual_seed`` is documented as
    ``tinyad.nn.init.manual_seed``)."""
    names = {f"{module.__name__}.{name}"}
    if hasattr(obj, "__qualname__") and hasattr(obj, "__module__"):
        names.add(f"{obj.__module__}.{obj.__qualname__}")
    elif hasattr(obj, "__file__"):  # a module
        names.add(obj.__name__)
    return names


def test_mkdocs_build_strict_passes(tmp_path):
    needed = {"mkdocs": "mkdocs", "material": "mkdocs-material", "mkdocstrings": "mkdocstrings",
              "mkdocstrings_handlers": "mkdocstrings-python"}
    missing = [package for module, package in needed.items() if importlib.util.find_spec(module) is None]
    if missing:
        pytest.fail(
            f"the documentation build needs {', '.join(missing)}: install the test extra, "
            'pip install ".[test]", which brings the docs extra'
        )
    site = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(MKDOCS_YML), "--site-dir", str(site)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{output}"
    warnings = [line for line in output.splitlines() if line.startswith("WARNING")]
    assert not warnings, "mkdocs build printed warnings:\n" + "\n".join(warnings)
    for page in ["index.html", "tour.html", "derivation.html", "api.html", "conventions.html", "benchmarks.html"]:
        assert (site / page).is_file(), f"the build did not write {page}"
    for script in LESSON_SCRIPTS:
        assert (site / "lessons" / f"{script.stem}.html").is_file(), f"the build did not write the page of {script.name}"
    # The API page is generated, so it cannot disagree with the code; what can go wrong
    # is a public name that no `::: ...` line in docs/api.md asks for.
    anchors = set(re.findall(r'\bid="(tinyad[\w.]*)"', (site / "api.html").read_text(encoding="utf-8")))
    for module in PUBLIC_MODULES:
        for name in module.__all__:
            assert entry_names(getattr(module, name), module, name) & anchors, (
                f"{module.__name__}.{name} is public (in __all__) but has no entry in the API reference: "
                f"add a line '::: {module.__name__}.{name}' to docs/api.md"
            )

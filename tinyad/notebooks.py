"""The lessons as Jupyter notebooks: ``tinyad notebook N`` writes ``NN_name.ipynb``.

The ``.py`` lessons stay the source. They are written in the "percent"
format that Jupyter, VS Code and jupytext read: a line starting with ``# %%``
begins a cell (``# %% Step 1: a title`` gives the cell a title; ``# %%
[markdown]`` makes a text cell). This module turns such a script into a
notebook with nbformat alone (no jupytext needed):

* the module docstring becomes the first text cell;
* a setup cell sets ``sys.argv``, the lesson's command-line flags, so the
  lesson's own ``argparse`` works in a kernel (edit the list to add
  ``--quick``, ``--solution``, ``--check``...);
* a cell's title and its leading comment lines become a text cell, the rest
  a code cell;
* after a cell that saves a figure (``figure.savefig(path)``) or renders a
  graph (``drawing.render(path)``), a line shows the picture inline (the
  saved PNG, or the drawing through ``Drawing._repr_svg_``).
"""
from __future__ import annotations

import argparse
import ast
import re
from pathlib import Path
from typing import Sequence

__all__ = ["cells_of", "lesson_notebook", "write_notebook", "add_command", "run_command"]

CELL_MARKER = re.compile(r"^# %%(?P<rest>.*)$")
SAVEFIG = re.compile(r"\b\w+\.savefig\((?P<path>[^,()]+(?:\([^()]*\))?[^,()]*)[,)]")
RENDER = re.compile(r"\b(?P<drawing>\w+)\.render\(")


def _docstring_and_body(source: str) -> tuple[str, list[str]]:
    """The module docstring and the source lines after it."""
    tree = ast.parse(source)
    lines = source.splitlines()
    first = tree.body[0] if tree.body else None
    if (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
            and isinstance(first.value.value, str)):
        return ast.get_docstring(tree) or "", lines[first.end_lineno:]
    return "", lines


def _strip_blank_ends(lines: list[str]) -> list[str]:
    while lines and not lines[0].strip():
        lines = lines[1:]
    while lines and not lines[-1].strip():
        lines = lines[:-1]
    return lines


def _comment_text(lines: list[str]) -> str:
    """Comment lines as Markdown text: '# ' removed, lines of one paragraph kept together."""
    return "\n".join(line.strip()[1:].removeprefix(" ") for line in lines)


def cells_of(source: str) -> list[tuple[str, str]]:
    """Split a percent-format script into ("markdown" | "code", text) cells.

    The docstring is the first markdown cell; the code before the first
    ``# %%`` is the first code cell.
    """
    docstring, body = _docstring_and_body(source)
    cells: list[tuple[str, str]] = []
    if docstring:
        title, _, rest = docstring.partition("\n")
        cells.append(("markdown", f"# {title.strip()}\n{rest}".rstrip()))

    chunks: list[tuple[str, list[str]]] = [("", [])]
    for line in body:
        marker = CELL_MARKER.match(line)
        if marker:
            chunks.append((marker.group("rest").strip(), []))
        else:
            chunks[-1][1].append(line)

    for header, lines in chunks:
        if header.startswith("[markdown]"):
            text = _comment_text(_strip_blank_ends(lines))
            if text.strip():
                cells.append(("markdown", text))
            continue
        lines = _strip_blank_ends(lines)
        leading = 0
        while leading < len(lines) and lines[leading].lstrip().startswith("#"):
            leading += 1
        prose = _comment_text(lines[:leading])
        if header or prose:
            title = f"## {header}" if header else ""
            cells.append(("markdown", "\n\n".join(part for part in (title, prose) if part)))
        code = _strip_blank_ends(lines[leading:])
        if code:
            cells.append(("code", "\n".join(code)))
    return cells


def _show_pictures(code: str) -> str:
    """Append lines that show the pictures a cell writes, so they appear inline."""
    shows = []
    for match in SAVEFIG.finditer(code):
        shows.append(f"display(Image(filename=str({match.group('path').strip()})))  # the picture, inline")
    for match in RENDER.finditer(code):
        drawing = match.group("drawing")
        shows.append(f"try:\n    display({drawing})  # the graph, inline (Drawing._repr_svg_)\n"
                     f"except Exception as error:  # no Graphviz renderer: the .dot file was written instead\n"
                     f"    print(error)")
    return code if not shows else code + "\n" + "\n".join(shows)


def lesson_notebook(path: str | Path, flags: Sequence[str] = ()) -> "nbformat.NotebookNode":
    """The notebook of the lesson script at ``path``; ``flags`` become its ``sys.argv``."""
    import nbformat  # imported here: only this command needs it (the "notebooks" extra)
    from nbformat import v4

    path = Path(path)
    source = path.read_text(encoding="utf-8")
    docstring, _ = _docstring_and_body(source)
    summary = docstring.partition("\n")[0].strip()
    argv = [path.name, *flags]
    setup = (
        "# The lesson's command-line flags: in a notebook they are set here. Add \"--quick\" for\n"
        "# small sizes, \"--check\" to grade your exercise on every example, \"--solution\" for\n"
        "# the reference answer, \"--out\", \"DIR\" for the pictures' folder.\n"
        "import sys\n"
        "from IPython.display import Image, display\n\n"
        f"sys.argv = {argv!r}\n"
        f"__doc__ = {summary!r}"
    )
    cells = []
    for number, (kind, text) in enumerate(cells_of(source)):
        if kind == "markdown":
            cells.append(v4.new_markdown_cell(text))
        else:
            cells.append(v4.new_code_cell(_show_pictures(text)))
        if number == 0:
            cells.append(v4.new_code_cell(setup))
    notebook = v4.new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.metadata["language_info"] = {"name": "python"}
    nbformat.validate(notebook)
    return notebook


def write_notebook(path: str | Path, output_dir: str | Path = ".", flags: Sequence[str] = ()) -> Path:
    """Write ``NN_name.ipynb`` for the lesson script at ``path`` into ``output_dir``; return its path."""
    import nbformat

    path = Path(path)
    target = Path(output_dir) / f"{path.stem}.ipynb"
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(lesson_notebook(path, flags), str(target))
    return target


# --- the `tinyad notebook N` command ------------------------------------------------


def add_command(commands: argparse._SubParsersAction) -> None:
    """Register ``tinyad notebook N [-o DIR] [lesson flags...]`` on the CLI's subcommands."""
    parser = commands.add_parser(  # no abbreviations: the lesson's --out must not be read as --output-dir
        "notebook", help="write lesson N as a Jupyter notebook NN_name.ipynb (extra flags go to its sys.argv)",
        allow_abbrev=False)
    parser.add_argument("-o", "--output-dir", default=".", help="folder for the .ipynb file (default: here)")
    parser.add_argument("number", help="the lesson's number, or 'all'")
    parser.add_argument("lesson_arguments", nargs=argparse.REMAINDER, help="flags for the lesson (its sys.argv)")


def run_command(args: argparse.Namespace) -> int:
    """``tinyad notebook``: write the notebook(s), print where.

    ``-o DIR`` may also come after N; everything else after N goes to the lesson.
    """
    from .cli import list_lessons

    after = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    after.add_argument("-o", "--output-dir", default=args.output_dir)
    known, extra = after.parse_known_args(args.lesson_arguments)
    args.output_dir = known.output_dir

    try:
        import nbformat  # noqa: F401
    except ModuleNotFoundError:
        raise ValueError('notebook: needs nbformat: pip install "tinyad[notebooks]" (or pip install nbformat)') from None
    lessons = {number: path for number, _, path in list_lessons()}
    if args.number == "all":
        chosen = sorted(lessons)
    elif args.number.isdigit() and int(args.number) in lessons:
        chosen = [int(args.number)]
    else:
        raise ValueError(f"notebook: no lesson {args.number}; `tinyad lessons` lists {sorted(lessons)}")
    for number in chosen:
        print(f"wrote {write_notebook(lessons[number], args.output_dir, extra)}")
    return 0

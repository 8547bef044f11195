"""Shared helpers for the benchmark scripts: options, timing and writing docs/benchmarks.md.

Each script owns one section of docs/benchmarks.md, delimited by
``<!-- begin NAME -->`` / ``<!-- end NAME -->`` markers, and rewrites only
that section, so the scripts can run in any order.

Every script takes the same two options (``argument_parser``):

* ``--quick``: few repeats and small shapes, so the script finishes in
  seconds. It shows that the script works, not how fast anything is, so a
  quick run leaves docs/benchmarks.md alone unless ``--out`` names it.
* ``--out FILE``: write the section into FILE instead. Without it a full run
  writes docs/benchmarks.md, and a quick run writes nothing.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Callable

BENCHMARKS_MD = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"

HEADER = """# Benchmarks

Every table on this page is written by a script in `benchmarks/`; none is typed
by hand. Each script runs tinyad and its peer in the *same run*, interleaved (in
one process, except where a section says why not), and reports medians over
repeats and the ratio of medians. The machines these ran on are shared and
noisy: read the ratios, not the absolute times.

Every script answers `--help` with what it measures. A full run (the command
under each table) rewrites its own section of this page; `--quick` runs in
seconds, with few repeats and small shapes, to show that a script works, and
writes nothing here unless `--out FILE` says where.
"""


def argument_parser(description: str | None, section: str) -> argparse.ArgumentParser:
    """A parser with ``--quick`` and ``--out``; ``description`` is the script's docstring."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--quick", action="store_true",
        help="few repeats and small shapes: seconds, not minutes. The figures mean little, "
             "so docs/benchmarks.md is left alone unless --out names it",
    )
    parser.add_argument(
        "--out", type=Path, default=None, metavar="FILE",
        help=f"write the section {section!r} into this Markdown file (default: docs/benchmarks.md "
             "in a full run, no file in a quick run)",
    )
    return parser


def output_file(args: argparse.Namespace) -> Path | None:
    """Where this run's section goes: ``--out``, else docs/benchmarks.md unless the run is quick."""
    if args.out is not None:
        return args.out
    return None if args.quick else BENCHMARKS_MD


def time_once(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved_medians(contenders: dict[str, Callable[[], object]], repeats: int, warmup: int = 1) -> dict[str, float]:
    """Median seconds per call of each contender, run round-robin ``repeats`` times."""
    for _ in range(warmup):
        for fn in contenders.values():
            fn()
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            samples[name].append(time_once(fn))
    return {name: statistics.median(times) for name, times in samples.items()}


def machine_line() -> str:
    try:
        import numpy

        numpy_version = numpy.__version__
    except ImportError:  # pragma: no cover
        numpy_version = "?"
    return (
        f"Measured on {platform.machine()} with {os.cpu_count()} CPU cores, "
        f"Python {platform.python_version()}, NumPy {numpy_version}, "
        f"{time.strftime('%Y-%m-%d')}."
    )


def write_section(name: str, markdown: str, path: Path | None = BENCHMARKS_MD) -> None:
    """Replace (or append) the section ``name`` of the Markdown file ``path``.

    ``path`` None writes nothing (a quick run without ``--out``) and says so.
    """
    if path is None:
        print(f"quick run: {BENCHMARKS_MD} left as it is (pass --out FILE to write section {name!r})")
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = path.read_text() if path.exists() else HEADER
    begin, end = f"<!-- begin {name} -->", f"<!-- end {name} -->"
    block = f"{begin}\n{markdown.strip()}\n{end}"
    if begin in text and end in text:
        before = text[: text.index(begin)]
        after = text[text.index(end) + len(end):]
        text = before + block + after
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)
    print(f"wrote section {name!r} of {path}")

"""Shared helpers for the benchmark scripts: timing and writing docs/benchmarks.md.

Each script owns one section of docs/benchmarks.md, delimited by
``<!-- begin NAME -->`` / ``<!-- end NAME -->`` markers, and rewrites only
that section, so the scripts can run in any order.
"""
from __future__ import annotations

import os
import platform
import statistics
import time
from pathlib import Path
from typing import Callable

BENCHMARKS_MD = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"

HEADER = """# Benchmarks

Every table on this page is written by a script in `benchmarks/`; none is typed
by hand. Each script runs tinyad and its peer in the *same process*, interleaved,
and reports medians over repeats and the ratio of medians. The machines these
ran on are shared and noisy: read the ratios, not the absolute times.
"""


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


def write_section(name: str, markdown: str) -> None:
    """Replace (or append) the section ``name`` of docs/benchmarks.md."""
    BENCHMARKS_MD.parent.mkdir(parents=True, exist_ok=True)
    text = BENCHMARKS_MD.read_text() if BENCHMARKS_MD.exists() else HEADER
    begin, end = f"<!-- begin {name} -->", f"<!-- end {name} -->"
    block = f"{begin}\n{markdown.strip()}\n{end}"
    if begin in text and end in text:
        before = text[: text.index(begin)]
        after = text[text.index(end) + len(end):]
        text = before + block + after
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    BENCHMARKS_MD.write_text(text)
    print(f"wrote section {name!r} of {BENCHMARKS_MD}")

"""How long Graphviz takes to lay out and draw a 2,000-node tinyad graph.

The graph is a scalar BatchNorm over 180 samples (about 2,000 nodes, every
sample its own node), drawn in full and drawn collapsed. Both renderers are
timed where available: the system `dot` program and the Graphviz engine
bundled in the pygraphviz wheel. Medians over repeats. No target: the table
shows why ``draw`` refuses big graphs unless told and offers ``collapse``.

Writes: the section "layout" of docs/benchmarks.md (a full run).

Run:  python benchmarks/layout.py                 (about a minute)
      python benchmarks/layout.py --quick         (20 samples, one run: seconds)
"""
from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _report import argument_parser, machine_line, output_file, write_section  # noqa: E402

from tinyad import viz  # noqa: E402
from tinyad.cli import batchnorm_graph  # noqa: E402
from tinyad.graph import topological_order  # noqa: E402


def median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(repeats: int = 3, samples: int = 180, out: Path | None = None) -> None:
    loss, _ = batchnorm_graph(samples, 1)
    nodes = len(topological_order(loss))
    full = viz.draw(loss, max_nodes=10_000, simplify=False).source  # every node its own box
    collapsed = viz.draw(loss, collapse=["x[", "centered", "x_hat", "gamma*x_hat", "y["]).source
    renderers = {}
    if shutil.which("dot"):
        renderers["system dot"] = lambda source: subprocess.run(
            [shutil.which("dot"), "-Tsvg"], input=source.encode(), capture_output=True, check=True)
    try:
        import pygraphviz

        renderers["pygraphviz (bundled engine)"] = lambda source: pygraphviz.AGraph(string=source).draw(format="svg", prog="dot")
    except ImportError:  # pragma: no cover
        pass
    rows = ["| renderer | graph | boxes | median seconds to lay out and draw SVG |", "|---|---|---|---|"]
    for name, render in renderers.items():
        for kind, source in (("full", full), ("collapsed", collapsed)):
            boxes = sum(1 for line in source.splitlines() if "[id=" in line)
            seconds = median_seconds(lambda: render(source), repeats)
            rows.append(f"| {name} | {kind} | {boxes} | {seconds:.2f} |")
            print(rows[-1], flush=True)
    markdown = "\n".join([
        "## Drawing big graphs",
        "",
        f"A scalar BatchNorm graph of {nodes:,} nodes ({samples} samples), laid out with `dot` and written as",
        f"SVG; median of {repeats} runs. Command: `python benchmarks/layout.py`.",
        "",
        *rows,
        "",
        machine_line(),
    ])
    write_section("layout", markdown, out)


if __name__ == "__main__":
    args = argument_parser(__doc__, "layout").parse_args()
    main(1 if args.quick else 3, samples=20 if args.quick else 180, out=output_file(args))

"""Drawing the graph: DOT text, rendering, and the routes gradient takes.

``draw(root)`` turns the graph under ``root`` into Graphviz DOT text, one box
per node showing its label, op, data and grad. ``routes(x, root, through)``
splits ``x.grad`` into the contributions of the paths that pass first through
each of the given intermediates: for a BatchNorm sample, its own x_hat, the
batch mean and the batch variance. ``draw(..., highlight=x, through=...)``
colours those routes and writes the gradient message on every edge.

Rendering uses the system ``dot`` when it is on PATH, otherwise the Graphviz
engine bundled in the ``pygraphviz`` wheel; without either, ``render`` still
writes the ``.dot`` file and says how to get pictures.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any, Sequence

from .graph import Node, topological_order

__all__ = ["draw", "Drawing", "routes", "escape"]

ROUTE_COLOURS = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]


def escape(text: str) -> str:
    """Make ``text`` safe inside a double-quoted DOT string.

    Backslashes and quotes are escaped (so a label cannot close the string and
    add attributes of its own); a newline becomes DOT's centred line break.
    Braces, angle brackets and ``|`` are plain characters in a quoted string
    of a non-record node, which is the only kind drawn here.
    """
    text = str(text).replace("\\", "\\\\").replace('"', '\\"')
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\\n")


def _summary(array: Any) -> str:
    """A number, a tiny array in full, or shape and range for anything bigger."""
    if array is None:
        return "-"
    if isinstance(array, float):
        return f"{array:.4g}"
    data = getattr(array, "get", None)
    if data is not None and not hasattr(array, "__array_interface__"):
        array = array.get()  # a CuPy array: copy to the host for drawing
    import numpy as np

    array = np.asarray(array)
    if array.size == 1:
        return f"{array.item():.4g}"
    if array.size <= 6:
        return np.array2string(array.reshape(-1), precision=3, separator=", ", suppress_small=True)
    return f"{array.shape} in [{array.min():.3g}, {array.max():.3g}]"


def _kind(node: Node, root: Node) -> str:
    if node is root:
        return "output"
    if node.parents:
        return "intermediate"
    if type(node).__name__ == "Tensor":
        return "parameter" if node.requires_grad else "input"
    return "input"


STYLES = {
    "input": 'style="filled", fillcolor="#dbe9f6"',
    "parameter": 'style="filled", fillcolor="#fde9b6"',
    "intermediate": 'style="filled", fillcolor="white"',
    "output": 'style="filled,bold", fillcolor="#f6d5d5", peripheries=2',
}


class Drawing:
    """DOT source plus rendering: ``.source``, ``.render(path)``, ``_repr_svg_()``."""

    def __init__(self, source: str) -> None:
        self.source = source

    def __str__(self) -> str:
        return self.source

    def render(self, path: str | Path) -> Path:
        """Write the picture to ``path`` (format from its suffix: .svg, .png, .pdf or .dot).

        Always writes the DOT text next to it (``path`` with suffix .dot).
        Returns the path of the picture, or of the .dot file when no renderer exists.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        dot_path = path.with_suffix(".dot")
        dot_path.write_text(self.source)
        fmt = path.suffix.lstrip(".").lower()
        if fmt == "dot":
            return dot_path
        if fmt not in ("svg", "png", "pdf"):
            raise ValueError(f"render: unknown picture format {path.suffix!r}: use .svg, .png, .pdf or .dot")
        path.write_bytes(render_bytes(self.source, fmt))
        return path

    def _repr_svg_(self) -> str:
        return render_bytes(self.source, "svg").decode("utf-8")


class RendererMissing(RuntimeError):
    """Neither a ``dot`` program nor the pygraphviz package is available."""


def render_bytes(source: str, fmt: str) -> bytes:
    """Lay out and draw DOT ``source`` as ``fmt`` bytes: system dot first, then pygraphviz."""
    dot = shutil.which("dot")
    if dot is not None:
        done = subprocess.run([dot, f"-T{fmt}"], input=source.encode("utf-8"), capture_output=True, check=False)
        if done.returncode == 0:
            return done.stdout
    try:
        import pygraphviz
    except ImportError:
        raise RendererMissing(
            "no Graphviz renderer found: install the pygraphviz wheel (pip install 'pygraphviz>=2.0', "
            "it bundles the Graphviz engine) or the Graphviz 'dot' program; the .dot text was written "
            "and any Graphviz viewer can open it"
        ) from None
    graph = pygraphviz.AGraph(string=source)
    return graph.draw(format=fmt, prog="dot")


# ---------------------------------------------------------------------------
# routes: which paths carried a node's gradient
# ---------------------------------------------------------------------------


def routes(x: Node, root: Node, through: Sequence[Node]) -> dict[str, Any]:
    """Split ``x.grad`` (from a backward pass from ``root``) by route.

    Every path from ``x`` up to ``root`` is assigned to the first node of
    ``through`` it meets; the paths that meet none form the route "other".
    The contribution of the route through M is dL/dM (its ``.grad``) carried
    back to ``x`` along the paths from x to M that avoid the other ``through``
    nodes, so the contributions add up to ``x.grad`` exactly (up to rounding).

    For a BatchNorm sample with through = (its x_hat, batch_var, batch_mean)
    these are the three terms of the hand derivation:
    dL/dx_i = dL/dx_hat_i * inv_std + dL/dvar * 2 (x_i - mean) / m + dL/dmean / m.
    Returns ``{label or op of M: contribution}`` plus ``"other"``.
    """
    if root.messages is None:
        raise ValueError("routes: call backward() on the root first: there are no gradients to split yet")
    order = topological_order(root)
    # nodes from which x can be reached going down (x is among their ancestors)
    above_x = _depends_on(order, x)
    cut = {id(node) for node in through}
    result: dict[str, Any] = {}
    for target in through:
        if id(target) not in above_x:
            result[_name(target)] = 0.0
            continue
        result[_name(target)] = _restricted_backward(order, target, x, cut, above_x)
    total = None
    for value in result.values():
        total = value if total is None else total + value
    result["other"] = x.grad - total
    return result


def _depends_on(order: list[Node], x: Node) -> set[int]:
    """ids of the nodes whose value depends on ``x`` (x included)."""
    reached = {id(x)}
    for node in order:
        if any(id(parent) in reached for parent in node.parents):
            reached.add(id(node))
    return reached


def _restricted_backward(order: list[Node], start: Node, x: Node, cut: set[int], above_x: set[int]) -> Any:
    """Backpropagate start.grad from ``start`` to ``x``, not passing through other cut nodes."""
    pending: dict[int, Any] = {id(start): start.grad}
    for node in reversed(order):
        upstream = pending.pop(id(node), None)
        if upstream is None:
            continue
        if node is x:
            return upstream
        if not node.parents:
            continue
        for parent, message in zip(node.parents, node.backward_fn(node, upstream)):
            if message is None or id(parent) not in above_x:
                continue
            if id(parent) in cut and parent is not x:
                continue  # this path meets another route's node first
            key = id(parent)
            pending[key] = message if key not in pending else pending[key] + message
    return 0.0


def _name(node: Node) -> str:
    return node.label or node.op or "leaf"


# ---------------------------------------------------------------------------
# draw
# ---------------------------------------------------------------------------


def draw(
    root: Node,
    highlight: Node | None = None,
    through: Sequence[Node] = (),
    rankdir: str = "LR",
    max_nodes: int = 400,
    title: str = "",
) -> Drawing:
    """DOT drawing of the graph under ``root``.

    Each box shows the node's label, its op, its data and its grad. Inputs,
    parameters, intermediates and the output are filled differently (legend
    at the bottom). With ``highlight=x`` and ``through=[...]`` every edge on a
    route from x to one of ``through`` nodes is coloured by route and labelled
    with the gradient message it carried, and the legend lists each route's
    contribution to x.grad. Graphs larger than ``max_nodes`` are refused with
    a message (draw a smaller example, or raise the cap).
    """
    order = topological_order(root)
    if len(order) > max_nodes:
        raise ValueError(
            f"draw: the graph has {len(order)} nodes, more than max_nodes={max_nodes}; "
            "draw a smaller example (fewer samples or features) or pass a larger max_nodes"
        )
    backward_done = root.messages is not None or (not root.parents and root.grad not in (None, 0.0))
    ids = {id(node): f"n{index}" for index, node in enumerate(order)}
    lines = [
        "digraph tinyad {",
        f'  graph [rankdir="{escape(rankdir)}", fontname="Helvetica", nodesep=0.25, ranksep=0.5];',
        '  node [shape="box", fontname="Helvetica", fontsize=10];',
        '  edge [fontname="Helvetica", fontsize=9, color="#777777"];',
    ]
    route_of_edge: dict[tuple[int, int], int] = {}
    legend_routes: list[str] = []
    if highlight is not None:
        if not backward_done:
            raise ValueError("draw: highlight needs gradients: call backward() on the root first")
        contributions = routes(highlight, root, through)
        above = _depends_on(order, highlight)
        for number, target in enumerate(through):
            for edge in _route_edges(order, target, highlight, {id(t) for t in through}, above):
                route_of_edge.setdefault(edge, number)
            legend_routes.append(
                f"via {_name(target)}: {_summary(contributions[_name(target)])}"
            )
        legend_routes.append(f"sum = {_name(highlight)}.grad = {_summary(highlight.grad)}")
    for node in order:
        kind = _kind(node, root)
        grad_text = _summary(node.grad) if backward_done else "(run backward() first)"
        rows = [node.label or ("" if node.parents else "leaf")]
        if node.op:
            rows.append(f"op: {node.op}")
        rows.append(f"data: {_summary(node.data)}")
        rows.append(f"grad: {grad_text}")
        text = escape("\n".join(row for row in rows if row))
        extra = ', penwidth=3, color="#d62728"' if node is highlight else ""
        lines.append(f'  {ids[id(node)]} [label="{text}", {STYLES[kind]}{extra}];')
    for node in order:
        for index, parent in enumerate(node.parents):
            key = (id(parent), id(node))
            attributes = []
            if key in route_of_edge:
                colour = ROUTE_COLOURS[route_of_edge[key] % len(ROUTE_COLOURS)]
                message = node.messages[index] if node.messages is not None else None
                attributes += [f'color="{colour}"', "penwidth=2.5", f'fontcolor="{colour}"',
                               f'label="{escape(_summary(message))}"']
            suffix = f" [{', '.join(attributes)}]" if attributes else ""
            lines.append(f"  {ids[id(parent)]} -> {ids[id(node)]}{suffix};")
    legend = [title] if title else []
    if not backward_done:
        legend.append("backward() has not run yet: no gradients to show")
    legend += legend_routes
    legend.append("blue: input   yellow: parameter   white: intermediate   pink: output")
    lines.append(f'  label="{escape(chr(10).join(legend))}"; labelloc="b"; fontsize=11;')
    lines.append("}")
    return Drawing("\n".join(lines) + "\n")


def _route_edges(order: list[Node], target: Node, x: Node, cut: set[int], above_x: set[int]) -> set[tuple[int, int]]:
    """Edges on the paths from ``x`` up to ``target`` that avoid the other ``cut`` nodes."""
    # down from target: the edges a restricted backward pass would use
    below_target = {id(target)}
    allowed: set[tuple[int, int]] = set()
    for node in reversed(order):
        if id(node) not in below_target or node is x:
            continue
        for parent in node.parents:
            if id(parent) not in above_x or (id(parent) in cut and parent is not x):
                continue
            below_target.add(id(parent))
            allowed.add((id(parent), id(node)))
    # up from x: keep only those edges that lie on a path starting at x
    on_route = {id(x)}
    edges_found: set[tuple[int, int]] = set()
    for node in order:
        for parent in node.parents:
            if (id(parent), id(node)) in allowed and id(parent) in on_route:
                on_route.add(id(node))
                edges_found.add((id(parent), id(node)))
    return edges_found

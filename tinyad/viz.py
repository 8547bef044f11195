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

__all__ = ["draw", "Drawing", "routes", "escape", "animate", "RendererMissing"]

# dot's default layout routes curved edges and searches long for few
# crossings: fine for a lesson's 50 nodes, minutes for 2,000. Above this many
# boxes, edges are straight and the crossing search is cut short.
FAST_LAYOUT_ABOVE = 300
FAST_LAYOUT = "  graph [splines=false, mclimit=0.01, nslimit=0.05, nslimit1=0.05, remincross=false, searchsize=10];"

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
    """A number; a tiny array's shape and values; shape and range for anything bigger."""
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
        values = np.array2string(array.reshape(-1), precision=3, separator=", ", suppress_small=True)
        return f"{array.shape} {values}"
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
    """DOT source plus rendering: ``.source``, ``.render(path)``, ``_repr_svg_()``.

    ``.source`` is the Graphviz DOT text (``str(drawing)`` gives it too);
    ``_repr_svg_()`` is the hook that makes Jupyter show the drawing as SVG.
    """

    def __init__(self, source: str) -> None:
        self.source = source

    def __str__(self) -> str:
        return self.source

    def render(self, path: str | Path) -> Path:
        """Write the picture to ``path`` (format from its suffix: .svg, .png, .pdf or .dot).

        Always writes the DOT text next to it first (``path`` with suffix
        .dot), so the .dot file is there even when no renderer is and
        ``RendererMissing`` is raised. Returns the path of the picture.
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
    """Neither a ``dot`` program nor the pygraphviz package is available.

    Raised when a picture is asked for; ``render`` has already written the
    DOT text beside the picture's path, and any Graphviz viewer can draw it.
    """


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
    collapse: Sequence[str] = (),
) -> Drawing:
    """DOT drawing of the graph under ``root``.

    Each box shows the node's label, its op, its data and its grad. Inputs,
    parameters, intermediates and the output are filled differently (legend
    at the bottom). Before ``root.backward()`` the boxes and the legend say
    that there are no gradients yet. With ``highlight=x`` and ``through=[...]`` every edge on a
    route from x to one of the ``through`` nodes is coloured by route and
    labelled with the gradient message it carried, and the legend lists each
    route's contribution to x.grad.

    Big graphs: ``collapse=["centered", "x_hat"]`` draws all nodes whose label
    starts with one of those prefixes as one box per prefix, and nodes
    without a label that only feed one group are folded into it. A graph
    that still has more than ``max_nodes`` boxes is refused with a message.
    Above 300 boxes the drawing asks dot for straight edges and a short
    search for few crossings, so a 2,000-node graph lays out in seconds
    instead of minutes.

    ``rankdir`` is DOT's direction ("LR": inputs on the left; "TB": on top),
    ``title`` a line above the legend. Labels pass through ``escape``.
    Returns a ``Drawing``: ``.render("graph.svg")`` writes the picture, and a
    Jupyter notebook shows it by itself.
    """
    order = topological_order(root)
    backward_done = root.messages is not None or (not root.parents and root.grad not in (None, 0.0))
    group_of = _groups(order, collapse, root)
    boxes = len({group_of.get(id(node), id(node)) for node in order})
    if boxes > max_nodes:
        raise ValueError(
            f"draw: the graph has {boxes} boxes to draw, more than max_nodes={max_nodes}; "
            "draw a smaller example, group nodes with collapse=[label prefixes], or pass a larger max_nodes"
        )
    ids = {id(node): f"n{index}" for index, node in enumerate(order)}
    lines = [
        "digraph tinyad {",
        f'  graph [rankdir="{escape(rankdir)}", fontname="Helvetica", nodesep=0.25, ranksep=0.5];',
        '  node [shape="box", fontname="Helvetica", fontsize=10];',
        '  edge [fontname="Helvetica", fontsize=9, color="#777777"];',
    ]
    if boxes > FAST_LAYOUT_ABOVE:
        lines.append(FAST_LAYOUT)
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
            legend_routes.append(f"via {_name(target)}: {_summary(contributions[_name(target)])}")
        legend_routes.append(f"sum = {_name(highlight)}.grad = {_summary(highlight.grad)}")
    drawn_groups: dict[str, str] = {}
    for node in order:
        group = group_of.get(id(node))
        if group is not None:
            if group not in drawn_groups:
                drawn_groups[group] = f"g{len(drawn_groups)}"
                members = sum(1 for other in order if group_of.get(id(other)) == group)
                text = escape(f"{group}*\n{members} nodes (collapsed)")
                lines.append(f'  {drawn_groups[group]} [id="{drawn_groups[group]}", label="{text}", '
                             'style="filled,dashed", fillcolor="#eeeeee"];')
            continue
        kind = _kind(node, root)
        grad_text = _summary(node.grad) if backward_done else "(run backward() first)"
        rows = [node.label or ("" if node.parents else "leaf")]
        if node.op:
            rows.append(f"op: {node.op}")
        rows.append(f"data: {_summary(node.data)}")
        rows.append(f"grad: {grad_text}")
        text = escape("\n".join(row for row in rows if row))
        extra = ', penwidth=3, color="#d62728"' if node is highlight else ""
        lines.append(f'  {ids[id(node)]} [id="{ids[id(node)]}", label="{text}", {STYLES[kind]}{extra}];')

    def box(node: Node) -> str:
        group = group_of.get(id(node))
        return drawn_groups[group] if group is not None else ids[id(node)]

    drawn_edges: set[tuple[str, str]] = set()
    for node in order:
        for index, parent in enumerate(node.parents):
            tail, head = box(parent), box(node)
            key = (id(parent), id(node))
            attributes = []
            if key in route_of_edge and tail != head:
                colour = ROUTE_COLOURS[route_of_edge[key] % len(ROUTE_COLOURS)]
                message = node.messages[index] if node.messages is not None else None
                attributes += [f'color="{colour}"', "penwidth=2.5", f'fontcolor="{colour}"',
                               f'label="{escape(_summary(message))}"']
            elif tail == head or (tail, head) in drawn_edges:
                continue  # inside one group, or a parallel edge between groups already drawn
            drawn_edges.add((tail, head))
            suffix = f" [{', '.join(attributes)}]" if attributes else ""
            lines.append(f"  {tail} -> {head}{suffix};")
    legend = [title] if title else []
    if not backward_done:
        legend.append("backward() has not run yet: no gradients to show")
    legend += legend_routes
    legend.append("blue: input   yellow: parameter   white: intermediate   pink: output")
    lines.append(f'  label="{escape(chr(10).join(legend))}"; labelloc="b"; fontsize=11;')
    lines.append("}")
    return Drawing("\n".join(lines) + "\n")


def _groups(order: list[Node], prefixes: Sequence[str], root: Node) -> dict[int, str]:
    """Map node ids to the label prefix whose group they are drawn in."""
    if not prefixes:
        return {}
    group_of: dict[int, str] = {}
    for node in order:
        if node is root:
            continue
        for prefix in prefixes:
            if node.label and node.label.startswith(prefix):
                group_of[id(node)] = prefix
                break
    # fold unlabelled helper nodes (running sums, constants, products) into the
    # group of the one node they feed, or into "(inputs of <that node>)"
    consumers: dict[int, list] = {}
    for node in order:
        for parent in node.parents:
            consumers.setdefault(id(parent), []).append(node)
    for node in reversed(order):
        if node.label or id(node) in group_of or node is root:
            continue
        feeds = {id(c): c for c in consumers.get(id(node), ())}
        if len(feeds) != 1:
            continue
        (consumer,) = feeds.values()
        group_of[id(node)] = group_of.get(id(consumer)) or f"(inputs of {_name(consumer)})"
    return group_of


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


# ---------------------------------------------------------------------------
# animation of the backward pass
# ---------------------------------------------------------------------------

_ANIMATION_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>__TITLE__</title>
<style>
 body { font-family: Helvetica, Arial, sans-serif; margin: 1em; }
 #controls button { font-size: 1em; margin-right: .4em; }
 #caption { margin: .6em 0; min-height: 1.4em; }
 #picture svg { max-width: 100%; height: auto; }
 .arrived polygon { fill: #ffe28a !important; }
 .current polygon { fill: #ff9f43 !important; }
</style></head><body>
<h2>__TITLE__</h2>
<p>The backward pass visits the nodes in reverse topological order: a node's gradient
is complete only after every node that consumed it has sent its message back.</p>
<div id="controls"><button id="play">play</button><button id="step">step</button><button id="reset">reset</button>
<span id="counter"></span></div>
<div id="caption"></div>
<div id="picture">__SVG__</div>
<script>
const steps = __STEPS__;
let done = 0, timer = null;
function gradText(group) { const texts = group.querySelectorAll("text"); return texts[texts.length - 1]; }
function show() {
  steps.forEach((step, k) => {
    const group = document.getElementById(step.id); if (!group) return;
    group.classList.toggle("arrived", k < done - 1);
    group.classList.toggle("current", k === done - 1);
    gradText(group).textContent = k < done ? step.grad : "grad: ?";
  });
  document.getElementById("counter").textContent = done + " / " + steps.length;
  document.getElementById("caption").textContent = done ? steps[done - 1].caption : "Press step or play.";
}
function step() { if (done < steps.length) { done += 1; show(); } else { stop(); } }
function stop() { clearInterval(timer); timer = null; document.getElementById("play").textContent = "play"; }
document.getElementById("step").onclick = () => { stop(); step(); };
document.getElementById("reset").onclick = () => { stop(); done = 0; show(); };
document.getElementById("play").onclick = () => {
  if (timer) { stop(); return; }
  if (done >= steps.length) done = 0;
  document.getElementById("play").textContent = "pause"; timer = setInterval(step, 700);
};
show();
</script></body></html>
"""


def animate(root: Node, path: str | Path, title: str = "The backward pass, node by node", **draw_options: Any) -> Path:
    """Write a self-contained HTML page that replays backward on the graph of ``root``.

    The graph is drawn once (``draw``'s options apply); the page's script then
    reveals the gradients one node at a time in the order backward computed
    them, with a caption saying which consumers the gradient arrived from.
    Call ``root.backward()`` first.
    """
    import html
    import json

    if root.messages is None and root.parents:
        raise ValueError("animate: call backward() on the root first: there is nothing to replay yet")
    drawing = draw(root, title=title, **draw_options)
    svg = render_bytes(drawing.source, "svg").decode("utf-8")
    svg = svg[svg.index("<svg"):]  # drop the XML prologue and doctype
    order = topological_order(root)
    ids = {id(node): f"n{index}" for index, node in enumerate(order)}
    consumers: dict[int, list[Node]] = {}
    for node in order:
        for parent in node.parents:
            consumers.setdefault(id(parent), []).append(node)
    steps = []
    for node in reversed(order):
        sources = consumers.get(id(node), [])
        names = ", ".join(_name(c) for c in sources[:4]) + (" ..." if len(sources) > 4 else "")
        arrival = f"arrived from {names}" if sources else "seeded: dL/dL = 1"
        steps.append({
            "id": ids[id(node)],
            "grad": f"grad: {_summary(node.grad)}",
            "caption": f"{_name(node)}: dL/d({_name(node)}) = {_summary(node.grad)}, {arrival}",
        })
    page = (_ANIMATION_PAGE.replace("__TITLE__", html.escape(title))
            .replace("__STEPS__", json.dumps(steps).replace("</", "<\\/"))
            .replace("__SVG__", svg))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path

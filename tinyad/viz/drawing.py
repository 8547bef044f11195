"""Drawing the graph as Graphviz DOT text.

``draw(root)`` makes one box per node (label, op, data, grad). Before
drawing, three simplifications make a graph read like its formula without
hiding any number the engine computed:

* a chain of binary ``+`` nodes (``x0 + x1 + x2 + x3``, or Python's
  ``sum(...)``) is drawn as one n-ary ``sum`` box; each term's edge still
  carries the engine's message on the edge it really enters;
* a scalar constant (an unlabelled leaf such as the ``0.25`` of a mean or
  the ``1e-05`` of BatchNorm) is folded into its op's label: ``* 0.25``;
* with ``collapse=[prefixes]``, the nodes whose label starts with a prefix
  are drawn as one box per prefix (for graphs too big to draw node by node).

``draw(root, highlight=x)`` colours the routes of x's gradient (see
``routes``) and writes the gradient message on every edge; ``highlight``
may be a list of samples, and ``every_sample(loss)`` draws a BatchNorm graph
with every sample's three routes (the picture lesson 7 shows).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from ..graph import Node, topological_order
from .render import RendererMissing, escape, html_text, render_bytes
from .routes import name_of, node_list, role_of, route_shares, statistics_of

__all__ = ["draw", "every_sample", "Drawing", "ROUTE_COLOURS", "summary", "batchnorm_samples"]

# dot's default layout routes curved edges and searches long for few
# crossings: fine for a lesson's 50 nodes, minutes for 2,000. Above this many
# boxes, edges are straight and the crossing search is cut short.
FAST_LAYOUT_ABOVE = 300
FAST_LAYOUT = "  graph [splines=false, mclimit=0.01, nslimit=0.05, nslimit1=0.05, remincross=false, searchsize=10];"

# The route colours: nothing else in a picture uses these hues (the node
# fills below are greys and a pale yellow, edges off a route are grey).
ROLE_COLOURS = {"own x_hat": "#d62728", "batch variance": "#1f77b4", "batch mean": "#2ca02c"}
# further routes (a `through` of other nodes), after the three above
OTHER_ROUTE_COLOURS = ["#9467bd", "#e377c2", "#8c564b", "#17becf", "#bcbd22"]
ROUTE_COLOURS = list(ROLE_COLOURS.values()) + OTHER_ROUTE_COLOURS
# on an edge that carries two routes, each share is named briefly (the colour says the rest)
SHORT_NAMES = {"own x_hat": "own", "batch variance": "var", "batch mean": "mean"}
NEUTRAL_EDGE = "#444444"  # an edge with a message that is on no route
PLAIN_EDGE = "#999999"    # an edge that no gradient of interest passes

KIND_FILLS = {
    "input": ("#e6e6e6", "input"),
    "parameter": ("#fff4c2", "parameter"),
    "leaf": ("#e6e6e6", "leaf"),
    "intermediate": ("#ffffff", "intermediate"),
    "sum": ("#f4f4f4", "n-ary sum of a + chain"),
    "output": ("#d9d9d9", "output"),
    "group": ("#eeeeee", "collapsed group"),
}


def summary(value: Any) -> str:
    """A number; a tiny array's shape and values; shape and range for anything bigger."""
    if value is None:
        return "-"
    if isinstance(value, (int, float)):
        return f"{value:.4g}"
    if hasattr(value, "get") and not hasattr(value, "__array_interface__"):
        value = value.get()  # a CuPy array: copy to the host for drawing
    import numpy as np

    array = np.asarray(value)
    if array.size == 1:
        return f"{array.item():.4g}"
    if array.size == 0:
        return f"{array.shape} (empty)"
    if array.size <= 6:
        values = np.array2string(array.reshape(-1), precision=3, separator=", ", suppress_small=True)
        return f"{array.shape} {values}"
    return f"{array.shape} in [{array.min():.3g}, {array.max():.3g}]"


class Drawing:
    """DOT source plus rendering: ``.source``, ``.render(path)``, ``_repr_svg_()``.

    ``.edge_numbers`` lists what the coloured edges show, one entry per drawn
    number: (parent, consumer, position, route, value), where (parent,
    consumer, position) is the engine's edge and route the name of the route
    whose share it is ("message" when it is the whole message).
    """

    def __init__(self, source: str, edge_numbers: list | None = None) -> None:
        self.source = source
        self.edge_numbers = edge_numbers or []

    def __str__(self) -> str:
        return self.source

    def render(self, path: str | Path, keep_dot: bool = True) -> Path:
        """Write the picture to ``path``; the format is its suffix: .svg, .png, .pdf or .dot.

        With ``keep_dot=True`` (the default, so a learner can read what was
        drawn) the DOT text is also written beside the picture (``path`` with
        the suffix .dot); ``keep_dot=False`` writes the file named and nothing
        else (the ``tinyad`` command's ``-o`` never writes another file). When
        no renderer is installed the DOT text is written beside ``path`` and
        the RendererMissing error says so. Returns ``path``.
        """
        path = Path(path)
        fmt = path.suffix.lstrip(".").lower()
        if fmt not in ("svg", "png", "pdf", "dot"):
            raise ValueError(f"render: unknown picture format {path.suffix!r}: use .svg, .png, .pdf or .dot")
        path.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "dot":
            path.write_text(self.source, encoding="utf-8")
            return path
        if keep_dot:
            path.with_suffix(".dot").write_text(self.source, encoding="utf-8")
        try:
            picture = render_bytes(self.source, fmt)
        except RendererMissing as missing:
            dot_path = path.with_suffix(".dot")
            dot_path.write_text(self.source, encoding="utf-8")
            raise RendererMissing(f"{missing}; the DOT text is in {dot_path}") from None
        path.write_bytes(picture)
        return path

    def _repr_svg_(self) -> str:
        return render_bytes(self.source, "svg").decode("utf-8")


# ---------------------------------------------------------------------------
# what becomes a box
# ---------------------------------------------------------------------------


def _consumers(order: Sequence[Node]) -> dict[int, list[Node]]:
    found: dict[int, list[Node]] = {}
    for node in order:
        for parent in node.parents:
            found.setdefault(id(parent), []).append(node)
    return found


def _is_constant(node: Node) -> bool:
    """An unlabelled scalar leaf that no gradient is wanted for: drawn inside its op's label."""
    if node.parents or node.label:
        return False
    if type(node).__name__ == "Tensor":
        return not node.requires_grad and getattr(node.data, "size", 2) == 1
    return True


def _constant_text(node: Node) -> str:
    return summary(node.data)


class _Layout:
    """Which node is drawn in which box, and what each box says."""

    def __init__(self, order: list[Node], root: Node, collapse: Sequence[str], simplify: bool) -> None:
        self.order = order
        self.root = root
        self.consumers = _consumers(order)
        self.box_of: dict[int, str] = {}       # id(node) -> box name ("n7", "g0")
        self.folded: set[int] = set()          # constants drawn inside their consumer's label
        self.folded_into: dict[int, list[tuple[int, Node]]] = {}  # id(consumer) -> [(position, constant)]
        self.sum_terms: dict[str, int] = {}    # sum box -> number of terms
        self.groups: dict[str, tuple[str, int]] = {}  # collapsed box -> (prefix, members)
        ids = {id(node): f"n{index}" for index, node in enumerate(order)}
        self.ids = ids
        group_of = _collapse_groups(order, collapse, root, self.consumers)
        names: dict[str, str] = {}
        for node in order:
            group = group_of.get(id(node))
            if group is not None:
                if group not in names:
                    names[group] = f"g{len(names)}"
                    self.groups[names[group]] = (group, 0)
                prefix, count = self.groups[names[group]]
                self.groups[names[group]] = (prefix, count + 1)
                self.box_of[id(node)] = names[group]
        if simplify:
            self._fold_constants()
            self._group_sums()
        for node in order:
            self.box_of.setdefault(id(node), ids[id(node)])

    def _fold_constants(self) -> None:
        for node in self.order:
            if id(node) in self.box_of or not _is_constant(node):
                continue
            users = self.consumers.get(id(node), [])
            if len(users) != 1:
                continue
            (user,) = users
            parents = user.parents
            if user.op not in ("+", "-", "*", "/") or len(parents) != 2 or parents[0] is parents[1]:
                continue
            if id(user) in self.box_of:
                continue
            position = 0 if parents[0] is node else 1
            self.folded.add(id(node))
            self.folded_into.setdefault(id(user), []).append((position, node))
            self.box_of[id(node)] = ""  # drawn in no box of its own

    def _group_sums(self) -> None:
        """One box for a tree of binary + nodes whose inner nodes are unlabelled and used once."""
        top_of: dict[int, Node] = {}
        for node in reversed(self.order):
            if node.op != "+" or id(node) in self.box_of:
                continue
            users = self.consumers.get(id(node), [])
            if (len(users) == 1 and users[0].op == "+" and id(users[0]) in top_of and not node.label
                    and node is not self.root and users[0].parents.count(node) == 1):
                top_of[id(node)] = top_of[id(users[0])]
            else:
                top_of[id(node)] = node
        members: dict[int, list[Node]] = {}
        for node in self.order:
            if id(node) in top_of:
                members.setdefault(id(top_of[id(node)]), []).append(node)
        for top_id, group in members.items():
            if len(group) < 2:
                continue
            box = self.ids[top_id]
            inside = {id(n) for n in group}
            terms = 0
            for member in group:
                self.box_of[id(member)] = box
                for parent in member.parents:
                    if id(parent) not in inside:
                        terms += 1
            self.sum_terms[box] = terms

    def op_text(self, node: Node) -> str:
        """The op, with a folded constant written into it: ``* 0.25``, ``1 / .``."""
        box = self.box_of[id(node)]
        if box in self.sum_terms:
            constants = [c for m in self.order if self.box_of.get(id(m)) == box
                         for _, c in self.folded_into.get(id(m), [])]
            added = [summary(c.data) for c in constants if c.data != 0]
            return f"sum of {self.sum_terms[box] - len(constants)}" + "".join(f" + {a}" for a in added)
        folded = self.folded_into.get(id(node))
        if not folded:
            return node.op
        position, constant = folded[0]
        if position == 1 or node.op in ("+", "*"):
            return f"{node.op} {_constant_text(constant)}"
        return f"{_constant_text(constant)} {node.op} ."

    def kind(self, node: Node, inputs: set[int]) -> str:
        if node is self.root:
            return "output"
        if self.box_of[id(node)] in self.sum_terms:
            return "sum"
        if node.parents:
            return "intermediate"
        if type(node).__name__ == "Tensor":
            if id(node) in inputs:
                return "input"
            return "parameter" if node.requires_grad else "input"
        if inputs:
            return "input" if id(node) in inputs else "parameter"
        return "leaf"


def _collapse_groups(order: list[Node], prefixes: Sequence[str], root: Node,
                     consumers: dict[int, list[Node]]) -> dict[int, str]:
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
    for node in reversed(order):
        if node.label or id(node) in group_of or node is root:
            continue
        feeds = {id(c): c for c in consumers.get(id(node), ())}
        if len(feeds) != 1:
            continue
        (consumer,) = feeds.values()
        group_of[id(node)] = group_of.get(id(consumer)) or f"(inputs of {name_of(consumer)})"
    return group_of


# ---------------------------------------------------------------------------
# routes: what colour each edge is and which number it shows
# ---------------------------------------------------------------------------


class _Route:
    def __init__(self, name: str, colour: str) -> None:
        self.name = name
        self.colour = colour
        self.statistics: list[Node] = []
        self.contribution: dict[int, Any] = {}  # id(sample) -> share of its grad
        self.shares: dict[tuple[int, int, int], Any] = {}  # edges below the statistic
        self.into: set[tuple[int, int, int]] = set()       # edges that feed the statistic


def _plan_routes(order: list[Node], samples: list[Node], through: Sequence[Node] | None) -> list[_Route]:
    """The routes of ``samples``' gradients: one per BatchNorm role, or one per ``through`` node."""
    if through is None:
        statistics: list[Node] = []
        for x in samples:
            for node in statistics_of(x, order[-1], order):
                if all(node is not other for other in statistics):
                    statistics.append(node)
    else:
        statistics = [node for node in node_list(through, "draw: through") if all(node is not x for x in samples)]
    routes: dict[str, _Route] = {}
    extra = 0
    for node in statistics:
        role = role_of(node) or name_of(node)  # all batch means are one route (one per feature)
        if role not in routes:
            colour = ROLE_COLOURS.get(role)
            if colour is None:
                colour = OTHER_ROUTE_COLOURS[extra % len(OTHER_ROUTE_COLOURS)]
                extra += 1
            routes[role] = _Route(role, colour)
        routes[role].statistics.append(node)
    cut = {id(node) for node in statistics}
    consumers = _consumers(order)
    for route in routes.values():
        shares = route_shares(order, route.statistics, samples, cut)
        route.shares, route.contribution = shares.edges, shares.arrived
        for statistic in route.statistics:
            route.into |= _into_edges(statistic, consumers, cut)
    return [r for r in routes.values() if r.shares or r.into]


def _into_edges(statistic: Node, consumers: dict[int, list[Node]], cut: set[int]) -> set[tuple[int, int, int]]:
    """The edges whose message goes wholly into ``statistic``.

    From the statistic to its consumers, and on through any consumer whose
    only non-constant input is the node before it (batch_var -> var_eps ->
    inv_std -> every x_hat): all the gradient such a node receives flows on
    into the statistic.
    """
    found: set[tuple[int, int, int]] = set()
    frontier = [statistic]
    while frontier:
        node = frontier.pop()
        for user in consumers.get(id(node), []):
            for position, parent in enumerate(user.parents):
                if parent is node:
                    found.add((id(node), id(user), position))
            others = [p for p in user.parents if p is not node and not _is_constant(p)]
            if not others and id(user) not in cut:
                frontier.append(user)
    return found


# ---------------------------------------------------------------------------
# draw
# ---------------------------------------------------------------------------


def draw(
    root: Node,
    highlight: Node | Sequence[Node] | None = None,
    through: Sequence[Node] | None = None,
    rankdir: str = "LR",
    max_nodes: int = 400,
    title: str = "",
    collapse: Sequence[str] = (),
    inputs: Sequence[Node] = (),
    messages: bool | None = None,
    simplify: bool = True,
) -> Drawing:
    """DOT drawing of the graph under ``root``.

    Each box shows the node's label, its op, its data and its grad. Inputs,
    parameters, intermediates and the output are filled differently (legend
    in the picture). A Value leaf is an input when it is listed in
    ``inputs`` (or highlighted), and a parameter otherwise; with neither given
    it is just a "leaf". A Tensor leaf is a parameter when it requires grad.

    ``highlight=x`` (a node, or a list of samples) colours the routes of
    their gradients: the edges on the paths from each sample up to each
    statistic of ``through`` (default: BatchNorm's own x_hat, batch_var and
    batch_mean, found by their labels) in that statistic's colour, and the
    edges whose message flows into a statistic too. Every edge is labelled
    with its gradient message; an edge that carries two routes (x_i ->
    centered_i carries the own-x_hat and the variance route) shows each
    route's share above their sum, which is the engine's message. The legend
    lists each route's contribution to the highlighted sample's ``.grad``.

    ``messages=True`` labels every edge with its message also without
    highlight. ``simplify=False`` draws every node of the engine as it is
    (no sum boxes, no folded constants). ``collapse=["centered", "x_hat"]``
    draws the nodes whose label starts with one of those prefixes as one box
    per prefix. A graph with more than ``max_nodes`` boxes is refused.
    """
    from .routes import _check_node

    root = _check_node(root, "draw: root")
    order = topological_order(root)
    in_graph = {id(node) for node in order}
    backward_done = root.messages is not None or (not root.parents and root.grad not in (None, 0.0))
    samples: list[Node] = []
    if highlight is not None:
        for node in node_list(highlight, "draw: highlight"):
            if id(node) not in in_graph:
                raise ValueError(f"draw: highlight {name_of(node)!r} is not in the graph under {name_of(root)!r}")
            if all(node is not other for other in samples):
                samples.append(node)
        if samples and not backward_done:
            raise ValueError("draw: highlight needs gradients: call backward() on the root first")
    layout = _Layout(order, root, collapse, simplify)
    boxes = {box for box in layout.box_of.values() if box}
    if len(boxes) > max_nodes:
        raise ValueError(
            f"draw: the graph has {len(boxes)} boxes to draw, more than max_nodes={max_nodes}; "
            "draw a smaller example, group nodes with collapse=[label prefixes], or pass a larger max_nodes"
        )
    route_list = _plan_routes(order, samples, through) if samples else []
    show_messages = backward_done and (bool(samples) if messages is None else messages)
    # inputs: those named, the highlighted leaves, and the leaves BatchNorm averages (its samples)
    input_ids = {id(n) for n in node_list(inputs, "draw: inputs")} | {id(n) for n in samples if not n.parents}
    if samples:
        input_ids |= {id(n) for n in _samples_of(order)}
    if rankdir not in ("LR", "RL", "TB", "BT"):
        raise ValueError(f"draw: rankdir must be one of LR, RL, TB, BT, got {rankdir!r}")
    lines = [
        "digraph tinyad {",
        f'  graph [rankdir="{rankdir}", fontname="Helvetica", nodesep=0.18, ranksep=0.32, '
        'pad=0.15, newrank=true];',
        '  node [shape="box", fontname="Helvetica", fontsize=11, margin="0.06,0.03", height=0.3];',
        f'  edge [fontname="Helvetica", fontsize=10, color="{PLAIN_EDGE}", arrowsize=0.6];',
    ]
    if len(boxes) > FAST_LAYOUT_ABOVE:
        lines.append(FAST_LAYOUT)
    kinds_used: list[str] = []
    drawn: set[str] = set()
    sample_ids = {id(n) for n in samples}
    for node in order:
        box = layout.box_of[id(node)]
        if not box or box in drawn:
            continue
        if box in layout.groups:
            prefix, members = layout.groups[box]
            text = escape(f"{prefix}*\n{members} nodes (collapsed)", limit=4 * 64)
            lines.append(f'  {box} [id="{box}", label="{text}", style="filled,dashed", '
                         f'fillcolor="{KIND_FILLS["group"][0]}"];')
            drawn.add(box)
            kinds_used.append("group")
            continue
        if box != layout.ids[id(node)]:
            continue  # an inner node of a sum: its box is drawn with the top of the chain
        drawn.add(box)
        kind = layout.kind(node, input_ids)
        kinds_used.append(kind)
        grad_text = summary(node.grad) if backward_done else "?"
        rows = []
        if node.label:
            rows.append(escape(node.label))
        op = layout.op_text(node)
        if op:
            rows.append(escape(f"op: {op}"))
        elif not node.label:
            rows.append("leaf")
        rows.append(escape(f"data: {summary(node.data)}"))
        rows.append(escape(f"grad: {grad_text}"))
        style = "filled,bold" if kind == "output" else "filled"
        extra = ", peripheries=2" if kind == "output" else ""
        if id(node) in sample_ids:
            extra += ', penwidth=2.5, color="#000000"'
        text = "\\n".join(rows)
        lines.append(f'  {box} [id="{box}", label="{text}", style="{style}", '
                     f'fillcolor="{KIND_FILLS[kind][0]}"{extra}];')
    edge_numbers: list[tuple[Node, Node, int, str, Any]] = []
    seen_plain: set[tuple[str, str]] = set()
    for node in order:
        for position, parent in enumerate(node.parents):
            tail, head = layout.box_of[id(parent)], layout.box_of[id(node)]
            if not tail or tail == head:
                continue  # a folded constant, or an edge inside a box
            key = (id(parent), id(node), position)
            sent = node.messages[position] if node.messages is not None else None
            on = [(r, r.shares[key]) for r in route_list if key in r.shares]
            into = [r for r in route_list if key in r.into]
            edge_id = f"e_{layout.ids[id(parent)]}_{layout.ids[id(node)]}_{position}"
            attributes = [f'id="{edge_id}"']
            if len(on) > 1:
                colours = ":".join(r.colour for r, _ in on)
                cells = "".join(
                    f'<tr><td><font color="{r.colour}">{html_text(SHORT_NAMES.get(r.name, r.name))}: '
                    f'{html_text(summary(v))}</font></td></tr>'
                    for r, v in on)
                cells += f'<tr><td>= {html_text(summary(sent))}</td></tr>'
                attributes += [f'color="{colours}"', "penwidth=1.6",
                               f'label=<<table border="0" cellborder="0" cellspacing="0" cellpadding="0">{cells}</table>>']
                edge_numbers += [(parent, node, position, r.name, v) for r, v in on]
                edge_numbers.append((parent, node, position, "message", sent))
            elif on or into:
                route = on[0][0] if on else into[0]
                attributes += [f'color="{route.colour}"', "penwidth=2.2", f'fontcolor="{route.colour}"']
                if show_messages:
                    attributes.append(f'label="{escape(summary(sent))}"')
                    edge_numbers.append((parent, node, position, "message", sent))
            elif show_messages and sent is not None:
                attributes += [f'color="{NEUTRAL_EDGE}"', f'fontcolor="{NEUTRAL_EDGE}"',
                               f'label="{escape(summary(sent))}"']
                edge_numbers.append((parent, node, position, "message", sent))
            elif (tail, head) in seen_plain:
                continue  # a parallel plain edge between two boxes: one line is enough
            seen_plain.add((tail, head))
            lines.append(f"  {tail} -> {head} [{', '.join(attributes)}];")
    lines.append(_legend(title, backward_done, route_list, samples, kinds_used, show_messages))
    lines.append("}")
    return Drawing("\n".join(lines) + "\n", edge_numbers)


def _legend(title: str, backward_done: bool, route_list: list, samples: list, kinds_used: list,
            show_messages: bool) -> str:
    rows = []
    if title:
        rows.append(f'<tr><td colspan="2"><b>{html_text(title, limit=200)}</b></td></tr>')
    if not backward_done:
        rows.append('<tr><td colspan="2">backward() has not run yet: no gradients to show</td></tr>')
    for route in route_list:
        text = f"route via {route.name}"
        if len(samples) == 1:
            share = route.contribution.get(id(samples[0]))
            text += f": {summary(share if share is not None else 0.0)}"
        rows.append(f'<tr><td bgcolor="{route.colour}" width="28"> </td>'
                    f'<td align="left"><font color="{route.colour}">{html_text(text, limit=200)}</font></td></tr>')
    if len(samples) == 1 and samples[0].grad is not None:
        rows.append(f'<tr><td></td><td align="left">sum of the routes = {html_text(name_of(samples[0]))}.grad = '
                    f'{html_text(summary(samples[0].grad))}</td></tr>')
    if show_messages:
        rows.append(f'<tr><td bgcolor="{NEUTRAL_EDGE}" width="28"> </td><td align="left">'
                    "an edge's number: the gradient message it carried back</td></tr>")
    seen = []
    for kind in kinds_used:
        if kind not in seen:
            seen.append(kind)
    swatches = "".join(f'<td bgcolor="{KIND_FILLS[k][0]}" border="1"> {html_text(KIND_FILLS[k][1])} </td>' for k in seen)
    if swatches:
        rows.append(f'<tr><td colspan="2"><table border="0" cellspacing="4"><tr><td>boxes:</td>{swatches}'
                    "</tr></table></td></tr>")
    table = f'<table border="0" cellborder="0" cellspacing="2">{"".join(rows)}</table>'
    return f'  label=<{table}>; labelloc="b"; labeljust="l"; fontsize=12;'


def batchnorm_samples(root: Node) -> list[Node]:
    """The leaves that feed a BatchNorm batch mean (the samples), in graph order."""
    return _samples_of(topological_order(root))


def _samples_of(order: list[Node]) -> list[Node]:
    means = [node for node in order if role_of(node) == "batch mean"]
    below: set[int] = set()
    for mean in means:
        stack = [mean]
        while stack:
            node = stack.pop()
            for parent in node.parents:
                if id(parent) not in below:
                    below.add(id(parent))
                    stack.append(parent)
    return [node for node in order if not node.parents and id(node) in below and node.label
            and node.requires_grad]


def every_sample(root: Node, samples: Sequence[Node] | None = None, title: str = "", **options: Any) -> Drawing:
    """The BatchNorm graph under ``root`` with every sample's three gradient routes.

    Every edge from the loss back to every sample carries its gradient
    message; the edges are coloured by the statistic the gradient passes
    (own x_hat, batch variance, batch mean), so the fan-out from
    ``batch_mean`` and ``batch_var`` to each sample is visible. The loss is
    drawn at the top and the samples at the bottom: the gradient flows down.
    ``samples`` defaults to the leaves that feed a ``batch_mean``.
    """
    if samples is None:
        samples = batchnorm_samples(root)
    if not samples:
        raise ValueError(
            "every_sample: found no samples: no leaf feeds a node labelled batch_mean; "
            "pass samples=[...] or draw a graph made by tinyad.nn.functional.batch_norm_scalar"
        )
    if not title:
        title = f"BatchNorm's backward pass: the gradient reaches every one of {len(samples)} samples"
    options.setdefault("rankdir", "BT")
    return draw(root, highlight=list(samples), title=title, **options)

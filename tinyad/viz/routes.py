"""The routes a gradient takes: which paths carried a sample's ``.grad``.

In BatchNorm, sample x_i reaches the loss along three kinds of path: through
its own normalized value x_hat_i, through the batch variance, and through the
batch mean. Every path is assigned to the first of some chosen *statistics*
(``through``) it meets on its way from x up to the loss; the paths that meet
none form the route "other". Backpropagation is linear, so ``x.grad`` is
exactly the sum of the routes' contributions:

    dL/dx_i = dL/dx_hat_i * inv_std               (own x_hat)
            + dL/dvar * 2 (x_i - mean) / m         (batch variance)
            + dL/dmean / m                         (batch mean)

The contribution of the route through a statistic S is dL/dS (its ``.grad``,
from the engine's backward pass) carried back down to x along the paths from
x to S that avoid the other statistics: a second, *restricted* backward pass
that starts at S. Every number here is the engine's: the restricted pass uses
each node's own backward function, and ``.grad`` of the statistic.
"""
from __future__ import annotations

import re
from typing import Any, Iterable, Sequence

from ..graph import Node, topological_order

__all__ = ["routes", "statistics_of", "RouteShares", "route_shares", "zero_like"]

# Labels that ``nn.functional`` gives BatchNorm's statistics ("batch_mean",
# "batch_mean[0]" for feature 0 of a scalar graph, ...)
_ROLE_PATTERNS = {
    "own x_hat": re.compile(r"^x_hat(\[|$)"),
    "batch variance": re.compile(r"^batch_var(\[|$)"),
    "batch mean": re.compile(r"^batch_mean(\[|$)"),
}
ROLES = tuple(_ROLE_PATTERNS)


def name_of(node: Node) -> str:
    return node.label or node.op or "leaf"


def zero_like(value: Any) -> Any:
    """A zero of the same kind (float or array) as a gradient ``value``."""
    return 0.0 if value is None or isinstance(value, (int, float)) else value * 0


def role_of(node: Node) -> str | None:
    """"own x_hat", "batch variance" or "batch mean" from a BatchNorm label; None otherwise."""
    for role, pattern in _ROLE_PATTERNS.items():
        if node.label and pattern.match(node.label):
            return role
    return None


def _check_node(value: object, what: str) -> Node:
    if not isinstance(value, Node):
        raise ValueError(f"{what} must be a node of the graph (a Value or a Tensor), got {type(value).__name__}")
    return value


def node_list(value: object, what: str) -> list[Node]:
    """``value`` (one node, or an iterable of nodes) as a list of distinct nodes; ValueError otherwise."""
    if isinstance(value, Node):
        value = [value]
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise ValueError(f"{what} must be a node or a list of nodes (Value or Tensor), got {type(value).__name__}")
    nodes: list[Node] = []
    for item in value:  # type: ignore[union-attr]
        item = _check_node(item, f"every node of {what}")
        if all(item is not other for other in nodes):
            nodes.append(item)
    return nodes


def depends_on(order: Sequence[Node], sources: Iterable[Node]) -> set[int]:
    """ids of the nodes whose value depends on one of ``sources`` (the sources included)."""
    reached = {id(node) for node in sources}
    for node in order:
        if any(id(parent) in reached for parent in node.parents):
            reached.add(id(node))
    return reached


def statistics_of(x: Node, root: Node, order: Sequence[Node] | None = None) -> list[Node]:
    """The BatchNorm statistics that ``x``'s gradient passes: own x_hat, batch_var, batch_mean.

    Found by their labels (those ``nn.functional``'s BatchNorm gives them),
    among the nodes that depend on ``x``. The "own" x_hat nodes are those ``x``
    reaches without passing the batch mean or variance: for a scalar sample
    x[i,j] that is x_hat[i,j]; the batch statistics' routes also lead to every
    other sample's x_hat. A graph with no such labels gives [].
    """
    order = list(order) if order is not None else topological_order(root)
    above = depends_on(order, [x])
    found = {role: [n for n in order if id(n) in above and n is not x and role_of(n) == role] for role in ROLES}
    batch_stats = {id(n) for n in found["batch variance"] + found["batch mean"]}
    # the x_hat nodes reachable from x without crossing a batch statistic
    direct = {id(x)}
    for node in order:
        if id(node) not in batch_stats and any(id(p) in direct for p in node.parents):
            direct.add(id(node))
    own = [n for n in found["own x_hat"] if id(n) in direct]
    return own + found["batch variance"] + found["batch mean"]


def _local_vjp(node: Node, upstream: Any) -> Sequence[Any]:
    """The op's vector-Jacobian product: one gradient message per parent for ``upstream``.

    The one place where the drawing calls into the engine's backward
    functions (the same ones ``backward`` calls), to send part of a node's
    gradient instead of all of it.
    """
    return node.backward_fn(node, upstream)


class RouteShares:
    """A restricted backward pass from one statistic down to the samples.

    ``arrived[id(x)]``  the route's contribution to x.grad, for each sample x
    ``edges``           {(id(parent), id(consumer), position): message} for every
                        edge on a path from a sample up to the statistic that
                        avoids the other statistics (the route's edges), with the
                        share of the engine's message that belongs to this route
    """

    def __init__(self, arrived: dict[int, Any], edges: dict[tuple[int, int, int], Any]) -> None:
        self.arrived = arrived
        self.edges = edges


def route_shares(order: Sequence[Node], start: Node | Sequence[Node], samples: Sequence[Node],
                 cut: set[int]) -> RouteShares:
    """Send ``start.grad`` back to ``samples`` without passing the other ``cut`` nodes.

    ``start`` may be several statistics of one kind (every sample's own
    x_hat): one pass then carries all their gradients at once. A start is
    itself a cut node, so no path is counted twice.
    """
    starts = [start] if isinstance(start, Node) else list(start)
    sample_ids = {id(x) for x in samples}
    above = depends_on(order, samples)
    pending: dict[int, Any] = {}
    for first in starts:
        if first.grad is not None and id(first) in above:
            pending[id(first)] = first.grad
    arrived: dict[int, Any] = {}
    used: dict[tuple[int, int, int], Any] = {}
    for node in reversed(order):
        upstream = pending.pop(id(node), None)
        if upstream is None:
            continue
        if id(node) in sample_ids:
            arrived[id(node)] = upstream
            continue  # a sample is where this route ends
        if not node.parents or node.backward_fn is None:
            continue
        for position, (parent, sent) in enumerate(zip(node.parents, _local_vjp(node, upstream))):
            if sent is None or id(parent) not in above:
                continue
            if id(parent) in cut and id(parent) not in sample_ids:
                continue  # this path meets another statistic first
            used[(id(parent), id(node), position)] = sent
            pending[id(parent)] = sent if id(parent) not in pending else pending[id(parent)] + sent
    # keep the edges that lie on a path starting at a sample (the pass above also
    # walked into branches that end at a cut node and carry nothing to a sample)
    on_route = set(sample_ids)
    kept: dict[tuple[int, int, int], Any] = {}
    for node in order:
        for position, parent in enumerate(node.parents):
            key = (id(parent), id(node), position)
            if key in used and id(parent) in on_route:
                on_route.add(id(node))
                kept[key] = used[key]
    return RouteShares(arrived, kept)


def routes(x: Node, root: Node, through: Sequence[Node] | None = None) -> dict[str, Any]:
    """Split ``x.grad`` (from a backward pass from ``root``) by route.

    Every path from ``x`` up to ``root`` is assigned to the first node of
    ``through`` it meets; the paths that meet none form the route "other".
    The contributions add up to ``x.grad`` (up to rounding).

    ``through`` defaults to BatchNorm's statistics that x feeds
    (``statistics_of``: its own x_hat, batch_var, batch_mean); in a graph
    without them, the whole gradient is "other". Returns
    ``{label or op of each node of through: contribution, ..., "other": rest}``
    (a label used twice gets " #2").

    For a BatchNorm sample these are the three terms of the hand derivation
    (module docstring).
    """
    x = _check_node(x, "routes: x")
    root = _check_node(root, "routes: root")
    order = topological_order(root)
    if all(node is not x for node in order):
        raise ValueError(f"routes: x ({name_of(x)!r}) is not in the graph under root ({name_of(root)!r})")
    if root.parents and root.messages is None:
        raise ValueError("routes: call backward() on the root first: there are no gradients to split yet")
    if x.grad is None:
        raise ValueError(
            f"routes: {name_of(x)!r} has no gradient (a Tensor made with requires_grad=False, "
            "or one that backward did not reach): there is nothing to split"
        )
    if through is None:
        through = statistics_of(x, root, order)
    chosen = [node for node in node_list(through, "routes: through") if node is not x]
    cut = {id(node) for node in chosen}
    result: dict[str, Any] = {}
    total = zero_like(x.grad)
    for target in chosen:
        key, count = name_of(target), 2
        while key in result or key == "other":
            key, count = f"{name_of(target)} #{count}", count + 1
        share = route_shares(order, target, [x], cut).arrived.get(id(x), zero_like(x.grad))
        result[key] = share
        total = total + share
    result["other"] = x.grad - total
    return result

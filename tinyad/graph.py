"""The one computation graph that every tinyad engine builds on.

A ``Value`` (a scalar) and a ``Tensor`` (an array) are both ``Node``s. A node
remembers its inputs (``parents``), the operation that made it (``op``), and a
plain function (``backward_fn``) that turns the gradient arriving at the node
into one gradient message per parent: the vector-Jacobian product of that op.

Reverse-mode differentiation is the chain rule applied from the output back:

    dL/d(parent) = sum over consumers c of  dL/dc * dc/d(parent)

Each term of that sum is a *gradient message* travelling along one edge.
``backward`` computes every message once, adds up those reaching a node, and
records each on its edge, so a learner can ask "how much of x.grad came from
this consumer?" (``message``, ``edges``).

A node stores a plain function, never a closure over itself (a reference
cycle per node, which only Python's slow cyclic garbage collector can free):
reference counting frees a graph as soon as its output is no longer named.
The search and the pass keep their bookkeeping to themselves, never in the
nodes, so reading a graph (``edges``, ``find``, drawing) is safe at any time.
"""
from __future__ import annotations

import gc
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from . import _pickling

__all__ = ["Node", "no_grad", "enable_grad", "is_grad_enabled", "topological_order", "run_backward",
           "edges", "message", "find", "zero_grad"]


class Node:
    """One vertex of the computation graph.

    ``data``         the value computed by the forward pass
    ``grad``         dL/d(this node), accumulated over backward passes
    ``parents``      the nodes this one was computed from, in the op's
                     argument order (empty for a leaf)
    ``op``           the operation's name, as drawn in graphs ("*", "exp", ...)
    ``label``        an optional human name ("batch_mean", "x_hat", ...)
    ``backward_fn``  f(node, upstream) -> one gradient message per parent
    ``saved``        whatever else the backward function needs beyond the
                     data of the node and its parents (an axis, an exponent)
    ``messages``     after backward: the message sent to each parent, in the
                     order of ``parents`` (accumulated like ``grad``)

    Nodes compare and hash by identity: the graph code keeps them in sets
    and dictionaries.
    """

    __slots__ = ("data", "grad", "parents", "op", "label", "backward_fn", "saved", "messages", "__weakref__")
    requires_grad = True  # every node takes part in the gradient; a Tensor leaf may opt out

    # pickle and deepcopy walk a graph without recursion (see tinyad/_pickling.py)
    def __reduce_ex__(self, protocol: int) -> Any:
        return _pickling.reduce_node(self, protocol)

    def __init__(self, data: Any, parents: tuple = (), op: str = "", backward_fn: Callable | None = None,
                 saved: Any = None, label: str = "") -> None:
        """A leaf holding ``data``, or, given ``parents``, the result of ``op`` on them."""
        self.data = data
        self.grad = None
        self.parents = parents
        self.op = op
        self.label = label
        self.backward_fn = backward_fn
        self.saved = saved
        self.messages: tuple | None = None

    def zero_grad(self) -> None:
        """Forget the accumulated gradient and messages of this node only."""
        self.grad = None
        self.messages = None

    def add_to_grad(self, gradient: Any) -> None:
        """Add one backward pass's dL/d(this node) into ``.grad``."""
        self.grad = gradient if self.grad is None else self.grad + gradient


# ---- recording on or off (per thread, as in PyTorch) -----------------------
class _GradMode(threading.local):
    enabled = True  # every thread starts with recording on


_mode = _GradMode()


def is_grad_enabled() -> bool:
    """True when new operations are being recorded on the graph (in this thread)."""
    return _mode.enabled


@contextmanager
def _grad_mode(enabled: bool) -> Iterator[None]:
    previous = is_grad_enabled()
    _mode.enabled = enabled
    try:
        yield
    finally:
        _mode.enabled = previous


def no_grad() -> Any:
    """Record nothing inside the block: results are leaves with no parents.

    For evaluation and parameter updates (``w = w - lr * w.grad`` must not join
    the next graph). As in PyTorch, the switch belongs to the thread that sets it.
    """
    return _grad_mode(False)


def enable_grad() -> Any:
    """Record operations again inside a ``no_grad`` block."""
    return _grad_mode(True)


# ---- the topological order and the backward pass ---------------------------

def topological_order(root: Node) -> list[Node]:
    """Every node that ``root`` depends on, each after all of its parents.

    Iterative depth-first search: the node on top of the stack pushes its
    first parent not yet visited; once it has none left, all of its parents
    are already in ``order``, so it is appended and popped. The stack is an
    ordinary list, so depth costs memory, never Python's recursion limit (a
    recursive search, as micrograd's ``build_topo``, stops at about 1,000
    nodes of depth; this one walks a chain of 1,000,000).
    """
    order: list[Node] = []
    visited = {root}
    stack = [(root, iter(root.parents))]
    while stack:
        node, parents_to_visit = stack[-1]
        for parent in parents_to_visit:
            if parent not in visited:
                visited.add(parent)
                stack.append((parent, iter(parent.parents)))
                break
        else:  # every parent is in order already
            stack.pop()
            order.append(node)
    return order


# A pass writes .grad and .messages as it goes: passes from two threads take
# turns (re-entrant, so a backward function may itself run a backward pass).
_one_pass_at_a_time = threading.RLock()


def run_backward(root: Node, seed: Any) -> None:
    """Backpropagate ``seed`` = dL/d(root) to every node ``root`` depends on.

    In reverse topological order a node comes after all of its consumers have
    sent their messages, so the sum waiting for it in ``pending`` is complete;
    it is *added* into ``.grad`` (two passes give twice the gradient, as in
    PyTorch). A pass that raises (or is interrupted) is undone: every node it
    changed gets back its gradient and messages. Python's cyclic garbage
    collector is paused meanwhile: a tinyad graph holds no reference cycles,
    so it could free nothing in the burst of messages backward allocates.
    """
    with _one_pass_at_a_time:
        collector_was_on = gc.isenabled()
        gc.disable()
        pending: dict[Node, Any] = {root: seed}  # dL/d(node), summed over the messages so far
        first_reached: list[Node] = []  # op nodes no pass had reached: undone by zero_grad()
        earlier: list[tuple] = []  # (node, grad, messages) of every other node changed, as they were
        try:
            for node in reversed(topological_order(root)):
                gradient = pending.pop(node, None)
                if gradient is None:
                    continue  # no path from root carried a gradient here
                messages = node.backward_fn(node, gradient) if node.parents else None
                if node.parents and node.messages is None:
                    first_reached.append(node)
                else:
                    earlier.append((node, node.grad, node.messages))
                node.add_to_grad(gradient)
                if messages is None:
                    continue  # a leaf: nothing to send
                node.messages = messages if node.messages is None else _add_messages(node.messages, messages)
                for parent, message in zip(node.parents, messages):
                    if message is not None and parent.requires_grad:  # a constant gets no gradient
                        waiting = pending.get(parent)
                        pending[parent] = message if waiting is None else waiting + message
        except BaseException:
            for node in first_reached:
                node.zero_grad()
            for node, grad, messages in earlier:
                node.grad, node.messages = grad, messages
            raise
        finally:
            if collector_was_on:
                gc.enable()


def _add_messages(old: tuple, new: tuple) -> tuple:
    """Per edge, the messages of an earlier pass plus this pass's (None: nothing flowed)."""
    return tuple(b if a is None else a if b is None else a + b for a, b in zip(old, new))


# ---- reading a graph after backward ----------------------------------------

def edges(root: Node) -> list[tuple[Node, Node, Any]]:
    """All edges ``(parent, consumer, message)`` of the graph under ``root``.

    ``message`` is the gradient that travelled from ``consumer`` back to
    ``parent`` during backward (None before backward, or where no gradient
    flowed). Summing the messages that arrive at a node over all its
    consumers gives back its ``.grad`` from the same backward passes.
    """
    result = []
    for consumer in topological_order(root):
        sent = consumer.messages
        for index, parent in enumerate(consumer.parents):
            result.append((parent, consumer, None if sent is None else sent[index]))
    return result


def message(consumer: Node, parent: Node) -> Any:
    """The gradient that ``consumer`` sent back to ``parent`` during backward.

    If ``parent`` enters ``consumer`` more than once (``x * x``), the messages
    of both edges are added: together they are the consumer's share of
    ``parent.grad``. Raises ValueError when ``parent`` is not an input of
    ``consumer`` or when no backward pass has reached ``consumer`` yet.
    """
    if not any(p is parent for p in consumer.parents):
        raise ValueError(
            f"{_describe(parent)} is not an input of {_describe(consumer)}; "
            "messages travel only along edges of the graph"
        )
    if consumer.messages is None:
        raise ValueError(
            f"no gradient has passed through {_describe(consumer)} yet: call backward() first"
        )
    total = None
    for p, part in zip(consumer.parents, consumer.messages):
        if p is parent and part is not None:
            total = part if total is None else total + part
    return total


def find(root: Node, label: str) -> Node:
    """The node labelled ``label`` in the graph under ``root`` (ValueError if none)."""
    for node in topological_order(root):
        if node.label == label:
            return node
    raise ValueError(f"no node labelled {label!r} in the graph under {_describe(root)}")


def zero_grad(root: Node) -> None:
    """Reset ``grad`` and the recorded messages of every node under ``root``."""
    for node in topological_order(root):
        node.zero_grad()


def _describe(node: Node) -> str:
    name = node.label or node.op or "leaf"
    return f"{type(node).__name__}({name!r})"

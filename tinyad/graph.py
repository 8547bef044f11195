"""The one computation graph that every tinyad engine builds on.

A ``Value`` (a scalar) and a ``Tensor`` (an array) are both ``Node``s. A node
remembers the nodes it was computed from (``parents``), the name of the
operation that made it (``op``), and a plain module-level function
(``backward_fn``; for ``x ** n`` the same with its constant n filled in by
``functools.partial``) that turns the gradient arriving at the node into one
gradient message per parent: the vector-Jacobian product of that op.

Reverse-mode differentiation is the chain rule applied from the output back:

    dL/d(parent) = sum over consumers c of  dL/dc * dc/d(parent)

Each term of that sum is a *gradient message* that travels along one edge of
the graph. ``backward`` computes every message once, adds it into the parent's
running total, and records it on the edge, so after backward a learner can ask
"how much of x.grad came from this consumer?" (``message``, ``edges``).

Two design choices, both about graphs being deep:

* The topological order is computed with an explicit stack, never recursion.
  Python's default recursion limit is 1000, and a recursive depth-first search
  (micrograd's ``build_topo``) raises RecursionError on a chain of about 500
  nodes. A loop over 1,000,000 nodes only costs memory for the stack list.
* A node stores data and a reference to a module-level function (at most with
  a number filled in), never a closure that captures the node itself. A
  closure stored on the node it captures makes a reference cycle per node;
  such graphs can only be freed by Python's cyclic garbage collector, which
  then dominates the run time of a training step. Without cycles, reference counting frees a graph the moment
  the last name for its output goes away.
"""
from __future__ import annotations

import gc
from contextlib import contextmanager
from typing import Any, Iterator

__all__ = [
    "Node",
    "topological_order",
    "run_backward",
    "no_grad",
    "enable_grad",
    "is_grad_enabled",
    "edges",
    "message",
    "zero_grad",
    "find",
]

# Whether operations record their inputs. ``no_grad`` flips it; the ops read
# it through ``is_grad_enabled`` (the module attribute is read directly in hot
# paths, which is the same thing without a function call).
_grad_enabled = True


def is_grad_enabled() -> bool:
    """True when new operations are being recorded on the graph."""
    return _grad_enabled


@contextmanager
def no_grad() -> Iterator[None]:
    """Record nothing inside the block: results are leaves with no parents.

    Use it for evaluation and for parameter updates: an optimizer step such as
    ``w = w - lr * w.grad`` must not itself become part of the next graph.
    """
    global _grad_enabled
    previous = _grad_enabled
    _grad_enabled = False
    try:
        yield
    finally:
        _grad_enabled = previous


@contextmanager
def enable_grad() -> Iterator[None]:
    """Record operations again inside a ``no_grad`` block."""
    global _grad_enabled
    previous = _grad_enabled
    _grad_enabled = True
    try:
        yield
    finally:
        _grad_enabled = previous


class Node:
    """One vertex of the computation graph.

    ``parents``      the nodes this one was computed from, in the op's argument
                     order (a tuple, empty for a leaf), built from the slots
    ``first_parent``, ``second_parent``  the first two inputs (None if absent;
                     each op sets them when it makes its output node)
    ``op``           the operation's name, as drawn in graphs ("*", "exp", ...)
    ``label``        an optional human name ("batch_mean", "x_hat", ...)
    ``backward_fn``  f(node, upstream) -> one gradient message per parent
    ``grad``         dL/d(this node), accumulated over backward calls
    ``messages``     after backward: the message sent to each parent, in the
                     order of ``parents`` (accumulated like ``grad``)
    ``_upstream``    the backward machinery's buffer, None between passes; during
                     a pass first the search's mark ("reached"), then the sum
                     of the messages that have arrived so far (see ``_reach``)

    and three more that every node has, but only a Tensor stores per node:

    ``more_parents`` a tuple of any further inputs (concatenate, stack, the
                     fused BatchNorm); a scalar op never has more than two
                     inputs, so for a Value it is always ()
    ``saved``        whatever else the backward function needs (an axis, a
                     shape, a mask); the parents' and the node's own data are
                     reachable without saving them. A Value's is always None:
                     the one scalar op that needs more, ``x ** n``, fills its
                     constant n into its backward function instead
    ``requires_grad``  whether gradients should flow into this node at all;
                     always True for a Value, which, as in micrograd, always
                     takes part in the gradient (a Tensor can opt out)

    Only the last input may be missing: ``second_parent`` is None for a
    one-input op, and ``more_parents`` is empty unless both others are set.

    Why slots, and why so few? Every slot is one more reference that Python's
    cyclic garbage collector visits each time it walks a node, and it walks
    the nodes of a graph being built again and again. A scalar graph has one
    node per number, so the collector's share of a training step grows with
    every slot a Value carries. In the step of
    ``benchmarks/scalar_vs_micrograd.py``, keeping the parents in two slots
    instead of a tuple (one more object per node) halved the collector's
    time. For the same reason a Value stores per node only what differs
    between nodes, and keeps the rest on its class.
    """

    __slots__ = (
        "data",
        "grad",
        "first_parent",
        "second_parent",
        "op",
        "label",
        "backward_fn",
        "messages",
        "_upstream",
        "__weakref__",
    )

    # Subclasses (Value, Tensor) set every slot in their constructors; the
    # graph code below only relies on the names.

    # Whether gradients are arrays, which several edges and a leaf's .grad
    # could share and change in place (a Tensor's), or floats (a Value's).
    messages_are_arrays = True

    @property
    def parents(self) -> tuple:
        """The inputs of the op that made this node, in order (empty for a leaf)."""
        first = self.first_parent
        if first is None:
            return ()
        second = self.second_parent
        if second is None:
            return (first,)
        return (first, second, *self.more_parents)

    def backward(self, grad: Any = None) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def zero_grad(self) -> None:
        """Forget the accumulated gradient and messages of this node only."""
        raise NotImplementedError  # pragma: no cover - overridden

    def accumulated_leaf_grad(self, upstream: Any, upstream_is_sum: bool) -> Any:
        """``.grad + upstream`` for a leaf, as an object the leaf owns.

        Messages may share memory with each other, but a leaf's gradient is
        what optimizers read and users change, so it must be its own.
        ``upstream_is_sum`` says that ``upstream`` is a sum this backward pass
        made (two or more messages arrived), which nothing else holds: it can
        become the gradient as it is, where a single message must be copied.
        """
        raise NotImplementedError  # pragma: no cover - overridden


def topological_order(root: Node) -> list[Node]:
    """Every node that ``root`` depends on, each after all of its parents.

    The search writes its marks into the nodes' per-pass buffers and sets
    them back to None afterwards, so it (and ``edges``, ``find``,
    ``zero_grad`` and the drawings, which call it) must not run over a graph
    while a backward pass is running over it: that pass keeps its partial
    sums in the same buffers.
    """
    order = _reach(root, object())
    for node in order:
        node._upstream = None  # tidy: a mark of a finished search never matches again
    return order


def _reach(root: Node, mark: object) -> list[Node]:
    """``topological_order``, leaving ``mark`` in the buffer of every node of it.

    Iterative depth-first search. The node on top of the stack pushes its
    first parent not yet reached; once it has none left, all of its parents
    are already in ``order``, so it is appended and popped. A parent reached
    earlier cannot still be waiting on the stack below: that would make it
    both an ancestor and a descendant, a cycle. A leaf in either of the
    two parent slots is appended to ``order`` at once instead of being
    pushed, since it has no parents to wait for (in a BatchNorm graph that
    spares a third of the loop's turns).
    The stack is an ordinary list, so depth costs memory, never Python's
    recursion limit.

    "Reached" is written into the node itself: its per-pass buffer
    (``_upstream``) is set to ``mark``, which costs one attribute write where
    a set of visited nodes costs a hash and an insertion for every node. Each
    search brings a new ``mark`` (a fresh ``object()``), so whatever an
    earlier, interrupted search or pass left in a buffer never equals it: a
    leftover can never hide a node from this search.
    """
    order: list[Node] = []
    root._upstream = mark
    stack = [root]
    more_to_visit: dict[Node, Iterator[Node]] = {}
    push, pop, emit = stack.append, stack.pop, order.append
    while stack:
        node = stack[-1]
        # "push the first of node.parents not yet reached", written out slot by
        # slot; a leaf has no parents to wait for, so it goes straight into order
        parent = node.first_parent
        if parent is not None and parent._upstream is not mark:
            parent._upstream = mark
            if parent.first_parent is not None:
                push(parent)
                continue
            emit(parent)
        parent = node.second_parent
        if parent is not None and parent._upstream is not mark:
            parent._upstream = mark
            if parent.first_parent is not None:
                push(parent)
                continue
            emit(parent)
        if node.more_parents:  # an op with three or more inputs (rare)
            # resume where this node's last visit stopped, so that a stack of
            # k tensors costs k steps here, not k * k / 2
            remaining = more_to_visit.get(node)
            if remaining is None:
                remaining = more_to_visit[node] = iter(node.more_parents)
            pushed = False
            for parent in remaining:
                if parent._upstream is not mark:
                    parent._upstream = mark
                    push(parent)
                    pushed = True
                    break
            if pushed:
                continue
        pop()
        emit(node)
    return order


def run_backward(root: Node, seed: Any) -> None:
    """Backpropagate ``seed`` = dL/d(root) to every node ``root`` depends on.

    Walks the nodes in reverse topological order, so a node is processed only
    after every consumer has delivered its message: its upstream gradient is
    then complete. The gradient of this pass is kept in a per-pass buffer
    (``_upstream``) and only *added* to ``.grad`` once complete, so calling
    backward twice accumulates exactly twice the gradient (PyTorch's rule),
    even for intermediate nodes.

    Python's cyclic garbage collector is paused meanwhile: backward allocates
    a burst of short-lived messages, and since a tinyad
    graph holds no reference cycles the collector could find nothing to free
    in them; left on, it would walk every live node of the graph for nothing.
    """
    collector_was_on = gc.isenabled()
    gc.disable()
    order: list[Node] = []
    try:
        mark = object()  # "reached in this pass, no gradient yet" (see _reach)
        order = _reach(root, mark)
        _propagate(order, root, seed, mark)
    except BaseException:
        for node in order:  # free the half-summed gradients of the failed pass
            node._upstream = None
        raise
    finally:
        if collector_was_on:
            gc.enable()


def _propagate(order: list[Node], root: Node, seed: Any, mark: object) -> None:
    # The nodes whose buffer holds a sum made in this pass (two or more
    # messages arrived): such a sum is a new array that no edge records, so a
    # leaf can keep it without a copy. Floats are never shared, so a scalar
    # graph skips this bookkeeping (it would cost its step a few percent).
    summed: set[Node] | None = set() if root.messages_are_arrays else None
    root._upstream = seed
    for node in reversed(order):
        upstream = node._upstream
        node._upstream = None
        if upstream is mark:
            continue  # reached, but no path from root carried a gradient here
        first = node.first_parent
        if first is None:
            node.grad = node.accumulated_leaf_grad(upstream, summed is not None and node in summed)
            continue
        node.grad = upstream if node.grad is None else node.grad + upstream
        sent = node.backward_fn(node, upstream)
        previous = node.messages
        if previous is None:
            node.messages = sent
        else:
            node.messages = tuple(
                new if old is None else (old if new is None else old + new)
                for old, new in zip(previous, sent)
            )
        # Deliver message i to parent i: this is
        #     for parent, gradient in zip(node.parents, sent): ...
        # written out for the first two parents (every op of a scalar graph),
        # which saves building the parents tuple at every node. Every parent
        # was reached by this pass's search, so its buffer holds the mark or a sum.
        gradient = sent[0]
        if gradient is not None and first.requires_grad:
            waiting = first._upstream
            first._upstream = gradient if waiting is mark else _accumulate(waiting, gradient, first, summed)
        second = node.second_parent
        if second is None:
            continue
        gradient = sent[1]
        if gradient is not None and second.requires_grad:
            waiting = second._upstream
            second._upstream = gradient if waiting is mark else _accumulate(waiting, gradient, second, summed)
        more = node.more_parents
        if not more:
            continue
        for parent, gradient in zip(more, sent[2:]):
            if gradient is not None and parent.requires_grad:
                waiting = parent._upstream
                parent._upstream = gradient if waiting is mark else _accumulate(waiting, gradient, parent, summed)


def _accumulate(waiting: Any, gradient: Any, parent: Node, summed: set[Node] | None) -> Any:
    """A second (third, ...) message reaches ``parent``: their sum, noting in
    ``summed`` (None for a scalar graph) that its buffer now holds a new sum."""
    if summed is not None:
        summed.add(parent)
    return waiting + gradient


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
    positions = [i for i, p in enumerate(consumer.parents) if p is parent]
    if not positions:
        raise ValueError(
            f"{_describe(parent)} is not an input of {_describe(consumer)}; "
            "messages travel only along edges of the graph"
        )
    if consumer.messages is None:
        raise ValueError(
            f"no gradient has passed through {_describe(consumer)} yet: call backward() first"
        )
    total = None
    for i in positions:
        part = consumer.messages[i]
        if part is not None:
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


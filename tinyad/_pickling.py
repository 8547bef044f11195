"""Pickling and deep-copying graph nodes (Values and Tensors) without recursion.

``pickle`` saves an object by first saving what it refers to, and it does so
by calling itself: saving a node saves its parents, saving a parent saves its
parents, one level of Python recursion per node along the longest path. A
chain of 100,000 Values would need a recursion depth of 100,000 (Python's
default limit is 1,000). ``copy.deepcopy`` walks objects the same way. It is
the problem that makes the graph's own topological sort iterative.

Recursion is avoided if a node's parents are always saved before the node:
pickle remembers every object it has saved, and for an object it has seen it
writes a back-reference instead of descending into it. So the node pickle
meets first (the one you pickle, say a loss) gives pickle, before its own
slots, the list of every node it depends on in topological order, parents
before children. Pickle saves that list element by element, each node as
"a blank object of its class, then its slots", and the parents in those
slots came earlier in the list: back-references, no descent.

A node cannot ask pickle what it has already saved, so the first node
records in ``_listed`` (per thread) which nodes its list is about to save.
When pickle reaches one of them, it finds itself there and hands over only
its own slots. The entry expires with the list, which pickle (or
``deepcopy``) holds only until it has finished, so a later, unrelated
pickle of the same node starts from the top again.

Every node is rebuilt the same way, whichever path saved it: a blank object
of its class (``_blank``), then its slots, the parents among them as
references to the rebuilt parents. The list decides only the order of the
work, so shared nodes stay shared: ``pickle.loads(pickle.dumps([x, loss]))``
gives back an ``x`` that is a leaf of the returned ``loss``'s graph.

Hook: ``graph.Node`` sets ``__reduce_ex__ = _pickling.reduce_node``. A
Tensor's backend is pickled by its device name (``Backend.__reduce__``),
so it comes back as this machine's backend of that device.
"""
from __future__ import annotations

import threading
import weakref
from typing import Any

from . import graph

_local = threading.local()  # .listed: {id(node): weak reference to the ancestor list that will save it}

_SLOT_NAMES: dict[type, tuple] = {}  # per node class, the slots a pickle saves


class _Ancestors(list):
    """The nodes a pickled node depends on, parents before children.

    A list that can be weakly referenced, so that ``_listed`` can tell
    whether the pickle that holds it is still running. It is pickled as the
    plain list of its nodes.
    """

    __slots__ = ("__weakref__",)

    def __reduce__(self) -> tuple:
        return (list, (list(self),))


def _blank(cls: type, ancestors: Any = ()) -> Any:
    """A node of class ``cls`` with no slot set; pickle then sets them.

    ``ancestors`` is unused: it is an argument only so that pickle rebuilds
    those nodes first, and this node's slots can refer to them.
    """
    return cls.__new__(cls)


def _slot_names(cls: type) -> tuple:
    """Every slot of a node class (graph.Node's and the subclass's own), except ``__weakref__``."""
    names = _SLOT_NAMES.get(cls)
    if names is None:
        names = tuple(
            name for klass in cls.__mro__ for name in klass.__dict__.get("__slots__", ()) if name != "__weakref__"
        )
        _SLOT_NAMES[cls] = names
    return names


_UNSET = object()


def _slots(node: Any) -> tuple:
    """The node's state as pickle and copy expect it for an object with slots:
    ``(None, {slot name: value})``, parents included as they are."""
    values = {}
    for name in _slot_names(type(node)):
        value = getattr(node, name, _UNSET)
        if value is not _UNSET:
            values[name] = value
    return (None, values)


def _listed() -> dict:
    listed = getattr(_local, "listed", None)
    if listed is None:
        listed = _local.listed = {}
    return listed


def reduce_node(node: Any, protocol: int = 2) -> tuple:
    """``node.__reduce_ex__(protocol)``: how pickle and copy take a node apart.

    Returns ``(_blank, (cls, ancestors), state)``: pickle saves ``ancestors``
    (every node this one depends on, parents first; absent for a leaf) before
    the node, then the node's slots. A node that is itself in an ancestor list
    being saved returns ``(_blank, (cls,), state)``: its parents are saved.
    """
    listed = _listed()
    saver = listed.pop(id(node), None)
    if saver is not None and saver() is not None:
        return (_blank, (type(node),), _slots(node))
    ancestors = _Ancestors(other for other in graph.topological_order(node) if other is not node)
    if not ancestors:
        return (_blank, (type(node),), _slots(node))
    keys = [id(other) for other in ancestors]

    def expire(reference: weakref.ref) -> None:
        # the list is gone (the pickle or copy is over): forget the entries it did not use
        for key in keys:
            if listed.get(key) is reference:
                del listed[key]

    reference = weakref.ref(ancestors, expire)
    for key in keys:
        listed[key] = reference
    return (_blank, (type(node), ancestors), _slots(node))

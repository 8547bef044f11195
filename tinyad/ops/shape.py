"""Shape ops: reshape (and its PyTorch spellings), permute/transpose, expand,
clone, indexing, and joining tensors.

None of these computes a new number; they only move numbers around. Each
backward therefore moves the gradient back to where the input's numbers were:
reshape it back, undo the permutation, scatter it into the selected places,
or cut it into the pieces that were joined.
"""
from __future__ import annotations

from typing import Any, Sequence

from ..backend import Backend
from ..tensor import Tensor, _operand, _result, device_error, shape_error, unbroadcast
from .reductions import _one_spelling

__all__ = [
    "reshape", "flatten", "unsqueeze", "squeeze", "permute", "transpose", "expand", "clone",
    "getitem", "concatenate", "cat", "stack",
]


def _dims_argument(dims: tuple) -> tuple:
    """``f(2, 3)`` and ``f((2, 3))`` both mean (2, 3), as in PyTorch."""
    if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
        return tuple(dims[0])
    return dims


def reshape(a: Tensor, *shape: Any) -> Tensor:
    """Same data, new shape; accepts a tuple or separate ints (one may be -1)."""
    shape = _dims_argument(shape)
    try:
        data = a.data.reshape(shape)
    except ValueError:
        raise shape_error("reshape", a.shape, shape, why=f"do not fit: the tensor's {a.size} elements cannot take the second") from None
    return _result(data, (a,), "reshape", _reshape_backward, a.backend)


def _reshape_backward(node: Tensor, upstream: Any) -> tuple:
    # a reshape moves no number: the gradient is reshaped back
    (a,) = node.parents
    return (upstream.reshape(a.shape),)


def _axis(dim: Any, ndim: int, op: str) -> int:
    """``dim`` as a non-negative axis of a tensor with ``ndim`` axes (negative counts from the end)."""
    if isinstance(dim, bool) or not hasattr(dim, "__index__"):
        raise TypeError(f"{op}: dim must be an int, got {dim!r}")
    dim = dim.__index__()
    if not -ndim <= dim < ndim:
        raise ValueError(f"{op}: dim {dim} is out of range for a tensor with {ndim} dimensions (from {-ndim} to {ndim - 1})")
    return dim % ndim


# PyTorch's spellings of particular reshapes: each is one reshape node on the graph


def flatten(a: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    """Merge the axes ``start_dim`` to ``end_dim`` (inclusive) into one (a reshape)."""
    if a.ndim == 0:
        return reshape(a, 1)
    start, end = _axis(start_dim, a.ndim, "flatten"), _axis(end_dim, a.ndim, "flatten")
    if start > end:
        raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim} for shape {a.shape}")
    return reshape(a, a.shape[:start] + (_product(a.shape[start:end + 1]),) + a.shape[end + 1:])


def _product(sizes: tuple) -> int:
    total = 1
    for size in sizes:
        total *= size
    return total


def unsqueeze(a: Tensor, dim: int) -> Tensor:
    """Insert an axis of size 1 at position ``dim`` (a reshape; ``dim`` may be -1, meaning last)."""
    position = _axis(dim, a.ndim + 1, "unsqueeze")
    return reshape(a, a.shape[:position] + (1,) + a.shape[position:])


def squeeze(a: Tensor, dim: Any = None) -> Tensor:
    """Drop axes of size 1: all of them, or only ``dim`` (an int or tuple) where its size is 1, as in PyTorch."""
    if dim is None:
        dropped = {d for d, size in enumerate(a.shape) if size == 1}
    else:
        dims = dim if isinstance(dim, (tuple, list)) else (dim,)
        dropped = {_axis(d, a.ndim, "squeeze") for d in dims} if a.ndim else set()
        dropped = {d for d in dropped if a.shape[d] == 1}  # torch leaves an axis of another size alone
    return reshape(a, tuple(size for d, size in enumerate(a.shape) if d not in dropped))


def expand(a: Tensor, *sizes: Any) -> Tensor:
    """Broadcast ``a`` to ``sizes`` (PyTorch's ``expand``): -1 keeps an axis, new axes go in front."""
    sizes = _dims_argument(sizes)
    added = len(sizes) - a.ndim
    if added < 0:
        raise ValueError(f"expand: the {len(sizes)} sizes {tuple(sizes)} are fewer than the {a.ndim} axes of shape {a.shape}")
    target = tuple(a.shape[d - added] if size == -1 and d >= added else size for d, size in enumerate(sizes))
    if any(size == -1 for size in target[:added]):
        raise ValueError(f"expand: -1 is not allowed for the new leading axes of {tuple(sizes)}")
    try:
        data = a.backend.xp.broadcast_to(a.data, target)
    except ValueError:
        raise shape_error("expand", a.shape, sizes, why="do not fit: only axes of size 1 can grow") from None
    return _result(data, (a,), "expand", _expand_backward, a.backend)


def _expand_backward(node: Tensor, upstream: Any) -> tuple:
    # every copy of an element used its value: the copies' gradients add up
    (a,) = node.parents
    return (unbroadcast(upstream, a.shape),)


def clone(a: Tensor) -> Tensor:
    """A copy of the numbers that is still part of the graph (``detach`` is the one that is not)."""
    return _result(a.data.copy(), (a,), "clone", _clone_backward, a.backend)


def _clone_backward(node: Tensor, upstream: Any) -> tuple:
    # d copy(a)/da = 1
    return (upstream,)


def permute(a: Tensor, *dims: Any) -> Tensor:
    """Reorder the axes: output axis i is input axis dims[i]."""
    dims = _dims_argument(dims)
    bound = max(a.ndim, 1)
    if any(not -a.ndim <= d < bound for d in dims) or sorted(d % bound for d in dims) != list(range(a.ndim)):
        raise ValueError(f"permute: {dims} is not a permutation of the {a.ndim} axes of shape {a.shape}")
    dims = tuple(d % a.ndim for d in dims)
    data = a.backend.xp.transpose(a.data, dims)
    return _result(data, (a,), "permute", _permute_backward, a.backend, saved=dims)


def _permute_backward(node: Tensor, upstream: Any) -> tuple:
    # undo the permutation: input axis dims[i] comes back from output axis i
    dims = node.saved
    inverse = [0] * len(dims)
    for position, axis in enumerate(dims):
        inverse[axis] = position
    return (node.backend.xp.transpose(upstream, inverse),)


def transpose(a: Tensor, dim0: int = -2, dim1: int = -1) -> Tensor:
    """Swap two axes (PyTorch's ``transpose(dim0, dim1)``)."""
    if a.ndim < 2:
        return permute(a, tuple(range(a.ndim)))
    dims = list(range(a.ndim))
    for d in (dim0, dim1):
        if not -a.ndim <= d < a.ndim:
            raise ValueError(f"transpose: axis {d} is out of range for shape {a.shape}")
    dims[dim0], dims[dim1] = dims[dim1], dims[dim0]
    return permute(a, dims)


# ---- indexing --------------------------------------------------------------------


def getitem(a: Tensor, index: Any) -> Tensor:
    """``a[index]`` with NumPy's indexing rules (slices, integer arrays, masks)."""
    index = _plain_index(index, a.backend)
    try:
        data = a.data[index]
    except IndexError as error:
        raise IndexError(f"[]: {error} (tensor shape {a.shape})") from None
    return _result(data, (a,), "[]", _getitem_backward, a.backend, saved=index)


def _getitem_backward(node: Tensor, upstream: Any) -> tuple:
    # each selected element receives its gradient; an element selected
    # twice (repeated integer indices) receives the sum of both
    (a,) = node.parents
    gradient = node.backend.xp.zeros_like(a.data)
    node.backend.scatter_add(gradient, node.saved, upstream)
    return (gradient,)


def _plain_index(index: Any, backend: Backend) -> Any:
    """Replace Tensors, lists and host arrays inside an index by arrays of ``backend``.

    An index array the user made with NumPy is moved to the tensor's device
    (on the CPU that is no copy at all).
    """
    if isinstance(index, tuple):
        return tuple(_plain_index(part, backend) for part in index)
    if isinstance(index, Tensor):
        if index.backend is not backend:
            raise device_error("[]", backend.device, index.device, " (the index)")
        return index.data
    if isinstance(index, list) and index:
        return backend.asarray(index)  # integers, or booleans (a mask)
    if getattr(index, "ndim", 0) > 0 and not isinstance(index, backend.array_type):
        return backend.asarray(index)
    return index


# ---- joining tensors -----------------------------------------------------------


def _as_tensors(tensors: Sequence[Any], op: str) -> tuple:
    tensors = list(tensors)
    if not tensors:
        raise ValueError(f"{op}: needs at least one tensor")
    first = tensors[0] if isinstance(tensors[0], Tensor) else Tensor(tensors[0])
    rest = [_operand(first, t, op) if isinstance(t, Tensor) else Tensor(t, device=first.device) for t in tensors[1:]]
    return (first, *rest)


def concatenate(tensors: Sequence[Tensor], axis: int = 0) -> Tensor:
    """Join tensors along an existing axis (``torch.cat``)."""
    tensors = _as_tensors(tensors, "concatenate")
    backend = tensors[0].backend
    try:
        data = backend.xp.concatenate([t.data for t in tensors], axis=axis)
    except ValueError:
        raise shape_error("concatenate", *(t.shape for t in tensors), why=f"must agree on every axis but axis {axis}") from None
    sizes = [t.shape[axis] for t in tensors]
    return _result(data, tensors, "concatenate", _concatenate_backward, backend, saved=(axis, sizes))


def cat(tensors: Sequence[Tensor], dim: int | None = None, *, axis: int | None = None) -> Tensor:
    """PyTorch's name for ``concatenate`` (``dim``, or NumPy's ``axis``; 0 when neither is given)."""
    chosen = _one_spelling("cat", "dim", dim, "axis", axis)
    return concatenate(tensors, 0 if chosen is None else chosen)


def _concatenate_backward(node: Tensor, upstream: Any) -> tuple:
    # each input gets back the slice of the gradient where its values were placed
    axis, sizes = node.saved
    pieces, start = [], 0
    for parent, size in zip(node.parents, sizes):
        index = [slice(None)] * upstream.ndim
        index[axis] = slice(start, start + size)
        # back in the input's own dtype (a float32 input joined with a float64 one)
        pieces.append(upstream[tuple(index)].astype(parent.dtype, copy=False) if parent.requires_grad else None)
        start += size
    return tuple(pieces)


def stack(tensors: Sequence[Tensor], axis: int = 0) -> Tensor:
    """Join same-shaped tensors along a new axis (``torch.stack``)."""
    tensors = _as_tensors(tensors, "stack")
    backend = tensors[0].backend
    try:
        data = backend.xp.stack([t.data for t in tensors], axis=axis)
    except ValueError:
        raise shape_error("stack", *(t.shape for t in tensors), why="must all be equal") from None
    return _result(data, tensors, "stack", _stack_backward, backend, saved=axis)


def _stack_backward(node: Tensor, upstream: Any) -> tuple:
    # input i was placed at position i of the new axis: it gets that slice back
    xp = node.backend.xp
    return tuple(
        xp.take(upstream, i, axis=node.saved).astype(parent.dtype, copy=False) if parent.requires_grad else None
        for i, parent in enumerate(node.parents)
    )

"""Reductions: sum, mean, var, std, max, min, amax, amin, argmax, argmin.

A reduction's backward hands every input element its share of the upstream
gradient. ``upstream`` has the output's shape, in which the reduced axes are
gone (or kept as size 1 with ``keepdims``); ``_expand_reduced`` puts them back
as size 1, so that the gradient broadcasts against the input.

Two spellings, one meaning. Every reduction takes NumPy's ``axis=``/``keepdims=``
and PyTorch's ``dim=``/``keepdim=`` (and a positional dim): ``x.sum(0, True)``,
``x.sum(axis=0, keepdims=True)`` and ``x.sum(dim=0, keepdim=True)`` are one
call. Where the two libraries disagree, tinyad follows PyTorch and says so:
``var``/``std`` divide by N - 1 unless told otherwise (NumPy divides by N),
and ``max``/``min`` *with a dim* return ``(values, indices)``, as torch does,
while ``axis=`` (NumPy's word) returns the values alone.
"""
from __future__ import annotations

from typing import Any, NamedTuple

from ..tensor import Axis, Tensor, _result, quiet_numpy

__all__ = [
    "sum", "mean", "var", "std", "max", "min", "amax", "amin", "argmax", "argmin",
    "select", "ValuesIndices",
]


class ValuesIndices(NamedTuple):
    """What ``max(dim)`` and ``min(dim)`` return, as in PyTorch: ``.values`` and ``.indices``."""

    values: Tensor
    indices: Tensor


def _one_spelling(op: str, torch_name: str, torch_value: Any, numpy_name: str, numpy_value: Any) -> Any:
    """The value of an argument that may be spelled two ways; both at once is an error."""
    if torch_value is not None and numpy_value is not None:
        raise TypeError(
            f"{op}: got both {torch_name}={torch_value!r} and {numpy_name}={numpy_value!r}; they are one argument "
            f"({torch_name} is PyTorch's spelling, {numpy_name} NumPy's): pass only one"
        )
    return torch_value if torch_value is not None else numpy_value


def _reduce_args(op: str, dim: Axis, axis: Axis, keepdim: bool | None, keepdims: bool | None) -> tuple:
    """(axis, keepdims) from either spelling; keepdims defaults to False."""
    chosen = _one_spelling(op, "dim", dim, "axis", axis)
    keep = _one_spelling(op, "keepdim", keepdim, "keepdims", keepdims)
    return chosen, bool(keep)


def _normalize_axes(axis: Axis, ndim: int, op: str) -> tuple:
    """Axis as a sorted tuple of non-negative ints (None means every axis)."""
    if axis is None:
        return tuple(range(ndim))
    axes = tuple(axis) if isinstance(axis, (tuple, list)) else (axis,)
    bound = ndim or 1  # a 0-d tensor accepts axis 0 or -1, as in PyTorch
    result = []
    for a in axes:
        if isinstance(a, bool) or not hasattr(a, "__index__"):
            raise TypeError(f"{op}: an axis must be an int or a tuple of ints, got {axis!r}")
        a = a.__index__()
        if not -bound <= a < bound:
            raise ValueError(f"{op}: axis {a} is out of range for a tensor with {ndim} dimensions")
        result.append(a % bound)
    if len(set(result)) != len(result):
        raise ValueError(f"{op}: axis {axis} repeats an axis")
    return tuple(sorted(result)) if ndim else ()  # a 0-d array has no axis to reduce


def _count(shape: tuple, axes: tuple) -> int:
    """How many elements the reduction over ``axes`` combines into each result."""
    count = 1
    for a in axes:
        count *= shape[a]
    return count


def _result_size(shape: tuple, axes: tuple) -> int:
    """How many numbers the reduction over ``axes`` gives."""
    return _count(shape, tuple(a for a in range(len(shape)) if a not in axes))


def _expand_reduced(gradient: Any, input_shape: tuple, axes: tuple, keepdims: bool) -> Any:
    """Put back the reduced axes (as size 1) so ``gradient`` broadcasts against the input."""
    if not keepdims:
        shape = list(input_shape)
        for a in axes:
            shape[a] = 1
        gradient = gradient.reshape(shape)
    return gradient


def sum(a: Tensor, dim: Axis = None, keepdim: bool | None = None, *, axis: Axis = None,
        keepdims: bool | None = None) -> Tensor:
    """Sum over ``dim`` (an int, a tuple, or None for every axis)."""
    axis, keepdims = _reduce_args("sum", dim, axis, keepdim, keepdims)
    axes = _normalize_axes(axis, a.ndim, "sum")
    data = a.data.sum(axis=axes, keepdims=keepdims)
    return _result(data, (a,), "sum", _sum_backward, a.backend, saved=(axes, keepdims))


def _sum_backward(node: Tensor, upstream: Any) -> tuple:
    # d(sum_i a_i)/da_j = 1: every summed element gets the upstream gradient
    (a,) = node.parents
    axes, keepdims = node.saved
    gradient = _expand_reduced(upstream, a.shape, axes, keepdims)
    return (node.backend.xp.broadcast_to(gradient, a.shape),)


def mean(a: Tensor, dim: Axis = None, keepdim: bool | None = None, *, axis: Axis = None,
         keepdims: bool | None = None) -> Tensor:
    """Average over ``dim`` (an int, a tuple, or None for every axis)."""
    axis, keepdims = _reduce_args("mean", dim, axis, keepdim, keepdims)
    axes = _normalize_axes(axis, a.ndim, "mean")
    count = _count(a.shape, axes)
    if count == 0 and _result_size(a.shape, axes) > 0:  # an empty result is fine, as in PyTorch
        raise ValueError(f"mean: cannot average over zero elements (shape {a.shape}, axis {axis})")
    # NumPy's mean, which accumulates float16 in float32 (a float16 sum passes 65504 and becomes inf)
    data = a.data.mean(axis=axes, keepdims=keepdims) if count else a.data.sum(axis=axes, keepdims=keepdims)  # the empty result
    return _result(data, (a,), "mean", _mean_backward, a.backend, saved=(axes, keepdims, count))


def _mean_backward(node: Tensor, upstream: Any) -> tuple:
    # d(mean_i a_i)/da_j = 1 / N
    (a,) = node.parents
    axes, keepdims, count = node.saved
    gradient = _expand_reduced(upstream, a.shape, axes, keepdims) / count
    return (node.backend.xp.broadcast_to(gradient, a.shape),)


def _correction(op: str, unbiased: bool | None, correction: Any, ddof: Any) -> Any:
    """N - what the variance divides by: ``unbiased`` (torch's old word), ``correction`` (torch's), ``ddof`` (NumPy's)."""
    given = {name: value for name, value in (("unbiased", unbiased), ("correction", correction), ("ddof", ddof))
             if value is not None}
    if len(given) > 1:
        raise TypeError(
            f"{op}: got {', '.join(f'{k}={v!r}' for k, v in given.items())}; they all set what the variance "
            "divides by (N - correction; unbiased=True means correction=1, ddof is NumPy's word): pass only one"
        )
    if unbiased is not None:
        if not isinstance(unbiased, bool):
            raise TypeError(f"{op}: unbiased must be True or False, got {unbiased!r} (for a number, use correction=)")
        return 1 if unbiased else 0
    value = correction if correction is not None else ddof
    return 1 if value is None else value


def _variance(op: str, a: Tensor, dim: Axis, unbiased: Any, keepdim: Any, correction: Any, axis: Axis,
              keepdims: Any, ddof: Any) -> tuple:
    """The variance's numbers, and what its backward needs: (data, axes, keepdims, N - correction)."""
    axis, keepdims = _reduce_args(op, dim, axis, keepdim, keepdims)
    correction = _correction(op, unbiased, correction, ddof)
    axes = _normalize_axes(axis, a.ndim, op)
    count = _count(a.shape, axes)
    if count - correction <= 0 and _result_size(a.shape, axes) > 0:  # an empty result is fine, as in PyTorch
        raise ValueError(
            f"{op}: {count} value(s) along axis {axis} of a tensor of shape {a.shape} "
            f"leave no degrees of freedom with correction={correction} (need more than {correction})"
        )
    if _result_size(a.shape, axes) == 0:
        return a.data.sum(axis=axes, keepdims=keepdims), axes, keepdims, 1  # the empty result
    centered = a.data - a.data.mean(axis=axes, keepdims=True)
    data = (centered * centered).sum(axis=axes, keepdims=keepdims) / (count - correction)
    return data, axes, keepdims, count - correction


def var(a: Tensor, dim: Axis = None, unbiased: bool | None = None, keepdim: bool | None = None, *,
        correction: Any = None, axis: Axis = None, keepdims: bool | None = None, ddof: Any = None) -> Tensor:
    """Variance sum_i (a_i - mean)^2 / (N - correction).

    ``correction=1`` (PyTorch's default, also ``unbiased=True``) is the
    unbiased estimate of the population variance; ``correction=0``
    (``unbiased=False``, NumPy's ``ddof=0``) is the biased batch variance
    that BatchNorm normalizes with. Ask for the one you mean: the default is
    PyTorch's even when the axis is spelled ``axis=``.
    """
    data, axes, keepdims, denominator = _variance("var", a, dim, unbiased, keepdim, correction, axis, keepdims, ddof)
    return _result(data, (a,), "var", _var_backward, a.backend, saved=(axes, keepdims, denominator))


def _var_backward(node: Tensor, upstream: Any) -> tuple:
    # d var/da_j = 2 (a_j - mean) / (N - correction); the mean's own
    # dependence on a_j drops out because the centred values sum to zero
    (a,) = node.parents
    axes, keepdims, denominator = node.saved
    centered = a.data - a.data.mean(axis=axes, keepdims=True)
    gradient = _expand_reduced(upstream, a.shape, axes, keepdims)
    return (gradient * (2 / denominator) * centered,)


def std(a: Tensor, dim: Axis = None, unbiased: bool | None = None, keepdim: bool | None = None, *,
        correction: Any = None, axis: Axis = None, keepdims: bool | None = None, ddof: Any = None) -> Tensor:
    """Standard deviation sqrt(var), with ``var``'s arguments: unbiased (``correction=1``)
    by default, as in PyTorch; NumPy's ``std`` divides by N unless given ``ddof=1``.

    One node rather than ``var(...).sqrt()``: at a slice of equal values
    (std = 0) the composed derivative is inf * 0 = NaN, while PyTorch, and
    this op, take it as 0.
    """
    data, axes, keepdims, denominator = _variance("std", a, dim, unbiased, keepdim, correction, axis, keepdims, ddof)
    data = a.backend.xp.sqrt(data)
    return _result(data, (a,), "std", _std_backward, a.backend, saved=(axes, keepdims, denominator))


def _std_backward(node: Tensor, upstream: Any) -> tuple:
    # d std/da_j = d sqrt(var)/da_j = (a_j - mean) / ((N - correction) std),
    # taken as 0 where std = 0 (all values equal), PyTorch's choice at sqrt's kink
    (a,) = node.parents
    axes, keepdims, denominator = node.saved
    xp = node.backend.xp
    centered = a.data - a.data.mean(axis=axes, keepdims=True)
    deviation = _expand_reduced(node.data, a.shape, axes, keepdims)
    zero = deviation == 0
    safe = xp.where(zero, xp.ones((), dtype=deviation.dtype), deviation)
    gradient = _expand_reduced(upstream, a.shape, axes, keepdims) * centered / (denominator * safe)
    return (xp.where(zero, xp.zeros((), dtype=gradient.dtype), gradient),)


def _extreme(a: Tensor, op: str, axis: Axis, keepdims: bool) -> Tensor:
    """Largest (``op="max"``) or smallest (``"min"``) value over ``axis``, as a plain tensor."""
    axes = _normalize_axes(axis, a.ndim, op)
    if _count(a.shape, axes) == 0:  # PyTorch refuses this even where the result would be empty
        raise ValueError(f"{op}: cannot take the {op}imum of zero elements (shape {a.shape}, axis {axis})")
    data = getattr(a.data, op)(axis=axes, keepdims=keepdims)
    return _result(data, (a,), op, _extreme_backward, a.backend, saved=(axes, keepdims))


def _extreme_backward(node: Tensor, upstream: Any) -> tuple:
    # d max/da_j = 1 for the maximal element (1/k each when k elements tie); the same for min
    (a,) = node.parents
    axes, keepdims = node.saved
    xp = node.backend.xp
    extreme = _expand_reduced(node.data, a.shape, axes, keepdims)
    is_extreme = a.data == extreme
    ties = is_extreme.sum(axis=axes, keepdims=True).astype(upstream.dtype)  # int counts would promote float32
    gradient = _expand_reduced(upstream, a.shape, axes, keepdims)
    # PyTorch's amax rule, grad / ties * mask, multiplied rather than selected:
    # an infinite upstream gives NaN at the other elements, and a NaN maximum
    # equals nothing (0 ties) and gives NaN everywhere, as there
    with quiet_numpy(xp):
        return (gradient / ties * is_extreme,)


def amax(a: Tensor, dim: Axis = None, keepdim: bool | None = None, *, axis: Axis = None,
         keepdims: bool | None = None) -> Tensor:
    """Largest value over ``dim`` (an int, a tuple, or None); ties share the gradient equally."""
    return _extreme(a, "max", *_reduce_args("amax", dim, axis, keepdim, keepdims))


def amin(a: Tensor, dim: Axis = None, keepdim: bool | None = None, *, axis: Axis = None,
         keepdims: bool | None = None) -> Tensor:
    """Smallest value over ``dim`` (an int, a tuple, or None); ties share the gradient equally."""
    return _extreme(a, "min", *_reduce_args("amin", dim, axis, keepdim, keepdims))


def max(a: Tensor, dim: int | None = None, keepdim: bool | None = None, *, axis: Axis = None,
        keepdims: bool | None = None) -> Any:
    """Two meanings, as in the two libraries whose spellings it takes.

    * ``max()`` or ``max(axis=...)`` (NumPy's word): the largest values, a
      tensor; ties share the gradient equally (``amax``).
    * ``max(d)`` or ``max(dim=d)`` (PyTorch's word): ``(values, indices)`` along
      the one axis d, as ``torch.max`` does; the gradient goes to the element
      at ``indices`` (the first of tied maxima), as in PyTorch.
    """
    return _extreme_or_pair(a, "max", dim, keepdim, axis, keepdims)


def min(a: Tensor, dim: int | None = None, keepdim: bool | None = None, *, axis: Axis = None,
        keepdims: bool | None = None) -> Any:
    """Like ``max``: a tensor without a dim or with ``axis=``, ``(values, indices)`` with a dim."""
    return _extreme_or_pair(a, "min", dim, keepdim, axis, keepdims)


def _extreme_or_pair(a: Tensor, op: str, dim: Any, keepdim: Any, axis: Axis, keepdims: Any) -> Any:
    axis, keep = _reduce_args(op, dim, axis, keepdim, keepdims)
    if dim is None:
        return _extreme(a, op, axis, keep)
    if isinstance(dim, bool) or not hasattr(dim, "__index__"):
        raise TypeError(
            f"{op}: dim={dim!r}: with a dim, {op} returns (values, indices) along one axis, so dim must be an int; "
            f"for several axes use a{op}(dim=...) or {op}(axis=...), which return the values only"
        )
    (axis,) = _normalize_axes(dim, a.ndim, op) or (0,)
    if a.ndim and a.shape[axis] == 0:
        raise ValueError(f"{op}: cannot take the {op}imum of zero elements (shape {a.shape}, dim {dim})")
    xp = a.backend.xp
    data = a.data if a.ndim else a.data.reshape(1)
    indices = getattr(xp, f"arg{op}")(data, axis=axis, keepdims=True)  # the first extreme, as torch's CPU does
    values = select(a if a.ndim else a.reshape(1), indices, axis)
    if not keep or not a.ndim:
        values = values.reshape(values.shape[:axis] + values.shape[axis + 1:])
        indices = indices.reshape(indices.shape[:axis] + indices.shape[axis + 1:])
    return ValuesIndices(values, Tensor._wrap(indices.astype(xp.int64), a.backend))


def select(a: Tensor, index: Any, axis: int) -> Tensor:
    """One element of every slice along ``axis``: ``out[..., 0, ...] = a[..., index, ...]``.

    ``index`` is an integer array of ``a``'s shape with size 1 along ``axis``
    (what ``argmax(..., keepdims=True)`` returns). This is the selection
    behind ``max(dim)`` and max pooling.
    """
    data = a.backend.xp.take_along_axis(a.data, index, axis=axis)
    return _result(data, (a,), "select", _select_backward, a.backend, saved=(index, axis))


def _select_backward(node: Tensor, upstream: Any) -> tuple:
    # d out/d a_j = 1 for the one chosen element of each slice, 0 for the rest:
    # the upstream gradient is put where the index points (no two outputs share an element)
    (a,) = node.parents
    index, axis = node.saved
    xp = node.backend.xp
    gradient = xp.zeros(a.shape, dtype=upstream.dtype)
    xp.put_along_axis(gradient, index, upstream, axis=axis)
    return (gradient,)


def _arg_extreme(a: Tensor, op: str, dim: Any, keepdim: Any, axis: Any, keepdims: Any) -> Tensor:
    axis, keep = _reduce_args(op, dim, axis, keepdim, keepdims)
    xp = a.backend.xp
    if axis is not None:
        if isinstance(axis, bool) or not hasattr(axis, "__index__"):
            raise TypeError(f"{op}: dim must be an int or None, got {axis!r}")
        axis = (_normalize_axes(axis, a.ndim, op) or (0,))[0]
    data = a.data if a.ndim else a.data.reshape(1)
    if data.size == 0 or (axis is not None and data.shape[axis] == 0):
        raise ValueError(f"{op}: an empty tensor (shape {a.shape}) has no {op[3:]}imum")
    if axis is None:  # the index into the flattened tensor
        index = getattr(xp, op)(data.reshape(-1))
        index = index.reshape((1,) * a.ndim) if keep else index.reshape(())
    else:
        index = getattr(xp, op)(data, axis=axis, keepdims=keep)
        if not a.ndim:
            index = index.reshape(())
    # an index is not a function of the values that can change smoothly: it has no gradient
    return Tensor._wrap(xp.asarray(index, dtype=xp.int64), a.backend)


def argmax(a: Tensor, dim: int | None = None, keepdim: bool | None = None, *, axis: int | None = None,
           keepdims: bool | None = None) -> Tensor:
    """Index of the largest value along ``dim`` (of the flattened tensor if None); int64, no gradient."""
    return _arg_extreme(a, "argmax", dim, keepdim, axis, keepdims)


def argmin(a: Tensor, dim: int | None = None, keepdim: bool | None = None, *, axis: int | None = None,
           keepdims: bool | None = None) -> Tensor:
    """Index of the smallest value along ``dim`` (of the flattened tensor if None); int64, no gradient."""
    return _arg_extreme(a, "argmin", dim, keepdim, axis, keepdims)

"""Reductions: sum, mean, var and max over axes.

A reduction's backward hands every input element its share of the upstream
gradient. ``upstream`` has the output's shape, in which the reduced axes are
gone (or kept as size 1 with ``keepdims``); ``_expand_reduced`` puts them back
as size 1, so that the gradient broadcasts against the input.
"""
from __future__ import annotations

from typing import Any

from ..tensor import Axis, Tensor, _result

__all__ = ["sum", "mean", "var", "max"]


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


def sum(a: Tensor, axis: Axis = None, keepdims: bool = False) -> Tensor:
    axes = _normalize_axes(axis, a.ndim, "sum")
    data = a.data.sum(axis=axes, keepdims=keepdims)
    return _result(data, (a,), "sum", _sum_backward, a.backend, saved=(axes, keepdims))


def _sum_backward(node: Tensor, upstream: Any) -> tuple:
    # d(sum_i a_i)/da_j = 1: every summed element gets the upstream gradient
    (a,) = node.parents
    axes, keepdims = node.saved
    gradient = _expand_reduced(upstream, a.shape, axes, keepdims)
    return (node.backend.xp.broadcast_to(gradient, a.shape),)


def mean(a: Tensor, axis: Axis = None, keepdims: bool = False) -> Tensor:
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


def var(a: Tensor, axis: Axis = None, keepdims: bool = False, correction: int = 1) -> Tensor:
    """Variance sum_i (a_i - mean)^2 / (N - correction).

    ``correction=1`` (PyTorch's default) is the unbiased estimate of the
    population variance; ``correction=0`` is the biased batch variance
    that BatchNorm normalizes with. Ask for the one you mean.
    """
    axes = _normalize_axes(axis, a.ndim, "var")
    count = _count(a.shape, axes)
    if count - correction <= 0:
        raise ValueError(
            f"var: {count} value(s) along axis {axis} of a tensor of shape {a.shape} "
            f"leave no degrees of freedom with correction={correction} (need more than {correction})"
        )
    centered = a.data - a.data.mean(axis=axes, keepdims=True)
    data = (centered * centered).sum(axis=axes, keepdims=keepdims) / (count - correction)
    return _result(data, (a,), "var", _var_backward, a.backend, saved=(axes, keepdims, count - correction))


def _var_backward(node: Tensor, upstream: Any) -> tuple:
    # d var/da_j = 2 (a_j - mean) / (N - correction); the mean's own
    # dependence on a_j drops out because the centred values sum to zero
    (a,) = node.parents
    axes, keepdims, denominator = node.saved
    centered = a.data - a.data.mean(axis=axes, keepdims=True)
    gradient = _expand_reduced(upstream, a.shape, axes, keepdims)
    return (gradient * (2 / denominator) * centered,)


def max(a: Tensor, axis: Axis = None, keepdims: bool = False) -> Tensor:
    """Largest value along ``axis``; ties share the gradient equally
    (PyTorch's ``amax`` rule)."""
    axes = _normalize_axes(axis, a.ndim, "max")
    if _count(a.shape, axes) == 0 and _result_size(a.shape, axes) > 0:  # an empty result is fine, as in PyTorch
        raise ValueError(f"max: cannot take the maximum of zero elements (shape {a.shape})")
    data = a.data.max(axis=axes, keepdims=keepdims) if a.size else a.data.sum(axis=axes, keepdims=keepdims)  # the empty result
    return _result(data, (a,), "max", _max_backward, a.backend, saved=(axes, keepdims))


def _max_backward(node: Tensor, upstream: Any) -> tuple:
    # d max/da_j = 1 for the maximal element (1/k each when k elements tie)
    (a,) = node.parents
    axes, keepdims = node.saved
    xp = node.backend.xp
    largest = _expand_reduced(node.data, a.shape, axes, keepdims)
    is_max = (a.data == largest) | (xp.isnan(a.data) & xp.isnan(largest))  # a NaN is the maximum where it occurs
    ties = is_max.sum(axis=axes, keepdims=True).astype(upstream.dtype)  # int counts would promote float32
    gradient = _expand_reduced(upstream, a.shape, axes, keepdims)
    # multiplied by the 0/1 mask, not selected, as PyTorch does for amax: an
    # infinite upstream gives NaN at the other elements there too
    return (gradient / ties * is_max,)

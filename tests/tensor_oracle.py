"""Shared helpers for the Tensor-engine tests: PyTorch autograd (float64) as the oracle.

A computation is written as a function of its input tensors. Where tinyad and
torch spell an operation the same way (``a + b``, ``a @ b``, ``a.exp()``,
``a.reshape(2, 3)``, ``a[idx]``) one function serves both engines; where the
spelling differs (``axis=``/``keepdims=`` versus ``dim=``/``keepdim=``,
``tinyad.concatenate`` versus ``torch.cat``) the test passes two functions.

The loss backpropagated in both engines is ``(out * W).sum()`` with a fixed,
non-trivial weight array ``W`` of the output's shape, so every output element
sends a different upstream gradient and a gradient that is only right for an
all-ones upstream is caught.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinyad
from tinyad import Tensor

# --------------------------------------------------------------------------
# Running one computation in both engines
# --------------------------------------------------------------------------


def upstream_weights(shape: tuple, seed: int = 0) -> np.ndarray:
    """A fixed float64 array of ``shape`` with distinct, mixed-sign, non-unit entries."""
    rng = np.random.default_rng(seed + 7919 * len(shape) + int(np.prod(shape, dtype=np.int64)))
    weights = rng.uniform(0.5, 2.0, size=shape) * rng.choice([-1.0, 1.0], size=shape)
    return np.asarray(weights, dtype=np.float64)


@dataclass
class Run:
    """Output values and input gradients of one engine (None where no gradient arrived)."""

    value: np.ndarray
    grads: list


def run_tinyad(fn: Callable, arrays: Sequence[np.ndarray], weights: np.ndarray | None = None,
               requires_grad: Sequence[bool] | None = None, dtype: Any = np.float64) -> Run:
    """fn on tinyad leaves of ``dtype`` (float64 unless told); backward of (out * W).sum()."""
    flags = [True] * len(arrays) if requires_grad is None else list(requires_grad)
    leaves = [Tensor(np.array(a, dtype=dtype), requires_grad=f) for a, f in zip(arrays, flags)]
    out = fn(*leaves)
    assert isinstance(out, Tensor), f"tinyad fn returned {type(out).__name__}"
    assert out.dtype == dtype, f"tinyad output dtype {out.dtype}, expected {np.dtype(dtype)}"
    w = upstream_weights(out.shape) if weights is None else weights
    loss = (out * Tensor(w, dtype=dtype)).sum()
    loss.backward()
    grads = [None if leaf.grad is None else np.asarray(leaf.grad) for leaf in leaves]
    return Run(np.asarray(out.numpy()), grads)


def run_torch(fn: Callable, arrays: Sequence[np.ndarray], weights: np.ndarray | None = None,
              requires_grad: Sequence[bool] | None = None, dtype: Any = np.float64) -> Run:
    """fn on torch leaves of ``dtype`` (float64 unless told); autograd of (out * W).sum()."""
    flags = [True] * len(arrays) if requires_grad is None else list(requires_grad)
    leaves = [torch.tensor(np.array(a, dtype=dtype), requires_grad=f) for a, f in zip(arrays, flags)]
    out = fn(*leaves)
    assert out.dtype == torch.from_numpy(np.zeros(0, dtype)).dtype, f"torch output dtype {out.dtype}"
    w = upstream_weights(tuple(out.shape)) if weights is None else weights
    loss = (out * torch.tensor(w, dtype=out.dtype)).sum()
    wanted = [leaf for leaf in leaves if leaf.requires_grad]
    grads_iter = iter(torch.autograd.grad(loss, wanted, allow_unused=True))
    grads = []
    for leaf in leaves:
        g = next(grads_iter) if leaf.requires_grad else None
        grads.append(None if g is None else g.detach().numpy())
    return Run(out.detach().numpy(), grads)


def assert_close(got: Any, want: Any, what: str, rtol: float = 1e-10, atol: float = 1e-12) -> None:
    """Same shape and values within tolerance (infinities of equal sign and NaNs count as equal)."""
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape}, torch has {want.shape}"
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, equal_nan=True, err_msg=what)


# per dtype: (rtol, atol) for tinyad-vs-torch comparisons
DTYPE_TOLERANCES = {np.dtype(np.float64): (1e-10, 1e-12), np.dtype(np.float32): (1e-5, 1e-6)}


def assert_matches_torch(fn: Callable, arrays: Sequence[np.ndarray], torch_fn: Callable | None = None,
                         requires_grad: Sequence[bool] | None = None, rtol: float | None = None,
                         atol: float | None = None, dtype: Any = np.float64) -> Run:
    """The output and the gradient of every input agree between tinyad and torch.

    ``fn`` runs on tinyad tensors; ``torch_fn`` (default: ``fn``) on torch tensors,
    both of ``dtype`` (float64 unless told; tolerances default to the dtype's).
    A gradient that one engine leaves as None (no path) counts as zeros.
    """
    default_rtol, default_atol = DTYPE_TOLERANCES[np.dtype(dtype)]
    rtol = default_rtol if rtol is None else rtol
    atol = default_atol if atol is None else atol
    arrays = [np.array(a, dtype=np.float64) for a in arrays]
    ours = run_tinyad(fn, arrays, requires_grad=requires_grad, dtype=dtype)
    theirs = run_torch(torch_fn or fn, arrays, requires_grad=requires_grad, dtype=dtype)
    assert_close(ours.value, theirs.value, "output value", rtol, atol)
    flags = [True] * len(arrays) if requires_grad is None else list(requires_grad)
    for i, (array, flag, got, want) in enumerate(zip(arrays, flags, ours.grads, theirs.grads)):
        if not flag:
            assert got is None, f"input {i} does not require grad but received {got!r}"
            continue
        got = np.zeros_like(array) if got is None else got
        want = np.zeros_like(array) if want is None else want
        assert got.shape == array.shape, (
            f"gradient of input {i} has shape {got.shape}, the input has shape {array.shape}"
        )
        assert np.asarray(got).dtype == dtype, f"gradient of input {i} has dtype {got.dtype}"
        assert_close(got, want, f"gradient of input {i} (shape {array.shape})", rtol, atol)
    return ours


# --------------------------------------------------------------------------
# Hypothesis strategies
# --------------------------------------------------------------------------

MAX_SIDE = 4


def floats(low: float = -3.0, high: float = 3.0) -> st.SearchStrategy:
    return st.floats(low, high, allow_nan=False, allow_infinity=False, allow_subnormal=False)


def away_from_zero(low: float = 0.5, high: float = 3.0) -> st.SearchStrategy:
    """Floats with low <= |x| <= high, either sign."""
    return st.one_of(floats(low, high), floats(-high, -low))


def shapes(min_dims: int = 0, max_dims: int = 3, min_side: int = 1, max_side: int = MAX_SIDE) -> st.SearchStrategy:
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side)


def arrays(shape: Any, elements: st.SearchStrategy | None = None) -> st.SearchStrategy:
    return hnp.arrays(np.float64, shape, elements=elements if elements is not None else floats())


def arrays_of_any_shape(min_dims: int = 0, max_dims: int = 3, elements: st.SearchStrategy | None = None):
    return arrays(shapes(min_dims, max_dims), elements)


@st.composite
def broadcastable_pair(draw, first_elements=None, second_elements=None, max_dims: int = 4):
    """Two arrays whose shapes broadcast together (either may be the larger one)."""
    shapes_ = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=max_dims, max_side=3))
    first, second = shapes_.input_shapes
    return draw(arrays(first, first_elements)), draw(arrays(second, second_elements))


@st.composite
def axis_for(draw, ndim: int):
    """An axis argument valid for ``ndim`` dimensions: None, an int, or a tuple (negatives included)."""
    kind = draw(st.sampled_from(["none", "int", "tuple"]) if ndim else st.just("none"))
    if kind == "none":
        return None
    if kind == "int":
        return draw(st.integers(-ndim, ndim - 1))
    chosen = draw(st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True))
    return tuple(a - ndim if draw(st.booleans()) else a for a in chosen)


def torch_dim(axis: Any, ndim: int) -> Any:
    """The torch ``dim`` for a tinyad ``axis`` (None meaning every axis)."""
    if axis is None:
        return tuple(range(ndim))
    return axis


def axis_count(shape: tuple, axis: Any) -> int:
    """How many elements a reduction over ``axis`` combines."""
    axes = range(len(shape)) if axis is None else ((axis,) if isinstance(axis, int) else axis)
    count = 1
    for a in axes:
        count *= shape[a]
    return count


# --------------------------------------------------------------------------
# A quick check that the engine still computes after an error
# --------------------------------------------------------------------------


def assert_engine_still_works(*leaves: Tensor) -> None:
    """A fresh small computation gives torch's value and gradients; so do the given leaves.

    Used after an exception, to show the error left no half-built state behind
    (no stale per-pass buffers, no disabled recording, no polluted grads).
    """
    assert tinyad.is_grad_enabled(), "recording was left switched off"
    values = np.array([0.5, -1.5, 2.0])
    assert_matches_torch(lambda x: (x * x).tanh() + x.exp() / 3.0, [values])
    for leaf in leaves:
        leaf.grad = None
        data = np.array(leaf.numpy(), dtype=np.float64)
        loss = (leaf * 3.0).sum()
        loss.backward()
        np.testing.assert_array_equal(np.asarray(leaf.grad), np.full(data.shape, 3.0))
        leaf.grad = None

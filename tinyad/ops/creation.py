"""Making tensors: zeros, ones, full, random numbers, ranges, and their ``*_like`` forms.

PyTorch's spellings and arguments (``tinyad.zeros(2, 3)``, ``tinyad.zeros((2, 3))``,
``tinyad.randn(4, generator=g)``), with tinyad's default number type: float64,
where PyTorch's is float32 (see docs/conventions.md). ``arange`` and
``randint`` of whole numbers give int64, as in both PyTorch and NumPy, so that
their results index. The random functions draw from the generator that
``tinyad.manual_seed`` restarts, or from a ``tinyad.Generator`` passed as
``generator=``.
"""
from __future__ import annotations

from typing import Any

# random numbers are drawn on the host, from the seeded NumPy generator of nn/init.py, then moved to
# the device (as layer initialization is); everything else is made by the device's own array module
from ..backend import get_backend
from ..nn.init import Generator, numpy_generator
from ..tensor import Tensor

__all__ = [
    "zeros", "ones", "full", "randn", "rand", "randint", "arange",
    "zeros_like", "ones_like", "full_like", "randn_like", "rand_like",
]


def _size(size: tuple, op: str) -> tuple:
    """``f(2, 3)`` and ``f((2, 3))`` both mean shape (2, 3), as in PyTorch."""
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = tuple(size[0])
    if any(isinstance(s, bool) or not hasattr(s, "__index__") or s.__index__() < 0 for s in size):
        raise ValueError(f"{op}: a size is a sequence of non-negative ints, got {size!r}")
    return tuple(s.__index__() for s in size)


def _make(array: Any, dtype: Any, device: str | None, requires_grad: bool) -> Tensor:
    return Tensor(array, requires_grad=requires_grad, dtype=dtype or "float64", device=device)


def zeros(*size: Any, dtype: Any = None, device: str | None = None, requires_grad: bool = False) -> Tensor:
    """A tensor of zeros of shape ``size``."""
    return full(_size(size, "zeros"), 0.0, dtype=dtype, device=device, requires_grad=requires_grad)


def ones(*size: Any, dtype: Any = None, device: str | None = None, requires_grad: bool = False) -> Tensor:
    """A tensor of ones of shape ``size``."""
    return full(_size(size, "ones"), 1.0, dtype=dtype, device=device, requires_grad=requires_grad)


def full(size: Any, fill_value: float, *, dtype: Any = None, device: str | None = None,
         requires_grad: bool = False) -> Tensor:
    """A tensor of shape ``size`` filled with ``fill_value``."""
    xp = get_backend(device).xp
    return _make(xp.full(_size((size,), "full"), fill_value, dtype=dtype or "float64"), dtype, device, requires_grad)


def randn(*size: Any, generator: Generator | None = None, dtype: Any = None, device: str | None = None,
          requires_grad: bool = False) -> Tensor:
    """Samples of the standard normal distribution N(0, 1), of shape ``size``."""
    samples = numpy_generator(generator).standard_normal(_size(size, "randn"))
    return _make(samples, dtype, device, requires_grad)


def rand(*size: Any, generator: Generator | None = None, dtype: Any = None, device: str | None = None,
         requires_grad: bool = False) -> Tensor:
    """Samples of the uniform distribution on [0, 1), of shape ``size``."""
    return _make(numpy_generator(generator).random(_size(size, "rand")), dtype, device, requires_grad)


def randint(low: int, high: Any = None, size: Any = None, *, generator: Generator | None = None,
            dtype: Any = None, device: str | None = None) -> Tensor:
    """Random integers in [low, high): ``randint(low, high, size)`` or ``randint(high, size)``, int64."""
    if size is None:  # randint(high, size): PyTorch's short form, low = 0
        if high is None:
            raise TypeError("randint: needs a size: randint(high, size) or randint(low, high, size)")
        low, high, size = 0, low, high
    if high <= low:
        raise ValueError(f"randint: the range [low, high) = [{low}, {high}) is empty: high must exceed low")
    shape = _size(tuple(size) if isinstance(size, (tuple, list)) else (size,), "randint")
    samples = numpy_generator(generator).integers(low, high, size=shape)
    return Tensor(samples, dtype=dtype or "int64", device=device)


def arange(start: float, end: float | None = None, step: float = 1, *, dtype: Any = None,
           device: str | None = None, requires_grad: bool = False) -> Tensor:
    """``start, start + step, ...`` up to but excluding ``end`` (``arange(n)`` is 0 ... n - 1).

    Whole-number arguments give int64 (indices), as in PyTorch and NumPy;
    any fractional one gives float64.
    """
    if end is None:
        start, end = 0, start
    whole = all(isinstance(v, int) and not isinstance(v, bool) for v in (start, end, step))
    values = get_backend(device).xp.arange(start, end, step)
    return Tensor(values, requires_grad=requires_grad, dtype=dtype or ("int64" if whole else "float64"), device=device)


def _like(input: Tensor, dtype: Any) -> dict:
    """The shape, dtype and device of ``input`` (``dtype`` overrides its dtype)."""
    return dict(dtype=dtype or input.dtype, device=input.device)


def zeros_like(input: Tensor, *, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """Zeros with the shape, dtype and device of ``input``."""
    return zeros(input.shape, requires_grad=requires_grad, **_like(input, dtype))


def ones_like(input: Tensor, *, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """Ones with the shape, dtype and device of ``input``."""
    return ones(input.shape, requires_grad=requires_grad, **_like(input, dtype))


def full_like(input: Tensor, fill_value: float, *, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """``fill_value`` everywhere, with the shape, dtype and device of ``input``."""
    return full(input.shape, fill_value, requires_grad=requires_grad, **_like(input, dtype))


def randn_like(input: Tensor, *, generator: Generator | None = None, dtype: Any = None,
               requires_grad: bool = False) -> Tensor:
    """Standard normal samples with the shape, dtype and device of ``input``."""
    return randn(input.shape, generator=generator, requires_grad=requires_grad, **_like(input, dtype))


def rand_like(input: Tensor, *, generator: Generator | None = None, dtype: Any = None,
              requires_grad: bool = False) -> Tensor:
    """Uniform [0, 1) samples with the shape, dtype and device of ``input``."""
    return rand(input.shape, generator=generator, requires_grad=requires_grad, **_like(input, dtype))

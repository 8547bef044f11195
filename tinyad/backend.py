"""The one array layer: every Tensor operation reaches NumPy (or CuPy) through here.

A backend bundles an array namespace ``xp`` (``numpy``, or ``cupy`` on a GPU,
which copies NumPy's API) with the few operations whose spelling differs
between libraries. Tensor code writes ``tensor.backend.xp.exp(...)`` and
never imports numpy itself, so adding a device means adding a backend here,
not editing every op.
"""
from __future__ import annotations

from typing import Any

import numpy

__all__ = ["Backend", "get_backend", "NUMPY"]


class Backend:
    """An array library plus the device name it computes on."""

    def __init__(self, device: str, xp: Any) -> None:
        self.device = device
        self.xp = xp
        self.array_type = xp.ndarray

    def __repr__(self) -> str:
        return f"Backend(device={self.device!r}, xp={self.xp.__name__})"

    def asarray(self, data: Any, dtype: Any = None) -> Any:
        return self.xp.asarray(data, dtype=dtype)

    def to_numpy(self, array: Any) -> numpy.ndarray:
        """A host (NumPy) copy of ``array``; the only way data leaves the device."""
        return numpy.asarray(array)

    def scatter_add(self, target: Any, index: Any, values: Any) -> None:
        """target[index] += values, adding (not overwriting) at repeated indices."""
        self.xp.add.at(target, index, values)


NUMPY = Backend("cpu", numpy)

_BACKENDS = {"cpu": NUMPY}


def get_backend(device: str | None) -> Backend:
    """The backend for ``device`` ("cpu" by default)."""
    if device is None:
        return NUMPY
    name = str(device)
    if name in _BACKENDS:
        return _BACKENDS[name]
    raise ValueError(f"unknown device {name!r}: expected 'cpu'")

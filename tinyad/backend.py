"""The one array layer: every Tensor operation reaches NumPy (or CuPy) through here.

A backend bundles an array namespace ``xp`` (``numpy``, or ``cupy`` on a GPU,
which copies NumPy's API) with the few operations whose spelling differs
between libraries. Tensor code writes ``tensor.backend.xp.exp(...)`` and
never imports numpy itself, so adding a device means adding a backend here,
not editing every op.

Two devices exist:

* ``"cpu"``: NumPy. Always there.
* ``"cuda"``: CuPy on an NVIDIA GPU (``tinyad/backend_cuda.py``). Optional:
  ``import tinyad`` never needs CuPy. The first ``Tensor(..., device="cuda")``
  (or ``.to("cuda")``) imports it and runs one tiny kernel; without CuPy, a
  usable GPU or the compiler CuPy builds kernels with, that raises
  ``CudaUnavailableError``, which says which and what to install
  (``pip install ".[gpu]"`` from a checkout: cupy-cuda12x[ctk]; cupy-cuda13x[ctk]
  for CUDA 13).

The same code runs on either device: ``Tensor(..., device="cuda")``,
``tensor.to("cuda")`` and ``.cpu()`` move tensors (gradients flow back
across the copy), ``module.to("cuda")`` moves a layer's parameters and
buffers, and ``batch_norm(..., fused=True)`` runs as CUDA kernels there.
An op whose inputs are on different devices is refused, naming both.

On the GPU, data stays on the device: only ``.item()``, ``.numpy()``,
printing and drawing copy it back to the host. For that reason the GPU
backend does not check values before an op (``checks_values = False``):
asking "is any divisor zero?" means copying the answer to the host and
waiting for the GPU at every op. On the GPU, as in PyTorch on CUDA,
``log(0)`` is ``-inf`` and ``1 / 0`` is ``inf`` instead of a ValueError.
"""
from __future__ import annotations

from typing import Any

import numpy

__all__ = ["Backend", "CupyBackend", "CudaUnavailableError", "get_backend", "cuda_is_available", "cuda_unavailable_reason", "NUMPY"]

# Names that live in tinyad.backend_cuda, reachable from here without importing it early.
_CUDA_NAMES = ("CupyBackend", "GPU_INSTALL_HINT")


def __getattr__(name: str) -> Any:
    if name in _CUDA_NAMES:
        from tinyad import backend_cuda

        return getattr(backend_cuda, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class CudaUnavailableError(ImportError, ValueError):
    """Device "cuda" was asked for, but CuPy or a usable GPU is missing.

    An ImportError (what is missing is a library, or the hardware it drives);
    also a ValueError, the error an unusable ``device=`` argument raises.
    """


class Backend:
    """An array library plus the device name it computes on.

    The methods below are written with ``self.xp`` only, so any namespace
    that copies NumPy's API can use them; ``CupyBackend`` replaces the ones
    that have a faster GPU spelling.
    """

    checks_values = True
    """Whether ops check values (division by zero, log of a negative number)
    before computing. Cheap on the host; on a GPU every check would copy a
    flag to the host and wait for the device, so the GPU backend turns it off."""

    def __init__(self, device: str, xp: Any) -> None:
        self.device = device
        self.xp = xp
        self.array_type = xp.ndarray

    def __repr__(self) -> str:
        return f"Backend(device={self.device!r}, xp={self.xp.__name__})"

    def __reduce__(self) -> tuple:
        """Pickled (and deep-copied) by device name: loading asks ``get_backend`` for
        this machine's backend of that device. A module such as ``xp`` cannot be
        pickled, and ops compare backends with ``is``, so a copy must not be made."""
        return (get_backend, (self.device,))

    def asarray(self, data: Any, dtype: Any = None) -> Any:
        return self.xp.asarray(data, dtype=dtype)

    def scalar(self, value: Any, dtype: Any) -> Any:
        """A 0-d array holding the Python number ``value`` (a constant in an op)."""
        return self.xp.asarray(value, dtype=dtype)

    def to_numpy(self, array: Any) -> numpy.ndarray:
        """A host (NumPy) copy of ``array``; the only way data leaves the device."""
        return numpy.asarray(array)

    def scatter_add(self, target: Any, index: Any, values: Any) -> None:
        """target[index] += values, adding (not overwriting) at repeated indices."""
        self.xp.add.at(target, index, values)

    # ---- fused BatchNorm (nn.functional.batch_norm(..., fused=True)) ------------

    def fused_batch_norm_forward(self, x: Any, weight: Any, bias: Any, eps: float, axes: tuple) -> tuple:
        """Training-mode BatchNorm of the array ``x`` over ``axes``, in array formulas.

        ``weight`` and ``bias`` are (C,) arrays or None. Returns ``(y,
        batch_mean, batch_var, saved)``: the statistics keep the reduced axes
        (shape (1, C, 1, ...)), the variance is the biased one, and ``saved``
        is whatever ``fused_batch_norm_backward`` needs later.
        """
        batch_mean = x.mean(axis=axes, keepdims=True)
        x_hat = x - batch_mean  # the centered input; divided by the std in place below
        batch_var = (x_hat * x_hat).mean(axis=axes, keepdims=True)
        inv_std = (batch_var + eps) ** -0.5
        x_hat *= inv_std
        shape = batch_mean.shape
        y = x_hat if weight is None else x_hat * weight.reshape(shape)
        if bias is not None:
            y = y + bias.reshape(shape)
        return y, batch_mean, batch_var, (x_hat, inv_std)

    def fused_batch_norm_backward(self, dy: Any, x: Any, weight: Any, saved: Any, axes: tuple) -> tuple:
        """dL/dx, dL/dweight and dL/dbias ((C,) arrays) from dL/dy, by the compact formula

            dL/dx     = gamma * inv_std / m * (m * dy - sum(dy) - x_hat * sum(dy * x_hat))
            dL/dgamma = sum(dy * x_hat),   dL/dbeta = sum(dy)

        (sums over ``axes``, m values per channel; ``weight`` None means gamma = 1).
        This array version reads x_hat from ``saved`` and does not need ``x``.
        It computes dL/dx as gamma * inv_std * (dy - sum(dy) / m - x_hat *
        sum(dy * x_hat) / m), the same formula with the 1/m moved onto the
        (C,)-sized sums, in one new array changed in place: seven passes over
        the data instead of eight, and one allocation instead of four.
        """
        x_hat, inv_std = saved
        m = dy.size // x_hat.shape[1]
        # float16 sums are accumulated, and divided by m, in float32 (a float16 sum
        # passes 65504 and becomes inf), as NumPy's mean does in the forward pass
        wide = self.xp.float32 if dy.dtype == self.xp.float16 else None
        sum_dy = dy.sum(axis=axes, keepdims=True, dtype=wide)
        sum_dy_xhat = (dy * x_hat).sum(axis=axes, keepdims=True, dtype=wide)
        scale = inv_std if weight is None else weight.reshape(inv_std.shape) * inv_std
        dx = x_hat * (sum_dy_xhat / -m).astype(dy.dtype)
        dx += dy
        dx -= (sum_dy / m).astype(dy.dtype)
        dx *= scale
        sum_dy, sum_dy_xhat = sum_dy.astype(dy.dtype), sum_dy_xhat.astype(dy.dtype)
        return dx, sum_dy_xhat.reshape(-1), sum_dy.reshape(-1)


NUMPY = Backend("cpu", numpy)
"""The backend of device "cpu" (NumPy), the one every tensor gets by default."""

_BACKENDS = {"cpu": NUMPY}


def cuda_unavailable_reason() -> str | None:
    """None when device "cuda" can be used; otherwise why not and what to install.

    "Usable" means: CuPy imports, sees a GPU, and compiles and runs one tiny
    kernel (a CuPy wheel without NVRTC imports and sees the GPU, then fails
    at the first kernel).
    """
    try:
        get_backend("cuda")
    except CudaUnavailableError as error:
        return str(error)
    return None


def cuda_is_available() -> bool:
    """True when device "cuda" can be used (see ``cuda_unavailable_reason`` for why not)."""
    return cuda_unavailable_reason() is None


def get_backend(device: str | None) -> Backend:
    """The backend for ``device`` ("cpu" by default; "cuda" needs CuPy and a GPU).

    Raises ValueError for a name that is no device, and CudaUnavailableError
    (an ImportError) for "cuda" on a machine that cannot run it. A failed
    "cuda" is not remembered: the next call tries again.
    """
    if device is None:
        return NUMPY
    name = str(device)
    if name in _BACKENDS:
        return _BACKENDS[name]
    if name == "cuda":
        from tinyad.backend_cuda import CupyBackend, import_cupy

        # one backend object per device: ops compare backends with ``is``
        _BACKENDS["cuda"] = CupyBackend(import_cupy())
        return _BACKENDS["cuda"]
    raise ValueError(f"unknown device {name!r}: expected 'cpu' or 'cuda'")

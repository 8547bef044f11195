"""The one array layer: every Tensor operation reaches NumPy (or CuPy) through here.

A backend bundles an array namespace ``xp`` (``numpy``, or ``cupy`` on a GPU,
which copies NumPy's API) with the few operations whose spelling differs
between libraries. Tensor code writes ``tensor.backend.xp.exp(...)`` and
never imports numpy itself, so adding a device means adding a backend here,
not editing every op.

Two devices exist:

* ``"cpu"``: NumPy. Always there.
* ``"cuda"``: CuPy on an NVIDIA GPU. Optional: ``import tinyad`` never needs
  CuPy. The first ``Tensor(..., device="cuda")`` (or ``.to("cuda")``) imports
  it; without CuPy, or without a usable GPU, that raises
  ``CudaUnavailableError``, which names the extra to install
  (``pip install "tinyad[gpu]"``, i.e. ``cupy-cuda12x``; ``cupy-cuda11x`` for
  CUDA 11).

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

__all__ = ["Backend", "CupyBackend", "CudaUnavailableError", "get_backend", "cuda_is_available", "NUMPY"]

GPU_INSTALL_HINT = (
    'pip install "tinyad[gpu]" (the gpu extra installs cupy-cuda12x, CuPy for CUDA 12; '
    "on CUDA 11 install cupy-cuda11x instead)"
)


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
        sum_dy = dy.sum(axis=axes, keepdims=True)
        sum_dy_xhat = (dy * x_hat).sum(axis=axes, keepdims=True)
        scale = inv_std if weight is None else weight.reshape(inv_std.shape) * inv_std
        dx = x_hat * (sum_dy_xhat / -m)
        dx += dy
        dx -= sum_dy / m
        dx *= scale
        return dx, sum_dy_xhat.reshape(-1), sum_dy.reshape(-1)


class CupyBackend(Backend):
    """CuPy on the current CUDA device. Built by ``get_backend("cuda")``.

    Everything stays on the GPU. What differs from the NumPy backend:

    * constants are made with ``cupy.full`` (a fill on the device), not
      copied from the host;
    * ``to_numpy`` is ``cupy.asnumpy``, the one device-to-host copy;
    * fused BatchNorm runs as CuPy kernels: two per-channel reductions and
      one elementwise pass forward, two reductions and one elementwise pass
      backward, with x_hat recomputed from x instead of stored;
    * values are not checked before an op (see ``Backend.checks_values``),
      so cross_entropy does not check that targets lie in [0, classes) either,
      and out-of-range integer indices wrap around (CuPy's indexing rule)
      instead of raising IndexError.

    The few operations that still wait for the device are the ones whose
    result size depends on the data (indexing with a boolean mask) and
    BatchNorm with ``momentum=None`` (it reads the batch count). Needs CuPy
    >= 12 (``cupy.add.at``); the ``gpu`` extra installs CuPy 13 or newer.
    """

    checks_values = False

    def __init__(self, cupy: Any, device: str = "cuda") -> None:
        super().__init__(device, cupy)
        self._kernels = None  # built on the first fused BatchNorm call

    def scalar(self, value: Any, dtype: Any) -> Any:
        return self.xp.full((), value, dtype=dtype)

    def to_numpy(self, array: Any) -> numpy.ndarray:
        return self.xp.asnumpy(array)

    def _batch_norm_kernels(self) -> dict:
        """The CUDA kernels of fused BatchNorm; CuPy compiles each on first call and caches it.

        ``T`` is a type placeholder (float32 or float64, taken from the
        arguments). Per-channel arrays have shape (1, C, 1, ...) and broadcast
        against the (N, C, ...) ones; reductions run over the given axes.
        """
        if self._kernels is None:
            cupy = self.xp
            self._kernels = {
                # sum over the batch (and spatial) axes: per-channel sum of x
                "channel_sum": cupy.ReductionKernel(
                    "T x", "T total", "x", "a + b", "total = a", "0", "tinyad_bn_channel_sum"
                ),
                # per-channel sum of squared deviations from the mean (two-pass variance)
                "channel_squared_deviation": cupy.ReductionKernel(
                    "T x, T mean", "T total", "(x - mean) * (x - mean)", "a + b", "total = a", "0",
                    "tinyad_bn_channel_squared_deviation",
                ),
                # per-channel sum of dy * x_hat, with x_hat recomputed from x
                "channel_sum_dy_xhat": cupy.ReductionKernel(
                    "T dy, T x, T mean, T inv_std", "T total", "dy * ((x - mean) * inv_std)", "a + b",
                    "total = a", "0", "tinyad_bn_channel_sum_dy_xhat",
                ),
                # y = gamma * x_hat + beta
                "forward": cupy.ElementwiseKernel(
                    "T x, T mean, T inv_std, T gamma, T beta", "T y",
                    "y = (x - mean) * inv_std * gamma + beta",
                    "tinyad_bn_forward",
                ),
                # dx = gamma * inv_std * (dy - mean(dy) - x_hat * mean(dy * x_hat)),
                # the compact formula with the 1/m moved inside the brackets
                "backward": cupy.ElementwiseKernel(
                    "T dy, T x, T mean, T inv_std, T scale, T mean_dy, T mean_dy_xhat", "T dx",
                    "dx = scale * (dy - mean_dy - (x - mean) * inv_std * mean_dy_xhat)",
                    "tinyad_bn_backward",
                ),
            }
        return self._kernels

    def _per_channel(self, param: Any, shape: tuple, fill: float, dtype: Any) -> Any:
        """``param`` reshaped to (1, C, 1, ...) in ``dtype``, or a constant ``fill`` if None."""
        if param is None:
            return self.xp.full(shape, fill, dtype=dtype)
        return param.reshape(shape).astype(dtype, copy=False)

    def fused_batch_norm_forward(self, x: Any, weight: Any, bias: Any, eps: float, axes: tuple) -> tuple:
        kernels = self._batch_norm_kernels()
        dtype = self.xp.result_type(*(a for a in (x, weight, bias) if a is not None))
        x = x.astype(dtype, copy=False)
        m = x.size // x.shape[1]
        batch_mean = kernels["channel_sum"](x, axis=axes, keepdims=True) / m
        batch_var = kernels["channel_squared_deviation"](x, batch_mean, axis=axes, keepdims=True) / m
        inv_std = (batch_var + eps) ** -0.5
        shape = batch_mean.shape
        gamma = self._per_channel(weight, shape, 1.0, dtype)
        beta = self._per_channel(bias, shape, 0.0, dtype)
        y = kernels["forward"](x, batch_mean, inv_std, gamma, beta)
        return y, batch_mean, batch_var, (batch_mean, inv_std)

    def fused_batch_norm_backward(self, dy: Any, x: Any, weight: Any, saved: Any, axes: tuple) -> tuple:
        kernels = self._batch_norm_kernels()
        batch_mean, inv_std = saved
        dtype = batch_mean.dtype
        dy = dy.astype(dtype, copy=False)
        x = x.astype(dtype, copy=False)
        m = x.size // x.shape[1]
        sum_dy = kernels["channel_sum"](dy, axis=axes, keepdims=True)
        sum_dy_xhat = kernels["channel_sum_dy_xhat"](dy, x, batch_mean, inv_std, axis=axes, keepdims=True)
        scale = self._per_channel(weight, inv_std.shape, 1.0, dtype) * inv_std
        dx = kernels["backward"](dy, x, batch_mean, inv_std, scale, sum_dy / m, sum_dy_xhat / m)
        return dx, sum_dy_xhat.reshape(-1), sum_dy.reshape(-1)


NUMPY = Backend("cpu", numpy)
"""The backend of device "cpu" (NumPy), the one every tensor gets by default."""

_BACKENDS = {"cpu": NUMPY}


def _import_cupy() -> Any:
    """CuPy, or CudaUnavailableError saying what to install."""
    try:
        import cupy
    except ImportError as error:
        raise CudaUnavailableError(f"device 'cuda' needs CuPy, which is not installed: {GPU_INSTALL_HINT}") from error
    if not cupy.is_available():
        raise CudaUnavailableError(
            "device 'cuda': CuPy is installed but finds no usable CUDA GPU (no device, or no driver); "
            f"check nvidia-smi, and that the CuPy wheel matches your CUDA version: {GPU_INSTALL_HINT}"
        )
    return cupy


def cuda_is_available() -> bool:
    """True when device "cuda" can be used (CuPy imports and sees a GPU)."""
    try:
        get_backend("cuda")
    except CudaUnavailableError:
        return False
    return True


def get_backend(device: str | None) -> Backend:
    """The backend for ``device`` ("cpu" by default; "cuda" needs CuPy and a GPU).

    Raises ValueError for a name that is no device, and CudaUnavailableError
    (an ImportError) for "cuda" on a machine that cannot run it.
    """
    if device is None:
        return NUMPY
    name = str(device)
    if name in _BACKENDS:
        return _BACKENDS[name]
    if name == "cuda":
        # one backend object per device: ops compare backends with ``is``
        _BACKENDS["cuda"] = CupyBackend(_import_cupy())
        return _BACKENDS["cuda"]
    raise ValueError(f"unknown device {name!r}: expected 'cpu' or 'cuda'")

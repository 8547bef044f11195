"""Device "cuda": CuPy, and the CUDA kernels of fused BatchNorm.

Nothing here imports CuPy when the module is imported: ``import_cupy`` does,
the first time a tensor asks for device "cuda" (``tinyad.backend.get_backend``
imports this module only then).

Three things a reader of this file should know:

* **What the GPU computes in.** A float16 sum of 70 000 ones is inf (float16
  stops at 65504), so float16 data is summed in float32, as NumPy does on the
  CPU: every kernel has an input type ``T`` (the data) and an accumulation
  type ``U`` (float32 for float16 data, otherwise ``T``). Per-channel values
  (mean, inverse std, gamma, beta) are kept in ``U``; only the big arrays
  (x, y, dy, dx) are ``T``.
* **How the per-channel sums fill the GPU.** CuPy plans a reduction by a fixed
  rule (``cupy_reduction_launch`` below models it). Asked directly for the
  per-channel sums of an (8192, 1024) array it launches 32 blocks, which
  leaves three quarters of a 132-SM GPU idle. So the sums run in two stages:
  stage one reduces a *view* of x chosen so that CuPy's own rule launches
  thousands of blocks (``channel_reduction_layout`` says which view and
  why), stage two adds the few partial sums per channel with CuPy's own
  ``sum``. ``tests/backend/test_cuda_launch.py`` computes the launch of every
  kernel at the benchmark shapes on the CPU and asserts it.
* **What was never run.** No GPU has run this code yet. The kernels' CUDA
  source is compiled offline by NVRTC in the tests (every dtype, 1-4
  dimensions, both memory orders, 32- and 64-bit indexing, CuPy's CUB
  variants: ``tests/backend/test_cuda_compile.py``), their arithmetic runs on
  the CPU through a NumPy stand-in for CuPy, and ``benchmarks/gpu_check.sh``
  is the one script to run on the first machine with a GPU.
"""
from __future__ import annotations

import math
import re
from typing import Any, NamedTuple

import numpy

from tinyad.backend import Backend, CudaUnavailableError

GPU_INSTALL_HINT = (
    'to install: from a tinyad checkout (tinyad is not on PyPI) run pip install ".[gpu]"; the gpu extra installs '
    '"cupy-cuda12x[ctk]", CuPy for CUDA 12 with the NVRTC compiler and CUDA headers it builds kernels with. '
    'For a CUDA 13 driver install "cupy-cuda13x[ctk]" instead. An existing CuPy without them can keep its '
    'wheel: pip install "cuda-toolkit[nvrtc,cudart]==12.*" (13.* for cupy-cuda13x) adds just the compiler'
)

# The CUDA compute capability the offline compile test builds for (H100/H200 class).
OFFLINE_ARCH = "90"

# Threads per block of CuPy's reduction kernels (512 on CUDA, 256 on ROCm).
CUPY_REDUCTION_BLOCK = 512
# Stage one of the per-channel sums should launch at least this many blocks per
# SM, so that every SM holds several blocks and memory latency is hidden.
BLOCKS_PER_SM = 4
# The SM count assumed when the device cannot be asked (H100 SXM and H200: 132).
DEFAULT_SM_COUNT = 132


# ---------------------------------------------------------------------------
# the kernels, as data (the offline compile test builds each of these)
# ---------------------------------------------------------------------------


class ReductionSpec(NamedTuple):
    """The arguments of one ``cupy.ReductionKernel``."""

    in_params: str
    out_params: str
    map_expr: str
    reduce_expr: str
    post_map_expr: str
    identity: str
    name: str
    reduce_type: str


class ElementwiseSpec(NamedTuple):
    """The arguments of one ``cupy.ElementwiseKernel``."""

    in_params: str
    out_params: str
    operation: str
    name: str


# In every kernel, T is the data's dtype and U the accumulation dtype (float32
# for float16 data, else T). U(x) converts before any arithmetic, so a float16
# input is squared and summed in float32; T(...) rounds once, at the end.
REDUCTIONS = {
    # per-channel sum of x (also of dy in the backward)
    "channel_sum": ReductionSpec(
        "T x", "U total", "U(x)", "a + b", "total = a", "0", "tinyad_bn_channel_sum", "U"
    ),
    # per-channel sum of squared deviations from the mean (the two-pass variance)
    "channel_squared_deviation": ReductionSpec(
        "T x, U mean", "U total", "(U(x) - mean) * (U(x) - mean)", "a + b", "total = a", "0",
        "tinyad_bn_channel_squared_deviation", "U",
    ),
    # per-channel sum of dy * x_hat, x_hat recomputed from x instead of stored
    "channel_sum_dy_xhat": ReductionSpec(
        "T dy, T x, U mean, U inv_std", "U total", "U(dy) * ((U(x) - mean) * inv_std)", "a + b", "total = a",
        "0", "tinyad_bn_channel_sum_dy_xhat", "U",
    ),
}

ELEMENTWISE = {
    # y = gamma * x_hat + beta
    "forward": ElementwiseSpec(
        "T x, U mean, U inv_std, U gamma, U beta", "T y",
        "y = T((U(x) - mean) * inv_std * gamma + beta)", "tinyad_bn_forward",
    ),
    # dx = gamma * inv_std * (dy - mean(dy) - x_hat * mean(dy * x_hat)),
    # the compact formula with the 1/m moved inside the brackets
    "backward": ElementwiseSpec(
        "T dy, T x, U mean, U inv_std, U scale, U mean_dy, U mean_dy_xhat", "T dx",
        "dx = T(scale * (U(dy) - mean_dy - (U(x) - mean) * inv_std * mean_dy_xhat))", "tinyad_bn_backward",
    ),
}


def _names(params: str) -> list[str]:
    return [p.split()[-1] for p in params.split(",")]


def check_cub_renaming_is_safe(spec: ReductionSpec) -> None:
    """Raise ValueError if CuPy's CUB path would corrupt this kernel's expressions.

    For a reduction with one input and one output CuPy may use CUB, and to
    fit its CUB template it renames the input to ``in0`` and the output to
    ``out0`` by *plain text replacement*: ``map_expr.replace(name, "in0")``
    and ``post_map_expr.replace(name, "out0")``. So the rule is: the input's
    name may appear in ``map_expr`` only as a whole word, and the output's in
    ``post_map_expr`` likewise. With an input named ``x``, a map expression
    ``exp(x)`` would become ``ein0p(in0)`` on the CUB path only (a compile
    error on some shapes and not others).
    """
    ins, outs = _names(spec.in_params), _names(spec.out_params)
    if len(ins) != 1 or len(outs) != 1:
        return  # CuPy's CUB path takes exactly one input and one output
    for name, expression, new in ((ins[0], spec.map_expr, "in0"), (outs[0], spec.post_map_expr, "out0")):
        plain = expression.replace(name, new)
        by_word = re.sub(rf"\b{re.escape(name)}\b", new, expression)
        if plain != by_word:
            raise ValueError(
                f"kernel {spec.name}: the parameter name {name!r} also occurs inside another word of "
                f"{expression!r}; CuPy's CUB path would rewrite it to {plain!r}. Rename the parameter."
            )


for _spec in REDUCTIONS.values():
    check_cub_renaming_is_safe(_spec)


def accumulation_dtype(dtype: Any) -> numpy.dtype:
    """The dtype sums are carried in: float32 for float16 data (as NumPy does), else the dtype itself."""
    dtype = numpy.dtype(dtype)
    return numpy.dtype("float32") if dtype == numpy.float16 else dtype


# ---------------------------------------------------------------------------
# launch planning: CuPy's rule, and the views that make it fill the GPU
# ---------------------------------------------------------------------------


class Launch(NamedTuple):
    """How CuPy launches one reduction: ``blocks`` x ``threads``, ``outputs_per_block`` results each."""

    blocks: int
    threads: int
    outputs_per_block: int
    cub: bool


class Operand(NamedTuple):
    """An input of a reduction as CuPy sees it after broadcasting: shape and strides in elements."""

    shape: tuple
    strides: tuple


def _c_contiguous(operand: Operand) -> bool:
    expected = 1
    for size, stride in zip(reversed(operand.shape), reversed(operand.strides)):
        if size != 1 and stride != expected:
            return False
        expected *= size
    return True


def _f_contiguous(operand: Operand) -> bool:
    return _c_contiguous(Operand(operand.shape[::-1], operand.strides[::-1]))


def cupy_reduction_launch(operands: list[Operand], reduce_axes: tuple) -> Launch:
    """The launch CuPy 14.2 chooses for a ``ReductionKernel`` (one output) over ``reduce_axes``.

    A model of ``_AbstractReductionKernel._call`` and ``_get_block_specs`` in
    CuPy's ``_reduction.pyx`` and of ``_can_use_cub_block_reduction`` in
    ``_cub_reduction.pyx``, written out so the CPU tests can check launches
    without a GPU:

    1. CUB: with one input, C-ordered with the reduced axes trailing (or
       F-ordered with them leading), each block reduces one contiguous
       segment: one block per output, threads = the power of two covering a
       quarter of the segment, clamped to [32, 512].
    2. Otherwise the axes are permuted (reduced axes first, output axes
       last; with one strided input and one output axis, each group sorted
       by decreasing stride). ``contiguous`` is 32 if *any* input steps by
       one element along its last axis (outputs lie side by side in memory),
       else 1. A block of 512 threads serves ``block_stride`` outputs: the
       power of two CuPy gets from ``max(contiguous, 512 // values_per_output)``
       (its ``clp2(s // 2 + 1)``); blocks = outputs / block_stride.
       A broadcast per-channel input counts in that test: it makes CuPy give
       each block 32 channels even when x itself is strided along channels.
    (Merging neighbouring axes, which CuPy also does, changes neither count.)
    """
    shape = operands[0].shape
    ndim = len(shape)
    reduce_axes = tuple(sorted(a % ndim for a in reduce_axes))
    out_axes = tuple(a for a in range(ndim) if a not in reduce_axes)
    in_size = math.prod(shape)
    out_size = math.prod(shape[a] for a in out_axes)
    values_per_output = max(1, in_size // max(1, out_size))

    if len(operands) == 1 and out_axes:
        only = operands[0]
        if _f_contiguous(only):
            if reduce_axes + out_axes == tuple(range(ndim)):
                return Launch(out_size, _cub_threads(values_per_output), 1, True)
        elif _c_contiguous(only) and out_axes + reduce_axes == tuple(range(ndim)):
            return Launch(out_size, _cub_threads(values_per_output), 1, True)

    if len(operands) == 1 and len(out_axes) <= 1 and not _c_contiguous(operands[0]):
        strides = operands[0].strides
        reduce_axes = tuple(sorted(reduce_axes, key=lambda a: -abs(strides[a])))
        out_axes = tuple(sorted(out_axes, key=lambda a: -abs(strides[a])))
    order = [a for a in reduce_axes + out_axes if shape[a] != 1]  # size-1 axes vanish when CuPy merges
    contiguous = 1
    if order and any(op.strides[order[-1]] == 1 for op in operands):
        contiguous = min(out_size, 32)
    stride = max(contiguous, CUPY_REDUCTION_BLOCK // values_per_output)
    stride = 1 << (stride // 2 + 1 - 1).bit_length()  # CuPy's clp2(stride // 2 + 1)
    blocks = (out_size + stride - 1) // stride
    return Launch(blocks, CUPY_REDUCTION_BLOCK, stride, False)


def _cub_threads(segment: int) -> int:
    threads = 1 << max(0, (segment + 3) // 4 - 1).bit_length()  # clp2(ceil(segment / 4 items per thread))
    return min(max(threads, 32), CUPY_REDUCTION_BLOCK)


class Layout(NamedTuple):
    """How stage one of the per-channel sums views x: ``view`` shape, reduced ``axes``, per-channel ``channel_shape``."""

    view: tuple
    axes: tuple
    channel_shape: tuple
    channel_fortran: bool
    partial_shape: tuple


def channel_reduction_layout(shape: tuple, sm_count: int = DEFAULT_SM_COUNT) -> Layout:
    """The view of a C-ordered (N, C, ...) array that stage one reduces, by this rule:

    * **(N, C) data** (channels contiguous): split the batch into G chunks,
      view x as (G, N/G, C) and reduce the middle axis. CuPy then gives each
      block 32 neighbouring channels of one chunk (coalesced reads), and there
      are G * C / 32 blocks; G is the smallest power of two dividing N that
      makes CuPy launch at least ``BLOCKS_PER_SM`` blocks per SM (at (8192, 1024):
      G = 32, 1024 blocks instead of 32; G stops doubling when chunks would
      hold fewer than 2 rows or N is not divisible). Stage two adds G partial
      sums per channel.
    * **(N, C, spatial...) data** (each channel a contiguous plane): view x as
      (N, C, S), reduce the plane. One block per (sample, channel) plane,
      N * C blocks (8192 at (32, 256, 56, 56)), reading each plane in order.
      Per-channel inputs (the mean) are given to CuPy as an (N, C, 1) array in
      F order: a (1, C, 1) broadcast would look "contiguous along the output"
      to CuPy's rule, which then packs 32 channels (32 planes, 12 KB apart)
      into each block: 8 blocks at (32, 256, 56, 56). Stage two adds N
      partial sums per channel.
    """
    batch, channels = shape[0], shape[1]
    spatial = math.prod(shape[2:])
    if spatial == 1:
        wanted = BLOCKS_PER_SM * sm_count
        chunks = 1
        while batch % (chunks * 2) == 0 and batch // (chunks * 2) >= 2 and _chunked_blocks(batch, channels, chunks) < wanted:
            chunks *= 2
        return Layout((chunks, batch // chunks, channels), (1,), (1, 1, channels), False, (chunks, 1, channels))
    return Layout((batch, channels, spatial), (2,), (batch, channels, 1), True, (batch, channels, 1))


def _chunked_blocks(batch: int, channels: int, chunks: int) -> int:
    view = (chunks, batch // chunks, channels)
    return cupy_reduction_launch([Operand(view, _c_strides(view))], (1,)).blocks


def stage_one_launches(shape: tuple, sm_count: int = DEFAULT_SM_COUNT) -> dict:
    """The launch of each fused-BatchNorm reduction at ``shape`` (C-ordered x), per CuPy's rule."""
    layout = channel_reduction_layout(shape, sm_count)
    view = layout.view
    x = Operand(view, _c_strides(view))
    channel = _broadcast_strides(layout.channel_shape, view, layout.channel_fortran)
    return {
        "channel_sum": cupy_reduction_launch([x], layout.axes),
        "channel_squared_deviation": cupy_reduction_launch([x, channel], layout.axes),
        "channel_sum_dy_xhat": cupy_reduction_launch([x, x, channel, channel], layout.axes),
    }


def direct_launches(shape: tuple) -> dict:
    """The launches CuPy would choose for the same sums asked for directly (the kernels before this layout)."""
    axes = (0,) + tuple(range(2, len(shape)))
    x = Operand(shape, _c_strides(shape))
    channel_shape = (1, shape[1]) + (1,) * (len(shape) - 2)
    channel = _broadcast_strides(channel_shape, shape, False)
    return {
        "channel_sum": cupy_reduction_launch([x], axes),
        "channel_squared_deviation": cupy_reduction_launch([x, channel], axes),
        "channel_sum_dy_xhat": cupy_reduction_launch([x, x, channel, channel], axes),
    }


def _c_strides(shape: tuple) -> tuple:
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= size
    return tuple(reversed(strides))


def _broadcast_strides(small: tuple, shape: tuple, fortran: bool) -> Operand:
    own = _c_strides(small[::-1])[::-1] if fortran else _c_strides(small)
    return Operand(shape, tuple(0 if s == 1 and n != 1 else st for s, n, st in zip(small, shape, own)))


# ---------------------------------------------------------------------------
# the backend
# ---------------------------------------------------------------------------


class CupyBackend(Backend):
    """CuPy on the current CUDA device. Built by ``get_backend("cuda")``.

    Everything stays on the GPU. What differs from the NumPy backend:

    * constants are made with ``cupy.full`` (a fill on the device), not
      copied from the host;
    * ``to_numpy`` is ``cupy.asnumpy``, the one device-to-host copy;
    * fused BatchNorm runs as CuPy kernels: two per-channel reductions and
      one elementwise pass forward, two reductions and one elementwise pass
      backward, with x_hat recomputed from x instead of stored; sums of
      float16 data are carried in float32;
    * values are not checked before an op (see ``Backend.checks_values``),
      so cross_entropy does not check that targets lie in [0, classes) either,
      and out-of-range integer indices wrap around (CuPy's indexing rule)
      instead of raising IndexError.

    The few operations that still wait for the device are the ones whose
    result size depends on the data (indexing with a boolean mask) and
    BatchNorm with ``momentum=None`` (it reads the batch count). Needs CuPy
    >= 13 (``cupy.add.at``, ``astype(copy=False)``); the ``gpu`` extra installs 14.
    """

    checks_values = False

    def __init__(self, cupy: Any, device: str = "cuda", sm_count: int | None = None) -> None:
        super().__init__(device, cupy)
        self._kernels: dict | None = None  # built on the first fused BatchNorm call
        self.sm_count = sm_count or _sm_count(cupy)

    def scalar(self, value: Any, dtype: Any) -> Any:
        return self.xp.full((), value, dtype=dtype)

    def to_numpy(self, array: Any) -> numpy.ndarray:
        return self.xp.asnumpy(array)

    def _batch_norm_kernels(self) -> dict:
        """The CUDA kernels of fused BatchNorm; CuPy compiles each on first call and caches it."""
        if self._kernels is None:
            cupy = self.xp
            kernels = {name: cupy.ReductionKernel(*spec) for name, spec in REDUCTIONS.items()}
            kernels.update({name: cupy.ElementwiseKernel(*spec) for name, spec in ELEMENTWISE.items()})
            self._kernels = kernels
        return self._kernels

    def _channel_sums(self, name: str, big: list, channel: list, accumulate: Any) -> Any:
        """Per-channel sums of kernel ``name`` over the batch (and spatial) axes, as (1, C, 1, ...) in ``accumulate``.

        ``big`` are the (N, C, ...) operands (C-ordered), ``channel`` the (1, C,
        1, ...) ones. Stage one reduces the view ``channel_reduction_layout``
        chooses into a few partial sums per channel, stage two adds those with
        CuPy's own sum.
        """
        xp = self.xp
        shape = big[0].shape
        layout = channel_reduction_layout(shape, self.sm_count)
        views = [operand.reshape(layout.view) for operand in big]
        for value in channel:
            flat = value.reshape(1, -1, 1)
            if layout.channel_fortran:  # (N, C, 1) in F order; see channel_reduction_layout
                views.append(xp.asfortranarray(xp.broadcast_to(flat, layout.channel_shape)))
            else:
                views.append(flat.reshape(layout.channel_shape))
        partial = xp.empty(layout.partial_shape, dtype=accumulate)
        self._batch_norm_kernels()[name](*views, axis=layout.axes, keepdims=True, out=partial)
        total = partial.sum(axis=0)  # stage two: G or N partial sums per channel
        return total.reshape((1, shape[1]) + (1,) * (len(shape) - 2))

    def _per_channel(self, param: Any, shape: tuple, fill: float, dtype: Any) -> Any:
        """``param`` reshaped to (1, C, 1, ...) in ``dtype``, or a constant ``fill`` if None."""
        if param is None:
            return self.xp.full(shape, fill, dtype=dtype)
        return param.reshape(shape).astype(dtype, copy=False)

    def fused_batch_norm_forward(self, x: Any, weight: Any, bias: Any, eps: float, axes: tuple) -> tuple:
        xp = self.xp
        dtype = xp.result_type(*(a for a in (x, weight, bias) if a is not None))
        accumulate = accumulation_dtype(dtype)
        x = xp.ascontiguousarray(x.astype(dtype, copy=False))  # the layouts assume C order
        m = x.size // x.shape[1]
        batch_mean = self._channel_sums("channel_sum", [x], [], accumulate) / m
        batch_var = self._channel_sums("channel_squared_deviation", [x], [batch_mean], accumulate) / m
        inv_std = (batch_var + eps) ** -0.5
        shape = batch_mean.shape
        gamma = self._per_channel(weight, shape, 1.0, accumulate)
        beta = self._per_channel(bias, shape, 0.0, accumulate)
        y = self._batch_norm_kernels()["forward"](x, batch_mean, inv_std, gamma, beta)
        return y, batch_mean.astype(dtype), batch_var.astype(dtype), (batch_mean, inv_std, dtype)

    def fused_batch_norm_backward(self, dy: Any, x: Any, weight: Any, saved: Any, axes: tuple) -> tuple:
        xp = self.xp
        batch_mean, inv_std, dtype = saved  # the statistics in the accumulation dtype, and y's dtype
        accumulate = batch_mean.dtype
        dy = xp.ascontiguousarray(dy.astype(dtype, copy=False))  # a broadcast upstream becomes an array here
        x = xp.ascontiguousarray(x.astype(dtype, copy=False))
        m = x.size // x.shape[1]
        sum_dy = self._channel_sums("channel_sum", [dy], [], accumulate)
        sum_dy_xhat = self._channel_sums("channel_sum_dy_xhat", [dy, x], [batch_mean, inv_std], accumulate)
        scale = self._per_channel(weight, inv_std.shape, 1.0, accumulate) * inv_std
        dx = self._batch_norm_kernels()["backward"](dy, x, batch_mean, inv_std, scale, sum_dy / m, sum_dy_xhat / m)
        return dx, sum_dy_xhat.reshape(-1).astype(dtype), sum_dy.reshape(-1).astype(dtype)


def _sm_count(cupy: Any) -> int:
    """The device's multiprocessor count, or ``DEFAULT_SM_COUNT`` where it cannot be asked (the stand-in)."""
    try:
        return int(cupy.cuda.Device().attributes["MultiProcessorCount"])
    except Exception:  # noqa: BLE001 - any failure to ask means: assume the default
        return DEFAULT_SM_COUNT


# ---------------------------------------------------------------------------
# is device "cuda" usable here?
# ---------------------------------------------------------------------------


def _probe(cupy: Any) -> str | None:
    """Compile and run one tiny kernel; None if it gave the right answer, else why not."""
    try:
        if not cupy.is_available():
            return (
                "CuPy is installed but finds no usable CUDA GPU (no device, or a driver too old for this "
                "CuPy wheel); check nvidia-smi, and that the wheel matches the driver's CUDA version"
            )
        doubled = cupy.ElementwiseKernel("T x", "T y", "y = x + x", "tinyad_probe")(cupy.arange(4, dtype="float32"))
        if cupy.asnumpy(doubled).tolist() != [0.0, 2.0, 4.0, 6.0]:
            return "a test kernel ran on the GPU but returned wrong values"
    except Exception as error:  # noqa: BLE001 - every failure is a reason to report
        text = f"{type(error).__name__}: {error}".strip()
        if "nvrtc" in text.lower() or "cuda_fp16" in text or "CompileException" in text:
            return (
                f"CuPy sees a GPU but cannot compile kernels: NVRTC or the CUDA headers are missing ({text[:200]})"
            )
        return f"CuPy sees a GPU but a test kernel failed ({text[:200]})"
    return None


def import_cupy() -> Any:
    """CuPy, checked by running one kernel; or CudaUnavailableError saying why not and what to install."""
    try:
        import cupy
    except ImportError as error:
        raise CudaUnavailableError(f"device 'cuda' needs CuPy, which is not installed: {GPU_INSTALL_HINT}") from error
    reason = _probe(cupy)
    if reason is not None:
        raise CudaUnavailableError(f"device 'cuda' is not usable: {reason}. {GPU_INSTALL_HINT}")
    return cupy

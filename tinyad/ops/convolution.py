"""Convolution and pooling, built on one primitive: ``im2col``.

A 2-D convolution slides a small kernel over an image and, at every output
position, takes the dot product of the kernel with the patch of the image
under it. ``im2col`` ("image to columns") gathers those patches: for an
(N, C, H, W) input and a kh x kw kernel it returns a (C * kh * kw, N * L)
matrix whose column is one patch (all channels) under one of the L = OH * OW
output positions of one example. Then

    conv2d      = weight.reshape(O, C * kh * kw) @ im2col(x)   (then + bias)
    max_pool2d  = the largest value of each patch, channel by channel
    avg_pool2d  = the mean of each patch, channel by channel
    unfold      = im2col(x) arranged as PyTorch's F.unfold, (N, C * kh * kw, L)

so the only new derivative is im2col's own, and the matmul, max and mean that
follow keep theirs. The patches are read through a *strided view*: a window
over the input's own memory, whose axes step through the rows and columns of
the image (see ``_windows``); no Python loop visits a pixel.

im2col's backward (col2im) is the adjoint: a pixel copied into several
patches receives the sum of their gradients. It loops over the kh * kw
positions inside the kernel (25 for a 5 x 5 kernel), and each turn adds one
whole (N, C, OH, OW) slab of gradients into a strided slice of the image.

Why the batch sits among the columns, (C*kh*kw, N*L), and not in front as in
F.unfold's (N, C*kh*kw, L): a convolution of the whole batch is then one 2-D
matrix product, ``kernels @ im2col(x)``, the textbook (cs231n) form. It is
not a speed device: in one same-run A/B of the LeNet step of
benchmarks/conv_vs_torch.py (one BLAS thread) the F.unfold layout with a
batched matmul took 1.03x as long, within noise.
"""
from __future__ import annotations

from typing import Any

from ..tensor import Tensor, _result, shape_error

__all__ = ["im2col", "unfold", "conv2d", "max_pool2d", "avg_pool2d"]


def _pair(value: Any, name: str, op: str, minimum: int = 1) -> tuple:
    """An int or a pair of ints as (height, width), as PyTorch accepts them."""
    pair = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < minimum for v in pair):
        raise ValueError(f"{op}: {name} must be an int >= {minimum} or a pair of them, got {value!r}")
    return pair


def _output_side(op: str, size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """How many kernel positions fit along one side: floor((size + 2p - d(k - 1) - 1) / s) + 1."""
    span = dilation * (kernel - 1) + 1  # the input pixels one kernel covers, holes included
    if size + 2 * padding < span:
        raise ValueError(
            f"{op}: the kernel spans {span} pixels, more than the padded input's {size + 2 * padding} "
            f"(size {size} + 2 * padding {padding}); use a smaller kernel or more padding"
        )
    return (size + 2 * padding - span) // stride + 1


def _out_size(op: str, input_shape: tuple, kernel: tuple, stride: tuple, padding: tuple, dilation: tuple) -> tuple:
    """(OH, OW): the output grid of a kernel sliding over an (N, C, H, W) input."""
    return tuple(_output_side(op, input_shape[2 + axis], kernel[axis], stride[axis], padding[axis], dilation[axis])
                 for axis in range(2))


def _windows(padded: Any, xp: Any, kernel: tuple, dilation: tuple, stride: tuple, out_size: tuple) -> Any:
    """The (C, kh, kw, N, OH, OW) view of ``padded``: element [c, i, j, n, y, x] is
    padded[n, c, y * stride + i * dilation, x * stride + j * dilation].

    No number is copied: each axis of the view is a step through the input's
    memory. Stepping the kernel row i moves ``dilation`` rows down the image,
    stepping the output row y moves ``stride`` rows down; the same for columns.
    """
    step_n, step_c, step_row, step_col = padded.strides
    shape = (padded.shape[1], kernel[0], kernel[1], padded.shape[0], out_size[0], out_size[1])
    strides = (step_c, step_row * dilation[0], step_col * dilation[1], step_n, step_row * stride[0], step_col * stride[1])
    return xp.lib.stride_tricks.as_strided(padded, shape=shape, strides=strides)


def im2col(input: Tensor, kernel_size: Any, dilation: Any = 1, padding: Any = 0, stride: Any = 1,
           pad_value: float = 0.0) -> Tensor:
    """Every patch of the batch as a column: (N, C, H, W) -> (C * kh * kw, N * OH * OW).

    Row c * kh * kw + i * kw + j holds channel c at kernel offset (i, j);
    column n * OH * OW + y * OW + x is the patch of example n under output
    position (y, x). Padding adds ``pad_value`` around the image (0 for a
    convolution, -inf for max pooling, so that it is never the maximum).
    """
    op = "im2col"
    kernel, dilation = _pair(kernel_size, "kernel_size", op), _pair(dilation, "dilation", op)
    padding, stride = _pair(padding, "padding", op, minimum=0), _pair(stride, "stride", op)
    if input.ndim != 4:
        raise ValueError(f"{op}: expected an input of shape (N, C, H, W), got {input.shape}")
    n, c = input.shape[:2]
    out_size = _out_size(op, input.shape, kernel, stride, padding, dilation)
    xp = input.backend.xp
    padded = input.data
    if padding != (0, 0):
        rows, cols = padding
        padded = xp.pad(padded, ((0, 0), (0, 0), (rows, rows), (cols, cols)), constant_values=pad_value)
    windows = _windows(padded, xp, kernel, dilation, stride, out_size)
    columns = windows.reshape(c * kernel[0] * kernel[1], n * out_size[0] * out_size[1])  # the one copy
    geometry = (input.shape, kernel, dilation, padding, stride, out_size)
    return _result(columns, (input,), "im2col", _im2col_backward, input.backend, saved=geometry)


def _im2col_backward(node: Tensor, upstream: Any) -> tuple:
    # col2im: im2col copies pixel p into every patch that covers it, so
    # dL/dp = the sum of the gradients of all those copies. Kernel offset (i, j)
    # read the strided slice rows i*d, i*d + s, ... and columns j*d, j*d + s, ...
    # of the padded image: its gradients are added back into that same slice.
    input_shape, kernel, dilation, padding, stride, out_size = node.saved
    n, c, height, width = input_shape
    xp = node.backend.xp
    patches = upstream.reshape(c, kernel[0], kernel[1], n, out_size[0], out_size[1])
    grad_padded = xp.zeros((n, c, height + 2 * padding[0], width + 2 * padding[1]), dtype=upstream.dtype)
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            top, left = i * dilation[0], j * dilation[1]
            rows = slice(top, top + stride[0] * (out_size[0] - 1) + 1, stride[0])
            cols = slice(left, left + stride[1] * (out_size[1] - 1) + 1, stride[1])
            grad_padded[:, :, rows, cols] += xp.swapaxes(patches[:, i, j], 0, 1)  # (C, N, ...) -> (N, C, ...)
    return (grad_padded[:, :, padding[0]:padding[0] + height, padding[1]:padding[1] + width],)


def unfold(input: Tensor, kernel_size: Any, dilation: Any = 1, padding: Any = 0, stride: Any = 1) -> Tensor:
    """The patches under every kernel position, as columns: PyTorch's ``F.unfold``.

    (N, C, H, W) -> (N, C * kh * kw, OH * OW): ``im2col`` with the batch
    moved to the front (a reshape and a permute). Zero padding, as in PyTorch.
    """
    columns = im2col(input, kernel_size, dilation, padding, stride)
    n = input.shape[0]
    return columns.reshape(columns.shape[0], n, columns.shape[1] // n).permute(1, 0, 2)


def conv2d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride: Any = 1, padding: Any = 0,
           dilation: Any = 1) -> Tensor:
    """2-D cross-correlation, PyTorch's ``conv2d``: out[n, o] = sum_c weight[o, c] * input[n, c] + bias[o].

    ``weight`` is (out_channels, in_channels, kh, kw). Built as
    ``weight.reshape(O, C*kh*kw) @ im2col(input)``: one matrix product takes
    every kernel's dot product with every patch of the batch at once.
    """
    if input.ndim != 4 or weight.ndim != 4:
        raise shape_error("conv2d", input.shape, weight.shape, why="must be (N, C, H, W) and (out_channels, C, kh, kw)")
    n, channels = input.shape[:2]
    out_channels, weight_channels, kh, kw = weight.shape
    if weight_channels != channels:
        raise shape_error(
            "conv2d", input.shape, weight.shape,
            why=f"do not fit: the input has {channels} channels, the weight expects {weight_channels}",
        )
    if bias is not None and bias.shape != (out_channels,):
        raise shape_error("conv2d", bias.shape, weight.shape, why="do not fit: the bias needs one number per output channel")
    height_out, width_out = _out_size("conv2d", input.shape, (kh, kw), _pair(stride, "stride", "conv2d"),
                                      _pair(padding, "padding", "conv2d", minimum=0), _pair(dilation, "dilation", "conv2d"))
    patches = im2col(input, (kh, kw), dilation, padding, stride)  # (C*kh*kw, N*OH*OW)
    kernels = weight.reshape(out_channels, channels * kh * kw)  # one kernel per row
    out = (kernels @ patches).reshape(out_channels, n, height_out, width_out).permute(1, 0, 2, 3)
    if bias is not None:
        out = out + bias.reshape(1, out_channels, 1, 1)
    return out


def max_pool2d(input: Tensor, kernel_size: Any, stride: Any = None, padding: Any = 0) -> Tensor:
    """The largest value of each kh x kw window, channel by channel (PyTorch's ``max_pool2d``).

    ``stride`` defaults to the kernel size (windows side by side). Padding
    adds -inf, so it is never the maximum. The gradient goes to the element
    that was chosen (the first of tied maxima, as in PyTorch): ``max(dim)``
    selects it and remembers where.
    """
    return _pool("max_pool2d", input, kernel_size, stride, padding)


def avg_pool2d(input: Tensor, kernel_size: Any, stride: Any = None, padding: Any = 0) -> Tensor:
    """The mean of each kh x kw window, channel by channel (PyTorch's ``avg_pool2d``).

    ``stride`` defaults to the kernel size. Padding adds zeros that count in
    the mean (PyTorch's default ``count_include_pad=True``).
    """
    return _pool("avg_pool2d", input, kernel_size, stride, padding)


def _pool(op: str, input: Tensor, kernel_size: Any, stride: Any, padding: Any) -> Tensor:
    kernel = _pair(kernel_size, "kernel_size", op)
    stride = kernel if stride is None else _pair(stride, "stride", op)
    padding = _pair(padding, "padding", op, minimum=0)
    if padding[0] > kernel[0] // 2 or padding[1] > kernel[1] // 2:
        raise ValueError(f"{op}: padding {padding} must be at most half the kernel size {kernel}, as in PyTorch")
    if input.ndim != 4:
        raise ValueError(f"{op}: expected an input of shape (N, C, H, W), got {input.shape}")
    n, channels = input.shape[:2]
    out_size = _out_size(op, input.shape, kernel, stride, padding, (1, 1))
    pad_value = float("-inf") if op == "max_pool2d" else 0.0
    columns = im2col(input, kernel, 1, padding, stride, pad_value)  # (C * kh * kw, N * L)
    # axis 1 runs over the kh * kw values of one window of one channel
    windows = columns.reshape(channels, kernel[0] * kernel[1], n * out_size[0] * out_size[1])
    pooled = windows.max(1).values if op == "max_pool2d" else windows.mean(1)
    return pooled.reshape(channels, n, out_size[0], out_size[1]).permute(1, 0, 2, 3)

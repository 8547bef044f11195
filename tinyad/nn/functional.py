"""Neural-network functions composed from tinyad's primitive ops.

Nothing here has a hand-written backward except ``batch_norm(..., fused=True)``,
the one deliberate exception: everything else is built from the ops in
``tinyad/tensor.py`` (or ``tinyad/scalar.py``), so the engine derives the
gradients and the graph shows every step.
"""
from __future__ import annotations

from typing import Any, Sequence

from ..scalar import Value
from ..tensor import Tensor, _result, device_error

__all__ = [
    "batch_norm",
    "batch_norm_scalar",
    "cross_entropy",
    "mse_loss",
    "relu",
    "sigmoid",
    "tanh",
    "linear",
]


def relu(x: Tensor) -> Tensor:
    """``x.relu()``: max(0, x) elementwise, with derivative 0 at 0 (PyTorch's choice)."""
    return x.relu()


def sigmoid(x: Tensor) -> Tensor:
    """``x.sigmoid()``: 1 / (1 + e^-x) elementwise."""
    return x.sigmoid()


def tanh(x: Tensor) -> Tensor:
    """``x.tanh()``: tanh(x) elementwise."""
    return x.tanh()


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """x W^T + b, with W of shape (out_features, in_features) as in PyTorch."""
    out = x @ weight.T
    return out if bias is None else out + bias


def mse_loss(input: Tensor, target: Any) -> Tensor:
    """Mean of the squared differences (PyTorch's reduction='mean')."""
    if not isinstance(target, Tensor):
        # an array target must become a (constant) Tensor: ``Tensor - ndarray``
        # would otherwise fall through to NumPy and build an object array
        target = Tensor(target, dtype=input.dtype, device=input.device)
    difference = input - target
    return (difference * difference).mean()


def cross_entropy(logits: Tensor, target: Any) -> Tensor:
    """Mean negative log-likelihood of integer class ``target`` under softmax(logits).

    ``logits`` is (N, classes); ``target`` holds N class indices in
    [0, classes) (a list, an integer array or an integer Tensor), one per
    row. The mean over the batch is PyTorch's ``reduction="mean"``.

    log softmax(z)_k = z_k - log sum_j e^{z_j}. Subtracting the row maximum m
    first leaves the result unchanged (the e^{-m} cancels between numerator
    and denominator) but keeps every e^{z_j - m} <= 1, so nothing overflows.
    The maximum is a constant shift, so it is detached: the gradient of a
    shift-invariant function does not depend on it.
    """
    if logits.ndim != 2:
        raise ValueError(f"cross_entropy: expected logits of shape (N, classes), got {logits.shape}")
    xp = logits.backend.xp
    if isinstance(target, Tensor) and target.backend is not logits.backend:
        raise device_error("cross_entropy", logits.device, target.device)
    classes = target.data if isinstance(target, Tensor) else xp.asarray(target)
    if classes.dtype.kind not in "iu":
        raise ValueError(f"cross_entropy: targets must be integer class indices, got dtype {classes.dtype}")
    if classes.shape != (logits.shape[0],):
        raise ValueError(
            f"cross_entropy: shapes {tuple(classes.shape)} and {logits.shape} do not match: "
            "expected one target per row of logits"
        )
    # the range check reads two numbers back from the device, so the GPU skips it (see backend.py)
    checked = logits.backend.checks_values and classes.size
    if checked and (int(classes.min()) < 0 or int(classes.max()) >= logits.shape[1]):
        raise ValueError(
            f"cross_entropy: targets must lie in [0, {logits.shape[1] - 1}], "
            f"got values from {int(classes.min())} to {int(classes.max())}"
        )
    shifted = logits - logits.max(axis=1, keepdims=True).detach()
    log_probs = shifted - shifted.exp().sum(axis=1, keepdims=True).log()
    picked = log_probs[xp.arange(logits.shape[0]), classes]
    return -picked.mean()


# ---------------------------------------------------------------------------
# Batch Normalization (Ioffe & Szegedy, 2015)
# ---------------------------------------------------------------------------


def _labelled(node: Tensor, label: str) -> Tensor:
    node.label = label
    return node


def _channel_view(param: Tensor, ndim: int, name: str) -> Tensor:
    """A per-channel (C,) tensor shaped to broadcast over N and space.

    Broadcasting lines shapes up from the right, so (C,) already fits an (N, C)
    input and is used as it is; an (N, C, H, W) input needs (1, C, 1, 1), a
    reshape node labelled ``name``.
    """
    if ndim == 2:
        return param
    shape = [1] * ndim
    shape[1] = param.shape[0]
    return _labelled(param.reshape(shape), name)


def batch_norm(
    input: Tensor,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
    *,
    detach_stats: bool = False,
    fused: bool = False,
) -> Tensor:
    """Batch Normalization of an (N, C) or (N, C, *) input, per channel C.

    Training (batch statistics over N and every spatial position):

        batch_mean = mean(x)                      over the m = N * spatial values
        centered   = x - batch_mean
        batch_var  = mean(centered ** 2)          biased: divides by m
        inv_std    = (batch_var + eps) ** -1/2    eps inside the square root
        x_hat      = centered * inv_std
        y          = gamma * x_hat + beta

    and, if running statistics are given, updates them in place:
    ``running = (1 - momentum) * running + momentum * batch`` where the batch
    variance used here is the *unbiased* one, m / (m - 1) * batch_var
    (PyTorch's conventions). Evaluation normalizes with the running
    statistics instead. Every intermediate is a node labelled with its name
    above (``batch_mean``, ``centered``, ``batch_var``, ``var_eps``,
    ``inv_std``, ``x_hat``, ``gamma * x_hat``, ``y``), so
    ``tinyad.find(y, "batch_var")`` returns it.

    ``weight`` (gamma) and ``bias`` (beta) are (C,) tensors or None; the
    running statistics are (C,) tensors, or None in training mode to leave
    them out. Training with one value per channel raises ValueError: the
    variance of one number is 0 and every output would be beta.

    ``detach_stats=True`` treats the batch mean and variance as constants in
    the backward pass: the variant the paper's Section 2 warns against.
    ``fused=True`` computes the same numbers in one primitive op whose
    backward is the compact hand-derived formula (faster, but one opaque node);
    it applies in training mode only, and evaluation or ``detach_stats``
    always use the composed graph.
    """
    # PyTorch's checks and error type: training needs eps > 0, so that a channel whose values are all
    # equal (batch_var = 0) still has a finite inv_std; the running variance may take eps = 0
    if training and eps <= 0:
        raise ValueError(
            f"batch_norm: eps must be > 0 when training, got {eps}: it keeps inv_std = (batch_var + eps) ** -1/2 "
            "finite where a channel's values are all equal (the default is 1e-5)"
        )
    if eps < 0:
        raise ValueError(f"batch_norm: eps must be >= 0, got {eps}: it is added to the variance under a square root")
    shape = input.data.shape
    if len(shape) < 2:
        raise ValueError(f"batch_norm: expected an input of shape (N, C) or (N, C, *), got {input.shape}")
    channels = shape[1]
    for name, tensor in (("weight", weight), ("bias", bias), ("running_mean", running_mean), ("running_var", running_var)):
        if tensor is None:
            continue
        if tensor.data.shape != (channels,):
            raise ValueError(
                f"batch_norm: {name} has shape {tensor.shape}, expected ({channels},) for an input of shape {input.shape}"
            )
        if tensor.backend is not input.backend:
            raise device_error("batch_norm", f"{input.device} (input)", f"{tensor.device} ({name})")
    axes = (0,) + tuple(range(2, len(shape)))
    count = input.data.size // channels
    if not training and (running_mean is None or running_var is None):
        raise ValueError(
            "batch_norm: evaluation mode (training=False) normalizes with running_mean and running_var, "
            "and they were not given; pass them, or training=True to use the batch's own statistics"
        )
    use_batch_stats = training
    if use_batch_stats and count <= 1:
        raise ValueError(
            f"batch_norm: expected more than 1 value per channel when training, got input of shape {input.shape}: "
            "the variance of a single value is 0, so every output would be beta (use a bigger batch, or eval())"
        )
    if fused and use_batch_stats and not detach_stats:
        output, batch_mean_data, batch_var_data = _fused_batch_norm(input, weight, bias, eps, axes)
    else:
        output, batch_mean_data, batch_var_data = _composed_batch_norm(
            input, running_mean, running_var, weight, bias, use_batch_stats, eps, axes, detach_stats
        )
    if training and running_mean is not None and running_var is not None:
        unbiased_var = batch_var_data * (count / (count - 1))
        running_mean.data = (1 - momentum) * running_mean.data + momentum * batch_mean_data.reshape(channels)
        running_var.data = (1 - momentum) * running_var.data + momentum * unbiased_var.reshape(channels)
    return output


def _composed_batch_norm(input, running_mean, running_var, weight, bias, use_batch_stats, eps, axes, detach_stats):
    x = input
    ndim = x.data.ndim
    if use_batch_stats:
        batch_mean = _labelled(x.mean(axis=axes, keepdims=True), "batch_mean")
        centered = _labelled(x - (batch_mean.detach() if detach_stats else batch_mean), "centered")
        batch_var = _labelled((centered**2).mean(axis=axes, keepdims=True), "batch_var")
        if detach_stats:
            batch_var = _labelled(batch_var.detach(), "batch_var (detached)")
        mean_data, var_data = batch_mean.data, batch_var.data
    else:
        # evaluation: the population estimates are constants, not functions of the batch
        mean_const = _labelled(_channel_view(running_mean.detach(), ndim, "running_mean"), "running_mean")
        batch_var = _labelled(_channel_view(running_var.detach(), ndim, "running_var"), "running_var")
        centered = _labelled(x - mean_const, "centered")
        mean_data, var_data = mean_const.data, batch_var.data
    var_eps = _labelled(batch_var + eps, "var_eps")
    inv_std = _labelled(var_eps ** -0.5, "inv_std")
    out = _labelled(centered * inv_std, "x_hat")
    if weight is not None:
        out = _labelled(out * _channel_view(weight, ndim, "gamma"), "gamma * x_hat")
    if bias is not None:
        out = out + _channel_view(bias, ndim, "beta")
    if weight is None and bias is None:
        return out, mean_data, var_data  # without gamma and beta, y is x_hat itself
    return _labelled(out, "y"), mean_data, var_data


def _fused_batch_norm(input, weight, bias, eps, axes):
    """Forward of training-mode BatchNorm as a single node (see ``_fused_backward``).

    The arithmetic is the backend's: on the CPU the same array formulas as
    the composed graph (``Backend.fused_batch_norm_forward``), on the GPU a
    few CUDA kernels (``CupyBackend``).
    """
    weight_data = None if weight is None else weight.data
    bias_data = None if bias is None else bias.data
    y, batch_mean, batch_var, arrays = input.backend.fused_batch_norm_forward(input.data, weight_data, bias_data, eps, axes)
    parents = [input]  # then whichever of weight and bias are given, in that order
    if weight is not None:
        parents.append(weight)
    if bias is not None:
        parents.append(bias)
    saved = (arrays, axes, weight is not None, bias is not None)
    out = _result(y, tuple(parents), "batch_norm (fused)", _fused_backward, input.backend, saved=saved)
    out.label = "y"
    return out, batch_mean, batch_var


def _fused_backward(node: Tensor, upstream: Any) -> tuple:
    # The compact form of the paper's chain rule, with m values per channel:
    #   dL/dx     = gamma * inv_std / m * (m * dy - sum(dy) - x_hat * sum(dy * x_hat))
    #   dL/dgamma = sum(dy * x_hat),   dL/dbeta = sum(dy)
    # (sums over the batch and spatial axes; check.batch_norm_backward_compact
    # derives it step by step, Backend.fused_batch_norm_backward computes it)
    arrays, axes, has_weight, has_bias = node.saved
    x = node.parents[0].data
    weight = node.parents[1].data if has_weight else None
    dx, dweight, dbias = node.backend.fused_batch_norm_backward(upstream, x, weight, arrays, axes)
    messages = [dx] + ([dweight] if has_weight else []) + ([dbias] if has_bias else [])
    # an input that needs no gradient (a constant) gets no message
    return tuple(m if parent.requires_grad else None for m, parent in zip(messages, node.parents))


def batch_norm_scalar(
    samples: Sequence[Sequence[Value]],
    gamma: Sequence[Value] | None = None,
    beta: Sequence[Value] | None = None,
    eps: float = 1e-5,
) -> list[list[Value]]:
    """Training-mode BatchNorm of N samples by D features, one ``Value`` per number.

    The same composition as ``batch_norm``, written with scalars so that each
    sample is its own node: sample i reaches its output through its own
    x_hat, through ``batch_mean[j]`` and through ``batch_var[j]``, and the
    graph shows all three routes. Normalizes with the biased variance.

    ``samples[i][j]`` is feature j of sample i; ``gamma`` and ``beta`` hold
    one Value per feature (or None). The nodes are labelled
    ``batch_mean[j]``, ``centered[i,j]``, ``batch_var[j]``, ``var_eps[j]``,
    ``inv_std[j]``, ``x_hat[i,j]``, ``gamma*x_hat[i,j]`` and ``y[i,j]``.
    Returns the outputs in the same N-by-D layout.
    """
    count = len(samples)
    if count <= 1:
        raise ValueError(
            f"batch_norm_scalar: expected more than 1 value per channel when training, got {count} sample(s)"
        )
    features = len(samples[0])
    if any(len(row) != features for row in samples):
        raise ValueError("batch_norm_scalar: every sample needs the same number of features")
    outputs = [[None] * features for _ in range(count)]
    for j in range(features):
        column = [row[j] for row in samples]
        total = column[0]
        for value in column[1:]:
            total = total + value
        batch_mean = total * (1.0 / count)
        batch_mean.label = f"batch_mean[{j}]"
        centered = []
        for i, value in enumerate(column):
            c = value - batch_mean
            c.label = f"centered[{i},{j}]"
            centered.append(c)
        squares = [c**2 for c in centered]
        total = squares[0]
        for square in squares[1:]:
            total = total + square
        batch_var = total * (1.0 / count)
        batch_var.label = f"batch_var[{j}]"
        var_eps = batch_var + eps
        var_eps.label = f"var_eps[{j}]"
        inv_std = var_eps ** -0.5
        inv_std.label = f"inv_std[{j}]"
        for i in range(count):
            out = centered[i] * inv_std
            out.label = f"x_hat[{i},{j}]"
            if gamma is not None:
                out = out * gamma[j]
                out.label = f"gamma*x_hat[{i},{j}]"
            if beta is not None:
                out = out + beta[j]
                out.label = f"y[{i},{j}]"
            outputs[i][j] = out
    return outputs


"""Neural-network functions composed from tinyad's primitive ops.

Nothing here has a hand-written backward except ``batch_norm(..., fused=True)``,
the one deliberate exception: everything else is built from the ops in
``tinyad/ops/`` (or ``tinyad/scalar.py``), so the engine derives the
gradients and the graph shows every step. (Convolution and pooling rest on
one primitive of their own, ``im2col``, in ``tinyad/ops/convolution.py``.)
"""
from __future__ import annotations

from typing import Any, Sequence

from ..ops.convolution import avg_pool2d, conv2d, max_pool2d, unfold
from ..scalar import Value
from ..tensor import Tensor, _result, device_error, shape_error
from . import init

__all__ = [
    "batch_norm",
    "batch_norm_scalar",
    "layer_norm",
    "dropout",
    "softmax",
    "log_softmax",
    "one_hot",
    "nll_loss",
    "cross_entropy",
    "mse_loss",
    "relu",
    "sigmoid",
    "tanh",
    "linear",
    "conv2d",
    "unfold",
    "max_pool2d",
    "avg_pool2d",
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


# ---------------------------------------------------------------------------
# Classification: softmax, log-softmax, one-hot targets, the two losses
# ---------------------------------------------------------------------------


def _shifted(input: Tensor, dim: int) -> Tensor:
    """``input`` minus its (detached) maximum along ``dim``: every entry <= 0, so e^entry <= 1.

    softmax and log-softmax are unchanged by a shift (the e^{-m} cancels
    between numerator and denominator), so the maximum is a constant for the
    gradient and is detached: the graph shows the shift, not a route through it.
    """
    return _labelled(input - input.amax(dim, keepdim=True).detach(), "shifted")


def softmax(input: Tensor, dim: int) -> Tensor:
    """softmax(z)_k = e^{z_k} / sum_j e^{z_j} along ``dim``: exp(shifted) / sum(exp(shifted))."""
    exps = _labelled(_shifted(input, dim).exp(), "exps")
    return _labelled(exps / _labelled(exps.sum(dim, keepdim=True), "sum_exps"), "softmax")


def log_softmax(input: Tensor, dim: int) -> Tensor:
    """log softmax(z)_k = z_k - log sum_j e^{z_j} along ``dim``, computed as
    shifted - log(sum(exp(shifted))) so that nothing overflows (see ``_shifted``)."""
    shifted = _shifted(input, dim)
    log_sum_exp = _labelled(shifted.exp().sum(dim, keepdim=True).log(), "log_sum_exp")
    return _labelled(shifted - log_sum_exp, "log_softmax")


def _class_indices(op: str, scores: Tensor, target: Any) -> Any:
    """``target`` as an integer array with one class index in [0, C) per row of (N, C) ``scores``."""
    if scores.ndim != 2:
        what = "logits" if op == "cross_entropy" else "log-probabilities"
        raise ValueError(f"{op}: expected {what} of shape (N, classes), got {scores.shape}")
    xp = scores.backend.xp
    if isinstance(target, Tensor) and target.backend is not scores.backend:
        raise device_error(op, scores.device, target.device)
    classes = target.data if isinstance(target, Tensor) else xp.asarray(target)
    if classes.dtype.kind not in "iu":
        raise ValueError(f"{op}: targets must be integer class indices, got dtype {classes.dtype}")
    if classes.shape != (scores.shape[0],):
        raise shape_error(op, classes.shape, scores.shape, why="do not match: expected one target per row of logits")
    # the range check reads two numbers back from the device, so the GPU skips it (see backend.py)
    checked = scores.backend.checks_values and classes.size
    if checked and (int(classes.min()) < 0 or int(classes.max()) >= scores.shape[1]):
        raise ValueError(
            f"{op}: targets must lie in [0, {scores.shape[1] - 1}], "
            f"got values from {int(classes.min())} to {int(classes.max())}"
        )
    return classes


def _reduce(op: str, losses: Tensor, reduction: str) -> Tensor:
    """PyTorch's ``reduction``: 'mean' (the default), 'sum', or 'none' (one loss per example)."""
    if reduction == "mean":
        return losses.mean()
    if reduction == "sum":
        return losses.sum()
    if reduction == "none":
        return losses
    raise ValueError(f"{op}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def one_hot(tensor: Any, num_classes: int = -1) -> Tensor:
    """Class indices (N,) -> rows (N, num_classes) of zeros with a 1 at each index (int64, as in PyTorch).

    ``num_classes=-1`` means one more than the largest index.
    """
    indices = tensor if isinstance(tensor, Tensor) else Tensor(tensor, dtype="int64")
    xp, classes = indices.backend.xp, indices.data
    if classes.dtype.kind not in "iu":
        raise ValueError(f"one_hot: expects integer class indices, got dtype {classes.dtype}")
    if num_classes == -1:
        num_classes = int(classes.max()) + 1 if classes.size else 0
    if classes.size and (int(classes.min()) < 0 or int(classes.max()) >= num_classes):
        raise ValueError(
            f"one_hot: class indices must lie in [0, {num_classes - 1}], "
            f"got values from {int(classes.min())} to {int(classes.max())}"
        )
    rows = classes[..., None] == xp.arange(num_classes)
    return Tensor._wrap(rows.astype(xp.int64), indices.backend)


def nll_loss(input: Tensor, target: Any, reduction: str = "mean") -> Tensor:
    """Negative log-likelihood: -input[i, target[i]] per row, then ``reduction``.

    ``input`` holds log-probabilities, (N, C), as ``log_softmax`` makes them.
    """
    classes = _class_indices("nll_loss", input, target)
    picked = _labelled(input[input.backend.xp.arange(input.shape[0]), classes], "picked")
    return _reduce("nll_loss", -picked, reduction)


def cross_entropy(input: Tensor, target: Any, reduction: str = "mean", label_smoothing: float = 0.0) -> Tensor:
    """Negative log-likelihood of integer class ``target`` under softmax(input):
    ``nll_loss(log_softmax(input, 1), target)``.

    ``input`` is (N, classes) logits; ``target`` holds N class indices in
    [0, classes) (a list, an integer array or an integer Tensor), one per row.

    With ``label_smoothing`` = s the target is no longer all on one class:
    1 - s on it, and s spread evenly over all K classes, so the loss per row
    is (1 - s) * (-log p_target) + s * mean_k(-log p_k), as in PyTorch.
    """
    _class_indices("cross_entropy", input, target)  # the checks, under this function's name
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must lie in [0, 1], got {label_smoothing}")
    log_probs = log_softmax(input, 1)
    losses = nll_loss(log_probs, target, reduction="none")
    if label_smoothing > 0:
        uniform = _labelled(-log_probs.mean(1), "smoothing")
        losses = losses * (1.0 - label_smoothing) + uniform * label_smoothing
    return _reduce("cross_entropy", losses, reduction)


# ---------------------------------------------------------------------------
# Dropout (Srivastava et al., 2014) and Layer Normalization (Ba et al., 2016)
# ---------------------------------------------------------------------------


def dropout(input: Tensor, p: float = 0.5, training: bool = True) -> Tensor:
    """Inverted dropout: in training, zero each value with probability ``p`` and
    scale the survivors by 1 / (1 - p), so that the expected output is the
    input and evaluation (``training=False``) is the identity.

    The mask is drawn from the generator ``tinyad.manual_seed`` restarts, so
    a seeded run is reproducible; it enters the graph as a constant factor
    labelled ``dropout_mask``.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: p is a probability and must lie in [0, 1], got {p}")
    if not training or p == 0.0:
        return input
    keep = init.generator().random(input.shape) >= p
    scale = keep / (1.0 - p) if p < 1.0 else keep * 0.0  # p = 1 drops everything, as in PyTorch
    mask = Tensor(scale, dtype=input.dtype, device=input.device, label="dropout_mask")
    return _labelled(input * mask, "dropout")


def layer_norm(
    input: Tensor,
    normalized_shape: Any,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
) -> Tensor:
    """Layer Normalization: normalize each example over its last axes (``normalized_shape``).

    The same steps as training-mode ``batch_norm``, over other axes: the
    statistics belong to one example (over its features) rather than to one
    feature (over the batch), so there are no running statistics and train
    and eval compute the same thing.

        layer_mean = mean(x)                over the normalized axes
        centered   = x - layer_mean
        layer_var  = mean(centered ** 2)    biased: divides by their size
        inv_std    = (layer_var + eps) ** -1/2
        x_hat      = centered * inv_std
        y          = weight * x_hat + bias  (weight, bias of normalized_shape)
    """
    normalized_shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    count = len(normalized_shape)
    if count == 0 or input.shape[input.ndim - count:] != normalized_shape or input.ndim < count:
        raise ValueError(
            f"layer_norm: normalized_shape {normalized_shape} must be the last axes of the input, "
            f"got an input of shape {input.shape}"
        )
    if eps <= 0:
        raise ValueError(f"layer_norm: eps must be > 0, got {eps}: it keeps inv_std finite for a constant example")
    for name, tensor in (("weight", weight), ("bias", bias)):
        if tensor is not None and tensor.shape != normalized_shape:
            raise ValueError(f"layer_norm: {name} has shape {tensor.shape}, expected {normalized_shape}")
    axes = tuple(range(input.ndim - count, input.ndim))
    layer_mean = _labelled(input.mean(axes, keepdim=True), "layer_mean")
    centered = _labelled(input - layer_mean, "centered")
    layer_var = _labelled((centered**2).mean(axes, keepdim=True), "layer_var")
    inv_std = _labelled(_labelled(layer_var + eps, "var_eps") ** -0.5, "inv_std")
    out = _labelled(centered * inv_std, "x_hat")
    if weight is not None:
        out = _labelled(out * weight, "gamma * x_hat")
    if bias is not None:
        out = _labelled(out + bias, "y")
    return out


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


"""Layers: modules that own parameters (and buffers) and call ``functional``.

The ``Module`` bookkeeping follows PyTorch: assigning a Tensor that requires
grad to an attribute registers a parameter, assigning a Module registers a
child, ``register_buffer`` registers state that is saved but not trained
(BatchNorm's running statistics).
"""
from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any, Iterable, Iterator, Mapping

# NumPy on the host only: initial values (Module.to moves them to the device)
# and state_dict / load_state_dict, whose arrays are host data by definition.
# Forward passes never touch it (tests/backend/test_spy.py checks both).
import numpy as np

from .. import graph
from ..backend import get_backend
from ..tensor import Tensor, shape_error
from . import functional as F
from . import init

__all__ = [
    "Module",
    "Parameter",
    "CrossEntropyLoss",
    "Linear",
    "Conv2d",
    "MaxPool2d",
    "AvgPool2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "LayerNorm",
    "Dropout",
    "ReLU",
    "Sigmoid",
    "Tanh",
    "Flatten",
    "Sequential",
    "set_population_statistics",
]


class Module:
    """Base class of every layer: parameters, buffers, children, train/eval.

    A layer subclasses ``Module`` and writes ``forward``; calling the layer,
    ``layer(x)``, calls ``forward(x)``. Its parts are found by attribute, as
    in PyTorch: assigning a Tensor that requires grad (``self.weight =
    Tensor(..., requires_grad=True)``) registers a parameter, assigning a
    Module registers a child, and ``register_buffer`` registers state that is
    saved but not trained (BatchNorm's ``running_mean``, ``running_var`` and
    ``num_batches_tracked``). Names are dotted paths through the children:
    ``0.weight``, ``2.running_mean``.

    ``training`` is True after construction and after ``train()``, False
    after ``eval()``; only BatchNorm behaves differently in the two modes.
    """

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, Module):
            self._modules[name] = value
        elif isinstance(value, Tensor) and value.requires_grad and name not in self._buffers:
            self._parameters[name] = value
        elif name in self._buffers:
            self._buffers[name] = value
        object.__setattr__(self, name, value)

    def register_buffer(self, name: str, tensor: Tensor | None) -> None:
        """State that belongs in ``state_dict`` but is not trained by the optimizer."""
        self._buffers[name] = tensor
        object.__setattr__(self, name, tensor)

    def forward(self, *args: Any) -> Any:  # pragma: no cover - abstract
        """What the layer computes; every subclass writes its own."""
        raise NotImplementedError

    def __call__(self, *args: Any) -> Any:
        return self.forward(*args)

    # ---- traversal -------------------------------------------------------------

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """This module (named ``prefix``) and every module inside it, depth first, with dotted names."""
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self) -> Iterator[Module]:
        """This module and every module inside it, depth first."""
        for _, module in self.named_modules():
            yield module

    def named_parameters(self) -> Iterator[tuple[str, Tensor]]:
        """Every trainable tensor of this module and its children, with its dotted name."""
        for prefix, module in self.named_modules():
            for name, param in module._parameters.items():
                yield (f"{prefix}.{name}" if prefix else name), param

    def parameters(self) -> list[Tensor]:
        """Every trainable tensor, in the order of ``named_parameters``: what an optimizer is given."""
        return [param for _, param in self.named_parameters()]

    def named_buffers(self) -> Iterator[tuple[str, Tensor]]:
        """Every buffer (saved, not trained) with its dotted name; buffers set to None are left out."""
        for prefix, module in self.named_modules():
            for name, buffer in module._buffers.items():
                if buffer is not None:
                    yield (f"{prefix}.{name}" if prefix else name), buffer

    # ---- modes and gradients -------------------------------------------------------

    def train(self, mode: bool = True) -> Module:
        """Training mode: BatchNorm uses (and records) batch statistics."""
        for module in self.modules():
            object.__setattr__(module, "training", mode)
        return self

    def eval(self) -> Module:
        """Evaluation mode: BatchNorm uses its running (population) statistics."""
        return self.train(False)

    def zero_grad(self) -> None:
        """Forget the gradients of every parameter (set to None, PyTorch's default)."""
        for param in self.parameters():
            param.zero_grad()

    def to(self, device: str) -> Module:
        """Move every parameter and buffer (and gradient) to ``device``, in place.

        As in PyTorch the tensors stay the same objects, only their arrays
        move, so an optimizer built before the move still updates them
        (build it after the move if it already holds state, such as momentum).
        """
        target = get_backend(device)
        for module in self.modules():
            for store in (module._parameters, module._buffers):
                for tensor in store.values():
                    if tensor is None or tensor.backend is target:
                        continue
                    source = tensor.backend
                    tensor.data = target.asarray(source.to_numpy(tensor.data))
                    if tensor.grad is not None:
                        tensor.grad = target.asarray(source.to_numpy(tensor.grad))
                    tensor.messages = None
                    tensor.backend = target
        return self

    # ---- saving and loading ------------------------------------------------------------

    def state_dict(self) -> OrderedDict[str, np.ndarray]:
        """Every parameter and buffer as a plain NumPy array (a copy), by dotted name."""
        state = OrderedDict()
        for name, tensor in list(self.named_parameters()) + list(self.named_buffers()):
            state[name] = np.array(tensor.numpy(), copy=True)
        return state

    def load_state_dict(self, state: Mapping[str, Any], strict: bool = True) -> None:
        """Copy arrays from ``state`` into the parameters and buffers of the same names.

        ``state`` maps dotted names to arrays (NumPy arrays, or anything
        ``numpy.asarray`` accepts: a ``numpy.load`` of an ``.npz`` file, torch
        CPU tensors, tinyad Tensors). Every entry is checked before anything
        is written: the keys (all of them if ``strict``), each shape, and each
        dtype (real numbers for a float tensor, whole numbers for an integer
        buffer such as ``num_batches_tracked``). A state that fails any check
        raises and leaves the model exactly as it was.
        """
        targets = dict(list(self.named_parameters()) + list(self.named_buffers()))
        missing = [name for name in targets if name not in state]
        unexpected = [name for name in state if name not in targets]
        if strict and (missing or unexpected):
            raise KeyError(f"load_state_dict: missing keys {missing}, unexpected keys {unexpected}")
        checked = {name: _state_array(name, state[name], tensor) for name, tensor in targets.items() if name in state}
        for name, array in checked.items():  # nothing below can fail on a bad state
            tensor = targets[name]
            tensor.data = tensor.backend.asarray(array)

    def __repr__(self) -> str:
        children = "".join(f"\n  ({name}): {repr(child)}".replace("\n", "\n  ") for name, child in self._modules.items())
        return f"{type(self).__name__}({self.extra_repr()}{children}{chr(10) if children else ''})"

    def extra_repr(self) -> str:
        """The arguments shown inside the layer's ``repr`` (PyTorch's hook); a layer with settings overrides it."""
        return ""


def _state_array(name: str, value: Any, tensor: Tensor) -> np.ndarray:
    """``value`` as a host array of ``tensor``'s shape and dtype (a copy), or an error naming ``name``.

    Casting follows PyTorch's ``copy_`` where no number is lost (float64 into
    a float32 parameter, an integer count into a float buffer) and refuses
    where one would be: complex numbers (torch drops the imaginary part with a
    warning), text and objects, and a fraction in an integer buffer.
    """
    if isinstance(value, Tensor):
        value = value.numpy()
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as error:
        raise TypeError(f"load_state_dict: {name} is not an array of numbers ({type(value).__name__}: {error})") from None
    if array.shape != tensor.shape:
        raise shape_error(f"load_state_dict: {name}", array.shape, tensor.shape, why="differ (the state's, the model's)")
    wants_integers = tensor.dtype.kind in "iu"
    if array.dtype.kind not in "biuf":
        raise TypeError(
            f"load_state_dict: {name} has dtype {array.dtype} in the state; the model's {tensor.dtype} "
            f"{'buffer takes whole' if wants_integers else 'tensor takes real'} numbers (a bool, integer or float array)"
        )
    if wants_integers and array.dtype.kind == "f":
        with np.errstate(invalid="ignore"):  # inf and NaN have no remainder: they count as not whole
            not_whole = array[np.mod(array, 1) != 0]
        if not_whole.size:
            raise ValueError(
                f"load_state_dict: {name} must hold whole numbers, got {not_whole[:3].tolist()}: the model's "
                f"{tensor.dtype} buffer is a count (num_batches_tracked counts the batches seen)"
            )
    return array.astype(tensor.dtype, copy=True)


class Parameter(Tensor):
    """A leaf that requires grad (PyTorch's ``nn.Parameter``): ``nn.Parameter(tinyad.ones(3))``.

    Assigning it to a Module attribute registers it, as any Tensor that
    requires grad is registered; the class exists for code written that way.
    """

    __slots__ = ()

    def __init__(self, data: Any = None, requires_grad: bool = True) -> None:
        super().__init__(np.zeros(0) if data is None else data, requires_grad=requires_grad,
                         dtype=data.dtype if isinstance(data, Tensor) else None)


class CrossEntropyLoss(Module):
    """``F.cross_entropy`` as a module: ``loss_fn = nn.CrossEntropyLoss(); loss = loss_fn(logits, target)``."""

    def __init__(self, reduction: str = "mean", label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.reduction, self.label_smoothing = reduction, label_smoothing

    def forward(self, input: Tensor, target: Any) -> Tensor:
        return F.cross_entropy(input, target, reduction=self.reduction, label_smoothing=self.label_smoothing)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}, label_smoothing={self.label_smoothing}"


class Linear(Module):
    """y = x W^T + b with W of shape (out_features, in_features).

    Parameters are float64 unless ``dtype`` says otherwise (tinyad's default
    dtype; PyTorch's is float32).

    PyTorch's default initialization: W and b uniform in [-1/sqrt(in), 1/sqrt(in)]
    (Kaiming-uniform with a = sqrt(5) works out to this bound for W).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, dtype: Any = "float64") -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        bound = 1.0 / math.sqrt(in_features) if in_features > 0 else 0.0
        self.weight = Tensor(init.uniform((out_features, in_features), bound), requires_grad=True, dtype=dtype, label="weight")
        self.bias = Tensor(init.uniform((out_features,), bound), requires_grad=True, dtype=dtype, label="bias") if bias else None

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(
                f"Linear: expected inputs with {self.in_features} features in the last axis, got shape {x.shape}"
            )
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Conv2d(Module):
    """2-D convolution: ``weight`` (out_channels, in_channels, kh, kw), ``bias`` (out_channels,).

    PyTorch's default initialization: weight and bias uniform in
    [-1/sqrt(fan_in), 1/sqrt(fan_in)], fan_in = in_channels * kh * kw (the
    same rule as ``Linear``: each output is a dot product of fan_in numbers).
    Parameters are float64 unless ``dtype`` says otherwise.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1, padding: Any = 0,
                 dilation: Any = 1, bias: bool = True, dtype: Any = "float64") -> None:
        super().__init__()
        kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, (kh, kw)
        self.stride, self.padding, self.dilation = stride, padding, dilation
        fan_in = in_channels * kh * kw
        bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        self.weight = Tensor(init.uniform((out_channels, in_channels, kh, kw), bound), requires_grad=True, dtype=dtype,
                             label="weight")
        self.bias = Tensor(init.uniform((out_channels,), bound), requires_grad=True, dtype=dtype, label="bias") if bias else None

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"Conv2d: expected an input of shape (N, {self.in_channels}, H, W), got {x.shape}"
            )
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, bias={self.bias is not None}")


class _Pool2d(Module):
    """Shared by MaxPool2d and AvgPool2d: a window, a stride (the window's size unless given), padding."""

    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0) -> None:
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class MaxPool2d(_Pool2d):
    """The largest value of each window (``stride`` defaults to ``kernel_size``; padding is never picked)."""

    def forward(self, x: Tensor) -> Tensor:
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding)


class AvgPool2d(_Pool2d):
    """The mean of each window (``stride`` defaults to ``kernel_size``; zero padding counts)."""

    def forward(self, x: Tensor) -> Tensor:
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding)


class Dropout(Module):
    """Inverted dropout with probability ``p`` in training; the identity in eval (``F.dropout``)."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout: p is a probability and must lie in [0, 1], got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return F.dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class LayerNorm(Module):
    """Layer Normalization over the last axes, ``normalized_shape`` (``F.layer_norm``).

    ``weight`` (ones) and ``bias`` (zeros) have ``normalized_shape``, one per
    normalized value; there are no running statistics, so train and eval agree.
    """

    def __init__(self, normalized_shape: Any, eps: float = 1e-5, elementwise_affine: bool = True, bias: bool = True,
                 dtype: Any = "float64") -> None:
        super().__init__()
        shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        self.normalized_shape, self.eps, self.elementwise_affine = shape, eps, elementwise_affine
        self.weight = Tensor(np.ones(shape), requires_grad=True, dtype=dtype, label="gamma") if elementwise_affine else None
        self.bias = (Tensor(np.zeros(shape), requires_grad=True, dtype=dtype, label="beta")
                     if elementwise_affine and bias else None)

    def forward(self, x: Tensor) -> Tensor:
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"


class _BatchNorm(Module):
    """Shared by BatchNorm1d and BatchNorm2d; they differ only in the input ranks they accept."""

    _expected_ranks: tuple = ()

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        fused: bool = False,
        dtype: Any = "float64",
    ) -> None:
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats, self.fused = affine, track_running_stats, fused
        if affine:
            self.weight = Tensor(np.ones(num_features), requires_grad=True, dtype=dtype, label="gamma")
            self.bias = Tensor(np.zeros(num_features), requires_grad=True, dtype=dtype, label="beta")
        else:
            object.__setattr__(self, "weight", None)
            object.__setattr__(self, "bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", Tensor(np.zeros(num_features), dtype=dtype, label="running_mean"))
            self.register_buffer("running_var", Tensor(np.ones(num_features), dtype=dtype, label="running_var"))
            self.register_buffer("num_batches_tracked", Tensor(np.array(0, dtype=np.int64)))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)
        object.__setattr__(self, "_collected", None)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim not in self._expected_ranks:
            raise ValueError(
                f"{type(self).__name__}: expected a {' or '.join(f'{r}-D' for r in self._expected_ranks)} input, got shape {x.shape}"
            )
        if self._collected is not None:  # set_population_statistics is listening
            axes = (0,) + tuple(range(2, x.ndim))
            self._collected.append((x.data.mean(axis=axes), x.data.var(axis=axes), x.size // x.shape[1]))
            return F.batch_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)
        counts_batch = self.training and self.track_running_stats
        # PyTorch's rule: momentum=None keeps a cumulative average, 1/(batches seen so far, this one included)
        factor = 0.0 if self.momentum is None else self.momentum
        if counts_batch and self.momentum is None:
            factor = 1.0 / (float(self.num_batches_tracked.data) + 1)
        use_batch_stats = self.training or self.running_mean is None
        output = F.batch_norm(
            x,
            self.running_mean if (not self.training or self.track_running_stats) else None,
            self.running_var if (not self.training or self.track_running_stats) else None,
            self.weight,
            self.bias,
            use_batch_stats,
            factor,
            self.eps,
            fused=self.fused,
        )
        if counts_batch:
            # counted once batch_norm accepted the batch (torch counts first), so a refused batch changes nothing
            self.num_batches_tracked.data += 1  # in place: a 0-d array stays an array
        return output

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
            f"track_running_stats={self.track_running_stats}"
        )


class BatchNorm1d(_BatchNorm):
    """BatchNorm over (N, C) or (N, C, L): one mean and variance per channel C.

    In training mode (``train()``) each batch is normalized with its own
    statistics over N (and L), and the running statistics are updated; in
    evaluation mode (``eval()``) the running statistics are used instead.
    ``tinyad.nn.functional.batch_norm`` does the computing; this layer holds
    its state:

    * ``weight`` (gamma, labelled ``gamma``, starts at 1) and ``bias`` (beta,
      labelled ``beta``, starts at 0), both of shape (C,), when ``affine``;
      None otherwise.
    * the buffers ``running_mean`` (starts at 0), ``running_var`` (starts
      at 1) and ``num_batches_tracked``, when ``track_running_stats``;
      without them both modes use the batch statistics.
    * ``momentum``: ``running = (1 - momentum) * running + momentum * batch``;
      ``momentum=None`` keeps a cumulative average (factor 1 /
      ``num_batches_tracked``).
    * ``fused=True`` computes training mode as one node with the compact
      hand-derived backward instead of the composed graph.

    A training batch of one value per channel raises ValueError (its
    variance is 0). Other input ranks are refused with the shape named.
    """

    _expected_ranks = (2, 3)


class BatchNorm2d(_BatchNorm):
    """BatchNorm over (N, C, H, W): statistics per channel over N, H and W.

    The same layer as ``BatchNorm1d`` (same arguments, parameters and
    buffers) for images: each channel's m = N * H * W values share one mean
    and one variance.
    """

    _expected_ranks = (4,)


class ReLU(Module):
    """max(0, x) elementwise, as a layer (derivative 0 at 0, as in PyTorch)."""

    def forward(self, x: Tensor) -> Tensor:
        return x.relu()


class Sigmoid(Module):
    """1 / (1 + e^-x) elementwise, as a layer."""

    def forward(self, x: Tensor) -> Tensor:
        return x.sigmoid()


class Tanh(Module):
    """tanh(x) elementwise, as a layer."""

    def forward(self, x: Tensor) -> Tensor:
        return x.tanh()


class Flatten(Module):
    """Flatten every axis from ``start_dim`` on into one (PyTorch's default start_dim=1)."""

    def __init__(self, start_dim: int = 1) -> None:
        super().__init__()
        self.start_dim = start_dim

    def forward(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[: self.start_dim] + (-1,))


class Sequential(Module):
    """Apply the given modules one after another.

    The modules become children named ``0``, ``1``, ..., so the parameters
    are named ``0.weight``, ``0.bias``, ``2.weight``, ...; ``model[i]`` is
    the i-th module and ``len(model)`` their number.
    """

    def __init__(self, *modules: Module) -> None:
        super().__init__()
        for index, module in enumerate(modules):
            setattr(self, str(index), module)

    def __getitem__(self, index: int) -> Module:
        return list(self._modules.values())[index]

    def __len__(self) -> int:
        return len(self._modules)

    def forward(self, x: Any) -> Any:
        for module in self._modules.values():
            x = module(x)
        return x


def set_population_statistics(model: Module, batches: Iterable[Any]) -> None:
    """The paper's Algorithm 2: replace running averages by population estimates.

    Runs ``model`` in training mode (batch statistics, no gradient, running
    statistics untouched) over ``batches`` and, for every BatchNorm layer,
    sets  E[x] = mean of the batch means  and  Var[x] = m / (m - 1) * mean of
    the (biased) batch variances, m being the values per channel in a batch:
    the unbiased estimate of the population variance.
    """
    layers = [module for module in model.modules() if isinstance(module, _BatchNorm)]
    if not layers:
        raise ValueError("set_population_statistics: the model has no BatchNorm layer")
    was_training = model.training
    device = layers[0].running_mean.device if layers[0].running_mean is not None else None
    for layer in layers:
        object.__setattr__(layer, "_collected", [])
    try:
        model.train()
        with graph.no_grad():
            for batch in batches:
                model(batch if isinstance(batch, Tensor) else Tensor(batch, device=device))
        for layer in layers:
            collected = layer._collected
            if not collected:
                raise ValueError("set_population_statistics: no batches were given")
            if layer.running_mean is None:
                raise ValueError("set_population_statistics: a BatchNorm layer has track_running_stats=False")
            xp = layer.running_mean.backend.xp
            means = xp.stack([mean for mean, _, _ in collected])
            variances = xp.stack([var for _, var, _ in collected])
            m = collected[0][2]
            layer.running_mean.data = means.mean(axis=0)
            layer.running_var.data = variances.mean(axis=0) * (m / (m - 1))
    finally:
        for layer in layers:
            object.__setattr__(layer, "_collected", None)
        model.train(was_training)

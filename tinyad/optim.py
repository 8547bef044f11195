"""Optimizers with PyTorch's update rules, written out in full.

An optimizer changes ``param.data`` in place from ``param.grad``; nothing it
does is recorded on the graph. A parameter is a leaf ``Tensor`` (its data an
array) or a leaf ``Value`` (its data a float, its gradient a float): the
update rules are the same arithmetic on either. Each optimizer is built from
a list of parameters (``model.parameters()``, or ``[w, b]``) and has
``step()``, one update of every parameter that has a gradient, and
``zero_grad()``, which forgets every gradient.

The constructors refuse what ``torch.optim`` refuses, with the same error
types: a single tensor instead of a list of them (TypeError), a parameter that
is not a leaf (ValueError), and negative hyperparameters or Adam betas outside
[0, 1) (ValueError).
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Union

from .scalar import Value
from .tensor import Tensor

__all__ = ["SGD", "Adam"]

Parameter = Union[Tensor, Value]


def _is_leaf(param: Parameter) -> bool:
    """A node that no recorded op made: it has no parents."""
    return not param.parents


def _own_copy(gradient: Any) -> Any:
    """A copy the optimizer can keep between steps. An array gradient may be
    changed in place by the next backward pass; a float never changes."""
    return gradient if isinstance(gradient, float) else gradient.copy()


def _sqrt(param: Parameter, x: Any) -> Any:
    """The square root of ``x``, a float for a Value, an array (on the parameter's device) for a Tensor."""
    return math.sqrt(x) if isinstance(param, Value) else param.backend.xp.sqrt(x)


def _check_non_negative(owner: str, name: str, number: float) -> None:
    if number < 0:
        raise ValueError(f"{owner}: {name} must be >= 0, got {number}")


class Optimizer:
    """The list of parameters, checked, and ``zero_grad``."""

    def __init__(self, params: Iterable[Parameter]) -> None:
        owner = type(self).__name__
        if isinstance(params, (Tensor, Value)):
            # iterating a Tensor would give its rows: new non-leaf tensors, never trained
            raise TypeError(
                f"{owner}: params must be an iterable of Tensors or Values (for example model.parameters() "
                f"or [w, b]), got a single {type(params).__name__}; wrap it in a list: {owner}([param], ...)"
            )
        try:
            params = iter(params)
        except TypeError:
            raise TypeError(
                f"{owner}: params must be an iterable of Tensors or Values, got {type(params).__name__}"
            ) from None
        self.params = list(params)
        if not self.params:
            raise ValueError(f"{owner}: got an empty list of parameters")
        for index, param in enumerate(self.params):
            if not isinstance(param, (Tensor, Value)):
                raise TypeError(
                    f"{owner}: can only optimize Tensors and Values, but parameter {index} is a {type(param).__name__}"
                )
            if not _is_leaf(param):
                raise ValueError(
                    f"{owner}: parameter {index} is not a leaf: it was computed by the op {param.op!r}, and an "
                    "optimizer can only change numbers the graph starts from (create it directly, or use .detach())"
                )

    def zero_grad(self) -> None:
        """Forget every gradient: None for a Tensor (PyTorch's default, set_to_none=True), 0.0 for a Value."""
        for param in self.params:
            param.zero_grad()


class SGD(Optimizer):
    """Stochastic gradient descent with PyTorch's momentum.

    Each step, for every parameter whose ``grad`` is not None:

        step = grad + weight_decay * param
        momentum_buffer = step                                                (first step)
        momentum_buffer = momentum * momentum_buffer + (1 - dampening) * step (later steps)
        step = step + momentum * momentum_buffer if nesterov else momentum_buffer
        param = param - lr * step

    The momentum buffer starts as the first step itself (not as zero), as in
    PyTorch. Nesterov momentum needs ``momentum > 0`` and ``dampening = 0``.
    """

    def __init__(self, params: Iterable[Parameter], lr: float, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False) -> None:
        super().__init__(params)
        _check_non_negative("SGD", "the learning rate lr", lr)
        _check_non_negative("SGD", "momentum", momentum)
        _check_non_negative("SGD", "weight_decay", weight_decay)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: Nesterov momentum requires momentum > 0 and dampening = 0")
        self.lr, self.momentum, self.dampening = lr, momentum, dampening
        self.weight_decay, self.nesterov = weight_decay, nesterov
        self.momentum_buffers: list = [None] * len(self.params)

    def step(self) -> None:
        """One update of every parameter that has a gradient (the rule above)."""
        for index, param in enumerate(self.params):
            if param.grad is None:
                continue
            step = param.grad
            if self.weight_decay:
                step = step + self.weight_decay * param.data
            if self.momentum:
                momentum_buffer = self.momentum_buffers[index]
                if momentum_buffer is None:
                    momentum_buffer = _own_copy(step)
                else:
                    momentum_buffer = self.momentum * momentum_buffer + (1 - self.dampening) * step
                self.momentum_buffers[index] = momentum_buffer
                step = step + self.momentum * momentum_buffer if self.nesterov else momentum_buffer
            param.data -= self.lr * step


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015) as PyTorch computes it, t counting this parameter's steps:

        first_moment  = beta1 * first_moment  + (1 - beta1) * grad       (running mean of grad)
        second_moment = beta2 * second_moment + (1 - beta2) * grad^2     (running mean of grad^2)
        param = param - lr / (1 - beta1^t) * first_moment / (sqrt(second_moment) / sqrt(1 - beta2^t) + eps)

    Both moments start at 0; the divisions by 1 - beta^t undo that start's pull towards 0.
    """

    def __init__(self, params: Iterable[Parameter], lr: float = 1e-3, betas: tuple = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        super().__init__(params)
        _check_non_negative("Adam", "the learning rate lr", lr)
        _check_non_negative("Adam", "eps", eps)
        _check_non_negative("Adam", "weight_decay", weight_decay)
        for index, beta in enumerate(betas):
            if not 0.0 <= beta < 1.0:
                raise ValueError(
                    f"Adam: betas[{index}] must lie in [0, 1), got {beta}: it is the weight an average keeps "
                    "from its past, and at 1 it would never learn from a gradient"
                )
        self.lr, self.betas, self.eps, self.weight_decay = lr, betas, eps, weight_decay
        self.steps = 0
        # per parameter, as in torch: a parameter without a gradient on some
        # step is skipped and its bias correction does not advance
        self.param_steps = [0] * len(self.params)
        self.first_moments = [None] * len(self.params)
        self.second_moments = [None] * len(self.params)

    def step(self) -> None:
        """One update of every parameter that has a gradient (the rule above)."""
        self.steps += 1
        beta1, beta2 = self.betas
        for index, param in enumerate(self.params):
            if param.grad is None:
                continue
            self.param_steps[index] += 1
            first_correction = 1 - beta1 ** self.param_steps[index]
            second_correction = 1 - beta2 ** self.param_steps[index]
            grad = param.grad
            if self.weight_decay:
                grad = grad + self.weight_decay * param.data
            first_moment = self.first_moments[index]
            second_moment = self.second_moments[index]
            if first_moment is None:
                first_moment = (1 - beta1) * grad
                second_moment = (1 - beta2) * grad * grad
            else:
                first_moment = beta1 * first_moment + (1 - beta1) * grad
                second_moment = beta2 * second_moment + (1 - beta2) * grad * grad
            self.first_moments[index], self.second_moments[index] = first_moment, second_moment
            denominator = _sqrt(param, second_moment) / math.sqrt(second_correction) + self.eps
            param.data -= (self.lr / first_correction) * first_moment / denominator

"""Optimizers with PyTorch's update rules, written out in full.

An optimizer changes ``param.data`` in place from ``param.grad``; nothing it
does is recorded on the graph.
"""
from __future__ import annotations

import math
from typing import Iterable

from .tensor import Tensor

__all__ = ["SGD", "Adam"]


class Optimizer:
    def __init__(self, params: Iterable[Tensor]) -> None:
        self.params = list(params)
        if not self.params:
            raise ValueError(f"{type(self).__name__}: got an empty list of parameters")

    def zero_grad(self) -> None:
        """Set every gradient to None (PyTorch's default, set_to_none=True)."""
        for param in self.params:
            param.zero_grad()


class SGD(Optimizer):
    """Stochastic gradient descent with PyTorch's momentum:

        g = grad + weight_decay * p
        buf = g                                    (first step)
        buf = momentum * buf + (1 - dampening) * g (later steps)
        g = g + momentum * buf if nesterov else buf
        p = p - lr * g
    """

    def __init__(self, params: Iterable[Tensor], lr: float, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False) -> None:
        super().__init__(params)
        if lr < 0:
            raise ValueError(f"SGD: learning rate must be >= 0, got {lr}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: Nesterov momentum requires momentum > 0 and dampening = 0")
        self.lr, self.momentum, self.dampening = lr, momentum, dampening
        self.weight_decay, self.nesterov = weight_decay, nesterov
        self.momentum_buffers: list = [None] * len(self.params)

    def step(self) -> None:
        for index, param in enumerate(self.params):
            if param.grad is None:
                continue
            step = param.grad
            if self.weight_decay:
                step = step + self.weight_decay * param.data
            if self.momentum:
                buffer = self.momentum_buffers[index]
                if buffer is None:
                    buffer = step.copy()
                else:
                    buffer = self.momentum * buffer + (1 - self.dampening) * step
                self.momentum_buffers[index] = buffer
                step = step + self.momentum * buffer if self.nesterov else buffer
            param.data -= self.lr * step


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015) as PyTorch computes it:

        m = beta1 * m + (1 - beta1) * g,   v = beta2 * v + (1 - beta2) * g^2
        p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
    """

    def __init__(self, params: Iterable[Tensor], lr: float = 1e-3, betas: tuple = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        super().__init__(params)
        self.lr, self.betas, self.eps, self.weight_decay = lr, betas, eps, weight_decay
        self.steps = 0
        # per parameter, as in torch: a parameter without a gradient on some
        # step is skipped and its bias correction does not advance
        self.param_steps = [0] * len(self.params)
        self.first_moments = [None] * len(self.params)
        self.second_moments = [None] * len(self.params)

    def step(self) -> None:
        self.steps += 1
        beta1, beta2 = self.betas
        for index, param in enumerate(self.params):
            if param.grad is None:
                continue
            self.param_steps[index] += 1
            correction1 = 1 - beta1 ** self.param_steps[index]
            correction2 = 1 - beta2 ** self.param_steps[index]
            xp = param.backend.xp
            grad = param.grad
            if self.weight_decay:
                grad = grad + self.weight_decay * param.data
            m = self.first_moments[index]
            v = self.second_moments[index]
            m = (1 - beta1) * grad if m is None else beta1 * m + (1 - beta1) * grad
            v = (1 - beta2) * grad * grad if v is None else beta2 * v + (1 - beta2) * grad * grad
            self.first_moments[index], self.second_moments[index] = m, v
            denominator = xp.sqrt(v) / math.sqrt(correction2) + self.eps
            param.data -= (self.lr / correction1) * m / denominator

"""tinyad: a reverse-mode automatic differentiation engine built to teach.

The public API is deliberately small; everything a lesson needs is here.
"""
from . import check, datasets, nn, optim, viz
from .graph import edges, enable_grad, find, is_grad_enabled, message, no_grad, zero_grad
from .nn.init import manual_seed
from .scalar import Value
from .ops.elementwise import maximum, minimum, where
from .ops.shape import concatenate, stack
from .tensor import Tensor, tensor

__all__ = [
    "Value",
    "Tensor",
    "tensor",
    "concatenate",
    "stack",
    "where",
    "maximum",
    "minimum",
    "no_grad",
    "enable_grad",
    "is_grad_enabled",
    "zero_grad",
    "edges",
    "message",
    "check",
    "datasets",
    "nn",
    "optim",
    "viz",
    "find",
    "manual_seed",
]

__version__ = "0.1.0"

"""tinyad: a reverse-mode automatic differentiation engine built to teach.

The public API is deliberately small; everything a lesson needs is here.
PyTorch's function spellings (``tinyad.exp(x)``, ``tinyad.sum(x, 0)``,
``tinyad.cat``, ``tinyad.zeros``, ``tinyad.randn``, ...) sit beside NumPy's
(``tinyad.concatenate``, ``axis=``), so code from a PyTorch course runs with
its import line changed; docs/conventions.md says where the two differ.
"""
from . import check, datasets, nn, optim, viz
from .graph import edges, enable_grad, find, is_grad_enabled, message, no_grad, zero_grad
from .nn.init import Generator, manual_seed
from .scalar import Value
from .ops.creation import (
    arange, full, full_like, ones, ones_like, rand, rand_like, randint, randn, randn_like, zeros, zeros_like,
)
from .ops.elementwise import abs, exp, log, maximum, minimum, relu, sigmoid, sqrt, tanh, where
from .ops.reductions import amax, amin, argmax, argmin, max, mean, min, std, sum, var
from .ops.shape import cat, concatenate, flatten, stack
from .tensor import Tensor, tensor

# dtype names as PyTorch spells them (``dtype=tinyad.float32``); tinyad's dtypes are NumPy's, named by strings
float32 = "float32"
"""``torch.float32``'s spelling: single precision, PyTorch's default dtype."""
float64 = "float64"
"""``torch.float64``'s spelling: double precision, tinyad's default dtype."""
int64 = "int64"
"""``torch.int64``'s spelling: the dtype of indices and class labels."""
long = int64
"""``torch.long``'s spelling: int64."""

__all__ = [
    "Value",
    "Tensor",
    "tensor",
    "concatenate",
    "cat",
    "stack",
    "flatten",
    "where",
    "maximum",
    "minimum",
    "exp",
    "log",
    "sqrt",
    "tanh",
    "sigmoid",
    "relu",
    "abs",
    "sum",
    "mean",
    "var",
    "std",
    "max",
    "min",
    "amax",
    "amin",
    "argmax",
    "argmin",
    "zeros",
    "ones",
    "full",
    "randn",
    "rand",
    "randint",
    "arange",
    "zeros_like",
    "ones_like",
    "full_like",
    "randn_like",
    "rand_like",
    "Generator",
    "float32",
    "float64",
    "int64",
    "long",
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

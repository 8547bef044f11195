"""``Tensor``: an array that remembers how it was computed.

A Tensor is a node of the same graph as ``Value`` (``tinyad.graph``): the same
topological sort and the same backward loop serve both. The difference is
only in the local derivatives, which here are vector-Jacobian products on
arrays: a backward function receives ``upstream`` = dL/d(output), an array
of the output's shape, and returns dL/d(input) for each input, an array of
that input's shape.

Broadcasting makes one extra rule necessary. When an input of shape (3,) is
stretched to (4, 3), each of its elements is *used* 4 times, and by the
multivariate chain rule the gradients of all uses add up. ``_unbroadcast``
therefore sums the upstream gradient over every axis that broadcasting
added or stretched; every binary op calls it.

Array work goes through ``self.backend.xp`` (NumPy or CuPy), never through an
imported ``numpy``.
"""
from __future__ import annotations

import functools
from contextlib import nullcontext
from typing import Any, Sequence, Union

from . import graph
from .backend import Backend, get_backend
from .graph import Node

__all__ = ["Tensor", "tensor", "concatenate", "stack", "where", "maximum", "minimum"]

TensorLike = Union["Tensor", int, float]
Axis = Union[None, int, Sequence[int]]

_object_new = object.__new__


# ---------------------------------------------------------------------------
# helpers shared by every op
# ---------------------------------------------------------------------------


def _result(
    data: Any,
    first: "Tensor",
    second: "Tensor | None",
    op: str,
    backward_fn,
    backend: Backend,
    saved: Any = None,
    more: tuple = (),
) -> "Tensor":
    """The output node of an op on ``first`` (and ``second``, then ``more``, for
    an op with more inputs): recorded only if an input needs a gradient.

    The inputs come one by one, as in ``scalar._result``, because they go
    straight into the node's parent slots; every op calls this, so building
    and taking apart a tuple of them would cost each op a little.
    """
    out = _object_new(Tensor)
    if not isinstance(data, backend.array_type):
        data = backend.xp.asarray(data)  # NumPy returns scalars for 0-d results; keep arrays
    out.data = data
    out.grad = None
    out.label = ""
    out.messages = None
    out._upstream = None
    out.backend = backend
    out.saved = saved
    if graph._grad_enabled and (
        first.requires_grad
        or (second is not None and second.requires_grad)
        or (more and any(parent.requires_grad for parent in more))
    ):
        out.requires_grad = True
        out.first_parent = first
        out.second_parent = second
        out.more_parents = more
        out.op = op
        out.backward_fn = backward_fn
    else:
        out.requires_grad = False
        out.first_parent = out.second_parent = None
        out.more_parents = ()
        out.op = ""
        out.backward_fn = None
    return out


def _result_of_many(
    data: Any, parents: Sequence["Tensor"], op: str, backward_fn, backend: Backend, saved: Any = None
) -> "Tensor":
    """``_result`` for an op that takes any number of inputs (concatenate,
    stack, the fused BatchNorm): the first two fill the parent slots, any
    others go to ``more``."""
    second = parents[1] if len(parents) > 1 else None
    return _result(data, parents[0], second, op, backward_fn, backend, saved, tuple(parents[2:]))


def _operand(tensor: "Tensor", other: Any, op: str) -> "Tensor":
    """``other`` as a Tensor on ``tensor``'s device; numbers become constant leaves."""
    if isinstance(other, Tensor):
        if other.backend is not tensor.backend:
            raise ValueError(
                f"{op}: tensors are on different devices, {tensor.device} and {other.device}; "
                "move one with .to(device)"
            )
        return other
    if isinstance(other, (int, float)) and not isinstance(other, bool):
        # a Python number adopts the tensor's dtype where its kind fits (NumPy 2's
        # rule for scalars): float32 + 0.5 stays float32, but int64 * 0.5 is float64
        backend = tensor.backend
        dtype = tensor.data.dtype
        if dtype.kind not in "fc":
            dtype = backend.xp.result_type(dtype, other)
        return Tensor._constant(backend.scalar(other, dtype), backend)
    if isinstance(other, tensor.backend.array_type):
        # a plain array is a constant too (NumPy's own promotion rules apply)
        return Tensor._constant(other, tensor.backend)
    return None


def shape_error(op: str, first: tuple, second: tuple, why: str = "cannot be broadcast together") -> ValueError:
    """The one format for shape mismatches: op, both shapes, and the rule broken."""
    return ValueError(f"{op}: shapes {tuple(first)} and {tuple(second)} {why}")


def _unbroadcast(gradient: Any, shape: tuple) -> Any:
    """Sum ``gradient`` down to ``shape``: the gradient of a broadcast input.

    An input that broadcasting repeated along an axis receives the sum of the
    gradients of all its copies (the chain rule adds over every use).
    """
    full_shape = gradient.shape
    if full_shape == shape:
        return gradient
    added = len(full_shape) - len(shape)
    if added > 0:
        gradient = gradient.sum(axis=tuple(range(added)))
        if gradient.shape == shape:
            return gradient
    stretched = _stretched_axes(full_shape, shape)
    if stretched:
        gradient = gradient.sum(axis=stretched, keepdims=True)
    return gradient


@functools.lru_cache(maxsize=256)
def _stretched_axes(full_shape: tuple, shape: tuple) -> tuple:
    """The axes of ``shape`` that broadcasting stretched from size 1 to meet
    ``full_shape`` (shapes line up from the right, as in broadcasting).
    Remembered: a training loop meets the same few pairs of shapes."""
    added = len(full_shape) - len(shape)
    return tuple(axis for axis, size in enumerate(shape) if size == 1 and full_shape[added + axis] != 1)


def _unbroadcast_product(upstream: Any, factor: Any, shape: tuple, backend: Backend) -> Any:
    """``_unbroadcast(upstream * factor, shape)``, without building the product
    when it would only be summed.

    This is the gradient of a broadcast factor: in y = a * gamma with a of
    shape (N, C) and gamma of shape (C,), dL/dgamma_c = sum_n dL/dy_nc * a_nc.
    ``einsum`` multiplies and adds in one loop and never holds the (N, C)
    product in memory, which makes it two to three times faster on a large
    batch. For (N, C) it adds the rows in the same order as a sum, so the
    result is the same to the last bit; for (N, C, H, W) the order differs and
    so may the last bit, no less accurately. It needs ``factor`` to have
    upstream's shape; any other case takes the plain route.
    """
    if upstream.shape == shape:
        return upstream * factor  # nothing to sum
    if factor.shape == upstream.shape:
        subscripts = _product_sum_subscripts(upstream.shape, shape)
        if subscripts is not None:
            total = backend.xp.einsum(subscripts, upstream, factor)
            return total if total.shape == shape else total.reshape(shape)  # put back the size-1 axes
    return _unbroadcast(upstream * factor, shape)


@functools.lru_cache(maxsize=256)
def _product_sum_subscripts(full_shape: tuple, shape: tuple) -> str | None:
    """The einsum subscripts that sum a product of two ``full_shape`` arrays down to ``shape``.

    "ij,ij->j" for (N, C) to (C,) or (1, C); "ijkl,ijkl->j" for (N, C, H, W) to
    (1, C, 1, 1). An axis is summed where broadcasting added it in front or
    stretched it from size 1, as in ``_unbroadcast``. None if nothing is summed
    or there are more axes than letters.
    """
    letters = "abcdefghijklmnopqrstuvwxyz"
    added = len(full_shape) - len(shape)
    if added < 0 or len(full_shape) > len(letters):
        return None
    summed = set(range(added)) | {added + axis for axis in _stretched_axes(full_shape, shape)}
    if not summed:
        return None
    operand = letters[: len(full_shape)]
    kept = "".join(letter for axis, letter in enumerate(operand) if axis not in summed)
    return f"{operand},{operand}->{kept}"


def _normalize_axes(axis: Axis, ndim: int, op: str) -> tuple:
    """Axis as a sorted tuple of non-negative ints (None means every axis)."""
    if axis is None or isinstance(axis, int):
        kinds = type(axis)
    else:
        axis = tuple(axis)  # a list or an array cannot be a key of the cache below
        kinds = tuple(map(type, axis))
    return _normalized_axes(axis, kinds, ndim, op)


@functools.lru_cache(maxsize=1024)
def _normalized_axes(axis: Axis, kinds: Any, ndim: int, op: str) -> tuple:
    """``_normalize_axes``, remembered: a training loop asks for the same few
    (axis, ndim) pairs at every step, and looking one up costs a fraction of
    checking and sorting it again (a raised error is not remembered).
    ``kinds``, the types of the axes, is only part of the key: 1 and 1.0 are
    equal keys, and 1.0 must not be handed the answer for 1."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    bound = max(ndim, 1)  # a 0-d tensor accepts axis 0 or -1, as in PyTorch
    result = []
    for a in axes:
        if not -bound <= a < bound:
            raise ValueError(f"{op}: axis {a} is out of range for a tensor with {ndim} dimensions")
        result.append(a % bound)
    if len(set(result)) != len(result):
        raise ValueError(f"{op}: axis {axis} repeats an axis")
    return tuple(sorted(result)) if ndim else ()  # a 0-d array has no axis to reduce


def _expand_reduced(gradient: Any, input_shape: tuple, axes: tuple, keepdims: bool) -> Any:
    """Put back the reduced axes (as size 1) so ``gradient`` broadcasts against the input."""
    if not keepdims:
        shape = list(input_shape)
        for a in axes:
            shape[a] = 1
        gradient = gradient.reshape(shape)
    return gradient


def _check_power_domain(backend: Backend, data: Any, exponent: float) -> None:
    """Refuse a ** n where it is not a real number: 0 ** (n < 0) divides by
    zero, and a negative base needs an integer n (an inverse square root,
    n = -1/2, must check both).

    For a fractional n the usual case, every base positive, is settled by one
    reduction, the smallest base. A NaN base makes that minimum NaN, which
    fails ``> 0`` and so goes on to the exact test (NaN is neither zero nor
    negative, so it passes, and NaN ** n is NaN, as in PyTorch). Only a
    numeric dtype's minimum carries NaN through; an array of Python objects
    takes the exact test.
    """
    negative_exponent = exponent < 0
    fractional_exponent = not float(exponent).is_integer()
    if fractional_exponent:
        if data.size == 0 or (data.dtype.kind in "biufc" and data.min() > 0):
            return
        suspect = data <= 0 if negative_exponent else data < 0
    elif negative_exponent:
        suspect = data == 0
    else:
        return
    if not suspect.any():
        return
    zero = data == 0
    if negative_exponent and zero.any():
        raise ValueError(f"**: 0 ** {exponent!r} is a division by zero: the base {_first_bad(backend, data, zero)}")
    raise ValueError(
        f"**: a negative base needs an integer exponent, the exponent is {exponent!r} and "
        f"the base {_first_bad(backend, data, data < 0)}"
    )


def _first_bad(backend: Backend, data: Any, bad: Any) -> str:
    """Describe the first element of ``data`` where the mask ``bad`` holds."""
    xp = backend.xp
    count = int(bad.sum())
    flat_index = int(xp.argmax(bad.reshape(-1)))
    index = tuple(int(i) for i in xp.unravel_index(flat_index, data.shape)) if data.ndim else ()
    value = data.reshape(-1)[flat_index].item()
    where_ = f" at index {index}" if index else ""
    return f"got {value!r}{where_} ({count} of {data.size} elements)"


# ---------------------------------------------------------------------------
# the Tensor class
# ---------------------------------------------------------------------------


class Tensor(Node):
    """An n-dimensional array node: ``.data`` (the array), ``.grad`` (same shape,
    None until a backward pass reaches it), ``.requires_grad``, ``.label``.

    Python numbers and lists become float64, NumPy's default and what
    finite-difference checks need; an explicit ``dtype`` or a float32 array
    keeps its type. Only floating-point tensors can require gradients.
    """

    __slots__ = ("backend", "more_parents", "saved", "requires_grad")  # see graph.Node

    # ndarray + Tensor must reach Tensor.__radd__ (and so the graph) instead of
    # NumPy looping over the tensor as if it were a sequence of objects
    __array_ufunc__ = None

    def __init__(
        self,
        data: Any,
        requires_grad: bool = False,
        dtype: Any = None,
        device: str | None = None,
        label: str = "",
    ) -> None:
        backend = get_backend(device)
        if isinstance(data, Tensor):
            data = data.data if data.backend is backend else data.numpy()
        if dtype is None and isinstance(data, (int, float, list, tuple)):
            dtype = "float64"
        # a copy, as torch.tensor makes: optimizers update .data in place and
        # must not write into the caller's array
        array = backend.xp.array(data, dtype=dtype, copy=True)
        if requires_grad and array.dtype.kind not in "fc":
            raise ValueError(
                f"only floating-point tensors can require gradients, got dtype {array.dtype}: "
                "a gradient is a small real change, which an integer cannot make "
                "(create the tensor with dtype='float64')"
            )
        self.data = array
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self.label = label
        self.first_parent = self.second_parent = None
        self.more_parents = ()
        self.op = ""
        self.backward_fn = None
        self.saved = None
        self.messages = None
        self._upstream = None
        self.backend = backend

    @staticmethod
    def _constant(array: Any, backend: Backend) -> "Tensor":
        """A leaf that needs no gradient (a number used in an op)."""
        out = _object_new(Tensor)
        out.data = array
        out.grad = None
        out.requires_grad = False
        out.label = ""
        out.first_parent = out.second_parent = None
        out.more_parents = ()
        out.op = ""
        out.backward_fn = None
        out.saved = None
        out.messages = None
        out._upstream = None
        out.backend = backend
        return out

    # ---- plain attributes --------------------------------------------------

    @property
    def shape(self) -> tuple:
        return self.data.shape

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def dtype(self) -> Any:
        return self.data.dtype

    @property
    def size(self) -> int:
        return self.data.size

    @property
    def device(self) -> str:
        return self.backend.device

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        name = f", label={self.label!r}" if self.label else ""
        grad = ", requires_grad=True" if self.requires_grad else ""
        device = f", device={self.device!r}" if self.device != "cpu" else ""
        body = str(self.numpy()).replace("\n", "\n       ")
        return f"tensor({body}{grad}{device}{name})"

    def item(self) -> float:
        """The single number in a one-element tensor (copied to the host)."""
        if self.data.size != 1:
            raise ValueError(f"item: only a one-element tensor has an item, this one has shape {self.shape}")
        return self.data.item()

    def numpy(self) -> Any:
        """The data as a NumPy array (a copy to the host for GPU tensors)."""
        return self.backend.to_numpy(self.data)

    def detach(self) -> "Tensor":
        """The same data as a new leaf: gradients will not flow through it."""
        return Tensor._constant(self.data, self.backend)

    def requires_grad_(self, requires_grad: bool = True) -> "Tensor":
        """Mark a leaf as needing a gradient (in place), as PyTorch does."""
        if requires_grad and self.data.dtype.kind not in "fc":
            raise ValueError(f"only floating-point tensors can require gradients, got dtype {self.dtype}")
        self.requires_grad = requires_grad
        return self

    # ---- the backward pass -------------------------------------------------

    def backward(self, grad: Any = None) -> None:
        """Fill ``.grad`` of every tensor this one depends on with dL/d(tensor).

        For a one-element output the seed is dL/dL = 1. For any other shape
        the loss is not this tensor, so you must say what dL/d(this tensor)
        is by passing ``grad`` (an array of this shape).
        """
        if not self.requires_grad:
            raise RuntimeError(
                "backward: this tensor does not require grad: none of the tensors it was computed "
                "from has requires_grad=True (or it was computed under no_grad)"
            )
        xp = self.backend.xp
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(
                    f"backward: a gradient is needed for non-scalar outputs: this tensor has shape "
                    f"{self.shape}; call backward(grad) with dL/d(output) of that shape, or reduce "
                    "it to one number first (for example .sum())"
                )
            seed = xp.ones_like(self.data)
        else:
            if isinstance(grad, Tensor):
                grad = grad.data
            seed = xp.asarray(grad, dtype=self.data.dtype)
            if seed.shape != self.shape:
                raise shape_error("backward", seed.shape, self.shape, "differ: grad must have the output's shape")
        graph.run_backward(self, seed)

    def zero_grad(self) -> None:
        self.grad = None
        self.messages = None

    def accumulated_leaf_grad(self, upstream: Any, upstream_is_sum: bool) -> Any:
        # a fresh, writable array of the leaf's own dtype (never a shared or
        # broadcast view, never a NumPy scalar)
        if self.grad is None:
            # a single message stays recorded on its edge, so it is copied; a
            # sum of messages belongs to this pass alone and can be kept
            total, new_array = upstream, upstream_is_sum
        else:
            total, new_array = self.grad + upstream, True
        if type(total) is self.backend.array_type and total.dtype == self.data.dtype:
            return total if new_array else total.copy()
        return self.backend.xp.array(total, dtype=self.data.dtype, copy=True)

    # ---- addition, subtraction, negation ------------------------------------

    def __add__(self, other: TensorLike) -> "Tensor":
        other = _operand(self, other, "+")
        if other is None:
            return NotImplemented
        try:
            data = self.data + other.data
        except ValueError:
            raise shape_error("+", self.shape, other.shape) from None
        return _result(data, self, other, "+", Tensor._add_backward, self.backend)

    @staticmethod
    def _add_backward(node: "Tensor", upstream: Any) -> tuple:
        # d(a + b)/da = 1, d(a + b)/db = 1, summed over broadcast copies
        a, b = node.first_parent, node.second_parent
        return (
            _unbroadcast(upstream, a.data.shape) if a.requires_grad else None,
            _unbroadcast(upstream, b.data.shape) if b.requires_grad else None,
        )

    def __radd__(self, other: TensorLike) -> "Tensor":
        other = _operand(self, other, "+")
        if other is None:
            return NotImplemented
        return other.__add__(self)

    def __sub__(self, other: TensorLike) -> "Tensor":
        other = _operand(self, other, "-")
        if other is None:
            return NotImplemented
        try:
            data = self.data - other.data
        except ValueError:
            raise shape_error("-", self.shape, other.shape) from None
        return _result(data, self, other, "-", Tensor._sub_backward, self.backend)

    @staticmethod
    def _sub_backward(node: "Tensor", upstream: Any) -> tuple:
        # d(a - b)/da = 1, d(a - b)/db = -1
        a, b = node.first_parent, node.second_parent
        return (
            _unbroadcast(upstream, a.data.shape) if a.requires_grad else None,
            -_unbroadcast(upstream, b.data.shape) if b.requires_grad else None,  # sum first, then negate the smaller array
        )

    def __rsub__(self, other: TensorLike) -> "Tensor":
        other = _operand(self, other, "-")
        if other is None:
            return NotImplemented
        return other.__sub__(self)

    def __neg__(self) -> "Tensor":
        return _result(-self.data, self, None, "neg", Tensor._neg_backward, self.backend)

    @staticmethod
    def _neg_backward(node: "Tensor", upstream: Any) -> tuple:
        # d(-a)/da = -1
        return (-upstream,)

    # ---- multiplication and division -----------------------------------------

    def __mul__(self, other: TensorLike) -> "Tensor":
        other = _operand(self, other, "*")
        if other is None:
            return NotImplemented
        try:
            data = self.data * other.data
        except ValueError:
            raise shape_error("*", self.shape, other.shape) from None
        return _result(data, self, other, "*", Tensor._mul_backward, self.backend)

    @staticmethod
    def _mul_backward(node: "Tensor", upstream: Any) -> tuple:
        # d(a * b)/da = b, d(a * b)/db = a (elementwise), summed over broadcast copies
        a, b = node.first_parent, node.second_parent
        backend = node.backend
        return (
            _unbroadcast_product(upstream, b.data, a.data.shape, backend) if a.requires_grad else None,
            _unbroadcast_product(upstream, a.data, b.data.shape, backend) if b.requires_grad else None,
        )

    def __rmul__(self, other: TensorLike) -> "Tensor":
        other = _operand(self, other, "*")
        if other is None:
            return NotImplemented
        return other.__mul__(self)

    def __truediv__(self, other: TensorLike) -> "Tensor":
        other = _operand(self, other, "/")
        if other is None:
            return NotImplemented
        if self.backend.checks_values:  # off on the GPU: 1 / 0 is inf there, as in PyTorch
            zero = other.data == 0
            if zero.any():
                raise ValueError(f"/: division by zero: the divisor {_first_bad(self.backend, other.data, zero)}")
        try:
            data = self.data / other.data
        except ValueError:
            raise shape_error("/", self.shape, other.shape) from None
        return _result(data, self, other, "/", Tensor._div_backward, self.backend)

    @staticmethod
    def _div_backward(node: "Tensor", upstream: Any) -> tuple:
        # d(a / b)/da = 1 / b,  d(a / b)/db = -a / b^2 = -(a / b) / b
        a, b = node.first_parent, node.second_parent
        return (
            _unbroadcast(upstream / b.data, a.data.shape) if a.requires_grad else None,
            _unbroadcast(-upstream * node.data / b.data, b.data.shape) if b.requires_grad else None,
        )

    def __rtruediv__(self, other: TensorLike) -> "Tensor":
        other = _operand(self, other, "/")
        if other is None:
            return NotImplemented
        return other.__truediv__(self)

    # ---- powers ----------------------------------------------------------------

    def __pow__(self, exponent: TensorLike) -> "Tensor":
        if isinstance(exponent, Tensor):
            return _tensor_pow(self, _operand(self, exponent, "**"))
        if not isinstance(exponent, (int, float)) or isinstance(exponent, bool):
            return NotImplemented
        data, backend = self.data, self.backend
        # value checks are off on the GPU (see backend.py): 0 ** -1 is inf there, as in PyTorch
        if backend.checks_values:
            _check_power_domain(backend, data, exponent)
        return _result(data**exponent, self, None, f"**{exponent:g}", Tensor._pow_backward, backend, saved=exponent)

    @staticmethod
    def _pow_backward(node: "Tensor", upstream: Any) -> tuple:
        # d(a^n)/da = n * a^(n-1)
        a = node.first_parent
        exponent = node.saved
        if exponent == 0:
            return (upstream * 0,)
        if exponent == 2:  # the square, as in a variance: 2a, without a general power
            gradient = upstream * a.data
            gradient *= 2  # in place: one new array instead of two
            return (gradient,)
        # Only for 0 < n < 1 can a^(n-1) divide by zero: 0 ** (n - 1) = +inf, as in
        # PyTorch, without NumPy's warning. (For n < 0 the forward refused a = 0.)
        quiet = _quiet(node.backend.xp) if 0 < exponent < 1 else nullcontext()
        with quiet:
            return (upstream * (exponent * a.data ** (exponent - 1)),)

    def __rpow__(self, base: TensorLike) -> "Tensor":
        base = _operand(self, base, "**")
        if base is None:
            return NotImplemented
        return _tensor_pow(base, self)

    @staticmethod
    def _tensor_pow_backward(node: "Tensor", upstream: Any) -> tuple:
        # d(a^b)/da = b * a^(b-1),  d(a^b)/db = a^b * ln(a)   (taken as 0 where a = 0)
        a, b = node.first_parent, node.second_parent
        xp = node.backend.xp
        grad_a = grad_b = None
        if a.requires_grad:
            grad_a = _unbroadcast(upstream * b.data * a.data ** (b.data - 1), a.data.shape)
        if b.requires_grad:
            positive = a.data > 0
            log_a = xp.log(xp.where(positive, a.data, 1))
            grad_b = _unbroadcast(upstream * node.data * log_a, b.data.shape)
        return (grad_a, grad_b)

    # ---- matrix multiplication -------------------------------------------------

    def __matmul__(self, other: "Tensor") -> "Tensor":
        other = _operand(self, other, "@")
        if other is None:
            return NotImplemented
        if self.ndim == 0 or other.ndim == 0:
            raise shape_error("@", self.shape, other.shape, "cannot be multiplied: matmul needs at least 1-D operands")
        try:
            data = self.data @ other.data
        except ValueError:
            raise shape_error(
                "@", self.shape, other.shape,
                "are not aligned: the last dimension of the left operand must equal the "
                "second-to-last (or only) dimension of the right one",
            ) from None
        return _result(data, self, other, "@", Tensor._matmul_backward, self.backend)

    @staticmethod
    def _matmul_backward(node: "Tensor", upstream: Any) -> tuple:
        # C = A B:  dL/dA = dL/dC B^T,  dL/dB = A^T dL/dC.
        # 1-D operands are treated as a row (left) or a column (right) matrix,
        # as NumPy does, and batch dimensions broadcast like elementwise ops.
        a, b = node.first_parent, node.second_parent
        xp = node.backend.xp
        left = a.data[None, :] if a.data.ndim == 1 else a.data
        right = b.data[:, None] if b.data.ndim == 1 else b.data
        grad_c = upstream
        # the right operand's axis first: for 1-D @ 1-D the upstream is 0-d,
        # and only after it has one axis can the left's axis go in front of it
        if b.data.ndim == 1:
            grad_c = xp.expand_dims(grad_c, -1)
        if a.data.ndim == 1:
            grad_c = xp.expand_dims(grad_c, -2)
        grad_a = grad_b = None
        if a.requires_grad:
            grad_a = grad_c @ xp.swapaxes(right, -1, -2)
            if a.data.ndim == 1:
                grad_a = grad_a[..., 0, :]
            grad_a = _unbroadcast(grad_a, a.data.shape)
        if b.requires_grad:
            grad_b = xp.swapaxes(left, -1, -2) @ grad_c
            if b.data.ndim == 1:
                grad_b = grad_b[..., :, 0]
            grad_b = _unbroadcast(grad_b, b.data.shape)
        return (grad_a, grad_b)

    def __rmatmul__(self, other: Any) -> "Tensor":
        other = _operand(self, other, "@")
        if other is None:
            return NotImplemented
        return other.__matmul__(self)

    # ---- elementwise functions ---------------------------------------------------

    def exp(self) -> "Tensor":
        return _result(self.backend.xp.exp(self.data), self, None, "exp", Tensor._exp_backward, self.backend)

    @staticmethod
    def _exp_backward(node: "Tensor", upstream: Any) -> tuple:
        # d(e^a)/da = e^a, the output itself
        return (upstream * node.data,)

    def log(self) -> "Tensor":
        if self.backend.checks_values:  # off on the GPU: log(0) is -inf there, as in PyTorch
            not_positive = self.data <= 0
            if not_positive.any():
                raise ValueError(
                    f"log: expected positive values (log x is defined for x > 0 only), "
                    f"{_first_bad(self.backend, self.data, not_positive)}"
                )
        return _result(self.backend.xp.log(self.data), self, None, "log", Tensor._log_backward, self.backend)

    @staticmethod
    def _log_backward(node: "Tensor", upstream: Any) -> tuple:
        # d(ln a)/da = 1 / a
        a = node.first_parent
        return (upstream / a.data,)

    def sqrt(self) -> "Tensor":
        if self.backend.checks_values:  # off on the GPU: sqrt(-1) is nan there, as in PyTorch
            negative = self.data < 0
            if negative.any():
                raise ValueError(
                    f"sqrt: expected values >= 0 (the square root of a negative number is not real), "
                    f"{_first_bad(self.backend, self.data, negative)}"
                )
        return _result(self.backend.xp.sqrt(self.data), self, None, "sqrt", Tensor._sqrt_backward, self.backend)

    @staticmethod
    def _sqrt_backward(node: "Tensor", upstream: Any) -> tuple:
        # d(sqrt a)/da = 1 / (2 sqrt a)   (+inf at a = 0, as in PyTorch)
        xp = node.backend.xp
        with _quiet(xp):
            return (upstream / (2 * node.data),)

    def tanh(self) -> "Tensor":
        return _result(self.backend.xp.tanh(self.data), self, None, "tanh", Tensor._tanh_backward, self.backend)

    @staticmethod
    def _tanh_backward(node: "Tensor", upstream: Any) -> tuple:
        # d(tanh a)/da = 1 - tanh(a)^2
        return (upstream * (1 - node.data * node.data),)

    def sigmoid(self) -> "Tensor":
        xp = self.backend.xp
        # 1 / (1 + e^-x) for x >= 0 and e^x / (1 + e^x) for x < 0: e^(large) is
        # never formed, and sigmoid(-40) ~ 4e-18 keeps its relative precision
        # ((1 + tanh(x / 2)) / 2 would cancel to exactly 0 there)
        e = xp.exp(-xp.abs(self.data))
        data = xp.where(self.data >= 0, 1 / (1 + e), e / (1 + e))
        return _result(data, self, None, "sigmoid", Tensor._sigmoid_backward, self.backend)

    @staticmethod
    def _sigmoid_backward(node: "Tensor", upstream: Any) -> tuple:
        # d(sigma(a))/da = sigma(a) (1 - sigma(a))
        return (upstream * node.data * (1 - node.data),)

    def relu(self) -> "Tensor":
        return _result(self.backend.xp.maximum(self.data, 0), self, None, "relu", Tensor._relu_backward, self.backend)

    @staticmethod
    def _relu_backward(node: "Tensor", upstream: Any) -> tuple:
        # d max(0, a)/da = 1 where a > 0, else 0 (0 at a = 0, as in PyTorch)
        a = node.first_parent
        return (upstream * (a.data > 0),)

    def abs(self) -> "Tensor":
        return _result(self.backend.xp.abs(self.data), self, None, "abs", Tensor._abs_backward, self.backend)

    @staticmethod
    def _abs_backward(node: "Tensor", upstream: Any) -> tuple:
        # d|a|/da = sign(a) (0 at a = 0, as in PyTorch)
        a = node.first_parent
        return (upstream * node.backend.xp.sign(a.data),)

    __abs__ = abs

    # ---- reductions ----------------------------------------------------------------

    def sum(self, axis: Axis = None, keepdims: bool = False) -> "Tensor":
        axes = _normalize_axes(axis, self.data.ndim, "sum")
        data = self.data.sum(axis=axes, keepdims=keepdims)
        return _result(data, self, None, "sum", Tensor._sum_backward, self.backend, saved=(axes, keepdims))

    @staticmethod
    def _sum_backward(node: "Tensor", upstream: Any) -> tuple:
        # d(sum_i a_i)/da_j = 1: every summed element gets the upstream gradient
        a = node.first_parent
        axes, keepdims = node.saved
        gradient = _expand_reduced(upstream, a.data.shape, axes, keepdims)
        return (node.backend.broadcast_to(gradient, a.data.shape),)

    def mean(self, axis: Axis = None, keepdims: bool = False) -> "Tensor":
        axes = _normalize_axes(axis, self.data.ndim, "mean")
        count = _count(self.data.shape, axes)
        if count == 0:
            raise ValueError(f"mean: cannot average over zero elements (shape {self.shape}, axis {axis})")
        data = self.backend.mean(self.data, axes, keepdims, count)
        return _result(data, self, None, "mean", Tensor._mean_backward, self.backend, saved=(axes, keepdims, count))

    @staticmethod
    def _mean_backward(node: "Tensor", upstream: Any) -> tuple:
        # d(mean_i a_i)/da_j = 1 / N
        a = node.first_parent
        axes, keepdims, count = node.saved
        gradient = _expand_reduced(upstream, a.data.shape, axes, keepdims) / count
        return (node.backend.broadcast_to(gradient, a.data.shape),)

    def var(self, axis: Axis = None, keepdims: bool = False, correction: int = 1) -> "Tensor":
        """Variance sum_i (a_i - mean)^2 / (N - correction).

        ``correction=1`` (PyTorch's default) is the unbiased estimate of the
        population variance; ``correction=0`` is the biased batch variance
        that BatchNorm normalizes with. Ask for the one you mean.
        """
        axes = _normalize_axes(axis, self.ndim, "var")
        count = _count(self.data.shape, axes)
        if count - correction <= 0:
            raise ValueError(
                f"var: {count} value(s) along axis {axis} of a tensor of shape {self.shape} "
                f"leave no degrees of freedom with correction={correction} (need more than {correction})"
            )
        centered = self.data - self.data.mean(axis=axes, keepdims=True)
        data = (centered * centered).sum(axis=axes, keepdims=keepdims) / (count - correction)
        return _result(data, self, None, "var", Tensor._var_backward, self.backend, saved=(axes, keepdims, count - correction))

    @staticmethod
    def _var_backward(node: "Tensor", upstream: Any) -> tuple:
        # d var/da_j = 2 (a_j - mean) / (N - correction); the mean's own
        # dependence on a_j drops out because the centred values sum to zero
        a = node.first_parent
        axes, keepdims, denominator = node.saved
        centered = a.data - a.data.mean(axis=axes, keepdims=True)
        gradient = _expand_reduced(upstream, a.data.shape, axes, keepdims)
        return (gradient * (2 / denominator) * centered,)

    def max(self, axis: Axis = None, keepdims: bool = False) -> "Tensor":
        """Largest value along ``axis``; ties share the gradient equally
        (PyTorch's ``amax`` rule)."""
        axes = _normalize_axes(axis, self.ndim, "max")
        if _count(self.data.shape, axes) == 0:
            raise ValueError(f"max: cannot take the maximum of zero elements (shape {self.shape})")
        data = self.data.max(axis=axes, keepdims=keepdims)
        return _result(data, self, None, "max", Tensor._max_backward, self.backend, saved=(axes, keepdims))

    @staticmethod
    def _max_backward(node: "Tensor", upstream: Any) -> tuple:
        # d max/da_j = 1 for the maximal element (1/k each when k elements tie)
        a = node.first_parent
        axes, keepdims = node.saved
        largest = _expand_reduced(node.data, a.data.shape, axes, keepdims)
        is_max = a.data == largest
        ties = is_max.sum(axis=axes, keepdims=True).astype(upstream.dtype)  # int counts would promote float32
        gradient = _expand_reduced(upstream, a.data.shape, axes, keepdims)
        return (gradient * is_max / ties,)

    # ---- shape changes -------------------------------------------------------------

    def reshape(self, *shape: Any) -> "Tensor":
        """Same data, new shape; accepts a tuple or separate ints (one may be -1)."""
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        try:
            data = self.data.reshape(shape)
        except ValueError:
            raise ValueError(
                f"reshape: cannot reshape a tensor of shape {self.shape} ({self.size} elements) into {shape}"
            ) from None
        return _result(data, self, None, "reshape", Tensor._reshape_backward, self.backend)

    @staticmethod
    def _reshape_backward(node: "Tensor", upstream: Any) -> tuple:
        # a reshape moves no number: the gradient is reshaped back
        a = node.first_parent
        return (upstream.reshape(a.data.shape),)

    def permute(self, *dims: Any) -> "Tensor":
        """Reorder the axes: output axis i is input axis dims[i]."""
        if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
            dims = tuple(dims[0])
        if any(not -self.ndim <= d < max(self.ndim, 1) for d in dims) or sorted(
            d % max(self.ndim, 1) for d in dims
        ) != list(range(self.ndim)):
            raise ValueError(f"permute: {dims} is not a permutation of the {self.ndim} axes of shape {self.shape}")
        dims = tuple(d % self.ndim for d in dims)
        data = self.backend.xp.transpose(self.data, dims)
        return _result(data, self, None, "permute", Tensor._permute_backward, self.backend, saved=dims)

    @staticmethod
    def _permute_backward(node: "Tensor", upstream: Any) -> tuple:
        # undo the permutation: input axis dims[i] comes back from output axis i
        dims = node.saved
        inverse = [0] * len(dims)
        for position, axis in enumerate(dims):
            inverse[axis] = position
        return (node.backend.xp.transpose(upstream, inverse),)

    def transpose(self, dim0: int = -2, dim1: int = -1) -> "Tensor":
        """Swap two axes (PyTorch's ``transpose(dim0, dim1)``)."""
        if self.ndim < 2:
            return self.permute(tuple(range(self.ndim)))
        dims = list(range(self.ndim))
        for d in (dim0, dim1):
            if not -self.ndim <= d < self.ndim:
                raise ValueError(f"transpose: axis {d} is out of range for shape {self.shape}")
        dims[dim0], dims[dim1] = dims[dim1], dims[dim0]
        return self.permute(dims)

    @property
    def T(self) -> "Tensor":
        """All axes reversed (the matrix transpose for 2-D)."""
        return self.permute(tuple(reversed(range(self.ndim))))

    def __getitem__(self, index: Any) -> "Tensor":
        index = _plain_index(index, self.backend)
        try:
            data = self.data[index]
        except IndexError as error:
            raise IndexError(f"[]: {error} (tensor shape {self.shape})") from None
        return _result(data, self, None, "[]", Tensor._getitem_backward, self.backend, saved=index)

    @staticmethod
    def _getitem_backward(node: "Tensor", upstream: Any) -> tuple:
        # each selected element receives its gradient; an element selected
        # twice (repeated integer indices) receives the sum of both
        a = node.first_parent
        index = node.saved
        gradient = node.backend.xp.zeros_like(a.data)
        node.backend.scatter_add(gradient, index, upstream)
        return (gradient,)

    # ---- elementwise comparisons used as masks (not differentiable) -------------

    def __gt__(self, other: Any) -> Any:
        return Tensor._constant(self.data > _raw(other), self.backend)

    def __lt__(self, other: Any) -> Any:
        return Tensor._constant(self.data < _raw(other), self.backend)

    def __ge__(self, other: Any) -> Any:
        return Tensor._constant(self.data >= _raw(other), self.backend)

    def __le__(self, other: Any) -> Any:
        return Tensor._constant(self.data <= _raw(other), self.backend)

    # ---- moving between devices ---------------------------------------------------

    def to(self, device: str) -> "Tensor":
        """This tensor on ``device``; gradients flow back across the copy."""
        target = get_backend(device)
        if target is self.backend:
            return self
        # through the host: a NumPy array is what every backend can take in
        data = target.asarray(self.backend.to_numpy(self.data))
        return _result(data, self, None, f"to({target.device})", Tensor._to_backward, target, saved=self.backend)

    @staticmethod
    def _to_backward(node: "Tensor", upstream: Any) -> tuple:
        # a copy is the identity: the gradient is copied back to the source device
        source = node.saved
        return (source.asarray(node.backend.to_numpy(upstream)),)

    def cpu(self) -> "Tensor":
        return self.to("cpu")


def _count(shape: tuple, axes: tuple) -> int:
    count = 1
    for a in axes:
        count *= shape[a]
    return count


def _raw(other: Any) -> Any:
    return other.data if isinstance(other, Tensor) else other


def _plain_index(index: Any, backend: Backend) -> Any:
    """Replace Tensors, lists and host arrays inside an index by arrays of ``backend``.

    An index array the user made with NumPy is moved to the tensor's device
    (on the CPU that is no copy at all).
    """
    if isinstance(index, tuple):
        return tuple(_plain_index(part, backend) for part in index)
    if isinstance(index, Tensor):
        if index.backend is not backend:
            raise ValueError(
                f"[]: tensors are on different devices, {backend.device} and {index.device} (the index); "
                "move one with .to(device)"
            )
        return index.data
    if isinstance(index, list) and index:
        return backend.asarray(index)  # integers, or booleans (a mask)
    if getattr(index, "ndim", 0) > 0 and not isinstance(index, backend.array_type):
        return backend.asarray(index)
    return index


class _quiet:
    """Silence NumPy's divide-by-zero warnings where +inf is the intended answer."""

    def __init__(self, xp: Any) -> None:
        self.state = xp.errstate(divide="ignore") if hasattr(xp, "errstate") else None

    def __enter__(self) -> None:
        if self.state is not None:
            self.state.__enter__()

    def __exit__(self, *exc: Any) -> None:
        if self.state is not None:
            self.state.__exit__(*exc)


def _tensor_pow(base: Tensor, exponent: Tensor) -> Tensor:
    """``base ** exponent`` with a Tensor exponent (d/db = a^b ln a needs a > 0)."""
    if exponent.requires_grad and base.backend.checks_values:
        negative = base.data < 0
        if negative.any():
            raise ValueError(
                "**: the exponent requires grad, and d(a^b)/db = a^b ln(a) needs a base >= 0; "
                f"the base {_first_bad(base.backend, base.data, negative)}"
            )
    try:
        data = base.data**exponent.data
    except ValueError:
        raise shape_error("**", base.shape, exponent.shape) from None
    return _result(data, base, exponent, "**", Tensor._tensor_pow_backward, base.backend)


# ---------------------------------------------------------------------------
# functions of several tensors
# ---------------------------------------------------------------------------


def tensor(data: Any, requires_grad: bool = False, dtype: Any = None, device: str | None = None, label: str = "") -> Tensor:
    """Make a Tensor (PyTorch's spelling)."""
    return Tensor(data, requires_grad=requires_grad, dtype=dtype, device=device, label=label)


def _as_tensors(tensors: Sequence[Any], op: str) -> list[Tensor]:
    tensors = list(tensors)
    if not tensors:
        raise ValueError(f"{op}: needs at least one tensor")
    first = tensors[0] if isinstance(tensors[0], Tensor) else Tensor(tensors[0])
    return [first] + [_operand(first, t, op) if isinstance(t, Tensor) else Tensor(t, device=first.device) for t in tensors[1:]]


def concatenate(tensors: Sequence[Tensor], axis: int = 0) -> Tensor:
    """Join tensors along an existing axis (``torch.cat``)."""
    tensors = _as_tensors(tensors, "concatenate")
    first = tensors[0]
    try:
        data = first.backend.xp.concatenate([t.data for t in tensors], axis=axis)
    except ValueError:
        raise ValueError(
            f"concatenate: shapes {[t.shape for t in tensors]} must agree on every axis except axis {axis}"
        ) from None
    sizes = [t.data.shape[axis] for t in tensors]
    return _result_of_many(data, tensors, "concatenate", _concatenate_backward, first.backend, saved=(axis, sizes))


def _concatenate_backward(node: Tensor, upstream: Any) -> tuple:
    # each input gets back the slice of the gradient where its values were placed
    axis, sizes = node.saved
    pieces, start = [], 0
    for size in sizes:
        index = [slice(None)] * upstream.ndim
        index[axis] = slice(start, start + size)
        pieces.append(upstream[tuple(index)])
        start += size
    return tuple(pieces)


def stack(tensors: Sequence[Tensor], axis: int = 0) -> Tensor:
    """Join same-shaped tensors along a new axis (``torch.stack``)."""
    tensors = _as_tensors(tensors, "stack")
    first = tensors[0]
    try:
        data = first.backend.xp.stack([t.data for t in tensors], axis=axis)
    except ValueError:
        raise ValueError(f"stack: all shapes must be equal, got {[t.shape for t in tensors]}") from None
    return _result_of_many(data, tensors, "stack", _stack_backward, first.backend, saved=axis)


def _stack_backward(node: Tensor, upstream: Any) -> tuple:
    # input i was placed at position i of the new axis: it gets that slice back
    axis = node.saved
    xp = node.backend.xp
    return tuple(xp.take(upstream, i, axis=axis) for i in range(len(node.parents)))


def where(condition: Any, x: TensorLike, y: TensorLike) -> Tensor:
    """Elementwise ``x if condition else y``; the condition gets no gradient."""
    anchor = x if isinstance(x, Tensor) else y if isinstance(y, Tensor) else Tensor(x)
    if isinstance(condition, Tensor):
        condition = _operand(anchor, condition, "where")  # refuses a condition on another device
    mask = _raw(condition)
    x, y = _operand(anchor, x, "where"), _operand(anchor, y, "where")
    xp = anchor.backend.xp
    mask = xp.asarray(mask, dtype=bool)
    try:
        data = xp.where(mask, x.data, y.data)
    except ValueError:
        raise ValueError(
            f"where: shapes {tuple(mask.shape)}, {x.shape} and {y.shape} cannot be broadcast together"
        ) from None
    return _result(data, x, y, "where", _where_backward, anchor.backend, saved=mask)


def _where_backward(node: Tensor, upstream: Any) -> tuple:
    # d/dx = 1 where the condition holds (else 0); d/dy the opposite
    x, y = node.first_parent, node.second_parent
    mask = node.saved
    xp = node.backend.xp
    zero = xp.zeros((), dtype=upstream.dtype)
    return (
        _unbroadcast(xp.where(mask, upstream, zero), x.data.shape) if x.requires_grad else None,
        _unbroadcast(xp.where(mask, zero, upstream), y.data.shape) if y.requires_grad else None,
    )


def _extremum(a: TensorLike, b: TensorLike, op: str) -> Tensor:
    anchor = a if isinstance(a, Tensor) else b if isinstance(b, Tensor) else Tensor(a)
    a, b = _operand(anchor, a, op), _operand(anchor, b, op)
    pick = getattr(anchor.backend.xp, op)  # xp.maximum or xp.minimum
    try:
        data = pick(a.data, b.data)
    except ValueError:
        raise shape_error(op, a.shape, b.shape) from None
    return _result(data, a, b, op, _extremum_backward, anchor.backend)


def _extremum_backward(node: Tensor, upstream: Any) -> tuple:
    # the gradient goes to whichever input was picked; on a tie each gets half
    # (PyTorch's rule for maximum/minimum)
    a, b = node.first_parent, node.second_parent
    a_share = (a.data == node.data).astype(upstream.dtype)  # not * 1.0: keeps float32 float32
    b_share = (b.data == node.data).astype(upstream.dtype)
    total = a_share + b_share
    return (
        _unbroadcast(upstream * (a_share / total), a.data.shape) if a.requires_grad else None,
        _unbroadcast(upstream * (b_share / total), b.data.shape) if b.requires_grad else None,
    )


def maximum(a: TensorLike, b: TensorLike) -> Tensor:
    """Elementwise larger of ``a`` and ``b`` (ties split the gradient)."""
    return _extremum(a, b, "maximum")


def minimum(a: TensorLike, b: TensorLike) -> Tensor:
    """Elementwise smaller of ``a`` and ``b`` (ties split the gradient)."""
    return _extremum(a, b, "minimum")

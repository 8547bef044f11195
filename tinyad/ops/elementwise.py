"""Elementwise ops: arithmetic, powers, the elementary functions, maximum/minimum/where.

Each op is a forward function followed by its backward function. A backward
function receives the output node and ``upstream`` = dL/d(output) and returns
one message per input: upstream times the local derivative, summed back to
the input's shape with ``unbroadcast`` where broadcasting stretched it. An
input that needs no gradient gets None (its message would be thrown away).
"""
from __future__ import annotations

import operator
from contextlib import nullcontext
from typing import Any

from ..backend import Backend
from ..tensor import Tensor, TensorLike, _operand, _result, first_bad, quiet_numpy, result_dtype, shape_error, unbroadcast

__all__ = [
    "add", "sub", "neg", "mul", "div", "power", "tensor_power",
    "exp", "log", "sqrt", "tanh", "sigmoid", "relu", "abs",
    "maximum", "minimum", "where", "cast",
]


def _broadcasting(op: str, compute: Any, a: Tensor, b: Tensor) -> Any:
    """``compute(a.data, b.data)``, with NumPy's shape error told in tinyad's words."""
    try:
        return compute(a.data, b.data)
    except ValueError:
        raise shape_error(op, a.shape, b.shape) from None


def _promoted(a: Tensor, b: Tensor) -> tuple:
    """``a`` and ``b`` in PyTorch's result dtype (``result_dtype``). The one that
    changes goes through a ``cast`` node, so its gradient comes back in its own dtype."""
    if a.dtype == b.dtype:
        return a, b
    dtype = result_dtype(a, b)
    return (a if a.dtype == dtype else cast(a, dtype)), (b if b.dtype == dtype else cast(b, dtype))


# ---- addition, subtraction, negation ---------------------------------------


def add(a: Tensor, b: Tensor) -> Tensor:
    a, b = _promoted(a, b)
    return _result(_broadcasting("+", operator.add, a, b), (a, b), "+", _add_backward, a.backend)


def _add_backward(node: Tensor, upstream: Any) -> tuple:
    # d(a + b)/da = 1, d(a + b)/db = 1, summed over broadcast copies
    a, b = node.parents
    return (
        unbroadcast(upstream, a.shape) if a.requires_grad else None,
        unbroadcast(upstream, b.shape) if b.requires_grad else None,
    )


def sub(a: Tensor, b: Tensor) -> Tensor:
    a, b = _promoted(a, b)
    return _result(_broadcasting("-", operator.sub, a, b), (a, b), "-", _sub_backward, a.backend)


def _sub_backward(node: Tensor, upstream: Any) -> tuple:
    # d(a - b)/da = 1, d(a - b)/db = -1
    a, b = node.parents
    return (
        unbroadcast(upstream, a.shape) if a.requires_grad else None,
        -unbroadcast(upstream, b.shape) if b.requires_grad else None,  # sum first, then negate the smaller array
    )


def neg(a: Tensor) -> Tensor:
    return _result(-a.data, (a,), "neg", _neg_backward, a.backend)


def _neg_backward(node: Tensor, upstream: Any) -> tuple:
    # d(-a)/da = -1
    return (-upstream,)


# ---- multiplication and division ---------------------------------------------


def mul(a: Tensor, b: Tensor) -> Tensor:
    a, b = _promoted(a, b)
    return _result(_broadcasting("*", operator.mul, a, b), (a, b), "*", _mul_backward, a.backend)


def _mul_backward(node: Tensor, upstream: Any) -> tuple:
    # d(a * b)/da = b, d(a * b)/db = a (elementwise), summed over broadcast copies
    a, b = node.parents
    return (
        unbroadcast(upstream * b.data, a.shape) if a.requires_grad else None,
        unbroadcast(upstream * a.data, b.shape) if b.requires_grad else None,
    )


def div(a: Tensor, b: Tensor) -> Tensor:
    a, b = _promoted(a, b)
    if a.backend.checks_values:  # off on the GPU: 1 / 0 is inf there, as in PyTorch
        zero = b.data == 0
        if zero.any():
            raise ValueError(f"/: division by zero: the divisor {first_bad(a.backend, b.data, zero)}")
    return _result(_broadcasting("/", operator.truediv, a, b), (a, b), "/", _div_backward, a.backend)


def _div_backward(node: Tensor, upstream: Any) -> tuple:
    # d(a / b)/da = 1 / b,  d(a / b)/db = -a / b^2 = -(a / b) / b
    a, b = node.parents
    return (
        unbroadcast(upstream / b.data, a.shape) if a.requires_grad else None,
        unbroadcast(-upstream * node.data / b.data, b.shape) if b.requires_grad else None,
    )


# ---- powers --------------------------------------------------------------------


def power(a: Tensor, exponent: float) -> Tensor:
    """``a ** n`` for a constant number n."""
    # value checks are off on the GPU (see backend.py): 0 ** -1 is inf there, as in PyTorch
    if a.backend.checks_values:
        _check_power_domain(a.backend, a.data, exponent)
    return _result(a.data**exponent, (a,), f"**{exponent:g}", _power_backward, a.backend, saved=exponent)


def _power_backward(node: Tensor, upstream: Any) -> tuple:
    # d(a^n)/da = n * a^(n-1)
    (a,) = node.parents
    exponent = node.saved
    if exponent == 0:  # d(a^0)/da = 0, also where upstream is inf (0 * inf would be NaN)
        return (node.backend.xp.zeros_like(upstream),)
    if exponent == 0.5:
        # d(a^0.5)/da = 1 / (2 sqrt a), written as sqrt's derivative: the sign of a
        # zero carries through (-0.0 gives -inf), as PyTorch, which computes a ** 0.5 as sqrt
        with quiet_numpy(node.backend.xp):
            return (upstream / (2 * node.data),)
    # Only for 0 < n < 1 can a^(n-1) divide by zero: 0 ** (n - 1) = +inf, as in
    # PyTorch, without NumPy's warning. (For n < 0 the forward refused a = 0.)
    with quiet_numpy(node.backend.xp) if 0 < exponent < 1 else nullcontext():
        return (upstream * (exponent * a.data ** (exponent - 1)),)


def _check_power_domain(backend: Backend, data: Any, exponent: float) -> None:
    """Refuse a ** n where it is not a real number: 0 ** (n < 0) divides by
    zero, and a negative base needs an integer n (an inverse square root,
    n = -1/2, must check both). NaN is neither zero nor negative, so it
    passes, and NaN ** n is NaN, as in PyTorch."""
    if exponent < 0:
        zero = data == 0
        if zero.any():
            raise ValueError(f"**: 0 ** {exponent!r} is a division by zero: the base {first_bad(backend, data, zero)}")
    if not float(exponent).is_integer():
        negative = data < 0
        if negative.any():
            raise ValueError(
                f"**: a negative base needs an integer exponent, the exponent is {exponent!r} and "
                f"the base {first_bad(backend, data, negative)}"
            )


def _broadcast_exponent(base: Tensor, exponent: Tensor) -> Any:
    """The exponent's data broadcast against the base's (to name the offending element)."""
    return base.backend.xp.broadcast_arrays(base.data, exponent.data)[1]


def tensor_power(base: Tensor, exponent: Tensor) -> Tensor:
    """``base ** exponent`` with a Tensor exponent (d/db = a^b ln a needs a > 0)."""
    if exponent.requires_grad and base.backend.checks_values:
        negative = base.data < 0
        if negative.any():
            raise ValueError(
                "**: the exponent requires grad, and d(a^b)/db = a^b ln(a) needs a base >= 0; "
                f"the base {first_bad(base.backend, base.data, negative)}"
            )
    base, exponent = _promoted(base, exponent)
    with quiet_numpy(base.backend.xp):  # the shapes are checked here, before the values below
        data = _broadcasting("**", operator.pow, base, exponent)
    if base.backend.checks_values:  # the domain of a ** b, as for a number exponent
        zero_to_negative = (base.data == 0) & (exponent.data < 0)
        if zero_to_negative.any():
            raise ValueError(
                f"**: 0 ** a negative exponent is a division by zero: the base is 0 where the exponent "
                f"{first_bad(base.backend, _broadcast_exponent(base, exponent), zero_to_negative)}"
            )
        xp = base.backend.xp
        negative_to_fraction = (base.data < 0) & ~(exponent.data == xp.round(exponent.data))
        if negative_to_fraction.any():
            raise ValueError(
                f"**: a negative base needs an integer exponent: the base is negative where the exponent "
                f"{first_bad(base.backend, _broadcast_exponent(base, exponent), negative_to_fraction)}"
            )
    return _result(data, (base, exponent), "**", _tensor_power_backward, base.backend)


def _tensor_power_backward(node: Tensor, upstream: Any) -> tuple:
    # d(a^b)/da = b * a^(b-1)   (0 where b = 0, also at a = 0, where a^(b-1) is inf)
    # d(a^b)/db = a^b * ln(a)   (taken as 0 where a = 0 and b >= 0, PyTorch's convention:
    #                            ln 0 = -inf would make it 0 * -inf = NaN; a NaN base gives NaN)
    a, b = node.parents
    xp = node.backend.xp
    grad_a = grad_b = None
    if a.requires_grad:
        with quiet_numpy(xp):  # selected after the product, as PyTorch: 0 even where upstream is inf
            grad_a = unbroadcast(xp.where(b.data == 0, 0, upstream * b.data * a.data ** (b.data - 1)), a.shape)
    if b.requires_grad:
        zero_base = (a.data == 0) & (b.data >= 0)
        with quiet_numpy(xp):
            log_a = xp.log(xp.where(zero_base, 1, a.data))  # ln 1 = 0 where the convention applies
            grad_b = unbroadcast(upstream * node.data * log_a, b.shape)
    return (grad_a, grad_b)


# ---- elementary functions ----------------------------------------------------


def exp(a: Tensor) -> Tensor:
    """e^a elementwise (``tinyad.exp(a)`` is ``a.exp()``)."""
    return _result(a.backend.xp.exp(a.data), (a,), "exp", _exp_backward, a.backend)


def _exp_backward(node: Tensor, upstream: Any) -> tuple:
    # d(e^a)/da = e^a, the output itself
    return (upstream * node.data,)


def log(a: Tensor) -> Tensor:
    """The natural logarithm elementwise; a value <= 0 is an error on the CPU."""
    if a.backend.checks_values:  # off on the GPU: log(0) is -inf there, as in PyTorch
        not_positive = a.data <= 0
        if not_positive.any():
            raise ValueError(
                f"log: expected positive values (log x is defined for x > 0 only), "
                f"{first_bad(a.backend, a.data, not_positive)}"
            )
    return _result(a.backend.xp.log(a.data), (a,), "log", _log_backward, a.backend)


def _log_backward(node: Tensor, upstream: Any) -> tuple:
    # d(ln a)/da = 1 / a
    (a,) = node.parents
    return (upstream / a.data,)


def sqrt(a: Tensor) -> Tensor:
    """The square root elementwise; a negative value is an error on the CPU."""
    if a.backend.checks_values:  # off on the GPU: sqrt(-1) is nan there, as in PyTorch
        negative = a.data < 0
        if negative.any():
            raise ValueError(
                f"sqrt: expected values >= 0 (the square root of a negative number is not real), "
                f"{first_bad(a.backend, a.data, negative)}"
            )
    return _result(a.backend.xp.sqrt(a.data), (a,), "sqrt", _sqrt_backward, a.backend)


def _sqrt_backward(node: Tensor, upstream: Any) -> tuple:
    # d(sqrt a)/da = 1 / (2 sqrt a)   (+inf at a = 0, as in PyTorch)
    with quiet_numpy(node.backend.xp):
        return (upstream / (2 * node.data),)


def tanh(a: Tensor) -> Tensor:
    """tanh(a) elementwise."""
    return _result(a.backend.xp.tanh(a.data), (a,), "tanh", _tanh_backward, a.backend)


def _tanh_backward(node: Tensor, upstream: Any) -> tuple:
    # d(tanh a)/da = 1 - tanh(a)^2
    return (upstream * (1 - node.data * node.data),)


def sigmoid(a: Tensor) -> Tensor:
    """1 / (1 + e^-a) elementwise, computed without overflow for large |a|."""
    xp = a.backend.xp
    # 1 / (1 + e^-x) for x >= 0 and e^x / (1 + e^x) for x < 0: e^(large) is
    # never formed, and sigmoid(-40) ~ 4e-18 keeps its relative precision
    # ((1 + tanh(x / 2)) / 2 would cancel to exactly 0 there)
    e = xp.exp(-xp.abs(a.data))
    data = xp.where(a.data >= 0, 1 / (1 + e), e / (1 + e))
    return _result(data, (a,), "sigmoid", _sigmoid_backward, a.backend)


def _sigmoid_backward(node: Tensor, upstream: Any) -> tuple:
    # d(sigma(a))/da = sigma(a) (1 - sigma(a))
    return (upstream * node.data * (1 - node.data),)


def relu(a: Tensor) -> Tensor:
    """max(0, a) elementwise; its derivative at 0 is 0, as in PyTorch."""
    # NaN passes through; -0.0 becomes 0.0 (NumPy's choice; PyTorch keeps -0.0)
    return _result(a.backend.xp.maximum(a.data, 0), (a,), "relu", _relu_backward, a.backend)


def _relu_backward(node: Tensor, upstream: Any) -> tuple:
    # d max(0, a)/da = 1 where a > 0, else 0 (0 at a = 0; 1 at NaN, as in PyTorch).
    # The upstream is *selected*, not multiplied by a 0/1 mask, as PyTorch does:
    # an infinite upstream where relu(a) = 0 feeds a sqrt gives 0, not 0 * inf = NaN
    (a,) = node.parents
    return (node.backend.xp.where(a.data <= 0, 0, upstream),)


def abs(a: Tensor) -> Tensor:
    """|a| elementwise; its derivative at 0 is 0, as in PyTorch."""
    return _result(a.backend.xp.abs(a.data), (a,), "abs", _abs_backward, a.backend)


def _abs_backward(node: Tensor, upstream: Any) -> tuple:
    # d|a|/da = sign(a), taken as 0 at a = 0 and at NaN, as in PyTorch. Multiplied,
    # as PyTorch does (grad * sgn(a)): an infinite upstream at a = 0 gives NaN there too
    (a,) = node.parents
    sign = (a.data > 0).astype(upstream.dtype) - (a.data < 0).astype(upstream.dtype)
    return (upstream * sign,)


# ---- choosing between two inputs ---------------------------------------------


def _anchor_and_operands(a: Any, b: Any, op: str) -> tuple:
    """The first Tensor among ``a`` and ``b`` (it fixes the device), and both as Tensors."""
    anchor = a if isinstance(a, Tensor) else b if isinstance(b, Tensor) else Tensor(a)
    return anchor, _operand(anchor, a, op), _operand(anchor, b, op)


def _extremum(a: TensorLike, b: TensorLike, op: str) -> Tensor:
    anchor, a, b = _anchor_and_operands(a, b, op)
    a, b = _promoted(a, b)
    pick = getattr(anchor.backend.xp, op)  # xp.maximum or xp.minimum
    return _result(_broadcasting(op, pick, a, b), (a, b), op, _extremum_backward, anchor.backend)


def _extremum_backward(node: Tensor, upstream: Any) -> tuple:
    # the gradient goes to whichever input was picked; on a tie each gets half
    # (PyTorch's rule). Selected, never multiplied by a mask (0 * inf is NaN).
    # Where a NaN makes both comparisons false, both inputs get it, as in PyTorch.
    a, b = node.parents
    xp = node.backend.xp
    loses_a, loses_b = (a.data < b.data, a.data > b.data) if node.op == "maximum" else (a.data > b.data, a.data < b.data)
    shared = xp.where(a.data == b.data, upstream / 2, upstream)
    return (
        unbroadcast(xp.where(loses_a, 0, shared), a.shape) if a.requires_grad else None,
        unbroadcast(xp.where(loses_b, 0, shared), b.shape) if b.requires_grad else None,
    )


def maximum(a: TensorLike, b: TensorLike) -> Tensor:
    """Elementwise larger of ``a`` and ``b`` (ties split the gradient)."""
    return _extremum(a, b, "maximum")


def minimum(a: TensorLike, b: TensorLike) -> Tensor:
    """Elementwise smaller of ``a`` and ``b`` (ties split the gradient)."""
    return _extremum(a, b, "minimum")


def where(condition: Any, x: TensorLike, y: TensorLike) -> Tensor:
    """Elementwise ``x if condition else y``; the condition gets no gradient."""
    anchor, x, y = _anchor_and_operands(x, y, "where")
    if isinstance(condition, Tensor):
        condition = _operand(anchor, condition, "where").data  # refuses a condition on another device
    xp = anchor.backend.xp
    mask = xp.asarray(condition, dtype=bool)
    try:
        data = xp.where(mask, x.data, y.data)
    except ValueError:
        raise shape_error("where", mask.shape, x.shape, y.shape) from None
    return _result(data, (x, y), "where", _where_backward, anchor.backend, saved=mask)


def _where_backward(node: Tensor, upstream: Any) -> tuple:
    # d/dx = 1 where the condition holds (else 0); d/dy the opposite
    x, y = node.parents
    mask = node.saved
    xp = node.backend.xp
    zero = xp.zeros((), dtype=upstream.dtype)
    return (  # each back in its input's own dtype, where x and y differ
        unbroadcast(xp.where(mask, upstream, zero), x.shape).astype(x.dtype, copy=False) if x.requires_grad else None,
        unbroadcast(xp.where(mask, zero, upstream), y.shape).astype(y.dtype, copy=False) if y.requires_grad else None,
    )


# ---- changing the number type -------------------------------------------------


def cast(a: Tensor, dtype: Any) -> Tensor:
    """The same numbers in ``dtype`` (``float()`` is float32, ``double()`` float64)."""
    return _result(a.data.astype(dtype), (a,), f"to {dtype}", _cast_backward, a.backend)


def _cast_backward(node: Tensor, upstream: Any) -> tuple:
    # d cast(a)/da = 1; the gradient goes back in the input's own type
    (a,) = node.parents
    return (upstream.astype(a.data.dtype),)

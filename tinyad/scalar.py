"""``Value``: a single number that remembers how it was computed.

Every operation on Values creates a new Value whose ``parents`` are its
inputs. Each operation below is written twice, side by side: the forward
computation in the method, and the local derivative in the static method
right after it. A backward function receives the node and ``upstream`` =
dL/d(node), and returns dL/d(parent) = upstream * d(node)/d(parent) for each
parent, in order. The graph machinery (``tinyad.graph``) adds those messages
up; nothing here needs to know how the graph is walked.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Union

from . import graph
from .graph import Node

Number = Union[int, float]
ValueLike = Union["Value", int, float]


def _result(data: float, parents: tuple, op: str, backward_fn, saved: Any = None) -> "Value":
    """The output node of an operation on ``parents``; under ``no_grad`` a bare leaf."""
    if graph.is_grad_enabled():
        return Value(data, "", parents, op, backward_fn, saved)
    return Value(data)


def _as_value(other):
    """Wrap a plain number as a constant leaf, so it is drawn in the graph."""
    if isinstance(other, Value):
        return other
    if isinstance(other, (int, float)) and not isinstance(other, bool):
        return Value(other)
    return None


def _as_float(data: object) -> float:
    """``data`` as a float, if it is one real number (an int, a float, a NumPy number)."""
    if isinstance(data, bool) or not isinstance(data, numbers.Real):
        raise TypeError(
            f"a Value holds one real number (an int or a float), got {data!r} of type {type(data).__name__}"
            + (": convert the text first, e.g. Value(float(text))" if isinstance(data, str) else "")
        )
    return float(data)


def _float_pow(base: float, exponent: float) -> float:
    """base ** exponent; a result past the largest float raises a ValueError naming the op."""
    try:
        return base**exponent
    except OverflowError:
        raise ValueError(
            f"**: {base!r} ** {exponent!r} overflows a float (the result exceeds 1.8e308)"
        ) from None


def _check_pow_domain(base: float, exponent: float) -> None:
    if base == 0.0 and exponent < 0:
        raise ValueError(
            f"**: 0.0 ** {exponent!r} is a division by zero (x ** {exponent!r} is undefined at x = 0)"
        )
    if base < 0.0 and not float(exponent).is_integer():
        raise ValueError(
            f"**: {base!r} ** {exponent!r} is not a real number "
            "(a negative base needs an integer exponent)"
        )


def _power_slope(base: float, exponent: float) -> float:
    """n * a^(n-1), with its limits at a = 0: 0 for n = 0 or n > 1, 1 for n = 1,
    +inf for 0 < n < 1 (the tangent of sqrt at 0 is vertical), as PyTorch gives."""
    if base == 0.0 and exponent <= 1.0:
        if exponent == 0.0:
            return 0.0
        if exponent == 0.5:  # PyTorch takes x ** 0.5 as sqrt, whose slope keeps the sign of zero
            return math.copysign(math.inf, base)
        return 1.0 if exponent == 1.0 else math.inf
    try:
        return exponent * base ** (exponent - 1.0)
    except OverflowError:  # past the largest float: +-inf, as PyTorch gives
        odd_power = base < 0 and (exponent - 1.0) % 2 == 1
        return math.copysign(math.inf, exponent) * (-1.0 if odd_power else 1.0)


class Value(Node):
    """A scalar node: ``.data`` (float), ``.grad`` (float, dL/d this value),
    ``.label`` and ``.op`` (for drawing), ``.parents`` (its inputs).

    ``.grad`` starts at 0.0 and every ``backward()`` *adds* to it, as in
    PyTorch: call ``zero_grad()`` (or the module-level ``tinyad.zero_grad``)
    between steps.

    Every Value takes part in the gradient: ``requires_grad`` is always True
    and cannot be set (a Tensor leaf can opt out with ``requires_grad=False``).
    """

    __slots__ = ()  # requires_grad is Node's: always True, as in micrograd

    def __init__(
        self, data: Number, label: str = "", parents: tuple = (), op: str = "", backward_fn=None, saved: Any = None
    ) -> None:
        # parents, op, backward_fn and saved are given by the ops below (see graph.Node)
        if type(data) is not float:  # ops pass floats; anything else is checked
            data = _as_float(data)
        Node.__init__(self, data, parents, op, backward_fn, saved, label)
        self.grad = 0.0

    def __repr__(self) -> str:
        name = f", label={self.label!r}" if self.label else ""
        return f"Value(data={self.data:.6g}, grad={self.grad:.6g}{name})"

    # ---- the backward pass -------------------------------------------------

    def backward(self, grad: Number = 1.0) -> None:
        """Fill ``.grad`` of every node this one depends on with dL/d(node).

        The seed dL/dL = 1; a different ``grad`` computes grad * d(self)/d(node).
        """
        graph.run_backward(self, float(grad))

    def zero_grad(self) -> None:
        self.grad = 0.0
        self.messages = None

    # ---- addition and subtraction -----------------------------------------

    def __add__(self, other: ValueLike) -> Value:
        other = _as_value(other)
        if other is None:
            return NotImplemented
        return _result(self.data + other.data, (self, other), "+", Value._add_backward)

    @staticmethod
    def _add_backward(node: Value, upstream: float) -> tuple:
        # d(a + b)/da = 1,  d(a + b)/db = 1: the gradient is copied to both
        return (upstream, upstream)

    def __radd__(self, other: Number) -> Value:
        other = _as_value(other)
        if other is None:
            return NotImplemented
        return other + self

    def __sub__(self, other: ValueLike) -> Value:
        other = _as_value(other)
        if other is None:
            return NotImplemented
        return _result(self.data - other.data, (self, other), "-", Value._sub_backward)

    @staticmethod
    def _sub_backward(node: Value, upstream: float) -> tuple:
        # d(a - b)/da = 1,  d(a - b)/db = -1
        return (upstream, -upstream)

    def __rsub__(self, other: Number) -> Value:
        other = _as_value(other)
        if other is None:
            return NotImplemented
        return other - self

    def __neg__(self) -> Value:
        return _result(-self.data, (self,), "neg", Value._neg_backward)

    @staticmethod
    def _neg_backward(node: Value, upstream: float) -> tuple:
        # d(-a)/da = -1
        return (-upstream,)

    # ---- multiplication and division --------------------------------------

    def __mul__(self, other: ValueLike) -> Value:
        other = _as_value(other)
        if other is None:
            return NotImplemented
        return _result(self.data * other.data, (self, other), "*", Value._mul_backward)

    @staticmethod
    def _mul_backward(node: Value, upstream: float) -> tuple:
        # d(a * b)/da = b,  d(a * b)/db = a: each factor gets the *other* one
        a, b = node.parents
        return (b.data * upstream, a.data * upstream)

    def __rmul__(self, other: Number) -> Value:
        other = _as_value(other)
        if other is None:
            return NotImplemented
        return other * self

    def __truediv__(self, other: ValueLike) -> Value:
        other = _as_value(other)
        if other is None:
            return NotImplemented
        if other.data == 0.0:
            raise ValueError(f"/: division by zero ({self.data!r} / 0.0)")
        return _result(self.data / other.data, (self, other), "/", Value._div_backward)

    @staticmethod
    def _div_backward(node: Value, upstream: float) -> tuple:
        # d(a / b)/da = 1 / b,  d(a / b)/db = -a / b^2
        a, b = node.parents
        # (divided by b twice, not by b * b, which can round to 0.0 for a tiny b)
        return (upstream / b.data, -upstream * a.data / b.data / b.data)

    def __rtruediv__(self, other: Number) -> Value:
        other = _as_value(other)
        if other is None:
            return NotImplemented
        return other / self

    # ---- powers -------------------------------------------------------------

    def __pow__(self, exponent: ValueLike) -> Value:
        if isinstance(exponent, Value):
            return Value._value_pow(self, exponent)
        if not isinstance(exponent, (int, float)) or isinstance(exponent, bool):
            return NotImplemented
        _check_pow_domain(self.data, exponent)
        return _result(_float_pow(self.data, exponent), (self,), f"**{exponent:g}", Value._pow_backward, saved=float(exponent))

    @staticmethod
    def _pow_backward(node: Value, upstream: float) -> tuple:
        # d(a^n)/da = n * a^(n-1); for n = 0 the slope is 0 whatever the upstream
        # (0 * inf would be NaN), as PyTorch gives
        (a,) = node.parents
        return (0.0 if node.saved == 0 else _power_slope(a.data, node.saved) * upstream,)

    def __rpow__(self, base: Number) -> Value:
        base = _as_value(base)
        if base is None:
            return NotImplemented
        return Value._value_pow(base, self)

    @staticmethod
    def _value_pow(base: Value, exponent: Value) -> Value:
        """``base ** exponent`` where the exponent is itself a Value.

        Its derivative with respect to the exponent is a^b ln(a), which needs
        a > 0 (or a = 0 with b > 0); a negative base is refused here instead of
        producing a NaN gradient later.
        """
        if base.data < 0.0:
            raise ValueError(
                f"**: base {base.data!r} is negative and the exponent is a Value: d(a^b)/db = a^b ln(a) "
                "needs a > 0 (use a plain number as exponent if it is a constant)"
            )
        _check_pow_domain(base.data, exponent.data)
        return _result(_float_pow(base.data, exponent.data), (base, exponent), "**", Value._value_pow_backward)

    @staticmethod
    def _value_pow_backward(node: Value, upstream: float) -> tuple:
        # d(a^b)/da = b * a^(b-1) (0 where b = 0),  d(a^b)/db = a^b * ln(a)
        a, b = node.parents
        slope_base = 0.0 if b.data == 0 else _power_slope(a.data, b.data) * upstream
        if a.data == 0.0:
            # ln(0) = -inf; the exponent's slope is taken as 0 there (PyTorch's convention), and
            # still multiplies the upstream (an infinite one gives NaN); 0 ** NaN's slope is NaN
            return (slope_base, (0.0 if b.data >= 0.0 else math.nan) * upstream)
        slope_exponent = node.data * math.log(a.data)
        return (slope_base, slope_exponent * upstream)

    # ---- elementary functions -------------------------------------------

    def exp(self) -> Value:
        try:
            result = math.exp(self.data)
        except OverflowError:
            raise ValueError(
                f"exp: exp({self.data!r}) overflows a float (exp(x) exceeds 1.8e308 for x > 709.78)"
            ) from None
        return _result(result, (self,), "exp", Value._exp_backward)

    @staticmethod
    def _exp_backward(node: Value, upstream: float) -> tuple:
        # d(e^a)/da = e^a, which is the node's own value
        return (node.data * upstream,)

    def log(self) -> Value:
        if self.data <= 0.0:
            raise ValueError(
                f"log: expected a positive number, got {self.data!r} (log x is defined for x > 0 only)"
            )
        return _result(math.log(self.data), (self,), "log", Value._log_backward)

    @staticmethod
    def _log_backward(node: Value, upstream: float) -> tuple:
        # d(ln a)/da = 1 / a
        (a,) = node.parents
        return (upstream / a.data,)

    def sqrt(self) -> Value:
        if self.data < 0.0:
            raise ValueError(
                f"sqrt: expected a number >= 0, got {self.data!r} (the square root of a negative number is not real)"
            )
        return _result(math.sqrt(self.data), (self,), "sqrt", Value._sqrt_backward)

    @staticmethod
    def _sqrt_backward(node: Value, upstream: float) -> tuple:
        # d(sqrt a)/da = 1 / (2 sqrt a); +inf at a = 0, as in PyTorch
        if node.data == 0.0:  # +inf, and -inf for sqrt(-0.0) = -0.0; times a 0 upstream NaN, as PyTorch
            return (math.copysign(math.inf, node.data) * upstream,)
        return (upstream / (2.0 * node.data),)

    def tanh(self) -> Value:
        return _result(math.tanh(self.data), (self,), "tanh", Value._tanh_backward)

    @staticmethod
    def _tanh_backward(node: Value, upstream: float) -> tuple:
        # d(tanh a)/da = 1 - tanh(a)^2
        return ((1.0 - node.data * node.data) * upstream,)

    def sigmoid(self) -> Value:
        x = self.data
        # 1 / (1 + e^-x), written so that e^(large) is never formed
        if x >= 0.0:
            result = 1.0 / (1.0 + math.exp(-x))
        else:
            e = math.exp(x)
            result = e / (1.0 + e)
        return _result(result, (self,), "sigmoid", Value._sigmoid_backward)

    @staticmethod
    def _sigmoid_backward(node: Value, upstream: float) -> tuple:
        # d(sigma(a))/da = sigma(a) * (1 - sigma(a))
        s = node.data
        return (s * (1.0 - s) * upstream,)

    def relu(self) -> Value:
        # negative numbers become 0; -0.0 and NaN pass through unchanged, as in PyTorch
        return _result(0.0 if self.data < 0.0 else self.data, (self,), "relu", Value._relu_backward)

    @staticmethod
    def _relu_backward(node: Value, upstream: float) -> tuple:
        # d(max(0, a))/da = 1 if a > 0 else 0 (0 at a = 0; 1 at NaN, as in PyTorch)
        (a,) = node.parents
        return (0.0 if a.data <= 0.0 else upstream,)

    def abs(self) -> Value:
        return _result(abs(self.data), (self,), "abs", Value._abs_backward)

    @staticmethod
    def _abs_backward(node: Value, upstream: float) -> tuple:
        # d|a|/da = sign(a) (0 at a = 0, as in PyTorch)
        (a,) = node.parents
        sign = 1.0 if a.data > 0.0 else (-1.0 if a.data < 0.0 else 0.0)
        return (sign * upstream,)

    __abs__ = abs


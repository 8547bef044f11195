"""The scalar engine (tinyad.Value) against PyTorch autograd, finite differences
and hand-known values; its error cases; and heavily reused nodes."""
from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, find, given, settings

import tinyad
from tinyad import Value
from tinyad.check import gradcheck

from oracle import Expression, assert_matches_torch, close, expressions, run_tinyad, run_torch


# --------------------------------------------------------------------------
# Every operation, value and gradient, against torch autograd
# --------------------------------------------------------------------------

UNARY_OPS = {
    "neg": (lambda a: -a, [1.5, -0.25, 0.0]),
    "exp": (lambda a: a.exp(), [0.0, 1.3, -2.7, 20.0, -30.0]),
    "log": (lambda a: a.log(), [1.0, 0.37, 5.5, 1e-8, 1e8]),
    "tanh": (lambda a: a.tanh(), [0.0, 0.4, -1.7, 5.0, -20.0]),
    "sigmoid": (lambda a: a.sigmoid(), [0.0, 0.8, -2.3, 10.0, -10.0]),
    "relu": (lambda a: a.relu(), [1.2, -0.6, 3.0]),
    "sqrt": (lambda a: a.sqrt(), [4.0, 0.3, 1e-6, 2.0]),
    "abs_method": (lambda a: a.abs(), [1.4, -2.2]),
    "abs_builtin": (lambda a: abs(a), [1.4, -2.2]),
}

BINARY_OPS = {
    "v+w": lambda a, b: a + b,
    "v-w": lambda a, b: a - b,
    "v*w": lambda a, b: a * b,
    "v/w": lambda a, b: a / b,
}
BINARY_POINTS = [(1.5, -0.7), (-2.0, 3.25), (0.3, 0.3), (0.0, 4.0)]

# (function of one input, points) for ops with a plain number on one side
WITH_NUMBER = {
    "v+2": (lambda a: a + 2, [1.5, -3.0]),
    "2+v": (lambda a: 2 + a, [1.5, -3.0]),
    "v-2": (lambda a: a - 2, [1.5, -3.0]),
    "2-v": (lambda a: 2 - a, [1.5, -3.0]),
    "v*2": (lambda a: a * 2, [1.5, -3.0]),
    "2*v": (lambda a: 2 * a, [1.5, -3.0]),
    "v/2": (lambda a: a / 2, [1.5, -3.0]),
    "2/v": (lambda a: 2 / a, [1.5, -3.0]),
    "2.5*v+0.5": (lambda a: 2.5 * a + 0.5, [1.5, -3.0]),
    "v**2": (lambda a: a**2, [1.5, -3.0, 0.0]),
    "v**3": (lambda a: a**3, [1.5, -3.0, 0.0]),
    "v**-1.5": (lambda a: a**-1.5, [0.5, 2.0]),
    "v**0.5": (lambda a: a**0.5, [0.5, 2.0]),
    "v**-2": (lambda a: a**-2, [0.5, -2.0]),
    "v**0": (lambda a: a**0, [0.5, -2.0]),
    "v**1": (lambda a: a**1, [0.5, -2.0]),
    "2**v": (lambda a: 2**a, [1.5, -3.0, 0.0]),
    "0.5**v": (lambda a: 0.5**a, [1.5, -3.0]),
    "2.0**v": (lambda a: 2.0**a, [1.5, -3.0]),
    "v**v": (lambda a: a**a, [1.5, 0.2]),
    "v+v": (lambda a: a + a, [1.5, -3.0]),
    "v-v": (lambda a: a - a, [1.5, -3.0]),
    "v*v": (lambda a: a * a, [1.5, -3.0]),
    "v/v": (lambda a: a / a, [1.5, -3.0]),
}


@pytest.mark.parametrize(
    "fn, x",
    [pytest.param(fn, x, id=f"{name}({x})") for name, (fn, xs) in UNARY_OPS.items() for x in xs],
)
def test_unary_op_value_and_gradient_match_torch(fn, x):
    assert_matches_torch(fn, x)


@pytest.mark.parametrize(
    "fn, x, y",
    [
        pytest.param(fn, x, y, id=f"{name}({x},{y})")
        for name, fn in BINARY_OPS.items()
        for x, y in BINARY_POINTS
    ],
)
def test_binary_op_value_and_both_gradients_match_torch(fn, x, y):
    assert_matches_torch(fn, x, y)


@pytest.mark.parametrize(
    "x, y", [(1.5, 2.0), (2.0, -0.5), (0.3, 3.7), (7.0, 0.0), (1.0, 2.5), (0.0, 2.0), (0.0, 0.5)]
)
def test_value_to_the_value_power_matches_torch_in_base_and_exponent(x, y):
    assert_matches_torch(lambda a, b: a**b, x, y)


@pytest.mark.parametrize(
    "fn, x",
    [pytest.param(fn, x, id=f"{name}({x})") for name, (fn, xs) in WITH_NUMBER.items() for x in xs],
)
def test_op_with_a_plain_number_or_the_same_value_on_either_side_matches_torch(fn, x):
    assert_matches_torch(fn, x)


def test_plain_number_operand_becomes_a_constant_leaf_input():
    x = Value(3.0)
    y = 2 - x
    assert y.data == -1.0
    assert len(y.parents) == 2 and y.parents[1] is x
    assert y.parents[0].data == 2.0 and y.parents[0].parents == ()


def test_unsupported_operand_type_raises_type_error():
    with pytest.raises(TypeError):
        Value(1.0) + "2"
    with pytest.raises(TypeError):
        Value(1.0) * None


def test_backward_with_a_seed_scales_every_gradient_like_torch():
    x, y = Value(0.7), Value(-1.2)
    (x * y.tanh() + x.exp()).backward(2.5)
    _, (gx, gy) = run_torch(lambda a, b: a * b.tanh() + a.exp(), 0.7, -1.2)
    assert close(x.grad, 2.5 * gx, 1e-12, 0.0)
    assert close(y.grad, 2.5 * gy, 1e-12, 0.0)


# --------------------------------------------------------------------------
# Points where PyTorch has a convention
# --------------------------------------------------------------------------


def test_relu_gradient_at_zero_is_zero_like_torch():
    assert run_torch(lambda a: a.relu(), 0.0)[1] == [0.0]
    assert run_tinyad(lambda a: a.relu(), 0.0) == (0.0, [0.0])


def test_abs_gradient_at_zero_is_zero_like_torch():
    assert run_torch(lambda a: a.abs(), 0.0)[1] == [0.0]
    assert run_tinyad(lambda a: a.abs(), 0.0) == (0.0, [0.0])
    assert run_tinyad(lambda a: abs(a), 0.0) == (0.0, [0.0])


@pytest.mark.parametrize("x", [-1000.0, -700.0, -40.0, 40.0, 700.0, 1000.0])
def test_sigmoid_at_large_magnitude_is_finite_and_matches_torch(x):
    value, (grad,) = run_tinyad(lambda a: a.sigmoid(), x)
    assert math.isfinite(value) and math.isfinite(grad)
    assert 0.0 <= value <= 1.0 and grad >= 0.0
    assert_matches_torch(lambda a: a.sigmoid(), x)


@pytest.mark.parametrize(
    "name, fn",
    [
        ("sqrt", lambda a: a.sqrt()),
        ("v**0.5", lambda a: a**0.5),
        ("v**0", lambda a: a**0),
        ("v**1", lambda a: a**1),
        ("v**2", lambda a: a**2),
    ],
)
def test_power_gradient_at_zero_base_follows_torch_convention(name, fn):
    assert_matches_torch(fn, 0.0)


@pytest.mark.parametrize("exponent", [2.0, 0.5, 0.0])
def test_value_power_at_zero_base_has_exponent_gradient_zero_like_torch(exponent):
    assert run_tinyad(lambda a, b: a**b, 0.0, exponent)[1][1] == 0.0
    assert_matches_torch(lambda a, b: a**b, 0.0, exponent)


# --------------------------------------------------------------------------
# Random expression DAGs
# --------------------------------------------------------------------------

RANDOM = settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@RANDOM
@given(expressions())
def test_random_expression_value_and_input_gradients_match_torch(expr: Expression):
    assert_matches_torch(expr, *expr.inputs, rel=1e-9, abs_=1e-9)


@RANDOM
@given(expressions())
def test_random_expression_gradients_pass_finite_difference_gradcheck(expr: Expression):
    assert gradcheck(expr, [Value(x) for x in expr.inputs]) is True


def test_the_random_expressions_reach_depth_30_and_share_subexpressions():
    # what the two random tests above rely on: the strategy does produce deep
    # chains and DAGs (hypothesis.find raises if no example has the property)
    deepest = find(expressions(), lambda expr: expr.depth() == 30)
    assert_matches_torch(deepest, *deepest.inputs, rel=1e-9, abs_=1e-9)
    second = find(expressions(), lambda expr: expr.depth() >= 10 and expr.chain_as_second_operand())
    assert_matches_torch(second, *second.inputs, rel=1e-9, abs_=1e-9)
    shared = find(expressions(), lambda expr: expr.most_uses() >= 3 and expr.depth() >= 10)
    nodes = shared.evaluate([Value(x) for x in shared.inputs])
    consumers = [sum(p is n for m in nodes for p in m.parents) for n in nodes]
    assert max(consumers) >= 3  # the engine's graph has the shared node too
    assert_matches_torch(shared, *shared.inputs, rel=1e-9, abs_=1e-9)


def test_random_expressions_reuse_subexpressions():
    # the strategy must produce DAGs, not only trees: some node feeds two consumers
    expr = Expression((0.5,), (("tanh", 0), ("mul", 1, 1), ("add", 2, 1)))
    nodes = expr.evaluate([Value(0.5)])
    consumers = [sum(p is n for m in nodes for p in m.parents) for n in nodes]
    assert max(consumers) >= 2
    assert_matches_torch(expr, 0.5)


# --------------------------------------------------------------------------
# One node reused many times
# --------------------------------------------------------------------------


def test_node_added_to_itself_a_thousand_times_has_gradient_one_thousand():
    x = Value(0.3)
    total = x
    for _ in range(999):
        total = total + x
    total.backward()
    assert x.grad == 1000.0
    assert close(total.data, 300.0, 1e-12, 0.0)


def test_builtin_sum_over_a_thousand_copies_has_gradient_one_thousand():
    x = Value(-1.25)
    total = sum([x] * 1000)
    total.backward()
    assert x.grad == 1000.0


def test_node_multiplied_by_itself_ten_times_has_gradient_of_x_to_the_tenth():
    x0 = 1.1
    x = Value(x0)
    product = x
    for _ in range(9):
        product = product * x
    product.backward()
    assert close(product.data, x0**10, 1e-12, 0.0)
    assert close(x.grad, 10 * x0**9, 1e-12, 0.0)


def test_intermediate_reused_a_thousand_times_matches_torch():
    def fn(a):
        h = a.sigmoid()
        total = h
        for _ in range(999):
            total = total + h
        return total * h

    assert_matches_torch(fn, 0.4, rel=1e-10)


def test_diamond_of_reused_intermediates_matches_torch():
    def fn(a, b):
        t = (a * b).tanh()
        u = t * t + t
        return u * t - (u + b).sigmoid() * a

    assert_matches_torch(fn, 0.9, -0.4)


# --------------------------------------------------------------------------
# Error cases: each is a ValueError naming the op, and the engine still works
# --------------------------------------------------------------------------


def assert_engine_still_works():
    """A fresh small computation after an error gives torch's gradients."""
    assert tinyad.is_grad_enabled()
    assert_matches_torch(lambda a, b: (a * b + a.exp()).tanh() * b, 0.3, -1.1)


def test_log_of_negative_number_raises_value_error_naming_log_and_value():
    with pytest.raises(ValueError, match=r"log.*-2\.5"):
        Value(-2.5).log()
    assert_engine_still_works()


def test_log_of_zero_raises_value_error_naming_log_and_value():
    with pytest.raises(ValueError, match=r"log.*0\.0"):
        Value(0.0).log()
    assert_engine_still_works()


def test_sqrt_of_negative_number_raises_value_error_naming_sqrt_and_value():
    with pytest.raises(ValueError, match=r"sqrt.*-4\.0"):
        Value(-4.0).sqrt()
    assert_engine_still_works()


def test_zero_to_a_negative_power_raises_value_error():
    with pytest.raises(ValueError, match=r"\*\*.*0\.0.*-1"):
        Value(0.0) ** -1
    assert_engine_still_works()


def test_zero_to_a_negative_value_power_raises_value_error():
    with pytest.raises(ValueError, match=r"\*\*.*0\.0.*-1"):
        Value(0.0) ** Value(-1.0)
    assert_engine_still_works()


def test_negative_base_with_fractional_exponent_raises_value_error():
    with pytest.raises(ValueError, match=r"\*\*.*-8\.0.*0\.5"):
        Value(-8.0) ** 0.5
    assert_engine_still_works()


def test_negative_base_with_value_exponent_raises_value_error():
    with pytest.raises(ValueError, match=r"\*\*.*-2\.0.*negative"):
        Value(-2.0) ** Value(2.0)
    assert_engine_still_works()


def test_negative_number_to_a_value_power_raises_value_error():
    with pytest.raises(ValueError, match=r"\*\*.*negative"):
        (-2) ** Value(2.0)
    assert_engine_still_works()


@pytest.mark.parametrize(
    "divide",
    [
        pytest.param(lambda: Value(1.5) / Value(0.0), id="value/value"),
        pytest.param(lambda: Value(1.5) / 0, id="value/number"),
        pytest.param(lambda: 1.5 / Value(0.0), id="number/value"),
    ],
)
def test_division_by_zero_raises_value_error(divide):
    with pytest.raises(ValueError, match=r"/.*division by zero"):
        divide()
    assert_engine_still_works()


def test_exp_overflow_raises_value_error_naming_exp_and_value():
    with pytest.raises(ValueError, match=r"exp.*1000"):
        Value(1000.0).exp()
    assert_engine_still_works()


def test_failed_op_inside_a_graph_leaves_the_graph_usable():
    x = Value(0.5)
    h = x.tanh() * 3.0
    with pytest.raises(ValueError):
        (h - 10.0).log()
    out = h * x
    out.backward()
    _, (expected,) = run_torch(lambda a: a.tanh() * 3.0 * a, 0.5)
    assert close(x.grad, expected, 1e-12, 0.0)

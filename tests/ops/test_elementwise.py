"""Elementwise ops (tinyad/ops/elementwise.py) against PyTorch autograd, float64: + - * / with
broadcasting, Python numbers on either side, powers, the elementwise functions, maximum,
minimum and where. Each test runs the same computation in tinyad and in torch, backpropagates
``(out * W).sum()`` for a fixed non-trivial ``W`` in both, and compares the output and every
input's gradient (see ``tensor_oracle``).
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinyad
from tinyad import Tensor

from tensor_oracle import (
    arrays,
    arrays_of_any_shape,
    assert_matches_torch,
    away_from_zero,
    broadcastable_pair,
    floats,
    shapes,
    upstream_weights,
)

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FEW = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])

RNG_SEED = 20240601


def fixed(shape, low=-2.0, high=2.0, seed=0):
    return np.random.default_rng(RNG_SEED + seed).uniform(low, high, size=shape)


# ==========================================================================
# + - * / between tensors, with broadcasting in both directions
# ==========================================================================

BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
}


@pytest.mark.parametrize("name", ["add", "sub", "mul"])
@SETTINGS
@given(pair=broadcastable_pair())
def test_binary_op_on_broadcastable_shapes_gradients_match_torch(name, pair):
    assert_matches_torch(BINARY[name], pair)


@SETTINGS
@given(pair=broadcastable_pair(second_elements=away_from_zero()))
def test_division_on_broadcastable_shapes_gradients_match_torch(pair):
    assert_matches_torch(BINARY["div"], pair)


@pytest.mark.parametrize(
    "name, first, second",
    [
        ("add", (3, 1), (1, 4)),
        ("add", (1, 4), (3, 1)),
        ("sub", (3, 1), (1, 4)),
        ("sub", (2, 3), ()),
        ("sub", (), (2, 3)),
        ("mul", (4,), (2, 3, 4)),
        ("mul", (2, 3, 4), (4,)),
        ("mul", (2, 1, 4), (3, 1)),
        ("div", (2, 3, 4), (3, 1)),
        ("div", (3, 1), (2, 3, 4)),
        ("div", (1,), (5,)),
    ],
)
def test_binary_op_named_broadcast_pair_gradients_reduce_to_input_shapes(name, first, second):
    a = fixed(first, seed=1)
    b = fixed(second, 0.5, 2.0, seed=2) * np.where(fixed(second, seed=3) > 0, 1.0, -1.0)
    ours = assert_matches_torch(BINARY[name], [a, b])
    assert ours.grads[0].shape == first
    assert ours.grads[1].shape == second


@pytest.mark.parametrize("name", ["add", "sub", "mul", "div"])
def test_binary_op_with_the_same_tensor_on_both_sides_matches_torch(name):
    x = fixed((2, 3), 0.5, 2.0, seed=4)
    assert_matches_torch(lambda a: BINARY[name](a, a), [x])


@pytest.mark.parametrize("flags", [(True, False), (False, True)], ids=["left-only", "right-only"])
@pytest.mark.parametrize("name", ["add", "sub", "mul", "div"])
def test_binary_op_gradient_only_to_the_input_that_requires_it(name, flags):
    a, b = fixed((2, 3), seed=5), fixed((3,), 0.5, 2.0, seed=6)
    assert_matches_torch(BINARY[name], [a, b], requires_grad=flags)


def test_unary_negation_gradients_match_torch():
    assert_matches_torch(lambda a: -a, [fixed((2, 3), seed=7)])


@SETTINGS
@given(x=arrays_of_any_shape())
def test_unary_negation_on_random_shapes_matches_torch(x):
    assert_matches_torch(lambda a: -(-a * 2.0), [x])


# ==========================================================================
# Python numbers on either side, and powers
# ==========================================================================

NUMBER_CASES = [
    # id, function, domain of the tensor's values
    ("t+2.5", lambda t: t + 2.5, "any"),
    ("2.5+t", lambda t: 2.5 + t, "any"),
    ("t+3(int)", lambda t: t + 3, "any"),
    ("t-2.5", lambda t: t - 2.5, "any"),
    ("2.5-t", lambda t: 2.5 - t, "any"),
    ("t*-1.75", lambda t: t * -1.75, "any"),
    ("-1.75*t", lambda t: -1.75 * t, "any"),
    ("3*t(int)", lambda t: 3 * t, "any"),
    ("t/2.5", lambda t: t / 2.5, "any"),
    ("2.5/t", lambda t: 2.5 / t, "nonzero"),
    ("-3/t(int)", lambda t: -3 / t, "nonzero"),
    ("t**2", lambda t: t**2, "any"),
    ("t**3", lambda t: t**3, "any"),
    ("t**1", lambda t: t**1, "any"),
    ("t**0", lambda t: t**0, "any"),
    ("t**-1", lambda t: t**-1, "nonzero"),
    ("t**-2", lambda t: t**-2, "nonzero"),
    ("t**2.0(float-int)", lambda t: t**2.0, "any"),
    ("t**0.5", lambda t: t**0.5, "positive"),
    ("t**1.5", lambda t: t**1.5, "positive"),
    ("t**-2.5", lambda t: t**-2.5, "positive"),
    ("2.5**t", lambda t: 2.5**t, "any"),
    ("0.5**t", lambda t: 0.5**t, "any"),
    ("2**t(int)", lambda t: 2**t, "any"),
]

DOMAINS = {
    "any": floats(-3.0, 3.0),
    "nonzero": away_from_zero(0.3, 3.0),
    "positive": floats(0.1, 3.0),
}


@pytest.mark.parametrize("fn, domain", [c[1:] for c in NUMBER_CASES], ids=[c[0] for c in NUMBER_CASES])
@FEW
@given(data=st.data())
def test_op_with_python_number_gradients_match_torch(fn, domain, data):
    x = data.draw(arrays(shapes(0, 3), DOMAINS[domain]))
    assert_matches_torch(fn, [x])


@pytest.mark.parametrize("flags", [(True, True), (True, False), (False, True)], ids=["both", "base", "exponent"])
@SETTINGS
@given(pair=broadcastable_pair(first_elements=floats(0.1, 3.0), second_elements=floats(-2.0, 2.0)))
def test_tensor_power_with_positive_base_gradients_match_torch(flags, pair):
    assert_matches_torch(lambda a, b: a**b, pair, requires_grad=flags)


def test_tensor_power_exponent_gradient_at_zero_base_matches_torch():
    base = np.array([0.0, 0.0, 2.0])
    exponent = np.array([2.0, 3.5, 1.5])
    assert_matches_torch(lambda a, b: a**b, [base, exponent])


def test_power_of_zero_base_with_half_exponent_has_infinite_gradient_like_torch():
    assert_matches_torch(lambda a: a**0.5, [np.array([0.0, 4.0])])


def test_power_gradient_at_zero_base_is_infinite_without_a_runtime_warning():
    x = Tensor([0.0, 4.0], requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # +inf is the intended answer, as for sqrt
        (x**0.5).sum().backward()
    assert x.grad[0] == np.inf and x.grad[1] == 0.25


# ==========================================================================
# Elementwise functions
# ==========================================================================

UNARY = {
    "exp": (lambda t: t.exp(), floats(-3.0, 3.0)),
    "log": (lambda t: t.log(), floats(0.05, 5.0)),
    "tanh": (lambda t: t.tanh(), floats(-4.0, 4.0)),
    "sigmoid": (lambda t: t.sigmoid(), floats(-30.0, 30.0)),
    "relu": (lambda t: t.relu(), floats(-3.0, 3.0)),
    "sqrt": (lambda t: t.sqrt(), floats(0.01, 5.0)),
    "abs": (lambda t: t.abs(), floats(-3.0, 3.0)),
    "builtin-abs": (lambda t: abs(t), floats(-3.0, 3.0)),
}


@pytest.mark.parametrize("name", list(UNARY))
@SETTINGS
@given(data=st.data())
def test_elementwise_function_gradients_match_torch(name, data):
    fn, elements = UNARY[name]
    x = data.draw(arrays(shapes(0, 3), elements))
    assert_matches_torch(fn, [x])


@pytest.mark.parametrize("name", ["relu", "abs"])
def test_relu_and_abs_gradient_at_exactly_zero_is_zero_like_torch(name):
    assert_matches_torch(UNARY[name][0], [np.array([-1.0, 0.0, 1.0])])


def test_sqrt_gradient_at_zero_is_infinite_like_torch():
    assert_matches_torch(lambda t: t.sqrt(), [np.array([0.0, 1.0])])


@FEW
@given(x=arrays(st.integers(1, 5), st.one_of(floats(-700.0, -20.0), floats(20.0, 700.0))))
def test_sigmoid_at_large_magnitudes_keeps_relative_precision_like_torch(x):
    # sigmoid(-40) is about 4e-18: it must not round to 0 (a later log would fail)
    assert_matches_torch(lambda t: t.sigmoid(), [x], rtol=1e-12, atol=0.0)


def test_sigmoid_of_very_negative_input_is_positive_so_its_log_is_finite():
    x = np.array([-40.0, -100.0])
    assert_matches_torch(lambda t: t.sigmoid().log(), [x], rtol=1e-12, atol=0.0)


# ==========================================================================
# maximum, minimum, where
# ==========================================================================

EXTREMA = {
    "maximum": (tinyad.maximum, torch.maximum),
    "minimum": (tinyad.minimum, torch.minimum),
}


@pytest.mark.parametrize("name", list(EXTREMA))
@SETTINGS
@given(pair=broadcastable_pair())
def test_maximum_minimum_gradients_match_torch(name, pair):
    ours, theirs = EXTREMA[name]
    assert_matches_torch(ours, pair, torch_fn=theirs)


@pytest.mark.parametrize("name", list(EXTREMA))
@SETTINGS
@given(pair=broadcastable_pair(first_elements=st.sampled_from([-1.0, 0.0, 2.0]),
                               second_elements=st.sampled_from([-1.0, 0.0, 2.0])))
def test_maximum_minimum_ties_split_gradient_like_torch(name, pair):
    ours, theirs = EXTREMA[name]
    assert_matches_torch(ours, pair, torch_fn=theirs)


def test_maximum_tie_gives_each_input_half_the_gradient():
    a, b = np.array([1.0, 2.0, 3.0]), np.array([1.0, 5.0, 0.0])
    run = assert_matches_torch(tinyad.maximum, [a, b], torch_fn=torch.maximum)
    w = upstream_weights((3,))
    np.testing.assert_allclose(run.grads[0], [w[0] / 2, 0.0, w[2]])
    np.testing.assert_allclose(run.grads[1], [w[0] / 2, w[1], 0.0])


@pytest.mark.parametrize("name", list(EXTREMA))
@pytest.mark.parametrize("side", ["number-right", "number-left"])
def test_maximum_minimum_with_python_number_match_torch(name, side):
    ours, theirs = EXTREMA[name]
    x = np.array([-1.0, 0.5, 2.0, 0.5])
    if side == "number-right":
        assert_matches_torch(lambda t: ours(t, 0.5), [x],
                             torch_fn=lambda t: theirs(t, torch.tensor(0.5, dtype=torch.float64)))
    else:
        assert_matches_torch(lambda t: ours(0.5, t), [x],
                             torch_fn=lambda t: theirs(torch.tensor(0.5, dtype=torch.float64), t))


@st.composite
def where_operands(draw):
    shapes_ = draw(hnp.mutually_broadcastable_shapes(num_shapes=3, min_dims=0, max_dims=3, max_side=3))
    cond_shape, x_shape, y_shape = shapes_.input_shapes
    cond = draw(hnp.arrays(np.bool_, cond_shape))
    return cond, draw(arrays(x_shape)), draw(arrays(y_shape))


@SETTINGS
@given(operands=where_operands())
def test_where_with_broadcasting_gradients_match_torch(operands):
    cond, x, y = operands
    assert_matches_torch(
        lambda a, b: tinyad.where(cond, a, b), [x, y],
        torch_fn=lambda a, b: torch.where(torch.tensor(cond), a, b),
    )


def test_where_with_tensor_condition_from_comparison_matches_torch():
    x, y = fixed((3, 4), seed=12), fixed((4,), seed=13)
    assert_matches_torch(lambda a, b: tinyad.where(a > b, a * 2.0, b), [x, y],
                         torch_fn=lambda a, b: torch.where(a > b, a * 2.0, b))


@pytest.mark.parametrize("side", ["x-number", "y-number"])
def test_where_with_python_number_branch_matches_torch(side):
    x = fixed((2, 3), seed=14)
    if side == "x-number":
        ours = lambda t: tinyad.where(t > 0, 0.25, t)  # noqa: E731
        theirs = lambda t: torch.where(t > 0, 0.25, t)  # noqa: E731
    else:
        ours = lambda t: tinyad.where(t > 0, t, 0.25)  # noqa: E731
        theirs = lambda t: torch.where(t > 0, t, 0.25)  # noqa: E731
    assert_matches_torch(ours, [x], torch_fn=theirs)

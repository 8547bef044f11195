"""Every Tensor operation against PyTorch autograd (float64), plus finite
differences for composite functions, construction semantics, and deep graphs.

Each test runs the same computation in tinyad and in torch, backpropagates
``(out * W).sum()`` for a fixed non-trivial ``W`` in both, and compares the
output and the gradient of every input (see ``tensor_oracle``).
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinyad
from tinyad import Tensor
from tinyad.check import gradcheck

from tensor_oracle import (
    arrays,
    arrays_of_any_shape,
    assert_close,
    assert_matches_torch,
    away_from_zero,
    axis_count,
    axis_for,
    broadcastable_pair,
    floats,
    shapes,
    torch_dim,
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
# Matrix multiplication
# ==========================================================================


@st.composite
def matmul_operands(draw, kind):
    n, k, m = (draw(st.integers(1, 4)) for _ in range(3))
    if kind in ("batched", "1d@batched", "batched@1d"):
        batch = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=2, max_side=3))
        left_batch, right_batch = batch.input_shapes
        if kind != "batched":
            left_batch = right_batch = draw(shapes(1, 2, max_side=3))
    shapes_ = {
        "1d@1d": ((k,), (k,)),
        "1d@2d": ((k,), (k, m)),
        "2d@1d": ((n, k), (k,)),
        "2d@2d": ((n, k), (k, m)),
        "batched": (left_batch + (n, k), right_batch + (k, m)) if kind == "batched" else None,
        "1d@batched": ((k,), right_batch + (k, m)) if kind == "1d@batched" else None,
        "batched@1d": (left_batch + (n, k), (k,)) if kind == "batched@1d" else None,
    }[kind]
    return [draw(arrays(shape)) for shape in shapes_]


MATMUL_KINDS = ["1d@1d", "1d@2d", "2d@1d", "2d@2d", "batched", "1d@batched", "batched@1d"]


@pytest.mark.parametrize("kind", MATMUL_KINDS)
@SETTINGS
@given(data=st.data())
def test_matmul_gradients_match_torch(kind, data):
    a, b = data.draw(matmul_operands(kind))
    ours = assert_matches_torch(lambda x, y: x @ y, [a, b])
    assert ours.grads[0].shape == a.shape and ours.grads[1].shape == b.shape


@pytest.mark.parametrize(
    "left, right",
    [
        ((2, 1, 3, 4), (5, 4, 2)),
        ((5, 4, 2), (2, 1, 2, 3)),
        ((1, 3, 4), (2, 4, 5)),
        ((4,), (2, 3, 4, 5)),
        ((2, 3, 4, 5), (5,)),
        ((3,), (3,)),
    ],
)
def test_matmul_batched_gradients_match_torch(left, right):
    assert_matches_torch(lambda x, y: x @ y, [fixed(left, seed=8), fixed(right, seed=9)])


def test_matmul_with_one_constant_operand_gradients_match_torch():
    a, b = fixed((3, 4), seed=10), fixed((4, 2), seed=11)
    assert_matches_torch(lambda x, y: x @ y, [a, b], requires_grad=(False, True))
    assert_matches_torch(lambda x, y: x @ y, [a, b], requires_grad=(True, False))


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


# ==========================================================================
# Reductions: sum, mean, var, max
# ==========================================================================


@st.composite
def reduction_case(draw, min_dims=0, elements=None):
    x = draw(arrays(shapes(min_dims, 4, max_side=3), elements))
    axis = draw(axis_for(x.ndim))
    keepdims = draw(st.booleans())
    return x, axis, keepdims


@pytest.mark.parametrize("reduction", ["sum", "mean"])
@SETTINGS
@given(case=reduction_case())
def test_sum_and_mean_over_axis_gradients_match_torch(reduction, case):
    x, axis, keepdims = case
    assert_matches_torch(lambda t: getattr(t, reduction)(axis=axis, keepdims=keepdims), [x],
                         torch_fn=lambda t: getattr(t, reduction)(dim=torch_dim(axis, t.ndim), keepdim=keepdims))


@pytest.mark.parametrize("correction", [0, 1])
@SETTINGS
@given(case=reduction_case(min_dims=1))
def test_var_over_axis_gradients_match_torch(correction, case):
    x, axis, keepdims = case
    assume(axis_count(x.shape, axis) > correction)
    assert_matches_torch(
        lambda t: t.var(axis=axis, keepdims=keepdims, correction=correction), [x],
        torch_fn=lambda t: torch.var(t, dim=torch_dim(axis, t.ndim), correction=correction, keepdim=keepdims),
    )


def test_var_default_correction_is_unbiased_like_torch():
    x = fixed((5,), seed=15)
    assert_matches_torch(lambda t: t.var(), [x], torch_fn=lambda t: t.var())


@SETTINGS
@given(case=reduction_case(min_dims=1))
def test_max_over_axis_gradients_match_torch_amax(case):
    x, axis, keepdims = case
    assert_matches_torch(lambda t: t.max(axis=axis, keepdims=keepdims), [x],
                         torch_fn=lambda t: torch.amax(t, dim=torch_dim(axis, t.ndim), keepdim=keepdims))


@SETTINGS
@given(case=reduction_case(min_dims=1, elements=st.sampled_from([-1.0, 0.5, 2.0])))
def test_max_with_ties_splits_gradient_like_torch_amax(case):
    x, axis, keepdims = case
    assert_matches_torch(lambda t: t.max(axis=axis, keepdims=keepdims), [x],
                         torch_fn=lambda t: torch.amax(t, dim=torch_dim(axis, t.ndim), keepdim=keepdims))


def test_max_of_three_tied_values_gives_each_a_third():
    x = Tensor([2.0, 5.0, 5.0, 1.0, 5.0], requires_grad=True)
    x.max().backward()
    t = torch.tensor([2.0, 5.0, 5.0, 1.0, 5.0], dtype=torch.float64, requires_grad=True)
    torch.amax(t, dim=0).backward()
    np.testing.assert_allclose(x.grad, t.grad.numpy(), rtol=1e-15)
    np.testing.assert_allclose(x.grad, [0, 1 / 3, 1 / 3, 0, 1 / 3], rtol=1e-15)


@pytest.mark.parametrize("op", ["sum", "mean", "max"])
@pytest.mark.parametrize("axis", [0, -1])
def test_reduction_over_axis_of_a_0d_tensor_matches_torch(op, axis):
    ours = {"sum": lambda t: t.sum(axis=axis), "mean": lambda t: t.mean(axis=axis),
            "max": lambda t: t.max(axis=axis)}[op]
    theirs = {"sum": lambda t: t.sum(dim=axis), "mean": lambda t: t.mean(dim=axis),
              "max": lambda t: torch.amax(t, dim=axis)}[op]
    assert_matches_torch(ours, [np.array(1.5)], torch_fn=theirs)


@pytest.mark.parametrize("op", ["sum", "mean"])
def test_reduction_of_a_0d_tensor_over_all_axes_matches_torch(op):
    assert_matches_torch(lambda t: getattr(t, op)(), [np.array(-2.5)])


# ==========================================================================
# Shape changes
# ==========================================================================


@st.composite
def reshape_case(draw):
    x = draw(arrays(shapes(0, 4, max_side=3)))
    dims = [d for d in x.shape if d != 1]
    dims = draw(st.permutations(dims)) if dims else []
    dims = list(dims) + [1] * draw(st.integers(0, 2))
    dims = draw(st.permutations(dims)) if dims else []
    target = list(dims)
    if target and draw(st.booleans()):
        target[draw(st.integers(0, len(target) - 1))] = -1
    return x, tuple(target)


@pytest.mark.parametrize("style", ["tuple", "ints"])
@SETTINGS
@given(case=reshape_case())
def test_reshape_gradients_match_torch(style, case):
    x, target = case
    if style == "tuple":
        fn = lambda t: t.reshape(target)  # noqa: E731
    else:
        fn = lambda t: t.reshape(*target)  # noqa: E731
    assert_matches_torch(fn, [x], torch_fn=lambda t: t.reshape(target))


@pytest.mark.parametrize("target", [(-1,), (3, -1), (-1, 2, 2), (2, 3, 2)])
def test_reshape_with_minus_one_gives_torch_shape_and_gradients(target):
    x = fixed((2, 6), seed=16)
    run = assert_matches_torch(lambda t: t.reshape(*target), [x])
    assert run.value.shape == torch.zeros(2, 6).reshape(*target).shape


@st.composite
def permute_case(draw):
    x = draw(arrays(shapes(1, 4, max_side=3)))
    order = draw(st.permutations(range(x.ndim)))
    order = tuple(d - x.ndim if draw(st.booleans()) else d for d in order)
    return x, order


@pytest.mark.parametrize("style", ["tuple", "ints"])
@SETTINGS
@given(case=permute_case())
def test_permute_gradients_match_torch(style, case):
    x, order = case
    fn = (lambda t: t.permute(order)) if style == "tuple" else (lambda t: t.permute(*order))
    assert_matches_torch(fn, [x], torch_fn=lambda t: t.permute(*order))


@SETTINGS
@given(data=st.data())
def test_transpose_two_axes_gradients_match_torch(data):
    x = data.draw(arrays(shapes(2, 4, max_side=3)))
    dim0 = data.draw(st.integers(-x.ndim, x.ndim - 1))
    dim1 = data.draw(st.integers(-x.ndim, x.ndim - 1))
    assert_matches_torch(lambda t: t.transpose(dim0, dim1), [x])


def test_transpose_default_swaps_last_two_axes_like_torch_mT():
    x = fixed((2, 3, 4), seed=17)
    assert_matches_torch(lambda t: t.transpose(), [x], torch_fn=lambda t: t.mT)


@SETTINGS
@given(x=arrays(shapes(2, 2)))
def test_T_of_a_matrix_gradients_match_torch(x):
    assert_matches_torch(lambda t: t.T, [x])


def test_T_of_3d_tensor_reverses_all_axes_like_torch_permute():
    x = fixed((2, 3, 4), seed=18)
    assert_matches_torch(lambda t: t.T, [x], torch_fn=lambda t: t.permute(2, 1, 0))


# ---- indexing ---------------------------------------------------------------

MASK = fixed((4, 5), seed=19) > 0

INDEX_CASES = [
    # id, tinyad index, torch index (None: the same object)
    ("int", 2, None),
    ("negative-int", -1, None),
    ("two-ints", (1, -2), None),
    ("slice", slice(1, 3), None),
    ("slice-step", (slice(None), slice(None, None, 2)), None),
    ("negative-slice", (slice(-3, None), slice(None, -1)), None),
    ("none", (None, 1), None),
    ("none-middle", (slice(None), None, slice(1, 4)), None),
    ("ellipsis", (Ellipsis, 3), None),
    ("int-list-repeated", [0, 2, 0, 0, 3], None),
    ("int-array-repeated", np.array([3, 1, 3]), torch.tensor([3, 1, 3])),
    ("int-array-2d-repeated", np.array([[0, 0], [1, 0]]), torch.tensor([[0, 0], [1, 0]])),
    ("two-int-arrays-repeated-pairs", ([0, 0, 2, 0], [1, 1, 4, 1]), None),
    ("bool-mask-full", MASK, torch.tensor(MASK)),
    ("bool-mask-rows", np.array([True, False, True, True]), torch.tensor([True, False, True, True])),
    ("mixed-array-slice", ([1, 1, 3], slice(0, 2)), None),
    ("mixed-slice-array", (slice(None), [4, 4, 0]), None),
    ("mixed-int-array", (2, [0, 0, 1]), None),
    ("mixed-none-int-slice", (None, -1, slice(1, None)), None),
]


@pytest.mark.parametrize("index, torch_index", [c[1:] for c in INDEX_CASES], ids=[c[0] for c in INDEX_CASES])
@FEW
@given(x=arrays((4, 5)))
def test_getitem_gradients_match_torch(index, torch_index, x):
    theirs = index if torch_index is None else torch_index
    assert_matches_torch(lambda t: t[index], [x], torch_fn=lambda t: t[theirs])


@SETTINGS
@given(x=arrays(shapes(1, 3, max_side=4)), data=st.data())
def test_getitem_random_integer_indices_with_repeats_accumulate_like_torch(x, data):
    n = x.shape[0]
    index = data.draw(st.lists(st.integers(-n, n - 1), min_size=1, max_size=8))
    assert_matches_torch(lambda t: t[index], [x], torch_fn=lambda t: t[torch.tensor(index)])


def test_getitem_with_boolean_tensor_mask_matches_torch():
    x = fixed((3, 4), seed=20)
    assert_matches_torch(lambda t: t[t > 0], [x], torch_fn=lambda t: t[t > 0])


def test_getitem_element_used_twice_gets_both_gradients():
    x = Tensor([1.0, 2.0, 3.0], requires_grad=True)
    (x[[0, 0, 2]] * Tensor([2.0, 5.0, 7.0])).sum().backward()
    np.testing.assert_array_equal(x.grad, [7.0, 0.0, 7.0])


# ---- concatenate and stack ----------------------------------------------------


@st.composite
def concatenate_case(draw):
    base = list(draw(shapes(1, 3, max_side=3)))
    axis = draw(st.integers(-len(base), len(base) - 1))
    count = draw(st.integers(1, 3))
    parts = []
    for _ in range(count):
        shape = list(base)
        shape[axis] = draw(st.integers(1, 3))
        parts.append(draw(arrays(tuple(shape))))
    return parts, axis


@SETTINGS
@given(case=concatenate_case())
def test_concatenate_gradients_match_torch_cat(case):
    parts, axis = case
    assert_matches_torch(lambda *ts: tinyad.concatenate(ts, axis=axis), parts,
                         torch_fn=lambda *ts: torch.cat(ts, dim=axis))


@st.composite
def stack_case(draw):
    shape = draw(shapes(0, 3, max_side=3))
    axis = draw(st.integers(-(len(shape) + 1), len(shape)))
    count = draw(st.integers(1, 3))
    return [draw(arrays(shape)) for _ in range(count)], axis


@SETTINGS
@given(case=stack_case())
def test_stack_gradients_match_torch_stack(case):
    parts, axis = case
    assert_matches_torch(lambda *ts: tinyad.stack(ts, axis=axis), parts,
                         torch_fn=lambda *ts: torch.stack(ts, dim=axis))


def test_concatenate_with_a_constant_part_sends_gradient_only_to_grad_inputs():
    parts = [fixed((2, 3), seed=21), fixed((1, 3), seed=22), fixed((2, 3), seed=23)]
    assert_matches_torch(lambda *ts: tinyad.concatenate(ts, axis=0), parts,
                         torch_fn=lambda *ts: torch.cat(ts, dim=0), requires_grad=(True, False, True))


def test_an_op_is_recorded_when_only_its_third_input_needs_a_gradient():
    # the third input sits in more_parents, not in the two parent slots
    parts = [fixed((2, 3), seed=25), fixed((2, 3), seed=26), fixed((2, 3), seed=27)]
    assert_matches_torch(lambda *ts: tinyad.stack(ts, axis=0), parts,
                         torch_fn=lambda *ts: torch.stack(ts, dim=0), requires_grad=(False, False, True))
    constants = [Tensor(part) for part in parts]
    assert not tinyad.concatenate(constants, axis=0).requires_grad


def test_stack_of_the_same_tensor_twice_adds_both_gradients_like_torch():
    x = fixed((2, 3), seed=24)
    assert_matches_torch(lambda t: tinyad.stack([t, t * 2.0], axis=1), [x],
                         torch_fn=lambda t: torch.stack([t, t * 2.0], dim=1))


# ==========================================================================
# Composite functions: torch and finite differences
# ==========================================================================


def _log_softmax_loss(logits, labels, lib):
    if lib == "tinyad":
        z = logits - logits.max(axis=1, keepdims=True)
        lse = z.exp().sum(axis=1).log()
    else:
        z = logits - torch.amax(logits, dim=1, keepdim=True)
        lse = z.exp().sum(dim=1).log()
    picked = z[list(range(logits.shape[0])), labels]
    return (lse - picked).mean()


def _batch_norm(x, gamma, beta, lib):
    if lib == "tinyad":
        mean, var = x.mean(axis=0, keepdims=True), x.var(axis=0, keepdims=True, correction=0)
    else:
        mean, var = x.mean(dim=0, keepdim=True), x.var(dim=0, keepdim=True, correction=0)
    return gamma * (x - mean) / (var + 1e-5).sqrt() + beta


def test_softmax_cross_entropy_composite_matches_torch():
    logits, labels = fixed((4, 5), seed=25), [1, 4, 1, 0]
    assert_matches_torch(lambda t: _log_softmax_loss(t, labels, "tinyad"), [logits],
                         torch_fn=lambda t: _log_softmax_loss(t, labels, "torch"))


def test_batch_norm_composite_matches_torch():
    x, gamma, beta = fixed((6, 3), seed=26), fixed((3,), 0.5, 1.5, seed=27), fixed((3,), seed=28)
    assert_matches_torch(lambda *t: _batch_norm(*t, "tinyad"), [x, gamma, beta],
                         torch_fn=lambda *t: _batch_norm(*t, "torch"))


def test_two_layer_mlp_composite_matches_torch():
    x, w1, b1, w2 = fixed((5, 3), seed=29), fixed((3, 4), seed=30), fixed((4,), seed=31), fixed((4, 2), seed=32)
    assert_matches_torch(lambda x, w1, b1, w2: ((x @ w1 + b1).tanh() @ w2).relu() ** 2, [x, w1, b1, w2])


W_CONST = fixed((4, 3), seed=33)

GRADCHECK_CASES = {
    "softmax-cross-entropy": (
        lambda t: _log_softmax_loss(t, [2, 0, 1, 2], "tinyad"),
        [fixed((4, 3), seed=34)],
    ),
    "batch-norm": (
        lambda x, g, b: (_batch_norm(x, g, b, "tinyad") * Tensor(W_CONST)).sum(),
        [fixed((4, 3), seed=35), fixed((3,), 0.5, 1.5, seed=36), fixed((3,), seed=37)],
    ),
    "mlp": (
        lambda x, w1, b1, w2: ((x @ w1 + b1).sigmoid() @ w2).tanh().mean(),
        [fixed((3, 2), seed=38), fixed((2, 4), seed=39), fixed((4,), seed=40), fixed((4,), seed=41)],
    ),
    "powers-and-division": (
        lambda a, b: ((a.abs() + 0.5) ** b / (b * b + 1.0) + 2.0 ** (a * 0.3)).var(axis=0, correction=1).sum(),
        [fixed((3, 2), seed=42), fixed((2,), seed=43)],
    ),
    "shapes-and-indexing": (
        lambda a, b: (
            tinyad.stack([a.permute(1, 0), b.reshape(3, 2)], axis=-1)[[0, 0, 2], 1:]
            * tinyad.concatenate([a, b], axis=1).T[[1, 1, 0]].reshape(3, 2, -1)
        ).exp().sum(),
        [fixed((2, 3), seed=44), fixed((2, 3), seed=45)],
    ),
    "max-where-maximum": (
        lambda a, b: (
            tinyad.where(a > 0.1, a * b, b.exp()) + tinyad.maximum(a, b * 0.5) * a.max(axis=1, keepdims=True)
        ).tanh().sum(),
        [np.array([[0.7, -0.4, 1.3], [-1.1, 0.35, 0.9]]), np.array([[0.2, 1.7, -0.6], [0.4, -1.5, 2.2]])],
    ),
}


@pytest.mark.parametrize("name", list(GRADCHECK_CASES))
def test_composite_tensor_function_passes_finite_difference_gradcheck(name):
    fn, arrays_ = GRADCHECK_CASES[name]
    inputs = [Tensor(np.array(a, dtype=np.float64), requires_grad=True) for a in arrays_]
    assert gradcheck(fn, inputs, eps=1e-6, atol=1e-6, rtol=1e-5)


def test_gradcheck_detects_a_wrong_tensor_gradient():
    # the oracle itself must be able to fail: detach() hides one path from backward
    x = Tensor(fixed((3,), seed=46), requires_grad=True)
    with pytest.raises(AssertionError, match="gradient of input 0"):
        gradcheck(lambda t: (t * t.detach()).sum(), [x])


# ==========================================================================
# Construction semantics and the backward API
# ==========================================================================


@pytest.mark.parametrize("data", [3.5, 3, True, [1.5, 2.0], [1, 2, 3], [[1, 2], [3, 4]], (1, 2.5)],
                         ids=["float", "int", "bool", "float-list", "int-list", "nested-int-list", "tuple"])
def test_python_numbers_and_lists_become_float64(data):
    t = Tensor(data)
    assert t.dtype == np.float64
    np.testing.assert_array_equal(t.numpy(), np.array(data, dtype=np.float64))


def test_int_list_tensor_can_require_grad_because_it_is_float64():
    t = Tensor([1, 2, 3], requires_grad=True)
    (t * t).sum().backward()
    np.testing.assert_array_equal(t.grad, [2.0, 4.0, 6.0])


def test_float32_numpy_array_stays_float32():
    t = Tensor(np.array([1.0, 2.0], dtype=np.float32))
    assert t.dtype == np.float32


FLOAT32_OPS = {
    "add-number": lambda t: t + 2.5,
    "radd-number": lambda t: 2 + t,
    "sub-number": lambda t: t - 1e-3,
    "rsub-number": lambda t: 1.5 - t,
    "mul-number": lambda t: t * 3.25,
    "div-number": lambda t: t / 7.0,
    "rdiv-number": lambda t: 1.0 / t,
    "pow-number": lambda t: t**2.5,
    "rpow-number": lambda t: 2.0**t,
    "neg": lambda t: -t,
    "exp": lambda t: t.exp(),
    "log": lambda t: t.log(),
    "sqrt": lambda t: t.sqrt(),
    "tanh": lambda t: t.tanh(),
    "sigmoid": lambda t: t.sigmoid(),
    "relu": lambda t: t.relu(),
    "abs": lambda t: t.abs(),
    "sum": lambda t: t.sum(axis=0),
    "mean": lambda t: t.mean(axis=1),
    "var": lambda t: t.var(axis=0),
    "max": lambda t: t.max(axis=1),
    "max-all": lambda t: t.max(),
    "maximum-number": lambda t: tinyad.maximum(t, 1.0),
    "minimum-self": lambda t: tinyad.minimum(t, t * 0.5),
    "where-number": lambda t: tinyad.where(t > 1.0, t, 0.5),
    "matmul": lambda t: t @ t.T,
    "reshape": lambda t: t.reshape(-1),
    "permute": lambda t: t.permute(1, 0),
    "getitem": lambda t: t[[0, 0, 1]],
    "concatenate": lambda t: tinyad.concatenate([t, t], axis=1),
    "stack": lambda t: tinyad.stack([t, t]),
}


@pytest.mark.parametrize("name", list(FLOAT32_OPS))
def test_float32_tensor_op_keeps_float32_values_and_gradients(name):
    x = Tensor(np.array([[0.5, 1.5, 2.0], [1.0, 3.0, 0.25]], dtype=np.float32), requires_grad=True)
    out = FLOAT32_OPS[name](x)
    assert out.dtype == np.float32, f"{name}: output dtype {out.dtype}"
    out.backward(np.ones(out.shape, dtype=np.float32))
    assert x.grad.dtype == np.float32, f"{name}: gradient dtype {x.grad.dtype}"
    assert x.grad.shape == x.shape


def test_float32_gradients_agree_with_torch_float32():
    data = np.array([[0.5, -1.5, 2.0], [1.0, 3.0, -0.25]], dtype=np.float32)
    x = Tensor(data, requires_grad=True)
    ((x * 2.5).tanh() * x + x.exp() / 3.0).sum().backward()
    t = torch.tensor(data, requires_grad=True)
    ((t * 2.5).tanh() * t + t.exp() / 3.0).sum().backward()
    np.testing.assert_allclose(x.grad, t.grad.numpy(), rtol=1e-5)


@pytest.mark.parametrize("dtype", ["float32", "float64", np.float32, "int64"])
def test_explicit_dtype_is_respected(dtype):
    t = Tensor([1, 2, 3], dtype=dtype)
    assert t.dtype == np.dtype(dtype)


def test_integer_numpy_array_keeps_its_integer_dtype_like_torch():
    t = Tensor(np.array([1, 2, 3], dtype=np.int64))
    assert t.dtype == np.int64
    assert torch.tensor(np.array([1, 2, 3], dtype=np.int64)).dtype == torch.int64


@pytest.mark.parametrize("number", [0.5, -1.25])
def test_integer_tensor_times_python_float_gives_the_float_result_like_numpy_and_torch(number):
    data = np.array([1, 2, 3], dtype=np.int64)
    got = (Tensor(data) * number).numpy()
    np.testing.assert_array_equal(got, data * number)
    np.testing.assert_allclose(got, (torch.tensor(data) * number).numpy())


def test_shape_ndim_size_device_attributes():
    t = Tensor(np.zeros((2, 3, 4)))
    assert t.shape == (2, 3, 4)
    assert t.ndim == 3
    assert t.size == 24
    assert t.device == "cpu"
    assert t.dtype == np.float64


@pytest.mark.parametrize("data", [2.5, [2.5], [[2.5]]])
def test_item_of_a_one_element_tensor_is_a_python_float(data):
    value = Tensor(data).item()
    assert type(value) is float and value == 2.5


def test_numpy_returns_an_ndarray_with_the_values():
    a = fixed((2, 3), seed=47)
    out = Tensor(a).numpy()
    assert isinstance(out, np.ndarray)
    np.testing.assert_array_equal(out, a)


def test_grad_is_none_before_backward():
    x = Tensor([1.0, 2.0], requires_grad=True)
    y = x * 2.0
    assert x.grad is None and y.grad is None


def test_no_gradient_flows_through_detach_like_torch():
    a = fixed((3,), seed=48)
    run = assert_matches_torch(lambda t: t * t.detach() + t.detach().exp(), [a])
    np.testing.assert_allclose(run.grads[0], a * upstream_weights((3,)))


def test_detached_tensor_is_a_leaf_that_does_not_require_grad():
    x = Tensor([1.0, 2.0], requires_grad=True)
    d = (x * 3.0).detach()
    assert d.requires_grad is False and d.parents == ()
    np.testing.assert_array_equal(d.numpy(), [3.0, 6.0])


def test_constant_input_receives_no_gradient():
    x = Tensor([1.0, 2.0], requires_grad=True)
    c = Tensor([3.0, 4.0])
    (x * c).sum().backward()
    assert c.grad is None
    np.testing.assert_array_equal(x.grad, [3.0, 4.0])


def test_operations_under_no_grad_are_not_recorded():
    x = Tensor([1.0, 2.0], requires_grad=True)
    with tinyad.no_grad():
        y = x * 2.0
    assert y.requires_grad is False and y.parents == ()


def test_gradients_accumulate_over_two_backward_calls_like_torch():
    a = fixed((2, 3), seed=49)
    x = Tensor(a, requires_grad=True)
    t = torch.tensor(a, requires_grad=True)
    for _ in range(2):
        ((x * x).tanh() @ Tensor(np.arange(3.0))).sum().backward()
        ((t * t).tanh() @ torch.arange(3.0, dtype=torch.float64)).sum().backward()
        assert_close(x.grad, t.grad.numpy(), "accumulated gradient")


def test_intermediate_backward_twice_gives_twice_the_gradient_like_torch():
    a = fixed((3,), seed=50)
    x = Tensor(a, requires_grad=True)
    y = (x.exp() * x).sum()
    y.backward()
    y.backward()
    t = torch.tensor(a, requires_grad=True)
    s = (t.exp() * t).sum()
    s.backward(retain_graph=True)
    s.backward()
    assert_close(x.grad, t.grad.numpy(), "gradient after two backward calls")


@pytest.mark.parametrize("as_tensor", [False, True], ids=["array", "Tensor"])
def test_backward_with_gradient_array_on_non_scalar_output_matches_torch(as_tensor):
    a = fixed((2, 3), seed=51)
    seed = fixed((3, 3), seed=52)
    x = Tensor(a, requires_grad=True)
    out = x.T @ x.sigmoid()
    out.backward(Tensor(seed) if as_tensor else seed)
    t = torch.tensor(a, requires_grad=True)
    t.T.matmul(t.sigmoid()).backward(torch.tensor(seed))
    assert_close(x.grad, t.grad.numpy(), "gradient")


def test_backward_on_one_element_non_0d_output_needs_no_gradient_like_torch():
    a = fixed((1, 1), seed=53)
    x = Tensor(a, requires_grad=True)
    (x * 3.0).exp().backward()
    t = torch.tensor(a, requires_grad=True)
    (t * 3.0).exp().backward()
    assert_close(x.grad, t.grad.numpy(), "gradient")


# ==========================================================================
# Deep graphs
# ==========================================================================


def test_deep_chain_of_100000_ops_backward_without_recursion_error():
    x = Tensor([1.0, 2.0], requires_grad=True)
    y = x
    for _ in range(100_000):
        y = y * 1.00001
    y.sum().backward()
    expected = math.exp(100_000 * math.log1p(0.00001))  # 1.00001 ** 100000
    np.testing.assert_allclose(x.grad, [expected, expected], rtol=1e-9)
    np.testing.assert_allclose(y.numpy(), [expected, 2 * expected], rtol=1e-9)
    del y  # freeing the chain must not overflow the C stack either


def test_deep_chain_of_alternating_ops_matches_closed_form():
    x = Tensor([0.5, -0.5], requires_grad=True)
    y = x
    for i in range(50_000):
        y = y + 1.0 if i % 2 else y - 1.0
    (y * Tensor([2.0, 3.0])).sum().backward()
    np.testing.assert_array_equal(x.grad, [2.0, 3.0])
    np.testing.assert_array_equal(y.numpy(), [0.5, -0.5])


# ==========================================================================
# A leaf's gradient is an array of its own
# ==========================================================================


def _leaf_graphs():
    """Leaves reached by one, two and three messages, by pass-through messages
    (``+`` sends its upstream on unchanged), read-only broadcast views (the
    mean's backward) and fresh products, and a root that is itself a leaf."""
    x = Tensor(np.arange(6.0).reshape(2, 3), requires_grad=True, label="x")
    w = Tensor([0.5, -1.0, 2.0], requires_grad=True, label="w")
    yield "one message, passed through", (x,), x + 1.0
    yield "one message, a broadcast view", (x,), x.mean(axis=0, keepdims=True)
    yield "two messages", (x,), x * 2.0 + x.mean(axis=0, keepdims=True)
    yield "three messages", (x, w), x * w + x + (x - x.mean(axis=0, keepdims=True)) * w
    yield "the root is the leaf", (x,), x


@pytest.mark.parametrize("case", list(range(5)))
def test_leaf_grad_shares_memory_with_no_message_and_no_seed(case):
    name, leaves, out = list(_leaf_graphs())[case]
    seed = np.linspace(-1.0, 1.0, out.data.size).reshape(out.shape)
    out.backward(seed)
    messages = [m for _, _, m in tinyad.graph.edges(out) if m is not None]
    for leaf in leaves:
        assert leaf.grad.flags.writeable and leaf.grad.flags.owndata, name
        assert not np.shares_memory(leaf.grad, seed), name
        for m in messages:
            assert not np.shares_memory(leaf.grad, m), f"{name}: {leaf.label}.grad shares memory with a message"
    # so changing a gradient in place (an optimizer may) leaves the recorded messages as they were
    recorded = [m.copy() for m in messages]
    for leaf in leaves:
        leaf.grad *= 0.0
    for before, m in zip(recorded, messages):
        np.testing.assert_array_equal(m, before)


# ==========================================================================
# The gradient of a broadcast factor: a sum over its copies
# ==========================================================================


@pytest.mark.parametrize(
    "full_shape, factor_shape",
    [((64, 16), (16,)), ((64, 16), (1, 16)), ((8, 5, 3, 4), (1, 5, 1, 1)), ((8, 5, 3, 4), (5, 1, 1)), ((6, 7), ())],
)
def test_gradient_of_a_broadcast_factor_matches_torch(full_shape, factor_shape):
    # a per-channel factor scaling a batch: its gradient is a sum over the batch of
    # upstream * the other factor
    rng = np.random.default_rng(3)
    batch, factor = rng.normal(size=full_shape), rng.normal(size=factor_shape)
    assert_matches_torch(lambda a, b: a * b, [batch, factor])
    assert_matches_torch(lambda a, b: b * a, [batch, factor])
    weights = rng.normal(size=full_shape)
    # and in float32 it keeps its dtype and agrees with torch to float32 rounding
    x = Tensor(batch.astype(np.float32), requires_grad=True)
    w = Tensor(factor.astype(np.float32), requires_grad=True)
    (x * w).backward(weights.astype(np.float32))
    tx = torch.tensor(batch.astype(np.float32), requires_grad=True)
    tw = torch.tensor(factor.astype(np.float32), requires_grad=True)
    (tx * tw).backward(torch.tensor(weights.astype(np.float32)))
    assert w.grad.dtype == np.float32 and w.grad.shape == factor_shape
    np.testing.assert_allclose(w.grad, tw.grad.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(x.grad, tx.grad.numpy(), rtol=1e-6)

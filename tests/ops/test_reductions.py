"""Reductions (tinyad/ops/reductions.py) against PyTorch autograd, float64: sum, mean, var and
max over random axes, ties, and 0-d tensors (see ``tensor_oracle``).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tinyad import Tensor

from tensor_oracle import arrays, assert_matches_torch, axis_count, axis_for, shapes, torch_dim

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

RNG_SEED = 20240601


def fixed(shape, low=-2.0, high=2.0, seed=0):
    return np.random.default_rng(RNG_SEED + seed).uniform(low, high, size=shape)


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

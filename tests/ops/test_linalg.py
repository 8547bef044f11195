"""Matrix multiplication (tinyad/ops/linalg.py) against PyTorch autograd, float64: 1-D, 2-D and
batched operands, each input's gradient compared with torch's (see ``tensor_oracle``).
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tensor_oracle import arrays, assert_matches_torch, shapes

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

RNG_SEED = 20240601


def fixed(shape, low=-2.0, high=2.0, seed=0):
    return np.random.default_rng(RNG_SEED + seed).uniform(low, high, size=shape)


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

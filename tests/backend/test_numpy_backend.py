"""The NumPy backend keeps float16 means finite where a float16 sum would overflow."""
from __future__ import annotations

import numpy as np

import tinyad


def test_mean_of_float16_does_not_overflow_where_a_float16_sum_would():
    array = np.full((70_000, 1), 1.0, dtype="float16")  # the float16 sum, 70000, is above 65504
    with np.errstate(over="ignore"):
        assert np.isinf(array.sum(axis=(0,), keepdims=True)).all()
    mean = tinyad.Tensor(array).mean(axis=0, keepdims=True)
    assert mean.dtype == np.float16 and mean.data.tolist() == [[1.0]]
    for fused in (False, True):
        normalized = tinyad.nn.functional.batch_norm(tinyad.Tensor(array), None, None, training=True, fused=fused)
        assert np.isfinite(normalized.data).all()


def test_fused_backward_in_float16_sums_past_65504_without_overflow():
    # 70,000 rows of one channel: sum(dy) is 70,000, past float16's largest number
    rng = np.random.default_rng(3)
    x = rng.normal(size=(70_000, 2)).astype("float16")
    dy = np.ones((70_000, 2), dtype="float16")
    ours = tinyad.Tensor(x, requires_grad=True)
    tinyad.nn.functional.batch_norm(ours, None, None, training=True, fused=True).backward(dy)
    reference = tinyad.Tensor(x.astype("float64"), requires_grad=True)
    tinyad.nn.functional.batch_norm(reference, None, None, training=True, fused=True).backward(dy.astype("float64"))
    assert np.isfinite(ours.grad).all()
    np.testing.assert_allclose(ours.grad.astype("float64"), reference.grad, atol=2e-2)

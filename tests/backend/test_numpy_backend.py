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

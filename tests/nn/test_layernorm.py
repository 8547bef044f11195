"""LayerNorm (tinyad.nn.LayerNorm, F.layer_norm) against torch (issue 17, point 3)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, settings
from hypothesis import strategies as st

import tinyad
from tinyad import Tensor, nn
from tinyad.nn import functional as F

from nn_oracle import assert_close, tolerance
from tensor_oracle import arrays, assert_matches_torch

DTYPES = [np.float64, np.float32]
RNG = np.random.default_rng(5)
X = RNG.normal(size=(4, 3, 6))


# ---- LayerNorm -------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
@pytest.mark.parametrize("normalized_shape", [(6,), (3, 6)])
@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm_matches_torch(normalized_shape, affine, dtype):
    weight = RNG.uniform(0.5, 2.0, size=normalized_shape)
    bias = RNG.normal(size=normalized_shape)
    if affine:
        assert_matches_torch(lambda x, w, b: F.layer_norm(x, normalized_shape, w, b), [X, weight, bias],
                             lambda x, w, b: TF.layer_norm(x, normalized_shape, w, b), dtype=dtype,
                             rtol=None if dtype == np.float64 else 1e-4, atol=None if dtype == np.float64 else 1e-5)
    else:
        assert_matches_torch(lambda x: F.layer_norm(x, normalized_shape), [X],
                             lambda x: TF.layer_norm(x, normalized_shape), dtype=dtype,
                             rtol=None if dtype == np.float64 else 1e-4, atol=None if dtype == np.float64 else 1e-5)


@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_layer_norm_on_random_shapes_matches_torch(data):
    shape = tuple(data.draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
    count = data.draw(st.integers(1, len(shape)))
    normalized = shape[len(shape) - count:]
    x = data.draw(arrays(shape)) + np.arange(np.prod(shape)).reshape(shape) * 0.01  # no constant example
    assert_matches_torch(lambda t: F.layer_norm(t, normalized), [x], lambda t: TF.layer_norm(t, normalized),
                         rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_layer_norm_module_matches_torch_in_train_and_eval(dtype):
    layer = nn.LayerNorm(6, dtype=dtype)
    layer.weight.data = RNG.uniform(0.5, 2.0, size=6).astype(dtype)
    layer.bias.data = RNG.normal(size=6).astype(dtype)
    twin = torch.nn.LayerNorm(6, dtype=getattr(torch, dtype))
    twin.load_state_dict({k: torch.from_numpy(v) for k, v in layer.state_dict().items()})
    for mode in (True, False):
        layer.train(mode), twin.train(mode)
        layer.zero_grad(), twin.zero_grad()
        x, tx = Tensor(X.astype(dtype), requires_grad=True), torch.tensor(X.astype(dtype), requires_grad=True)
        (layer(x) ** 2).sum().backward()
        (twin(tx) ** 2).sum().backward()
        assert_close(x.grad, tx.grad, **tolerance(dtype), what="x.grad")
        assert_close(layer.weight.grad, twin.weight.grad, **tolerance(dtype), what="weight.grad")
        assert_close(layer.bias.grad, twin.bias.grad, **tolerance(dtype), what="bias.grad")


def test_layer_norm_labels_its_steps_like_batch_norm():
    y = F.layer_norm(Tensor(X, requires_grad=True), 6, Tensor(np.ones(6), requires_grad=True))
    for label in ("layer_mean", "centered", "layer_var", "var_eps", "inv_std", "x_hat"):
        assert tinyad.find(y, label) is not None


def test_layer_norm_refuses_a_shape_that_is_not_the_last_axes():
    with pytest.raises(ValueError, match="must be the last axes"):
        F.layer_norm(Tensor(X), (3,))

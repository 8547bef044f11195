"""Dropout and LayerNorm against torch (issue 17, point 3)."""
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


# ---- Dropout ---------------------------------------------------------------------------


@pytest.mark.parametrize("p", [0.2, 0.5, 0.9])
def test_dropout_keeps_values_scaled_by_one_over_one_minus_p_like_torch(p):
    tinyad.manual_seed(0)
    torch.manual_seed(0)
    x = Tensor(X, requires_grad=True)
    y = F.dropout(x, p, training=True)
    theirs = TF.dropout(torch.tensor(X), p, training=True).numpy()
    for out in (y.numpy(), theirs):  # each survivor is x / (1 - p), every other value 0
        kept = out != 0
        np.testing.assert_allclose(out[kept], X[kept] / (1 - p), rtol=1e-12)
    y.sum().backward()
    np.testing.assert_allclose(x.grad, (y.numpy() != 0) / (1 - p), rtol=1e-12)


def test_dropout_gradient_matches_torch_for_the_same_mask():
    tinyad.manual_seed(1)
    x = Tensor(X, requires_grad=True)
    y = F.dropout(x, 0.3)
    mask = tinyad.find(y, "dropout_mask").numpy()
    tx = torch.tensor(X, requires_grad=True)
    (tx * torch.tensor(mask)).sum().backward()  # torch's dropout is x * mask / (1 - p) with its own mask
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, tx.grad.numpy())


def test_dropout_drops_about_p_of_the_values():
    tinyad.manual_seed(2)
    y = F.dropout(tinyad.ones(100_000), 0.3)
    dropped = float((y.numpy() == 0).mean())
    assert abs(dropped - 0.3) < 0.01  # about 7 standard deviations of a binomial mean
    assert abs(float(y.numpy().mean()) - 1.0) < 0.02  # inverted dropout keeps the expected value


def test_dropout_is_the_identity_in_eval_and_for_p_zero():
    x = Tensor(X)
    assert F.dropout(x, 0.5, training=False) is x
    assert F.dropout(x, 0.0) is x
    layer = nn.Dropout(0.5).eval()
    assert layer(x) is x


def test_dropout_with_p_one_drops_everything_like_torch():
    np.testing.assert_array_equal(F.dropout(Tensor(X), 1.0).numpy(), TF.dropout(torch.tensor(X), 1.0).numpy())


def test_manual_seed_makes_dropout_reproducible():
    layer = nn.Dropout(0.5)
    tinyad.manual_seed(7)
    first = layer(Tensor(X)).numpy()
    tinyad.manual_seed(7)
    np.testing.assert_array_equal(first, layer(Tensor(X)).numpy())


@pytest.mark.parametrize("p", [-0.1, 1.5])
def test_dropout_refuses_a_p_outside_zero_one(p):
    with pytest.raises(ValueError, match="must lie in"):
        F.dropout(Tensor(X), p)
    with pytest.raises(ValueError, match="must lie in"):
        nn.Dropout(p)


def test_dropout_keeps_float32():
    assert F.dropout(Tensor(X, dtype="float32"), 0.5).dtype == np.float32


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

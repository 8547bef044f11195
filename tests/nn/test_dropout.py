"""Dropout (tinyad.nn.Dropout, F.dropout) against torch (issue 17, point 3)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import tinyad
from tinyad import Tensor, nn
from tinyad.nn import functional as F

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

"""softmax, log_softmax, one_hot, nll_loss and cross_entropy's options against torch,
forward and backward, float64 and float32 (issue 17, point 2)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, settings
from hypothesis import strategies as st

import tinyad
from tinyad import Tensor
from tinyad.nn import functional as F

from tensor_oracle import arrays, assert_matches_torch, floats

DTYPES = [np.float64, np.float32]
RNG = np.random.default_rng(2)
LOGITS = RNG.normal(size=(6, 5)) * 3
TARGET = np.array([0, 4, 2, 2, 1, 3])


@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("dim", [0, 1, -1])
def test_softmax_family_matches_torch(name, dim, dtype):
    assert_matches_torch(lambda t: getattr(F, name)(t, dim), [LOGITS],
                         lambda t: getattr(TF, name)(t, dim=dim), dtype=dtype)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_family_is_stable_for_huge_logits(name):
    logits = np.array([[1000.0, 0.0, -1000.0], [-5e4, -5e4, -5e4]])
    assert_matches_torch(lambda t: getattr(F, name)(t, 1), [logits], lambda t: getattr(TF, name)(t, dim=1))


@settings(max_examples=30, deadline=None)
@given(data=st.data(), name=st.sampled_from(["softmax", "log_softmax"]))
def test_softmax_family_on_random_shapes_matches_torch(data, name):
    ndim = data.draw(st.integers(1, 3))
    shape = tuple(data.draw(st.lists(st.integers(1, 4), min_size=ndim, max_size=ndim)))
    x = data.draw(arrays(shape, floats(-20, 20)))
    dim = data.draw(st.integers(-ndim, ndim - 1))
    assert_matches_torch(lambda t: getattr(F, name)(t, dim), [x], lambda t: getattr(TF, name)(t, dim=dim),
                         rtol=1e-9, atol=1e-12)


def test_log_softmax_graph_shows_the_detached_shift_and_the_log_sum_exp():
    out = F.log_softmax(Tensor(LOGITS, requires_grad=True), 1)
    ops = {node.op for node in tinyad.graph.topological_order(out)}
    assert {"exp", "sum", "log", "-"} <= ops and "max" not in ops  # the shift is a detached constant
    assert tinyad.find(out, "log_sum_exp").shape == (6, 1)
    shifted = tinyad.find(out, "shifted")
    assert not shifted.parents[1].requires_grad  # the maximum is a constant shift


def test_one_hot_matches_torch():
    for num_classes in (-1, 7):
        ours = F.one_hot(Tensor(TARGET, dtype="int64"), num_classes)
        theirs = TF.one_hot(torch.tensor(TARGET), num_classes)
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
        assert ours.dtype == np.int64


def test_one_hot_refuses_an_index_outside_the_classes():
    with pytest.raises(ValueError, match=r"must lie in \[0, 2\]"):
        F.one_hot(Tensor([0, 3], dtype="int64"), 3)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_nll_loss_matches_torch(reduction, dtype):
    log_probs = TF.log_softmax(torch.tensor(LOGITS), 1).numpy()
    assert_matches_torch(lambda t: F.nll_loss(t, TARGET, reduction=reduction), [log_probs],
                         lambda t: TF.nll_loss(t, torch.tensor(TARGET), reduction=reduction), dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1, 1.0])
def test_cross_entropy_options_match_torch(reduction, label_smoothing, dtype):
    assert_matches_torch(
        lambda t: F.cross_entropy(t, TARGET, reduction=reduction, label_smoothing=label_smoothing), [LOGITS],
        lambda t: TF.cross_entropy(t, torch.tensor(TARGET), reduction=reduction, label_smoothing=label_smoothing),
        dtype=dtype,
    )


def test_cross_entropy_is_nll_of_log_softmax():
    logits = Tensor(LOGITS)
    np.testing.assert_array_equal(F.cross_entropy(logits, TARGET).numpy(),
                                  F.nll_loss(F.log_softmax(logits, 1), TARGET).numpy())


@pytest.mark.parametrize("call, message", [
    (lambda: F.cross_entropy(Tensor(LOGITS), TARGET, reduction="average"), "reduction must be"),
    (lambda: F.cross_entropy(Tensor(LOGITS), TARGET, label_smoothing=1.5), "label_smoothing must lie"),
    (lambda: F.nll_loss(Tensor(LOGITS), TARGET + 1), r"targets must lie in \[0, 4\]"),
    (lambda: F.nll_loss(Tensor(LOGITS[0]), TARGET[:1]), "expected log-probabilities of shape"),
])
def test_bad_classification_arguments_are_refused(call, message):
    with pytest.raises(ValueError, match=message):
        call()

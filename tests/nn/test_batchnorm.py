"""Batch Normalization: tinyad.nn.functional.batch_norm, BatchNorm1d/2d, the
scalar version, the fused op, the detached-statistics variant, the hand
derivations in tinyad.check and set_population_statistics.

The oracle is PyTorch (torch.nn.functional.batch_norm, torch.nn.BatchNorm1d/2d,
torch autograd) or a NumPy formula written out in the test; tinyad is never
compared only with itself, except where the claim *is* an equality between two
tinyad paths (fused versus composed, scalar versus Tensor), and even there the
Tensor path is checked against torch elsewhere.
"""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, settings
from hypothesis import strategies as st

import tinyad
from tinyad import Tensor, Value, nn
from tinyad.check import (
    batch_norm_backward_compact,
    batch_norm_backward_detached_stats,
    batch_norm_backward_steps,
    check_batch_norm_by_hand,
)
from tinyad.nn import functional as F

from nn_oracle import (
    assert_close,
    assert_runs_match,
    assert_same_buffers,
    numpy_batch_norm_train,
    randomize_affine,
    run_both,
    tinyad_leaf,
    tolerance,
    torch_leaf,
    torch_twin,
)

FEW = settings(max_examples=12, deadline=None)


def batch(rng: np.random.Generator, shape: tuple, dtype=np.float64, scale: float = 1.0, offset: float = 0.0) -> np.ndarray:
    """Random input whose channels have different means and spreads."""
    channel_shape = [1] * len(shape)
    channel_shape[1] = shape[1]
    means = rng.normal(size=channel_shape) * 3.0
    spreads = rng.uniform(0.5, 2.0, size=channel_shape)
    return ((offset + means + spreads * rng.normal(size=shape)) * scale).astype(dtype)


def input_shapes(min_n: int = 2):
    """(N, C) or (N, C, *spatial) with at least 2 values per channel."""
    return st.tuples(
        st.integers(min_n, 6),
        st.integers(1, 4),
        st.lists(st.integers(1, 3), min_size=0, max_size=2),
    ).map(lambda t: (t[0], t[1], *t[2]))


# ---------------------------------------------------------------------------
# running the functional form in both engines
# ---------------------------------------------------------------------------


def functional_both(x, weight, bias, running_mean, running_var, dy, training, momentum=0.1, eps=1e-5, fused=False):
    """Call tinyad's and torch's batch_norm on copies of the same arrays; return everything."""
    def leaves(make):
        return {
            "x": make(x),
            "weight": None if weight is None else make(weight),
            "bias": None if bias is None else make(bias),
            "running_mean": None if running_mean is None else make(running_mean, requires_grad=False),
            "running_var": None if running_var is None else make(running_var, requires_grad=False),
        }

    ours, theirs = leaves(tinyad_leaf), leaves(torch_leaf)
    y_ours = F.batch_norm(
        ours["x"], ours["running_mean"], ours["running_var"], ours["weight"], ours["bias"],
        training, momentum, eps, fused=fused,
    )
    (y_ours * Tensor(dy)).sum().backward()
    y_theirs = TF.batch_norm(
        theirs["x"], theirs["running_mean"], theirs["running_var"], theirs["weight"], theirs["bias"],
        training, momentum, eps,
    )
    (y_theirs * torch.from_numpy(dy.copy())).sum().backward()
    return y_ours, y_theirs, ours, theirs


def assert_functional_match(y_ours, y_theirs, ours, theirs, rtol, atol):
    assert_close(y_ours, y_theirs, rtol, atol, "output")
    for name in ("x", "weight", "bias"):
        if ours[name] is not None:
            assert_close(ours[name].grad, theirs[name].grad, rtol, atol, f"d{name}")
    for name in ("running_mean", "running_var"):
        if ours[name] is not None:
            assert_close(ours[name], theirs[name], rtol, atol, name)


# ---------------------------------------------------------------------------
# 1. functional batch_norm versus torch.nn.functional.batch_norm
# ---------------------------------------------------------------------------


@FEW
@given(
    shape=input_shapes(),
    seed=st.integers(0, 2**31 - 1),
    affine=st.booleans(),
    scale=st.sampled_from([1e-2, 1.0, 100.0]),
    momentum=st.sampled_from([0.1, 0.5, 1.0]),
)
def test_functional_training_matches_torch_float64(shape, seed, affine, scale, momentum):
    rng = np.random.default_rng(seed)
    channels = shape[1]
    x = batch(rng, shape, scale=scale)
    weight = rng.uniform(0.5, 2.0, channels) if affine else None
    bias = rng.normal(size=channels) if affine else None
    results = functional_both(
        x, weight, bias, rng.normal(size=channels), rng.uniform(0.5, 2.0, channels),
        rng.normal(size=shape), training=True, momentum=momentum,
    )
    assert_functional_match(*results, rtol=1e-9, atol=1e-11)


@FEW
@given(shape=input_shapes(min_n=1), seed=st.integers(0, 2**31 - 1), affine=st.booleans())
def test_functional_eval_matches_torch_float64(shape, seed, affine):
    rng = np.random.default_rng(seed)
    channels = shape[1]
    running_mean, running_var = rng.normal(size=channels), rng.uniform(0.5, 2.0, channels)
    results = functional_both(
        batch(rng, shape), rng.normal(size=channels) if affine else None, rng.normal(size=channels) if affine else None,
        running_mean, running_var, rng.normal(size=shape), training=False,
    )
    assert_functional_match(*results, rtol=1e-10, atol=1e-12)
    # evaluation must not move the running statistics
    np.testing.assert_array_equal(results[2]["running_mean"].numpy(), running_mean)
    np.testing.assert_array_equal(results[2]["running_var"].numpy(), running_var)


@pytest.mark.parametrize("shape", [(7, 3), (5, 3, 4), (4, 2, 3, 5)])
@pytest.mark.parametrize("training", [True, False])
def test_functional_float32_matches_torch_and_stays_float32(shape, training):
    rng = np.random.default_rng(1)
    channels = shape[1]
    f32 = np.float32
    results = functional_both(
        batch(rng, shape, f32), rng.uniform(0.5, 2, channels).astype(f32), rng.normal(size=channels).astype(f32),
        rng.normal(size=channels).astype(f32), rng.uniform(0.5, 2, channels).astype(f32),
        rng.normal(size=shape).astype(f32), training=training,
    )
    y_ours, _, ours, _ = results
    assert_functional_match(*results, **tolerance(np.float32))
    assert y_ours.dtype == np.float32
    assert ours["x"].grad.dtype == np.float32
    assert ours["weight"].grad.dtype == np.float32
    assert ours["running_mean"].dtype == np.float32 and ours["running_var"].dtype == np.float32


@pytest.mark.parametrize("shape", [(6, 3), (3, 2, 5), (2, 3, 2, 2)])
def test_functional_training_without_running_stats_matches_torch(shape):
    rng = np.random.default_rng(2)
    channels = shape[1]
    results = functional_both(
        batch(rng, shape), rng.normal(size=channels), rng.normal(size=channels), None, None,
        rng.normal(size=shape), training=True,
    )
    assert_functional_match(*results, rtol=1e-10, atol=1e-12)


def test_functional_eval_without_running_stats_raises_like_torch():
    x = np.random.default_rng(3).normal(size=(5, 2))
    with pytest.raises(RuntimeError, match="running_mean must be defined"):  # the oracle refuses too
        TF.batch_norm(torch.from_numpy(x), None, None, training=False)
    with pytest.raises(ValueError, match=r"evaluation mode \(training=False\).*running_mean and running_var"):
        F.batch_norm(Tensor(x), None, None, training=False)
    assert F.batch_norm(Tensor(x), None, None, training=True).shape == (5, 2)  # still works afterwards


def test_functional_rejects_parameters_of_the_wrong_shape():
    x = Tensor(np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"weight has shape \(2,\), expected \(3,\)"):
        F.batch_norm(x, None, None, Tensor(np.ones(2)), None, training=True)
    with pytest.raises(ValueError, match="running_var"):
        F.batch_norm(x, Tensor(np.zeros(3)), Tensor(np.ones(4)), training=False)


def test_functional_rejects_a_one_dimensional_input():
    with pytest.raises(ValueError, match=r"\(N, C\)"):
        F.batch_norm(Tensor(np.zeros(4)), None, None, training=True)


# ---------------------------------------------------------------------------
# 1b. modules versus torch.nn.BatchNorm1d / BatchNorm2d
# ---------------------------------------------------------------------------

MODULE_CASES = [
    pytest.param(nn.BatchNorm1d, (8, 3), id="BatchNorm1d-NC"),
    pytest.param(nn.BatchNorm1d, (5, 3, 4), id="BatchNorm1d-NCL"),
    pytest.param(nn.BatchNorm2d, (4, 3, 3, 2), id="BatchNorm2d-NCHW"),
]


def module_steps_against_torch(layer, shape, steps=4, dtype=np.float64, seed=0, tol=None):
    """Train ``layer`` and its torch twin side by side for ``steps`` batches, then
    evaluate once; outputs, grads and buffers must match after every step."""
    tol = tol or tolerance(dtype)
    rng = np.random.default_rng(seed)
    randomize_affine(layer, rng)
    twin = torch_twin(layer, dtype=torch.float64 if dtype == np.float64 else torch.float32)
    for step in range(steps):
        x = batch(rng, shape, dtype, offset=step)
        dy = rng.normal(size=shape).astype(dtype)
        assert_runs_match(run_both(layer, twin, x, dy), what=f"train step {step}", **tol)
        assert_same_buffers(layer, twin, what=f"after train step {step}", **tol)
    layer.eval()
    twin.eval()
    x = batch(rng, shape, dtype)
    dy = rng.normal(size=shape).astype(dtype)
    assert_runs_match(run_both(layer, twin, x, dy), what="eval", **tol)
    assert_same_buffers(layer, twin, what="after eval", **tol)
    return layer, twin


@pytest.mark.parametrize("cls, shape", MODULE_CASES)
@pytest.mark.parametrize("fused", [False, True], ids=["composed", "fused"])
def test_module_train_and_eval_match_torch_float64(cls, shape, fused):
    layer, _ = module_steps_against_torch(cls(shape[1], fused=fused), shape)
    assert int(layer.num_batches_tracked.numpy()) == 4


@pytest.mark.parametrize("cls, shape", MODULE_CASES)
def test_module_with_float32_inputs_matches_torch_float32(cls, shape):
    module_steps_against_torch(cls(shape[1]), shape, steps=3, dtype=np.float32)


@pytest.mark.parametrize("cls, shape", MODULE_CASES)
def test_module_momentum_and_eps_options_match_torch(cls, shape):
    module_steps_against_torch(cls(shape[1], eps=1e-2, momentum=0.7), shape, steps=3)


@pytest.mark.parametrize("cls, shape", MODULE_CASES)
def test_momentum_none_keeps_cumulative_average_like_torch(cls, shape):
    layer, _ = module_steps_against_torch(cls(shape[1], momentum=None), shape, steps=4)
    assert layer.momentum is None


def test_momentum_none_running_mean_is_plain_average_of_batch_means():
    # cumulative average: after k batches, running_mean = (0 + ... ) -> factor 1/k gives
    # exactly the mean of the k batch means (the initial 0 is weighted by (1 - 1/1) = 0)
    rng = np.random.default_rng(4)
    layer = nn.BatchNorm1d(3, momentum=None)
    means, unbiased_vars = [], []
    for _ in range(5):
        x = batch(rng, (6, 3))
        layer(Tensor(x))
        means.append(x.mean(axis=0))
        unbiased_vars.append(x.var(axis=0, ddof=1))
    assert_close(layer.running_mean, np.mean(means, axis=0), 1e-12)
    assert_close(layer.running_var, np.mean(unbiased_vars, axis=0), 1e-12)
    assert int(layer.num_batches_tracked.numpy()) == 5


@pytest.mark.parametrize("cls, shape", MODULE_CASES)
@pytest.mark.parametrize("fused", [False, True], ids=["composed", "fused"])
def test_track_running_stats_false_uses_batch_stats_in_train_and_eval_like_torch(cls, shape, fused):
    layer = cls(shape[1], track_running_stats=False, fused=fused)
    assert layer.running_mean is None and layer.running_var is None and layer.num_batches_tracked is None
    module_steps_against_torch(layer, shape, steps=2)
    assert dict(layer.named_buffers()) == {}
    assert set(layer.state_dict()) == {"weight", "bias"}


def test_track_running_stats_false_eval_output_is_normalized_by_the_batch():
    rng = np.random.default_rng(5)
    layer = nn.BatchNorm1d(3, track_running_stats=False).eval()
    x = batch(rng, (10, 3), offset=50.0)
    assert_close(layer(Tensor(x)), numpy_batch_norm_train(x), 1e-10)


@pytest.mark.parametrize("cls, shape", MODULE_CASES)
def test_affine_false_has_no_parameters_and_matches_torch(cls, shape):
    layer = cls(shape[1], affine=False)
    assert layer.parameters() == [] and layer.weight is None and layer.bias is None
    module_steps_against_torch(layer, shape, steps=3)


@FEW
@given(
    n=st.integers(2, 7),
    c=st.integers(1, 4),
    spatial=st.sampled_from([(), (3,), (2, 2)]),
    seed=st.integers(0, 2**31 - 1),
    momentum=st.sampled_from([0.1, 0.3, None]),
    affine=st.booleans(),
    track=st.booleans(),
)
def test_random_modules_match_torch(n, c, spatial, seed, momentum, affine, track):
    cls = nn.BatchNorm2d if len(spatial) == 2 else nn.BatchNorm1d
    layer = cls(c, momentum=momentum, affine=affine, track_running_stats=track)
    module_steps_against_torch(layer, (n, c, *spatial), steps=3, seed=seed)


@pytest.mark.parametrize("cls, reference", [(nn.BatchNorm1d, torch.nn.BatchNorm1d), (nn.BatchNorm2d, torch.nn.BatchNorm2d)])
def test_fresh_module_state_equals_torch_defaults(cls, reference):
    ours = cls(4).state_dict()
    theirs = reference(4, dtype=torch.float64).state_dict()
    assert set(ours) == set(theirs)
    for name, tensor in theirs.items():
        np.testing.assert_array_equal(ours[name], tensor.numpy(), err_msg=name)
    layer = cls(4)
    assert (layer.eps, layer.momentum, layer.affine, layer.track_running_stats) == (1e-5, 0.1, True, True)


def test_batchnorm1d_rejects_four_dimensional_input_and_batchnorm2d_rejects_two():
    with pytest.raises(ValueError, match="BatchNorm1d.*2-D or 3-D.*\\(2, 3, 4, 5\\)"):
        nn.BatchNorm1d(3)(Tensor(np.zeros((2, 3, 4, 5))))
    with pytest.raises(ValueError, match="BatchNorm2d.*4-D.*\\(2, 3\\)"):
        nn.BatchNorm2d(3)(Tensor(np.zeros((2, 3))))


# ---------------------------------------------------------------------------
# 1c. fused=True equals the composed graph
# ---------------------------------------------------------------------------


def run_tinyad_functional(x, weight, bias, dy, fused, training=True, running=None, detach_stats=False):
    leaves = {"x": tinyad_leaf(x)}
    leaves["weight"] = None if weight is None else tinyad_leaf(weight)
    leaves["bias"] = None if bias is None else tinyad_leaf(bias)
    rm = rv = None
    if running is not None:
        rm, rv = (tinyad_leaf(r, requires_grad=False) for r in running)
    y = F.batch_norm(leaves["x"], rm, rv, leaves["weight"], leaves["bias"], training,
                     detach_stats=detach_stats, fused=fused)
    (y * Tensor(dy)).sum().backward()
    return y, leaves, rm, rv


@FEW
@given(
    shape=input_shapes(),
    seed=st.integers(0, 2**31 - 1),
    has_weight=st.booleans(),
    has_bias=st.booleans(),
    scale=st.sampled_from([1e-2, 1.0, 100.0]),
)
def test_fused_functional_equals_composed_graph(shape, seed, has_weight, has_bias, scale):
    rng = np.random.default_rng(seed)
    channels = shape[1]
    x = batch(rng, shape, scale=scale)
    weight = rng.uniform(0.5, 2, channels) if has_weight else None
    bias = rng.normal(size=channels) if has_bias else None
    dy = rng.normal(size=shape)
    running = (rng.normal(size=channels), rng.uniform(0.5, 2, channels))
    y_c, composed, rm_c, rv_c = run_tinyad_functional(x, weight, bias, dy, fused=False, running=running)
    y_f, fused, rm_f, rv_f = run_tinyad_functional(x, weight, bias, dy, fused=True, running=running)
    assert y_f.op == "batch_norm (fused)" and y_c.op != "batch_norm (fused)"
    assert_close(y_f, y_c, 1e-12, 1e-12, "output")
    for name, leaf in composed.items():
        if leaf is not None:
            assert_close(fused[name].grad, leaf.grad, 1e-12, 1e-12, f"d{name}")
    assert_close(rm_f, rm_c, 1e-12, 1e-12, "running_mean")
    assert_close(rv_f, rv_c, 1e-12, 1e-12, "running_var")


def test_fused_output_is_one_node_with_input_weight_and_bias_as_parents():
    rng = np.random.default_rng(6)
    x, w, b = tinyad_leaf(batch(rng, (4, 2))), tinyad_leaf(np.ones(2)), tinyad_leaf(np.zeros(2))
    y = F.batch_norm(x, None, None, w, b, training=True, fused=True)
    assert y.parents == (x, w, b)
    assert y.label == "y"


def test_fused_float32_matches_torch():
    rng = np.random.default_rng(7)
    f32 = np.float32
    results = functional_both(
        batch(rng, (6, 3, 4), f32), rng.uniform(0.5, 2, 3).astype(f32), rng.normal(size=3).astype(f32),
        None, None, rng.normal(size=(6, 3, 4)).astype(f32), training=True, fused=True,
    )
    assert_functional_match(*results, **tolerance(np.float32))
    assert results[0].dtype == np.float32 and results[2]["x"].grad.dtype == np.float32


@pytest.mark.parametrize("cls, shape", MODULE_CASES)
def test_fused_module_equals_composed_module_over_steps(cls, shape):
    rng = np.random.default_rng(8)
    composed, fused = cls(shape[1]), cls(shape[1], fused=True)
    randomize_affine(composed, rng)
    fused.load_state_dict(composed.state_dict())
    for step in range(3):
        x, dy = batch(rng, shape, offset=step), rng.normal(size=shape)
        outs = []
        for layer in (composed, fused):
            layer.zero_grad()
            leaf = tinyad_leaf(x)
            y = layer(leaf)
            (y * Tensor(dy)).sum().backward()
            outs.append((y, leaf.grad, layer.weight.grad, layer.bias.grad))
        for name, a, b in zip(("y", "dx", "dweight", "dbias"), outs[1], outs[0]):
            assert_close(a, b, 1e-12, 1e-12, f"step {step}: {name}")
        for name in ("running_mean", "running_var"):
            assert_close(getattr(fused, name), getattr(composed, name), 1e-12, 1e-12, name)


# ---------------------------------------------------------------------------
# 2. conventions, spelled out
# ---------------------------------------------------------------------------


def test_normalization_uses_the_biased_variance():
    # one channel holding 1 and 3: mean 2, biased variance 1, unbiased variance 2
    x = Tensor(np.array([[1.0], [3.0]]))
    # eps must be > 0 in training (as in torch); 1e-300 vanishes next to the variance 1
    y = F.batch_norm(x, None, None, training=True, eps=1e-300)
    np.testing.assert_allclose(y.numpy().ravel(), [-1.0, 1.0], rtol=1e-15)  # unbiased would give -+1/sqrt(2)
    expected = TF.batch_norm(torch.tensor([[1.0], [3.0]], dtype=torch.float64), None, None, training=True, eps=1e-300)
    assert_close(y, expected, 1e-15)


def test_running_var_is_updated_with_the_unbiased_variance_like_torch():
    x = np.array([[1.0], [3.0]])
    rm, rv = Tensor(np.zeros(1)), Tensor(np.ones(1))
    F.batch_norm(Tensor(x), rm, rv, training=True, momentum=0.1)
    # 0.9 * 1 + 0.1 * 2 (unbiased); the biased variance 1 would leave it at 1.0
    np.testing.assert_allclose(rv.numpy(), [1.1], rtol=1e-15)
    np.testing.assert_allclose(rm.numpy(), [0.2], rtol=1e-15)
    trm, trv = torch.zeros(1, dtype=torch.float64), torch.ones(1, dtype=torch.float64)
    TF.batch_norm(torch.from_numpy(x), trm, trv, training=True, momentum=0.1)
    assert_close(rv, trv, 1e-15)
    assert_close(rm, trm, 1e-15)


def test_running_update_is_one_minus_momentum_times_running_plus_momentum_times_batch():
    rng = np.random.default_rng(9)
    x = batch(rng, (6, 2, 3))
    old_mean, old_var = np.array([5.0, -4.0]), np.array([3.0, 0.25])
    rm, rv = Tensor(old_mean), Tensor(old_var)
    momentum = 0.3  # asymmetric: the opposite (Keras) convention would give different numbers
    F.batch_norm(Tensor(x), rm, rv, training=True, momentum=momentum)
    m = 6 * 3
    batch_mean = x.mean(axis=(0, 2))
    batch_var_unbiased = x.var(axis=(0, 2)) * m / (m - 1)
    assert_close(rm, (1 - momentum) * old_mean + momentum * batch_mean, 1e-14)
    assert_close(rv, (1 - momentum) * old_var + momentum * batch_var_unbiased, 1e-14)
    assert not np.allclose(rm.numpy(), momentum * old_mean + (1 - momentum) * batch_mean)


def test_eps_is_inside_the_square_root():
    x = np.array([[0.0, 1.0], [2.0, 5.0], [4.0, 3.0]])
    eps = 10.0  # large, so sqrt(var + eps) and sqrt(var) + eps are far apart
    y = F.batch_norm(Tensor(x), None, None, training=True, eps=eps).numpy()
    centered, var = x - x.mean(axis=0), x.var(axis=0)
    inside = centered / np.sqrt(var + eps)
    outside = centered / (np.sqrt(var) + eps)
    np.testing.assert_allclose(y, inside, rtol=1e-14)
    assert not np.allclose(y, outside, rtol=1e-2)
    assert_close(y, TF.batch_norm(torch.from_numpy(x), None, None, training=True, eps=eps), 1e-14)


def test_eval_mode_puts_eps_inside_the_square_root_of_the_running_var():
    x = np.array([[1.0, 2.0]])
    rm, rv = np.array([0.5, -1.0]), np.array([4.0, 9.0])
    y = F.batch_norm(Tensor(x), Tensor(rm), Tensor(rv), training=False, eps=5.0).numpy()
    np.testing.assert_allclose(y, (x - rm) / np.sqrt(rv + 5.0), rtol=1e-15)


# ---------------------------------------------------------------------------
# 3. one value per channel
# ---------------------------------------------------------------------------


def test_functional_training_with_one_value_per_channel_raises_with_the_shape():
    x = Tensor(np.ones((1, 3)), requires_grad=True)
    with pytest.raises(ValueError, match=r"more than 1 value per channel.*\(1, 3\)"):
        F.batch_norm(x, Tensor(np.zeros(3)), Tensor(np.ones(3)), training=True)
    with pytest.raises(ValueError, match="more than 1 value per channel"):  # the oracle agrees it is an error
        TF.batch_norm(torch.ones(1, 3), torch.zeros(3), torch.ones(3), training=True)


def test_functional_with_one_value_per_channel_and_no_running_stats_raises():
    with pytest.raises(ValueError, match=r"more than 1 value per channel.*\(1, 2, 1\)"):
        F.batch_norm(Tensor(np.ones((1, 2, 1))), None, None, training=True)


def test_fused_training_with_one_value_per_channel_raises():
    with pytest.raises(ValueError, match=r"more than 1 value per channel.*\(1, 3\)"):
        F.batch_norm(Tensor(np.ones((1, 3))), None, None, training=True, fused=True)


@pytest.mark.parametrize(
    "layer, shape",
    [
        pytest.param(nn.BatchNorm1d(3), (1, 3), id="BatchNorm1d-(1,3)"),
        pytest.param(nn.BatchNorm1d(3), (1, 3, 1), id="BatchNorm1d-(1,3,1)"),
        pytest.param(nn.BatchNorm2d(3), (1, 3, 1, 1), id="BatchNorm2d-(1,3,1,1)"),
        pytest.param(nn.BatchNorm2d(3, fused=True), (1, 3, 1, 1), id="BatchNorm2d-fused"),
    ],
)
def test_module_training_with_one_value_per_channel_raises_and_engine_keeps_working(layer, shape):
    rng = np.random.default_rng(10)
    randomize_affine(layer, rng)
    twin = torch_twin(layer)
    shown = re.escape(str(shape))
    with pytest.raises(ValueError, match=rf"more than 1 value per channel.*{shown}"):
        layer(Tensor(np.ones(shape), requires_grad=True))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        twin(torch.ones(shape, dtype=torch.float64))
    np.testing.assert_array_equal(layer.running_mean.numpy(), np.zeros(3))
    np.testing.assert_array_equal(layer.running_var.numpy(), np.ones(3))
    # torch counts the refused batch in num_batches_tracked; tinyad counts only accepted ones
    assert int(layer.num_batches_tracked.numpy()) == 0 and int(twin.num_batches_tracked) == 1
    twin.num_batches_tracked.zero_()
    # the failure left nothing behind: a proper batch trains and matches torch
    good = (4, *shape[1:2], *[2] * (len(shape) - 2))
    assert_runs_match(run_both(layer, twin, batch(rng, good), rng.normal(size=good)), what="after the error")
    assert_same_buffers(layer, twin, what="after the error")


def test_batchnorm1d_with_one_sample_but_several_positions_trains_like_torch():
    # (1, C, L) has L values per channel: allowed, as in torch
    module_steps_against_torch(nn.BatchNorm1d(2), (1, 2, 5), steps=3)


@pytest.mark.parametrize("cls, shape", [(nn.BatchNorm1d, (1, 3)), (nn.BatchNorm2d, (1, 3, 1, 1))])
def test_eval_mode_with_a_batch_of_one_uses_the_running_statistics(cls, shape):
    rng = np.random.default_rng(11)
    layer = cls(3)
    randomize_affine(layer, rng)
    train_shape = (8, *shape[1:])
    for _ in range(3):
        layer(Tensor(batch(rng, train_shape)))
    twin = torch_twin(layer.eval())
    x = batch(rng, shape)
    view = (1, 3) + (1,) * (len(shape) - 2)
    expected = (x - layer.running_mean.numpy().reshape(view)) / np.sqrt(layer.running_var.numpy().reshape(view) + layer.eps)
    expected = expected * layer.weight.numpy().reshape(view) + layer.bias.numpy().reshape(view)
    y = layer(Tensor(x))
    assert_close(y, expected, 1e-12)
    assert_runs_match(run_both(layer, twin, x, rng.normal(size=shape)), what="eval batch of one")


# ---------------------------------------------------------------------------
# 4. every intermediate is a labelled node
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(5, 3), (3, 2, 2, 3)])
def test_every_training_intermediate_is_a_labelled_node_with_the_numpy_value(shape):
    rng = np.random.default_rng(12)
    x = batch(rng, shape)
    gamma, beta = rng.uniform(0.5, 2, shape[1]), rng.normal(size=shape[1])
    eps = 1e-3
    y = F.batch_norm(tinyad_leaf(x), None, None, tinyad_leaf(gamma), tinyad_leaf(beta), True, eps=eps)
    axes = (0,) + tuple(range(2, x.ndim))
    view = (1, shape[1]) + (1,) * (x.ndim - 2)
    mean = x.mean(axis=axes, keepdims=True)
    centered = x - mean
    var = (centered**2).mean(axis=axes, keepdims=True)
    expected = {
        "batch_mean": mean,
        "centered": centered,
        "batch_var": var,
        "var_eps": var + eps,
        "inv_std": 1 / np.sqrt(var + eps),
        "x_hat": centered / np.sqrt(var + eps),
        "y": centered / np.sqrt(var + eps) * gamma.reshape(view) + beta.reshape(view),
    }
    for label, value in expected.items():
        node = tinyad.find(y, label)
        assert node.label == label
        assert_close(node, value, 1e-12, what=label)
    assert tinyad.find(y, "y") is y


def test_eval_graph_labels_the_running_statistics_and_centers_with_them():
    rm, rv = np.array([1.0, -2.0]), np.array([0.5, 4.0])
    x = np.array([[0.0, 1.0], [3.0, 2.0]])
    y = F.batch_norm(tinyad_leaf(x), Tensor(rm), Tensor(rv), training=False)
    # (C,) broadcasts against (N, C) as it is; (N, C, H, W) gets a (1, C, 1, 1) view (next test)
    assert_close(tinyad.find(y, "running_mean"), rm, 0)
    assert_close(tinyad.find(y, "centered"), x - rm, 1e-15)
    # the running statistics are constants, so inv_std is a constant leaf (nothing recorded behind it)
    assert_close(tinyad.find(y, "inv_std"), (rv + 1e-5) ** -0.5, 1e-15)
    with pytest.raises(ValueError, match="batch_mean"):
        tinyad.find(y, "batch_mean")


def test_four_dimensional_eval_graph_views_the_running_statistics_per_channel():
    rm, rv = np.array([1.0, -2.0]), np.array([0.5, 4.0])
    x = np.arange(16.0).reshape(2, 2, 2, 2)
    y = F.batch_norm(tinyad_leaf(x), Tensor(rm), Tensor(rv), training=False)
    assert_close(tinyad.find(y, "running_mean"), rm.reshape(1, 2, 1, 1), 0)
    assert_close(tinyad.find(y, "centered"), x - rm.reshape(1, 2, 1, 1), 1e-15)


def test_two_dimensional_graph_uses_gamma_and_beta_without_a_reshape_node():
    x, gamma, beta = tinyad_leaf(np.eye(3)), tinyad_leaf(np.ones(3)), tinyad_leaf(np.zeros(3))
    y = F.batch_norm(x, None, None, gamma, beta, training=True)
    assert y.parents[1] is beta and y.parents[0].parents[1] is gamma
    assert all(node.op != "reshape" for node in tinyad.graph.topological_order(y))


def test_labelled_nodes_receive_the_gradients_torch_computes_for_the_same_intermediates():
    rng = np.random.default_rng(13)
    x, gamma, dy = batch(rng, (6, 3)), rng.uniform(0.5, 2, 3), rng.normal(size=(6, 3))
    y = F.batch_norm(tinyad_leaf(x), None, None, tinyad_leaf(gamma), None, True)
    (y * Tensor(dy)).sum().backward()
    tx, tg = torch_leaf(x), torch_leaf(gamma)
    mean = tx.mean(0, keepdim=True)
    centered = tx - mean
    var = (centered**2).mean(0, keepdim=True)
    inv_std = (var + 1e-5) ** -0.5
    x_hat = centered * inv_std
    for t in (mean, centered, var, inv_std, x_hat):
        t.retain_grad()
    ((x_hat * tg) * torch.from_numpy(dy)).sum().backward()
    for label, t in [("batch_mean", mean), ("centered", centered), ("batch_var", var), ("inv_std", inv_std), ("x_hat", x_hat)]:
        assert_close(tinyad.find(y, label).grad, t.grad, 1e-10, what=f"d{label}")


# ---------------------------------------------------------------------------
# 5. scalar BatchNorm over Values
# ---------------------------------------------------------------------------


@FEW
@given(n=st.integers(2, 5), d=st.integers(1, 3), seed=st.integers(0, 2**31 - 1), affine=st.booleans())
def test_scalar_batch_norm_matches_the_tensor_version(n, d, seed, affine):
    rng = np.random.default_rng(seed)
    x, dy = batch(rng, (n, d)), rng.normal(size=(n, d))
    gamma, beta = rng.uniform(0.5, 2, d), rng.normal(size=d)
    eps = 1e-3
    samples = [[Value(x[i, j]) for j in range(d)] for i in range(n)]
    gammas = [Value(g) for g in gamma] if affine else None
    betas = [Value(b) for b in beta] if affine else None
    outputs = F.batch_norm_scalar(samples, gammas, betas, eps=eps)
    loss = Value(0.0)
    for i in range(n):
        for j in range(d):
            loss = loss + outputs[i][j] * dy[i, j]
    loss.backward()

    x_t = tinyad_leaf(x)
    g_t, b_t = (tinyad_leaf(gamma), tinyad_leaf(beta)) if affine else (None, None)
    y_t = F.batch_norm(x_t, None, None, g_t, b_t, training=True, eps=eps)
    (y_t * Tensor(dy)).sum().backward()

    assert_close([[v.data for v in row] for row in outputs], y_t, 1e-12, 1e-12, "output")
    assert_close([[v.grad for v in row] for row in samples], x_t.grad, 1e-12, 1e-12, "dx")
    if affine:
        assert_close([g.grad for g in gammas], g_t.grad, 1e-12, 1e-12, "dgamma")
        assert_close([b.grad for b in betas], b_t.grad, 1e-12, 1e-12, "dbeta")


def test_scalar_batch_norm_labels_its_statistics_per_feature():
    samples = [[Value(1.0), Value(10.0)], [Value(3.0), Value(20.0)], [Value(5.0), Value(60.0)]]
    out = F.batch_norm_scalar(samples)
    assert tinyad.find(out[0][1], "batch_mean[1]").data == pytest.approx(30.0)
    assert tinyad.find(out[0][0], "batch_var[0]").data == pytest.approx(8.0 / 3.0)  # biased


def test_scalar_batch_norm_rejects_a_single_sample():
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        F.batch_norm_scalar([[Value(1.0), Value(2.0)]])


# ---------------------------------------------------------------------------
# 6. detach_stats=True: the variant the paper warns against
# ---------------------------------------------------------------------------


def detached_and_true_grads(x, gamma, dy, eps=1e-5):
    grads = []
    for detach in (True, False):
        leaf = tinyad_leaf(x)
        y = F.batch_norm(leaf, None, None, Tensor(gamma), None, True, eps=eps, detach_stats=detach)
        (y * Tensor(dy)).sum().backward()
        grads.append((y, leaf.grad))
    return grads


def test_detached_stats_gradient_equals_the_hand_formula():
    rng = np.random.default_rng(14)
    x, gamma, dy = batch(rng, (7, 3)), rng.uniform(0.5, 2, 3), rng.normal(size=(7, 3))
    (_, detached), _ = detached_and_true_grads(x, gamma, dy)
    assert_close(detached, batch_norm_backward_detached_stats(x, gamma, dy), 1e-12)


def test_detached_stats_gradient_differs_from_the_true_gradient():
    rng = np.random.default_rng(15)
    x, gamma, dy = batch(rng, (7, 3)), rng.uniform(0.5, 2, 3), rng.normal(size=(7, 3))
    (_, detached), (_, true) = detached_and_true_grads(x, gamma, dy)
    tx = torch_leaf(x)
    (TF.batch_norm(tx, None, None, torch.from_numpy(gamma), None, True) * torch.from_numpy(dy)).sum().backward()
    assert_close(true, tx.grad, 1e-10)
    assert np.abs(detached - true).max() > 1e-2


def test_detached_stats_leaves_the_forward_values_unchanged():
    rng = np.random.default_rng(16)
    x, gamma, dy = batch(rng, (5, 2)), rng.uniform(0.5, 2, 2), rng.normal(size=(5, 2))
    (y_detached, _), (y_true, _) = detached_and_true_grads(x, gamma, dy)
    assert_close(y_detached, numpy_batch_norm_train(x, gamma), 1e-12)
    assert_close(y_true, numpy_batch_norm_train(x, gamma), 1e-12)


def test_sum_of_outputs_has_zero_true_gradient_but_not_with_detached_stats():
    # sum_i y_i = N * beta whatever x is, so d(sum y)/dx = 0; detaching the statistics loses that
    rng = np.random.default_rng(17)
    x, gamma = batch(rng, (6, 2)), rng.uniform(0.5, 2, 2)
    ones = np.ones_like(x)
    (_, detached), (_, true) = detached_and_true_grads(x, gamma, ones)
    assert np.abs(true).max() < 1e-12
    inv_std = 1 / np.sqrt(x.var(axis=0) + 1e-5)
    assert_close(detached, np.broadcast_to(gamma * inv_std, x.shape), 1e-12)
    assert np.abs(detached).min() > 0.1


# ---------------------------------------------------------------------------
# 7. the hand derivations in tinyad.check
# ---------------------------------------------------------------------------


def torch_intermediate_grads(x, gamma, beta, dy, eps):
    tx, tg, tb = torch_leaf(x), torch_leaf(gamma), torch_leaf(beta)
    mean = tx.mean(0, keepdim=True)
    centered = tx - mean
    var = (centered**2).mean(0, keepdim=True)
    x_hat = centered * (var + eps) ** -0.5
    for t in (mean, var, x_hat):
        t.retain_grad()
    ((tg * x_hat + tb) * torch.from_numpy(dy)).sum().backward()
    return {"x_hat": x_hat.grad, "batch_var": var.grad, "batch_mean": mean.grad, "x": tx.grad, "gamma": tg.grad, "beta": tb.grad}


@pytest.mark.parametrize("eps", [1e-5, 0.5])
def test_backward_steps_match_torch_autograd(eps):
    rng = np.random.default_rng(18)
    x, gamma, beta, dy = batch(rng, (9, 4)), rng.uniform(0.5, 2, 4), rng.normal(size=4), rng.normal(size=(9, 4))
    hand = batch_norm_backward_steps(x, gamma, dy, eps)
    oracle = torch_intermediate_grads(x, gamma, beta, dy, eps)
    assert set(hand) == set(oracle)
    for name in hand:
        assert_close(hand[name], oracle[name], 1e-10, what=name)


def test_backward_steps_match_the_engine():
    rng = np.random.default_rng(19)
    x, gamma, beta, dy = batch(rng, (6, 2)), rng.uniform(0.5, 2, 2), rng.normal(size=2), rng.normal(size=(6, 2))
    xl, gl, bl = tinyad_leaf(x), tinyad_leaf(gamma), tinyad_leaf(beta)
    y = F.batch_norm(xl, None, None, gl, bl, True)
    (y * Tensor(dy)).sum().backward()
    hand = batch_norm_backward_steps(x, gamma, dy)
    engine = {"x_hat": tinyad.find(y, "x_hat").grad, "batch_var": tinyad.find(y, "batch_var").grad,
              "batch_mean": tinyad.find(y, "batch_mean").grad, "x": xl.grad, "gamma": gl.grad, "beta": bl.grad}
    for name in hand:
        assert_close(engine[name], hand[name], 1e-10, what=name)


def test_compact_backward_matches_torch_and_the_engine():
    rng = np.random.default_rng(20)
    x, gamma, dy = batch(rng, (8, 3)), rng.uniform(0.5, 2, 3), rng.normal(size=(8, 3))
    compact = batch_norm_backward_compact(x, gamma, dy)
    assert_close(compact, torch_intermediate_grads(x, gamma, np.zeros(3), dy, 1e-5)["x"], 1e-10)
    (_, _), (_, engine) = detached_and_true_grads(x, gamma, dy)
    assert_close(compact, engine, 1e-10)


def test_check_batch_norm_by_hand_rows_are_all_approximate_and_print_a_table(capsys):
    rng = np.random.default_rng(21)
    rows = check_batch_norm_by_hand(batch(rng, (5, 3)), rng.uniform(0.5, 2, 3), rng.normal(size=3))
    assert [row.name for row in rows] == ["dx_hat", "dbatch_var", "dbatch_mean", "dx", "dgamma", "dbeta", "dx (compact)"]
    assert all(row.approximate for row in rows), rows
    printed = capsys.readouterr().out
    assert "approximate" in printed and "maxdiff" in printed
    for row in rows:
        assert row.name in printed
    assert len(printed.strip().splitlines()) == len(rows) + 2  # header, rule, one line per row


def test_check_batch_norm_by_hand_is_silent_with_show_false(capsys):
    rng = np.random.default_rng(22)
    rows = check_batch_norm_by_hand(batch(rng, (4, 2)), np.ones(2), np.zeros(2), show=False)
    assert all(row.approximate for row in rows)
    assert capsys.readouterr().out == ""


# ---------------------------------------------------------------------------
# 8. set_population_statistics (the paper's Algorithm 2)
# ---------------------------------------------------------------------------


def bn_inputs_seen_by_torch(model: nn.Module, batches) -> dict:
    """The input of every BatchNorm layer for every batch, in training mode, computed by torch."""
    twin = torch_twin(model).train()
    seen: dict = {}
    hooks = []
    for (name, layer), (_, tlayer) in zip(model.named_modules(), twin.named_modules()):
        if isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d)):
            seen[name] = []
            hooks.append(tlayer.register_forward_hook(lambda mod, inp, out, name=name: seen[name].append(inp[0].detach().numpy())))
    with torch.no_grad():
        for b in batches:
            twin(torch.from_numpy(b))
    for hook in hooks:
        hook.remove()
    return seen


def population_model():
    tinyad.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 3), nn.BatchNorm1d(3))


def test_population_statistics_are_mean_of_batch_means_and_unbiased_mean_of_batch_variances():
    rng = np.random.default_rng(23)
    model = population_model()
    randomize_affine(model, rng)
    batches = [batch(rng, (8, 5), offset=k) for k in range(5)]
    seen = bn_inputs_seen_by_torch(model, batches)
    nn.set_population_statistics(model, batches)
    for name in ("1", "4"):
        inputs = seen[name]
        m = inputs[0].shape[0]
        expected_mean = np.mean([h.mean(axis=0) for h in inputs], axis=0)
        expected_var = m / (m - 1) * np.mean([((h - h.mean(axis=0)) ** 2).mean(axis=0) for h in inputs], axis=0)
        layer = model[int(name)]
        assert_close(layer.running_mean, expected_mean, 1e-10, what=f"layer {name} mean")
        assert_close(layer.running_var, expected_var, 1e-10, what=f"layer {name} var")


def test_population_statistics_for_batchnorm2d_count_every_position():
    rng = np.random.default_rng(24)
    model = nn.Sequential(nn.BatchNorm2d(2))
    batches = [batch(rng, (3, 2, 2, 4)) for _ in range(4)]
    nn.set_population_statistics(model, batches)
    m = 3 * 2 * 4
    means = [b.mean(axis=(0, 2, 3)) for b in batches]
    variances = [b.var(axis=(0, 2, 3)) for b in batches]
    assert_close(model[0].running_mean, np.mean(means, axis=0), 1e-12)
    assert_close(model[0].running_var, m / (m - 1) * np.mean(variances, axis=0), 1e-12)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_population_statistics_restore_the_training_flag(mode):
    model = population_model()
    getattr(model, mode)()
    nn.set_population_statistics(model, [np.ones((4, 5)) + np.arange(20).reshape(4, 5) ** 1.5])
    assert all(module.training == (mode == "train") for module in model.modules())


def test_population_statistics_do_not_depend_on_or_otherwise_touch_the_running_stats():
    rng = np.random.default_rng(25)
    batches = [batch(rng, (6, 5)) for _ in range(3)]
    fresh, used = population_model(), population_model()
    for _ in range(4):  # give ``used`` running stats and a batch count of its own
        used(Tensor(batch(rng, (6, 5), offset=10.0)))
    counts = [int(layer.num_batches_tracked.numpy()) for layer in (used[1], used[4])]
    nn.set_population_statistics(fresh, batches)
    nn.set_population_statistics(used, batches)
    for index in (1, 4):
        assert_close(used[index].running_mean, fresh[index].running_mean, 1e-14)
        assert_close(used[index].running_var, fresh[index].running_var, 1e-14)
    assert [int(layer.num_batches_tracked.numpy()) for layer in (used[1], used[4])] == counts
    assert int(fresh[1].num_batches_tracked.numpy()) == 0
    assert all(param.grad is None for param in used.parameters())


def test_population_statistics_then_eval_normalizes_with_them_like_torch():
    rng = np.random.default_rng(26)
    model = population_model()
    randomize_affine(model, rng)
    nn.set_population_statistics(model, [batch(rng, (8, 5)) for _ in range(3)])
    model.eval()
    twin = torch_twin(model)  # loads the population statistics through state_dict
    x = batch(rng, (4, 5))
    assert_runs_match(run_both(model, twin, x, rng.normal(size=(4, 3))), what="eval with population stats")


def test_population_statistics_need_a_batchnorm_layer_and_a_batch():
    with pytest.raises(ValueError, match="no BatchNorm"):
        nn.set_population_statistics(nn.Sequential(nn.Linear(2, 2)), [np.ones((3, 2))])
    model = population_model().eval()
    before = [(layer.running_mean.numpy().copy(), layer.running_var.numpy().copy()) for layer in (model[1], model[4])]
    with pytest.raises(ValueError, match="no batches"):
        nn.set_population_statistics(model, [])
    assert model.training is False
    for layer, (mean, var) in zip((model[1], model[4]), before):  # the failed call set no statistic
        np.testing.assert_array_equal(layer.running_mean.numpy(), mean)
        np.testing.assert_array_equal(layer.running_var.numpy(), var)

"""``Value`` and ``Tensor`` are two engines over one graph: the same computation,
written elementwise with Values and vectorized with Tensors, must give the
same numbers and the same gradients (to 1e-12). Each result is also checked
against PyTorch, so the two engines cannot agree on a shared mistake.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinyad import Tensor, Value

SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])

TOL = 1e-12


def assert_same(values, expected, what):
    values = np.asarray(values, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert values.shape == expected.shape, f"{what}: shape {values.shape} vs {expected.shape}"
    scale = np.maximum(1.0, np.abs(expected))
    worst = float(np.max(np.abs(values - expected) / scale)) if values.size else 0.0
    assert worst <= TOL, f"{what}: differs by {worst:.3g} (relative) > {TOL}\n{values}\n{expected}"


def floats(low=-2.0, high=2.0):
    return st.floats(low, high, allow_nan=False, allow_infinity=False, allow_subnormal=False)


def vectors(n, low=-2.0, high=2.0):
    return st.lists(floats(low, high), min_size=n, max_size=n)


# --------------------------------------------------------------------------
# A neuron: act(sum_i w_i x_i + b)
# --------------------------------------------------------------------------

ACTIVATIONS = ["tanh", "sigmoid", "relu", "exp"]


def neuron_values(x, w, b, act):
    xs = [Value(v) for v in x]
    ws = [Value(v) for v in w]
    bv = Value(b)
    total = bv
    for xi, wi in zip(xs, ws):
        total = total + wi * xi
    out = getattr(total, act)()
    out.backward()
    return out.data, [v.grad for v in xs], [v.grad for v in ws], bv.grad


def neuron_tensor(x, w, b, act):
    xt, wt, bt = Tensor(x, requires_grad=True), Tensor(w, requires_grad=True), Tensor(b, requires_grad=True)
    out = getattr((wt * xt).sum() + bt, act)()
    out.backward()
    return out.item(), xt.grad, wt.grad, bt.grad


def neuron_matmul_tensor(x, w, b, act):
    xt, wt, bt = Tensor(x, requires_grad=True), Tensor(w, requires_grad=True), Tensor(b, requires_grad=True)
    out = getattr(xt @ wt + bt, act)()
    out.backward()
    return out.item(), xt.grad, wt.grad, bt.grad


def neuron_torch(x, w, b, act):
    xt, wt, bt = (torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in (x, w, b))
    out = getattr((wt * xt).sum() + bt, act)()
    out.backward()
    return out.item(), xt.grad.numpy(), wt.grad.numpy(), bt.grad.item()


def _compare_neuron(tensor_fn, x, w, b, act):
    v_out, v_gx, v_gw, v_gb = neuron_values(x, w, b, act)
    t_out, t_gx, t_gw, t_gb = tensor_fn(x, w, b, act)
    assert_same(t_out, v_out, "output")
    assert_same(t_gx, v_gx, "dL/dx")
    assert_same(t_gw, v_gw, "dL/dw")
    assert_same(t_gb, v_gb, "dL/db")
    o_out, o_gx, o_gw, o_gb = neuron_torch(x, w, b, act)
    assert_same(v_out, o_out, "Value output vs torch")
    assert_same(v_gx, o_gx, "Value dL/dx vs torch")
    assert_same(v_gw, o_gw, "Value dL/dw vs torch")
    assert_same(v_gb, o_gb, "Value dL/db vs torch")


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_neuron_value_and_tensor_agree_on_output_and_gradients(act):
    _compare_neuron(neuron_tensor, [0.5, -1.2, 2.0], [0.3, 0.8, -0.45], 0.1, act)


@pytest.mark.parametrize("act", ACTIVATIONS)
@SETTINGS
@given(x=vectors(3), w=vectors(3), b=floats())
def test_random_neuron_value_and_tensor_agree(act, x, w, b):
    _compare_neuron(neuron_tensor, x, w, b, act)


@SETTINGS
@given(x=vectors(4), w=vectors(4), b=floats())
def test_neuron_written_with_matmul_agrees_with_value_neuron(x, w, b):
    _compare_neuron(neuron_matmul_tensor, x, w, b, "tanh")


# --------------------------------------------------------------------------
# BatchNorm-like normalization of 4 numbers
# --------------------------------------------------------------------------

EPS = 1e-5


def batchnorm_values(x, gamma, beta, weights):
    xs = [Value(v) for v in x]
    g, b = Value(gamma), Value(beta)
    n = len(xs)
    mean = sum(xs, Value(0.0)) / n
    var = sum(((xi - mean) ** 2 for xi in xs), Value(0.0)) / n
    std = (var + EPS).sqrt()
    ys = [g * ((xi - mean) / std) + b for xi in xs]
    loss = sum((yi * wi for yi, wi in zip(ys, weights)), Value(0.0))
    loss.backward()
    return [y.data for y in ys], loss.data, [v.grad for v in xs], g.grad, b.grad


def batchnorm_tensor(x, gamma, beta, weights, style):
    xt = Tensor(x, requires_grad=True)
    g, b = Tensor(gamma, requires_grad=True), Tensor(beta, requires_grad=True)
    mean = xt.mean()
    if style == "var":
        var = xt.var(correction=0)
    else:  # composed from primitives, like the Value version
        var = ((xt - mean) ** 2).mean()
    y = g * ((xt - mean) / (var + EPS).sqrt()) + b
    loss = (y * Tensor(weights)).sum()
    loss.backward()
    return y.numpy(), loss.item(), xt.grad, g.grad, b.grad


def batchnorm_torch(x, gamma, beta, weights):
    xt, g, b = (torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in (x, gamma, beta))
    mean = xt.mean()
    var = xt.var(correction=0)
    y = g * ((xt - mean) / (var + EPS).sqrt()) + b
    loss = (y * torch.tensor(weights, dtype=torch.float64)).sum()
    loss.backward()
    return y.detach().numpy(), loss.item(), xt.grad.numpy(), g.grad.item(), b.grad.item()


def _compare_batchnorm(x, gamma, beta, weights, style):
    values = batchnorm_values(x, gamma, beta, weights)
    tensors = batchnorm_tensor(x, gamma, beta, weights, style)
    names = ["y", "loss", "dL/dx", "dL/dgamma", "dL/dbeta"]
    for name, t, v in zip(names, tensors, values):
        assert_same(t, v, f"{name} (Tensor vs Value)")
    for name, v, o in zip(names, values, batchnorm_torch(x, gamma, beta, weights)):
        # the normalization divides by a small std: allow rounding relative to 1/std
        np.testing.assert_allclose(v, o, rtol=1e-9, atol=1e-9, err_msg=f"{name} (Value vs torch)")


@pytest.mark.parametrize("style", ["var", "composed"])
def test_batchnorm_of_four_numbers_value_and_tensor_agree(style):
    _compare_batchnorm([1.0, -0.5, 2.5, 0.25], 1.5, -0.3, [0.7, -1.1, 0.4, 2.0], style)


@pytest.mark.parametrize("style", ["var", "composed"])
@SETTINGS
@given(x=vectors(4, -3.0, 3.0), gamma=floats(0.5, 2.0), beta=floats(), weights=vectors(4))
def test_random_batchnorm_of_four_numbers_value_and_tensor_agree(style, x, gamma, beta, weights):
    _compare_batchnorm(x, gamma, beta, weights, style)


def test_batchnorm_gradient_of_x_sums_to_zero_in_both_engines():
    # d loss / d x sums to zero because shifting every x leaves y unchanged
    _, _, value_grads, _, _ = batchnorm_values([1.0, -0.5, 2.5, 0.25], 1.5, -0.3, [0.7, -1.1, 0.4, 2.0])
    _, _, tensor_grads, _, _ = batchnorm_tensor([1.0, -0.5, 2.5, 0.25], 1.5, -0.3, [0.7, -1.1, 0.4, 2.0], "var")
    assert abs(math.fsum(value_grads)) < 1e-12
    assert abs(float(np.sum(tensor_grads))) < 1e-12


# --------------------------------------------------------------------------
# Elementwise op chains: every Value op against its Tensor counterpart
# --------------------------------------------------------------------------

CHAINS = {
    "arith": lambda a, b: (a * b - a / (b * b + 1.0)) * 3.0 + 2.0 - b,
    "powers": lambda a, b: (a * a + 1.0) ** 1.5 + (b * b + 0.5) ** -0.5 + a**3 + 2.0 ** (a * 0.5),
    "tensor-power": lambda a, b: (a * a + 0.5) ** (b * 0.5),
    "transcendental": lambda a, b: (a.tanh() * b.sigmoid()).exp() + (b * b + 1.0).log() - (a * a + 0.1).sqrt(),
    "kinks": lambda a, b: (a * b).relu() + (a - b).abs() - (-a),
    "reflected": lambda a, b: 1.0 / (a * a + 1.0) - 2.0 * b + (3.0 - a) / 4.0,
}


@pytest.mark.parametrize("name", list(CHAINS))
@SETTINGS
@given(a=vectors(3), b=vectors(3))
def test_elementwise_chain_value_and_tensor_agree(name, a, b):
    fn = CHAINS[name]
    va, vb = [Value(v) for v in a], [Value(v) for v in b]
    outs = [fn(x, y) for x, y in zip(va, vb)]
    total = sum(outs, Value(0.0))
    total.backward()
    ta, tb = Tensor(a, requires_grad=True), Tensor(b, requires_grad=True)
    tout = fn(ta, tb)
    tout.sum().backward()
    assert_same(tout.numpy(), [o.data for o in outs], "outputs")
    assert_same(ta.grad, [v.grad for v in va], "dL/da")
    assert_same(tb.grad, [v.grad for v in vb], "dL/db")
    # and both agree with torch
    pa, pb = (torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in (a, b))
    fn(pa, pb).sum().backward()
    np.testing.assert_allclose(ta.grad, pa.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(tb.grad, pb.grad.numpy(), rtol=1e-10, atol=1e-12)

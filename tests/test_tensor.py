"""The Tensor class (tinyad/tensor.py) as a whole: composite functions against PyTorch and
finite differences, construction and dtypes, the backward API, deep graphs, a leaf's own
gradient array, and the gradient of a broadcast factor.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import tinyad
from tinyad import Tensor
from tinyad.check import gradcheck

from tensor_oracle import assert_close, assert_matches_torch, upstream_weights

RNG_SEED = 20240601


def fixed(shape, low=-2.0, high=2.0, seed=0):
    return np.random.default_rng(RNG_SEED + seed).uniform(low, high, size=shape)


# ==========================================================================
# Composite functions: torch and finite differences
# ==========================================================================


def _log_softmax_loss(logits, labels, lib):
    if lib == "tinyad":
        z = logits - logits.max(axis=1, keepdims=True)
        lse = z.exp().sum(axis=1).log()
    else:
        z = logits - torch.amax(logits, dim=1, keepdim=True)
        lse = z.exp().sum(dim=1).log()
    picked = z[list(range(logits.shape[0])), labels]
    return (lse - picked).mean()


def _batch_norm(x, gamma, beta, lib):
    if lib == "tinyad":
        mean, var = x.mean(axis=0, keepdims=True), x.var(axis=0, keepdims=True, correction=0)
    else:
        mean, var = x.mean(dim=0, keepdim=True), x.var(dim=0, keepdim=True, correction=0)
    return gamma * (x - mean) / (var + 1e-5).sqrt() + beta


def test_softmax_cross_entropy_composite_matches_torch():
    logits, labels = fixed((4, 5), seed=25), [1, 4, 1, 0]
    assert_matches_torch(lambda t: _log_softmax_loss(t, labels, "tinyad"), [logits],
                         torch_fn=lambda t: _log_softmax_loss(t, labels, "torch"))


def test_batch_norm_composite_matches_torch():
    x, gamma, beta = fixed((6, 3), seed=26), fixed((3,), 0.5, 1.5, seed=27), fixed((3,), seed=28)
    assert_matches_torch(lambda *t: _batch_norm(*t, "tinyad"), [x, gamma, beta],
                         torch_fn=lambda *t: _batch_norm(*t, "torch"))


def test_two_layer_mlp_composite_matches_torch():
    x, w1, b1, w2 = fixed((5, 3), seed=29), fixed((3, 4), seed=30), fixed((4,), seed=31), fixed((4, 2), seed=32)
    assert_matches_torch(lambda x, w1, b1, w2: ((x @ w1 + b1).tanh() @ w2).relu() ** 2, [x, w1, b1, w2])


W_CONST = fixed((4, 3), seed=33)

GRADCHECK_CASES = {
    "softmax-cross-entropy": (
        lambda t: _log_softmax_loss(t, [2, 0, 1, 2], "tinyad"),
        [fixed((4, 3), seed=34)],
    ),
    "batch-norm": (
        lambda x, g, b: (_batch_norm(x, g, b, "tinyad") * Tensor(W_CONST)).sum(),
        [fixed((4, 3), seed=35), fixed((3,), 0.5, 1.5, seed=36), fixed((3,), seed=37)],
    ),
    "mlp": (
        lambda x, w1, b1, w2: ((x @ w1 + b1).sigmoid() @ w2).tanh().mean(),
        [fixed((3, 2), seed=38), fixed((2, 4), seed=39), fixed((4,), seed=40), fixed((4,), seed=41)],
    ),
    "powers-and-division": (
        lambda a, b: ((a.abs() + 0.5) ** b / (b * b + 1.0) + 2.0 ** (a * 0.3)).var(axis=0, correction=1).sum(),
        [fixed((3, 2), seed=42), fixed((2,), seed=43)],
    ),
    "shapes-and-indexing": (
        lambda a, b: (
            tinyad.stack([a.permute(1, 0), b.reshape(3, 2)], axis=-1)[[0, 0, 2], 1:]
            * tinyad.concatenate([a, b], axis=1).T[[1, 1, 0]].reshape(3, 2, -1)
        ).exp().sum(),
        [fixed((2, 3), seed=44), fixed((2, 3), seed=45)],
    ),
    "max-where-maximum": (
        lambda a, b: (
            tinyad.where(a > 0.1, a * b, b.exp()) + tinyad.maximum(a, b * 0.5) * a.max(axis=1, keepdims=True)
        ).tanh().sum(),
        [np.array([[0.7, -0.4, 1.3], [-1.1, 0.35, 0.9]]), np.array([[0.2, 1.7, -0.6], [0.4, -1.5, 2.2]])],
    ),
}


@pytest.mark.parametrize("name", list(GRADCHECK_CASES))
def test_composite_tensor_function_passes_finite_difference_gradcheck(name):
    fn, arrays_ = GRADCHECK_CASES[name]
    inputs = [Tensor(np.array(a, dtype=np.float64), requires_grad=True) for a in arrays_]
    assert gradcheck(fn, inputs, eps=1e-6, atol=1e-6, rtol=1e-5)


def test_gradcheck_detects_a_wrong_tensor_gradient():
    # the oracle itself must be able to fail: detach() hides one path from backward
    x = Tensor(fixed((3,), seed=46), requires_grad=True)
    with pytest.raises(AssertionError, match="gradient of input 0"):
        gradcheck(lambda t: (t * t.detach()).sum(), [x])


# ==========================================================================
# Construction semantics and the backward API
# ==========================================================================


@pytest.mark.parametrize("data", [3.5, 3, True, [1.5, 2.0], [1, 2, 3], [[1, 2], [3, 4]], (1, 2.5)],
                         ids=["float", "int", "bool", "float-list", "int-list", "nested-int-list", "tuple"])
def test_python_numbers_and_lists_become_float64(data):
    t = Tensor(data)
    assert t.dtype == np.float64
    np.testing.assert_array_equal(t.numpy(), np.array(data, dtype=np.float64))


def test_int_list_tensor_can_require_grad_because_it_is_float64():
    t = Tensor([1, 2, 3], requires_grad=True)
    (t * t).sum().backward()
    np.testing.assert_array_equal(t.grad, [2.0, 4.0, 6.0])


def test_float32_numpy_array_stays_float32():
    t = Tensor(np.array([1.0, 2.0], dtype=np.float32))
    assert t.dtype == np.float32


FLOAT32_OPS = {
    "add-number": lambda t: t + 2.5,
    "radd-number": lambda t: 2 + t,
    "sub-number": lambda t: t - 1e-3,
    "rsub-number": lambda t: 1.5 - t,
    "mul-number": lambda t: t * 3.25,
    "div-number": lambda t: t / 7.0,
    "rdiv-number": lambda t: 1.0 / t,
    "pow-number": lambda t: t**2.5,
    "rpow-number": lambda t: 2.0**t,
    "neg": lambda t: -t,
    "exp": lambda t: t.exp(),
    "log": lambda t: t.log(),
    "sqrt": lambda t: t.sqrt(),
    "tanh": lambda t: t.tanh(),
    "sigmoid": lambda t: t.sigmoid(),
    "relu": lambda t: t.relu(),
    "abs": lambda t: t.abs(),
    "sum": lambda t: t.sum(axis=0),
    "mean": lambda t: t.mean(axis=1),
    "var": lambda t: t.var(axis=0),
    "max": lambda t: t.max(axis=1),
    "max-all": lambda t: t.max(),
    "maximum-number": lambda t: tinyad.maximum(t, 1.0),
    "minimum-self": lambda t: tinyad.minimum(t, t * 0.5),
    "where-number": lambda t: tinyad.where(t > 1.0, t, 0.5),
    "matmul": lambda t: t @ t.T,
    "reshape": lambda t: t.reshape(-1),
    "permute": lambda t: t.permute(1, 0),
    "getitem": lambda t: t[[0, 0, 1]],
    "concatenate": lambda t: tinyad.concatenate([t, t], axis=1),
    "stack": lambda t: tinyad.stack([t, t]),
}


@pytest.mark.parametrize("name", list(FLOAT32_OPS))
def test_float32_tensor_op_keeps_float32_values_and_gradients(name):
    x = Tensor(np.array([[0.5, 1.5, 2.0], [1.0, 3.0, 0.25]], dtype=np.float32), requires_grad=True)
    out = FLOAT32_OPS[name](x)
    assert out.dtype == np.float32, f"{name}: output dtype {out.dtype}"
    out.backward(np.ones(out.shape, dtype=np.float32))
    assert x.grad.dtype == np.float32, f"{name}: gradient dtype {x.grad.dtype}"
    assert x.grad.shape == x.shape


def test_float32_gradients_agree_with_torch_float32():
    data = np.array([[0.5, -1.5, 2.0], [1.0, 3.0, -0.25]], dtype=np.float32)
    x = Tensor(data, requires_grad=True)
    ((x * 2.5).tanh() * x + x.exp() / 3.0).sum().backward()
    t = torch.tensor(data, requires_grad=True)
    ((t * 2.5).tanh() * t + t.exp() / 3.0).sum().backward()
    np.testing.assert_allclose(x.grad, t.grad.numpy(), rtol=1e-5)


@pytest.mark.parametrize("dtype", ["float32", "float64", np.float32, "int64"])
def test_explicit_dtype_is_respected(dtype):
    t = Tensor([1, 2, 3], dtype=dtype)
    assert t.dtype == np.dtype(dtype)


def test_integer_numpy_array_keeps_its_integer_dtype_like_torch():
    t = Tensor(np.array([1, 2, 3], dtype=np.int64))
    assert t.dtype == np.int64
    assert torch.tensor(np.array([1, 2, 3], dtype=np.int64)).dtype == torch.int64


@pytest.mark.parametrize("number", [0.5, -1.25])
def test_integer_tensor_times_python_float_gives_the_float_result_like_numpy_and_torch(number):
    data = np.array([1, 2, 3], dtype=np.int64)
    got = (Tensor(data) * number).numpy()
    np.testing.assert_array_equal(got, data * number)
    np.testing.assert_allclose(got, (torch.tensor(data) * number).numpy())


def test_shape_ndim_size_device_attributes():
    t = Tensor(np.zeros((2, 3, 4)))
    assert t.shape == (2, 3, 4)
    assert t.ndim == 3
    assert t.size == 24
    assert t.device == "cpu"
    assert t.dtype == np.float64


@pytest.mark.parametrize("data", [2.5, [2.5], [[2.5]]])
def test_item_of_a_one_element_tensor_is_a_python_float(data):
    value = Tensor(data).item()
    assert type(value) is float and value == 2.5


def test_numpy_returns_an_ndarray_with_the_values():
    a = fixed((2, 3), seed=47)
    out = Tensor(a).numpy()
    assert isinstance(out, np.ndarray)
    np.testing.assert_array_equal(out, a)


def test_grad_is_none_before_backward():
    x = Tensor([1.0, 2.0], requires_grad=True)
    y = x * 2.0
    assert x.grad is None and y.grad is None


def test_no_gradient_flows_through_detach_like_torch():
    a = fixed((3,), seed=48)
    run = assert_matches_torch(lambda t: t * t.detach() + t.detach().exp(), [a])
    np.testing.assert_allclose(run.grads[0], a * upstream_weights((3,)))


def test_detached_tensor_is_a_leaf_that_does_not_require_grad():
    x = Tensor([1.0, 2.0], requires_grad=True)
    d = (x * 3.0).detach()
    assert d.requires_grad is False and d.parents == ()
    np.testing.assert_array_equal(d.numpy(), [3.0, 6.0])


def test_constant_input_receives_no_gradient():
    x = Tensor([1.0, 2.0], requires_grad=True)
    c = Tensor([3.0, 4.0])
    (x * c).sum().backward()
    assert c.grad is None
    np.testing.assert_array_equal(x.grad, [3.0, 4.0])


def test_operations_under_no_grad_are_not_recorded():
    x = Tensor([1.0, 2.0], requires_grad=True)
    with tinyad.no_grad():
        y = x * 2.0
    assert y.requires_grad is False and y.parents == ()


def test_gradients_accumulate_over_two_backward_calls_like_torch():
    a = fixed((2, 3), seed=49)
    x = Tensor(a, requires_grad=True)
    t = torch.tensor(a, requires_grad=True)
    for _ in range(2):
        ((x * x).tanh() @ Tensor(np.arange(3.0))).sum().backward()
        ((t * t).tanh() @ torch.arange(3.0, dtype=torch.float64)).sum().backward()
        assert_close(x.grad, t.grad.numpy(), "accumulated gradient")


def test_intermediate_backward_twice_gives_twice_the_gradient_like_torch():
    a = fixed((3,), seed=50)
    x = Tensor(a, requires_grad=True)
    y = (x.exp() * x).sum()
    y.backward()
    y.backward()
    t = torch.tensor(a, requires_grad=True)
    s = (t.exp() * t).sum()
    s.backward(retain_graph=True)
    s.backward()
    assert_close(x.grad, t.grad.numpy(), "gradient after two backward calls")


@pytest.mark.parametrize("as_tensor", [False, True], ids=["array", "Tensor"])
def test_backward_with_gradient_array_on_non_scalar_output_matches_torch(as_tensor):
    a = fixed((2, 3), seed=51)
    seed = fixed((3, 3), seed=52)
    x = Tensor(a, requires_grad=True)
    out = x.T @ x.sigmoid()
    out.backward(Tensor(seed) if as_tensor else seed)
    t = torch.tensor(a, requires_grad=True)
    t.T.matmul(t.sigmoid()).backward(torch.tensor(seed))
    assert_close(x.grad, t.grad.numpy(), "gradient")


def test_backward_on_one_element_non_0d_output_needs_no_gradient_like_torch():
    a = fixed((1, 1), seed=53)
    x = Tensor(a, requires_grad=True)
    (x * 3.0).exp().backward()
    t = torch.tensor(a, requires_grad=True)
    (t * 3.0).exp().backward()
    assert_close(x.grad, t.grad.numpy(), "gradient")


# ==========================================================================
# Deep graphs
# ==========================================================================


def test_deep_chain_of_100000_ops_backward_without_recursion_error():
    x = Tensor([1.0, 2.0], requires_grad=True)
    y = x
    for _ in range(100_000):
        y = y * 1.00001
    y.sum().backward()
    expected = math.exp(100_000 * math.log1p(0.00001))  # 1.00001 ** 100000
    np.testing.assert_allclose(x.grad, [expected, expected], rtol=1e-9)
    np.testing.assert_allclose(y.numpy(), [expected, 2 * expected], rtol=1e-9)
    del y  # freeing the chain must not overflow the C stack either


def test_deep_chain_of_alternating_ops_matches_closed_form():
    x = Tensor([0.5, -0.5], requires_grad=True)
    y = x
    for i in range(50_000):
        y = y + 1.0 if i % 2 else y - 1.0
    (y * Tensor([2.0, 3.0])).sum().backward()
    np.testing.assert_array_equal(x.grad, [2.0, 3.0])
    np.testing.assert_array_equal(y.numpy(), [0.5, -0.5])


# ==========================================================================
# A leaf's gradient is an array of its own
# ==========================================================================


def _leaf_graphs():
    """Leaves reached by one, two and three messages, by pass-through messages
    (``+`` sends its upstream on unchanged), read-only broadcast views (the
    mean's backward) and fresh products, and a root that is itself a leaf."""
    x = Tensor(np.arange(6.0).reshape(2, 3), requires_grad=True, label="x")
    w = Tensor([0.5, -1.0, 2.0], requires_grad=True, label="w")
    yield "one message, passed through", (x,), x + 1.0
    yield "one message, a broadcast view", (x,), x.mean(axis=0, keepdims=True)
    yield "two messages", (x,), x * 2.0 + x.mean(axis=0, keepdims=True)
    yield "three messages", (x, w), x * w + x + (x - x.mean(axis=0, keepdims=True)) * w
    yield "the root is the leaf", (x,), x


@pytest.mark.parametrize("case", list(range(5)))
def test_leaf_grad_shares_memory_with_no_message_and_no_seed(case):
    name, leaves, out = list(_leaf_graphs())[case]
    seed = np.linspace(-1.0, 1.0, out.data.size).reshape(out.shape)
    out.backward(seed)
    messages = [m for _, _, m in tinyad.graph.edges(out) if m is not None]
    for leaf in leaves:
        assert leaf.grad.flags.writeable and leaf.grad.flags.owndata, name
        assert not np.shares_memory(leaf.grad, seed), name
        for m in messages:
            assert not np.shares_memory(leaf.grad, m), f"{name}: {leaf.label}.grad shares memory with a message"
    # so changing a gradient in place (an optimizer may) leaves the recorded messages as they were
    recorded = [m.copy() for m in messages]
    for leaf in leaves:
        leaf.grad *= 0.0
    for before, m in zip(recorded, messages):
        np.testing.assert_array_equal(m, before)


# ==========================================================================
# The gradient of a broadcast factor: a sum over its copies
# ==========================================================================


@pytest.mark.parametrize(
    "full_shape, factor_shape",
    [((64, 16), (16,)), ((64, 16), (1, 16)), ((8, 5, 3, 4), (1, 5, 1, 1)), ((8, 5, 3, 4), (5, 1, 1)), ((6, 7), ())],
)
def test_gradient_of_a_broadcast_factor_matches_torch(full_shape, factor_shape):
    # a per-channel factor scaling a batch: its gradient is a sum over the batch of
    # upstream * the other factor
    rng = np.random.default_rng(3)
    batch, factor = rng.normal(size=full_shape), rng.normal(size=factor_shape)
    assert_matches_torch(lambda a, b: a * b, [batch, factor])
    assert_matches_torch(lambda a, b: b * a, [batch, factor])
    weights = rng.normal(size=full_shape)
    # and in float32 it keeps its dtype and agrees with torch to float32 rounding
    x = Tensor(batch.astype(np.float32), requires_grad=True)
    w = Tensor(factor.astype(np.float32), requires_grad=True)
    (x * w).backward(weights.astype(np.float32))
    tx = torch.tensor(batch.astype(np.float32), requires_grad=True)
    tw = torch.tensor(factor.astype(np.float32), requires_grad=True)
    (tx * tw).backward(torch.tensor(weights.astype(np.float32)))
    assert w.grad.dtype == np.float32 and w.grad.shape == factor_shape
    np.testing.assert_allclose(w.grad, tw.grad.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(x.grad, tx.grad.numpy(), rtol=1e-6)

"""What the device tests share: the battery of ops, a run on any device, a small MLP and its training.

``OPS`` maps a name to (a function of the leaves, its input arrays); the same
function runs on every device, and ``assert_same_as_cpu`` compares.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

import tinyad
from tinyad import Tensor, nn, optim
from tinyad.graph import topological_order
from tinyad.nn import functional as F

from conftest import SpyArray

ROOT = Path(__file__).resolve().parent.parent.parent


def fixed(shape, low=-2.0, high=2.0, seed=0):
    return np.random.default_rng(seed).uniform(low, high, size=shape)


def positive(shape, seed=0):
    return fixed(shape, 0.5, 2.0, seed)


MASK = np.array([[True, False, True], [False, True, True]])

# name -> (function of the leaves, input arrays); the same function runs on every device
OPS = {
    "add (broadcast)": (lambda a, b: a + b, [fixed((2, 3)), fixed((3,), seed=1)]),
    "number + tensor": (lambda a: 2.5 + a - 1, [fixed((2, 3))]),
    "sub": (lambda a, b: a - b, [fixed((2, 3)), fixed((2, 1), seed=1)]),
    "number - tensor": (lambda a: 1.5 - a, [fixed((4,))]),
    "mul": (lambda a, b: a * b, [fixed((2, 3)), fixed((3,), seed=1)]),
    "number * tensor": (lambda a: 3 * a * 0.5, [fixed((2, 3))]),
    "div": (lambda a, b: a / b, [fixed((2, 3)), positive((3,), seed=1)]),
    "number / tensor": (lambda a: 2.0 / a, [positive((2, 3))]),
    "neg": (lambda a: -a, [fixed((3,))]),
    "pow 3": (lambda a: a**3, [fixed((2, 3))]),
    "pow 2": (lambda a: a**2, [fixed((2, 3))]),
    "pow 0.5": (lambda a: a**0.5, [positive((2, 3))]),
    "pow -1": (lambda a: a**-1, [positive((2, 3))]),
    "tensor ** tensor": (lambda a, b: a**b, [positive((2, 3)), fixed((3,), seed=1)]),
    "number ** tensor": (lambda a: 2.0**a, [fixed((2, 3))]),
    "matmul 2-D": (lambda a, b: a @ b, [fixed((2, 3)), fixed((3, 4), seed=1)]),
    "matmul 1-D @ 2-D": (lambda a, b: a @ b, [fixed((3,)), fixed((3, 4), seed=1)]),
    "matmul 2-D @ 1-D": (lambda a, b: a @ b, [fixed((2, 3)), fixed((3,), seed=1)]),
    "matmul 1-D @ 1-D": (lambda a, b: a @ b, [fixed((3,)), fixed((3,), seed=1)]),
    "matmul batched": (lambda a, b: a @ b, [fixed((2, 2, 3)), fixed((3, 4), seed=1)]),
    "exp": (lambda a: a.exp(), [fixed((2, 3))]),
    "log": (lambda a: a.log(), [positive((2, 3))]),
    "tanh": (lambda a: a.tanh(), [fixed((2, 3))]),
    "sigmoid": (lambda a: a.sigmoid(), [fixed((2, 3), -40, 40)]),
    "relu": (lambda a: a.relu(), [fixed((2, 3))]),
    "sqrt": (lambda a: a.sqrt(), [positive((2, 3))]),
    "abs": (lambda a: a.abs(), [fixed((2, 3))]),
    "maximum (ties)": (lambda a, b: tinyad.maximum(a, b), [np.array([1.0, 2.0, 3.0]), np.array([1.0, 0.0, 4.0])]),
    "minimum": (lambda a, b: tinyad.minimum(a, b), [fixed((2, 3)), fixed((3,), seed=1)]),
    "where (host mask)": (lambda a, b: tinyad.where(MASK, a, b), [fixed((2, 3)), fixed((3,), seed=1)]),
    "where (tensor mask)": (lambda a, b: tinyad.where(a > 0, a, b * 2), [fixed((2, 3)), fixed((2, 3), seed=1)]),
    "sum": (lambda a: a.sum(), [fixed((2, 3))]),
    "sum axis keepdims": (lambda a: a.sum(axis=1, keepdims=True), [fixed((2, 3))]),
    "mean axes": (lambda a: a.mean(axis=(0, 2)), [fixed((2, 3, 4))]),
    "var biased": (lambda a: a.var(axis=0, correction=0), [fixed((4, 3))]),
    "var": (lambda a: a.var(), [fixed((4, 3))]),
    "max axis (ties)": (lambda a: a.max(axis=1), [np.array([[1.0, 3.0, 3.0], [2.0, 0.0, -1.0]])]),
    "max": (lambda a: a.max(), [fixed((2, 3))]),
    "reshape": (lambda a: a.reshape(3, 2) * 2, [fixed((2, 3))]),
    "permute": (lambda a: a.permute(2, 0, 1), [fixed((2, 3, 4))]),
    "transpose / T": (lambda a: a.transpose(0, 1) + a.T, [fixed((3, 3))]),
    "index int and slice": (lambda a: a[1, 1:], [fixed((2, 3))]),
    "index repeated ints": (lambda a: a[np.array([0, 2, 2, 1])], [fixed((3, 2))]),
    "index list": (lambda a: a[[1, 1, 0]], [fixed((3,))]),
    "index boolean mask": (lambda a: a[MASK], [fixed((2, 3))]),
    "index None and Ellipsis": (lambda a: a[None, ..., 0], [fixed((2, 3))]),
    "concatenate": (lambda a, b: tinyad.concatenate([a, b], axis=1), [fixed((2, 3)), fixed((2, 1), seed=1)]),
    "stack": (lambda a, b: tinyad.stack([a, b], axis=1), [fixed((2, 3)), fixed((2, 3), seed=1)]),
    "detach": (lambda a: a.detach() * a, [fixed((2, 3))]),
    "batch_norm composed": (
        lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True),
        [fixed((5, 3)), positive((3,), 1), fixed((3,), seed=2)],
    ),
    "batch_norm composed 4-D": (
        lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True),
        [fixed((2, 3, 2, 2)), positive((3,), 1), fixed((3,), seed=2)],
    ),
    "batch_norm detached stats": (
        lambda x, w: F.batch_norm(x, None, None, w, None, training=True, detach_stats=True),
        [fixed((5, 3)), positive((3,), 1)],
    ),
    "batch_norm fused": (
        lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True, fused=True),
        [fixed((5, 3)), positive((3,), 1), fixed((3,), seed=2)],
    ),
    "batch_norm fused 4-D, no affine": (
        lambda x: F.batch_norm(x, None, None, None, None, training=True, fused=True),
        [fixed((2, 3, 2, 2))],
    ),
    "cross_entropy": (lambda z: F.cross_entropy(z, np.array([0, 2, 1, 2])).reshape(1), [fixed((4, 3), -5, 5)]),
    "mse_loss": (lambda a: F.mse_loss(a, np.ones((2, 3))).reshape(1), [fixed((2, 3))]),
    "linear": (lambda x, w, b: F.linear(x, w, b), [fixed((4, 3)), fixed((2, 3), seed=1), fixed((2,), seed=2)]),
}


def run(device, fn, arrays):
    """fn on leaves on ``device``; backward of (out * W).sum() with W on the device too.

    Returns (leaves, out, loss); nothing is copied back to the host.
    """
    leaves = [Tensor(a, requires_grad=True, device=device) for a in arrays]
    out = fn(*leaves)
    weights = Tensor(fixed(out.shape, 0.5, 2.0, seed=99), device=device)
    loss = (out * weights).sum()
    loss.backward()
    return leaves, out, loss


def on_host(device, fn, arrays):
    leaves, out, loss = run(device, fn, arrays)
    assert out.device == device and loss.device == device
    return out.numpy(), [leaf.grad if leaf.grad is None else leaf.backend.to_numpy(leaf.grad) for leaf in leaves]


def assert_same_as_cpu(device, fn, arrays, rtol=1e-10, atol=1e-12):
    value, grads = on_host(device, fn, arrays)
    want_value, want_grads = on_host("cpu", fn, arrays)
    np.testing.assert_allclose(value, want_value, rtol=rtol, atol=atol)
    for got, want in zip(grads, want_grads):
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


def arrays_in(thing):
    """Every array-like object inside ``thing`` (tuples and lists are opened)."""
    if isinstance(thing, (tuple, list)):
        for part in thing:
            yield from arrays_in(part)
    elif thing is not None and hasattr(thing, "dtype") and hasattr(thing, "shape"):
        yield thing


def assert_all_spy(root, what):
    """Every data, grad, message and saved array of the graph under ``root`` is a SpyArray."""
    for node in topological_order(root):
        name = f"{what}: node {node.label or node.op or 'leaf'!r}"
        assert node.device == "spy", name
        assert type(node.data) is SpyArray, f"{name}: .data is {type(node.data).__name__}"
        assert node.grad is None or type(node.grad) is SpyArray, f"{name}: .grad is {type(node.grad).__name__}"
        for message in arrays_in(node.messages):
            assert type(message) is SpyArray, f"{name}: a message is {type(message).__name__}"
        for saved in arrays_in(node.saved):  # masks, index arrays, statistics
            assert type(saved) is SpyArray, f"{name}: a saved array is {type(saved).__name__}"


def assert_stays_on_the_spy_and_matches_the_cpu(spy_device, fn, arrays, what):
    """fn and its backward on the spy device: every array stays a SpyArray, nothing
    is copied to the host, and the value and gradients are the CPU's."""
    with spy_device.no_host_transfers():  # host data may come in; nothing may go out
        leaves, out, loss = run("spy", fn, arrays)
    assert_all_spy(loss, what)
    for leaf in leaves:
        assert type(leaf.grad) is SpyArray, what
    assert spy_device.host_copies == 0
    want_value, want_grads = on_host("cpu", fn, arrays)
    np.testing.assert_allclose(out.numpy(), want_value, rtol=1e-12, atol=1e-14)
    for leaf, want in zip(leaves, want_grads):
        np.testing.assert_allclose(spy_device.to_numpy(leaf.grad), want, rtol=1e-12, atol=1e-14)


def mlp(fused=False, seed=0):
    tinyad.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(6, 8), nn.BatchNorm1d(8, fused=fused), nn.ReLU(),
        nn.Linear(8, 8), nn.BatchNorm1d(8), nn.Tanh(),
        nn.Linear(8, 3),
    )


OPTIMIZERS = {
    "SGD momentum": lambda params: optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=1e-3),
    "SGD nesterov": lambda params: optim.SGD(params, lr=0.05, momentum=0.8, nesterov=True),
    "Adam": lambda params: optim.Adam(params, lr=0.01, weight_decay=1e-3),
}


def train(model, make_optimizer, device, steps=3):
    """A few training steps on ``device``; returns the optimizer and the last loss tensor."""
    rng = np.random.default_rng(5)
    optimizer = make_optimizer(model.parameters())
    loss = None
    for _ in range(steps):
        x = Tensor(rng.normal(size=(16, 6)), device=device)
        labels = rng.integers(0, 3, size=16)
        loss = F.cross_entropy(model(x), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return optimizer, loss

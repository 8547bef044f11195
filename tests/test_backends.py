"""Devices: every op, BatchNorm, the losses, layers and optimizers on every backend.

Three kinds of evidence, because the CUDA device cannot be run everywhere:

1. ``backend_device`` runs a battery of ops (forward and backward), BatchNorm
   (composed and fused), the losses, ``Linear``, SGD and Adam on "cpu" and,
   where CuPy and a GPU exist, on "cuda", and compares with the CPU. Without
   a GPU the CUDA cases are SKIPPED.
2. The "spy" backend (tests/conftest.py) proves on the CPU that no op reaches
   around the backend: the same battery runs on it, every array in every
   graph (data, grad, messages, saved arrays), every parameter, buffer and
   optimizer state must stay a ``SpyArray``, NumPy functions called on spy
   arrays from outside ``backend.xp`` raise, and a whole training step runs
   with every host conversion forbidden (on a GPU, each would be a
   device-to-host copy). A static check adds that the engine's modules do not
   import numpy, except where documented.
3. ``CupyBackend``'s own code (its fused BatchNorm kernels, constants,
   host copies) runs on the CPU against a stand-in for CuPy whose
   ``ElementwiseKernel`` and ``ReductionKernel`` evaluate the kernels'
   expressions with NumPy; this checks the kernels' arithmetic, argument
   order and dtypes, not their compilation by CUDA.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinyad
from tinyad import Tensor, nn, optim
from tinyad import backend as backend_module
from tinyad.backend import CudaUnavailableError, CupyBackend, get_backend
from tinyad.graph import topological_order
from tinyad.nn import functional as F
from tinyad.nn import init as nn_init
from tinyad.nn import modules as nn_modules

from conftest import HostTransferError, LeakError, ReachAroundError, SpyArray

ROOT = Path(__file__).resolve().parent.parent


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


# ===========================================================================
# 1. every op on every device
# ===========================================================================


@pytest.mark.parametrize("name", list(OPS))
def test_op_forward_and_backward_match_the_cpu_on_every_device(backend_device, name):
    fn, arrays = OPS[name]
    assert_same_as_cpu(backend_device, fn, arrays)


@pytest.mark.parametrize("shape", [(64, 16), (8, 4, 3, 5)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fused_batch_norm_equals_the_composed_graph_on_every_device(backend_device, shape, dtype):
    rng = np.random.default_rng(3)
    x = (rng.normal(size=shape) * 3 + 1).astype(dtype)
    weight, bias = rng.uniform(0.5, 2, shape[1]).astype(dtype), rng.normal(size=shape[1]).astype(dtype)
    dy = rng.normal(size=shape).astype(dtype)
    results = []
    for fused in (False, True):
        leaves = [Tensor(a, requires_grad=True, device=backend_device) for a in (x, weight, bias)]
        running = [Tensor(np.zeros(shape[1], dtype), device=backend_device), Tensor(np.ones(shape[1], dtype), device=backend_device)]
        y = F.batch_norm(leaves[0], *running, leaves[1], leaves[2], training=True, fused=fused)
        assert y.dtype == dtype and (y.op == "batch_norm (fused)") == fused
        y.backward(Tensor(dy, device=backend_device))
        results.append([y.numpy()] + [leaf.backend.to_numpy(leaf.grad) for leaf in leaves] + [r.numpy() for r in running])
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == "float32" else dict(rtol=1e-10, atol=1e-10)
    for name, fused, composed in zip(("y", "dx", "dweight", "dbias", "running_mean", "running_var"), results[1], results[0]):
        np.testing.assert_allclose(fused, composed, err_msg=name, **tol)


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


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_training_steps_match_the_cpu_on_every_device(backend_device, name):
    reference, model = mlp(fused=True), mlp(fused=True)
    model.to(backend_device)
    _, want_loss = train(reference, OPTIMIZERS[name], "cpu")
    _, loss = train(model, OPTIMIZERS[name], backend_device)
    assert loss.device == backend_device
    np.testing.assert_allclose(loss.item(), want_loss.item(), rtol=1e-8)
    for (key, want), (_, got) in zip(reference.state_dict().items(), model.state_dict().items()):
        np.testing.assert_allclose(got, want, rtol=1e-7, atol=1e-9, err_msg=key)


def test_module_to_moves_parameters_buffers_and_grads_in_place_and_back(backend_device):
    model = mlp()
    before = {id(t): t for t in model.parameters()}
    (model(Tensor(fixed((4, 6)))).sum()).backward()
    state = model.state_dict()
    model.to(backend_device)
    assert {id(t) for t in model.parameters()} == set(before)  # the same tensors, moved
    for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
        assert tensor.device == backend_device, name
        assert isinstance(tensor.data, tensor.backend.array_type), name
    for param in model.parameters():
        assert isinstance(param.grad, param.backend.array_type)
    model.to("cpu")
    for key, array in model.state_dict().items():
        np.testing.assert_array_equal(array, state[key], err_msg=key)
        assert type(array) is np.ndarray


def test_to_and_cpu_copy_across_devices_and_gradients_flow_back(backend_device):
    x = Tensor(fixed((2, 3)), requires_grad=True)
    on_device = x.to(backend_device)
    assert on_device.device == backend_device
    back = (on_device * 3).exp().cpu()
    assert back.device == "cpu"
    back.sum().backward()
    np.testing.assert_allclose(x.grad, 3 * np.exp(3 * fixed((2, 3))), rtol=1e-12)


def test_set_population_statistics_on_every_device(backend_device):
    model, reference = mlp(), mlp()
    model.to(backend_device)
    batches = [fixed((8, 6), seed=s) for s in range(3)]
    nn.set_population_statistics(model, batches)
    nn.set_population_statistics(reference, batches)
    for (key, want), (_, got) in zip(reference.state_dict().items(), model.state_dict().items()):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, err_msg=key)


def test_printing_and_item_copy_to_the_host(backend_device):
    t = Tensor([1.5, 2.5], device=backend_device)
    assert "1.5" in repr(t) and (backend_device == "cpu" or backend_device in repr(t))
    assert t.sum().item() == 4.0
    assert type(t.numpy()) is np.ndarray


# ===========================================================================
# 2. the spy backend: no op reaches around backend.xp
# ===========================================================================


@pytest.mark.parametrize("name", list(OPS))
def test_op_on_the_spy_backend_stays_on_it_without_host_transfers_and_matches_the_cpu(spy_device, name):
    fn, arrays = OPS[name]
    with spy_device.no_host_transfers():  # host data may come in; nothing may go out
        leaves, out, loss = run("spy", fn, arrays)
    assert_all_spy(loss, name)
    for leaf in leaves:
        assert type(leaf.grad) is SpyArray, name
    assert spy_device.host_copies == 0
    want_value, want_grads = on_host("cpu", fn, arrays)
    np.testing.assert_allclose(out.numpy(), want_value, rtol=1e-12, atol=1e-14)
    for leaf, want in zip(leaves, want_grads):
        np.testing.assert_allclose(spy_device.to_numpy(leaf.grad), want, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("exponent", [-0.5, -1.0, -2.0, -2.5])
def test_negative_power_at_signed_zero_and_infinite_bases_without_value_checks_matches_torch(spy_device, exponent):
    # the GPU's rule: no value check, so 0 ** n is inf and its gradient must carry torch's sign
    import torch

    bases = np.array([-0.0, 0.0, np.inf, -np.inf, 2.0])
    x = tinyad.Tensor(bases, requires_grad=True, device="spy")
    with np.errstate(all="ignore"):
        (x**exponent).backward(np.ones(bases.shape))
    theirs = torch.tensor(bases, requires_grad=True)
    (theirs**exponent).backward(torch.ones(bases.shape, dtype=torch.float64))
    np.testing.assert_array_equal(spy_device.to_numpy(x.grad), theirs.grad.numpy())


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_training_on_the_spy_backend_stays_on_it_and_never_touches_numpy_or_the_host(spy_device, monkeypatch, name):
    reference, model = mlp(fused=True), mlp(fused=True)
    model.to("spy")  # the initial values (made by NumPy on the host) move with the model
    for tensor in list(model.parameters()) + [b for _, b in model.named_buffers()]:
        assert type(tensor.data) is SpyArray and tensor.device == "spy"

    # from here on, the modules' numpy (host-side init and state_dict only) must not be touched
    class Forbidden:
        def __getattr__(self, attribute):
            raise ReachAroundError(f"numpy.{attribute} used by tinyad.nn during training")

    rng = np.random.default_rng(5)
    batches = [(Tensor(rng.normal(size=(16, 6)), device="spy"), rng.integers(0, 3, size=16)) for _ in range(3)]
    optimizer = OPTIMIZERS[name](model.parameters())
    with monkeypatch.context() as patch:
        patch.setattr(nn_modules, "np", Forbidden())
        patch.setattr(nn_init, "np", Forbidden())
        with spy_device.no_host_transfers():
            for x, labels in batches:
                loss = F.cross_entropy(model(x), labels)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    assert_all_spy(loss, name)
    for param in model.parameters():
        assert type(param.data) is SpyArray and type(param.grad) is SpyArray
    for key, buffer in model.named_buffers():
        assert type(buffer.data) is SpyArray, key
    states = getattr(optimizer, "momentum_buffers", []) + getattr(optimizer, "first_moments", []) + getattr(optimizer, "second_moments", [])
    assert states and all(type(s) is SpyArray for s in states)
    _, want_loss = train(reference, OPTIMIZERS[name], "cpu")
    np.testing.assert_allclose(loss.item(), want_loss.item(), rtol=1e-12)
    for (key, want), (_, got) in zip(reference.state_dict().items(), model.state_dict().items()):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14, err_msg=key)


def test_batchnorm2d_modules_on_the_spy_backend_train_and_eval_without_host_transfers(spy_device):
    for fused in (False, True):
        layer = nn.BatchNorm2d(3, fused=fused).to("spy")
        x = Tensor(fixed((4, 3, 2, 2)), requires_grad=True, device="spy")
        with spy_device.no_host_transfers():
            y = layer(x)
            (y * y).sum().backward()
            layer.eval()
            evaluated = layer(x)
        assert_all_spy(y, "BatchNorm2d train")
        assert_all_spy(evaluated, "BatchNorm2d eval")
        assert type(layer.num_batches_tracked.data) is SpyArray


def test_the_spy_records_the_xp_functions_the_engine_uses(spy_device):
    a = Tensor(fixed((2, 3)), requires_grad=True, device="spy")
    b = Tensor(fixed((2, 3), seed=1), requires_grad=True, device="spy")
    out = tinyad.concatenate([tinyad.where(a > 0, a, b).exp(), a @ b.T], axis=1).sum()
    out.backward()
    for name in ("array", "exp", "where", "concatenate", "swapaxes", "broadcast_to", "ones_like"):
        assert spy_device.calls[name] >= 1, (name, spy_device.calls)


def test_the_spy_catches_reach_arounds_leaks_and_host_transfers(spy_device, monkeypatch):
    a = Tensor(fixed((2, 3)), requires_grad=True, device="spy")
    # a NumPy function called on spy arrays from outside backend.xp
    with pytest.raises(ReachAroundError, match="concatenate"):
        np.concatenate([a.data, a.data])
    # a plain NumPy array meeting a spy array
    with pytest.raises(LeakError):
        a.data + np.ones(3)
    # a host conversion where none is allowed
    with spy_device.no_host_transfers(), pytest.raises(HostTransferError):
        bool((a.data > 0).any())
    # a backward that builds its result with numpy directly is caught during backward
    def leaky_sum_backward(node, upstream):
        (parent,) = node.parents
        return (np.broadcast_to(upstream, parent.data.shape),)

    monkeypatch.setattr(tinyad.ops.reductions, "_sum_backward", leaky_sum_backward)
    with pytest.raises(ReachAroundError, match="broadcast_to"):
        a.sum().backward()
    # the value checks a CPU makes (division by zero...) would read data back on a GPU
    monkeypatch.setattr(spy_device, "checks_values", True)
    with spy_device.no_host_transfers(), pytest.raises(HostTransferError):
        a / a


def test_a_plain_numpy_array_in_a_message_is_reported(spy_device, monkeypatch):
    def leaky_neg_backward(node, upstream):
        return (-np.asarray(upstream),)  # np.asarray drops the spy: a host array

    monkeypatch.setattr(tinyad.ops.elementwise, "_neg_backward", leaky_neg_backward)
    a = Tensor(fixed((3,)), requires_grad=True, device="spy")
    loss = (-a).sum()
    loss.backward()
    with pytest.raises(AssertionError, match="message is ndarray"):
        assert_all_spy(loss, "leaky neg")


# ---------------------------------------------------------------------------
# the static half: no numpy import in the engine, except where documented
# ---------------------------------------------------------------------------

# module -> (why numpy is allowed, the functions that may use it)
NUMPY_ALLOWED = {
    "tinyad/nn/modules.py": (
        "host-side initial values (moved by Module.to) and state_dict, which is host data by definition",
        {"__init__", "state_dict", "load_state_dict", "_state_array"},  # _state_array: load_state_dict's checks
    ),
    "tinyad/nn/init.py": ("the seeded host random generator that layers draw initial values from", None),
}

ENGINE_MODULES = ["tinyad/tensor.py", "tinyad/graph.py", "tinyad/optim.py"] + sorted(
    str(p.relative_to(ROOT)) for p in (ROOT / "tinyad" / "nn").glob("*.py")
)


def numpy_imports(tree):
    """(line, local name) of every way ``tree`` imports numpy."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.asname or alias.name) for alias in node.names if alias.name.split(".")[0] == "numpy"]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "numpy":
            found += [(node.lineno, alias.asname or alias.name) for alias in node.names]
        elif isinstance(node, ast.Call) and any(
            isinstance(arg, ast.Constant) and str(arg.value).split(".")[0] == "numpy" for arg in node.args
        ):
            found.append((node.lineno, "<dynamic import>"))
    return found


@pytest.mark.parametrize("path", ENGINE_MODULES)
def test_engine_modules_do_not_import_numpy_except_where_documented(path):
    tree = ast.parse((ROOT / path).read_text())
    imports = numpy_imports(tree)
    if path not in NUMPY_ALLOWED:
        assert not imports, f"{path} imports numpy at lines {[line for line, _ in imports]}: use backend.xp"
        return
    _, functions = NUMPY_ALLOWED[path]
    if functions is None:
        return
    names = {name for _, name in imports}
    for function in ast.walk(tree):
        if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        uses = {n.id for n in ast.walk(function) if isinstance(n, ast.Name) and n.id in names}
        if uses and function.name not in functions:
            # a nested function is fine only if an allowed one encloses it; there are none
            raise AssertionError(f"{path}: {function.name}() uses numpy ({uses}); only {sorted(functions)} may")


def test_the_modules_numpy_exception_is_documented_where_it_is_imported():
    lines = (ROOT / "tinyad/nn/modules.py").read_text().splitlines()
    at = lines.index("import numpy as np")
    comment = " ".join(line for line in lines[at - 4 : at] if line.startswith("#"))
    assert "host" in comment and "state_dict" in comment and "Module.to" in comment, comment


# ===========================================================================
# 3. optional CuPy: the error without it, and CupyBackend's code on a stand-in
# ===========================================================================


@pytest.fixture
def no_cuda_backend_cached(monkeypatch):
    """A registry without a cached "cuda" backend, restored after the test."""
    registry = {name: b for name, b in backend_module._BACKENDS.items() if name != "cuda"}
    monkeypatch.setattr(backend_module, "_BACKENDS", registry)
    return registry


def test_import_tinyad_works_without_cupy():
    code = (
        "import sys; sys.modules['cupy'] = None\n"
        "import tinyad\n"
        "t = tinyad.Tensor([1.0, 2.0], requires_grad=True); (t * t).sum().backward()\n"
        "assert t.grad.tolist() == [2.0, 4.0]\n"
        "assert 'cupy' not in [m for m, v in sys.modules.items() if v is not None]\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


@pytest.mark.parametrize("ask", [
    lambda: Tensor([1.0], device="cuda"),
    lambda: Tensor([1.0]).to("cuda"),
    lambda: nn.Linear(2, 2).to("cuda"),
    lambda: get_backend("cuda"),
])
def test_cuda_without_cupy_raises_naming_the_extra_and_the_wheels(monkeypatch, no_cuda_backend_cached, ask):
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy now fails, as when it is not installed
    with pytest.raises(CudaUnavailableError) as info:
        ask()
    message = str(info.value)
    assert isinstance(info.value, ImportError) and isinstance(info.value, ValueError)
    for needed in ('pip install "tinyad[gpu]"', "cupy-cuda12x", "cupy-cuda11x", "cuda"):
        assert needed in message, message
    assert not tinyad.backend.cuda_is_available()


def test_cuda_with_cupy_but_no_gpu_raises_saying_so(monkeypatch, no_cuda_backend_cached):
    monkeypatch.setitem(sys.modules, "cupy", SimpleNamespace(is_available=lambda: False))
    with pytest.raises(CudaUnavailableError, match="no usable CUDA GPU") as info:
        Tensor([1.0], device="cuda")
    assert 'tinyad[gpu]' in str(info.value)


def test_an_unknown_device_lists_the_known_ones():
    with pytest.raises(ValueError, match="'tpu': expected 'cpu' or 'cuda'"):
        Tensor([1.0], device="tpu")


@pytest.mark.parametrize("make", [
    lambda other: F.batch_norm(Tensor(fixed((4, 2))), other, None, training=True),
    lambda other: F.batch_norm(Tensor(fixed((4, 2))), None, None, other, training=True, fused=True),
    lambda other: F.cross_entropy(Tensor(fixed((2, 2))), Tensor(np.array([0, 1]), device=other.device)),
])
def test_mixing_devices_in_batch_norm_and_cross_entropy_names_both(spy_device, make):
    other = Tensor(np.ones(2), requires_grad=True, device="spy")
    with pytest.raises(ValueError, match="different devices, cpu.*spy"):
        make(other)


class _FakeKernel:
    """Shared by the stand-ins below: parses "T x, T mean" into names and checks the T's agree."""

    def __init__(self, in_params, out_params, name):
        assert name.isidentifier() and name.startswith("tinyad_"), name
        self.inputs = [p.split()[-1] for p in in_params.split(",")]
        self.outputs = [p.split()[-1] for p in out_params.split(",")]
        assert all(p.split()[0] == "T" for p in (in_params + "," + out_params).split(","))

    def bind(self, args):
        assert len(args) == len(self.inputs), f"{len(args)} arguments for {self.inputs}"
        dtypes = {a.dtype for a in args}
        assert len(dtypes) == 1, f"type placeholder T bound to several dtypes: {dtypes} (CuPy raises here)"
        return dict(zip(self.inputs, args)), dtypes.pop(), np.broadcast_shapes(*(a.shape for a in args))


class FakeElementwiseKernel(_FakeKernel):
    """cupy.ElementwiseKernel's contract, evaluated with NumPy (the operations are also valid Python)."""

    def __init__(self, in_params, out_params, operation, name):
        super().__init__(in_params, out_params, name)
        self.operation = operation

    def __call__(self, *args):
        names, dtype, shape = self.bind(args)
        exec(self.operation, {}, names)
        outputs = [np.broadcast_to(np.asarray(names[o], dtype=dtype), shape).copy() for o in self.outputs]
        return outputs[0] if len(outputs) == 1 else tuple(outputs)


class FakeReductionKernel(_FakeKernel):
    """cupy.ReductionKernel's contract (map, reduce with a + b from 0, post-map), with NumPy."""

    def __init__(self, in_params, out_params, map_expr, reduce_expr, post_map_expr, identity, name):
        super().__init__(in_params, out_params, name)
        assert (reduce_expr, identity) == ("a + b", "0")
        self.map_expr, self.post_map_expr = map_expr, post_map_expr

    def __call__(self, *args, axis=None, keepdims=False):
        names, dtype, shape = self.bind(args)
        mapped = np.broadcast_to(np.asarray(eval(self.map_expr, {}, names), dtype=dtype), shape)
        names["a"] = mapped.sum(axis=axis, keepdims=keepdims, dtype=dtype)
        exec(self.post_map_expr, {}, names)
        return names[self.outputs[0]]


class FakeCupy:
    """numpy, plus the parts of CuPy's API that CupyBackend uses beyond NumPy's."""

    __name__ = "fake_cupy"
    ndarray = np.ndarray
    ElementwiseKernel = FakeElementwiseKernel
    ReductionKernel = FakeReductionKernel

    def __init__(self):
        self.host_copies = 0

    def asnumpy(self, array):
        self.host_copies += 1
        return np.array(array, copy=True)

    @staticmethod
    def is_available():
        return True

    def __getattr__(self, name):
        return getattr(np, name)


@pytest.fixture
def fake_cuda(monkeypatch, no_cuda_backend_cached):
    """device "cuda" served by CupyBackend over FakeCupy (imported lazily, like the real one)."""
    fake = FakeCupy()
    monkeypatch.setitem(sys.modules, "cupy", fake)
    backend = get_backend("cuda")
    assert isinstance(backend, CupyBackend) and backend.xp is fake and get_backend("cuda") is backend
    return backend


@pytest.mark.parametrize("shape", [(6, 4), (4, 3, 5), (3, 2, 4, 4)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("affine", [(True, True), (True, False), (False, False)])
def test_cupy_backend_fused_batch_norm_kernels_equal_the_composed_graph(fake_cuda, shape, dtype, affine):
    rng = np.random.default_rng(11)
    x = (rng.normal(size=shape) * 2 - 1).astype(dtype)
    weight = rng.uniform(0.5, 2, shape[1]).astype(dtype) if affine[0] else None
    bias = rng.normal(size=shape[1]).astype(dtype) if affine[1] else None
    dy = rng.normal(size=shape).astype(dtype)
    results = []
    for device, fused in (("cpu", False), ("cuda", True)):
        leaves = [None if a is None else Tensor(a, requires_grad=True, device=device) for a in (x, weight, bias)]
        running = [Tensor(np.zeros(shape[1], dtype), device=device), Tensor(np.ones(shape[1], dtype), device=device)]
        y = F.batch_norm(leaves[0], *running, leaves[1], leaves[2], training=True, fused=fused)
        y.backward(Tensor(dy, device=device))
        assert y.dtype == dtype
        results.append([y.data] + [leaf.grad for leaf in leaves if leaf is not None] + [r.data for r in running])
    tol = dict(rtol=2e-5, atol=2e-5) if dtype == "float32" else dict(rtol=1e-11, atol=1e-11)
    for got, want in zip(results[1], results[0]):
        assert got.dtype == want.dtype
        np.testing.assert_allclose(got, want, **tol)


def test_cupy_backend_fused_backward_takes_a_broadcast_upstream(fake_cuda):
    x = Tensor(fixed((5, 3)), requires_grad=True, device="cuda")
    w = Tensor(positive((3,)), requires_grad=True, device="cuda")
    y = F.batch_norm(x, None, None, w, None, training=True, fused=True)
    (y.sum() * 2).backward()  # dy is a broadcast view of one number
    np.testing.assert_allclose(x.grad, 0.0, atol=1e-12)  # sum(y) does not depend on x
    np.testing.assert_allclose(w.grad, 0.0, atol=1e-12)


def test_cupy_backend_trains_like_the_cpu_and_copies_to_the_host_only_when_asked(fake_cuda):
    reference, model = mlp(fused=True), mlp(fused=True)
    model.to("cuda")
    copies_after_move = fake_cuda.xp.host_copies
    optimizer, loss = train(model, OPTIMIZERS["Adam"], "cuda")
    assert fake_cuda.xp.host_copies == copies_after_move  # the steps copied nothing back
    _, want = train(reference, OPTIMIZERS["Adam"], "cpu")
    assert loss.device == "cuda" and abs(loss.item() - want.item()) < 1e-9
    x = Tensor([1.0, 0.0], device="cuda")
    assert x.numpy().tolist() == [1.0, 0.0] and fake_cuda.xp.host_copies == copies_after_move + 1
    # no value checks on the GPU: 1 / 0 is inf and log(0) is -inf, as in PyTorch on CUDA
    with np.errstate(divide="ignore"):
        assert np.isinf((1 / x).numpy()[1]) and np.isneginf(x.log().numpy()[1])


def test_cupy_backend_makes_constants_on_the_device(fake_cuda, monkeypatch):
    made = []
    monkeypatch.setattr(FakeCupy, "full", lambda self, shape, value, dtype=None: made.append(value) or np.full(shape, value, dtype=dtype), raising=False)
    t = Tensor([1.0, 2.0], dtype="float32", device="cuda")
    out = t * 0.5 + 3
    assert made == [0.5, 3] and out.dtype == np.float32


# ---------------------------------------------------------------------------
# the real GPU (skipped without CuPy and a CUDA device)
# ---------------------------------------------------------------------------


def test_cuda_tensors_keep_data_and_grads_on_the_gpu(cuda_device):
    import cupy

    x = Tensor(fixed((4, 3)), requires_grad=True, device=cuda_device)
    loss = F.cross_entropy(x, np.array([0, 1, 2, 1]))
    loss.backward()
    assert type(x.data) is cupy.ndarray and type(x.grad) is cupy.ndarray
    for node in topological_order(loss):
        assert isinstance(node.data, cupy.ndarray), node.op


@pytest.mark.parametrize("shape", [(256, 64), (8, 16, 7, 7)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cuda_fused_kernels_match_torch(cuda_device, shape, dtype):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    x = (rng.normal(size=shape) * 3 + 2).astype(dtype)
    weight, bias = rng.uniform(0.5, 2, shape[1]).astype(dtype), rng.normal(size=shape[1]).astype(dtype)
    dy = rng.normal(size=shape).astype(dtype)
    leaves = [Tensor(a, requires_grad=True, device=cuda_device) for a in (x, weight, bias)]
    y = F.batch_norm(*leaves[:1], None, None, *leaves[1:], training=True, fused=True)
    y.backward(Tensor(dy, device=cuda_device))
    px, pw, pb = (torch.tensor(a, requires_grad=True) for a in (x, weight, bias))
    py = torch.nn.functional.batch_norm(px, None, None, pw, pb, training=True)
    py.backward(torch.tensor(dy))
    tol = dict(rtol=1e-3, atol=1e-3) if dtype == "float32" else dict(rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(y.numpy(), py.detach().numpy(), **tol)
    for leaf, ref in zip(leaves, (px, pw, pb)):
        np.testing.assert_allclose(leaf.backend.to_numpy(leaf.grad), ref.grad.numpy(), **tol)


# ---------------------------------------------------------------------------
# the GPU benchmark script, without a GPU
# ---------------------------------------------------------------------------


@pytest.fixture
def bench_gpu(monkeypatch):
    """benchmarks/bench_gpu.py as a module, with write_section recording instead of writing."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_gpu_under_test", ROOT / "benchmarks" / "bench_gpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    written = []
    monkeypatch.setattr(module, "write_section", lambda name, markdown: written.append((name, markdown)))
    module.written = written
    return module


def test_gpu_benchmark_without_cupy_exits_with_a_message_and_writes_nothing(bench_gpu, monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)
    with pytest.raises(SystemExit) as info:
        bench_gpu.main([])
    message = str(info.value.code)
    assert "CuPy is not installed" in message and 'pip install "tinyad[gpu]"' in message and "cupy-cuda11x" in message
    assert "not changed" in message and bench_gpu.written == []


def test_gpu_benchmark_with_a_cpu_only_torch_exits_and_writes_nothing(bench_gpu, monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", SimpleNamespace(is_available=lambda: True))
    monkeypatch.setitem(sys.modules, "torch", SimpleNamespace(__version__="cpu-only", cuda=SimpleNamespace(is_available=lambda: False)))
    with pytest.raises(SystemExit, match="cannot use the GPU"):
        bench_gpu.main([])
    assert bench_gpu.written == []


def test_gpu_benchmark_placeholder_says_not_yet_measured_and_how_to_run_it(bench_gpu):
    bench_gpu.main(["--placeholder"])
    [(name, markdown)] = bench_gpu.written
    assert name == "gpu"
    assert "Not yet measured" in markdown and "python benchmarks/bench_gpu.py" in markdown
    assert 'pip install "tinyad[gpu]"' in markdown


def test_docs_benchmarks_page_has_the_gpu_section():
    text = (ROOT / "docs" / "benchmarks.md").read_text()
    section = text[text.index("<!-- begin gpu -->"): text.index("<!-- end gpu -->")]
    assert "python benchmarks/bench_gpu.py" in section
    assert "Not yet measured" in section or "GB/s" in section


@pytest.mark.parametrize("make", [
    lambda cpu, spy: tinyad.where(cpu > 0, spy, spy),
    lambda cpu, spy: spy[(cpu > 0)],
    lambda cpu, spy: spy + cpu,
    lambda cpu, spy: tinyad.stack([cpu, spy]),
])
def test_mixing_devices_in_masks_indices_and_ops_names_both(spy_device, make):
    cpu = Tensor(np.array([1.0, -1.0]))
    spy = Tensor(np.array([2.0, 3.0]), requires_grad=True, device="spy")
    with pytest.raises(ValueError, match="different devices, (cpu and spy|spy and cpu)"):
        make(cpu, spy)


def test_mean_of_float16_does_not_overflow_where_a_float16_sum_would():
    array = np.full((70_000, 1), 1.0, dtype="float16")  # the float16 sum, 70000, is above 65504
    with np.errstate(over="ignore"):
        assert np.isinf(array.sum(axis=(0,), keepdims=True)).all()
    mean = tinyad.Tensor(array).mean(axis=0, keepdims=True)
    assert mean.dtype == np.float16 and mean.data.tolist() == [[1.0]]
    for fused in (False, True):
        normalized = tinyad.nn.functional.batch_norm(tinyad.Tensor(array), None, None, training=True, fused=fused)
        assert np.isfinite(normalized.data).all()

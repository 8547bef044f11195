"""The "spy" backend proves on the CPU that no op reaches around ``backend.xp``.

The spy (tests/conftest.py) computes with NumPy through a recording wrapper:
the battery of ops runs on it, every array in every graph (data, grad,
messages, saved arrays), every parameter, buffer and optimizer state must
stay a ``SpyArray``, NumPy functions called on spy arrays from outside
``backend.xp`` raise, and a whole training step runs with every host
conversion forbidden (on a GPU, each would be a device-to-host copy). A
static check adds that the engine's modules do not import numpy, except
where documented.
"""
from __future__ import annotations

import ast

import numpy as np
import pytest

import tinyad
from tinyad import Tensor, nn
from tinyad.nn import functional as F
from tinyad.nn import init as nn_init
from tinyad.nn import modules as nn_modules

from conftest import HostTransferError, LeakError, ReachAroundError, SpyArray
from device_cases import (
    OPS, OPTIMIZERS, ROOT, assert_all_spy, assert_stays_on_the_spy_and_matches_the_cpu, fixed, mlp, train,
)


@pytest.mark.parametrize("name", list(OPS))
def test_op_on_the_spy_backend_stays_on_it_without_host_transfers_and_matches_the_cpu(spy_device, name):
    fn, arrays = OPS[name]
    assert_stays_on_the_spy_and_matches_the_cpu(spy_device, fn, arrays, name)


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


@pytest.mark.parametrize("make", [
    lambda other: F.batch_norm(Tensor(fixed((4, 2))), other, None, training=True),
    lambda other: F.batch_norm(Tensor(fixed((4, 2))), None, None, other, training=True, fused=True),
    lambda other: F.cross_entropy(Tensor(fixed((2, 2))), Tensor(np.array([0, 1]), device=other.device)),
])
def test_mixing_devices_in_batch_norm_and_cross_entropy_names_both(spy_device, make):
    other = Tensor(np.ones(2), requires_grad=True, device="spy")
    with pytest.raises(ValueError, match="different devices, cpu.*spy"):
        make(other)


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

"""Every op, BatchNorm, the losses, layers and optimizers on every device, compared with the CPU.

``backend_device`` (tests/conftest.py) runs each test on "cpu" and, where
CuPy runs a kernel on a GPU, on "cuda"; without one the CUDA cases are
SKIPPED with the reason. On a GPU machine ``benchmarks/gpu_check.sh`` runs
this file, ``test_cuda_device.py`` and the rest of ``tests/backend``.
"""
from __future__ import annotations

import numpy as np
import pytest

from tinyad import Tensor, nn
from tinyad.nn import functional as F

from device_cases import OPS, OPTIMIZERS, assert_same_as_cpu, fixed, mlp, train


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


def test_an_unknown_device_lists_the_known_ones():
    with pytest.raises(ValueError, match="'tpu': expected 'cpu' or 'cuda'"):
        Tensor([1.0], device="tpu")

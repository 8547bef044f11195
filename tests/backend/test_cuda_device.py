"""The real GPU: skipped without CuPy, a CUDA device and a working kernel compiler.

``benchmarks/gpu_check.sh`` runs these (with the rest of tests/backend) on a
GPU machine; on any other machine they report SKIPPED and why.
"""
from __future__ import annotations

import numpy as np
import pytest

from tinyad import Tensor
from tinyad.graph import topological_order
from tinyad.nn import functional as F

from device_cases import fixed


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




@pytest.mark.parametrize("shape", [(8192, 64), (4, 8, 33, 33)])
def test_cuda_fused_batch_norm_of_float16_is_finite_and_matches_float64(cuda_device, shape):
    rng = np.random.default_rng(7)
    x = (rng.normal(size=shape) * 2 + 30).astype("float16")  # every channel's float16 sum passes 65504
    y = F.batch_norm(Tensor(x, device=cuda_device), None, None, training=True, fused=True)
    x64 = x.astype("float64")
    axes = (0,) + tuple(range(2, x.ndim))
    want = (x64 - x64.mean(axis=axes, keepdims=True)) / np.sqrt(x64.var(axis=axes, keepdims=True) + 1e-5)
    got = y.numpy()
    assert got.dtype == np.float16 and np.isfinite(got).all()
    np.testing.assert_allclose(got.astype("float64"), want, atol=1e-2, rtol=1e-2)

"""Device "cuda" without a GPU: the errors when it is missing, and ``CupyBackend``'s code on a stand-in.

``CupyBackend``'s own code (its fused BatchNorm kernels, its layouts, its
constants and host copies) runs on the CPU against ``cupy_standin.FakeCupy``,
whose kernels evaluate the kernels' expressions with NumPy and whose
namespace offers only what CuPy 14.2 has. This checks arithmetic, argument
order, type placeholders and the float16 accumulation; the compilation of the
kernels by NVRTC is ``test_cuda_compile.py``.
"""
from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

import tinyad
from tinyad import Tensor, nn
from tinyad import backend as backend_module
from tinyad.backend import CudaUnavailableError, CupyBackend, get_backend
from tinyad.nn import functional as F

import cupy_standin
from device_cases import OPTIMIZERS, ROOT, fixed, mlp, positive, train


@pytest.fixture
def no_cuda_backend_cached(monkeypatch):
    """A registry without a cached "cuda" backend, restored after the test."""
    registry = {name: b for name, b in backend_module._BACKENDS.items() if name != "cuda"}
    monkeypatch.setattr(backend_module, "_BACKENDS", registry)
    return registry


@pytest.fixture
def fake_cuda(monkeypatch, no_cuda_backend_cached):
    """device "cuda" served by CupyBackend over the CuPy stand-in (imported lazily, like the real one)."""
    fake = cupy_standin.install(monkeypatch)
    backend = get_backend("cuda")
    assert isinstance(backend, CupyBackend) and backend.xp is fake and get_backend("cuda") is backend
    return backend


# ---------------------------------------------------------------------------
# without CuPy, a GPU or a compiler: what the learner is told
# ---------------------------------------------------------------------------


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
    for needed in ('pip install ".[gpu]"', "not on PyPI", "cupy-cuda12x[ctk]", "cupy-cuda13x[ctk]", "cuda"):
        assert needed in message, message
    assert not tinyad.backend.cuda_is_available()


def test_cuda_with_cupy_but_no_gpu_raises_saying_so(monkeypatch, no_cuda_backend_cached):
    monkeypatch.setitem(sys.modules, "cupy", SimpleNamespace(is_available=lambda: False))
    with pytest.raises(CudaUnavailableError, match="no usable CUDA GPU") as info:
        Tensor([1.0], device="cuda")
    assert 'pip install ".[gpu]"' in str(info.value)
    assert "no usable CUDA GPU" in backend_module.cuda_unavailable_reason()


def test_cuda_with_a_cupy_that_cannot_compile_is_unavailable_and_says_why(monkeypatch, no_cuda_backend_cached):
    # cupy-cuda12x without its ctk extra: the GPU is seen, the first kernel fails to compile
    fake = cupy_standin.install(monkeypatch)

    def no_compiler(*args, **kwargs):
        raise RuntimeError("CompileException: catastrophic error: cannot open source file \"cuda_fp16.h\"")

    monkeypatch.setattr(cupy_standin.FakeCupy, "ElementwiseKernel", staticmethod(no_compiler))
    assert fake.is_available()
    assert not tinyad.backend.cuda_is_available()
    reason = tinyad.backend.cuda_unavailable_reason()
    assert "cannot compile kernels" in reason and "cuda_fp16.h" in reason
    assert "cupy-cuda12x[ctk]" in reason and "cuda-toolkit[nvrtc,cudart]" in reason


def test_cuda_whose_test_kernel_returns_wrong_values_is_unavailable(monkeypatch, no_cuda_backend_cached):
    cupy_standin.install(monkeypatch)
    monkeypatch.setattr(cupy_standin.FakeCupy, "asnumpy", lambda self, array: np.zeros(4))
    assert "wrong values" in tinyad.backend.cuda_unavailable_reason()
    with pytest.raises(CudaUnavailableError, match="wrong values"):
        Tensor([1.0], device="cuda")


# ---------------------------------------------------------------------------
# CupyBackend's code, on the stand-in
# ---------------------------------------------------------------------------



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
    monkeypatch.setattr(cupy_standin.FakeCupy, "full", lambda self, shape, value, dtype=None: made.append(value) or np.full(shape, value, dtype=dtype), raising=False)
    t = Tensor([1.0, 2.0], dtype="float32", device="cuda")
    out = t * 0.5 + 3
    assert made == [0.5, 3] and out.dtype == np.float32


# the CPU backend's fused float16 backward sums dy in float16 and overflows (reported to the lead)
@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
def test_cupy_backend_sums_float16_in_float32_like_the_cpu(fake_cuda):
    # a channel whose float16 sum (70000) is past float16's largest value (65504)
    rng = np.random.default_rng(4)
    x = (1.0 + rng.uniform(-0.5, 0.5, size=(70_000, 2))).astype("float16")
    assert (x.astype("float64").sum(axis=0) > 65504).all()  # no float16 can hold these sums
    with np.errstate(over="ignore"):  # and a float16 accumulator gets them wrong (it stalls or overflows)
        assert (np.abs(x.sum(axis=0, dtype="float16") - x.astype("float64").sum(axis=0)) > 1000).all()
    dy = rng.normal(size=x.shape).astype("float16")
    results = {}
    for device in ("cpu", "cuda"):
        leaf = Tensor(x, requires_grad=True, device=device)
        running = [Tensor(np.zeros(2, "float16"), device=device), Tensor(np.ones(2, "float16"), device=device)]
        y = F.batch_norm(leaf, *running, training=True, fused=True)
        y.backward(Tensor(dy, device=device))
        results[device] = [np.asarray(a) for a in (y.data, leaf.grad, running[0].data, running[1].data)]
    for got in results["cuda"]:
        assert got.dtype == np.float16 and np.isfinite(got).all()
    for name, got, want in zip(("running_mean", "running_var"), results["cuda"][2:], results["cpu"][2:]):
        np.testing.assert_allclose(got.astype("float64"), want.astype("float64"), rtol=1e-3, err_msg=name)
    # y and dx against the float64 formulas (the CPU backend's float16 backward sums dy in float16)
    x64, dy64 = x.astype("float64"), dy.astype("float64")
    x_hat = (x64 - x64.mean(axis=0)) / np.sqrt(x64.var(axis=0) + 1e-5)
    dx = (dy64 - dy64.mean(axis=0) - x_hat * (dy64 * x_hat).mean(axis=0)) / np.sqrt(x64.var(axis=0) + 1e-5)
    np.testing.assert_allclose(results["cuda"][0].astype("float64"), x_hat, atol=5e-3, rtol=5e-3)
    np.testing.assert_allclose(results["cuda"][1].astype("float64"), dx, atol=2e-2, rtol=2e-2)


def test_the_float16_stand_in_would_overflow_with_the_output_type_as_accumulator():
    # the reduction kernels' reduce_type is what keeps the sum finite: with CuPy's default
    # (the output type) and a float16 output, the same sum is wrong
    kernel = cupy_standin.FakeReductionKernel("T x", "T total", "x", "a + b", "total = a", "0", "tinyad_check")
    with np.errstate(over="ignore"):
        assert kernel(np.ones((70_000, 1), "float16"), axis=(0,)).tolist() != [70_000.0]  # inf, or stalled
    from tinyad.backend_cuda import REDUCTIONS

    spec = REDUCTIONS["channel_sum"]
    kernel = cupy_standin.FakeReductionKernel(*spec)
    out = np.empty(1, "float32")
    assert kernel(np.ones((70_000, 1), "float16"), axis=(0,), out=out).tolist() == [70_000.0]


@pytest.mark.parametrize("shape", [(64, 8), (8192, 4), (12, 3, 5, 5)])
def test_cupy_backends_fused_batch_norm_sums_in_two_stages_and_matches_the_cpu(fake_cuda, shape):
    # (8192, 4) has more rows than one block sums: the channel sums go through two stages
    rng = np.random.default_rng(0)
    x, dy = rng.normal(size=shape) * 3.0 + 1.0, rng.normal(size=shape)
    results = {}
    for device in ("cpu", "cuda"):
        leaf = Tensor(x, requires_grad=True, device=device)
        y = F.batch_norm(leaf, None, None, training=True, fused=True)
        y.backward(dy)
        results[device] = (np.asarray(y.data), np.asarray(leaf.grad))
    for ours, cpu in zip(results["cuda"], results["cpu"]):
        np.testing.assert_allclose(ours, cpu, rtol=1e-10, atol=1e-12)


def test_cupy_backend_fused_batch_norm_takes_f_ordered_input(fake_cuda):
    x = np.asfortranarray(fixed((6, 4)))
    for device in ("cpu", "cuda"):
        y = F.batch_norm(Tensor(x, device=device), None, None, training=True, fused=True)
        if device == "cpu":
            want = y.data
    np.testing.assert_allclose(y.data, want, rtol=1e-12, atol=1e-12)


def test_the_stand_in_refuses_what_cupy_lacks_and_offers_what_it_has():
    fake = cupy_standin.FakeCupy()
    assert fake.result_type is np.result_type and fake.ascontiguousarray is np.ascontiguousarray
    for missing in ("errstate", "nditer", "seterr", "insert"):  # NumPy names CuPy 14.2 does not have
        assert missing not in cupy_standin.CUPY_NAMES
        with pytest.raises(AttributeError, match="CuPy 14.2 has no such attribute"):
            getattr(fake, missing)


def test_the_stand_ins_list_of_cupy_names_is_cupy_14_2s_own():
    cupy = pytest.importorskip("cupy", reason="the CuPy wheel is not installed (see .ci/run)")
    if cupy.__version__ != "14.2.0":
        pytest.skip(f"this is CuPy {cupy.__version__}; the list was taken from 14.2.0")
    assert cupy_standin.CUPY_NAMES == {n for n in dir(cupy) if not n.startswith("__")}


def test_cupy_backend_uses_only_names_cupy_has(fake_cuda):
    # a training step and fused BatchNorm 1-D and 2-D touch every path of CupyBackend
    for shape in ((8, 3), (4, 3, 2, 2)):
        x = Tensor(fixed(shape), requires_grad=True, device="cuda")
        F.batch_norm(x, None, None, training=True, fused=True).sum().backward()
    train(mlp(fused=True).to("cuda"), OPTIMIZERS["Adam"], "cuda")

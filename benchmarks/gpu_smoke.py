"""Smoke test of every fused BatchNorm kernel on the GPU against a float64 reference on the host.

Each case runs ``F.batch_norm(..., fused=True)`` forward and backward on device
"cuda" (all five kernels: the three per-channel sums, the forward and the
backward elementwise passes) and compares y, dL/dx, dL/dgamma and dL/dbeta
with the textbook formulas computed in float64 with NumPy. Cases: C and F
order, 2-D and 4-D, odd sizes, large arrays, float16 whose per-channel sums
pass float16's largest value, and a case without gamma and beta.

Run:  python benchmarks/gpu_smoke.py               (on a machine with a GPU)
      python benchmarks/gpu_smoke.py --quick       (the large cases shrunk, for the CPU stand-in)
      TINYAD_GPU_DRY_RUN=1 python benchmarks/gpu_smoke.py --quick
          (no GPU: "cupy" is the NumPy stand-in of tests/backend/cupy_standin.py, so the
           script's own logic and the kernels' arithmetic run, not CUDA)

Prints one line per case and exits 1 if any case is off by more than its tolerance.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

EPS = 1e-5
TOLERANCE = {"float16": 3e-2, "float32": 2e-3, "float64": 1e-9}  # on errors scaled by max(1, |reference|)


def cases(small: bool) -> list[tuple]:
    """(label, shape, dtype, order, affine, offset): x ~ N(offset, 2^2) per channel."""
    big2d = (1024, 256) if small else (8192, 1024)
    big4d = (8, 16, 28, 28) if small else (32, 256, 56, 56)
    return [
        ("2-D C", (64, 16), "float32", "C", True, 1.0),
        ("2-D F", (64, 16), "float32", "F", True, 1.0),
        ("2-D odd sizes", (7, 3), "float64", "C", True, -3.0),
        ("2-D no affine", (33, 5), "float64", "C", False, 0.0),
        ("4-D C", (8, 4, 5, 5), "float32", "C", True, 2.0),
        ("4-D F", (8, 4, 5, 5), "float64", "F", True, 2.0),
        ("4-D odd planes", (3, 5, 7, 9), "float32", "C", True, 0.5),
        ("large 2-D", big2d, "float32", "C", True, 1.0),
        ("large 4-D", big4d, "float32", "C", True, 1.0),
        ("float16 sums past 65504", (70_000, 4), "float16", "C", True, 30.0),
        ("float16 4-D", (16, 8, 33, 33), "float16", "C", True, 30.0),
    ]


def reference(x, weight, bias, dy):
    """y, dx, dgamma, dbeta of training-mode BatchNorm, in float64 on the host."""
    x, dy = x.astype(np.float64), dy.astype(np.float64)
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    gamma = np.ones(shape) if weight is None else weight.astype(np.float64).reshape(shape)
    beta = np.zeros(shape) if bias is None else bias.astype(np.float64).reshape(shape)
    mean = x.mean(axis=axes, keepdims=True)
    inv_std = 1.0 / np.sqrt(x.var(axis=axes, keepdims=True) + EPS)
    x_hat = (x - mean) * inv_std
    y = gamma * x_hat + beta
    dx = gamma * inv_std * (dy - dy.mean(axis=axes, keepdims=True) - x_hat * (dy * x_hat).mean(axis=axes, keepdims=True))
    return y, dx, (dy * x_hat).sum(axis=axes), dy.sum(axis=axes)


def scaled_error(got, want) -> float:
    got = np.asarray(got, dtype=np.float64)
    if not np.isfinite(got).all():
        return float("inf")
    return float(np.max(np.abs(got - want)) / max(1.0, float(np.max(np.abs(want)))))


def run_case(label, shape, dtype, order, affine, offset, rng) -> bool:
    from tinyad import Tensor
    from tinyad.nn import functional as F

    x = (rng.normal(size=shape) * 2 + offset).astype(dtype)
    if order == "F":
        x = np.asfortranarray(x)
    dy = rng.normal(size=shape).astype(dtype)
    weight = rng.uniform(0.5, 2, shape[1]).astype(dtype) if affine else None
    bias = rng.normal(size=shape[1]).astype(dtype) if affine else None
    start = time.perf_counter()
    leaves = [None if a is None else Tensor(a, requires_grad=True, device="cuda") for a in (x, weight, bias)]
    y = F.batch_norm(leaves[0], None, None, leaves[1], leaves[2], training=True, fused=True)
    y.backward(Tensor(dy, device="cuda"))
    got = [y.numpy(), leaves[0].backend.to_numpy(leaves[0].grad)]
    if affine:
        got += [leaves[1].backend.to_numpy(leaves[1].grad), leaves[2].backend.to_numpy(leaves[2].grad)]
    seconds = time.perf_counter() - start
    want = reference(x, weight, bias, dy)
    errors = {name: scaled_error(g, w) for name, g, w in zip(("y", "dx", "dgamma", "dbeta"), got, want)}
    dtypes_ok = got[0].dtype == np.dtype(dtype) and got[1].dtype == np.dtype(dtype)
    ok = dtypes_ok and all(error <= TOLERANCE[dtype] for error in errors.values())
    detail = "  ".join(f"{name} {error:.1e}" for name, error in errors.items())
    print(f"{'PASS' if ok else 'FAIL'}  {label:<26} {str(shape):<18} {dtype:<8} {order}  {detail}"
          f"  (tolerance {TOLERANCE[dtype]:.0e}, {seconds:.2f} s{'' if dtypes_ok else ', WRONG DTYPE'})", flush=True)
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shrink the large cases (for the CPU stand-in)")
    args = parser.parse_args(argv)
    if os.environ.get("TINYAD_GPU_DRY_RUN") == "1":
        sys.path.insert(0, str(ROOT / "tests" / "backend"))
        import cupy_standin

        cupy_standin.install()
        print("gpu_smoke: DRY RUN: 'cupy' is the NumPy stand-in (tests/backend/cupy_standin.py); no CUDA runs")
    from tinyad.backend import cuda_unavailable_reason

    reason = cuda_unavailable_reason()
    if reason is not None:
        print(f"gpu_smoke: {reason}")
        return 2
    rng = np.random.default_rng(0)
    results = [run_case(*case, rng) for case in cases(args.quick)]
    print(f"gpu_smoke: {sum(results)} of {len(results)} cases pass")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())

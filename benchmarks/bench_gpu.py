"""BatchNorm and a training step on the GPU: tinyad (CuPy) against PyTorch (CUDA).

* BatchNorm forward + backward, tinyad composed and fused, against
  ``torch.nn.functional.batch_norm`` on CUDA, float32, at (8192, 1024) and
  (65536, 1024), and ``BatchNorm2d`` at (32, 256, 56, 56);
* the fused kernels' achieved memory bandwidth, against the card's measured
  device-to-device copy bandwidth (``cupy.copyto`` timed with CUDA events);
* a training step of Linear(784,512)-BN-ReLU-Linear(512,512)-BN-ReLU-Linear(512,10),
  cross-entropy, SGD with momentum, batch 256, float32.

Timings: the device is synchronized (``cupy.cuda.Device().synchronize()`` and
``torch.cuda.synchronize()``) before and after every timed call, contenders
run interleaved round-robin, and the tables report medians.

Run:  python benchmarks/bench_gpu.py                  (needs an NVIDIA GPU, CuPy and a CUDA build of PyTorch)
      python benchmarks/bench_gpu.py --quick          (fewer repeats)
      python benchmarks/bench_gpu.py --markdown FILE  (the section goes to FILE, docs/ is not touched)
      python benchmarks/bench_gpu.py --placeholder    (writes the "not yet measured" section, measures nothing)
``benchmarks/gpu_check.sh`` runs it with ``--quick --markdown $OUT/bench_gpu.md``.

Without CuPy, a GPU or PyTorch with CUDA it exits with a message and writes nothing.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _report import machine_line, write_section  # noqa: E402

SECTION = "gpu"
COMMAND = "python benchmarks/bench_gpu.py"
EPS = 1e-5
BATCHNORM_CASES = [  # (label, shape); 4-D shapes run as BatchNorm2d modules
    ("BatchNorm1d (N, C)", (8192, 1024)),
    ("BatchNorm1d (N, C)", (65536, 1024)),
    ("BatchNorm2d (N, C, H, W)", (32, 256, 56, 56)),
]
# Array-sized memory passes of tinyad's fused kernels (see CupyBackend): forward
# reads x for the mean, reads x for the variance, reads x and writes y; backward
# reads dy for sum(dy), reads dy and x for sum(dy * x_hat), reads dy and x and writes dx.
FUSED_PASSES = 3 + 1 + 1 + 5
TARGETS = {"composed": 3.0, "fused": 1.3, "bandwidth": 0.5}

INSTALL = (
    'pip install ".[gpu]" from a tinyad checkout (cupy-cuda12x[ctk]; cupy-cuda13x[ctk] for CUDA 13)'
)

PLACEHOLDER = f"""## GPU (CUDA): BatchNorm and a training step against PyTorch

**Not yet measured.** No machine with an NVIDIA GPU has run this benchmark yet, so
there are no GPU figures on this page. On a machine with a GPU, CuPy
(`pip install ".[gpu]"` from a checkout, which installs cupy-cuda12x[ctk];
cupy-cuda13x[ctk] for CUDA 13) and a CUDA build of PyTorch, run

```bash
{COMMAND}
```

and it replaces this section with: BatchNorm forward + backward (tinyad composed and
fused against `torch.nn.functional.batch_norm` on CUDA, float32, at (8192, 1024),
(65536, 1024) and a BatchNorm2d at (32, 256, 56, 56); targets: composed within 3x of
PyTorch, fused within 1.3x), the fused kernels' achieved bandwidth against the card's
measured device-to-device copy bandwidth (target: at least 50%), and a training step of
Linear(784,512)-BN-ReLU-Linear(512,512)-BN-ReLU-Linear(512,10) with cross-entropy and
SGD at batch 256. Without a GPU the script exits with a message and writes nothing.
`OUT=gpu-check bash benchmarks/gpu_check.sh` runs it after a smoke test of every kernel
against a float64 reference and the CUDA tests, and writes the table to `gpu-check/`.

What is checked without a GPU, in the tests: CuPy writes the CUDA source of every
kernel tinyad uses and NVRTC compiles it for sm_90 (float16/32/64, 1-4 dimensions,
C and strided layouts, 32- and 64-bit indexing, CuPy's CUB variants:
`tests/backend/test_cuda_compile.py`); the kernels' arithmetic runs on a NumPy
stand-in for CuPy; and the launch of each per-channel sum at the shapes above is
computed from CuPy's planning rule (`tests/backend/test_cuda_launch.py`: at least 1024
blocks of 512 threads at each large shape, where the direct sums would launch 32, or 8).
"""


def require_gpu():
    """(cupy, torch) when both can use a CUDA GPU; otherwise exit with a message, writing nothing."""
    nothing = "nothing was measured and docs/benchmarks.md was not changed"
    try:
        import cupy
    except ImportError:
        sys.exit(f"bench_gpu: CuPy is not installed, so {nothing}. Install it with {INSTALL} on a machine with an NVIDIA GPU.")
    from tinyad.backend import cuda_unavailable_reason

    reason = cuda_unavailable_reason()
    if reason is not None:
        sys.exit(f"bench_gpu: {reason}; so {nothing}.")
    try:
        import torch
    except ImportError:
        sys.exit(f"bench_gpu: the PyTorch reference is not installed, so {nothing}. Install a CUDA build of torch.")
    if not torch.cuda.is_available():
        sys.exit(
            f"bench_gpu: this PyTorch ({torch.__version__}) cannot use the GPU (torch.cuda.is_available() is False), "
            f"so {nothing}. Install a CUDA build of torch to compare against."
        )
    return cupy, torch


def gpu_medians(contenders: dict, repeats: int, warmup: int, synchronize) -> dict:
    """Median seconds per call of each contender, interleaved, the device idle before and after each call."""
    for _ in range(warmup):
        for fn in contenders.values():
            fn()
    samples = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            synchronize()
            start = time.perf_counter()
            fn()
            synchronize()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(times) for name, times in samples.items()}


def copy_bandwidth(cupy, megabytes: int = 512, repeats: int = 20) -> float:
    """Device-to-device copy bandwidth in GB/s (bytes read + bytes written), timed with CUDA events."""
    source = cupy.ones(megabytes * 2**20 // 4, dtype=cupy.float32)
    target = cupy.empty_like(source)
    cupy.copyto(target, source)  # warm-up
    start, end = cupy.cuda.Event(), cupy.cuda.Event()
    rates = []
    for _ in range(repeats):
        start.record()
        cupy.copyto(target, source)
        end.record()
        end.synchronize()
        seconds = cupy.cuda.get_elapsed_time(start, end) / 1e3
        rates.append(2 * source.nbytes / seconds / 1e9)
    del source, target
    return statistics.median(rates)


def batchnorm_rows(cupy, torch, repeats: int, synchronize, bandwidth: float) -> list[str]:
    import tinyad
    from tinyad import nn
    from tinyad.nn import functional as F

    rows = [
        "| workload | shape | composed (ms) | fused (ms) | PyTorch (ms) | composed / PyTorch | fused / PyTorch | fused GB/s | fused / copy bandwidth |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    rng = np.random.default_rng(0)
    for label, shape in BATCHNORM_CASES:
        channels = shape[1]
        x = rng.normal(size=shape).astype(np.float32)
        gamma = rng.uniform(0.5, 2, channels).astype(np.float32)
        beta = rng.normal(size=channels).astype(np.float32)
        dy = rng.normal(size=shape).astype(np.float32)
        tx = tinyad.Tensor(x, requires_grad=True, device="cuda")
        tdy = tinyad.Tensor(dy, device="cuda")
        px = torch.tensor(x, device="cuda", requires_grad=True)
        pdy = torch.tensor(dy, device="cuda")
        if len(shape) == 4:  # modules, running statistics included, on both sides
            layers = {}
            for fused in (False, True):
                layer = nn.BatchNorm2d(channels, eps=EPS, fused=fused, dtype="float32")
                layer.weight.data, layer.bias.data = gamma.copy(), beta.copy()
                layers[fused] = layer.to("cuda")
            reference = torch.nn.BatchNorm2d(channels, eps=EPS).to("cuda")
            with torch.no_grad():
                reference.weight.copy_(torch.tensor(gamma))
                reference.bias.copy_(torch.tensor(beta))
            parameters = {fused: (layers[fused].weight, layers[fused].bias) for fused in (False, True)}

            def ours(fused):
                tx.grad = None
                for p in parameters[fused]:
                    p.grad = None
                layers[fused](tx).backward(tdy)

            def theirs():
                px.grad = None
                reference.zero_grad()
                reference(px).backward(pdy)
        else:  # functional, batch statistics only, as in benchmarks/batchnorm.py
            tg, tb = (tinyad.Tensor(a, requires_grad=True, device="cuda") for a in (gamma, beta))
            pg, pb = (torch.tensor(a, device="cuda", requires_grad=True) for a in (gamma, beta))

            def ours(fused):
                tx.grad = tg.grad = tb.grad = None
                F.batch_norm(tx, None, None, tg, tb, training=True, eps=EPS, fused=fused).backward(tdy)

            def theirs():
                px.grad = pg.grad = pb.grad = None
                torch.nn.functional.batch_norm(px, None, None, pg, pb, training=True, eps=EPS).backward(pdy)

        # the contenders must agree before their speed means anything
        theirs()
        expected = px.grad.cpu().numpy()
        for fused in (False, True):
            ours(fused)
            assert np.allclose(tx.backend.to_numpy(tx.grad), expected, rtol=1e-3, atol=1e-3), (
                f"{label} {shape}: {'fused' if fused else 'composed'} dx differs from PyTorch"
            )
        count = repeats if x.size <= 10_000_000 else max(5, repeats // 3)
        medians = gpu_medians(
            {"composed": lambda: ours(False), "fused": lambda: ours(True), "torch": theirs},
            repeats=count, warmup=3, synchronize=synchronize,
        )
        composed, fused, reference_time = medians["composed"], medians["fused"], medians["torch"]
        achieved = FUSED_PASSES * x.nbytes / fused / 1e9
        rows.append(
            f"| {label} | {shape} | {composed * 1e3:.3f} | {fused * 1e3:.3f} | {reference_time * 1e3:.3f} | "
            f"**{composed / reference_time:.2f}** (target <= {TARGETS['composed']:g}) | "
            f"**{fused / reference_time:.2f}** (target <= {TARGETS['fused']:g}) | {achieved:.0f} | "
            f"**{achieved / bandwidth:.0%}** (target >= {TARGETS['bandwidth']:.0%}) |"
        )
        print(rows[-1], flush=True)
        del tx, tdy, px, pdy
        cupy.get_default_memory_pool().free_all_blocks()
        torch.cuda.empty_cache()
    return rows


def mlp_step_rows(cupy, torch, repeats: int, synchronize) -> list[str]:
    import tinyad
    from tinyad import nn
    from tinyad.nn import functional as F

    rng = np.random.default_rng(1)
    batch = 256
    x = rng.normal(size=(batch, 784)).astype(np.float32)
    labels = rng.integers(0, 10, size=batch)
    tinyad.manual_seed(0)
    f32 = "float32"
    model = nn.Sequential(
        nn.Linear(784, 512, dtype=f32), nn.BatchNorm1d(512, dtype=f32), nn.ReLU(),
        nn.Linear(512, 512, dtype=f32), nn.BatchNorm1d(512, dtype=f32), nn.ReLU(),
        nn.Linear(512, 10, dtype=f32),
    ).to("cuda")
    reference = torch.nn.Sequential(
        torch.nn.Linear(784, 512), torch.nn.BatchNorm1d(512), torch.nn.ReLU(),
        torch.nn.Linear(512, 512), torch.nn.BatchNorm1d(512), torch.nn.ReLU(),
        torch.nn.Linear(512, 10),
    ).to("cuda")
    with torch.no_grad():
        for (_, ours), (_, theirs) in zip(model.named_parameters(), reference.named_parameters()):
            theirs.copy_(torch.tensor(ours.numpy(), device="cuda"))
    optimizer = tinyad.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    reference_optimizer = torch.optim.SGD(reference.parameters(), lr=0.01, momentum=0.9)
    inputs = tinyad.Tensor(x, device="cuda")
    targets = tinyad.Tensor(labels, device="cuda")
    torch_inputs, torch_targets = torch.tensor(x, device="cuda"), torch.tensor(labels, device="cuda")

    def tinyad_step():
        loss = F.cross_entropy(model(inputs), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss

    def torch_step():
        loss = torch.nn.functional.cross_entropy(reference(torch_inputs), torch_targets)
        reference_optimizer.zero_grad()
        loss.backward()
        reference_optimizer.step()
        return loss

    first_ours, first_theirs = tinyad_step().item(), torch_step().item()
    assert abs(first_ours - first_theirs) < 1e-4 * max(1.0, abs(first_theirs)), (first_ours, first_theirs)
    medians = gpu_medians({"tinyad": tinyad_step, "torch": torch_step}, repeats=repeats, warmup=3, synchronize=synchronize)
    ratio = medians["tinyad"] / medians["torch"]
    return [
        "| workload | tinyad (ms) | PyTorch (ms) | tinyad / PyTorch |",
        "|---|---|---|---|",
        f"| Linear(784,512)-BN-ReLU-Linear(512,512)-BN-ReLU-Linear(512,10), cross-entropy, SGD, batch 256, float32 "
        f"| {medians['tinyad'] * 1e3:.2f} | {medians['torch'] * 1e3:.2f} | **{ratio:.2f}** |",
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--placeholder", action="store_true", help='write the "not yet measured" section and exit')
    parser.add_argument("--markdown", metavar="FILE", help="write the section to FILE instead of docs/benchmarks.md")
    args = parser.parse_args(argv)
    if args.placeholder:
        write_section(SECTION, PLACEHOLDER)
        return
    cupy, torch = require_gpu()

    def synchronize():
        cupy.cuda.Device().synchronize()
        torch.cuda.synchronize()

    repeats = 7 if args.quick else 31
    bandwidth = copy_bandwidth(cupy, repeats=5 if args.quick else 20)
    print(f"device-to-device copy bandwidth: {bandwidth:.0f} GB/s", flush=True)
    bn_rows = batchnorm_rows(cupy, torch, repeats, synchronize, bandwidth)
    mlp_rows = mlp_step_rows(cupy, torch, 7 if args.quick else 31, synchronize)
    print("\n".join(mlp_rows))
    gpu = torch.cuda.get_device_name()
    markdown = "\n".join(
        [
            "## GPU (CUDA): BatchNorm and a training step against PyTorch",
            "",
            "Training-mode BatchNorm, forward then backward with a given dL/dy, float32, on the GPU:",
            "tinyad's composed graph and `fused=True` (CuPy reduction and elementwise kernels) against",
            f"PyTorch {torch.__version__} on CUDA (`torch.nn.functional.batch_norm`; `torch.nn.BatchNorm2d` and",
            "tinyad's `BatchNorm2d`, running statistics included, for the 4-D row). The device is",
            "synchronized before and after every timed call; contenders are interleaved; medians.",
            f"*Fused GB/s* counts the {FUSED_PASSES} array-sized memory passes tinyad's fused kernels make",
            "(forward 4, backward 6); the card's device-to-device copy bandwidth, `cupy.copyto` of 512 MiB",
            f"timed with CUDA events (read + write), measured **{bandwidth:.0f} GB/s**.",
            f"Command: `{COMMAND}`.",
            "",
            *bn_rows,
            "",
            "### A training step on the GPU",
            "",
            *mlp_rows,
            "",
            f"GPU: {gpu}; CuPy {cupy.__version__}. {machine_line()}",
        ]
    )
    if args.markdown:
        Path(args.markdown).write_text(markdown + "\n")
        print(f"bench_gpu: wrote {args.markdown} (docs/benchmarks.md not changed)")
    else:
        write_section(SECTION, markdown)


if __name__ == "__main__":
    main()

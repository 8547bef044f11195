"""BatchNorm forward + backward: tinyad composed, tinyad fused, hand-written NumPy, PyTorch.

Also a full training step of an MLP with two BatchNorm layers against PyTorch.
Everything runs in one process, interleaved round-robin; medians over repeats.

Run:  python benchmarks/batchnorm.py            (about two minutes)
      python benchmarks/batchnorm.py --quick    (smaller repeat counts)
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _report import interleaved_medians, machine_line, write_section  # noqa: E402

import tinyad  # noqa: E402
from tinyad import nn  # noqa: E402
from tinyad.nn import functional as F  # noqa: E402

try:
    import torch
except ImportError:  # pragma: no cover
    sys.exit("this benchmark needs PyTorch: pip install torch==2.13.0")

SHAPES = [(64, 128), (256, 512), (4096, 1024), (32768, 256)]
EPS = 1e-5


def numpy_batch_norm(x, gamma, beta, dy):
    """The hand-written reference: forward, then the compact backward formula."""
    m = x.shape[0]
    mean = x.mean(axis=0)
    centered = x - mean
    var = (centered * centered).mean(axis=0)
    inv_std = 1.0 / np.sqrt(var + EPS)
    x_hat = centered * inv_std
    y = gamma * x_hat + beta
    sum_dy = dy.sum(axis=0)
    sum_dy_xhat = (dy * x_hat).sum(axis=0)
    dx = (gamma * inv_std / m) * (m * dy - sum_dy - x_hat * sum_dy_xhat)
    return y, dx, sum_dy_xhat, sum_dy


def tinyad_batch_norm(x, gamma, beta, dy, fused):
    x.grad = gamma.grad = beta.grad = None
    y = F.batch_norm(x, None, None, gamma, beta, training=True, eps=EPS, fused=fused)
    y.backward(dy)


def torch_batch_norm(x, gamma, beta, dy):
    x.grad = gamma.grad = beta.grad = None
    y = torch.nn.functional.batch_norm(x, None, None, gamma, beta, training=True, eps=EPS)
    y.backward(dy)


def batchnorm_table(repeats: int) -> list[str]:
    rng = np.random.default_rng(0)
    rows = [
        "| shape | dtype | NumPy formula (ms) | composed (ms) | composed / NumPy | fused (ms) | fused / NumPy | PyTorch (ms) | PyTorch / NumPy |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for shape in SHAPES:
        for dtype in ("float32", "float64"):
            x = rng.normal(size=shape).astype(dtype)
            gamma = rng.normal(size=shape[1]).astype(dtype)
            beta = rng.normal(size=shape[1]).astype(dtype)
            dy = rng.normal(size=shape).astype(dtype)
            tx, tg, tb = (tinyad.Tensor(a, requires_grad=True) for a in (x, gamma, beta))
            px, pg, pb = (torch.tensor(a, requires_grad=True) for a in (x, gamma, beta))
            pdy = torch.tensor(dy)
            # the contenders must agree before their speed means anything
            reference = numpy_batch_norm(x, gamma, beta, dy)
            tinyad_batch_norm(tx, tg, tb, dy, fused=False)
            tolerance = 1e-3 if dtype == "float32" else 1e-9
            assert np.allclose(tx.grad, reference[1], atol=tolerance), "composed dx differs"
            tinyad_batch_norm(tx, tg, tb, dy, fused=True)
            assert np.allclose(tx.grad, reference[1], atol=tolerance), "fused dx differs"
            count = repeats if x.size <= 300_000 else max(5, repeats // 10)
            medians = interleaved_medians(
                {
                    "numpy": lambda: numpy_batch_norm(x, gamma, beta, dy),
                    "composed": lambda: tinyad_batch_norm(tx, tg, tb, dy, fused=False),
                    "fused": lambda: tinyad_batch_norm(tx, tg, tb, dy, fused=True),
                    "torch": lambda: torch_batch_norm(px, pg, pb, pdy),
                },
                repeats=count,
                warmup=2,
            )
            base = medians["numpy"]
            rows.append(
                f"| {shape} | {dtype} | {base * 1e3:.3f} | {medians['composed'] * 1e3:.3f} | "
                f"**{medians['composed'] / base:.2f}** | {medians['fused'] * 1e3:.3f} | "
                f"**{medians['fused'] / base:.2f}** | {medians['torch'] * 1e3:.3f} | {medians['torch'] / base:.2f} |"
            )
            print(rows[-1], flush=True)
    return rows


def mlp_step_table(repeats: int) -> list[str]:
    rng = np.random.default_rng(1)
    batch = 256
    x = rng.normal(size=(batch, 784))
    labels = rng.integers(0, 10, size=batch)
    tinyad.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(784, 512), nn.BatchNorm1d(512), nn.ReLU(),
        nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(),
        nn.Linear(512, 10),
    )
    reference = torch.nn.Sequential(
        torch.nn.Linear(784, 512), torch.nn.BatchNorm1d(512), torch.nn.ReLU(),
        torch.nn.Linear(512, 512), torch.nn.BatchNorm1d(512), torch.nn.ReLU(),
        torch.nn.Linear(512, 10),
    ).double()
    with torch.no_grad():
        for (name, ours), (_, theirs) in zip(model.named_parameters(), reference.named_parameters()):
            theirs.copy_(torch.tensor(ours.data))
    optimizer = tinyad.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    reference_optimizer = torch.optim.SGD(reference.parameters(), lr=0.01, momentum=0.9)
    inputs, targets = tinyad.Tensor(x), labels
    torch_inputs, torch_targets = torch.tensor(x), torch.tensor(labels)

    def tinyad_step():
        loss = F.cross_entropy(model(inputs), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss.item()

    def torch_step():
        loss = torch.nn.functional.cross_entropy(reference(torch_inputs), torch_targets)
        reference_optimizer.zero_grad()
        loss.backward()
        reference_optimizer.step()
        return loss.item()

    first_ours, first_theirs = tinyad_step(), torch_step()
    assert abs(first_ours - first_theirs) < 1e-8, (first_ours, first_theirs)
    medians = interleaved_medians({"tinyad": tinyad_step, "torch": torch_step}, repeats=repeats, warmup=2)
    ratio = medians["tinyad"] / medians["torch"]
    return [
        "| workload | tinyad (ms) | PyTorch (ms) | tinyad / PyTorch |",
        "|---|---|---|---|",
        f"| Linear(784,512)-BN-ReLU-Linear(512,512)-BN-ReLU-Linear(512,10), cross-entropy, SGD, batch 256, float64 "
        f"| {medians['tinyad'] * 1e3:.2f} | {medians['torch'] * 1e3:.2f} | **{ratio:.2f}** (target <= 1.5) |",
    ]


def main() -> None:
    quick = "--quick" in sys.argv
    repeats = 7 if quick else 31
    bn_rows = batchnorm_table(repeats)
    mlp_rows = mlp_step_table(5 if quick else 21)
    print("\n".join(mlp_rows))
    markdown = "\n".join(
        [
            "## BatchNorm forward + backward (CPU)",
            "",
            "Training-mode BatchNorm over (N, C), forward then backward with a given dL/dy, at each",
            "shape and dtype. *NumPy formula* is the hand-written forward plus the compact backward",
            "formula, the speed a fused implementation can hope for; *composed* is tinyad's graph of",
            "primitive ops; *fused* is `batch_norm(..., fused=True)`; PyTorch is",
            f"`torch.nn.functional.batch_norm` ({torch.__version__}, {torch.get_num_threads()} threads). Ratios are",
            "medians over interleaved repeats divided by the NumPy formula's median (targets: composed",
            "<= 2, fused <= 1.15). Command: `python benchmarks/batchnorm.py`.",
            "",
            *bn_rows,
            "",
            "### A training step with BatchNorm",
            "",
            *mlp_rows,
            "",
            machine_line(),
        ]
    )
    write_section("batchnorm", markdown)


if __name__ == "__main__":
    main()

"""tinyad's Tensor engine against PyTorch eager on the CPU, in one process.

Two workloads where Python overhead per operation is the whole cost:
(a) a chain of 10 elementwise ops on a (4, 4) tensor, then backward;
(b) micrograd's demo MLP 2-16-16-1 on a batch of 100 points written with
    tensors (SVM max-margin loss + L2), forward, backward and an SGD update.
Both engines run interleaved (round-robin), medians over repeats.

Targets: on both, tinyad's time at most 1.0x PyTorch's (PyTorch / tinyad >= 1).

Writes: the section "tensor_vs_torch" of docs/benchmarks.md (a full run).

Run:  python benchmarks/tensor_vs_torch.py
      python benchmarks/tensor_vs_torch.py --quick    (20 repeats: seconds)
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _report import argument_parser, interleaved_medians, machine_line, output_file, write_section  # noqa: E402

import tinyad  # noqa: E402

try:
    import torch
except ImportError:  # pragma: no cover
    torch = None


def elementwise_chain(x):
    """Ten elementwise ops, then a sum so backward has a scalar to start from."""
    y = x * 1.5
    y = y + 0.25
    y = y.tanh()
    y = y * x
    y = y - 0.5
    y = y.sigmoid()
    y = y.exp()
    y = y / 3.0
    y = y * y
    y = y.relu()
    return y.sum()


def chain_step_tinyad(x):
    x.grad = None
    elementwise_chain(x).backward()


def chain_step_torch(x):
    x.grad = None
    elementwise_chain(x).backward()


def mlp_loss(params, points, labels):
    w1, b1, w2, b2, w3, b3 = params
    hidden = (points @ w1 + b1).relu()
    hidden = (hidden @ w2 + b2).relu()
    scores = hidden @ w3 + b3
    data_loss = (1 - labels * scores).relu().mean()
    reg_loss = 1e-4 * ((w1 * w1).sum() + (w2 * w2).sum() + (w3 * w3).sum())
    return data_loss + reg_loss


def mlp_step_tinyad(params, points, labels, lr=0.1):
    loss = mlp_loss(params, points, labels)
    for p in params:
        p.grad = None
    loss.backward()
    for p in params:
        p.data -= lr * p.grad
    return loss


def mlp_step_torch(params, points, labels, lr=0.1):
    loss = mlp_loss(params, points, labels)
    for p in params:
        p.grad = None
    loss.backward()
    with torch.no_grad():
        for p in params:
            p -= lr * p.grad
    return loss


def main(repeats: int = 200, out: Path | None = None) -> None:
    if torch is None:
        sys.exit("this benchmark needs PyTorch: pip install torch==2.13.0")
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    base = rng.normal(size=(4, 4))
    x_tiny = tinyad.Tensor(base, requires_grad=True)
    x_torch = torch.tensor(base, requires_grad=True)
    chain_step_tinyad(x_tiny)
    chain_step_torch(x_torch)
    assert np.allclose(x_tiny.grad, x_torch.grad.numpy()), "the engines disagree on the chain"

    sizes = [2, 16, 16, 1]
    arrays = []
    for nin, nout in zip(sizes[:-1], sizes[1:]):
        arrays += [rng.uniform(-1, 1, size=(nin, nout)), np.zeros(nout)]
    points = rng.normal(size=(100, 2))
    labels = np.where(rng.random((100, 1)) > 0.5, 1.0, -1.0)
    params_tiny = [tinyad.Tensor(a.copy(), requires_grad=True) for a in arrays]
    params_torch = [torch.tensor(a.copy(), requires_grad=True) for a in arrays]
    points_tiny, labels_tiny = tinyad.Tensor(points), tinyad.Tensor(labels)
    points_torch, labels_torch = torch.tensor(points), torch.tensor(labels)
    loss_tiny = mlp_step_tinyad(params_tiny, points_tiny, labels_tiny).item()
    loss_torch = mlp_step_torch(params_torch, points_torch, labels_torch).item()
    assert abs(loss_tiny - loss_torch) < 1e-9, (loss_tiny, loss_torch)

    chain = interleaved_medians(
        {"tinyad": lambda: chain_step_tinyad(x_tiny), "torch": lambda: chain_step_torch(x_torch)},
        repeats=repeats * 5,
        warmup=min(20, repeats),
    )
    mlp = interleaved_medians(
        {
            "tinyad": lambda: mlp_step_tinyad(params_tiny, points_tiny, labels_tiny),
            "torch": lambda: mlp_step_torch(params_torch, points_torch, labels_torch),
        },
        repeats=repeats,
        warmup=min(10, repeats),
    )
    rows = [
        "| workload | tinyad median (us) | PyTorch median (us) | PyTorch / tinyad |",
        "|---|---|---|---|",
    ]
    for name, medians in (("(a) 10 elementwise ops on (4, 4) + backward", chain),
                          ("(b) MLP 2-16-16-1, batch 100, step", mlp)):
        ratio = medians["torch"] / medians["tinyad"]
        rows.append(f"| {name} | {medians['tinyad'] * 1e6:.1f} | {medians['torch'] * 1e6:.1f} | **{ratio:.2f}x** |")
    markdown = "\n".join(
        [
            "## Tensor engine: tinyad.Tensor against PyTorch eager (CPU)",
            "",
            f"PyTorch {torch.__version__} with one intra-op thread, float64, interleaved round-robin;",
            f"medians of {repeats * 5} (a) and {repeats} (b) repeats. A ratio above 1 means tinyad is faster",
            "(target on both: tinyad's time at most 1.0x PyTorch's, a ratio >= 1).",
            "Command: `python benchmarks/tensor_vs_torch.py`.",
            "",
            *rows,
            "",
            machine_line(),
        ]
    )
    print(markdown)
    write_section("tensor_vs_torch", markdown, out)


if __name__ == "__main__":
    parser = argument_parser(__doc__, "tensor_vs_torch")
    parser.add_argument("--repeats", type=int, default=None,
                        help="repeats of (b); (a) gets five times as many (default 200; 20 with --quick)")
    args = parser.parse_args()
    main(args.repeats or (20 if args.quick else 200), out=output_file(args))

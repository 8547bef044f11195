"""BatchNorm forward + backward: tinyad composed, tinyad fused, hand-written NumPy, PyTorch.

Training-mode BatchNorm over (N, C) at shapes from (64, 128) to (32768, 256),
float32 and float64, with peak memory and page faults per call; the same
shape in a fresh process; the fixed cost of one call at (2, 4); and a full
training step of an MLP with two BatchNorm layers against PyTorch. Everything
runs in one process, interleaved round-robin; medians over repeats.

Targets: composed at most 2x the NumPy formula's time at (256, 512) and above
(smaller shapes are reported, not targeted: there the time is Python's cost
per call, which this project does not contort its code to shave); fused at
most 1.15x; the training step at most 1.5x PyTorch's.

Writes: the section "batchnorm" of docs/benchmarks.md (a full run).

Run:  python benchmarks/batchnorm.py            (about two minutes)
      python benchmarks/batchnorm.py --quick    (two small shapes, few repeats: seconds)
"""
from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _report import argument_parser, interleaved_medians, machine_line, output_file, write_section  # noqa: E402

import tinyad  # noqa: E402
from tinyad import nn  # noqa: E402
from tinyad.nn import functional as F  # noqa: E402

try:
    import torch
except ImportError:  # pragma: no cover
    torch = None

SHAPES = [(64, 128), (256, 512), (4096, 1024), (32768, 256)]
QUICK_SHAPES = [(64, 128), (256, 512)]
EPS = 1e-5

# Composed BatchNorm is held to its target from this many values on: at
# (256, 512) and above the arithmetic dominates a call; below, Python's cost
# per call does, and that is reported, not targeted.
TARGETED_FROM = 256 * 512
TARGET_COMPOSED = 2.0
TARGET_FUSED = 1.15
TARGET_STEP = 1.5


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


def settle_allocator() -> None:
    """Allocate and free one 31 MiB block before any timing.

    glibc's malloc adapts to the process it serves: when a block it had
    mapped straight from the operating system is freed, it raises its
    threshold for doing that (up to 32 MiB) and the amount of freed memory it
    keeps for reuse. Until then every large array is a fresh mapping, and
    memory freed at the top of the heap goes back to the kernel, so the next
    call page-faults it back in. Which contender pays those faults depends
    on the order of earlier allocations, not on its code. Any process that
    has once freed an array this big (a dataset, a large batch) is past that
    stage, so the tables start from there; ``cold_table`` shows the same
    shapes in a fresh process for comparison.
    """
    block = np.ones(31 * 2**20, dtype=np.uint8)
    del block


def page_faults_per_call(fn, calls: int = 5) -> float:
    """Minor page faults per call: each one is the kernel handing the process a
    fresh page, which happens when NumPy's memory for a large array comes
    straight from (and goes straight back to) the operating system."""
    fn()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(calls):
        fn()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / calls


def peak_memory_per_call(fn, input_bytes: int) -> float:
    """Memory a call needs at its peak, beyond what was held before it, in
    multiples of the input's size (NumPy reports its arrays to tracemalloc)."""
    tracemalloc.start()
    try:
        fn()
        held_before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return (peak - held_before) / input_bytes


TABLE_HEAD = [
    "| shape | dtype | NumPy formula (ms) | composed (ms) | composed / NumPy | fused (ms) | fused / NumPy | PyTorch (ms) | PyTorch / NumPy | peak memory in inputs: NumPy / composed / fused | page faults per call: NumPy / composed / fused |",
    "|---|---|---|---|---|---|---|---|---|---|---|",
]


def batchnorm_table(repeats: int, shapes: list[tuple[int, int]] = SHAPES) -> list[str]:
    rng = np.random.default_rng(0)
    rows = list(TABLE_HEAD)
    for shape in shapes:
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
            # small calls are cheap to repeat, and their medians need it most on a noisy machine
            count = 7 * repeats if x.size <= 300_000 else max(9, repeats // 4)
            contenders = {
                "numpy": lambda: numpy_batch_norm(x, gamma, beta, dy),
                "composed": lambda: tinyad_batch_norm(tx, tg, tb, dy, fused=False),
                "fused": lambda: tinyad_batch_norm(tx, tg, tb, dy, fused=True),
                "torch": lambda: torch_batch_norm(px, pg, pb, pdy),
            }
            medians = interleaved_medians(contenders, repeats=count, warmup=2)
            faults = {name: page_faults_per_call(contenders[name]) for name in ("numpy", "composed", "fused")}
            peaks = {name: peak_memory_per_call(contenders[name], x.nbytes) for name in ("numpy", "composed", "fused")}
            base = medians["numpy"]
            composed_ratio = f"**{medians['composed'] / base:.2f}**"
            if x.size < TARGETED_FROM:
                composed_ratio += " (not targeted)"
            rows.append(
                f"| {shape} | {dtype} | {base * 1e3:.3f} | {medians['composed'] * 1e3:.3f} | "
                f"{composed_ratio} | {medians['fused'] * 1e3:.3f} | "
                f"**{medians['fused'] / base:.2f}** | {medians['torch'] * 1e3:.3f} | {medians['torch'] / base:.2f} | "
                f"{peaks['numpy']:.1f} / {peaks['composed']:.1f} / {peaks['fused']:.1f} | "
                f"{faults['numpy']:.0f} / {faults['composed']:.0f} / {faults['fused']:.0f} |"
            )
            print(rows[-1], flush=True)
    return rows


COLD_SHAPES = [(256, 512)]


def cold_table(repeats: int) -> list[str]:
    """The rows of ``COLD_SHAPES`` measured in a fresh process that skips
    ``settle_allocator``: what a short script sees before glibc has adapted."""
    command = [sys.executable, __file__, "--cold-rows", str(repeats)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return TABLE_HEAD + [line for line in output.splitlines() if line.startswith("| (")]


def fixed_cost_table(repeats: int) -> list[str]:
    """The same four contenders on a (2, 4) batch, where the arithmetic is negligible.

    What remains is the cost of calling into NumPy and, for tinyad, of
    building and walking the graph: the part of every call that does not
    shrink with the batch. It explains the ratios at the smallest shapes.
    """
    rng = np.random.default_rng(0)
    x, dy = rng.normal(size=(2, 4)), rng.normal(size=(2, 4))
    gamma, beta = rng.normal(size=4), rng.normal(size=4)
    tx, tg, tb = (tinyad.Tensor(a, requires_grad=True) for a in (x, gamma, beta))
    px, pg, pb = (torch.tensor(a, requires_grad=True) for a in (x, gamma, beta))
    pdy = torch.tensor(dy)
    medians = interleaved_medians(
        {
            "numpy": lambda: numpy_batch_norm(x, gamma, beta, dy),
            "composed": lambda: tinyad_batch_norm(tx, tg, tb, dy, fused=False),
            "fused": lambda: tinyad_batch_norm(tx, tg, tb, dy, fused=True),
            "torch": lambda: torch_batch_norm(px, pg, pb, pdy),
        },
        repeats=repeats,
        warmup=20,
    )
    nodes = len(tinyad.graph.topological_order(F.batch_norm(tx, None, None, tg, tb, training=True)))
    return [
        "| contender | median per call at (2, 4), float64 (us) |",
        "|---|---|",
        f"| NumPy formula | {medians['numpy'] * 1e6:.1f} |",
        f"| tinyad composed ({nodes} nodes, 9 of them ops) | {medians['composed'] * 1e6:.1f} |",
        f"| tinyad fused | {medians['fused'] * 1e6:.1f} |",
        f"| PyTorch | {medians['torch'] * 1e6:.1f} |",
    ]


def mlp_step_table(repeats: int, hidden: int = 512, batch: int = 256) -> list[str]:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(batch, 784))
    labels = rng.integers(0, 10, size=batch)
    tinyad.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(784, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
        nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
        nn.Linear(hidden, 10),
    )
    reference = torch.nn.Sequential(
        torch.nn.Linear(784, hidden), torch.nn.BatchNorm1d(hidden), torch.nn.ReLU(),
        torch.nn.Linear(hidden, hidden), torch.nn.BatchNorm1d(hidden), torch.nn.ReLU(),
        torch.nn.Linear(hidden, 10),
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
    medians = interleaved_medians({"tinyad": tinyad_step, "torch": torch_step}, repeats=repeats, warmup=min(2, repeats))
    ratio = medians["tinyad"] / medians["torch"]
    return [
        "| workload | tinyad (ms) | PyTorch (ms) | tinyad / PyTorch |",
        "|---|---|---|---|",
        f"| Linear(784,{hidden})-BN-ReLU-Linear({hidden},{hidden})-BN-ReLU-Linear({hidden},10), cross-entropy, SGD, "
        f"batch {batch}, float64 "
        f"| {medians['tinyad'] * 1e3:.2f} | {medians['torch'] * 1e3:.2f} | **{ratio:.2f}** (target <= {TARGET_STEP:g}) |",
    ]


def main() -> None:
    parser = argument_parser(__doc__, "batchnorm")
    # the child process of cold_table: print the rows of COLD_SHAPES with N repeats, write nothing
    parser.add_argument("--cold-rows", type=int, metavar="N", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if torch is None:
        sys.exit("this benchmark needs PyTorch: pip install torch==2.13.0")
    if args.cold_rows is not None:
        batchnorm_table(args.cold_rows, COLD_SHAPES)
        return
    quick = args.quick
    repeats = 3 if quick else 31
    cold_rows = cold_table(repeats)  # first, so this process's own history cannot matter to it
    settle_allocator()
    bn_rows = batchnorm_table(repeats, QUICK_SHAPES if quick else SHAPES)
    fixed_rows = fixed_cost_table(101 if quick else 1001)
    print("\n".join(fixed_rows))
    mlp_rows = mlp_step_table(3, hidden=128, batch=64) if quick else mlp_step_table(21)
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
            "medians over interleaved repeats divided by the NumPy formula's median. Targets: composed",
            f"<= {TARGET_COMPOSED:g} at (256, 512) and above, fused <= {TARGET_FUSED:g}. At smaller shapes the composed",
            "ratio is reported, not targeted: there the time is Python's cost per call (the fixed",
            "cost below), and this project does not contort its code to shave it.",
            "Command: `python benchmarks/batchnorm.py`.",
            "",
            "Where the composed graph loses time, beyond its fixed cost per call (next table):",
            "*peak memory* is the most memory a call holds at once beyond what was held before it, in",
            "multiples of the input's size (traced with `tracemalloc`). A graph keeps every",
            "intermediate and every gradient message until it is freed, because backward needs the",
            "former and a learner may ask for the latter (`tinyad.message`), so it holds about twice",
            "what the formula does, and makes every array fresh where the formula reuses freed memory.",
            "*Page faults* count the times per call the kernel had to hand the process a new 4 KB page",
            "(`getrusage`). Before any timing the script allocates and frees one 31 MiB block, which",
            "moves glibc's malloc to the state any process that has once freed a large array is in:",
            "it then keeps freed memory of these sizes for reuse instead of returning it to the kernel",
            "after every call. Arrays of 32 MiB and more stay above glibc's limit for that (each is",
            "mapped and unmapped at every call), which is where faults remain.",
            "",
            *bn_rows,
            "",
            "### The same shape in a fresh process",
            "",
            "Measured first, in a separate process that skips that allocation: here glibc returns",
            "the memory freed at the end of each call to the kernel and the next call faults it back",
            "in, one page at a time. Every contender pays for the memory it touches, so the graph,",
            "which holds about twice what the formula does, pays about twice the faults. How many",
            "faults a call meets depends on the allocations before it, so these rows move between",
            "runs more than the ones above.",
            "",
            *cold_rows,
            "",
            "### The fixed cost of one call",
            "",
            "The same call on a (2, 4) batch, where the arithmetic costs next to nothing: what",
            "is left is the price of each call into NumPy and, for tinyad, of making and walking",
            "graph nodes. This part does not shrink with the batch, which is why the ratios are",
            "highest at the smallest shape (not a target; measured in the same run).",
            "",
            *fixed_rows,
            "",
            "### A training step with BatchNorm",
            "",
            *mlp_rows,
            "",
            machine_line(),
        ]
    )
    write_section("batchnorm", markdown, output_file(args))


if __name__ == "__main__":
    main()

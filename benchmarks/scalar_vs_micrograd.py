"""tinyad's scalar engine against micrograd, on micrograd's own demo step.

The step is the one from micrograd's demo notebook: an MLP(2, [16, 16, 1]) of
scalar Values on 100 two-moons points, SVM max-margin loss plus an L2 penalty,
zero_grad, backward and an SGD update: about 65,000 nodes per step. Both
engines run the same code (only the Value class differs) from the same
weights, interleaved step by step in one process. micrograd is timed twice:
as shipped (Python's cyclic garbage collector on, which has to collect the
reference cycle each of micrograd's nodes makes) and with the collector off.

Targets: tinyad's step at least 6x as fast as micrograd's with the collector
on, and never slower than micrograd's with it off.

Writes: the section "scalar_vs_micrograd" of docs/benchmarks.md (a full run).

Run:  pip install micrograd==0.1.0 && python benchmarks/scalar_vs_micrograd.py
      python benchmarks/scalar_vs_micrograd.py --quick    (20 points, 1 round: seconds)
"""
from __future__ import annotations

import gc
import math
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _report import argument_parser, machine_line, output_file, write_section  # noqa: E402

import tinyad  # noqa: E402

# The targets, as speed-ups of tinyad's step over micrograd's (median time of
# micrograd's step / median time of tinyad's). With the collector on, micrograd
# pays for the reference cycle every node makes; with it off the two engines do
# the same Python work per node, and tinyad must never be the slower one.
TARGET_GC_ON = 6.0
TARGET_GC_OFF = 1.0


def make_moons(n: int, seed: int = 1) -> tuple[list[list[float]], list[float]]:
    """Two interleaving half circles with labels -1 / +1 (no scikit-learn needed)."""
    rng = random.Random(seed)
    points, labels = [], []
    for i in range(n):
        t = math.pi * rng.random()
        if i % 2 == 0:
            x, y, label = math.cos(t), math.sin(t), -1.0
        else:
            x, y, label = 1.0 - math.cos(t), 0.5 - math.sin(t), 1.0
        points.append([x + rng.gauss(0, 0.1), y + rng.gauss(0, 0.1)])
        labels.append(label)
    return points, labels


class MLP:
    """micrograd's MLP, written against whichever Value class it is given."""

    def __init__(self, value_class, weights: list[list[list[float]]]) -> None:
        self.value_class = value_class
        self.layers = [
            [([value_class(w) for w in neuron[:-1]], value_class(neuron[-1])) for neuron in layer]
            for layer in weights
        ]

    def __call__(self, x):
        for depth, layer in enumerate(self.layers):
            last = depth == len(self.layers) - 1
            outputs = []
            for w, b in layer:
                act = sum((wi * xi for wi, xi in zip(w, x)), b)
                outputs.append(act if last else act.relu())
            x = outputs
        return x[0]

    def parameters(self):
        return [p for layer in self.layers for w, b in layer for p in w + [b]]


def random_weights(sizes: list[int], seed: int = 1337) -> list[list[list[float]]]:
    rng = random.Random(seed)
    return [
        [[rng.uniform(-1, 1) for _ in range(nin)] + [0.0] for _ in range(nout)]
        for nin, nout in zip(sizes[:-1], sizes[1:])
    ]


def training_step(model: MLP, points, labels, learning_rate: float = 0.5) -> float:
    """micrograd's demo step: forward, loss, zero_grad, backward, update."""
    Value = model.value_class
    inputs = [list(map(Value, row)) for row in points]
    scores = list(map(model, inputs))
    losses = [(1 + -label * score).relu() for label, score in zip(labels, scores)]
    data_loss = sum(losses) * (1.0 / len(losses))
    reg_loss = 1e-4 * sum(p * p for p in model.parameters())
    total_loss = data_loss + reg_loss
    for p in model.parameters():
        p.grad = 0
    total_loss.backward()
    for p in model.parameters():
        p.data -= learning_rate * p.grad
    return total_loss.data


def count_nodes(root) -> int:
    return len(tinyad.graph.topological_order(root))


def main(repeats: int = 15, points_count: int = 100, out: Path | None = None) -> None:
    try:
        import micrograd.engine
    except ImportError:  # pragma: no cover
        sys.exit("this benchmark needs micrograd: pip install micrograd==0.1.0")
    points, labels = make_moons(points_count)
    weights = random_weights([2, 16, 16, 1])
    micro = MLP(micrograd.engine.Value, weights)
    tiny = MLP(tinyad.Value, weights)

    # Same weights, same data: the first steps must agree, or the timing compares different work.
    loss_micro = training_step(micro, points, labels)
    loss_tiny = training_step(tiny, points, labels)
    assert abs(loss_micro - loss_tiny) < 1e-9, (loss_micro, loss_tiny)

    # Count the nodes of one step's graph in tinyad.
    Value = tinyad.Value
    inputs = [list(map(Value, row)) for row in points]
    scores = list(map(tiny, inputs))
    losses = [(1 + -label * score).relu() for label, score in zip(labels, scores)]
    total = sum(losses) * (1.0 / len(losses)) + 1e-4 * sum(p * p for p in tiny.parameters())
    nodes = count_nodes(total)
    del inputs, scores, losses, total

    # Rounds of `block` consecutive steps per engine and setting. Within a block an engine
    # lives with its own garbage (micrograd's reference cycles pile up until the
    # collector runs), which is its real steady state; between blocks everything is
    # collected off the clock, so neither engine pays for the other's garbage. The first
    # step of a block starts from that freshly collected heap, which a training loop never
    # sees (both engines run it faster than their later steps), so it is run untimed.
    samples = {"micrograd (gc on)": [], "tinyad (gc on)": [], "micrograd (gc off)": [], "tinyad (gc off)": []}
    block = min(3, repeats)
    for _ in range(max(1, repeats // block)):
        for collector_on in (True, False):
            for engine, model in (("micrograd", micro), ("tinyad", tiny)):
                name = f"{engine} (gc {'on' if collector_on else 'off'})"
                gc.collect()
                if not collector_on:
                    gc.disable()
                training_step(model, points, labels)  # the warm-up step, untimed
                for _ in range(block):
                    start = time.perf_counter()
                    training_step(model, points, labels)
                    samples[name].append(time.perf_counter() - start)
                gc.enable()

    medians = {name: statistics.median(times) for name, times in samples.items()}
    speedup_on = medians["micrograd (gc on)"] / medians["tinyad (gc on)"]
    speedup_off = medians["micrograd (gc off)"] / medians["tinyad (gc off)"]
    rows = [
        "| engine | garbage collector | median step (ms) | tinyad speed-up |",
        "|---|---|---|---|",
        f"| micrograd 0.1.0 | on (default) | {medians['micrograd (gc on)'] * 1e3:.1f} | |",
        f"| tinyad | on (default) | {medians['tinyad (gc on)'] * 1e3:.1f} | **{speedup_on:.1f}x** (target >= {TARGET_GC_ON:g}x) |",
        f"| micrograd 0.1.0 | off | {medians['micrograd (gc off)'] * 1e3:.1f} | |",
        f"| tinyad | off | {medians['tinyad (gc off)'] * 1e3:.1f} | **{speedup_off:.2f}x** (target >= {TARGET_GC_OFF:g}x) |",
    ]
    markdown = "\n".join(
        [
            "## Scalar engine: tinyad.Value against micrograd",
            "",
            f"micrograd's demo training step (MLP(2, [16, 16, 1]) on {points_count} points, SVM max-margin",
            f"loss + L2, zero_grad, backward, SGD update; {nodes:,} nodes in tinyad's graph), same",
            f"weights and data in both engines, interleaved in blocks of {block} timed steps after one",
            f"untimed warm-up step, median of {len(samples['tinyad (gc on)'])} steps each.",
            "Command: `python benchmarks/scalar_vs_micrograd.py`.",
            "",
            *rows,
            "",
            f"Targets: at least {TARGET_GC_ON:g}x micrograd's speed with the collector on, and never slower",
            "than micrograd with it off. They replace an earlier 10x target, which the graph core",
            "met only with speed devices a learner had to read past (parents split over slots,",
            "search marks stored in the nodes); a core that reads plainly is worth more to this",
            "project than the last third of a scalar step.",
            "",
            "Why the collector costs tinyad little: a tinyad node never holds a closure that",
            "captures the node, so no node is part of a reference cycle and reference counting",
            "frees each graph; and `backward()` pauses the collector while it runs. micrograd's",
            "nodes each hold a closure over themselves, so its graphs are freed only by the",
            "collector, which then dominates its step.",
            "",
            machine_line(),
        ]
    )
    print(markdown)
    write_section("scalar_vs_micrograd", markdown, out)


if __name__ == "__main__":
    parser = argument_parser(__doc__, "scalar_vs_micrograd")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed steps per engine and setting (default 15; 2 with --quick)")
    args = parser.parse_args()
    repeats = args.repeats or (2 if args.quick else 15)
    main(repeats, points_count=20 if args.quick else 100, out=output_file(args))

"""tinyad's scalar engine against micrograd, on micrograd's own demo step.

The step is the one from micrograd's demo notebook: an MLP(2, [16, 16, 1]) of
scalar Values on 100 two-moons points, SVM max-margin loss plus an L2 penalty,
zero_grad, backward and an SGD update: about 65,000 nodes per step. Both
engines run the same code (only the Value class differs) from the same
weights, taking turns block by block; each block is a run of consecutive
steps, as in a training loop, in a Python process of its own (the one script
in benchmarks/ that does not time both engines in one process: see
time_block). micrograd is timed twice:
as shipped (Python's cyclic garbage collector on, which has to collect the
reference cycle each of micrograd's nodes makes) and with the collector off.

Two ways of calling the step are timed: as the demo notebook runs it, a loop in
which ``total_loss`` stays bound until the next turn's forward pass has run
(lessons train the same way), and as a function that drops the graph when it
returns. The targets name no calling pattern, so both are in the table, each
with the targets beside it.

Targets: tinyad's step at least 6x as fast as micrograd's with the collector
on, and never slower than micrograd's with it off.

Writes: the section "scalar_vs_micrograd" of docs/benchmarks.md (a full run).
Needs a Unix (it reads each block's peak memory with the resource module).

Run:  pip install micrograd==0.1.0 && python benchmarks/scalar_vs_micrograd.py
      python benchmarks/scalar_vs_micrograd.py --quick    (20 points, 1 round: seconds)
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import random
import resource
import statistics
import subprocess
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


def demo_loss(model: MLP, points, labels):
    """The demo's forward pass: SVM max-margin loss over the points plus an L2 penalty."""
    Value = model.value_class
    inputs = [list(map(Value, row)) for row in points]
    scores = list(map(model, inputs))
    losses = [(1 + -label * score).relu() for label, score in zip(labels, scores)]
    data_loss = sum(losses) * (1.0 / len(losses))
    reg_loss = 1e-4 * sum(p * p for p in model.parameters())
    return data_loss + reg_loss


def zero_grad_backward_update(model: MLP, total_loss, learning_rate: float) -> None:
    for p in model.parameters():
        p.grad = 0
    total_loss.backward()
    for p in model.parameters():
        p.data -= learning_rate * p.grad


def training_step(model: MLP, points, labels, learning_rate: float = 0.5) -> float:
    """The demo's step as a function: the graph is dropped when it returns."""
    total_loss = demo_loss(model, points, labels)
    zero_grad_backward_update(model, total_loss, learning_rate)
    return total_loss.data


class DemoLoop:
    """One turn of the demo notebook's ``for k in range(100)`` loop per call:
    ``total_loss`` is rebound only once the next forward pass has run."""

    def __init__(self, model: MLP, points, labels, learning_rate: float = 0.5) -> None:
        self.model, self.points, self.labels, self.learning_rate = model, points, labels, learning_rate
        self.total_loss = None

    def __call__(self) -> float:
        self.total_loss = demo_loss(self.model, self.points, self.labels)
        zero_grad_backward_update(self.model, self.total_loss, self.learning_rate)
        return self.total_loss.data


def count_nodes(root) -> int:
    return len(tinyad.graph.topological_order(root))


def time_block(engine: str, pattern: str, collector_on: bool, warm_up: int, block: int,
               points_count: int) -> dict:
    """Seconds per step of `warm_up` steps and of the `block` consecutive steps after
    them (only these count in the table), and how much the process's peak memory grew.

    Run in a fresh Python process per block, with one engine only, as a user's
    training script runs. Both engines take a few steps to settle (micrograd's
    reference cycles pile up until the collector's full passes run; tinyad's
    nodes spread over memory that earlier graphs have freed), so the warm-up
    steps are not timed. A process of its own also keeps each engine from
    meeting a heap the other one has used: after micrograd's blocks with the
    collector on (gigabytes of garbage, collected off the clock) tinyad's
    step in the same process was slower.
    """
    if engine == "micrograd":
        import micrograd.engine
        value_class = micrograd.engine.Value
    else:
        value_class = tinyad.Value
    points, labels = make_moons(points_count)
    model = MLP(value_class, random_weights([2, 16, 16, 1]))
    step = DemoLoop(model, points, labels) if pattern == "demo loop" else (
        lambda: training_step(model, points, labels))
    if not collector_on:
        gc.disable()
    full_collections = []  # one entry per full (oldest-generation) collection the collector ran

    def count_full_collections(phase: str, info: dict) -> None:
        if phase == "stop" and info["generation"] == 2:
            full_collections.append(1)

    gc.callbacks.append(count_full_collections)
    peak_before = peak_memory_mb()
    times = []
    for step_number in range(warm_up + block):
        if step_number == warm_up:
            full_collections.clear()
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    growth_per_step = (peak_memory_mb() - peak_before) / len(times)
    return {"warm_up": times[:warm_up], "timed": times[warm_up:], "peak_growth_mb_per_step": growth_per_step,
            "full_collections_per_step": len(full_collections) / block}


def peak_memory_mb() -> float:
    """This process's peak resident memory so far (``ru_maxrss``: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024 if sys.platform == "darwin" else 1024)


def main(rounds: int = 3, block: int = 8, warm_up: int = 3, points_count: int = 100,
         out: Path | None = None) -> None:
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
    nodes = count_nodes(demo_loss(tiny, points, labels))

    # Each engine runs the step as a training loop does: `warm_up` untimed steps, then `block`
    # timed ones, all consecutive, in a Python process of its own (see time_block). The
    # engines take turns block by block, over `rounds` rounds.
    patterns = ("demo loop", "step function")
    samples: dict = {}  # (pattern, collector_on, engine) -> seconds of each timed step
    first_steps: dict = {}  # the same key -> seconds of each block's first step
    memory: dict = {}  # the same key -> peak memory growth per step of each block (MB)
    full_collections: dict = {}  # the same key -> full collections per timed step of each block
    for round_number in range(rounds):
        for collector_on in (True, False):
            for pattern in patterns:
                engines = ["micrograd", "tinyad"]
                for engine in engines[round_number % 2:] + engines[:round_number % 2]:
                    command = [sys.executable, __file__, "--time-block", engine, pattern,
                               "on" if collector_on else "off", str(warm_up), str(block), str(points_count)]
                    done = subprocess.run(command, capture_output=True, text=True, check=True)
                    result, key = json.loads(done.stdout), (pattern, collector_on, engine)
                    samples.setdefault(key, []).extend(result["timed"])
                    first_steps.setdefault(key, []).append(result["warm_up"][0])
                    memory.setdefault(key, []).append(result["peak_growth_mb_per_step"])
                    full_collections.setdefault(key, []).append(result["full_collections_per_step"])

    medians = {key: statistics.median(times) for key, times in samples.items()}

    def settling(collector_on: bool, engine: str) -> str:
        key = ("step function", collector_on, engine)
        return f"{statistics.median(first_steps[key]) * 1e3:.0f} ms to {medians[key] * 1e3:.0f} ms"

    def growth(engine: str) -> float:
        return statistics.median(memory[("step function", False, engine)])

    def collections(pattern: str, engine: str) -> str:
        return f"{statistics.median(full_collections[(pattern, True, engine)]):.1f}"

    def row(pattern: str, collector_on: bool) -> str:
        micro_time, tiny_time = (medians[(pattern, collector_on, engine)] for engine in ("micrograd", "tinyad"))
        speedup = micro_time / tiny_time
        target = TARGET_GC_ON if collector_on else TARGET_GC_OFF
        cell = f"**{speedup:.{1 if collector_on else 2}f}x** (target >= {target:g}x)"
        setting = "on (default)" if collector_on else "off"
        return f"| {pattern} | {setting} | {micro_time * 1e3:.1f} | {tiny_time * 1e3:.1f} | {cell} |"

    rows = [
        "| calling pattern | garbage collector | micrograd 0.1.0 step (ms) | tinyad step (ms) | tinyad speed-up |",
        "|---|---|---|---|---|",
        *(row(pattern, collector_on) for pattern in patterns for collector_on in (True, False)),
    ]
    markdown = "\n".join(
        [
            "## Scalar engine: tinyad.Value against micrograd",
            "",
            f"micrograd's demo training step (MLP(2, [16, 16, 1]) on {points_count} points, SVM max-margin",
            f"loss + L2, zero_grad, backward, SGD update; {nodes:,} nodes in tinyad's graph), same",
            f"weights and data in both engines. Each engine runs {warm_up} untimed and then {block} timed",
            "consecutive steps, as a training loop does, each such block in a Python process of its own;",
            f"the engines take turns over {rounds} rounds; median of the {rounds * block} timed steps of each",
            "engine and setting.",
            "Command: `python benchmarks/scalar_vs_micrograd.py`.",
            "",
            *rows,
            "",
            f"Targets, for either calling pattern: at least {TARGET_GC_ON:g}x micrograd's speed with the collector",
            "on, and never slower than micrograd with it off. They replace an earlier 10x target, which the graph",
            "core met only with speed devices a learner had to read past (parents split over slots,",
            "search marks stored in the nodes); a core that reads plainly is worth more to this",
            "project than the last third of a scalar step. The ratios move by several percent from run",
            "to run on this machine. With the collector off the two engines are at parity, so \"never",
            "slower\" does not hold reliably; the demo loop with the collector on sits near its 6x.",
            "Whether to relax the targets or to take back a speed device is still open; no single run's",
            "rows above should be read as meeting them.",
            "",
            "Why consecutive steps after a warm-up: both engines take a few steps to settle (in this run,",
            "step function, median first step to median timed step: micrograd with the collector on",
            f"{settling(True, 'micrograd')}, tinyad with it off {settling(False, 'tinyad')}). micrograd's",
            "reference cycles pile up until the collector's full passes free them. A tinyad step that",
            "follows freed graphs can be slower than one on a fresh heap although nothing accumulates",
            "(the count of objects and of allocated blocks stays the same from step to step); the likely",
            "reason, not proven, is memory locality: a fresh heap hands out new nodes side by side, a",
            "heap that has freed graphs hands them out scattered. Each",
            "block runs in a process of its own because the engines disturb each other's heaps: timed in",
            "one process, after micrograd's blocks with the collector on (gigabytes of garbage, collected",
            "off the clock), tinyad's step with the collector off was slower. Until 2026-12-01 this",
            "script timed three steps after one warm-up, from a freshly collected heap, in one process.",
            "",
            "The two calling patterns: the demo notebook keeps `total_loss` until the next turn of its loop",
            "has built the next graph, and only then drops the old one (the lessons train the same way); a",
            "step function drops its graph as it returns. With the collector off micrograd frees no graph",
            "at all: each stays in its reference cycles (in this run its peak memory grew by",
            f"{growth('micrograd'):.0f} MB a step, tinyad's by {growth('tinyad'):.1f} MB), so it never pays for",
            "freeing a graph or for reusing freed memory, and its time is about the same in both",
            "patterns; tinyad frees each graph by reference counting. With the collector on the loop",
            "costs tinyad more: every graph's tracked objects (each node and its parents tuple) live",
            "long enough to reach the oldest generation, so CPython runs full collections in both",
            "patterns, and in the loop such a collection has two graphs to walk while the next one is",
            "built. Full collections per timed step in this run (the collector on): tinyad",
            f"{collections('demo loop', 'tinyad')} in the loop and {collections('step function', 'tinyad')} "
            f"with the step function, micrograd {collections('demo loop', 'micrograd')} and",
            f"{collections('step function', 'micrograd')}. Their number grows with the tracked objects a step",
            "allocates: two per tinyad node (the node and its parents tuple). The core before the plain",
            "rewrite kept up to two parents in slots of the node, one tracked object per node; the whole-core",
            "comparison in the speed devices section below times it against today's with the collector on.",
            "",
            "Why the collector costs micrograd far more than tinyad: a tinyad node never holds a closure",
            "that captures the node, so no node is part of a reference cycle and reference counting frees",
            "each graph; and `backward()` pauses the collector while it runs. micrograd's nodes each hold",
            "a closure over themselves, so its graphs are freed only by the collector, which then",
            "dominates its step. The collector still costs tinyad time: compare tinyad's rows with the",
            "collector on and off.",
            "",
            machine_line(),
        ]
    )
    print(markdown)
    write_section("scalar_vs_micrograd", markdown, out)


if __name__ == "__main__":
    parser = argument_parser(__doc__, "scalar_vs_micrograd")
    parser.add_argument("--rounds", type=int, default=None,
                        help="rounds of one block per engine and setting (default 3; 1 with --quick)")
    parser.add_argument("--time-block", nargs=6, default=None, help=argparse.SUPPRESS,
                        metavar=("ENGINE", "PATTERN", "COLLECTOR", "WARM_UP", "BLOCK", "POINTS"))
    args = parser.parse_args()
    if args.time_block:  # one block in this process, called by main()
        engine, pattern, collector, warm_up, block, points_count = args.time_block
        print(json.dumps(time_block(engine, pattern, collector == "on", int(warm_up), int(block), int(points_count))))
    elif args.quick:
        main(args.rounds or 1, block=2, warm_up=1, points_count=20, out=output_file(args))
    else:
        main(args.rounds or 3, out=output_file(args))

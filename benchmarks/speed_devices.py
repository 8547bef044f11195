"""Does a speed device pay? An in-process A/B of each one the plain core dropped.

tinyad's core is written the plain way (STYLE.md rule 11). Earlier versions
carried speed devices; each is re-created here as a patch over the plain code
and timed against it in the same process, the two variants interleaved round
by round, on the teaching workloads: micrograd's scalar demo step, a
composed BatchNorm forward+backward at (64, 128) and at (4096, 1024) float32,
an MLP training step with BatchNorm (batch 256, float64), and the LeNet step
of benchmarks/conv_vs_torch.py. A device goes back into the core only if it
buys at least 15% on one of them.

``--against REV`` also times the whole core of an earlier commit (imported
under another package name from ``git archive``) against today's, which is
how the price of the plain rewrite as a whole is measured.

Run:  python benchmarks/speed_devices.py [--quick] [--against 29c3710] [--write-docs]
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))

from _report import machine_line, write_section  # noqa: E402
from batchnorm import settle_allocator  # noqa: E402

import tinyad  # noqa: E402
import tinyad.scalar  # noqa: E402
from tinyad import Tensor  # noqa: E402
from tinyad.ops import elementwise, linalg, reductions  # noqa: E402
from tinyad.tensor import unbroadcast  # noqa: E402

# ---------------------------------------------------------------------------
# the workloads
# ---------------------------------------------------------------------------


def scalar_step_workload(tinyad_module: Any = tinyad) -> Callable[[], object]:
    from scalar_vs_micrograd import MLP, make_moons, random_weights, training_step

    points, labels = make_moons(100)
    model = MLP(tinyad_module.Value, random_weights([2, 16, 16, 1]))
    return lambda: training_step(model, points, labels)


def batchnorm_workload(shape: tuple, tinyad_module: Any = tinyad) -> Callable[[], object]:
    rng = np.random.default_rng(0)
    x = tinyad_module.Tensor(rng.normal(size=shape).astype(np.float32), requires_grad=True)
    gamma = tinyad_module.Tensor(rng.normal(size=shape[1]).astype(np.float32), requires_grad=True)
    beta = tinyad_module.Tensor(rng.normal(size=shape[1]).astype(np.float32), requires_grad=True)
    dy = rng.normal(size=shape).astype(np.float32)
    functional = tinyad_module.nn.functional

    def step() -> None:
        for leaf in (x, gamma, beta):
            leaf.zero_grad()
        functional.batch_norm(x, None, None, gamma, beta, training=True).backward(dy)

    return step


def mlp_step_workload(tinyad_module: Any = tinyad) -> Callable[[], object]:
    rng = np.random.default_rng(1)
    inputs = tinyad_module.Tensor(rng.normal(size=(256, 784)))
    targets = rng.integers(0, 10, size=256)
    tinyad_module.manual_seed(0)
    layers = tinyad_module.nn
    model = layers.Sequential(
        layers.Linear(784, 512), layers.BatchNorm1d(512), layers.ReLU(),
        layers.Linear(512, 512), layers.BatchNorm1d(512), layers.ReLU(),
        layers.Linear(512, 10),
    )
    optimizer = tinyad_module.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step() -> float:
        loss = layers.functional.cross_entropy(model(inputs), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss.item()

    return step


def lenet_step_workload(tinyad_module: Any = tinyad) -> Callable[[], object]:
    from conv_vs_torch import lenet, step

    rng = np.random.default_rng(2)
    model = lenet(tinyad_module.nn, "float32")
    images = tinyad_module.Tensor(rng.normal(size=(64, 1, 28, 28)).astype(np.float32))
    labels = rng.integers(0, 10, size=64)
    return lambda: step(model, images, labels, tinyad_module.nn.functional.cross_entropy)


def workloads(quick: bool, tinyad_module: Any = tinyad) -> dict[str, Callable[[], object]]:
    big = (512, 256) if quick else (4096, 1024)
    steps = {
        "scalar step": scalar_step_workload(tinyad_module),
        "BatchNorm (64, 128)": batchnorm_workload((64, 128), tinyad_module),
        f"BatchNorm {big}": batchnorm_workload(big, tinyad_module),
        "MLP step": mlp_step_workload(tinyad_module),
    }
    if hasattr(tinyad_module.nn, "Conv2d"):  # an older core has no convolution
        steps["LeNet step"] = lenet_step_workload(tinyad_module)
    return steps


# ---------------------------------------------------------------------------
# the devices, each a patch over the plain code
# ---------------------------------------------------------------------------


@contextlib.contextmanager
def patched(*replacements: tuple) -> Iterator[None]:
    """Set (object, attribute, value) for the duration of the block."""
    saved = [(owner, name, owner.__dict__[name]) for owner, name, _ in replacements]
    try:
        for owner, name, value in replacements:
            setattr(owner, name, value)
        yield
    finally:
        for owner, name, value in saved:
            setattr(owner, name, value)


def _product_sum_subscripts(full_shape: tuple, shape: tuple) -> str | None:
    letters = "abcdefghijklmnopqrstuvwxyz"
    added = len(full_shape) - len(shape)
    summed = set(range(added)) | {
        added + axis for axis, size in enumerate(shape) if size == 1 and full_shape[added + axis] != 1
    }
    if added < 0 or not summed or len(full_shape) > len(letters):
        return None
    operand = letters[: len(full_shape)]
    kept = "".join(letter for axis, letter in enumerate(operand) if axis not in summed)
    return f"{operand},{operand}->{kept}"


def _product_sum(upstream: Any, factor: Any, shape: tuple) -> Any:
    """unbroadcast(upstream * factor, shape) as one einsum, never holding the product."""
    if upstream.shape != shape and factor.shape == upstream.shape:
        subscripts = _product_sum_subscripts(upstream.shape, shape)
        if subscripts is not None:
            return np.einsum(subscripts, upstream, factor).reshape(shape)
    return unbroadcast(upstream * factor, shape)


def _mul_backward_einsum(node: Any, upstream: Any) -> tuple:
    a, b = node.parents
    return (
        _product_sum(upstream, b.data, a.shape) if a.requires_grad else None,
        _product_sum(upstream, a.data, b.shape) if b.requires_grad else None,
    )


def _stride0_view(array: Any, shape: tuple) -> Any:
    """numpy.broadcast_to written down directly for a C-contiguous array whose size-1 axes repeat."""
    if array.flags.c_contiguous and array.ndim == len(shape):
        strides = [0 if size == 1 else stride for size, stride in zip(array.shape, array.strides)]
        if all(size in (1, target) for size, target in zip(array.shape, shape)):
            view = np.ndarray(shape, array.dtype, array, 0, tuple(strides))
            view.flags.writeable = False
            return view
    return np.broadcast_to(array, shape)


def _sum_backward_stride0(node: Any, upstream: Any) -> tuple:
    (a,) = node.parents
    axes, keepdims = node.saved
    return (_stride0_view(reductions._expand_reduced(upstream, a.shape, axes, keepdims), a.shape),)


def _mean_backward_stride0(node: Any, upstream: Any) -> tuple:
    (a,) = node.parents
    axes, keepdims, count = node.saved
    return (_stride0_view(reductions._expand_reduced(upstream, a.shape, axes, keepdims) / count, a.shape),)


_plain_normalize_axes = reductions._normalize_axes
_cached_normalize_axes = functools.lru_cache(maxsize=1024)(
    lambda axis, kinds, ndim, op: _plain_normalize_axes(axis, ndim, op)
)


def _normalize_axes_cached(axis: Any, ndim: int, op: str) -> tuple:
    key = tuple(axis) if isinstance(axis, list) else axis
    kinds = type(key) if not isinstance(key, tuple) else tuple(map(type, key))
    return _cached_normalize_axes(key, kinds, ndim, op)


@functools.lru_cache(maxsize=256)
def _stretched_axes(full_shape: tuple, shape: tuple) -> tuple:
    added = len(full_shape) - len(shape)
    return tuple(axis for axis, size in enumerate(shape) if size == 1 and full_shape[added + axis] != 1)


def _unbroadcast_cached(gradient: Any, shape: tuple) -> Any:
    if gradient.shape == shape:
        return gradient
    stretched = _stretched_axes(gradient.shape, shape)
    added = gradient.ndim - len(shape)
    if added > 0:
        gradient = gradient.sum(axis=tuple(range(added)))
    if stretched:
        gradient = gradient.sum(axis=stretched, keepdims=True)
    return gradient


_new = object.__new__


def _wrap_bypassing_init(cls: type, array: Any, backend: Any, requires_grad: bool = False,
                         parents: tuple = (), op: str = "", backward_fn: Any = None, saved: Any = None) -> Any:
    """Tensor._wrap writing the slots directly instead of calling Node.__init__."""
    out = _new(cls)
    out.data, out.grad, out.parents, out.op, out.label = array, None, parents, op, ""
    out.backward_fn, out.saved, out.messages = backward_fn, saved, None
    out.backend, out.requires_grad = backend, requires_grad
    return out


def _value_result_bypassing_init(data: float, parents: tuple, op: str, backward_fn: Any, saved: Any = None) -> Any:
    out = _new(tinyad.Value)
    out.data, out.grad, out.label, out.messages = data, 0.0, "", None
    if tinyad.is_grad_enabled():
        out.parents, out.op, out.backward_fn, out.saved = parents, op, backward_fn, saved
    else:
        out.parents, out.op, out.backward_fn, out.saved = (), "", None, None
    return out


def _value_init_leaving_saved_to_the_class(self: Any, data: Any, label: str = "", parents: tuple = (), op: str = "",
                                           backward_fn: Any = None, saved: Any = None) -> None:
    """Value.__init__ as today, calling a Node.__init__ that writes every slot but
    ``saved`` (which the class holds once, None): the one difference is that write."""
    if type(data) is not float:
        data = tinyad.scalar._as_float(data)
    _node_init_without_saved(self, data, parents, op, backward_fn, label)
    self.grad = 0.0


def _node_init_without_saved(self: Any, data: Any, parents: tuple, op: str, backward_fn: Any, label: str) -> None:
    self.data = data
    self.grad = None
    self.parents = parents
    self.op = op
    self.label = label
    self.backward_fn = backward_fn
    self.messages = None


def _pow_backward_with_exponent(exponent: float, node: Any, upstream: float) -> tuple:
    """Value._pow_backward with the exponent filled in by functools.partial, not read from node.saved."""
    (a,) = node.parents
    return (0.0 if exponent == 0 else tinyad.scalar._power_slope(a.data, exponent) * upstream,)


def _pow_by_partial(self: Any, exponent: Any) -> Any:
    if isinstance(exponent, tinyad.Value) or not isinstance(exponent, (int, float)) or isinstance(exponent, bool):
        return _plain_value_pow(self, exponent)
    tinyad.scalar._check_pow_domain(self.data, exponent)
    return tinyad.scalar._result(tinyad.scalar._float_pow(self.data, exponent), (self,), f"**{exponent:g}",
                                 functools.partial(_pow_backward_with_exponent, float(exponent)))


_plain_value_pow = tinyad.Value.__pow__


@contextlib.contextmanager
def value_class_constants() -> Iterator[None]:
    """The old core's Value: ``saved`` a class constant (a class attribute hides
    the slot), so building a node writes one slot fewer, and x ** n carries n in a
    functools.partial instead. The nodes built meanwhile have no ``saved`` slot
    of their own; the workloads drop them before the class is restored."""
    tinyad.Value.saved = None
    try:
        with patched((tinyad.Value, "__init__", _value_init_leaving_saved_to_the_class),
                     (tinyad.Value, "__pow__", _pow_by_partial)):
            yield
    finally:
        del tinyad.Value.saved


DEVICES: dict[str, Callable[[], contextlib.AbstractContextManager]] = {
    "einsum for a broadcast factor's gradient (mul backward)": lambda: patched(
        (elementwise, "_mul_backward", _mul_backward_einsum)
    ),
    "hand-built stride-0 views (sum and mean backward)": lambda: patched(
        (reductions, "_sum_backward", _sum_backward_stride0),
        (reductions, "_mean_backward", _mean_backward_stride0),
    ),
    "lru_cache on axes and broadcast shapes": lambda: patched(
        (reductions, "_normalize_axes", _normalize_axes_cached),
        (elementwise, "unbroadcast", _unbroadcast_cached),
        (linalg, "unbroadcast", _unbroadcast_cached),
    ),
    "relu backward multiplies by its mask where the upstream is finite": lambda: patched(
        (elementwise, "_relu_backward", _relu_backward_multiplying)
    ),
    "nodes built by bypassing __init__ (Tensor and Value results)": lambda: patched(
        (Tensor, "_wrap", classmethod(_wrap_bypassing_init)),
        (tinyad.scalar, "_result", _value_result_bypassing_init),
    ),
    "Value's class constants (saved stored once on the class; x ** n's n in functools.partial)": value_class_constants,
}


def _relu_backward_select_only(node: Any, upstream: Any) -> tuple:
    """The plain relu backward: always select (what the kept device skips for a finite upstream)."""
    (a,) = node.parents
    return (node.backend.xp.where(a.data <= 0, 0, upstream),)


def _relu_backward_multiplying(node: Any, upstream: Any) -> tuple:
    """relu's backward multiplying by its mask where the upstream is finite (NumPy multiplies
    about ten times faster than it selects), selecting only where it must."""
    (a,) = node.parents
    xp = node.backend.xp
    if xp.isfinite(upstream).all():
        return (upstream * ~(a.data <= 0),)
    return _relu_backward_select_only(node, upstream)


def ab_medians(contenders: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds per call, the contenders alternating call by call.

    Python's cyclic collector runs off the clock before every call (a call
    then starts from a collected heap whichever variant ran before it): a
    scalar step leaves tens of thousands of objects behind, and which variant
    pays for collecting them would otherwise depend on the order, not on the code.
    """
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for fn in contenders.values():
        fn()  # warm-up
    for _ in range(repeats):
        for name, fn in contenders.items():
            gc.collect()
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(times) for name, times in samples.items()}


def _with(device: Callable[[], contextlib.AbstractContextManager], step: Callable[[], object]) -> Callable[[], object]:
    def run() -> object:
        with device():
            return step()

    return run


def device_rows(quick: bool, repeats: int) -> list[str]:
    settle_allocator()  # as benchmarks/batchnorm.py does: big arrays reuse freed memory, not fresh mappings
    steps = workloads(quick)
    rows = [
        "| device | " + " | ".join(steps) + " | kept? |",
        "|---|" + "---|" * len(steps) + "---|",
    ]
    for name, device in DEVICES.items():
        gains = []
        for step in steps.values():
            medians = ab_medians({"plain": step, "device": _with(device, step)}, repeats)
            gains.append(medians["plain"] / medians["device"] - 1)
        verdict = "yes" if max(gains) >= 0.15 else "no (< 15% everywhere)"
        rows.append(f"| {name} | " + " | ".join(f"{gain:+.0%}" for gain in gains) + f" | {verdict} |")
        print(rows[-1], flush=True)
    return rows


def import_old_core(revision: str) -> Any:
    """tinyad as it was at ``revision``, imported as the package ``tinyad_<revision>``."""
    folder = Path(tempfile.mkdtemp()) / f"tinyad_{revision}"
    folder.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision, "tinyad"], check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(folder), "--strip-components=1"], input=archive.stdout, check=True)
    name = f"tinyad_{revision}"
    spec = importlib.util.spec_from_file_location(name, folder / "__init__.py", submodule_search_locations=[str(folder)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def whole_core_rows(revision: str, quick: bool, repeats: int) -> list[str]:
    old = import_old_core(revision)
    ours, theirs = workloads(quick), workloads(quick, old)
    rows = ["| workload | today's plain core / core at " + revision + " (speed) |", "|---|---|"]
    for (name, step), old_step in zip(ours.items(), theirs.values()):
        medians = ab_medians({"plain": step, "old": old_step}, repeats)
        rows.append(f"| {name} | {medians['old'] / medians['plain']:.2f}x |")
        print(rows[-1], flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog="Writes the section 'speed_devices' of docs/benchmarks.md only with --write-docs.")
    parser.add_argument("--quick", action="store_true", help="3 repeats and a (512, 256) batch instead of (4096, 1024): seconds, not minutes")
    parser.add_argument("--repeats", type=int, default=None, help="rounds per A/B (default 15, or 3 with --quick)")
    parser.add_argument("--against", metavar="REV", help="also time the whole core of git revision REV against today's")
    parser.add_argument("--write-docs", action="store_true", help="write the tables into docs/benchmarks.md")
    args = parser.parse_args(argv)
    repeats = args.repeats or (3 if args.quick else 15)
    lines = [
        "## Speed devices: does each one pay?",
        "",
        "Each device the plain core dropped, re-created as a patch and timed against the plain code in",
        "one process, alternating call by call, the garbage collector run off the clock before each call,",
        f"{repeats} rounds, median; a gain is plain time / device time - 1.",
        "A device returns to the core only at >= 15% on one workload (STYLE.md rule 11).",
        "Command: `python benchmarks/speed_devices.py" + (f" --against {args.against}" if args.against else "") + " --write-docs`.",
        "",
        *device_rows(args.quick, repeats),
        "",
        "The class-constants device changes only Values, so its Tensor columns show this machine's",
        "noise at those sizes; and no workload raises a Value to a power, so its functools.partial",
        "half is not exercised: what it measures is one slot write fewer per scalar node.",
    ]
    if args.against:
        lines += ["", "The plain rewrite as a whole, same process, interleaved:", "", *whole_core_rows(args.against, args.quick, repeats)]
    lines += ["", machine_line()]
    markdown = "\n".join(lines)
    print(markdown)
    if args.write_docs:
        write_section("speed_devices", markdown)


if __name__ == "__main__":
    main()

"""Differential fuzzing against PyTorch: random programs, built in both engines, must agree.

A *program* is a recipe: leaf tensors (float32 or float64, random shapes with
size-0 and size-1 axes, ordinary numbers and, now and then, 0.0, -0.0, inf,
NaN and huge ones), then a list of steps, each one op of tinyad's public
Tensor API applied to earlier nodes (or to new leaves and Python numbers).
Some steps run inside a ``no_grad`` block, and some of those inside an
``enable_grad`` block nested in it. The loss is ``sum_k (x_k * W_k).sum()``
over every node that no later step uses (and a few more), with fixed
mixed-sign weights ``W_k``, so every step can reach it. The program is drawn
while torch runs it, so every op fits the shapes of its operands and ops with
a domain (log, sqrt, /, **) mostly, not always, get operands inside it.

The same recipe is run twice, once with tinyad and once with torch, step by
step. After every step the two results must have the same shape, dtype,
``requires_grad`` and values. Then:

1. ``loss.backward()``: every node's gradient (leaves and, through torch's
   ``retain_grad``, intermediates) must agree;
2. ``loss.backward()`` again, possibly inside ``no_grad``: gradients
   accumulate, and must still agree; in tinyad the gradient messages arriving
   at each node must add up to its ``.grad`` (``tinyad.edges``);
3. ``zero_grad`` (``tinyad.zero_grad(loss)`` or each node's own), then
   ``node.backward(grad)`` from another node with a non-scalar seed.

Values are compared elementwise with tolerances by dtype (``differs``); NaN
must be NaN exactly where torch has NaN, and an infinity must be torch's
infinity, sign included. Where a number is a sum that cancels (x - y,
gradient messages of opposite signs), the tolerance grows with the size of
what was added up, which for gradients is found by backpropagating
magnitudes through torch (``_gradient_terms``): rounding is then allowed for,
a wrong formula is not.

Where torch returns NaN or inf, tinyad on the CPU raises ``ValueError`` for a
few documented domain errors (README "Value", docs/conventions.md "Numbers").
A refusal counts as agreement only when it is one of ``ACCEPTED_REFUSALS``:
the message names the op, the documented condition holds in torch's inputs,
and torch's result is non-finite there (or, for reductions of nothing, the
issue that keeps the error says so). The program then ends at that step and
the rest is compared as usual. Where torch raises too (``max`` of zero
elements), tinyad must raise a ``ValueError`` or ``IndexError`` that names
the op.

``KNOWN_EDGE_DISAGREEMENTS`` lists the disagreements that are open issues.
Each entry has a condition computed from torch's run only (never from
tinyad's answer). A program is always run and compared; when it disagrees
and an entry's condition holds, the example is rejected (``reject()``, not
passed) and counted as an event, so the suite passes before the fixes land
without loosening any comparison. Delete an entry when its fix lands, and
the fuzzer covers that case again.

The scalar engine has its own fuzzer at the end: random ``Value`` programs
against 0-d float64 torch tensors.

Run more examples with ``python -m pytest tests/test_fuzz_vs_torch.py
--hypothesis-profile=long`` (profiles in ``tests/conftest.py``); add
``--hypothesis-show-statistics`` to see the events.
"""
from __future__ import annotations

import contextlib
import functools
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np
import torch
from hypothesis import HealthCheck, event, given, note, reject, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinyad
from tinyad import Tensor, Value

from tensor_oracle import axis_for

# The example count comes from the hypothesis profile ("ci" by default,
# "long" for thousands): see tests/conftest.py.
FUZZ = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)

NUMPY_DTYPE = {torch.float32: np.dtype(np.float32), torch.float64: np.dtype(np.float64)}

# (rtol, atol relative to the largest finite |number| of the array, or 1)
TOLERANCE = {np.dtype(np.float64): (1e-9, 1e-11), np.dtype(np.float32): (1e-4, 1e-5)}

MAX_STEPS = 10
SIDES = st.sampled_from([1, 2, 3, 1, 2, 3, 0])  # size-1 and size-0 axes included; shrinks to 1


# ==========================================================================
# Programs
# ==========================================================================


@dataclass
class Step:
    """One node of a program: a leaf (``op == "leaf"``) or an op on earlier nodes.

    ``inputs`` are indices of earlier nodes; ``params`` whatever else the op
    takes (a number, an axis, an index, a leaf's array); ``mode`` is the grad
    mode it runs in: "grad", "no_grad", or "enable_grad" (inside a no_grad block).
    """

    op: str
    inputs: tuple = ()
    params: dict = field(default_factory=dict)
    mode: str = "grad"


@dataclass
class Program:
    steps: list
    outputs: tuple  # nodes in the loss: sum_k (node_k * W_k).sum()
    second_pass_in_no_grad: bool
    zero_grad_from_root: bool  # tinyad.zero_grad(loss), else each node's zero_grad()
    third_root: Optional[int]  # the node of pass 3, seeded with a non-scalar gradient
    kind: str = "tensor"  # or "value": a program of the scalar engine

    def __repr__(self) -> str:
        return "\n" + self.source()

    def source(self) -> str:
        """The program as tinyad code: the reproducer printed with a failure."""
        lines = ["import numpy as np, tinyad", "from tinyad import Tensor, Value", "inf, nan = float('inf'), float('nan')"]
        for k, step in enumerate(self.steps):
            text = describe(step) if self.kind == "tensor" else describe_value(step)
            if step.mode == "no_grad":
                text = f"with tinyad.no_grad(): x{k} = {text}"
            elif step.mode == "enable_grad":
                text = f"with tinyad.no_grad(), tinyad.enable_grad(): x{k} = {text}"
            else:
                text = f"x{k} = {text}"
            lines.append(text)
        if self.outputs and self.kind == "value":
            terms = " + ".join(f"x{k} * {value_weight(k)!r}" for k in self.outputs)
            lines.append(f"loss = {terms}")
        elif self.outputs:
            terms = " + ".join(f"(x{k} * W({k})).sum()" for k in self.outputs)
            lines.append(f"loss = {terms}   # W(k): fixed weights of x{{k}}'s shape and dtype (weights())")
            lines.append("loss.backward(); " + ("with tinyad.no_grad(): " if self.second_pass_in_no_grad else "")
                         + "loss.backward()")
            lines.append("tinyad.zero_grad(loss)" if self.zero_grad_from_root else "for x in nodes: x.zero_grad()")
            if self.third_root is not None and self.kind == "value":
                lines.append(f"x{self.third_root}.backward({VALUE_SEED!r})")
            elif self.third_root is not None:
                lines.append(f"x{self.third_root}.backward(G({self.third_root}))   # G: weights(shape, dtype, seed=1)")
        return "\n".join(lines)


def _number(value: float) -> str:
    """A number as source code; a negative one in parentheses (-2.0 ** x is -(2.0 ** x))."""
    return f"({value!r})" if math.copysign(1.0, value) < 0 else repr(value)


def _short(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return np.array2string(value, separator=", ", threshold=64).replace("\n", "") + (
            f" (dtype {value.dtype})" if value.dtype.kind == "f" else "")
    return repr(value)


def describe(step: Step) -> str:
    """One step as tinyad source code."""
    p = step.params
    a = [f"x{i}" for i in step.inputs]
    op = step.op
    if op == "leaf":
        array = p["array"]
        data = (f"np.zeros({array.shape}, dtype='{array.dtype}')" if array.size == 0 else
                f"np.array({array.tolist()!r}, dtype='{array.dtype}')")
        return f"Tensor({data}, requires_grad={p['requires_grad']})"
    if op in BINARY_SYMBOL:
        left, right = (a[0], a[1]) if len(a) == 2 else (
            (_number(p["number"]), a[0]) if p["number_on_left"] else (a[0], _number(p["number"])))
        return f"{left} {BINARY_SYMBOL[op]} {right}"
    if op in ("maximum", "minimum"):
        args = a if len(a) == 2 else [a[0], repr(p["number"])]
        return f"tinyad.{op}({', '.join(args)})"
    if op == "where":
        args = list(a) if len(a) == 2 else ([a[0], repr(p["number"])] if not p["number_first"] else [repr(p["number"]), a[0]])
        condition = p["condition"]
        mask = (f"np.zeros({condition.shape}, dtype=bool)" if condition.size == 0 else
                f"np.array({condition.tolist()!r})")
        return f"tinyad.where({mask}, {', '.join(args)})"
    if op == "neg":
        return f"-{a[0]}"
    if op in UNARY_NAMES:
        return f"{a[0]}.{op}()"
    if op in ("sum", "mean", "max"):
        return f"{a[0]}.{op}(axis={p['axis']!r}, keepdims={p['keepdims']})"
    if op == "var":
        return f"{a[0]}.var(axis={p['axis']!r}, keepdims={p['keepdims']}, correction={p['correction']})"
    if op == "reshape":
        return f"{a[0]}.reshape({p['shape']!r})"
    if op == "permute":
        return f"{a[0]}.permute({p['dims']!r})"
    if op == "transpose":
        return f"{a[0]}.transpose({p['dim0']}, {p['dim1']})"
    if op == "T":
        return f"{a[0]}.T"
    if op == "getitem":
        return f"{a[0]}[{_index_source(p['index'])}]"
    if op in ("concatenate", "stack"):
        return f"tinyad.{op}([{', '.join(a)}], axis={p['axis']})"
    raise AssertionError(f"no description for {op}")


def _index_source(index: tuple) -> str:
    parts = []
    for kind, *rest in index:
        if kind == "int":
            parts.append(str(rest[0]))
        elif kind == "slice":
            start, stop, stride = rest
            parts.append(f"{'' if start is None else start}:{'' if stop is None else stop}"
                         + ("" if stride is None else f":{stride}"))
        elif kind == "none":
            parts.append("None")
        elif kind == "ellipsis":
            parts.append("...")
        else:
            array = rest[0]
            parts.append(f"np.zeros({array.shape}, dtype={array.dtype.name})" if array.size == 0
                         else f"np.array({array.tolist()!r})")
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts) + ("," if len(parts) == 1 else "")


# ==========================================================================
# The ops, as tinyad calls and as torch calls
# ==========================================================================

BINARY_SYMBOL = {"add": "+", "sub": "-", "mul": "*", "div": "/", "pow": "**", "matmul": "@"}
BINARY_CALL = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "pow": lambda a, b: a**b,
    "matmul": lambda a, b: a @ b,
}
UNARY_NAMES = ("exp", "log", "sqrt", "tanh", "sigmoid", "relu", "abs")

# the op token a tinyad error message starts with ("log: expected ...")
ERROR_TOKEN = {
    "add": "+", "sub": "-", "mul": "*", "div": "/", "pow": "**", "matmul": "@", "getitem": "[]",
    "neg": "neg", "T": "permute",
}


def _torch_dims(axis: Any, ndim: int) -> tuple:
    if axis is None:
        return tuple(range(ndim))
    return (axis,) if isinstance(axis, int) else tuple(axis)


def _index_in(index: tuple, as_array: Callable) -> Any:
    """A drawn index ((kind, ...) per position) in one engine's spelling; ``as_array``
    turns an integer index array into that engine's array."""
    parts = []
    for kind, *rest in index:
        if kind == "int":
            parts.append(rest[0])
        elif kind == "slice":
            parts.append(slice(*rest))
        elif kind == "none":
            parts.append(None)
        elif kind == "ellipsis":
            parts.append(Ellipsis)
        else:
            parts.append(as_array(rest[0].copy()))
    return tuple(parts) if len(parts) != 1 else parts[0]


def _torch_index(index: tuple) -> Any:
    return _index_in(index, torch.from_numpy)


def _tinyad_index(index: tuple) -> Any:
    return _index_in(index, lambda array: array)


def apply_tinyad(step: Step, xs: list) -> Any:
    """Run one step with tinyad on the nodes ``xs`` (its inputs, in order)."""
    p, op = step.params, step.op
    if op == "leaf":
        return Tensor(p["array"].copy(), requires_grad=p["requires_grad"])
    if op in BINARY_CALL:
        if len(xs) == 2:
            return BINARY_CALL[op](xs[0], xs[1])
        return BINARY_CALL[op](p["number"], xs[0]) if p["number_on_left"] else BINARY_CALL[op](xs[0], p["number"])
    if op in ("maximum", "minimum"):
        fn = getattr(tinyad, op)
        return fn(xs[0], xs[1]) if len(xs) == 2 else fn(xs[0], p["number"])
    if op == "where":
        condition = p["condition"].copy()
        if len(xs) == 2:
            return tinyad.where(condition, xs[0], xs[1])
        return tinyad.where(condition, p["number"], xs[0]) if p["number_first"] else tinyad.where(condition, xs[0], p["number"])
    if op == "neg":
        return -xs[0]
    if op in UNARY_NAMES:
        return getattr(xs[0], op)()
    if op in ("sum", "mean", "max"):
        return getattr(xs[0], op)(axis=p["axis"], keepdims=p["keepdims"])
    if op == "var":
        return xs[0].var(axis=p["axis"], keepdims=p["keepdims"], correction=p["correction"])
    if op == "reshape":
        return xs[0].reshape(p["shape"])
    if op == "permute":
        return xs[0].permute(p["dims"])
    if op == "transpose":
        return xs[0].transpose(p["dim0"], p["dim1"])
    if op == "T":
        return xs[0].T
    if op == "getitem":
        return xs[0][_tinyad_index(p["index"])]
    if op == "concatenate":
        return tinyad.concatenate(xs, axis=p["axis"])
    if op == "stack":
        return tinyad.stack(xs, axis=p["axis"])
    raise AssertionError(op)


def apply_torch(step: Step, xs: list) -> torch.Tensor:
    """Run one step with torch: the same op, in torch's spelling."""
    p, op = step.params, step.op
    if op == "leaf":
        return torch.tensor(p["array"].copy(), requires_grad=p["requires_grad"])
    if op in BINARY_CALL:
        if len(xs) == 2:
            return BINARY_CALL[op](xs[0], xs[1])
        return BINARY_CALL[op](p["number"], xs[0]) if p["number_on_left"] else BINARY_CALL[op](xs[0], p["number"])
    if op in ("maximum", "minimum"):
        fn = getattr(torch, op)
        other = xs[1] if len(xs) == 2 else torch.tensor(p["number"], dtype=xs[0].dtype)
        return fn(xs[0], other)
    if op == "where":
        condition = torch.from_numpy(p["condition"].copy())
        if len(xs) == 2:
            return torch.where(condition, xs[0], xs[1])
        number = torch.tensor(p["number"], dtype=xs[0].dtype)
        return torch.where(condition, number, xs[0]) if p["number_first"] else torch.where(condition, xs[0], number)
    if op == "neg":
        return -xs[0]
    if op in UNARY_NAMES:
        return getattr(xs[0], op)()
    if op in ("sum", "mean", "var", "max"):
        dims = _torch_dims(p["axis"], xs[0].ndim)
        if op == "max":
            return torch.amax(xs[0], dim=dims, keepdim=p["keepdims"])
        if op == "var":
            return torch.var(xs[0], dim=dims, keepdim=p["keepdims"], correction=p["correction"])
        return getattr(xs[0], op)(dim=dims, keepdim=p["keepdims"])
    if op == "reshape":
        return xs[0].reshape(p["shape"])
    if op == "permute":
        return xs[0].permute(p["dims"])
    if op == "transpose":
        return xs[0].transpose(p["dim0"], p["dim1"])
    if op == "T":
        return xs[0].permute(tuple(reversed(range(xs[0].ndim))))
    if op == "getitem":
        return xs[0][_torch_index(p["index"])]
    if op == "concatenate":
        return torch.cat(xs, dim=p["axis"])
    if op == "stack":
        return torch.stack(xs, dim=p["axis"])
    raise AssertionError(op)


def grad_mode(mode: str, engine: str):
    """The context a step of ``mode`` runs in, for "tinyad" or "torch"."""
    if mode == "grad":
        return contextlib.nullcontext()
    no_grad, enable_grad = (tinyad.no_grad, tinyad.enable_grad) if engine == "tinyad" else (torch.no_grad, torch.enable_grad)
    if mode == "no_grad":
        return no_grad()
    stack = contextlib.ExitStack()
    stack.enter_context(no_grad())
    stack.enter_context(enable_grad())
    return stack


def weights(shape: tuple, dtype: Any, seed: int = 0) -> np.ndarray:
    """Fixed, mixed-sign, non-unit weights of ``shape``: every element of a node
    sends a different gradient, so a gradient right only for all-ones is caught."""
    rng = np.random.default_rng(1000 * seed + 7919 * len(shape) + int(np.prod(shape, dtype=np.int64)))
    return np.asarray(rng.uniform(0.5, 2.0, size=shape) * rng.choice([-1.0, 1.0], size=shape), dtype=dtype)


# ==========================================================================
# Drawing programs
# ==========================================================================


def _element_strategy(flavour: str) -> st.SearchStrategy:
    ordinary = st.floats(-3.0, 3.0, allow_nan=False, allow_infinity=False, allow_subnormal=False)
    if flavour == "ordinary":
        return ordinary
    special = st.sampled_from([0.0, -0.0, 1.0, -1.0, 0.5, 2.0, -2.0])
    if flavour == "special":
        return st.one_of(ordinary, special)
    extreme = st.sampled_from([math.inf, -math.inf, math.nan, 1e30, -1e30, 1e-30, 100.0, -100.0])
    return st.one_of(ordinary, special, extreme)


@st.composite
def leaf_arrays(draw, shape: tuple, dtype: Any) -> np.ndarray:
    flavour = draw(st.sampled_from(["ordinary", "ordinary", "ordinary", "special", "special", "extreme"]))
    array = draw(hnp.arrays(np.float64, shape, elements=_element_strategy(flavour)))
    return array.astype(dtype)


class Builder:
    """Draws a program step by step, running it in torch (no grad) as it goes,
    so that every op is drawn to fit the shapes (and, mostly, the values) of
    the nodes it takes."""

    def __init__(self, draw, dtype: Any, mixed: bool) -> None:
        self.draw, self.dtype, self.mixed = draw, np.dtype(dtype), mixed
        self.steps: list[Step] = []
        self.values: list[torch.Tensor] = []
        self.requires_grad: list[bool] = []
        self.finished = False  # torch refused the last step: nothing can follow it
        self.mode = "grad"

    # ---- nodes ----------------------------------------------------------

    def add(self, step: Step) -> Optional[int]:
        step.mode = self.mode
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                value = apply_torch(step, [self.values[i] for i in step.inputs])
            except (RuntimeError, IndexError, ValueError):
                value = None
        self.steps.append(step)
        if value is None:
            self.finished = True
            return None
        if step.op == "leaf":
            flag = step.params["requires_grad"]
        else:
            flag = self.mode != "no_grad" and any(self.requires_grad[i] for i in step.inputs)
        self.values.append(value)
        self.requires_grad.append(flag)
        return len(self.values) - 1

    def leaf(self, shape: tuple, requires_grad: Optional[bool] = None) -> int:
        dtype = self.dtype
        if self.mixed and self.draw(st.integers(0, 3)) == 0:
            dtype = np.dtype(np.float32) if dtype == np.float64 else np.dtype(np.float64)
        array = self.draw(leaf_arrays(tuple(shape), dtype))
        if requires_grad is None:
            requires_grad = self.draw(st.sampled_from([True, True, True, False]))
        index = self.add(Step("leaf", (), {"array": array, "requires_grad": requires_grad}))
        assert index is not None
        return index

    def pick(self, wanted: Optional[Callable[[torch.Tensor], bool]] = None) -> int:
        """An earlier node: often the newest (so programs grow deep), and for
        ops with a domain mostly one whose values are inside it."""
        count = len(self.values)
        if wanted is not None and self.draw(st.integers(0, 9)) < 8:
            fitting = [i for i in range(count) if wanted(self.values[i])]
            if fitting:
                return self.draw(st.sampled_from(fitting[::-1]))
        if self.draw(st.booleans()):
            return count - 1
        return self.draw(st.integers(0, count - 1))

    def shape(self, i: int) -> tuple:
        return tuple(self.values[i].shape)

    def partner(self, shape: tuple, wanted: Optional[Callable] = None) -> int:
        """An earlier node whose shape broadcasts with ``shape``, or a new leaf that does."""
        if self.draw(st.booleans()):
            fitting = [i for i in range(len(self.values))
                       if _broadcasts(shape, self.shape(i)) and (wanted is None or wanted(self.values[i]))]
            if fitting:
                return self.draw(st.sampled_from(fitting[::-1]))
        return self.leaf(self.draw(broadcast_partner_shapes(shape)))


def _broadcasts(first: tuple, second: tuple) -> bool:
    for a, b in zip(reversed(first), reversed(second)):
        if a != b and a != 1 and b != 1:
            return False
    return len(first) <= 4 and len(second) <= 4


@st.composite
def shapes(draw, min_dims: int = 0, max_dims: int = 3) -> tuple:
    return tuple(draw(SIDES) for _ in range(draw(st.integers(min_dims, max_dims))))


@st.composite
def broadcast_partner_shapes(draw, shape: tuple) -> tuple:
    """A shape that broadcasts with ``shape``: each lined-up axis the same, 1,
    or (where ``shape`` has 1) any size, which stretches ``shape`` instead."""
    kept = draw(st.integers(0, len(shape))) if draw(st.integers(0, 3)) == 0 else len(shape)
    axes = []
    for size in shape[len(shape) - kept:]:
        choice = draw(st.sampled_from(["same", "same", "one", "stretch"]))
        if choice == "same":
            axes.append(size)
        elif choice == "one":
            axes.append(1)
        else:
            axes.append(draw(SIDES) if size == 1 else size)
    # more leading axes (only in front of all of shape's: they line up with nothing)
    extra = draw(st.integers(0, max(0, 3 - len(shape)))) if kept == len(shape) and draw(st.integers(0, 3)) == 0 else 0
    return tuple(draw(SIDES) for _ in range(extra)) + tuple(axes)


NUMBERS = st.sampled_from([2.0, 0.5, -1.5, 1.0, 0.0, 3.0, -0.0])
EXPONENTS = st.sampled_from([2.0, 3.0, 0.5, -1.0, 1.0, 0.0, 1.5, -0.5, -2.0, 2])
BASES = st.sampled_from([2.0, 0.5, math.e, 1.0, 0.0, -2.0])


def _all_positive(x: torch.Tensor) -> bool:
    return bool((x > 0).all())


def _no_zero(x: torch.Tensor) -> bool:
    return bool((x != 0).all())


def _not_negative(x: torch.Tensor) -> bool:
    return bool((x >= 0).all())


@st.composite
def axes_for(draw, ndim: int) -> Any:
    """None, an int (negatives too), or a non-empty tuple of distinct axes; for a 0-d
    tensor also 0 and -1, which NumPy and torch accept there."""
    if ndim == 0:
        return draw(st.sampled_from([None, None, 0, -1]))
    return draw(axis_for(ndim))


@st.composite
def reshape_targets(draw, shape: tuple) -> tuple:
    size = int(np.prod(shape, dtype=np.int64))
    if size == 0:
        target = list(draw(shapes(1, 3)))
        target[draw(st.integers(0, len(target) - 1))] = 0
        return tuple(target)
    factors = []
    n, f = size, 2
    while n > 1:
        while n % f == 0:
            factors.append(f)
            n //= f
        f += 1
    dims = draw(st.integers(max(1, min(len(factors), 1)), 4)) if factors else draw(st.integers(0, 3))
    target = [1] * dims
    for factor in factors:
        target[draw(st.integers(0, dims - 1))] *= factor
    if dims and draw(st.integers(0, 3)) == 0:
        target[draw(st.integers(0, dims - 1))] = -1
    return tuple(target)


@st.composite
def indices_for(draw, shape: tuple) -> tuple:
    """An index: ints, slices (positive steps: torch has no negative ones),
    None, Ellipsis, at most two integer arrays (repeats allowed) or one boolean mask."""
    parts = []
    axis = 0
    advanced = 0
    ellipsis = False
    while axis < len(shape) and (ellipsis or draw(st.integers(0, 4)) > 0):  # after ..., index every axis left
        size = shape[axis]
        kind = draw(st.sampled_from(["slice", "slice", "int", "none", "ints", "mask", "ellipsis"]))
        if kind == "int" and size > 0:
            parts.append(("int", draw(st.integers(-size, size - 1))))
            axis += 1
        elif kind == "none":
            parts.append(("none",))
        elif kind == "ints" and advanced < 2:
            count = draw(st.integers(0, 4)) if size else 0
            values = [draw(st.integers(-size, size - 1)) for _ in range(count)] if size else []
            if values and draw(st.booleans()):
                values.append(values[0])  # a repeated index: its gradients must add up
            parts.append(("ints", np.array(values, dtype=np.int64)))
            advanced += 1
            axis += 1
        elif kind == "mask" and advanced == 0:
            span = draw(st.integers(1, min(2, len(shape) - axis)))
            mask_shape = shape[axis: axis + span]
            parts.append(("mask", draw(hnp.arrays(np.bool_, mask_shape))))
            advanced = 2
            axis += span
        elif kind == "ellipsis" and not ellipsis:
            parts.append(("ellipsis",))
            ellipsis = True
            axis = len(shape) - draw(st.integers(0, len(shape) - axis))
        else:
            bound = size + 1
            start = draw(st.one_of(st.none(), st.integers(-bound, bound)))
            stop = draw(st.one_of(st.none(), st.integers(-bound, bound)))
            stride = draw(st.sampled_from([None, 1, 2, 3]))
            parts.append(("slice", start, stop, stride))
            axis += 1
    if not parts:
        parts.append(("slice", None, None, None))
    return tuple(parts)


TENSOR_OPS = (
    "add", "sub", "mul", "div", "pow", "matmul", "neg", *UNARY_NAMES, "maximum", "minimum", "where",
    "sum", "mean", "var", "max", "reshape", "permute", "transpose", "T", "getitem", "concatenate", "stack",
)


def draw_step(b: Builder, op: str) -> None:
    """Draw the operands and parameters of one ``op`` and add it to the program."""
    draw = b.draw
    if op in ("add", "sub", "mul", "div", "pow", "maximum", "minimum"):
        a = b.pick(_all_positive if op == "pow" else None)
        form = draw(st.sampled_from(["tensor", "tensor", "number"]))
        if form == "number":
            if op in ("maximum", "minimum"):
                b.add(Step(op, (a,), {"number": draw(NUMBERS)}))
                return
            on_left = draw(st.booleans())
            if op == "pow":
                number = draw(BASES) if on_left else draw(EXPONENTS)
            elif op == "div" and on_left:
                a = b.pick(_no_zero)
                number = draw(NUMBERS)
            else:
                number = draw(NUMBERS)
            b.add(Step(op, (a,), {"number": number, "number_on_left": on_left}))
            return
        other = b.partner(b.shape(a), _no_zero if op == "div" else None)
        # the partner is the divisor (mostly without zeros) and the exponent
        first, second = (a, other) if op in ("div", "pow") or draw(st.booleans()) else (other, a)
        b.add(Step(op, (first, second)))
        return
    if op == "matmul":
        a = b.pick(lambda x: x.ndim >= 1)
        shape = b.shape(a)
        if not shape:
            shape = b.shape(b.leaf(draw(shapes(1, 3))))
            a = len(b.values) - 1
        inner = shape[-1]
        kind = draw(st.sampled_from(["vector", "matrix", "batched"]))
        if kind == "vector":
            other_shape = (inner,)
        elif kind == "matrix":
            other_shape = (inner, draw(SIDES))
        else:
            other_shape = (draw(SIDES), inner, draw(SIDES))
        fitting = [i for i in range(len(b.values)) if b.shape(i) == other_shape]
        other = draw(st.sampled_from(fitting)) if fitting and draw(st.booleans()) else b.leaf(other_shape)
        if len(shape) >= 2 and draw(st.booleans()) and kind != "vector":
            # a on the right: other @ a needs other's last axis = a's second-to-last
            other_shape = (draw(SIDES), shape[-2]) if kind == "matrix" else (draw(SIDES), draw(SIDES), shape[-2])
            other = b.leaf(other_shape)
            b.add(Step("matmul", (other, a)))
            return
        b.add(Step("matmul", (a, other)))
        return
    if op == "neg":
        b.add(Step("neg", (b.pick(),)))
        return
    if op in UNARY_NAMES:
        wanted = {"log": _all_positive, "sqrt": _not_negative}.get(op)
        b.add(Step(op, (b.pick(wanted),)))
        return
    if op == "where":
        a = b.pick()
        form = draw(st.sampled_from(["tensor", "tensor", "number"]))
        if form == "number":
            condition = draw(hnp.arrays(np.bool_, draw(broadcast_partner_shapes(b.shape(a)))))
            b.add(Step("where", (a,), {"condition": condition, "number": draw(NUMBERS), "number_first": draw(st.booleans())}))
            return
        other = b.partner(b.shape(a))
        out_shape = tuple(torch.broadcast_shapes(b.shape(a), b.shape(other)))
        condition = draw(hnp.arrays(np.bool_, draw(broadcast_partner_shapes(out_shape))))
        pair = (a, other) if draw(st.booleans()) else (other, a)
        b.add(Step("where", pair, {"condition": condition}))
        return
    if op in ("sum", "mean", "var", "max"):
        a = b.pick()
        params = {"axis": draw(axes_for(b.values[a].ndim)), "keepdims": draw(st.booleans())}
        if op == "var":
            params["correction"] = draw(st.sampled_from([1, 0]))
        b.add(Step(op, (a,), params))
        return
    if op == "reshape":
        a = b.pick()
        b.add(Step("reshape", (a,), {"shape": draw(reshape_targets(b.shape(a)))}))
        return
    if op == "permute":
        a = b.pick()
        b.add(Step("permute", (a,), {"dims": tuple(draw(st.permutations(range(b.values[a].ndim))))}))
        return
    if op in ("transpose", "T"):
        a = b.pick(lambda x: x.ndim >= 2) if op == "transpose" else b.pick()
        ndim = b.values[a].ndim
        if op == "T" or ndim < 2:
            b.add(Step("T", (a,)))
            return
        b.add(Step("transpose", (a,), {"dim0": draw(st.integers(-ndim, ndim - 1)),
                                       "dim1": draw(st.integers(-ndim, ndim - 1))}))
        return
    if op == "getitem":
        a = b.pick(lambda x: x.ndim >= 1)
        b.add(Step("getitem", (a,), {"index": draw(indices_for(b.shape(a)))}))
        return
    if op in ("concatenate", "stack"):
        a = b.pick(lambda x: x.ndim >= 1) if op == "concatenate" else b.pick()
        shape = b.shape(a)
        if op == "concatenate" and not shape:
            a = b.leaf(draw(shapes(1, 3)))
            shape = b.shape(a)
        ndim = len(shape)
        axis = draw(st.integers(-ndim, ndim - 1)) if op == "concatenate" else draw(st.integers(-ndim - 1, ndim))
        members = [a]
        for _ in range(draw(st.integers(0, 2))):
            if op == "concatenate":
                def fits(i: int) -> bool:
                    s = b.shape(i)
                    return len(s) == ndim and all(x == y for k, (x, y) in enumerate(zip(s, shape)) if k != axis % ndim)
                wanted_shape = list(shape)
                wanted_shape[axis % ndim] = draw(SIDES)
            else:
                def fits(i: int) -> bool:
                    return b.shape(i) == shape
                wanted_shape = list(shape)
            fitting = [i for i in range(len(b.values)) if fits(i)]
            if fitting and draw(st.booleans()):
                members.append(draw(st.sampled_from(fitting)))
            else:
                members.append(b.leaf(tuple(wanted_shape)))
        members = draw(st.permutations(members))
        b.add(Step(op, tuple(members), {"axis": axis}))
        return
    raise AssertionError(op)


@st.composite
def tensor_programs(draw, max_steps: int = MAX_STEPS) -> Program:
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    mixed = draw(st.integers(0, 9)) == 0  # now and then a leaf of the other dtype
    b = Builder(draw, dtype, mixed)
    for _ in range(draw(st.integers(1, 2))):
        b.leaf(draw(shapes()))
    count = draw(st.integers(1, max_steps))
    no_grad_from, no_grad_to = sorted(draw(st.lists(st.integers(0, count), min_size=2, max_size=2)))
    if draw(st.integers(0, 2)):  # two programs in three have no no_grad block
        no_grad_from = no_grad_to = count
    for k in range(count):
        if b.finished:
            break
        if no_grad_from <= k < no_grad_to:
            b.mode = "enable_grad" if draw(st.integers(0, 4)) == 0 else "no_grad"
        else:
            b.mode = "grad"
        draw_step(b, draw(st.sampled_from(TENSOR_OPS)))
    return finish_program(draw, b)


def finish_program(draw, b: Builder) -> Program:
    steps = b.steps
    live = [i for i, flag in enumerate(b.requires_grad) if flag]
    live_steps = live  # step k made node k (a refused step can only be the last, and makes none)
    outputs: tuple = ()
    if live_steps:
        # every node no later step consumes (so every step can reach the loss), and a few more
        used = {i for step in steps for i in step.inputs}
        sinks = [k for k in live_steps if k not in used]
        others = draw(st.lists(st.sampled_from(live_steps), max_size=2, unique=True))
        outputs = tuple(sorted({live_steps[-1], *sinks, *others}))
    third = draw(st.sampled_from(live_steps)) if live_steps and draw(st.integers(0, 3)) else None
    return Program(steps, outputs, draw(st.booleans()), draw(st.booleans()), third)


# ==========================================================================
# Running a program in both engines
# ==========================================================================


@dataclass
class Record:
    """What torch did at one step (the oracle's side, which KNOWN_EDGE_DISAGREEMENTS reads)."""

    step: Step
    inputs: list  # torch values of the operands (detached)
    output: Optional[torch.Tensor]  # None if torch refused
    inputs_require_grad: tuple = ()
    engine: str = "tensor"  # or "value": a step of a Value program
    requires_grad: bool = False
    upstream: dict = field(default_factory=dict)  # pass number -> torch's dL/d(this node) in that pass
    terms: Optional[Callable] = None  # () -> {pass number: the size of what was summed into that upstream}


@dataclass
class Outcome:
    records: list
    disagreements: list
    ended_by: str = ""  # an accepted refusal or shared error that ended the program early


def _as_numpy(x: Any) -> Optional[np.ndarray]:
    if x is None:
        return None
    if isinstance(x, torch.Tensor):
        return x.detach().numpy().copy()
    return np.array(x, copy=True)


def differs(got: Any, want: Any, dtype: Any, terms: Any = None) -> Optional[str]:
    """Why ``got`` (tinyad) is not ``want`` (torch), or None if they agree.

    Finite numbers may differ by ``rtol * |want| + atol * scale``, where scale is
    the largest |number| of the array (at least 1) plus, elementwise, ``terms``:
    the sum of the absolute values of whatever was added up to make the number
    (the operands of a sum, the gradient messages arriving at a node). A sum
    that cancels, 1e5 - 1e5 + 3e-11, is only known to that much.
    """
    if got is None or want is None:
        return None if got is None and want is None else f"tinyad {_short(got)}, torch {_short(want)}"
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape:
        return f"shape {got.shape}, torch's is {want.shape}"
    rtol, atol = TOLERANCE[np.dtype(dtype)]
    g, w = got.astype(np.float64), want.astype(np.float64)
    nan_g, nan_w = np.isnan(g), np.isnan(w)
    inf_g, inf_w = np.isinf(g), np.isinf(w)
    finite_w = w[np.isfinite(w)]
    scale = max(1.0, float(np.abs(finite_w).max())) if finite_w.size else 1.0
    if terms is not None:
        scale = scale + np.nan_to_num(np.broadcast_to(np.abs(np.asarray(terms, dtype=np.float64)), w.shape),
                                      nan=0.0, posinf=0.0)
    with np.errstate(invalid="ignore"):
        close = np.abs(g - w) <= rtol * np.abs(w) + atol * scale
    bad = (nan_g != nan_w) | (inf_g | inf_w) & (g != w) | ~(nan_g | nan_w | inf_g | inf_w) & ~close
    if not bad.any():
        return None
    where = tuple(int(i) for i in np.argwhere(bad)[0])
    return (f"{int(bad.sum())} of {bad.size} elements differ, first at {where}: tinyad {g[where]!r}, "
            f"torch {w[where]!r}\n      tinyad {_short(got)}\n      torch  {_short(want)}")


def run_tensor_program(program: Program) -> Outcome:
    """Run ``program`` in torch and in tinyad, step by step, and list every disagreement."""
    records: list[Record] = []
    ours: list = []
    theirs: list = []
    problems: list[str] = []
    ended_by = ""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        for k, step in enumerate(program.steps):
            operands_torch = [theirs[i] for i in step.inputs]
            record = Record(step, [x.detach() for x in operands_torch], None,
                            tuple(x.requires_grad for x in operands_torch))
            records.append(record)
            torch_error = tinyad_error = None
            try:
                with grad_mode(step.mode, "torch"):
                    result_torch = apply_torch(step, operands_torch)
            except (RuntimeError, IndexError, ValueError) as error:
                torch_error, result_torch = error, None
            try:
                with grad_mode(step.mode, "tinyad"):
                    result_ours = apply_tinyad(step, [ours[i] for i in step.inputs])
            except Exception as error:  # noqa: BLE001 - any error is compared with torch's
                tinyad_error, result_ours = error, None
            where = f"step {k} (x{k} = {describe(step)})"
            if torch_error is not None or tinyad_error is not None:
                verdict = judge_errors(step, record, torch_error, tinyad_error)
                if verdict.startswith("agree"):
                    ended_by = f"{where}: {verdict}"
                else:
                    problems.append(f"{where}: {verdict}")
                break
            if step.mode == "no_grad" and step.op != "leaf" and result_torch.requires_grad:
                # torch's one exception to "no_grad results do not require grad": a view
                # made under no_grad reports requires_grad=True, yet no gradient flows
                # through it; tinyad follows the rule (docs of torch.no_grad), so torch's
                # side takes the rule's answer
                result_torch = result_torch.detach()
            record.output = result_torch.detach()
            record.requires_grad = result_torch.requires_grad
            theirs.append(result_torch)
            ours.append(result_ours)
            if result_ours.requires_grad != result_torch.requires_grad:
                problems.append(f"{where}: requires_grad {result_ours.requires_grad}, torch {result_torch.requires_grad}")
            if NUMPY_DTYPE[result_torch.dtype] != result_ours.dtype:
                problems.append(f"{where}: dtype {result_ours.dtype}, torch {result_torch.dtype}")
                continue
            why = differs(result_ours.numpy(), record.output.numpy(), result_ours.dtype)
            if why:  # a sum that cancels? then the size of its terms bounds the rounding
                why = differs(result_ours.numpy(), record.output.numpy(), result_ours.dtype,
                              forward_terms(step, record.inputs))
            if why:
                problems.append(f"{where}: forward value: {why}")
        if not problems:
            problems += run_backward_passes(program, records, ours, theirs)
    return Outcome(records, problems, ended_by)


def judge_errors(step: Step, record: Record, torch_error: Optional[Exception], tinyad_error: Optional[Exception]) -> str:
    """Whether an error at one step is an agreement: "agree: ..." or the disagreement."""
    token = ERROR_TOKEN.get(step.op, step.op)
    names_op = tinyad_error is not None and str(tinyad_error).startswith(f"{token}:")
    clear = isinstance(tinyad_error, (ValueError, IndexError)) and names_op
    if torch_error is not None and tinyad_error is not None:
        if clear:
            return f"agree: both refuse (torch: {torch_error}; tinyad: {tinyad_error})"
        return (f"both refuse, but tinyad's {type(tinyad_error).__name__} does not name the op "
                f"({token!r}): {tinyad_error}")
    if torch_error is not None:
        return f"torch refuses ({type(torch_error).__name__}: {torch_error}) but tinyad computes"
    # tinyad refused what torch computed
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = apply_torch(step, record.inputs)
    if isinstance(tinyad_error, ValueError) and names_op:
        for refusal in ACCEPTED_REFUSALS:
            if refusal.op == step.op and refusal.holds(step, record, result):
                return f"agree: a documented refusal ({refusal.name}): {tinyad_error}"
    return (f"tinyad raises {type(tinyad_error).__name__}: {tinyad_error}; torch gives "
            f"{_short(_as_numpy(result))}")


def run_backward_passes(program: Program, records: list, ours: list, theirs: list) -> list:
    """The three backward passes of ``program``; the list of disagreements."""
    problems: list[str] = []
    count = len(ours)
    outputs = [k for k in program.outputs if k < count and theirs[k].requires_grad]
    gradient_terms = _gradient_terms(program, records, count)
    for k in range(count):
        records[k].terms = functools.partial(gradient_terms, k)
    if not outputs:
        return problems
    for k in range(count):
        if theirs[k].requires_grad and not theirs[k].is_leaf:
            theirs[k].retain_grad()

    def loss_of(nodes: list, constant: Callable) -> Any:
        total = None
        for k in outputs:
            term = (nodes[k] * constant(weights(tuple(nodes[k].shape), ours[k].dtype, k))).sum()
            total = term if total is None else total + term
        return total

    loss_ours = loss_of(ours, Tensor)
    loss_theirs = loss_of(theirs, torch.from_numpy)

    def compare_grads(label: str, pass_number: int) -> None:
        for k in range(count):
            got = ours[k].grad
            want = theirs[k].grad
            if got is not None and np.asarray(got).dtype != ours[k].dtype:
                problems.append(f"{label}: x{k}.grad has dtype {np.asarray(got).dtype}, x{k} has {ours[k].dtype}")
                continue
            why = differs(_as_numpy(got), _as_numpy(want), ours[k].dtype)
            if why:
                why = differs(_as_numpy(got), _as_numpy(want), ours[k].dtype, gradient_terms(k)[pass_number])
            if why:
                problems.append(f"{label}: gradient of x{k} ({'leaf' if theirs[k].is_leaf else 'x' + str(k) + ' = ' + describe(program.steps[k])}): {why}")

    def attempt(label: str, ours_fn: Callable, theirs_fn: Callable, pass_number: int) -> bool:
        theirs_fn()
        for k in range(count):  # torch's upstream at every node, for KNOWN_EDGE_DISAGREEMENTS
            if theirs[k].grad is not None:
                records[k].upstream[pass_number] = theirs[k].grad.detach().clone()
        try:
            ours_fn()
        except Exception as error:  # noqa: BLE001
            problems.append(f"{label}: tinyad raises {type(error).__name__}: {error}")
            return False
        return True

    if not attempt("pass 1", loss_ours.backward, lambda: loss_theirs.backward(retain_graph=True), 1):
        return problems
    compare_grads("pass 1 (loss.backward())", 1)
    if problems:
        return problems
    in_no_grad = program.second_pass_in_no_grad

    def second_ours() -> None:
        with grad_mode("no_grad" if in_no_grad else "grad", "tinyad"):
            loss_ours.backward()

    def second_theirs() -> None:
        with grad_mode("no_grad" if in_no_grad else "grad", "torch"):
            loss_theirs.backward(retain_graph=True)

    if not attempt("pass 2", second_ours, second_theirs, 2):
        return problems
    compare_grads("pass 2 (loss.backward() again: gradients accumulate)", 2)
    problems += message_sums_disagree(loss_ours, ours)
    if problems:
        return problems
    # zero_grad, then a pass from another root with a non-scalar seed
    if program.zero_grad_from_root:
        tinyad.zero_grad(loss_ours)
    else:
        for node in ours:
            node.zero_grad()
    for node in theirs:
        node.grad = None
    compare_grads("after zero_grad", 0)
    root = program.third_root
    if root is None or root >= count or not theirs[root].requires_grad:
        return problems
    seed = weights(tuple(theirs[root].shape), NUMPY_DTYPE[theirs[root].dtype], seed=1)
    if not attempt("pass 3", lambda: ours[root].backward(seed.copy()),
                   lambda: theirs[root].backward(torch.from_numpy(seed.copy()), retain_graph=True), 3):
        return problems
    compare_grads(f"pass 3 (x{root}.backward(G) after zero_grad)", 3)
    return problems


def forward_terms(step: Step, inputs: list) -> Optional[torch.Tensor]:
    """For a step that adds numbers up, the same sum over their absolute values."""
    if step.op not in ("add", "sub", "sum", "mean", "matmul"):
        return None
    magnitudes = [x.abs() for x in inputs]
    params = dict(step.params)
    if "number" in params:
        params["number"] = abs(params["number"])
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return apply_torch(Step("add" if step.op == "sub" else step.op, step.inputs, params), magnitudes).numpy()


def _gradient_terms(program: Program, records: list, count: int) -> Callable:
    """k -> {pass: a bound on the sum of |every term| that makes up node k's gradient}.

    Backpropagates magnitudes instead of gradients: the loss's |weights|, then at
    each step |VJP(magnitude)| to its inputs, added up over consumers. Where
    messages cancel (x / x at a tiny x sends +-1e67 that add up to 0), this
    keeps their size, and so the rounding the result may carry, also for every
    node behind the cancellation. Computed only when a gradient disagrees.
    """
    cache: dict = {}

    def magnitudes(number: int) -> dict:
        totals: dict = {}

        def add(k: int, magnitude: Any) -> None:
            magnitude = np.nan_to_num(np.abs(np.asarray(magnitude, dtype=np.float64)), nan=0.0, posinf=0.0)
            totals[k] = totals.get(k, 0.0) + magnitude

        if number < 3:
            for k in program.outputs:
                if k < count:
                    shape = tuple(records[k].output.shape)
                    add(k, number * (weights(shape, np.float64, k) if program.kind == "tensor" else value_weight(k)))
        elif program.third_root is not None and program.third_root < count:
            root = program.third_root
            add(root, weights(tuple(records[root].output.shape), np.float64, seed=1)
                if program.kind == "tensor" else VALUE_SEED)
        for k in reversed(range(count)):
            record = records[k]
            if k not in totals or not record.requires_grad or not record.inputs:
                continue
            upstream = torch.from_numpy(np.broadcast_to(totals[k], tuple(record.output.shape)).copy())
            for i, message in zip(record.step.inputs, magnitude_vjp(record, upstream)):
                if message is not None:
                    add(i, message.detach().double().numpy())
        return totals

    def terms(k: int) -> dict:
        if not cache:
            cache.update({number: magnitudes(number) for number in (1, 2, 3)})
        return {0: None, **{number: cache[number].get(k) for number in (1, 2, 3)}}

    return terms


def magnitude_vjp(record: Record, magnitude: torch.Tensor) -> list:
    """``vjp`` for backpropagating magnitudes. A local derivative that is itself a
    difference of nearby numbers is known only to about eps absolutely, so its
    size is taken as the sum of what is subtracted: 1 + tanh^2 for
    1 - tanh^2, s (1 + s) for s (1 - s), |a| + |mean| for a - mean."""
    op = record.step.op
    if op == "tanh":
        return [magnitude * (1 + record.output.double() ** 2)]
    if op == "sigmoid":
        s = record.output.double()
        return [magnitude * s * (1 + s)]
    if op == "var":
        # d var / d a = 2 (a - mean) / (N - correction): its size is 2 (|a| + |mean|) / (N - correction)
        a = record.inputs[0].double()
        dims = tuple(d % a.ndim for d in _torch_dims(record.step.params["axis"], a.ndim)) if a.ndim else ()
        count = int(np.prod([a.shape[d] for d in dims], dtype=np.int64))
        freedom = max(count - record.step.params.get("correction", 1), 1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            spread = a.abs() + (a.mean(dim=dims, keepdim=True).abs() if dims else a.abs())
        upstream = magnitude.double()
        if not record.step.params["keepdims"]:
            for d in sorted(dims):
                upstream = upstream.unsqueeze(d)
        return [upstream.abs() * 2 * spread / freedom]
    return [None if x is None else x.abs() for x in vjp(record, magnitude)]


def message_sums_disagree(loss: Tensor, nodes: list) -> list:
    """tinyad's own promise: the messages arriving at a node add up to its ``.grad``,
    and a node that does not require grad receives none."""
    arriving: dict[int, list] = {}
    for parent, _consumer, sent in tinyad.edges(loss):
        arriving.setdefault(id(parent), []).append(sent)
    problems = []
    for k, node in enumerate(nodes):
        sent = [m for m in arriving.get(id(node), []) if m is not None]
        if not node.requires_grad:
            if sent:
                problems.append(f"messages: x{k} does not require grad, yet {len(sent)} message(s) arrived at it")
            continue
        if id(node) not in arriving:
            continue
        total = None
        for m in sent:
            total = np.array(m, dtype=np.float64) if total is None else total + np.asarray(m, dtype=np.float64)
        got = None if total is None else total
        terms = None
        for m in sent:
            terms = np.abs(np.asarray(m, dtype=np.float64)) + (0.0 if terms is None else terms)
        why = differs(got, None if node.grad is None else np.asarray(node.grad), getattr(node, "dtype", np.float64),
                      terms)
        if why:
            problems.append(f"messages: the messages arriving at x{k} do not add up to x{k}.grad: {why}")
    return problems


# ==========================================================================
# Documented refusals: tinyad raises ValueError, torch returns NaN/inf
# ==========================================================================


@dataclass(frozen=True)
class Refusal:
    """A documented ValueError: ``op`` refuses inputs where ``condition`` holds
    (computed on torch's inputs), and torch's result is not finite there."""

    name: str
    op: str
    where: str  # where it is documented
    condition: Callable  # (step, inputs, torch_result) -> bool
    needs_gradient_of: Optional[str] = None  # "exponent": holds only where the exponent requires grad

    def holds(self, step: Step, record: Record, result: torch.Tensor) -> bool:
        if self.needs_gradient_of == "exponent":
            position = 0 if step.params.get("number_on_left") else 1
            if position >= len(record.inputs_require_grad) or not record.inputs_require_grad[position]:
                return False
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return bool(self.condition(step, record.inputs, result))


def _operands(step: Step, inputs: list) -> tuple:
    """(left, right) of a binary step as torch tensors, numbers included."""
    if len(inputs) == 2:
        return inputs[0], inputs[1]
    number = torch.tensor(step.params["number"], dtype=inputs[0].dtype)
    return (number, inputs[0]) if step.params.get("number_on_left") else (inputs[0], number)


def _nonfinite_where(mask: torch.Tensor, result: torch.Tensor) -> bool:
    """torch's result is inf or NaN where ``mask`` (the domain error) holds; an
    empty result counts when the refused operand itself holds the error (x / 0.0
    for an empty x)."""
    if result.numel() == 0:
        return bool(mask.any())
    mask = torch.broadcast_to(mask, result.shape)
    return bool((mask & ~torch.isfinite(result)).any())


def _divides_by_zero(step: Step, inputs: list, result: torch.Tensor) -> bool:
    _, divisor = _operands(step, inputs)
    return _nonfinite_where(divisor == 0, result)


def _power_domain(step: Step, inputs: list, result: torch.Tensor) -> bool:
    base, exponent = _operands(step, inputs)
    fractional = exponent != torch.round(exponent)
    bad = ((base == 0) & (exponent < 0)) | ((base < 0) & fractional)
    return _nonfinite_where(bad, result)


def _negative_base_of_a_tensor_exponent(step: Step, inputs: list, result: torch.Tensor) -> bool:
    """a ** b with b a tensor and a < 0 somewhere (tinyad refuses it when b needs a gradient)."""
    if not (len(inputs) == 2 or step.params.get("number_on_left")):
        return False
    base, _ = _operands(step, inputs)
    return bool((torch.as_tensor(base) < 0).any())


def _reduces_nothing(step: Step, inputs: list, result: torch.Tensor) -> bool:
    shape = tuple(inputs[0].shape)
    axes = _torch_dims(step.params["axis"], len(shape)) if shape else ()
    count = int(np.prod([shape[a] for a in axes], dtype=np.int64)) if shape else 1
    needed = step.params.get("correction", 0) + (1 if step.op == "mean" else 0)
    return count <= needed and result.numel() > 0 and not bool(torch.isfinite(result).all())


ACCEPTED_REFUSALS = [
    Refusal("log of a number <= 0", "log", "docs/conventions.md, Numbers",
            lambda step, x, r: _nonfinite_where(x[0] <= 0, r)),
    Refusal("sqrt of a negative number", "sqrt", "docs/conventions.md, Numbers",
            lambda step, x, r: _nonfinite_where(x[0] < 0, r)),
    Refusal("division by zero", "div", "docs/conventions.md, Numbers", _divides_by_zero),
    Refusal("0 ** negative, negative ** fractional", "pow", "docs/conventions.md, Numbers", _power_domain),
    Refusal("negative base with an exponent that needs a gradient", "pow",
            "docs/conventions.md, Numbers (d(a^b)/db = a^b ln a is NaN for a < 0 in torch)",
            _negative_base_of_a_tensor_exponent, needs_gradient_of="exponent"),
    Refusal("mean of zero elements into a number", "mean", "issue 16 item 1 (keeps its clear error)",
            _reduces_nothing),
    Refusal("var with no degree of freedom (N - correction <= 0)", "var",
            "tinyad/tensor.py var(); the same rule as mean of nothing", _reduces_nothing),
]







# ==========================================================================
# The scalar engine: random Value programs against 0-d float64 torch tensors
# ==========================================================================

VALUE_SEED = 1.75  # the gradient pass 3 starts from


def value_weight(k: int) -> float:
    """The weight of node k in a Value program's loss: mixed signs, never 1."""
    return (-1.0) ** k * (0.5 + 0.25 * (k % 5))


def describe_value(step: Step) -> str:
    p = step.params
    a = [f"x{i}" for i in step.inputs]
    if step.op == "leaf":
        return f"Value({p['value']!r})"
    if step.op in BINARY_SYMBOL:
        left, right = (a[0], a[1]) if len(a) == 2 else (
            (_number(p["number"]), a[0]) if p["number_on_left"] else (a[0], _number(p["number"])))
        return f"{left} {BINARY_SYMBOL[step.op]} {right}"
    if step.op == "neg":
        return f"-{a[0]}"
    return f"{a[0]}.{step.op}()"


def apply_value(step: Step, xs: list, engine: str) -> Any:
    """One step of a Value program, with tinyad Values or 0-d torch tensors."""
    p, op = step.params, step.op
    if op == "leaf":
        if engine == "tinyad":
            return Value(p["value"])
        return torch.tensor(p["value"], dtype=torch.float64, requires_grad=True)
    if op in BINARY_CALL:
        if len(xs) == 2:
            return BINARY_CALL[op](xs[0], xs[1])
        return BINARY_CALL[op](p["number"], xs[0]) if p["number_on_left"] else BINARY_CALL[op](xs[0], p["number"])
    if op == "neg":
        return -xs[0]
    return getattr(xs[0], op)()


VALUE_OPS = ("add", "sub", "mul", "div", "pow", "neg", *UNARY_NAMES)


def _value_elements() -> st.SearchStrategy:
    return st.one_of(
        st.floats(-3.0, 3.0, allow_nan=False, allow_infinity=False, allow_subnormal=False),
        st.floats(-3.0, 3.0, allow_nan=False, allow_infinity=False, allow_subnormal=False),
        st.sampled_from([0.0, -0.0, 1.0, -1.0, 0.5, 2.0, -2.0]),
        st.sampled_from([math.inf, -math.inf, math.nan, 1e200, -1e200, 1e-200, 700.0, 710.0]),
    )


@st.composite
def value_programs(draw, max_steps: int = 15) -> Program:
    steps: list[Step] = []
    values: list[float] = []

    def add(step: Step) -> bool:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = float(apply_value(step, [torch.tensor(values[i], dtype=torch.float64) for i in step.inputs], "torch"))
        steps.append(step)
        values.append(value)
        return True

    def pick(wanted: Optional[Callable[[float], bool]] = None) -> int:
        if wanted is not None and draw(st.integers(0, 9)) < 8:
            fitting = [i for i, v in enumerate(values) if wanted(v)]
            if fitting:
                return draw(st.sampled_from(fitting[::-1]))
        return len(values) - 1 if draw(st.booleans()) else draw(st.integers(0, len(values) - 1))

    for _ in range(draw(st.integers(1, 3))):
        add(Step("leaf", (), {"value": draw(_value_elements())}))
    count = draw(st.integers(1, max_steps))
    no_grad_from, no_grad_to = sorted(draw(st.lists(st.integers(0, count), min_size=2, max_size=2)))
    if draw(st.integers(0, 2)):
        no_grad_from = no_grad_to = count
    for k in range(count):
        mode = "grad"
        if no_grad_from <= k < no_grad_to:
            mode = "enable_grad" if draw(st.integers(0, 4)) == 0 else "no_grad"
        op = draw(st.sampled_from(VALUE_OPS))
        if op in ("add", "sub", "mul", "div", "pow"):
            first = pick((lambda v: v > 0) if op == "pow" else None)
            form = draw(st.sampled_from(["value", "value", "number"]))
            if form == "number":
                on_left = draw(st.booleans())
                number = draw(BASES if op == "pow" and on_left else EXPONENTS if op == "pow" else NUMBERS)
                if op == "div" and on_left:
                    first = pick(lambda v: v != 0)
                add(Step(op, (first,), {"number": float(number), "number_on_left": on_left}, mode))
                continue
            if draw(st.booleans()):
                add(Step("leaf", (), {"value": draw(_value_elements())}, mode))
                second = len(values) - 1
            else:
                second = pick((lambda v: v != 0) if op == "div" else None)
            pair = (first, second) if op in ("div", "pow") or draw(st.booleans()) else (second, first)
            add(Step(op, pair, {}, mode))
        elif op == "neg":
            add(Step("neg", (pick(),), {}, mode))
        else:
            wanted = {"log": lambda v: v > 0, "sqrt": lambda v: v >= 0, "exp": lambda v: v < 700}.get(op)
            add(Step(op, (pick(wanted),), {}, mode))
    nodes = list(range(len(steps)))
    used = {i for step in steps for i in step.inputs}
    sinks = [k for k in nodes if k not in used]
    outputs = tuple(sorted({nodes[-1], *sinks, *draw(st.lists(st.sampled_from(nodes), max_size=2, unique=True))}))
    third = draw(st.sampled_from(nodes)) if draw(st.integers(0, 3)) else None
    return Program(steps, outputs, draw(st.booleans()), draw(st.booleans()), third, kind="value")


VALUE_ERROR_TOKEN = {"add": "+", "sub": "-", "mul": "*", "div": "/", "pow": "**"}


def _value_refusal(step: Step, inputs: list, result: torch.Tensor) -> Optional[str]:
    """The documented Value refusal (docs/conventions.md "Numbers", the README's
    exp overflow, issue 16 item 2 for ** overflow) that covers this step, if any."""
    if step.op == "pow" and (len(step.inputs) == 2 or step.params.get("number_on_left")):
        base, _ = _operands(step, inputs)
        if base < 0:  # the exponent is a Value: d(a^b)/db = a^b ln a, NaN in torch for a < 0
            return "negative base with an exponent that needs a gradient"
    if bool(torch.isfinite(result)):
        return None
    op = step.op
    if op == "log" and inputs[0] <= 0:
        return "log of a number <= 0"
    if op == "sqrt" and inputs[0] < 0:
        return "sqrt of a negative number"
    if op == "exp" and bool(torch.isfinite(inputs[0])):
        return "exp overflow"
    if op in ("div", "pow"):
        left, right = _operands(step, inputs)
        if op == "div" and right == 0:
            return "division by zero"
        if op == "pow" and ((left == 0 and right < 0) or (left < 0 and right != torch.round(right))):
            return "0 ** negative, negative ** fractional"
        if op == "pow" and bool(torch.isfinite(left)) and bool(torch.isfinite(right)) and bool(torch.isinf(result)):
            return "** overflow (issue 16 item 2: torch's inf or a ValueError naming the op)"
    return None


def run_value_program(program: Program) -> Outcome:
    """Run a Value program in tinyad and in torch (0-d float64) and list every disagreement."""
    records: list[Record] = []
    ours: list = []
    theirs: list = []
    problems: list[str] = []
    ended_by = ""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for k, step in enumerate(program.steps):
            operands = [theirs[i] for i in step.inputs]
            record = Record(step, [x.detach() for x in operands], None, tuple(True for _ in operands), engine="value")
            records.append(record)
            with grad_mode(step.mode, "torch"):
                result_torch = apply_value(step, operands, "torch")
            if step.mode == "no_grad":
                # a Value always takes part in the gradient: made under no_grad it is a
                # new leaf (README, "tinyad.Value"), which in torch is a detached leaf
                result_torch = result_torch.detach().requires_grad_(True)
            record.output = result_torch.detach()
            record.requires_grad = True
            where = f"step {k} (x{k} = {describe_value(step)})"
            try:
                with grad_mode(step.mode, "tinyad"):
                    result_ours = apply_value(step, [ours[i] for i in step.inputs], "tinyad")
            except Exception as error:  # noqa: BLE001 - any error is compared with torch's
                token = VALUE_ERROR_TOKEN.get(step.op, step.op)
                refusal = _value_refusal(step, record.inputs, record.output)
                if isinstance(error, ValueError) and str(error).startswith(f"{token}:") and refusal:
                    ended_by = f"{where}: agree: a documented refusal ({refusal}): {error}"
                else:
                    problems.append(f"{where}: tinyad raises {type(error).__name__}: {error}; "
                                    f"torch gives {record.output.item()!r}")
                break
            theirs.append(result_torch)
            ours.append(result_ours)
            why = differs(result_ours.data, record.output.item(), np.float64)
            if why:
                problems.append(f"{where}: forward value: {why}")
        if not problems:
            problems += run_value_backward_passes(program, records, ours, theirs)
    return Outcome(records, problems, ended_by)


def run_value_backward_passes(program: Program, records: list, ours: list, theirs: list) -> list:
    problems: list[str] = []
    count = len(ours)
    outputs = [k for k in program.outputs if k < count]
    if not outputs:
        return problems
    gradient_terms = _gradient_terms(program, records, count)
    for k in range(count):
        records[k].terms = functools.partial(gradient_terms, k)
    for node in theirs:
        if not node.is_leaf:
            node.retain_grad()
    loss_ours = loss_theirs = None
    for k in outputs:
        loss_ours = ours[k] * value_weight(k) if loss_ours is None else loss_ours + ours[k] * value_weight(k)
        loss_theirs = theirs[k] * value_weight(k) if loss_theirs is None else loss_theirs + theirs[k] * value_weight(k)

    def grad_of(node: torch.Tensor) -> float:
        return 0.0 if node.grad is None else node.grad.item()

    def one_pass(label: str, pass_number: int, ours_fn: Callable, theirs_fn: Callable) -> bool:
        theirs_fn()
        for k in range(count):
            records[k].upstream[pass_number] = torch.tensor(grad_of(theirs[k]), dtype=torch.float64)
        try:
            ours_fn()
        except Exception as error:  # noqa: BLE001
            problems.append(f"{label}: tinyad raises {type(error).__name__}: {error}")
            return False
        for k in range(count):
            why = differs(ours[k].grad, grad_of(theirs[k]), np.float64)
            if why:
                why = differs(ours[k].grad, grad_of(theirs[k]), np.float64, gradient_terms(k)[pass_number])
            if why:
                problems.append(f"{label}: gradient of x{k} = {describe_value(program.steps[k])}: {why}")
        return not problems

    if not one_pass("pass 1 (loss.backward())", 1, loss_ours.backward, lambda: loss_theirs.backward(retain_graph=True)):
        return problems
    mode = "no_grad" if program.second_pass_in_no_grad else "grad"

    def second_ours() -> None:
        with grad_mode(mode, "tinyad"):
            loss_ours.backward()

    def second_theirs() -> None:
        with grad_mode(mode, "torch"):
            loss_theirs.backward(retain_graph=True)

    if not one_pass("pass 2 (loss.backward() again)", 2, second_ours, second_theirs):
        return problems
    problems += message_sums_disagree(loss_ours, ours)
    if problems:
        return problems
    if program.zero_grad_from_root:
        tinyad.zero_grad(loss_ours)
    else:
        for node in ours:
            node.zero_grad()
    for node in theirs:
        node.grad = None
    for k in range(count):
        if ours[k].grad != 0.0:
            problems.append(f"after zero_grad: x{k}.grad is {ours[k].grad!r}")
    root = program.third_root
    if problems or root is None or root >= count:
        return problems
    one_pass(f"pass 3 (x{root}.backward({VALUE_SEED}) after zero_grad)", 3,
             lambda: ours[root].backward(VALUE_SEED),
             lambda: theirs[root].backward(torch.tensor(VALUE_SEED, dtype=torch.float64), retain_graph=True))
    return problems


# ==========================================================================
# Known disagreements (open issues): excused, never passed
# ==========================================================================


@dataclass(frozen=True)
class KnownEdge:
    """An open disagreement. ``applies`` reads torch's records of one program
    (never tinyad's results): True when the program reaches this edge."""

    name: str
    issue: str
    what: str
    applies: Callable  # (records) -> bool


def torch_messages(record: Record, pass_number: int) -> list:
    """The gradients torch sends from this step to each of its inputs in one pass."""
    upstream = record.upstream.get(pass_number)
    if upstream is None or record.output is None or not record.inputs:
        return []
    return [g for g in vjp(record, upstream) if g is not None]


def vjp(record: Record, upstream: torch.Tensor) -> list:
    """torch's vector-Jacobian product of one step: what it sends to each input (None: nothing)."""
    leaves = [x.detach().clone().requires_grad_(True) for x in record.inputs]
    with torch.enable_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = apply_torch(record.step, leaves)
        if not out.requires_grad:
            return []
        grads = torch.autograd.grad(out, leaves, upstream.to(out.dtype), allow_unused=True)
    return list(grads)


def _steps(records: list, *ops: str):
    return (r for r in records if r.step.op in ops)


def _nonfinite(x: torch.Tensor) -> bool:
    return not bool(torch.isfinite(x).all())






















def _minus_zero_to_a_fraction(records: list) -> bool:
    for r in _steps(records, "pow"):
        base, exponent = torch.broadcast_tensors(*_operands(r.step, r.inputs))
        minus_zero = (base == 0) & torch.signbit(base)
        if bool((minus_zero & (exponent > 0) & (exponent < 1)).any()):
            return True
    return False


def _signed_zero_choice_into_a_root(records: list) -> bool:
    """A zero whose sign NumPy and torch may choose differently (a sum in @, a tie of
    0.0 and -0.0 in maximum, minimum or max, relu of -0.0: tinyad's maximum(x, 0)
    gives 0.0, torch keeps -0.0) and a root of a zero in the same program."""
    root_of_zero = any(bool((r.inputs[0] == 0).any()) for r in _steps(records, "sqrt", "pow") if r.inputs)
    if not root_of_zero:
        return False
    if any(r.output is not None and bool((r.output == 0).any()) for r in _steps(records, "matmul")):
        return True
    if any(bool(((r.inputs[0] == 0) & torch.signbit(r.inputs[0])).any()) for r in _steps(records, "relu") if r.inputs):
        return True
    for r in _steps(records, "maximum", "minimum", "max"):
        values = torch.cat([x.reshape(-1) for x in _operands(r.step, r.inputs)]) if r.step.op != "max" else r.inputs[0].reshape(-1)
        zeros = values[values == 0]
        if bool(torch.signbit(zeros).any()) and bool((~torch.signbit(zeros)).any()):
            return True
    return False


def _stacked_scalars_summed(records: list) -> bool:
    """torch: one-element tensors that require grad, stacked; their .grad can share memory."""
    return any(sum(1 for x, flag in zip(r.inputs, r.inputs_require_grad) if flag and x.numel() == 1) >= 2
               for r in _steps(records, "stack"))


def _sigmoid_underflows(records: list) -> bool:
    return any(bool(((r.output == 0) & torch.isfinite(r.inputs[0])).any())
               for r in _steps(records, "sigmoid") if r.output is not None)


def _variance_of_equal_values(records: list) -> bool:
    """var over a slice of equal nonzero values: the exact answer is 0, and each engine may
    round its mean and give a tiny variance (tiny against the values squared) or 0."""
    for r in _steps(records, "var"):
        x = r.inputs[0]
        if r.output is None or x.numel() == 0:
            continue
        dims = _torch_dims(r.step.params["axis"], x.dim()) or tuple(range(x.dim()))
        constant = torch.amax(x, dim=dims) == torch.amin(x, dim=dims) if x.dim() else torch.tensor(True)
        if bool((constant & (torch.amax(x.abs(), dim=dims) > 0 if x.dim() else x != 0)).any()):
            return True
    return False


def _index_placed_differently(records: list) -> bool:
    """NumPy and torch put the axes of an advanced index in different places
    (an int and an integer array separated by a slice or None)."""
    for r in _steps(records, "getitem"):
        if r.output is None:
            continue
        shape = tuple(r.inputs[0].shape)
        positions = np.arange(int(np.prod(shape, dtype=np.int64))).reshape(shape)  # each element its own number
        by_numpy = positions[_tinyad_index(r.step.params["index"])]
        by_torch = torch.from_numpy(positions)[_torch_index(r.step.params["index"])].numpy()
        if by_numpy.shape != by_torch.shape or not np.array_equal(by_numpy, by_torch):
            return True
    return False


def _division_backward_overflows(records: list) -> bool:
    """x / b's gradient for b is -g * (x / b) / b: torch divides first, tinyad multiplies
    g first; where either order over- or underflows they may differ (NaN for 0 * inf, inf,
    or torch's 0 where (x / b) / b underflows and tinyad's g * x / b / b does not)."""
    for r in _steps(records, "div"):
        if r.output is None:
            continue
        numerator, divisor = _operands(r.step, r.inputs)
        square = divisor * divisor
        tiny = torch.finfo(square.dtype).tiny
        for upstream in r.upstream.values():
            underflows = bool((((r.output / divisor) == 0) & (r.output != 0)).any())  # torch's (a / b) / b -> 0
            if (_nonfinite(r.output / divisor) or _nonfinite(upstream * r.output) or _nonfinite(upstream * numerator)
                    or _nonfinite((1 / divisor) ** 2) or bool(((square.abs() < tiny) & (divisor != 0)).any())
                    or underflows):
                return True  # (1 / b) ** 2: torch computes number / b as number * reciprocal(b)
    return False


def _float64_demoted(records: list) -> bool:
    """A step with a float32 and a float64 input: what came from float32 carries float32's
    rounding (in each engine its own), then meets float64's tolerance."""
    return any({x.dtype for x in r.inputs} == {torch.float32, torch.float64} for r in records)


def _mixed_dtypes(records: list) -> bool:
    """a matmul of a float32 and a float64 operand (torch refuses it, tinyad computes in float64)."""
    return any(len({x.dtype for x in r.inputs}) > 1 for r in _steps(records, "matmul"))


def _empty_result(record: Record) -> bool:
    """torch's result of this step is empty (computed again: a refused step has no output)."""
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return apply_torch(record.step, record.inputs).numel() == 0
        except (RuntimeError, IndexError):
            return False


def _subnormal_float32_divisor(records: list) -> bool:
    for r in _steps(records, "div"):
        _, divisor = _operands(r.step, r.inputs)
        if divisor.dtype == torch.float32 and bool(((divisor != 0) & (divisor.abs() < torch.finfo(torch.float32).tiny)).any()):
            return True
    return False


def _near_tie_of_computed_values(records: list) -> bool:
    """maximum, minimum or max where two candidates are equal or within a few units in
    the last place, and one of them was computed (not a leaf, not a number): each engine
    rounds the computation its own way, so one may see a tie (the gradient split, or the
    first index chosen) where the other sees a strict winner. A tie of leaves is exact in
    both engines, and stays compared."""
    def computed(record: Record, position: int) -> bool:
        return records[record.step.inputs[position]].step.op != "leaf"

    def near(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        ulp = torch.finfo(a.dtype).eps * torch.maximum(a.abs(), b.abs())
        return torch.isfinite(a) & torch.isfinite(b) & ((a - b).abs() <= 4 * ulp)

    for r in _steps(records, "maximum", "minimum"):
        if r.output is None or not any(computed(r, i) for i in range(len(r.inputs))):
            continue
        a, b = torch.broadcast_tensors(*_operands(r.step, r.inputs))
        if bool(near(a.to(torch.float64), b.to(torch.float64)).any()):
            return True
    for r in _steps(records, "max"):
        if r.output is None or not computed(r, 0) or r.inputs[0].numel() == 0:
            continue
        x = r.inputs[0]
        dims = _torch_dims(r.step.params["axis"], x.dim()) or tuple(range(x.dim()))
        largest = torch.amax(x, dim=dims, keepdim=True) if x.dim() else x
        winners = near(x, largest.expand_as(x)) if x.dim() else torch.tensor(True)
        ties = winners.sum(dim=dims) if x.dim() else winners
        if bool((ties > 1).any()):
            return True
    return False


def _infinite_slope_times_a_rounding_residue(records: list) -> bool:
    """sqrt (or x ** b, 0 < b < 1) of a zero has an infinite slope. Where the upstream
    arriving there is a sum that cancelled (x / b then / x: messages of +-9 that add up
    to exactly 0 in one engine, to 1e-16 in the other, by the order each rounds in), the
    message sent on is NaN (inf * 0) or +-inf by that rounding alone."""
    for r in _steps(records, "sqrt", "pow"):
        if r.output is None or r.terms is None or not r.inputs or r.step.params.get("number_on_left"):
            continue
        zero = r.inputs[0] == 0
        if not bool(zero.any()):
            continue
        sizes = r.terms()
        for number, upstream in r.upstream.items():
            size = sizes.get(number)
            if size is None:
                continue
            eps = torch.finfo(upstream.dtype).eps
            residue = torch.from_numpy(np.asarray(upstream.abs().double().numpy() <= 16 * eps * size))
            if bool((torch.broadcast_to(zero, upstream.shape) & residue).any()):
                return True
    return False


def _negative_base_to_a_rounded_integer(records: list) -> bool:
    """A negative base to a computed exponent that is an integer up to a few units in the
    last place: whether it is an integer (a number: (-2) ** 1e12 = inf) or not (refused)
    depends on how each engine rounded the exponent (1e-6 ** -2 is 1e12 in torch,
    1000000000000.0001 in NumPy)."""
    for r in _steps(records, "pow"):
        exponent_position = 0 if r.step.params.get("number_on_left") else 1
        if exponent_position >= len(r.inputs) or records[r.step.inputs[exponent_position]].step.op == "leaf":
            continue
        base, exponent = torch.broadcast_tensors(*_operands(r.step, r.inputs))
        exponent = exponent.double()
        integer = torch.round(exponent)
        near = (exponent - integer).abs() <= 4 * torch.finfo(r.inputs[exponent_position].dtype).eps * exponent.abs()
        if bool(((base < 0) & torch.isfinite(exponent) & near).any()):
            return True
    return False


def _sum_lost_to_cancellation(records: list) -> bool:
    """A sum of three or more numbers (sum, mean, the dot products of matmul) whose result
    is within its rounding error of zero: [1e30, -1e30, 1, 1, 1, 1] sums to 4 in one order,
    2 in another. The step itself is compared with that error allowed for (``differs``
    with ``forward_terms``); this covers what is computed from it. (A sum of two numbers
    rounds once, the same in every engine, so x - x never counts.)"""
    for r in _steps(records, "sum", "mean", "matmul"):
        if r.output is None or not r.inputs or r.output.numel() == 0:
            continue
        if r.step.op == "matmul":
            count = r.inputs[0].shape[-1] if r.inputs[0].dim() else 1
        else:
            shape = tuple(r.inputs[0].shape)
            axes = _torch_dims(r.step.params["axis"], len(shape)) or tuple(range(len(shape)))
            count = int(np.prod([shape[a] for a in axes], dtype=np.int64)) if shape else 1
        if count < 3 and not (r.step.op == "matmul" and count >= 2):
            continue
        terms = forward_terms(r.step, r.inputs)
        eps = torch.finfo(r.output.dtype).eps
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            lost = np.abs(r.output.double().numpy()) <= 8 * count * eps * np.asarray(terms, dtype=np.float64)
            if bool((lost & (np.asarray(terms) > 0) & np.isfinite(np.asarray(terms, dtype=np.float64))).any()):
                return True
    return False


def _log_near_one(records: list) -> bool:
    """log(x) for x within about 1% of 1 in float32 is known only to eps / |ln x| relative
    (log(exp(2 ** -8)) is 2 ** -8 up to 1.5e-5): more than float32's tolerance once a
    gradient divides by it twice and the two messages cancel."""
    for r in _steps(records, "log"):
        if r.output is None or not r.inputs or r.inputs[0].numel() == 0:
            continue
        x = r.inputs[0].double()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            condition = 1 / torch.log(x).abs()  # how much log magnifies x's relative rounding
        if bool((torch.isfinite(condition) & (condition * torch.finfo(r.inputs[0].dtype).eps >= 1e-5)).any()):
            return True
    return False


KNOWN_EDGE_DISAGREEMENTS: list[KnownEdge] = [
    KnownEdge("float32 @ float64", "tinyad follows NumPy's matmul here",
              "float32 @ float64 computes (in float64) where torch refuses (same dtype needed)", _mixed_dtypes),
    KnownEdge("-0.0 ** b for 0 < b < 1", "issue 16 item 1 (sign of zero; what is left of it)",
              "the infinite gradient of (-0.0) ** b differs in sign from torch's for some b: 1e-200 (torch "
              "rounds b - 1 to -1, an odd power: -inf), and Value ** Value(0.5) (+inf in tinyad, torch's "
              "tensor ** tensor also +inf, but its x ** 0.5 gives -inf)", _minus_zero_to_a_fraction),
    KnownEdge("subnormal float32 divisor", "torch's own arithmetic (tinyad is right)",
              "-0.0 / x for a float32 subnormal x: torch's vectorized kernel treats x as 0 and gives NaN, "
              "tinyad 0", _subnormal_float32_divisor),
    KnownEdge("torch: stacked one-element leaves share .grad", "a PyTorch bug (tinyad is right)",
              "a, b one-element leaves, loss = torch.stack([a, b]).sum() (or .sum(dim=(0, 1)) for shape (1,)), "
              "backward twice with retain_graph: torch keeps views of one expanded gradient as a.grad and "
              "b.grad, which then alias; they end at 3x (three leaves: 4x), tinyad's at 2x",
              _stacked_scalars_summed),
    KnownEdge("sign of a zero NumPy and torch choose differently", "neither is wrong; tinyad follows NumPy",
              "a @ b can be 0.0 in one and -0.0 in the other (-2.3 * 0.0 summed from +0 or not), and "
              "maximum(-0.0, 0.0) (so relu(-0.0)) is 0.0 in NumPy, -0.0 in torch; a sqrt or fractional power of that zero "
              "then has an infinite gradient of the other sign", _signed_zero_choice_into_a_root),
    KnownEdge("sigmoid underflow", "torch's own rounding (tinyad is nearer the true value)",
              "sigmoid(x) for x < -745 (float64): torch gives 0, tinyad the subnormal e^x / (1 + e^x); "
              "a log after it then gives -inf in torch, about x in tinyad", _sigmoid_underflows),
    KnownEdge("float32 meets float64", "rounding in both engines, compared too strictly",
              "a step mixing float32 and float64 (a 0-d float64 leaf added to a float32 batch, a float32 "
              "variance added to a float64 number): each engine rounds the float32 part its own way, and "
              "the comparison holds the float64 result to float64's tolerance",
              _float64_demoted),
    KnownEdge("variance of equal values", "rounding in both engines",
              "var over a slice of equal values (1e30 three times): the exact 0 comes out as 0 in one engine "
              "and about 3e28 in the other (the mean rounded; tiny against 1e60, the values squared), "
              "which engine depending on the shape", _variance_of_equal_values),
    KnownEdge("advanced-index placement", "not yet in issue 16 (found by this fuzzer)",
              "x[0, None, idx] (an int and an integer array separated by a slice or None): NumPy moves the "
              "indexed axes to the front, torch does not; tinyad follows NumPy", _index_placed_differently),
    KnownEdge("division backward order", "not yet in issue 16 (found by this fuzzer)",
              "d(a / b)/db: tinyad computes (-g * (a / b)) / b (Value: -g * a / (b * b)), torch "
              "-g * ((a / b) / b) (number / b: via 1 / b); where one order over- or underflows (a tiny b, a "
              "zero g) they give 0 and NaN, or a number and inf",
              _division_backward_overflows),
    KnownEdge("a tie made by rounding", "rounding in both engines (not a wrong formula)",
              "maximum(x.sigmoid(), 0.5) at x = -2.2e-16: torch's sigmoid gives 0.5 (a tie: the gradient "
              "is split), tinyad's 0.49999999999999994 (0.5 wins: all of it to the number); the same for "
              "max over values equal up to rounding", _near_tie_of_computed_values),
    KnownEdge("an infinite slope times a rounding residue", "rounding in both engines (not a wrong formula)",
              "sqrt(x3) at x3 = 0, whose upstream is a sum that cancels (x5 / b / x5 sends x5 two messages "
              "of +-9): exactly 0 in tinyad, -1e-16 in torch, so the message to x3 is NaN in one, -inf "
              "in the other", _infinite_slope_times_a_rounding_residue),
    KnownEdge("a negative base to an exponent rounded to an integer", "rounding in both engines",
              "(-2.0) ** (x ** -2.0) at x = 1e-6: torch's exponent is 1e12 (an integer: inf), NumPy's "
              "1000000000000.0001 (a fraction: tinyad refuses it)", _negative_base_to_a_rounded_integer),
    KnownEdge("a sum lost to cancellation, used later", "rounding in both engines (summation order)",
              "x = [1e30, -1e30, 1, 1, 1, 1] (float32): x.sum() is 4 in NumPy's order, 2 in torch's; the "
              "sum itself is compared with that rounding allowed for, x.sum() ** 2 (16 and 4) is not",
              _sum_lost_to_cancellation),
    KnownEdge("log near 1 in float32", "rounding in both engines (an ill-conditioned step)",
              "x.exp().log() at x = 2 ** -8 (float32) is x up to 1.5e-5 relative, differently in each engine; "
              "x / that, whose gradient is 1/y - x/y**2 (256 - 256), then differs by 1e-2",
              _log_near_one),
]


# ==========================================================================
# The tests
# ==========================================================================


def check(outcome: Outcome, program: Program, known: list) -> None:
    """Fail with a reproducer, or reject an example whose disagreement is a known edge."""
    if outcome.ended_by:
        reason = outcome.ended_by.split("agree: ", 1)[-1]
        event("ended early: " + (reason.split(")")[0] + ")" if reason.startswith("a documented") else "both refuse"))
    if not outcome.disagreements:
        return
    for edge in known:
        if edge.applies(outcome.records):
            event(f"known edge: {edge.name}")
            reject()
    note(program.source())
    raise AssertionError(
        "tinyad and torch disagree:\n  " + "\n  ".join(outcome.disagreements)
        + "\nprogram (tinyad):\n" + program.source()
    )


@FUZZ
@given(tensor_programs())
def test_random_tensor_programs_agree_with_torch(program):
    outcome = run_tensor_program(program)
    check(outcome, program, KNOWN_EDGE_DISAGREEMENTS)


@FUZZ
@given(value_programs())
def test_random_value_programs_agree_with_torch(program):
    outcome = run_value_program(program)
    check(outcome, program, KNOWN_EDGE_DISAGREEMENTS)

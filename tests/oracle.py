"""Shared helpers for the scalar-engine tests: PyTorch as the oracle, and a
hypothesis strategy for random expression DAGs.

Every function here is written once and run twice: on tinyad ``Value``s and on
0-d float64 torch tensors that require grad. Both types spell the operations
the same way (``a + b``, ``a ** b``, ``a.tanh()``, ``a.sigmoid()``, ...), so
the same Python function describes the computation for both engines.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from hypothesis import strategies as st

from tinyad import Value


# --------------------------------------------------------------------------
# Running one function on both engines
# --------------------------------------------------------------------------


def run_tinyad(fn: Callable, *xs: float) -> tuple[float, list[float]]:
    """fn's value and d fn / d x_i for each input, computed by tinyad."""
    leaves = [Value(x) for x in xs]
    out = fn(*leaves)
    out.backward()
    return out.data, [leaf.grad for leaf in leaves]


def run_torch(fn: Callable, *xs: float) -> tuple[float, list[float]]:
    """fn's value and d fn / d x_i for each input, computed by torch autograd (float64)."""
    leaves = [torch.tensor(float(x), dtype=torch.float64, requires_grad=True) for x in xs]
    out = fn(*leaves)
    assert out.dtype == torch.float64
    grads = torch.autograd.grad(out, leaves, allow_unused=True)
    return out.item(), [0.0 if g is None else g.item() for g in grads]


def close(a: float, b: float, rel: float, abs_: float) -> bool:
    """math.isclose that also treats two infinities of the same sign as equal."""
    if math.isinf(a) or math.isinf(b):
        return a == b
    return math.isclose(a, b, rel_tol=rel, abs_tol=abs_)


def assert_matches_torch(fn: Callable, *xs: float, rel: float = 1e-12, abs_: float = 0.0) -> None:
    """Value and every input gradient of ``fn`` agree between tinyad and torch."""
    value, grads = run_tinyad(fn, *xs)
    expected_value, expected_grads = run_torch(fn, *xs)
    assert close(value, expected_value, rel, abs_), (
        f"value at {xs}: tinyad {value!r}, torch {expected_value!r}"
    )
    for i, (got, want) in enumerate(zip(grads, expected_grads)):
        assert close(got, want, rel, abs_), (
            f"d/dx{i} at {xs}: tinyad {got!r}, torch {want!r}"
        )


# --------------------------------------------------------------------------
# Random expression DAGs
# --------------------------------------------------------------------------
#
# An expression is a list of steps over a growing list of nodes: the inputs
# first, then one node per step. Each step extends the newest node, so an
# expression of k steps is k steps deep (up to 30); a binary step's other
# operand is drawn from *all* nodes built so far, so subexpressions are reused
# (the graph is a DAG, not a tree).
# Every op is domain-safe for any real operand; ``bound`` tracks a bound on
# |node| so that growing ops (+, -, *) are only offered while results stay
# small, which keeps finite differences accurate.

UNARY: dict[str, tuple[Callable, Callable[[float], float]]] = {
    # name: (op, bound of the result given the bound of the operand)
    "tanh": (lambda a: a.tanh(), lambda b: 1.0),
    "sigmoid": (lambda a: a.sigmoid(), lambda b: 1.0),
    "neg": (lambda a: -a, lambda b: b),
    "exp_of_tanh": (lambda a: a.tanh().exp(), lambda b: math.e),
    "log_of_sigmoid_plus_half": (lambda a: (a.sigmoid() + 0.5).log(), lambda b: 1.0),
    "sqrt_of_one_plus_square": (lambda a: (a * a + 1.0).sqrt(), lambda b: b + 1.0),
    "one_over_one_plus_square": (lambda a: 1.0 / (1.0 + a * a), lambda b: 1.0),
    "two_to_the_tanh": (lambda a: 2.0 ** a.tanh(), lambda b: 2.0),
    "tanh_plus_two_to_the_1.5": (lambda a: (a.tanh() + 2.0) ** 1.5, lambda b: 3.0 ** 1.5),
    "half_times": (lambda a: 0.5 * a, lambda b: 0.5 * b),
    "one_and_a_half_minus": (lambda a: 1.5 - a, lambda b: b + 1.5),
}

BINARY: dict[str, tuple[Callable, Callable[[float, float], float]]] = {
    "add": (lambda a, b: a + b, lambda p, q: p + q),
    "sub": (lambda a, b: a - b, lambda p, q: p + q),
    "mul": (lambda a, b: a * b, lambda p, q: p * q),
    "div_by_one_plus_square": (lambda a, b: a / (b * b + 1.0), lambda p, q: p),
    "positive_base_to_tanh": (
        lambda a, b: (a.sigmoid() + 0.5) ** b.tanh(),
        lambda p, q: 2.0,
    ),
}

MAX_BOUND = 20.0


@dataclass(frozen=True)
class Expression:
    inputs: tuple[float, ...]
    steps: tuple[tuple, ...]  # (name, operand index) or (name, index, index)

    def evaluate(self, leaves: Sequence) -> list:
        """Every node of the expression (inputs first, output last)."""
        nodes = list(leaves)
        for step in self.steps:
            name, *operands = step
            op = UNARY[name][0] if len(operands) == 1 else BINARY[name][0]
            nodes.append(op(*(nodes[i] for i in operands)))
        return nodes

    def __call__(self, *leaves):
        return self.evaluate(leaves)[-1]

    def depth(self) -> int:
        """The most steps on one path from an input to the output."""
        depths = [0] * len(self.inputs)
        for _, *operands in self.steps:
            depths.append(1 + max(depths[i] for i in operands))
        return depths[-1]

    def chain_as_second_operand(self) -> bool:
        """Whether some binary step takes the newest node as its second operand."""
        return any(len(step) == 3 and step[2] == len(self.inputs) + k - 1 and step[1] != step[2]
                   for k, step in enumerate(self.steps))

    def most_uses(self) -> int:
        """How many steps use the most-used node: 2 or more means a shared subexpression."""
        uses = [0] * (len(self.inputs) + len(self.steps))
        for _, *operands in self.steps:
            for i in set(operands):
                uses[i] += 1
        return max(uses)


@st.composite
def expressions(draw, max_inputs: int = 3, max_steps: int = 30) -> Expression:
    n_inputs = draw(st.integers(1, max_inputs))
    inputs = tuple(
        draw(st.floats(-2.0, 2.0, allow_nan=False, allow_infinity=False)) for _ in range(n_inputs)
    )
    bounds = [2.0] * n_inputs
    steps = []
    for _ in range(draw(st.integers(1, max_steps))):
        last = len(bounds) - 1
        # one operand is always the newest node, so every step lengthens one chain
        # and the output is as many steps deep as the expression is long; the other
        # operand of a binary op may be any node, which reuses them
        a = last
        if draw(st.booleans()):
            names = sorted(n for n, (_, bound) in UNARY.items() if bound(bounds[a]) <= MAX_BOUND)
            name = draw(st.sampled_from(names))
            steps.append((name, a))
            bounds.append(UNARY[name][1](bounds[a]))
        else:
            b = draw(st.integers(0, last))
            names = sorted(
                n for n, (_, bound) in BINARY.items() if bound(bounds[a], bounds[b]) <= MAX_BOUND
            )
            name = draw(st.sampled_from(names))
            if draw(st.booleans()):  # the chain as the second operand: a deep second parent
                a, b = b, a
            steps.append((name, a, b))
            bounds.append(BINARY[name][1](bounds[a], bounds[b]))
    return Expression(inputs, tuple(steps))

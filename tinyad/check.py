"""Checking gradients: against finite differences, and against your own derivation.

``gradcheck`` compares the engine's gradient with the central difference

    df/dx  ~  (f(x + eps) - f(x - eps)) / (2 eps)

whose error shrinks like eps^2 (the first-order error terms cancel), in
float64 so that rounding (about 1e-16 / eps) stays small too.

``compare`` is for the learner who derived a gradient by hand: it prints one
row ``name | exact | approximate | maxdiff | verdict`` saying whether the hand
result equals the engine's bit for bit, within floating-point tolerance, and
by how much it differs at worst. The verdict is the column to read: a hand
formula that groups the arithmetic differently from the engine is right when
it agrees "up to rounding", even though it is not bit-for-bit "exact".
``format_table`` lays many rows out as a table.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import numpy as np

from . import graph
from .graph import Node
from .scalar import Value
from .tensor import Tensor, shape_error

__all__ = [
    "gradcheck",
    "compare",
    "Comparison",
    "format_table",
    "batch_norm_backward_steps",
    "batch_norm_backward_compact",
    "batch_norm_backward_detached_stats",
    "check_batch_norm_by_hand",
]


def _fresh_leaf(original: Node, array: np.ndarray) -> Node:
    """A new float64 leaf with ``array`` as data, so the caller's grads stay untouched."""
    if isinstance(original, Tensor):
        return Tensor(array.copy(), requires_grad=True, device=original.device, label=original.label)
    return Value(float(array), label=original.label)


def _data_as_float64(node: Node) -> np.ndarray:
    if isinstance(node, Tensor):
        return np.array(node.numpy(), dtype=np.float64)
    return np.array(node.data, dtype=np.float64)


def _grad_on_host(leaf: Node) -> Any:
    """The leaf's gradient as a host (NumPy) array: a GPU tensor's is copied back."""
    if isinstance(leaf, Tensor) and leaf.grad is not None:
        return leaf.backend.to_numpy(leaf.grad)
    return leaf.grad


def _set_element(leaf: Node, index: tuple, value: float) -> None:
    if isinstance(leaf, Tensor):
        leaf.data[index] = value
    else:
        leaf.data = float(value)


def _scalar_of(output: Any) -> float:
    if isinstance(output, Tensor):
        if output.data.size != 1:
            raise ValueError(
                f"gradcheck: fn must return a single number, got a tensor of shape {output.shape}"
            )
        return float(output.item())
    if isinstance(output, Node):
        return float(output.data)
    raise TypeError(f"gradcheck: fn must return a Value or a Tensor, got {type(output).__name__}")


def gradcheck(
    fn: Callable[..., Any],
    inputs: Sequence[Node],
    eps: float = 1e-6,
    atol: float = 1e-6,
    rtol: float = 1e-4,
) -> bool:
    """Check ``fn``'s gradient with respect to every element of every input.

    ``fn(*inputs)`` must return a scalar Value or a one-element Tensor. The
    check runs on float64 copies of the inputs (their own ``.grad`` is not
    touched). An element passes when |engine - numeric| <= atol + rtol *
    |numeric|. The first failure raises AssertionError naming the input, the
    element's index and both numbers; success returns True.
    """
    originals = list(inputs)
    arrays = [_data_as_float64(node) for node in originals]
    leaves = [_fresh_leaf(node, array) for node, array in zip(originals, arrays)]
    output = fn(*leaves)
    _scalar_of(output)  # validates the shape before backward
    output.backward()
    engine_grads = [np.array(_grad_on_host(leaf), dtype=np.float64) for leaf in leaves]

    with graph.no_grad():
        for position, (leaf, array) in enumerate(zip(leaves, arrays)):
            for index in np.ndindex(array.shape):
                centre = array[index]
                _set_element(leaf, index, centre + eps)
                f_plus = _scalar_of(fn(*leaves))
                _set_element(leaf, index, centre - eps)
                f_minus = _scalar_of(fn(*leaves))
                _set_element(leaf, index, centre)
                numeric = (f_plus - f_minus) / (2.0 * eps)
                engine = float(engine_grads[position][index])
                if not abs(engine - numeric) <= atol + rtol * abs(numeric):
                    name = f" ({leaf.label!r})" if leaf.label else ""
                    where = f" at index {index}" if index else ""
                    raise AssertionError(
                        f"gradcheck: gradient of input {position}{name}{where} is wrong: "
                        f"engine {engine!r}, finite differences {numeric!r} "
                        f"(difference {abs(engine - numeric):.3g} > atol {atol} + rtol {rtol} * |numeric|)"
                    )
    return True


class Comparison(NamedTuple):
    """One row of a hand-derivation check, as ``compare`` returns it (a named tuple).

    ``name`` what was compared; ``exact`` True when the two are equal in every
    bit; ``approximate`` True when they are equal within the tolerances;
    ``maxdiff`` the largest absolute difference between them.
    """

    name: str
    exact: bool
    approximate: bool
    maxdiff: float

    @property
    def verdict(self) -> str:
        """What the row means: "agrees" (bit for bit or up to rounding) or "DIFFERS"."""
        if self.exact:
            return "agrees, bit for bit"
        if self.approximate:
            return "agrees up to rounding"  # not exact, and still right
        return "DIFFERS"

    def __str__(self) -> str:
        return (
            f"{self.name:15s} | exact: {str(self.exact):5s} | "
            f"approximate: {str(self.approximate):5s} | maxdiff: {self.maxdiff:.3g} | {self.verdict}"
        )


def _as_array(thing: Any) -> np.ndarray:
    if isinstance(thing, Node):
        thing = thing.grad
        if thing is None:
            raise ValueError("compare: the node has no gradient yet; call backward() first")
    if hasattr(thing, "get") and not isinstance(thing, (np.ndarray, dict)):
        thing = thing.get()  # a CuPy array: bring it to the host
    return np.asarray(thing, dtype=np.float64)


def compare(name: str, expected: Any, actual: Any, *, rtol: float = 1e-5, atol: float = 1e-8,
            show: bool = True) -> Comparison:
    """Compare a hand-derived ``expected`` gradient with the engine's ``actual``.

    ``actual`` may be a number, an array, or a Value/Tensor (its ``.grad`` is
    used). *exact* means equal in every bit; *approximate* means equal within
    ``rtol``/``atol`` (numpy.allclose), which is what to expect when the hand
    formula groups the arithmetic differently from the engine. The row is
    printed unless ``show=False``, and returned.
    """
    expected_array = _as_array(expected)
    actual_array = _as_array(actual)
    if expected_array.shape != actual_array.shape:
        raise shape_error(f"compare {name!r}", expected_array.shape, actual_array.shape, why="differ (expected, actual)")
    difference = np.abs(expected_array - actual_array)
    row = Comparison(
        name=name,
        exact=bool(np.array_equal(expected_array, actual_array)),
        approximate=bool(np.allclose(expected_array, actual_array, rtol=rtol, atol=atol)),
        maxdiff=float(difference.max()) if difference.size else 0.0,
    )
    if show:
        print(row)
    return row


def format_table(rows: Sequence[Comparison]) -> str:
    """Lay out comparison rows as an aligned text table with a header.

    The last column, verdict, says whether each row agrees with the engine;
    "exact: False" next to "agrees up to rounding" is not a failure.
    """
    header = ("name", "exact", "approximate", "maxdiff", "verdict")
    cells = [header] + [(r.name, str(r.exact), str(r.approximate), f"{r.maxdiff:.3g}", r.verdict) for r in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(header))]
    lines = [" | ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in cells]
    lines.insert(1, "-+-".join("-" * width for width in widths))
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# BatchNorm by hand
# ---------------------------------------------------------------------------
#
# Notation, per feature (column) j of an (m, D) batch x:
#   mu = (1/m) sum_i x_i            var = (1/m) sum_i (x_i - mu)^2
#   inv_std = (var + eps)^(-1/2)    x_hat_i = (x_i - mu) * inv_std
#   y_i = gamma * x_hat_i + beta    dy_i = dL/dy_i (given)


def batch_norm_backward_steps(x: np.ndarray, gamma: np.ndarray, dy: np.ndarray, eps: float = 1e-5) -> dict:
    """The paper's chain rule, one intermediate at a time (Ioffe & Szegedy, Section 3).

    Returns dL/dx_hat, dL/dvar, dL/dmean, dL/dx, dL/dgamma, dL/dbeta for a
    2-D NumPy batch ``x`` of shape (m, D), ``gamma`` of shape (D,) and
    dL/dy = ``dy`` of the shape of ``x``, as a dict with the keys ``"x_hat"``,
    ``"batch_var"``, ``"batch_mean"``, ``"x"``, ``"gamma"`` and ``"beta"``
    (the node labels of the BatchNorm graph). ``docs/derivation.md`` writes
    each step out as a formula.
    """
    x, gamma, dy = (np.asarray(a, dtype=np.float64) for a in (x, gamma, dy))
    m = x.shape[0]
    mu = x.mean(axis=0, keepdims=True)
    centered = x - mu
    var = (centered**2).mean(axis=0, keepdims=True)
    inv_std = (var + eps) ** -0.5
    x_hat = centered * inv_std
    # y = gamma * x_hat + beta
    d_x_hat = dy * gamma
    # var enters every x_hat_i through inv_std:  d inv_std / d var = -1/2 (var + eps)^(-3/2)
    d_var = (d_x_hat * centered).sum(axis=0, keepdims=True) * -0.5 * (var + eps) ** -1.5
    # mu enters every x_hat_i directly (-inv_std) and var through every (x_i - mu)^2
    d_mean = (d_x_hat * -inv_std).sum(axis=0, keepdims=True) + d_var * (-2.0 * centered).mean(axis=0, keepdims=True)
    # x_i reaches L three ways: its own x_hat_i, var, and mu
    d_x = d_x_hat * inv_std + d_var * 2.0 * centered / m + d_mean / m
    return {
        "x_hat": d_x_hat,
        "batch_var": d_var,
        "batch_mean": d_mean,
        "x": d_x,
        "gamma": (dy * x_hat).sum(axis=0),
        "beta": dy.sum(axis=0),
    }


def batch_norm_backward_compact(x: np.ndarray, gamma: np.ndarray, dy: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    """dL/dx in one line: substitute d_var and d_mean into d_x and simplify.

        dx = gamma * inv_std / m * (m * dy - sum(dy) - x_hat * sum(dy * x_hat))

    (the d_var * sum(x_i - mu) term vanishes because centred values sum to 0).
    """
    x, gamma, dy = (np.asarray(a, dtype=np.float64) for a in (x, gamma, dy))
    m = x.shape[0]
    mu = x.mean(axis=0, keepdims=True)
    inv_std = (((x - mu) ** 2).mean(axis=0, keepdims=True) + eps) ** -0.5
    x_hat = (x - mu) * inv_std
    return gamma * inv_std / m * (m * dy - dy.sum(axis=0) - x_hat * (dy * x_hat).sum(axis=0))


def batch_norm_backward_detached_stats(x: np.ndarray, gamma: np.ndarray, dy: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    """dL/dx when the batch mean and variance are treated as constants.

    Only the direct route is left: dx = dy * gamma * inv_std. The gradient no
    longer "knows" that moving x moves the statistics (the paper's Section 2).
    """
    x, gamma, dy = (np.asarray(a, dtype=np.float64) for a in (x, gamma, dy))
    mu = x.mean(axis=0, keepdims=True)
    inv_std = (((x - mu) ** 2).mean(axis=0, keepdims=True) + eps) ** -0.5
    return dy * gamma * inv_std


def check_batch_norm_by_hand(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, dy: np.ndarray | None = None,
                             eps: float = 1e-5, show: bool = True) -> list[Comparison]:
    """Build the BatchNorm graph on ``x`` and compare every hand gradient with the engine's.

    ``x`` is an (m, D) NumPy batch, ``gamma`` and ``beta`` have shape (D,).
    The graph is ``tinyad.nn.functional.batch_norm`` in training mode, and
    the loss is L = sum(dy * y) so that dL/dy = dy (random if not given).
    Each hand gradient of ``batch_norm_backward_steps`` is compared with the
    ``.grad`` of the graph node of the same label (``x_hat``, ``batch_var``,
    ...). Prints a table (unless ``show=False``) and returns its rows.
    """
    from .graph import find
    from .nn.functional import batch_norm

    x = np.asarray(x, dtype=np.float64)
    if dy is None:
        dy = np.random.default_rng(0).normal(size=x.shape)
    x_node = Tensor(x, requires_grad=True, label="x")
    gamma_node = Tensor(gamma, requires_grad=True, label="gamma")
    beta_node = Tensor(beta, requires_grad=True, label="beta")
    y = batch_norm(x_node, None, None, gamma_node, beta_node, training=True, eps=eps)
    (y * Tensor(dy)).sum().backward()
    hand = batch_norm_backward_steps(x, gamma, dy, eps)
    engine = {
        "x_hat": find(y, "x_hat").grad,
        "batch_var": find(y, "batch_var").grad,
        "batch_mean": find(y, "batch_mean").grad,
        "x": x_node.grad,
        "gamma": gamma_node.grad,
        "beta": beta_node.grad,
    }
    rows = [compare(f"d{name}", hand[name], engine[name], show=False) for name in hand]
    rows.append(compare("dx (compact)", batch_norm_backward_compact(x, gamma, dy, eps), x_node.grad, show=False))
    if show:
        print(format_table(rows))
    return rows

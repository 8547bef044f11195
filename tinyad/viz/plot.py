"""The route plot: for every sample, the three parts of dL/dx_i, for any batch size.

A graph drawing is readable up to a handful of samples. The route plot shows
the same numbers for 256: one diverging stacked bar per sample, the positive
parts stacked up from 0 and the negative ones down, in the routes' colours
(own x_hat, batch variance, batch mean), with a black mark at dL/dx_i, their
sum. Sorted by the sample's value, the picture shows BatchNorm's backward
formula at a glance: the mean route is the same for every sample
(dL/dmean / m), the variance route is a straight line in x_i
(dL/dvar * 2 (x_i - mean) / m), and only the own-x_hat route differs from
sample to sample.

Every number is the engine's: the contributions come from restricted
backward passes from each statistic (``routes``), never from the formula.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from ..graph import Node, topological_order
from .drawing import OTHER_ROUTE_COLOURS, ROLE_COLOURS
from .routes import name_of, node_list, role_of, route_shares, statistics_of

__all__ = ["route_table", "plot_routes"]


def _as_numbers(value: Any, count: int, feature: int):
    import numpy as np

    if value is None:
        return np.zeros(count)
    if hasattr(value, "get") and not hasattr(value, "__array_interface__"):
        value = value.get()  # CuPy
    array = np.asarray(value, dtype=float)
    if array.ndim == 0:
        return np.full(count, float(array))
    array = array.reshape(array.shape[0], -1)
    return array[:, feature]


def route_table(x: Node | Sequence[Node], root: Node, through: Sequence[Node] | None = None,
                feature: int = 0) -> dict[str, Any]:
    """Per sample, each route's contribution to dL/dx_i, as NumPy arrays.

    ``x`` is either a list of scalar samples (the leaves of a
    ``batch_norm_scalar`` graph) or one Tensor whose rows are the samples
    (the input of a BatchNorm layer); for a Tensor, ``feature`` picks the
    column (for an (N, C, H, W) input the flattened index over C, H, W).
    ``through`` defaults to the BatchNorm statistics the samples feed.
    Returns ``{route name: values, ..., "other": values, "total": dL/dx_i,
    "value": x_i}``, each of length N; the routes, "other" included, add up
    to "total".
    """
    import numpy as np

    root_nodes = node_list(root, "route_table: root")
    if len(root_nodes) != 1:
        raise ValueError("route_table: root must be one node")
    root = root_nodes[0]
    samples = node_list(x, "route_table: x")
    order = topological_order(root)
    in_graph = {id(node) for node in order}
    for sample in samples:
        if id(sample) not in in_graph:
            raise ValueError(f"route_table: {name_of(sample)!r} is not in the graph under {name_of(root)!r}")
        if sample.grad is None:
            raise ValueError(f"route_table: {name_of(sample)!r} has no gradient: call backward() on the root first")
    if root.parents and root.messages is None:
        raise ValueError("route_table: call backward() on the root first")
    one_tensor = len(samples) == 1 and getattr(samples[0].data, "ndim", 0) >= 1
    count = samples[0].data.shape[0] if one_tensor else len(samples)
    if one_tensor:
        width = int(np.prod(samples[0].data.shape[1:], dtype=int))
        if not 0 <= feature < width:
            raise ValueError(f"route_table: feature must be in [0, {width - 1}] for input shape {samples[0].data.shape}, "
                             f"got {feature}")
    if through is None:
        statistics: list[Node] = []
        for sample in samples:
            for node in statistics_of(sample, root, order):
                if all(node is not other for other in statistics):
                    statistics.append(node)
    else:
        statistics = [n for n in node_list(through, "route_table: through") if all(n is not s for s in samples)]
    groups: dict[str, list[Node]] = {}
    for node in statistics:
        groups.setdefault(role_of(node) or name_of(node), []).append(node)
    cut = {id(node) for node in statistics}

    def per_sample(values_of: dict[int, Any]):
        if one_tensor:
            return _as_numbers(values_of.get(id(samples[0])), count, feature)
        return np.array([float(np.sum(values_of.get(id(s), 0.0))) for s in samples])

    table: dict[str, Any] = {}
    for name, nodes in groups.items():
        table[name] = per_sample(route_shares(order, nodes, samples, cut).arrived)
    total = per_sample({id(s): s.grad for s in samples})
    table["other"] = total - sum(table.values(), np.zeros(count))
    table["total"] = total
    table["value"] = per_sample({id(s): s.data for s in samples})
    return table


def plot_routes(x: Node | Sequence[Node], root: Node, path: str | Path | None = None,
                through: Sequence[Node] | None = None, feature: int = 0, title: str = "",
                sort: bool = True):
    """Draw ``route_table`` as diverging stacked bars, one per sample; returns the figure.

    With ``path`` the figure is also saved there (any format matplotlib
    writes: .png, .svg, .pdf) and closed. ``sort=True`` orders the samples
    by their value x_i, which makes the variance route a straight line.
    """
    try:
        import matplotlib
    except ImportError as error:
        raise ImportError(
            "plot_routes draws with matplotlib, which is not installed: pip install matplotlib "
            '(or the lessons extra, pip install ".[lessons]")'
        ) from error

    if path is not None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import numpy as np

    table = route_table(x, root, through, feature)
    count = len(table["total"])
    order = np.argsort(table["value"], kind="stable") if sort else np.arange(count)
    names = [name for name in table if name not in ("total", "value", "other")]
    if np.max(np.abs(table["other"])) > 1e-9 * max(1.0, float(np.max(np.abs(table["total"])))):
        names.append("other")
    colours = {}
    extra = iter(OTHER_ROUTE_COLOURS)
    for name in names:
        colours[name] = ROLE_COLOURS.get(name) or ("#999999" if name == "other" else next(extra, "#777777"))
    width_inches = min(12.0, max(6.4, 4.0 + 0.06 * count))
    figure, axis = plt.subplots(figsize=(width_inches, 4.5))
    positions = np.arange(count)
    up = np.zeros(count)
    down = np.zeros(count)
    bar_width = 0.8 if count <= 64 else 1.0
    for name in names:
        values = table[name][order]
        positive, negative = np.clip(values, 0, None), np.clip(values, None, 0)
        label = f"via {name}" if name != "other" else "other paths"
        axis.bar(positions, positive, bar_width, bottom=up, color=colours[name], label=label, linewidth=0)
        axis.bar(positions, negative, bar_width, bottom=down, color=colours[name], linewidth=0)
        up += positive
        down += negative
    marker_size = 16 if count <= 64 else 6
    axis.scatter(positions, table["total"][order], color="black", s=marker_size, zorder=3,
                 label="dL/dx_i (the sum)")
    axis.axhline(0, color="#555555", linewidth=0.6)
    axis.set_xlim(-0.7, count - 0.3)
    axis.set_xlabel(f"the {count} samples, in order of x_i" if sort else f"sample i ({count} samples)")
    axis.set_ylabel("contribution to dL/dx_i")
    if count <= 32:
        axis.set_xticks(positions, [str(i) for i in order], fontsize=8)
    axis.set_title(title or "BatchNorm's backward pass: the three routes of dL/dx_i, per sample", fontsize=10)
    # the legend in one row under the axis, where it covers no bar
    axis.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=len(names) + 1, frameon=False)
    figure.tight_layout()
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=120)
        plt.close(figure)
    return figure

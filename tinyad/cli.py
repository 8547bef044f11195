"""The ``tinyad`` command (also ``python -m tinyad``).

    tinyad graph batchnorm --samples 4 --every-sample -o bn.png   (every sample's routes)
    tinyad graph batchnorm --samples 4 --highlight 2 -o bn.svg    (the routes of one sample)
    tinyad graph expr "tanh(w*x + b)" --values w=-3 x=2 b=6.9 -o neuron.png
    tinyad graph expr "..." -o backward.html      (an animation of the backward pass)
    tinyad graph batchnorm --every-sample -o bn.html              (a page: click a sample, step backward)
    tinyad routes batchnorm --samples 64 -o routes.png            (route plot, any batch size)
    tinyad routes mlp --feature 0 -o mlp_routes.png               (a BatchNorm layer in a trained MLP)
    tinyad lessons                                (list the lessons)
    tinyad lesson 7 [--quick ...]                 (run one; tinyad lesson 7 --help shows its options)
    tinyad notebook 7 [--quick ...]               (write it as 07_batchnorm_backward.ipynb)

Expressions are parsed with Python's ``ast`` and only numbers, variable
names, + - * / **, unary minus and the functions exp, log, tanh, sigmoid,
relu, sqrt, abs are accepted; nothing is passed to ``eval``. Numbers are
floats, bounded in size (``MAX_NUMBER``), powers have a constant exponent of
at most ``MAX_EXPONENT``, and an expression is at most ``MAX_EXPRESSION``
characters and ``MAX_DEPTH`` levels deep, so no input can make the command
hang or overflow. Every error is one line, ``tinyad: <option>: <what to do>``.
"""
from __future__ import annotations

import argparse
import ast
import math
import random
import re
import runpy
import sys
from pathlib import Path
from typing import Any, NoReturn, Sequence

from . import notebooks, viz
from .graph import find, topological_order
from .nn.functional import batch_norm_scalar
from .scalar import Value

FUNCTIONS = ("exp", "log", "tanh", "sigmoid", "relu", "sqrt", "abs")
MAX_NUMBER = 1e12      # largest constant or --values number
MAX_EXPONENT = 64      # largest |n| in x ** n
MAX_EXPRESSION = 1000  # characters
MAX_DEPTH = 100        # nesting of operations
MAX_SAMPLES = 256      # graph batchnorm draws at most this many samples; routes plots up to this many
GRAPH_SUFFIXES = (".svg", ".png", ".pdf", ".dot", ".html")
PLOT_SUFFIXES = (".png", ".svg", ".pdf")
_OPERATORS = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.Pow: lambda a, b: a**b,
}


class CommandError(ValueError):
    """A user error: printed as one line ``tinyad: <message>``, exit status 2."""


def _number(text: str, what: str) -> float:
    """A finite float of at most MAX_NUMBER in size, or a CommandError naming ``what``."""
    try:
        value = float(text)
    except (ValueError, OverflowError):
        raise CommandError(f"{what}: {text[:40]!r} is not a number") from None
    if not math.isfinite(value) or abs(value) > MAX_NUMBER:
        raise CommandError(f"{what}: {text[:40]!r} is out of range: numbers must be finite and at most {MAX_NUMBER:g} "
                           "in size")
    return value


def _depth_and_size(tree: ast.AST) -> tuple[int, int]:
    """The nesting depth and the number of nodes of ``tree``, without recursion."""
    deepest, count = 0, 0
    stack = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        count += 1
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return deepest, count


def parse_expression(text: str, values: dict[str, float]) -> Value:
    """Build the Value graph of ``text`` with the given variable values (no eval).

    Raises ValueError (a CommandError) for anything but bounded arithmetic:
    see the module docstring for the limits.
    """
    if len(text) > MAX_EXPRESSION:
        raise CommandError(f"expression: {len(text)} characters, at most {MAX_EXPRESSION} are accepted")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as error:
        raise CommandError(f"expression: cannot parse {viz.clean(text)!r}: {error.msg}") from None
    except (ValueError, RecursionError, MemoryError):  # a NUL byte; nesting too deep for the parser
        raise CommandError(f"expression: cannot parse {viz.clean(text)!r}") from None
    depth, size = _depth_and_size(tree)
    if depth > MAX_DEPTH:
        raise CommandError(f"expression: nested {depth} levels deep, at most {MAX_DEPTH} are accepted")
    variables = {name: Value(value, label=name) for name, value in values.items()}

    def shown(node: ast.AST) -> str:
        return viz.clean(ast.unparse(node), limit=60)

    def build(node: ast.AST) -> Value | float:
        if isinstance(node, ast.Expression):
            return build(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            return _number(str(node.value) if isinstance(node.value, float) else _int_text(node.value), "expression")
        if isinstance(node, ast.Name):
            if node.id not in variables:
                raise CommandError(f"expression: no value given for {node.id!r}: add --values {node.id}=NUMBER")
            return variables[node.id]
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            left, right = build(node.left), build(node.right)
            if isinstance(node.op, ast.Pow):
                if isinstance(right, Value):
                    raise CommandError(f"expression: in {shown(node)!r} the exponent must be a number, not a variable")
                if abs(right) > MAX_EXPONENT:
                    raise CommandError(f"expression: in {shown(node)!r} the exponent is {right:g}; "
                                       f"at most {MAX_EXPONENT} in size is accepted")
            return _checked(lambda: _OPERATORS[type(node.op)](left, right), shown(node))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            operand = build(node.operand)
            return -operand if isinstance(node.op, ast.USub) else operand
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS
                and len(node.args) == 1 and not node.keywords):
            argument = build(node.args[0])
            if not isinstance(argument, Value):
                argument = Value(argument)
            return _checked(lambda: getattr(argument, node.func.id)(), shown(node))
        raise CommandError(
            f"expression: {shown(node)!r} is not allowed: use numbers, names, + - * / **, "
            f"unary -, and {', '.join(FUNCTIONS)}"
        )

    result = build(tree)
    if not isinstance(result, Value):
        result = Value(result)
    return result


def _int_text(value: int) -> str:
    # str() of an int with more than 4300 digits raises ValueError; anything that long is out of range anyway
    return str(value) if value.bit_length() < 1000 else "1e999"


def _checked(compute, shown: str) -> Value | float:
    """Run one operation; a division by zero, an overflow or a domain error becomes one clear line."""
    try:
        result = compute()
    except ZeroDivisionError:
        raise CommandError(f"expression: {shown!r} divides by zero") from None
    except OverflowError:
        raise CommandError(f"expression: {shown!r} overflows a float") from None
    except ValueError as error:
        raise CommandError(f"expression: {shown!r}: {error}") from None
    data = result.data if isinstance(result, Value) else result
    if isinstance(data, complex) or not math.isfinite(data):
        raise CommandError(f"expression: {shown!r} is {data}, not a finite real number")
    return result


def _parse_values(pairs: Sequence[str]) -> dict[str, float]:
    values = {}
    for pair in pairs:
        for item in filter(None, pair.split(",")):
            name, _, number = item.partition("=")
            if not name.isidentifier() or not number:
                raise CommandError(f"--values: expected NAME=NUMBER, got {viz.clean(item, limit=40)!r}")
            values[name] = _number(number, f"--values {name}")
    return values


def batchnorm_graph(samples: int, features: int, seed: int = 0):
    """A scalar BatchNorm graph with a weighted loss, after backward.

    Returns (loss, inputs[sample][feature]). The loss weighs the outputs
    differently (L = sum_i w_i y_i): with equal weights every input gradient
    would be 0, because BatchNorm's outputs always sum to N * beta.
    """
    rng = random.Random(seed)
    inputs = [[Value(round(rng.gauss(1.0, 2.0), 2), label=f"x[{i},{j}]") for j in range(features)] for i in range(samples)]
    gamma = [Value(1.5, label=f"gamma[{j}]") for j in range(features)]
    beta = [Value(0.2, label=f"beta[{j}]") for j in range(features)]
    outputs = batch_norm_scalar(inputs, gamma, beta)
    loss = Value(0.0)
    for row in outputs:
        for y in row:
            loss = loss + round(rng.uniform(-2.0, 2.0), 2) * y
    loss.label = "L"
    loss.backward()
    return loss, inputs


def trained_mlp_batch(samples: int = 64, steps: int = 200, seed: int = 0):
    """A small MLP with a BatchNorm layer, trained on two moons; one batch after backward.

    Linear(2, 16) -> BatchNorm1d(16) -> ReLU -> Linear(16, 2), trained with
    Adam for ``steps`` steps, then one more batch of ``samples`` points runs
    forward and backward. Returns (loss, bn_input): ``bn_input`` is the
    Tensor entering the BatchNorm layer, whose gradient ``route_table``
    splits.
    """
    import numpy as np

    from . import nn, optim
    from .nn.functional import cross_entropy
    from .nn.init import manual_seed
    from .tensor import Tensor

    manual_seed(seed)
    rng = np.random.default_rng(seed)

    def moons(count: int):
        labels = rng.integers(0, 2, size=count)
        angle = rng.uniform(0, np.pi, size=count)
        points = np.stack([np.cos(angle), np.sin(angle)], axis=1)
        points[labels == 1] = points[labels == 1] * [1, -1] + [1.0, 0.5]
        return points + rng.normal(scale=0.15, size=points.shape), labels

    first, batch_norm, rest = nn.Linear(2, 16), nn.BatchNorm1d(16), nn.Sequential(nn.ReLU(), nn.Linear(16, 2))
    parameters = first.parameters() + batch_norm.parameters() + rest.parameters()
    optimizer = optim.Adam(parameters, lr=0.01)
    for _ in range(steps):
        points, labels = moons(32)
        loss = cross_entropy(rest(batch_norm(first(Tensor(points)))), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    points, labels = moons(samples)
    bn_input = first(Tensor(points))
    bn_input.label = "bn_input"
    loss = cross_entropy(rest(batch_norm(bn_input)), labels)
    loss.backward()
    return loss, bn_input


# ---------------------------------------------------------------------------
# the commands
# ---------------------------------------------------------------------------


def _output_path(text: str, suffixes: Sequence[str]) -> Path:
    """The -o path, checked before anything is computed or written."""
    path = Path(text)
    if path.suffix.lower() not in suffixes:
        raise CommandError(f"-o: {viz.clean(text, limit=80)!r} has the suffix {path.suffix or '(none)'!r}; "
                           f"use one of {', '.join(suffixes)}")
    if path.is_dir():
        raise CommandError(f"-o: {viz.clean(text, limit=80)!r} is a folder; name a file")
    return path


def _write_graph(root: Value, output: Path, **options: Any) -> None:
    """Write exactly ``output``: the picture, the DOT text, or the animation page."""
    if output.suffix.lower() == ".html":
        if options.pop("every_sample", False):
            options.pop("highlight", None)
            options.pop("through", None)
            print(f"wrote {viz.explore(root, output, **options)}")
        else:
            print(f"wrote {viz.animate(root, output, **options)}")
        return
    options.pop("every_sample", None)
    drawing = viz.draw(root, **options)
    if output.suffix.lower() == ".dot":
        print(f"wrote {drawing.render(output)}")
        return
    try:
        picture = viz.render_bytes(drawing.source, output.suffix.lower().lstrip("."))
    except viz.RendererMissing as missing:
        raise CommandError(f"-o: cannot draw {output.name}: {missing}; or ask for the DOT text "
                           f"with -o {output.with_suffix('.dot').name}") from None
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(picture)
    print(f"wrote {output}")


def _check_samples(args: argparse.Namespace, command: str) -> None:
    if not 2 <= args.samples <= MAX_SAMPLES:
        raise CommandError(f"--samples: {command} needs between 2 and {MAX_SAMPLES} samples "
                           f"(BatchNorm needs a batch), got {args.samples}")
    if not 1 <= args.features <= 16:
        raise CommandError(f"--features: between 1 and 16, got {args.features}")


def _graph_command(args: argparse.Namespace) -> int:
    output = _output_path(args.output, GRAPH_SUFFIXES)
    if args.max_nodes < 1:
        raise CommandError(f"--max-nodes: must be at least 1, got {args.max_nodes}")
    options = {"max_nodes": args.max_nodes, "collapse": tuple(args.collapse)}
    if args.kind == "batchnorm":
        _check_samples(args, "graph batchnorm")
        if not 0 <= args.highlight < args.samples:
            raise CommandError(f"--highlight: a sample index in [0, {args.samples - 1}], got {args.highlight}")
        loss, inputs = batchnorm_graph(args.samples, args.features, args.seed)
        if args.every_sample:
            samples = [row[j] for row in inputs for j in range(args.features)]
            print(f"every sample's routes, {args.samples} samples x {args.features} features:")
            for sample in samples:
                parts = viz.routes(sample, loss)
                print(f"  {sample.label}: " + "  ".join(f"{k} {v:.6g}" for k, v in parts.items() if k != "other")
                      + f"  = {sample.grad:.6g}")
            title = f"BatchNorm over {args.samples} samples: the gradient reaches every sample"
            _write_graph(loss, output, highlight=samples, title=title, rankdir="BT", every_sample=True, **options)
            return 0
        sample = inputs[args.highlight][0]
        through = [find(loss, f"x_hat[{args.highlight},0]"), find(loss, "batch_var[0]"), find(loss, "batch_mean[0]")]
        for name, value in viz.routes(sample, loss, through).items():
            print(f"route via {name}: {value:.6g}")
        print(f"sum of routes = {sample.label}.grad = {sample.grad:.6g}")
        title = f"BatchNorm over {args.samples} samples: the routes of dL/d{sample.label}"
        _write_graph(loss, output, highlight=sample, through=through, title=title, rankdir="BT", **options)
        return 0
    if not args.expression:
        raise CommandError('expression: give one, e.g. tinyad graph expr "tanh(w*x + b)" --values w=-3,x=2,b=6.9')
    root = parse_expression(args.expression, _parse_values(args.values))
    root.backward()
    print(f"{viz.clean(args.expression, limit=200)} = {root.data:.6g}")
    for node in topological_order(root):
        if node.label and not node.parents:
            print(f"d/d{node.label} = {node.grad:.6g}")
    _write_graph(root, output, title=args.expression, **options)
    return 0


def _routes_command(args: argparse.Namespace) -> int:
    output = _output_path(args.output, PLOT_SUFFIXES)
    if args.kind == "batchnorm":
        _check_samples(args, "routes batchnorm")
        loss, inputs = batchnorm_graph(args.samples, 1, args.seed)
        samples = [row[0] for row in inputs]
        title = f"BatchNorm over {args.samples} scalar samples: the three routes of dL/dx_i"
        viz.plot_routes(samples, loss, output, title=title)
    else:
        if not 2 <= args.samples <= MAX_SAMPLES:
            raise CommandError(f"--samples: between 2 and {MAX_SAMPLES}, got {args.samples}")
        if args.feature is not None and not 0 <= args.feature < 16:
            raise CommandError(f"--feature: a feature of the BatchNorm layer, in [0, 15], got {args.feature}")
        if not 0 <= args.steps <= 10_000:
            raise CommandError(f"--steps: between 0 and 10000, got {args.steps}")
        loss, bn_input = trained_mlp_batch(args.samples, args.steps, args.seed)
        feature = args.feature
        if feature is None:  # the feature where the batch statistics' routes are largest
            def batch_share(j: int) -> float:
                table = viz.route_table(bn_input, loss, feature=j)
                return float(abs(table["batch variance"]).sum() + abs(table["batch mean"]).sum())
            feature = max(range(16), key=batch_share)
            print(f"feature {feature}: the one whose batch-mean and batch-variance routes are largest")
        title = f"BatchNorm1d in an MLP trained {args.steps} steps: routes of dL/dx_i, feature {feature}"
        viz.plot_routes(bn_input, loss, output, feature=feature, title=title)
    print(f"wrote {output}")
    return 0


def lessons_folder() -> Path:
    """Where the lessons are: ./lessons, or the checkout tinyad was installed from."""
    for folder in (Path.cwd() / "lessons", Path(__file__).resolve().parent.parent / "lessons"):
        if folder.is_dir() and any(folder.glob("[0-9][0-9]_*.py")):
            return folder
    raise CommandError(
        "lesson: no lessons/ folder found: the lessons are scripts in a checkout of tinyad; "
        "run this command from the repository root"
    )


def list_lessons() -> list[tuple[int, str, Path]]:
    found = []
    for path in sorted(lessons_folder().glob("[0-9][0-9]_*.py")):
        number = int(path.name[:2])
        first_line = ""
        text = path.read_text(encoding="utf-8")
        match = re.search(r'"""(.*?)\n', text)
        if match:
            first_line = match.group(1).strip()
        found.append((number, first_line, path))
    return found


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors raised (and printed by main as one line) instead of usage and exit."""

    def error(self, message: str) -> NoReturn:
        raise CommandError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tinyad", description="tinyad: draw gradient graphs and run the lessons")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    graph = commands.add_parser("graph", help="draw a graph (.svg, .png, .pdf, .dot, or .html for an animation)")
    graph.add_argument("kind", choices=["batchnorm", "expr"])
    graph.add_argument("expression", nargs="?", help="for expr: the expression, e.g. 'tanh(w*x + b)'")
    graph.add_argument("--values", nargs="*", default=[], help="for expr: NAME=NUMBER pairs")
    graph.add_argument("--samples", type=int, default=4, help=f"for batchnorm: the batch size (2 to {MAX_SAMPLES})")
    graph.add_argument("--features", type=int, default=1)
    graph.add_argument("--highlight", type=int, default=0, help="the sample whose gradient routes are coloured")
    graph.add_argument("--every-sample", action="store_true",
                       help="colour every sample's routes (own x_hat, batch variance, batch mean)")
    graph.add_argument("--collapse", nargs="+", default=[], metavar="PREFIX",
                       help="draw the nodes whose label starts with PREFIX as one box (for big graphs)")
    graph.add_argument("--seed", type=int, default=0)
    graph.add_argument("--max-nodes", type=int, default=400)
    graph.add_argument("-o", "--output", default="graph.svg")
    routes = commands.add_parser("routes", help="plot each sample's gradient routes through BatchNorm (.png, .svg, .pdf)")
    routes.add_argument("kind", choices=["batchnorm", "mlp"],
                        help="batchnorm: scalar BatchNorm with a weighted loss; mlp: a BatchNorm1d in a trained MLP")
    routes.add_argument("--samples", type=int, default=64, help=f"the batch size (2 to {MAX_SAMPLES})")
    routes.add_argument("--feature", type=int, default=None,
                        help="for mlp: which of the 16 BatchNorm features (default: the one with the largest "
                             "batch-statistics routes)")
    routes.add_argument("--steps", type=int, default=200, help="for mlp: training steps before the plotted batch")
    routes.add_argument("--seed", type=int, default=0)
    routes.add_argument("-o", "--output", default="routes.png")
    routes.set_defaults(features=1)
    commands.add_parser("lessons", help="list the lessons")
    lesson = commands.add_parser("lesson", help="run lesson N (tinyad lesson N --help shows its options)",
                                 add_help=False)
    lesson.add_argument("number", type=int)
    lesson.add_argument("lesson_arguments", nargs=argparse.REMAINDER, help="passed to the lesson")
    notebooks.add_command(commands)  # tinyad notebook N
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    try:
        if arguments[:1] == ["lesson"] and (len(arguments) == 1 or arguments[1] in ("-h", "--help")):
            print("usage: tinyad lesson N [options of the lesson]\n\nRun lesson N; `tinyad lessons` lists them "
                  "and `tinyad lesson N --help` shows the options of lesson N.")
            return 0
        args = build_parser().parse_args(arguments)
        if args.command == "graph":
            return _graph_command(args)
        if args.command == "routes":
            return _routes_command(args)
        if args.command == "notebook":
            return notebooks.run_command(args)
        if args.command == "lessons":
            for number, summary, path in list_lessons():
                print(f"{number:2d}  {summary}  ({path.name})")
            return 0
        lessons = {number: path for number, _, path in list_lessons()}
        if args.number not in lessons:
            raise CommandError(f"lesson: no lesson {args.number}; `tinyad lessons` lists {sorted(lessons)}")
        saved_argv = sys.argv
        sys.argv = [str(lessons[args.number])] + list(args.lesson_arguments)
        try:
            runpy.run_path(str(lessons[args.number]), run_name="__main__")
        except SystemExit as done:  # the lesson's --help, or its own argument error
            return done.code if isinstance(done.code, int) else (0 if done.code is None else 2)
        finally:
            sys.argv = saved_argv
        return 0
    except CommandError as error:
        print(f"tinyad: {viz.clean(error, limit=400)}", file=sys.stderr)
        return 2
    except (ValueError, OSError) as error:  # from the engine or the file system: still one line
        print(f"tinyad: {viz.clean(error, limit=400)}", file=sys.stderr)
        return 2
    except SystemExit as done:  # argparse's --help
        return done.code if isinstance(done.code, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

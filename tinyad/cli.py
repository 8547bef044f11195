"""The ``tinyad`` command (also ``python -m tinyad``).

    tinyad graph batchnorm --samples 4 --features 1 --highlight 2 -o bn.svg
    tinyad graph expr "tanh(w*x + b)" --values w=-3 x=2 b=6.9 -o neuron.png
    tinyad graph expr "..." -o backward.html      (an animation of the backward pass)
    tinyad lessons                                (list the lessons)
    tinyad lesson 7 [--quick ...]                 (run one)

Expressions are parsed with Python's ``ast`` and only numbers, variable
names, + - * / **, unary minus and the functions exp, log, tanh, sigmoid,
relu, sqrt, abs are accepted; nothing is passed to ``eval``.
"""
from __future__ import annotations

import argparse
import ast
import random
import re
import runpy
import sys
from pathlib import Path
from typing import Sequence

from . import viz
from .graph import find, topological_order
from .nn.functional import batch_norm_scalar
from .scalar import Value

FUNCTIONS = ("exp", "log", "tanh", "sigmoid", "relu", "sqrt", "abs")
_OPERATORS = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.Pow: lambda a, b: a**b,
}


def parse_expression(text: str, values: dict[str, float]) -> Value:
    """Build the Value graph of ``text`` with the given variable values (no eval)."""
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as error:
        raise ValueError(f"expression: cannot parse {text!r}: {error.msg}") from None
    variables = {name: Value(value, label=name) for name, value in values.items()}

    def build(node: ast.AST):
        if isinstance(node, ast.Expression):
            return build(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            return node.value
        if isinstance(node, ast.Name):
            if node.id not in variables:
                raise ValueError(f"expression: no value given for {node.id!r}: add --values {node.id}=NUMBER")
            return variables[node.id]
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            return _OPERATORS[type(node.op)](build(node.left), build(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            operand = build(node.operand)
            return -operand if isinstance(node.op, ast.USub) else operand
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS
                and len(node.args) == 1 and not node.keywords):
            argument = build(node.args[0])
            if not isinstance(argument, Value):
                argument = Value(argument)
            return getattr(argument, node.func.id)()
        raise ValueError(
            f"expression: {ast.unparse(node)!r} is not allowed: use numbers, names, + - * / **, "
            f"unary -, and {', '.join(FUNCTIONS)}"
        )

    result = build(tree)
    if not isinstance(result, Value):
        result = Value(result)
    return result


def _parse_values(pairs: Sequence[str]) -> dict[str, float]:
    values = {}
    for pair in pairs:
        for item in filter(None, pair.split(",")):
            name, _, number = item.partition("=")
            if not name.isidentifier() or not number:
                raise ValueError(f"--values: expected NAME=NUMBER, got {item!r}")
            values[name] = float(number)
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


def _write(drawing_root: Value, output: Path, **options) -> None:
    if output.suffix.lower() == ".html":
        print(f"wrote {viz.animate(drawing_root, output, **options)}")
        return
    try:
        print(f"wrote {viz.draw(drawing_root, **options).render(output)}")
    except viz.RendererMissing as missing:
        print(f"{missing}\nwrote {output.with_suffix('.dot')}")


def _graph_command(args: argparse.Namespace) -> int:
    output = Path(args.output)
    if args.kind == "batchnorm":
        if args.samples < 2:
            raise ValueError("graph batchnorm: --samples must be at least 2 (BatchNorm needs a batch)")
        if not 0 <= args.highlight < args.samples:
            raise ValueError(f"graph batchnorm: --highlight must be a sample index in [0, {args.samples - 1}]")
        loss, inputs = batchnorm_graph(args.samples, args.features, args.seed)
        sample = inputs[args.highlight][0]
        through = [find(loss, f"x_hat[{args.highlight},0]"), find(loss, "batch_var[0]"), find(loss, "batch_mean[0]")]
        for name, value in viz.routes(sample, loss, through).items():
            print(f"route via {name}: {value:.6g}")
        print(f"sum of routes = {sample.label}.grad = {sample.grad:.6g}")
        title = f"BatchNorm over {args.samples} samples: the routes of dL/d{sample.label}"
        _write(loss, output, highlight=sample, through=through, title=title, max_nodes=args.max_nodes)
        return 0
    if not args.expression:
        raise ValueError('graph expr: give the expression, e.g. tinyad graph expr "tanh(w*x + b)" --values w=-3,x=2,b=6.9')
    root = parse_expression(args.expression, _parse_values(args.values))
    root.backward()
    print(f"{args.expression} = {root.data:.6g}")
    for node in topological_order(root):
        if node.label and not node.parents:
            print(f"d/d{node.label} = {node.grad:.6g}")
    _write(root, output, title=args.expression, max_nodes=args.max_nodes)
    return 0


def lessons_folder() -> Path:
    """Where the lessons are: ./lessons, or the checkout tinyad was installed from."""
    for folder in (Path.cwd() / "lessons", Path(__file__).resolve().parent.parent / "lessons"):
        if folder.is_dir() and any(folder.glob("[0-9][0-9]_*.py")):
            return folder
    raise FileNotFoundError(
        "no lessons/ folder found: the lessons are scripts in a checkout of tinyad; "
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tinyad", description="tinyad: draw gradient graphs and run the lessons")
    commands = parser.add_subparsers(dest="command", required=True)
    graph_parser = commands.add_parser("graph", help="draw a graph (.svg, .png, .pdf, .dot, or .html for an animation)")
    graph_parser.add_argument("kind", choices=["batchnorm", "expr"])
    graph_parser.add_argument("expression", nargs="?", help="for expr: the expression, e.g. 'tanh(w*x + b)'")
    graph_parser.add_argument("--values", nargs="*", default=[], help="for expr: NAME=NUMBER pairs")
    graph_parser.add_argument("--samples", type=int, default=4)
    graph_parser.add_argument("--features", type=int, default=1)
    graph_parser.add_argument("--highlight", type=int, default=0, help="the sample whose gradient routes are coloured")
    graph_parser.add_argument("--seed", type=int, default=0)
    graph_parser.add_argument("--max-nodes", type=int, default=400)
    graph_parser.add_argument("-o", "--output", default="graph.svg")
    commands.add_parser("lessons", help="list the lessons")
    lesson_parser = commands.add_parser("lesson", help="run lesson N (extra arguments go to the lesson)")
    lesson_parser.add_argument("number", type=int)
    args, extra = parser.parse_known_args(argv)
    try:
        if args.command == "graph":
            if extra:
                parser.error(f"unrecognized arguments: {' '.join(extra)}")
            return _graph_command(args)
        if args.command == "lessons":
            for number, summary, path in list_lessons():
                print(f"{number:2d}  {summary}  ({path.name})")
            return 0
        lessons = {number: path for number, _, path in list_lessons()}
        if args.number not in lessons:
            raise ValueError(f"lesson: no lesson {args.number}; `tinyad lessons` lists {sorted(lessons)}")
        sys.argv = [str(lessons[args.number])] + list(extra)
        runpy.run_path(str(lessons[args.number]), run_name="__main__")
        return 0
    except (ValueError, FileNotFoundError) as error:
        print(f"tinyad: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

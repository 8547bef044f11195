"""The tinyad command: graphs from the command line, safe expressions, lessons, animation."""
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tinyad
from tinyad import Tensor, viz
from tinyad.cli import batchnorm_graph, main, parse_expression

REPO = Path(__file__).resolve().parent.parent


def test_module_command_draws_the_batchnorm_routes(tmp_path, capsys):
    output = tmp_path / "bn.svg"
    assert main(["graph", "batchnorm", "--samples", "4", "--features", "1", "--highlight", "2", "-o", str(output)]) == 0
    printed = capsys.readouterr().out
    parts = [float(line.rsplit(":", 1)[1]) for line in printed.splitlines() if line.startswith("route via")]
    total = float(printed.split(".grad = ")[1].split()[0])
    assert len(parts) == 4 and sum(parts) == pytest.approx(total, abs=1e-5)
    svg = output.read_text()
    assert svg.lstrip().startswith("<?xml") or "<svg" in svg
    assert "batch_mean[0]" in svg and "x[2,0]" in svg


def test_python_dash_m_tinyad_runs_as_a_program(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "tinyad", "graph", "expr", "tanh(w*x + b)", "--values", "w=-3,x=2,b=6.9",
         "-o", str(tmp_path / "n.dot")],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    # d/dw tanh(wx+b) = (1 - tanh^2) x, computed here independently
    o = np.tanh(-3 * 2 + 6.9)
    assert f"d/dw = {(1 - o**2) * 2:.6g}" in done.stdout
    assert (tmp_path / "n.dot").read_text().startswith("digraph")


def test_expression_parser_matches_python_arithmetic():
    root = parse_expression("exp(a) ** 2 / b - -sqrt(c) + relu(a - 3) * 2", {"a": 1.5, "b": 2.0, "c": 9.0})
    assert root.data == pytest.approx(np.exp(1.5) ** 2 / 2.0 + 3.0 + 0.0)


@pytest.mark.parametrize("text", ["__import__('os').system('true')", "a.data", "[a]", "lambda: 1", "a if a else a", "open('x')"])
def test_expression_parser_refuses_anything_but_arithmetic(text):
    with pytest.raises(ValueError, match="not allowed|cannot parse"):
        parse_expression(text, {"a": 1.0})


def test_expression_with_a_missing_value_says_which(capsys):
    assert main(["graph", "expr", "a * q", "--values", "a=1", "-o", "x.dot"]) == 2
    assert "no value given for 'q'" in capsys.readouterr().err


def test_batchnorm_with_one_sample_is_refused(capsys):
    assert main(["graph", "batchnorm", "--samples", "1", "-o", "x.dot"]) == 2
    assert "--samples: graph batchnorm needs between 2 and" in capsys.readouterr().err


def test_lessons_are_listed_and_run_by_number(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    assert main(["lessons"]) == 0
    listing = capsys.readouterr().out
    assert re.search(r"^\s*7\s+Lesson 7", listing, re.M)
    assert main(["lesson", "7", "--quick", "--solution", "--out", str(tmp_path)]) == 0  # options go to the lesson
    assert "right!" in capsys.readouterr().out
    assert (tmp_path / "batchnorm_every_sample.png").exists()


def test_unknown_lesson_number_is_a_clear_error(monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    assert main(["lesson", "99"]) == 2
    assert "no lesson 99" in capsys.readouterr().err


def test_animation_replays_backward_in_reverse_topological_order(tmp_path):
    pytest.importorskip("pygraphviz")
    loss, inputs = batchnorm_graph(3, 1)
    page = viz.animate(loss, tmp_path / "bn.html").read_text()
    steps = json.loads(re.search(r"const DATA = (\{.*?\});\n", page, re.S).group(1))["steps"]
    order = tinyad.graph.topological_order(loss)
    drawn = [f"n{i}" for i in reversed(range(len(order))) if f'id="n{i}"' in page]
    assert len(drawn) > len(order) // 2
    assert [step["id"] for step in steps] == drawn
    assert steps[0]["caption"].startswith("L:") and "seeded" in steps[0]["caption"]
    # every node of the drawing is in the page, with the id the script looks for
    for step in steps:
        assert f'id="{step["id"]}"' in page
    assert "<script>" in page and "http" not in page.split("<svg", 1)[0].replace("http-equiv", "")


def test_animation_before_backward_is_refused(tmp_path):
    x = tinyad.Value(1.0) * 2.0
    with pytest.raises(ValueError, match="backward"):
        viz.animate(x, tmp_path / "a.html")


def test_tensor_batchnorm_routes_add_up_at_the_op_level():
    rng = np.random.default_rng(0)
    x = Tensor(rng.normal(size=(6, 3)), requires_grad=True, label="x")
    gamma = Tensor(rng.normal(size=3), requires_grad=True)
    beta = Tensor(rng.normal(size=3), requires_grad=True)
    y = tinyad.nn.functional.batch_norm(x, None, None, gamma, beta, training=True)
    dy = rng.normal(size=(6, 3))
    loss = (y * Tensor(dy)).sum()
    loss.backward()
    through = [tinyad.find(loss, "x_hat"), tinyad.find(loss, "batch_var"), tinyad.find(loss, "batch_mean")]
    parts = viz.routes(x, loss, through)
    assert np.abs(parts["x_hat"] + parts["batch_var"] + parts["batch_mean"] - x.grad).max() < 1e-12
    hand = tinyad.check.batch_norm_backward_steps(x.data, gamma.data, dy)
    centered = x.data - x.data.mean(axis=0)
    inv_std = 1 / np.sqrt(x.data.var(axis=0) + 1e-5)
    np.testing.assert_allclose(parts["x_hat"], hand["x_hat"] * inv_std, atol=1e-12)
    np.testing.assert_allclose(parts["batch_var"], hand["batch_var"] * 2 * centered / 6, atol=1e-12)
    np.testing.assert_allclose(parts["batch_mean"], np.broadcast_to(hand["batch_mean"] / 6, (6, 3)), atol=1e-12)
    source = viz.draw(loss, highlight=x, through=through).source
    for colour in viz.ROUTE_COLOURS[:3]:
        assert f'color="{colour}"' in source


def test_collapse_groups_a_big_graph_into_few_boxes():
    loss, _ = batchnorm_graph(200, 1)
    with pytest.raises(ValueError, match="max_nodes"):
        viz.draw(loss)
    source = viz.draw(loss, collapse=["x[", "centered", "x_hat", "gamma*x_hat", "y["], max_nodes=400).source
    boxes = [line for line in source.splitlines() if re.match(r"^\s*[ng]\d+ \[", line)]
    assert len(boxes) < 400
    assert "200 nodes (collapsed)" in source


# --- hostile input and one-line errors (issue 18, point 6) ---------------------


def run_tinyad(*arguments, timeout=60, cwd=None):
    return subprocess.run([sys.executable, "-m", "tinyad", *arguments], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)


@pytest.mark.parametrize("expression, option", [
    ("9**9**9", "expression"), ("10**400", "expression"), ("1/0", "expression"), ("1e308*10", "expression"),
    ("+".join(["a"] * 5000), "expression"), ("+".join(["a"] * 300), "expression"), ("log(-1)", "expression"),
    ("a**a", "expression"), ("(" * 300 + "a" + ")" * 300, "expression"), ("a\x1b[2J", "expression"), ("a\udcff", "expression"),
    ("9" * 5000, "expression"), ("2**-2000", "expression"),
])
def test_hostile_expressions_end_in_one_line_naming_the_option(expression, option, tmp_path):
    done = run_tinyad("graph", "expr", expression, "--values", "a=1.5", "-o", str(tmp_path / "e.dot"), timeout=30)
    assert done.returncode == 2, done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"tinyad: {option}"), done.stderr
    assert not (tmp_path / "e.dot").exists()


def test_a_nul_byte_in_an_expression_is_one_line(capsys):  # argv cannot hold NUL: in process
    assert main(["graph", "expr", "a\x00", "--values", "a=1", "-o", "never.dot"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tinyad: expression: cannot parse 'a\u2400'") and err.count("\n") == 1


@pytest.mark.parametrize("arguments, option", [
    (["graph", "batchnorm", "--samples", "x"], "argument --samples"),
    (["graph", "batchnorm", "--samples", "100000"], "--samples"),
    (["graph", "batchnorm", "--highlight", "9"], "--highlight"),
    (["graph", "expr", "a", "--values", "a=1e400"], "--values"),
    (["graph", "expr", "a", "--values", "a=nan"], "--values"),
    (["graph", "expr", "a", "--values", "1a=2"], "--values"),
    (["graph", "batchnorm", "-o", "picture.txt"], "-o"),
    (["graph", "batchnorm", "--max-nodes", "0"], "--max-nodes"),
    (["routes", "mlp", "--feature", "99"], "--feature"),
    (["routes", "batchnorm", "--samples", "1"], "--samples"),
    (["nonsense"], "argument command"),
    ([], "the following arguments are required"),
])
def test_every_cli_error_is_one_tinyad_line_naming_the_option(arguments, option, capsys):
    assert main(arguments) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"tinyad: {option}"), captured.err


def test_output_never_overwrites_another_file(tmp_path, capsys):
    pytest.importorskip("pygraphviz")
    beside = tmp_path / "bn.dot"
    beside.write_text("my own notes")
    assert main(["graph", "batchnorm", "-o", str(tmp_path / "bn.png")]) == 0
    assert main(["graph", "batchnorm", "-o", str(tmp_path / "bn.txt")]) == 2
    assert beside.read_text() == "my own notes"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bn.dot", "bn.png"]


def test_every_sample_option_draws_all_routes(tmp_path, capsys):
    assert main(["graph", "batchnorm", "--samples", "3", "--every-sample", "-o", str(tmp_path / "bn.dot")]) == 0
    source = (tmp_path / "bn.dot").read_text()
    for colour in viz.ROUTE_COLOURS[:3]:
        assert source.count(colour) >= 6
    printed = capsys.readouterr().out
    assert printed.count("batch_mean[0]") == 3


def test_collapse_option_groups_nodes(tmp_path):
    assert main(["graph", "batchnorm", "--samples", "40", "--collapse", "centered", "x_hat", "--max-nodes", "1000",
                 "-o", str(tmp_path / "bn.dot")]) == 0
    source = (tmp_path / "bn.dot").read_text()
    assert "centered*\\n40 nodes (collapsed)" in source and "x_hat*\\n40 nodes (collapsed)" in source


def test_routes_command_plots_a_batch_of_64(tmp_path):
    done = run_tinyad("routes", "batchnorm", "--samples", "64", "-o", str(tmp_path / "routes.png"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "routes.png").read_bytes()[:4] == b"\x89PNG"


def test_lesson_help_shows_the_lessons_own_options():
    done = run_tinyad("lesson", "7", "--help", cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert "--wrong" in done.stdout and "--out" in done.stdout

"""The drawing: DOT structure, escaping, gradient routes, rendering without `dot`."""
import re
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tinyad
from tinyad import Value, viz
from tinyad.nn.functional import batch_norm_scalar

REPO = Path(__file__).resolve().parents[2]


def scalar_batch_norm_loss(values, weights):
    samples = [Value(v, label=f"x[{i}]") for i, v in enumerate(values)]
    outputs = [row[0] for row in batch_norm_scalar([[x] for x in samples], [Value(1.5, "gamma")], [Value(0.2, "beta")])]
    loss = sum((w * y for w, y in zip(weights, outputs)), Value(0.0))
    return samples, outputs, loss


def png_size(data: bytes) -> tuple:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", data[16:24])


def test_routes_add_up_to_grad_and_match_the_hand_derivation():
    values = [1.0, 2.5, -0.5, 4.0, 0.3]
    weights = [1.0, -2.0, 0.5, 3.0, -1.0]
    samples, outputs, loss = scalar_batch_norm_loss(values, weights)
    loss.backward()
    x = np.array(values)[:, None]
    dy = np.array([[y.grad for y in outputs]]).T
    hand = tinyad.check.batch_norm_backward_steps(x, np.array([1.5]), dy)
    m, inv_std = len(values), 1 / np.sqrt(x.var() + 1e-5)
    for i, sample in enumerate(samples):
        through = [tinyad.find(loss, f"x_hat[{i},0]"), tinyad.find(loss, "batch_var[0]"), tinyad.find(loss, "batch_mean[0]")]
        parts = viz.routes(sample, loss, through)
        assert abs(sum(parts.values()) - sample.grad) < 1e-12
        assert parts["other"] == pytest.approx(0.0, abs=1e-12)
        assert parts[f"x_hat[{i},0]"] == pytest.approx(hand["x_hat"][i, 0] * inv_std, abs=1e-12)
        assert parts["batch_var[0]"] == pytest.approx(hand["batch_var"][0, 0] * 2 * (x[i, 0] - x.mean()) / m, abs=1e-12)
        assert parts["batch_mean[0]"] == pytest.approx(hand["batch_mean"][0, 0] / m, abs=1e-12)


def test_routes_before_backward_is_refused():
    samples, _, loss = scalar_batch_norm_loss([1.0, 2.0, 4.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="backward"):
        viz.routes(samples[0], loss, [tinyad.find(loss, "batch_mean[0]")])


def test_draw_shows_every_node_and_edge():
    a, b = Value(2.0, "a"), Value(-3.0, "b")
    out = (a * b).tanh()
    out.backward()
    source = viz.draw(out).source
    assert source.count("->") == 3  # a->*, b->*, *->tanh
    assert 'label="a\\ndata: 2\\ngrad:' in source
    assert "op: tanh" in source
    assert "peripheries=2" in source  # the output is styled apart


def test_draw_before_backward_says_so_instead_of_showing_zero_gradients():
    out = Value(2.0, "a") * Value(3.0, "b")
    source = viz.draw(out).source
    assert "backward() has not run yet" in source
    assert "grad: 0" not in source


def test_highlighted_routes_are_coloured_and_labelled_with_messages():
    samples, _, loss = scalar_batch_norm_loss([1.0, 2.5, -0.5, 4.0], [1.0, -2.0, 0.5, 3.0])
    loss.backward()
    through = [tinyad.find(loss, "x_hat[2,0]"), tinyad.find(loss, "batch_var[0]"), tinyad.find(loss, "batch_mean[0]")]
    source = viz.draw(loss, highlight=samples[2], through=through).source
    for colour in viz.ROUTE_COLOURS[:3]:
        assert f'color="{colour}"' in source
    assert "route via batch mean" in source and "x[2].grad" in source


@pytest.mark.parametrize("label", ['say "hi"', "a\\b", "{brace} <angle> |bar|", "two\nlines", 'x"]; evil [color="red'])
def test_labels_are_escaped(label):
    node = Value(1.0, label) * Value(2.0, "two")
    source = viz.draw(node).source
    quoted = re.compile(r'^\s*n\d+ \[id="n\d+", label="((?:[^"\\]|\\.)*)"(.*)$')
    node_lines = [line for line in source.splitlines() if re.match(r"^\s*n\d+ \[", line)]
    assert len(node_lines) == 3
    for line in node_lines:
        match = quoted.match(line)
        assert match, line
        # after the one label string come only our own attributes
        assert match.group(2).startswith(", style="), line
    # Graphviz itself accepts the text
    pygraphviz = pytest.importorskip("pygraphviz")
    graph = pygraphviz.AGraph(string=source)
    assert len(graph.nodes()) == 3


def test_max_nodes_is_a_clear_error():
    x = Value(1.0)
    for _ in range(50):
        x = x * 1.01
    with pytest.raises(ValueError, match="max_nodes"):
        viz.draw(x, max_nodes=20)


def test_png_renders_with_dot_hidden_from_path(tmp_path, monkeypatch):
    pytest.importorskip("pygraphviz")
    monkeypatch.setattr(viz.render.shutil, "which", lambda name: None)
    out = (Value(2.0, "a") * Value(3.0, "b")).tanh()
    out.backward()
    path = viz.draw(out).render(tmp_path / "g.png")
    width, height = png_size(path.read_bytes())
    assert 50 < width < 5000 and 20 < height < 5000
    assert (tmp_path / "g.dot").read_text().startswith("digraph")  # the DOT text beside it, to read


def test_svg_renders_and_repr_svg_is_svg():
    pytest.importorskip("pygraphviz")
    out = Value(2.0, "a") + 1.0
    out.backward()
    assert "<svg" in viz.draw(out)._repr_svg_()


def test_without_any_renderer_the_error_names_the_package(tmp_path, monkeypatch):
    monkeypatch.setattr(viz.render.shutil, "which", lambda name: None)
    monkeypatch.setitem(sys.modules, "pygraphviz", None)
    out = Value(2.0, "a") + 1.0
    with pytest.raises(viz.RendererMissing, match="pip install 'pygraphviz"):
        viz.draw(out).render(tmp_path / "g.png")
    assert (tmp_path / "g.dot").exists()  # the DOT text is still written


def test_tensor_graphs_draw_too():
    x = tinyad.Tensor(np.arange(6.0).reshape(2, 3), requires_grad=True, label="x")
    y = tinyad.nn.functional.batch_norm(x, None, None, training=True)
    y.sum().backward()
    source = viz.draw(y.sum()).source
    for label in ("batch_mean", "batch_var", "inv_std", "x_hat"):
        assert label in source


def test_lesson_07_prints_routes_that_sum_to_the_gradient(tmp_path):
    done = subprocess.run(
        [sys.executable, str(REPO / "lessons" / "07_batchnorm_backward.py"), "--quick", "--solution", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    summary = next(line for line in lines if line.strip().startswith("sum"))
    total = float(summary.split()[1])
    grad = float(summary.split("x[2].grad = ")[1].split(",")[0])
    assert abs(total - grad) < 1e-12
    assert "right!" in done.stdout
    table = [line for line in lines if "|" in line and not line.startswith("name") and not line.startswith("-")
             and not line.startswith("your answer")]
    assert table and all(line.split("|")[2].strip() == "True" for line in table)
    assert (tmp_path / "batchnorm_routes.png").exists()
    assert (tmp_path / "batchnorm_every_sample.png").exists()


def test_lesson_07_wrong_answer_is_reported(tmp_path):
    done = subprocess.run(
        [sys.executable, str(REPO / "lessons" / "07_batchnorm_backward.py"), "--wrong", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "not yet" in done.stdout


def test_png_renders_with_the_system_dot_program(tmp_path):
    import os
    import shutil

    if shutil.which("dot") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI installs Graphviz's dot (apt-get install graphviz) to test this renderer; it is missing")
        pytest.skip("no system dot here (CI installs it); the pygraphviz renderer is tested above")
    out = (Value(2.0, "a") * Value(3.0, "b")).tanh()
    out.backward()
    source = viz.draw(out).source
    data = viz.render_bytes(source, "png")
    width, height = png_size(data)
    assert 50 < width < 5000 and 20 < height < 5000


def test_big_graphs_get_the_fast_layout_settings_and_small_ones_do_not():
    from tinyad.cli import batchnorm_graph

    small, _ = batchnorm_graph(4, 1)
    big, _ = batchnorm_graph(60, 1)
    assert "splines=false" not in viz.draw(small).source
    assert "splines=false" in viz.draw(big, max_nodes=1000).source


def test_a_2000_node_graph_renders(tmp_path):
    pytest.importorskip("pygraphviz")
    from tinyad.cli import batchnorm_graph

    loss, _ = batchnorm_graph(180, 1)
    assert len(tinyad.graph.topological_order(loss)) > 1900
    path = viz.draw(loss, max_nodes=5000, simplify=False).render(tmp_path / "big.svg")
    assert path.read_text().count('class="node"') > 1900


# --- routes and highlight on any graph (issue 18, point 5) ---------------------


def test_routes_of_a_graph_without_statistics_are_all_other():
    a, b = Value(2.0, "a"), Value(-3.0, "b")
    out = (a * b + a).tanh()
    out.backward()
    assert viz.routes(a, out) == {"other": a.grad}
    assert viz.routes(a, out, through=[]) == {"other": a.grad}


def test_routes_default_through_is_the_samples_own_statistics():
    samples, _, loss = scalar_batch_norm_loss([1.0, 2.5, -0.5, 4.0], [1.0, -2.0, 0.5, 3.0])
    loss.backward()
    explicit = [tinyad.find(loss, "x_hat[1,0]"), tinyad.find(loss, "batch_var[0]"), tinyad.find(loss, "batch_mean[0]")]
    assert viz.statistics_of(samples[1], loss) == explicit
    assert viz.routes(samples[1], loss) == viz.routes(samples[1], loss, explicit)


def test_highlight_on_a_graph_without_batchnorm_labels_draws_messages():
    a, b = Value(2.0, "a"), Value(-3.0, "b")
    out = a * b + a
    out.backward()
    drawing = viz.draw(out, highlight=a)
    assert "sum of the routes = a.grad = -2" in drawing.source
    assert 'label="-3"' in drawing.source  # the message from a*b back to a


def _route_argument_cases():
    samples, _, loss = scalar_batch_norm_loss([1.0, 2.5, -0.5], [1.0, -2.0, 0.5])
    loss.backward()
    stranger = Value(5.0, "stranger") * 2.0
    stranger.backward()
    nodes = [samples[0], loss, tinyad.find(loss, "batch_mean[0]"), tinyad.find(loss, "x_hat[0,0]"), stranger,
             Value(1.0, "loose leaf")]
    throughs = [None, [], [samples[0]], [loss], [nodes[2], nodes[2]], [stranger], [nodes[3], nodes[2], loss]]
    return nodes, throughs, loss


def test_no_combination_of_arguments_to_routes_or_draw_raises_a_type_error():
    nodes, throughs, loss = _route_argument_cases()
    bad_values = [None, 3, "x", [1, 2]]
    for x in nodes + bad_values:
        for root in [loss, nodes[4], nodes[5], 7]:
            for through in throughs + [[1.5], "abc"]:
                for call in (lambda: viz.routes(x, root, through),
                             lambda: viz.draw(root, highlight=x, through=through)):
                    try:
                        result = call()
                    except ValueError:
                        continue
                    if isinstance(result, dict):  # routes: the parts add up to the gradient
                        assert sum(result.values()) == pytest.approx(x.grad, abs=1e-12)


# --- the every-sample picture (issue 18, points 1 and 2) ------------------------

EDGE = re.compile(r'^\s*(n\d+|g\d+) -> (n\d+|g\d+) \[id="e_n(\d+)_n(\d+)_(\d+)"(.*)\];$')
NUMBER = r"(-?[0-9.]+(?:e[-+]?\d+)?|-)"


def drawn_edges(source, order):
    """(parent, consumer, position, attributes) of every edge line of a drawing."""
    found = []
    for line in source.splitlines():
        match = EDGE.match(line)
        if match:
            parent, consumer, position = order[int(match[3])], order[int(match[4])], int(match[5])
            assert consumer.parents[position] is parent
            found.append((parent, consumer, position, match[6]))
    return found


def test_every_number_on_an_edge_of_the_every_sample_picture_is_the_engines_message():
    from tinyad.cli import batchnorm_graph

    loss, inputs = batchnorm_graph(4, 1)
    samples = [row[0] for row in inputs]
    drawing = viz.every_sample(loss)
    order = tinyad.graph.topological_order(loss)
    edges = drawn_edges(drawing.source, order)
    coloured = {colour: 0 for colour in viz.ROUTE_COLOURS[:3]}
    split = 0
    for parent, consumer, position, attributes in edges:
        message = consumer.messages[position]
        plain = re.search(r'label="' + NUMBER + '"', attributes)
        if plain:
            assert plain[1] == viz.drawing.summary(message), (parent, consumer)
        table = re.findall(r">(own|var|mean): " + NUMBER, attributes)
        if table:  # an edge that carries two routes: each share, then their sum
            split += 1
            total = re.search(r"<td>= " + NUMBER + "</td>", attributes)[1]
            assert total == viz.drawing.summary(message)
            sample = parent
            parts = viz.routes(sample, loss)
            names = {"own": next(k for k in parts if k.startswith("x_hat")), "var": "batch_var[0]"}
            for route, text in table:
                assert text == viz.drawing.summary(parts[names[route]])
            assert sum(parts[names[route]] for route, _ in table) == pytest.approx(message, abs=1e-12)
        for colour in coloured:
            if f'"{colour}' in attributes or f':{colour}' in attributes:
                coloured[colour] += 1
                assert plain or table, "a coloured edge without its number"
    assert split == 4  # x_i -> centered_i for every sample
    # every route reaches every sample: red into 4 x_hat's, blue and green fan out to all 4
    assert all(count >= 8 for count in coloured.values()), coloured
    # and the numbers recorded for the drawing are the engine's own values
    for parent, consumer, position, route, value in drawing.edge_numbers:
        if route == "message":
            assert value == consumer.messages[position]
    assert {id(p) for p, *_ in drawing.edge_numbers} >= {id(x) for x in samples}


def test_every_sample_picture_draws_sums_as_one_box_and_folds_constants():
    from tinyad.cli import batchnorm_graph

    loss, _ = batchnorm_graph(4, 1)
    source = viz.every_sample(loss).source
    assert source.count("op: sum of 4") == 3  # the loss, the mean's sum, the variance's sum
    assert "op: * 0.25" in source and "op: + 1e-05" in source
    assert "leaf" not in source  # no constant has a box of its own
    legend = source[source.index("label=<<table"):]
    for colour in viz.ROUTE_COLOURS[:3]:
        assert colour in legend
    fills = re.findall(r'fillcolor="(#[0-9a-f]{6})"', source)
    assert not set(fills) & set(viz.ROUTE_COLOURS)  # no box shares a route's colour


def test_every_sample_picture_fits_a_screen(tmp_path):
    pytest.importorskip("pygraphviz")
    from tinyad.cli import batchnorm_graph

    loss, _ = batchnorm_graph(4, 1)
    width, height = png_size(viz.every_sample(loss).render(tmp_path / "every.png").read_bytes())
    assert width <= 1600, (width, height)


def test_value_graph_parameters_are_drawn_as_parameters():
    samples, _, loss = scalar_batch_norm_loss([1.0, 2.5, -0.5], [1.0, -2.0, 0.5])
    loss.backward()
    source = viz.draw(loss, inputs=samples).source
    gamma_line = next(line for line in source.splitlines() if 'label="gamma\\n' in line)
    assert viz.drawing.KIND_FILLS["parameter"][0] in gamma_line
    x_line = next(line for line in source.splitlines() if 'label="x[0]\\n' in line)
    assert viz.drawing.KIND_FILLS["input"][0] in x_line


# --- the route plot (issue 18, point 3) -----------------------------------------


def test_route_table_of_scalar_samples_is_routes_per_sample():
    from tinyad.cli import batchnorm_graph

    loss, inputs = batchnorm_graph(12, 1, seed=3)
    samples = [row[0] for row in inputs]
    table = viz.route_table(samples, loss)
    for i, sample in enumerate(samples):
        parts = viz.routes(sample, loss)
        assert table["own x_hat"][i] == pytest.approx(parts[f"x_hat[{i},0]"], abs=1e-12)
        assert table["batch variance"][i] == pytest.approx(parts["batch_var[0]"], abs=1e-12)
        assert table["batch mean"][i] == pytest.approx(parts["batch_mean[0]"], abs=1e-12)
        assert table["total"][i] == sample.grad
    assert np.abs(table["other"]).max() < 1e-12


def test_route_table_of_a_batchnorm_layer_in_a_trained_mlp_matches_the_hand_derivation():
    from tinyad.cli import trained_mlp_batch

    loss, bn_input = trained_mlp_batch(samples=32, steps=20, seed=1)
    x = bn_input.data
    m, feature = x.shape[0], 5
    inv_std = 1 / np.sqrt(x.var(axis=0) + 1e-5)
    d_x_hat = tinyad.find(loss, "x_hat").grad
    d_var = tinyad.find(loss, "batch_var").grad.reshape(-1)
    d_mean = tinyad.find(loss, "batch_mean").grad.reshape(-1)
    table = viz.route_table(bn_input, loss, feature=feature)
    np.testing.assert_allclose(table["own x_hat"], d_x_hat[:, feature] * inv_std[feature], atol=1e-12)
    np.testing.assert_allclose(table["batch variance"],
                               d_var[feature] * 2 * (x[:, feature] - x[:, feature].mean()) / m, atol=1e-12)
    np.testing.assert_allclose(table["batch mean"], np.full(m, d_mean[feature] / m), atol=1e-12)
    np.testing.assert_allclose(table["total"], bn_input.grad[:, feature])
    np.testing.assert_allclose(table["own x_hat"] + table["batch variance"] + table["batch mean"] + table["other"],
                               table["total"], atol=1e-15)


def test_route_table_refuses_a_feature_out_of_range():
    from tinyad.cli import trained_mlp_batch

    loss, bn_input = trained_mlp_batch(samples=8, steps=0)
    with pytest.raises(ValueError, match=r"feature must be in \[0, 15\]"):
        viz.route_table(bn_input, loss, feature=16)


def test_route_plot_of_256_samples_fits_a_screen(tmp_path):
    from tinyad.cli import batchnorm_graph

    loss, inputs = batchnorm_graph(256, 1)
    path = tmp_path / "routes.png"
    viz.plot_routes([row[0] for row in inputs], loss, path)
    width, height = png_size(path.read_bytes())
    assert 800 <= width <= 1600 and height <= 900


# --- hostile labels (issue 18, point 6) -----------------------------------------

HOSTILE = ["nul\x00byte", "esc\x1b[31mred", "lone \ud800 surrogate", "x" * 20_000, "<!--<script>", "</script>&amp;",
           "del\x7f c1\x85", "\ufffe\uffff"]


@pytest.mark.parametrize("text", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_labels_and_op_names_give_well_formed_svg(text, tmp_path):
    pytest.importorskip("pygraphviz")
    import xml.etree.ElementTree as ElementTree

    a = Value(2.0, text)
    b = Value(3.0, "b")
    out = a * b
    out.op = text  # an op name is drawn too
    out.label = text
    out.backward()
    drawing = viz.draw(out, highlight=a, title=text)
    assert len(max(drawing.source.splitlines(), key=len)) < 2_000  # 20k characters were shortened
    svg = drawing.render(tmp_path / "g.svg").read_text(encoding="utf-8")
    ElementTree.fromstring(svg.encode("utf-8"))  # raises on any character XML does not allow


def test_clean_keeps_what_is_printable_and_names_what_is_not():
    assert viz.clean("x_hat[2,0]") == "x_hat[2,0]"
    assert viz.clean("a\x00b\x1bc") == "a\u2400b\u241bc"
    assert viz.clean("\ud800") == "\ufffd"
    assert viz.clean("y" * 100).endswith("... (100 characters)")


def test_render_without_keep_dot_writes_only_the_file_named(tmp_path):
    pytest.importorskip("pygraphviz")
    beside = tmp_path / "g.dot"
    beside.write_text("mine")
    out = Value(2.0, "a") * Value(3.0, "b")
    out.backward()
    viz.draw(out).render(tmp_path / "g.png", keep_dot=False)
    with pytest.raises(ValueError, match="unknown picture format"):
        viz.draw(out).render(tmp_path / "g.txt")
    assert beside.read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.dot", "g.png"]


def test_rendering_prints_no_fontconfig_warning(tmp_path):
    pytest.importorskip("pygraphviz")
    script = ("from tinyad import Value, viz\n"
              "out = Value(2.0, 'a') * Value(3.0, 'b')\nout.backward()\n"
              f"viz.draw(out).render({str(tmp_path / 'g.png')!r})\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                          env={**__import__("os").environ, "PATH": ""})  # no system dot: the bundled engine draws
    assert done.returncode == 0, done.stderr
    assert "Fontconfig" not in done.stderr


def test_plot_routes_without_matplotlib_names_the_package_to_install(tmp_path):
    # a fresh `pip install .` has no matplotlib: the route plot must say what to install
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "from tinyad import Value, viz\n"
        "from tinyad.nn.functional import batch_norm_scalar\n"
        "xs = [Value(v) for v in (1.0, 2.0, 4.0)]\n"
        "ys = [row[0] for row in batch_norm_scalar([[x] for x in xs])]\n"
        "loss = ys[0] * 2.0 + ys[1]\n"
        "loss.backward()\n"
        "try:\n"
        f"    viz.plot_routes(xs, loss, {str(tmp_path / 'r.png')!r})\n"
        "except ImportError as error:\n"
        "    print(error)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "pip install matplotlib" in done.stdout and not (tmp_path / "r.png").exists()

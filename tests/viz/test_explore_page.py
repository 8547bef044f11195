"""The explore page in a real browser: headless Chromium, driven over the DevTools protocol."""
import os
import re
from pathlib import Path

import pytest

import tinyad
from tinyad import Value, viz
from tinyad.cli import batchnorm_graph
from tinyad.nn.functional import batch_norm_scalar

from chromium_page import Page, find_chromium

pytest.importorskip("pygraphviz")


@pytest.fixture(scope="module")
def browser():
    chromium = find_chromium()
    if chromium is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI installs Chromium (apt-get install chromium) to test the explore page; it is missing")
        pytest.skip("no Chromium here (Debian: apt-get install chromium; CI installs it): "
                    "the page's browser tests need a headless browser")
    page = Page(chromium)
    yield page
    page.close()


def stroke_of(page, edge_id):
    return page.evaluate(f"document.getElementById('{edge_id}').querySelector('path').getAttribute('stroke')")


def test_page_loads_offline_with_no_console_error(browser, tmp_path):
    loss, _ = batchnorm_graph(4, 1)
    path = viz.explore(loss, tmp_path / "page.html")
    text = path.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text)  # nothing loaded from anywhere
    browser.open(path)
    assert browser.evaluate("document.body.dataset.ready") == "yes"
    assert browser.errors == []


def test_clicking_a_sample_colours_its_routes_with_the_engines_numbers(browser, tmp_path):
    loss, inputs = batchnorm_graph(4, 1)
    path = viz.explore(loss, tmp_path / "page.html")
    browser.open(path)
    sample = browser.evaluate("DATA.samples[2]")
    mean_route = next(r for r in sample["routes"] if r["name"] == "batch mean")
    green_edge = mean_route["into"][0]
    before = stroke_of(browser, green_edge)
    browser.click_element(sample["box"])  # a real mouse click on the box of x[2,0]
    after = stroke_of(browser, green_edge)
    assert before != after == viz.ROUTE_COLOURS[2]
    panel = browser.evaluate("document.getElementById('routes').textContent")
    parts = viz.routes(inputs[2][0], loss)
    for name in ("x_hat[2,0]", "batch_var[0]", "batch_mean[0]"):
        assert viz.drawing.summary(parts[name]) in panel
    # each share drawn on an edge is the engine's share of that edge's message
    shares = browser.evaluate(f"Array.from(document.getElementById('{mean_route['edges'][0][0]}')"
                              ".querySelectorAll('tspan')).map(t => t.textContent.trim())")
    assert shares == [mean_route["edges"][0][1]]
    # clicking again puts the plain picture back
    browser.click_element(sample["box"])
    assert stroke_of(browser, green_edge) == before
    assert browser.errors == []


def test_stepping_reveals_the_gradients_in_backward_order(browser, tmp_path):
    loss, _ = batchnorm_graph(3, 1)
    browser.open(viz.explore(loss, tmp_path / "page.html"))
    total = browser.evaluate("DATA.steps.length")
    browser.click_element("reset")
    assert browser.evaluate("document.getElementById('counter').textContent") == f"0 / {total}"
    browser.click_element("step")
    assert browser.evaluate("document.getElementById('caption').textContent").startswith("L: dL/d(L) = 1")
    assert browser.evaluate("document.querySelectorAll('.current').length") == 1
    assert browser.errors == []


@pytest.mark.parametrize("hostile", ["<!--<script>", "</script><script>alert(1)</script>", "a\x00b</SCRIPT >"])
def test_a_hostile_label_cannot_break_the_page(browser, tmp_path, hostile):
    samples = [Value(v, label=f"{hostile}{i}") for i, v in enumerate([1.0, 2.5, -0.5])]
    outputs = [row[0] for row in batch_norm_scalar([[x] for x in samples])]
    loss = sum((w * y for w, y in zip([1.0, -2.0, 0.5], outputs)), Value(0.0))
    loss.label = hostile
    loss.backward()
    path = viz.explore(loss, tmp_path / "page.html", samples=samples, title=hostile)
    browser.open(path)
    assert browser.evaluate("document.body.dataset.ready") == "yes"  # the whole script ran
    assert browser.errors == []
    buttons = browser.evaluate("Array.from(document.querySelectorAll('#samples button')).map(b => b.textContent)")
    assert buttons == [viz.clean(x.label) for x in samples]  # shown as text, not run as markup
    assert browser.evaluate("document.querySelectorAll('script').length") == 1
    browser.click_element(browser.evaluate("DATA.samples[0].box"))
    assert "via batch mean" in browser.evaluate("document.getElementById('routes').textContent")


def test_animation_page_runs_in_the_browser(browser, tmp_path):
    out = (Value(2.0, "a") * Value(-3.0, "b")).tanh()
    out.backward()
    browser.open(viz.animate(out, tmp_path / "anim.html"))
    browser.click_element("step")
    assert browser.evaluate("document.getElementById('counter').textContent") == "1 / 4"
    assert browser.errors == []

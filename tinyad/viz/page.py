"""Pages to explore the backward pass in a browser: one self-contained HTML file each.

``explore(loss, "page.html")`` draws a BatchNorm graph once, with every edge
labelled by its gradient message, and adds two things a picture cannot do:

* click a sample (in the drawing or on its button) to colour its three
  routes (own x_hat, batch variance, batch mean) and read each route's share
  on every edge it uses, with the contributions listed above the drawing;
* step the backward pass node by node: the gradients appear in the order
  backward computed them, each with a caption saying where it came from.

``animate(root, "page.html")`` is the same page for any graph, without the
samples. Everything is inline (the SVG, the style, the script, the data): the
page works offline and loads nothing.

Why the data is escaped the way it is: a label is user text, and the page
embeds it twice. In the SVG, Graphviz writes it as escaped XML text. In the
script's data, JSON alone is not enough: inside a <script> element the HTML
parser looks for ``</script>`` and treats ``<!--<script>`` specially, even
inside a JavaScript string. So every ``<``, ``>`` and ``&`` in the data is
written as a JSON escape (``\\u003c``...), which the script reads back as
the same characters and the HTML parser never sees.
"""
from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any, Sequence

from ..graph import Node, topological_order
from .drawing import _plan_routes, batchnorm_samples, draw, summary
from .render import clean, render_bytes
from .routes import name_of, node_list

__all__ = ["animate", "explore"]

MAX_SAMPLES = 32  # samples one page lets you click (a bigger graph is unreadable anyway)

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>__TITLE__</title>
<style>
 body { font-family: Helvetica, Arial, sans-serif; margin: 1em; color: #222; }
 button { font-size: 0.95em; margin: 0 .3em .3em 0; }
 button.chosen { font-weight: bold; outline: 2px solid #222; }
 #caption { margin: .5em 0; min-height: 1.3em; }
 #routes { margin: .4em 0; min-height: 1.3em; }
 #routes span { margin-right: 1em; font-weight: bold; }
 #picture svg { max-width: 100%; height: auto; }
 .arrived polygon { fill: #ffe28a !important; }
 .current polygon { fill: #ff9f43 !important; }
 .sample { cursor: pointer; }
</style></head><body>
<h2>__TITLE__</h2>
<p>__INTRO__</p>
<div id="samples"></div>
<div id="controls">backward pass: <button id="play">play</button><button id="step">step</button><button id="reset">reset</button>
<span id="counter"></span></div>
<div id="caption"></div>
<div id="routes"></div>
<div id="picture">__SVG__</div>
<script>
"use strict";
const DATA = __DATA__;
const NS = "http://www.w3.org/2000/svg";
let done = 0, timer = null, chosen = null;

// --- choosing a sample: colour its routes and write each route's share on its edges
function remember(element) {
  if (element.dataset.original === undefined) {
    element.dataset.original = JSON.stringify([element.getAttribute("stroke"), element.getAttribute("fill"),
                                               element.getAttribute("stroke-width"), element.textContent]);
  }
}
function restore(element) {
  if (element.dataset.original === undefined) return;
  const [stroke, fill, width, text] = JSON.parse(element.dataset.original);
  const set = (name, value) => value === null ? element.removeAttribute(name) : element.setAttribute(name, value);
  set("stroke", stroke); set("fill", fill); set("stroke-width", width);
  if (element.tagName === "text") element.textContent = text;
}
function paint(edgeId, colour, parts) {
  const edge = document.getElementById(edgeId);
  if (!edge) return;
  edge.querySelectorAll("path").forEach(path => { remember(path); path.setAttribute("stroke", colour);
                                                   path.setAttribute("stroke-width", "2.5"); });
  edge.querySelectorAll("polygon").forEach(head => { remember(head); head.setAttribute("stroke", colour);
                                                      head.setAttribute("fill", colour); });
  const label = edge.querySelector("text");
  if (!label || !parts) return;
  remember(label);
  label.textContent = "";
  parts.forEach(([text, partColour], k) => {
    const span = document.createElementNS(NS, "tspan");
    span.textContent = (k ? " " : "") + text;
    span.setAttribute("fill", partColour);
    label.appendChild(span);
  });
}
function choose(index) {
  document.querySelectorAll("#picture [data-original]").forEach(restore);
  document.querySelectorAll("#samples button").forEach((b, k) => b.classList.toggle("chosen", k === index));
  const panel = document.getElementById("routes");
  panel.textContent = "";
  chosen = index;
  if (index === null) return;
  const sample = DATA.samples[index];
  const shares = {};  // edge id -> [[text, colour], ...]
  sample.routes.forEach(route => {
    route.into.forEach(edgeId => paint(edgeId, route.colour, null));
    route.edges.forEach(([edgeId, text]) => { (shares[edgeId] = shares[edgeId] || []).push([text, route.colour]); });
  });
  Object.entries(shares).forEach(([edgeId, parts]) => paint(edgeId, parts[0][1], parts));
  panel.appendChild(document.createTextNode("dL/d" + sample.name + " = " + sample.grad + " = "));
  sample.routes.forEach((route, k) => {
    const span = document.createElement("span");
    span.style.color = route.colour;
    span.textContent = (k ? " + " : "") + "via " + route.name + ": " + route.contribution;
    panel.appendChild(span);
  });
}

// --- stepping the backward pass
function gradText(group) { const texts = group.querySelectorAll("text"); return texts[texts.length - 1]; }
function show() {
  DATA.steps.forEach((step, k) => {
    const group = document.getElementById(step.id); if (!group) return;
    const stepping = done < DATA.steps.length;  // the finished pass needs no marks
    group.classList.toggle("arrived", stepping && k < done - 1);
    group.classList.toggle("current", stepping && k === done - 1);
    gradText(group).textContent = k < done ? step.grad : "grad: ?";
  });
  document.getElementById("counter").textContent = done + " / " + DATA.steps.length;
  document.getElementById("caption").textContent = done ? DATA.steps[done - 1].caption
      : "Press step or play to run backward; click a sample to see its routes.";
}
function step() { if (done < DATA.steps.length) { done += 1; show(); } else { stop(); } }
function stop() { clearInterval(timer); timer = null; document.getElementById("play").textContent = "play"; }
document.getElementById("step").onclick = () => { stop(); step(); };
document.getElementById("reset").onclick = () => { stop(); done = 0; show(); };
document.getElementById("play").onclick = () => {
  if (timer) { stop(); return; }
  if (done >= DATA.steps.length) done = 0;
  document.getElementById("play").textContent = "pause"; timer = setInterval(step, 700);
};

const bar = document.getElementById("samples");
if (DATA.samples.length) bar.appendChild(document.createTextNode("samples: "));
DATA.samples.forEach((sample, index) => {
  const button = document.createElement("button");
  button.textContent = sample.name;
  button.onclick = () => choose(chosen === index ? null : index);
  bar.appendChild(button);
  const box = document.getElementById(sample.box);
  if (box) { box.classList.add("sample"); box.addEventListener("click", () => choose(chosen === index ? null : index)); }
});
done = DATA.start === "finished" ? DATA.steps.length : 0;
show();
document.body.dataset.ready = "yes";
</script></body></html>
"""


def _script_json(value: Any) -> str:
    """JSON that cannot end or confuse the <script> element it is written into (module docstring)."""
    text = json.dumps(value, ensure_ascii=False)
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _steps(root: Node, svg: str) -> list[dict[str, str]]:
    """The drawn nodes in the order backward completes their gradients, with captions."""
    order = topological_order(root)
    ids = {id(node): f"n{index}" for index, node in enumerate(order)}
    consumers: dict[int, list[Node]] = {}
    for node in order:
        for parent in node.parents:
            consumers.setdefault(id(parent), []).append(node)
    steps = []
    for node in reversed(order):
        if f'id="{ids[id(node)]}"' not in svg:
            continue  # a constant folded into its op, or an inner node of a sum box
        sources = consumers.get(id(node), [])
        names = ", ".join(name_of(c) for c in sources[:4]) + (" ..." if len(sources) > 4 else "")
        arrival = f"arrived from {names}" if sources else "seeded: dL/dL = 1"
        steps.append({
            "id": ids[id(node)],
            "grad": f"grad: {summary(node.grad)}",
            "caption": clean(f"{name_of(node)}: dL/d({name_of(node)}) = {summary(node.grad)}, {arrival}", limit=300),
        })
    return steps


def _sample_data(root: Node, samples: Sequence[Node]) -> list[dict[str, Any]]:
    """For each sample: its box, its gradient, and per route the edges it colours with their shares."""
    order = topological_order(root)
    ids = {id(node): f"n{index}" for index, node in enumerate(order)}

    def edge_id(key: tuple[int, int, int]) -> str:
        return f"e_{ids[key[0]]}_{ids[key[1]]}_{key[2]}"

    found = []
    for sample in samples:
        routes = []
        for route in _plan_routes(order, [sample], None):
            routes.append({
                "name": route.name,
                "colour": route.colour,
                "contribution": summary(route.contribution.get(id(sample), 0.0)),
                "edges": [[edge_id(key), summary(value)] for key, value in route.shares.items()],
                "into": sorted(edge_id(key) for key in route.into),
            })
        found.append({"box": ids[id(sample)], "name": clean(name_of(sample)), "grad": summary(sample.grad),
                      "routes": routes})
    return found


def _write_page(path: str | Path, title: str, intro: str, svg: str, data: dict[str, Any]) -> Path:
    page = (_PAGE.replace("__TITLE__", html.escape(clean(title, limit=200)))
            .replace("__INTRO__", intro)
            .replace("__DATA__", _script_json(data))
            .replace("__SVG__", svg))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path


def _svg(source: str) -> str:
    svg = render_bytes(source, "svg").decode("utf-8")
    return svg[svg.index("<svg"):]  # drop the XML prologue and doctype: the page is HTML


def animate(root: Node, path: str | Path, title: str = "The backward pass, node by node", **draw_options: Any) -> Path:
    """Write a self-contained HTML page that replays backward on the graph of ``root``.

    The graph is drawn once (``draw``'s options apply); the page's script then
    reveals the gradients one node at a time in the order backward computed
    them, with a caption saying which consumers the gradient arrived from.
    Call ``root.backward()`` first.
    """
    (root,) = node_list(root, "animate: root")
    if root.messages is None and root.parents:
        raise ValueError("animate: call backward() on the root first: there is nothing to replay yet")
    svg = _svg(draw(root, title=title, **draw_options).source)
    intro = ("The backward pass visits the nodes in reverse topological order: a node's gradient "
             "is complete only after every node that consumed it has sent its message back.")
    return _write_page(path, title, intro, svg, {"steps": _steps(root, svg), "samples": [], "start": "seed"})


def explore(root: Node, path: str | Path, samples: Sequence[Node] | None = None, title: str = "",
            **draw_options: Any) -> Path:
    """Write a self-contained page to explore a BatchNorm graph's backward pass.

    Click a sample to colour its routes and read their shares; step the
    backward pass node by node (module docstring). ``samples`` defaults to
    the leaves that feed a ``batch_mean``; ``draw``'s options apply.
    """
    (root,) = node_list(root, "explore: root")
    if root.messages is None and root.parents:
        raise ValueError("explore: call backward() on the root first: there is nothing to explore yet")
    samples = batchnorm_samples(root) if samples is None else node_list(samples, "explore: samples")
    if len(samples) > MAX_SAMPLES:
        raise ValueError(f"explore: {len(samples)} samples, at most {MAX_SAMPLES}: draw a smaller batch "
                         "(the route plot, viz.plot_routes, shows any batch size)")
    title = title or f"BatchNorm's backward pass over {len(samples)} samples"
    draw_options.setdefault("rankdir", "BT")
    svg = _svg(draw(root, title=title, messages=True, inputs=samples, **draw_options).source)
    intro = ("Every edge carries the gradient message it sent back during backward. Click a sample (its box or "
             "its button) to colour its three routes (red: own x_hat, blue: batch variance, green: batch mean) "
             "and see each route's share on the edges it uses; the shares add up to the sample's gradient.")
    data = {"steps": _steps(root, svg), "samples": _sample_data(root, samples), "start": "finished"}
    return _write_page(path, title, intro, svg, data)

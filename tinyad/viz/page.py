"""Pages to explore the backward pass in a browser: self-contained HTML, no network.

``animate(root, path)`` replays backward node by node on the drawing.
"""
from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from ..graph import Node, topological_order
from .drawing import draw, summary
from .render import render_bytes
from .routes import name_of

__all__ = ["animate"]


_ANIMATION_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>__TITLE__</title>
<style>
 body { font-family: Helvetica, Arial, sans-serif; margin: 1em; }
 #controls button { font-size: 1em; margin-right: .4em; }
 #caption { margin: .6em 0; min-height: 1.4em; }
 #picture svg { max-width: 100%; height: auto; }
 .arrived polygon { fill: #ffe28a !important; }
 .current polygon { fill: #ff9f43 !important; }
</style></head><body>
<h2>__TITLE__</h2>
<p>The backward pass visits the nodes in reverse topological order: a node's gradient
is complete only after every node that consumed it has sent its message back.</p>
<div id="controls"><button id="play">play</button><button id="step">step</button><button id="reset">reset</button>
<span id="counter"></span></div>
<div id="caption"></div>
<div id="picture">__SVG__</div>
<script>
const steps = __STEPS__;
let done = 0, timer = null;
function gradText(group) { const texts = group.querySelectorAll("text"); return texts[texts.length - 1]; }
function show() {
  steps.forEach((step, k) => {
    const group = document.getElementById(step.id); if (!group) return;
    group.classList.toggle("arrived", k < done - 1);
    group.classList.toggle("current", k === done - 1);
    gradText(group).textContent = k < done ? step.grad : "grad: ?";
  });
  document.getElementById("counter").textContent = done + " / " + steps.length;
  document.getElementById("caption").textContent = done ? steps[done - 1].caption : "Press step or play.";
}
function step() { if (done < steps.length) { done += 1; show(); } else { stop(); } }
function stop() { clearInterval(timer); timer = null; document.getElementById("play").textContent = "play"; }
document.getElementById("step").onclick = () => { stop(); step(); };
document.getElementById("reset").onclick = () => { stop(); done = 0; show(); };
document.getElementById("play").onclick = () => {
  if (timer) { stop(); return; }
  if (done >= steps.length) done = 0;
  document.getElementById("play").textContent = "pause"; timer = setInterval(step, 700);
};
show();
</script></body></html>
"""


def animate(root: Node, path: str | Path, title: str = "The backward pass, node by node", **draw_options: Any) -> Path:
    """Write a self-contained HTML page that replays backward on the graph of ``root``.

    The graph is drawn once (``draw``'s options apply); the page's script then
    reveals the gradients one node at a time in the order backward computed
    them, with a caption saying which consumers the gradient arrived from.
    Call ``root.backward()`` first.
    """
    if root.messages is None and root.parents:
        raise ValueError("animate: call backward() on the root first: there is nothing to replay yet")
    drawing = draw(root, title=title, **draw_options)
    svg = render_bytes(drawing.source, "svg").decode("utf-8")
    svg = svg[svg.index("<svg"):]  # drop the XML prologue and doctype
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
            "caption": f"{name_of(node)}: dL/d({name_of(node)}) = {summary(node.grad)}, {arrival}",
        })
    page = (_ANIMATION_PAGE.replace("__TITLE__", html.escape(title))
            .replace("__STEPS__", json.dumps(steps).replace("</", "<\\/"))
            .replace("__SVG__", svg))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path

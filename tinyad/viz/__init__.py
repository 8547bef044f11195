"""Seeing the gradient: drawings of the graph, the routes a gradient takes, plots, pages.

* ``draw(root)``: the graph as Graphviz DOT text, one box per node (label,
  op, data, grad); ``.render("g.png")`` draws it. ``draw(root, highlight=x)``
  colours the routes of x's gradient and writes the message on every edge.
* ``every_sample(loss)``: a BatchNorm graph with every sample's three routes
  (own x_hat, batch variance, batch mean), every edge labelled.
* ``routes(x, root)``: ``x.grad`` split by route, from the engine's messages.
* ``plot_routes(samples, loss, "routes.png")``: per sample, the routes as stacked
  bars, for batches far too big to draw as a graph.
* ``explore(loss, "page.html")``: a self-contained page: click a sample to colour
  its routes, step the backward pass node by node; ``animate`` is the same for any graph.

Modules: ``render`` (safe text, Graphviz), ``routes``, ``drawing``, ``page``.
"""
from .drawing import ROUTE_COLOURS, Drawing, draw, every_sample
from .page import animate, explore
from .plot import plot_routes, route_table
from .render import RendererMissing, clean, escape, render_bytes
from .routes import routes, statistics_of

__all__ = [
    "draw",
    "every_sample",
    "Drawing",
    "routes",
    "statistics_of",
    "animate",
    "explore",
    "plot_routes",
    "route_table",
    "escape",
    "clean",
    "render_bytes",
    "RendererMissing",
    "ROUTE_COLOURS",
]

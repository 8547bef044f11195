"""Lesson 2: backpropagation by hand through one neuron.

What you will learn
-------------------
A neuron computes o = tanh(w . x + b). To train it we need the gradient of a
loss, here L = (o - target)^2, with respect to the weights w and the bias b
(and, to pass the gradient further down a network, the inputs x). Backward is
the chain rule applied from L down, one node at a time:

    dL/do = 2 (o - target)
    dL/dn = dL/do * (1 - o^2)            n = w . x + b, and tanh'(n) = 1 - tanh(n)^2
    dL/dw_i = dL/dn * x_i                dn/dw_i = x_i
    dL/dx_i = dL/dn * w_i                dn/dx_i = w_i
    dL/db   = dL/dn                      dn/db = 1

This script builds the neuron from Values, derives each of these by hand,
checks every one against the engine with tinyad.check.compare (a table of
rows), repeats the neuron with Tensors to see that both engines agree, and
asks you to write dL/dw yourself.

Run:  python lessons/02_neuron_by_hand.py [--quick] [--wrong] [--out DIR]
"""
import argparse
import math
from pathlib import Path

import numpy as np

import tinyad
from tinyad import Tensor, Value, viz

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--quick", action="store_true", help="skip nothing heavy (this lesson is small anyway)")
parser.add_argument("--wrong", action="store_true", help="use a wrong answer in the exercise to see what it reports")
parser.add_argument("--out", default="lesson-output/02_neuron_by_hand", help="folder for the pictures")
args = parser.parse_args()
out_dir = Path(args.out)

# --- Step 1: the neuron, forward -------------------------------------------------
# Two inputs, two weights, a bias; every number is a labelled Value.
x = [Value(1.5, label="x1"), Value(-0.5, label="x2")]
w = [Value(0.8, label="w1"), Value(-1.2, label="w2")]
b = Value(0.1, label="b")
target = 0.5

wx1 = w[0] * x[0]
wx1.label = "w1*x1"
wx2 = w[1] * x[1]
wx2.label = "w2*x2"
n = wx1 + wx2 + b
n.label = "n"
o = n.tanh()
o.label = "o"
error = o - Value(target, label="target")
error.label = "o - target"
L = error**2
L.label = "L"
print(f"n = w.x + b = {n.data:.6f}")
print(f"o = tanh(n) = {o.data:.6f}")
print(f"L = (o - {target})^2 = {L.data:.6f}")

# --- Step 2: backward, by the engine ------------------------------------------------
L.backward()
print("\nengine gradients:")
for node in (o, n, *w, b, *x):
    print(f"  dL/d{node.label:3s} = {node.grad: .6f}")

# --- Step 3: backward, by hand ------------------------------------------------------
# Plain floats, from the top down: each line is the one above times a local
# derivative. Nothing here calls the engine.
hand = {}
hand["o"] = 2 * (o.data - target)
hand["n"] = hand["o"] * (1 - o.data**2)
hand["w1"] = hand["n"] * x[0].data
hand["w2"] = hand["n"] * x[1].data
hand["b"] = hand["n"] * 1.0
hand["x1"] = hand["n"] * w[0].data
hand["x2"] = hand["n"] * w[1].data

# --- Step 4: hand against engine ------------------------------------------------------
# compare says whether the two agree bit for bit (exact) and within rounding
# (approximate). Exact equality is common here: the hand formulas multiply
# the same floats in the same order as the engine.
nodes = {"o": o, "n": n, "w1": w[0], "w2": w[1], "b": b, "x1": x[0], "x2": x[1]}
rows = [tinyad.check.compare(f"dL/d{name}", hand[name], node, show=False) for name, node in nodes.items()]
print("\nhand derivation against the engine:")
print(tinyad.check.format_table(rows))

# --- Step 5: the same neuron with Tensors ----------------------------------------------
# w . x becomes one matrix product; the Tensor engine derives the same numbers.
x_t = Tensor([x[0].data, x[1].data], requires_grad=True, label="x")
w_t = Tensor([w[0].data, w[1].data], requires_grad=True, label="w")
b_t = Tensor(b.data, requires_grad=True, label="b")
L_t = ((w_t @ x_t + b_t).tanh() - target) ** 2
L_t.backward()
print("\nTensor neuron against Value neuron:")
print(tinyad.check.format_table([
    tinyad.check.compare("dL/dw (tensor)", [w[0].grad, w[1].grad], w_t, show=False),
    tinyad.check.compare("dL/db (tensor)", b.grad, b_t, show=False),
    tinyad.check.compare("dL/dx (tensor)", [x[0].grad, x[1].grad], x_t, show=False),
]))


# --- Exercise: dL/dw for the whole neuron -----------------------------------------------
# Given only numbers, run the neuron forward and return [dL/dw1, dL/dw2].
# Hint: three local derivatives stand between L and w_i.
def your_weight_gradient(x: list, w: list, b: float, target: float) -> list:  # EXERCISE
    o = math.tanh(w[0] * x[0] + w[1] * x[1] + b)
    dL_do = 2 * (o - target)
    if args.wrong:
        return [dL_do * x[0], dL_do * x[1]]  # skipped tanh: forgot the factor 1 - o^2
    dL_dn = dL_do * (1 - o**2)
    return [dL_dn * x[0], dL_dn * x[1]]


answer = your_weight_gradient([1.5, -0.5], [0.8, -1.2], 0.1, target)
engine = np.array([w[0].grad, w[1].grad])
verdict = tinyad.check.compare("your dL/dw", answer, engine, show=False)
print(f"\nexercise: your dL/dw = {np.round(answer, 6).tolist()}, engine = {np.round(engine, 6).tolist()}:",
      "right!" if verdict.approximate else "not yet: between L and w sit (o - target)^2, tanh and w.x + b")

# --- Step 6: the picture ------------------------------------------------------------------
# Read the grads from L (grad 1) down to w1 and w2: each box is the one above
# times a local derivative, exactly the lines of step 3.
drawing = viz.draw(L, title="one neuron: L = (tanh(w1*x1 + w2*x2 + b) - target)^2")
try:
    picture = drawing.render(out_dir / "neuron.png")
    print(f"\npicture: {picture}")
except viz.RendererMissing as missing:
    print(f"\n{missing}\nDOT source: {out_dir / 'neuron.dot'}")

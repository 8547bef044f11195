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

Run:  python lessons/02_neuron_by_hand.py [--quick] [--check | --solution | --wrong] [--out DIR]
"""
import argparse
import math
from pathlib import Path

import numpy as np

import tinyad
from tinyad import Tensor, Value, viz
from tinyad.exercises import Exercise, add_arguments

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--quick", action="store_true", help="skip nothing heavy (this lesson is small anyway)")
add_arguments(parser)  # --check, --solution, --wrong: how the exercise is graded
parser.add_argument("--out", default="lesson-output/02_neuron_by_hand", help="folder for the pictures")
args = parser.parse_args()
out_dir = Path(args.out)

# %% Step 1: the neuron, forward
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

# %% Step 2: backward, by the engine
L.backward()
print("\nengine gradients:")
for node in (o, n, *w, b, *x):
    print(f"  dL/d{node.label:3s} = {node.grad: .6f}")

# %% Step 3: backward, by hand
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

# %% Step 4: hand against engine
# compare says whether the two agree bit for bit (exact) and within rounding
# (approximate). Exact equality is common here: the hand formulas multiply
# the same floats in the same order as the engine.
nodes = {"o": o, "n": n, "w1": w[0], "w2": w[1], "b": b, "x1": x[0], "x2": x[1]}
rows = [tinyad.check.compare(f"dL/d{name}", hand[name], node, show=False) for name, node in nodes.items()]
print("\nhand derivation against the engine:")
print(tinyad.check.format_table(rows))

# %% Step 5: the same neuron with Tensors
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


# %% Exercise: dL/dw for the whole neuron
# Given only numbers, run the neuron forward and return [dL/dw1, dL/dw2].
# Replace the `raise NotImplementedError` line below with your code and run
# the lesson again (`--check` tries more neurons, `--solution` shows one answer).
def your_weight_gradient(x: list, w: list, b: float, target: float) -> list:  # EXERCISE: write this function
    """[dL/dw1, dL/dw2] for L = (tanh(w1*x1 + w2*x2 + b) - target)^2, from plain floats."""
    raise NotImplementedError("your turn: return [dL/dw1, dL/dw2]")


def engine_weight_gradient(x: list, w: list, b: float, target: float) -> list:
    """The engine's answer, to grade yours with: the same neuron built from Values."""
    weights = [Value(value) for value in w]
    output = (weights[0] * x[0] + weights[1] * x[1] + b).tanh()
    ((output - target) ** 2).backward()
    return [weight.grad for weight in weights]


exercise = Exercise(
    "02_neuron_by_hand",
    task="your_weight_gradient(x, w, b, target) returns [dL/dw1, dL/dw2] for L = (tanh(w . x + b) - target)^2",
    hints=("three local derivatives stand between L and w_i: dL/do, do/dn and dn/dw_i (o = tanh(n), n = w . x + b)",
           "dL/do = 2 (o - target), do/dn = 1 - o^2, dn/dw_i = x_i: multiply the three for each weight"),
    engine=engine_weight_gradient,
    cases=[([1.5, -0.5], [0.8, -1.2], 0.1, target), ([0.3, 2.0], [-0.4, 0.9], -0.5, -0.2),
           ([-1.0, 1.0], [0.1, 0.2], 0.0, 0.9)],
)
answer = exercise.run(your_weight_gradient, args)

# %% Step 6: the picture
# Read the grads from L (grad 1) down to w1 and w2: each box is the one above
# times a local derivative, exactly the lines of step 3.
drawing = viz.draw(L, title="one neuron: L = (tanh(w1*x1 + w2*x2 + b) - target)^2")
try:
    picture = drawing.render(out_dir / "neuron.png")
    print(f"\npicture: {picture}")
except viz.RendererMissing as missing:
    print(f"\n{missing}\nDOT source: {out_dir / 'neuron.dot'}")

"""Lesson 1: the derivative, and the chain rule on Values.

What you will learn
-------------------
A derivative is a slope: how much f(x) moves when x moves by a tiny h. You can
measure it with two evaluations of f (a finite difference), but an autodiff
engine gets it exactly, and for every input at once, by the chain rule:

    L = f(g(h(x)))   =>   dL/dx = f'(g(h(x))) * g'(h(x)) * h'(x)

Each operation only knows its own local derivative; backward multiplies them
along the path from L back to x, and where a node is used twice the
contributions of its uses add up. This script

  1. measures a slope with forward and central differences,
  2. lets a Value compute the same slope exactly,
  3. follows the chain rule link by link through L = exp(tanh(x**2)),
  4. shows that the gradient of a node used twice is the sum of two messages,
  5. checks the engine against finite differences (by hand and with gradcheck),
  6. asks you to write dL/dx yourself (the exercise), and
  7. draws the graph with every data and grad.

Run:  python lessons/01_chain_rule.py [--quick] [--check | --solution | --wrong] [--out DIR]
"""
import argparse
import math
from pathlib import Path

import tinyad
from tinyad import Value, viz
from tinyad.exercises import Exercise, add_arguments

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--quick", action="store_true", help="fewer step sizes in step 1 (this lesson is small anyway)")
add_arguments(parser)  # --check, --solution, --wrong: how the exercise is graded
parser.add_argument("--out", default="lesson-output/01_chain_rule", help="folder for the pictures")
args = parser.parse_args()
out_dir = Path(args.out)

# %% Step 1: a slope, measured
# f(x) = x^3 - 2x has the derivative f'(x) = 3x^2 - 2, so f'(1.5) = 4.75.
# The forward difference (f(x+h) - f(x)) / h is off by about h * f''(x) / 2;
# the central difference (f(x+h) - f(x-h)) / 2h cancels that term, and its
# error shrinks like h^2. Too small an h loses digits to rounding instead.


def f(x):
    return x**3 - 2 * x


x0, exact = 1.5, 3 * 1.5**2 - 2
print(f"f(x) = x^3 - 2x at x = {x0}: exact slope f'(x) = {exact}")
print(f"  {'h':>7s} {'forward':>14s} {'error':>9s} {'central':>14s} {'error':>9s}")
for h in ([1e-1, 1e-4] if args.quick else [1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6]):
    forward = (f(x0 + h) - f(x0)) / h
    central = (f(x0 + h) - f(x0 - h)) / (2 * h)
    print(f"  {h:7.0e} {forward:14.10f} {abs(forward - exact):9.1e} {central:14.10f} {abs(central - exact):9.1e}")

# %% Step 2: the same slope from the engine
# A Value records how it was computed; backward() walks that record in reverse.
x = Value(x0, label="x")
y = f(x)
y.backward()
print(f"\nengine: f(1.5) = {y.data}, df/dx = {x.grad}   (exact {exact})")

# %% Step 3: the chain rule, one link at a time
# L = exp(tanh(x^2)) is three functions in a row: u = x^2, v = tanh(u), L = exp(v).
# Local derivatives: dL/dv = exp(v) = L,  dv/du = 1 - v^2,  du/dx = 2x.
x = Value(0.7, label="x")
u = x**2
u.label = "u = x**2"
v = u.tanh()
v.label = "v = tanh(u)"
L = v.exp()
L.label = "L = exp(v)"
L.backward()
dL_dv, dv_du, du_dx = L.data, 1 - v.data**2, 2 * x.data
print(f"\nL = exp(tanh(x^2)) at x = {x.data}:  u = {u.data:.6f}, v = {v.data:.6f}, L = {L.data:.6f}")
print(f"  local derivatives: dL/dv = {dL_dv:.6f}, dv/du = {dv_du:.6f}, du/dx = {du_dx:.6f}")
# Backward fills in the gradient of every node, intermediates included: read
# them as "dL/dv, then dL/du = dL/dv * dv/du, then dL/dx = dL/du * du/dx".
print(f"  v.grad = {v.grad:.6f}   (dL/dv)")
print(f"  u.grad = {u.grad:.6f}   (dL/dv * dv/du = {dL_dv * dv_du:.6f})")
print(f"  x.grad = {x.grad:.6f}   (dL/dv * dv/du * du/dx = {dL_dv * dv_du * du_dx:.6f})")

# %% Step 4: a node used twice: the messages add up
# In q = a*b + a, the Value a feeds two operations. Each sends its own
# gradient message back to a (b from the product, 1 from the sum), and
# a.grad is their sum: the multivariable chain rule.
a, b = Value(2.0, label="a"), Value(-3.0, label="b")
product = a * b
product.label = "a*b"
q = product + a
q.label = "q"
q.backward()
from_product, from_sum = tinyad.message(product, a), tinyad.message(q, a)
print(f"\nq = a*b + a:  message from a*b = {from_product}, message from + = {from_sum}, "
      f"sum = {from_product + from_sum}, a.grad = {a.grad}")

# %% Step 5: checking the engine against finite differences
# A central difference needs only forward passes, so it is an independent
# check of backward. Here it is by hand, then with tinyad.check.gradcheck,
# which does the same for every element of every input.


def chain(x):
    return (x**2).tanh().exp()


h = 1e-5
central = (chain(Value(0.7 + h)).data - chain(Value(0.7 - h)).data) / (2 * h)
print(f"\nengine dL/dx = {x.grad:.12f}")
print(f"central difference (h = {h:g}) = {central:.12f}   difference = {abs(central - x.grad):.1e}")
print("gradcheck L = exp(tanh(x^2)):", tinyad.check.gradcheck(chain, [Value(0.7, label="x")]))
print("gradcheck q = a*b + a (two inputs):",
      tinyad.check.gradcheck(lambda a, b: a * b + a, [Value(2.0, label="a"), Value(-3.0, label="b")]))


# %% Exercise: the chain rule, by you
# Write dL/dx for L = exp(tanh(x^2)) using only math (no Values): multiply the
# three local derivatives. Replace the `raise NotImplementedError` line below
# with your code and run the lesson again: `--check` grades it on more
# examples, `--solution` shows the reference answer (lessons/solutions/).
def your_chain_rule(x: float) -> float:  # EXERCISE: write this function
    """dL/dx of L = exp(tanh(x**2)) at the number x, as a float."""
    raise NotImplementedError("your turn: return dL/dx")


def engine_chain_rule(x: float) -> float:
    """The engine's answer, to grade yours with."""
    leaf = Value(x)
    chain(leaf).backward()
    return leaf.grad


exercise = Exercise(
    "01_chain_rule",
    task="your_chain_rule(x) returns dL/dx of L = exp(tanh(x**2)) as a float (use math.tanh and math.exp)",
    hints=("three local derivatives stand between L and x: dL/dv, dv/du and du/dx; multiply them",
           "with u = x**2 and v = tanh(u): dL/dv = exp(v), dv/du = 1 - v**2 and du/dx = 2*x"),
    engine=engine_chain_rule,
    cases=[(0.7,), (-1.3,), (0.05,), (2.0,)],
)
answer = exercise.run(your_chain_rule, args)

# %% Step 6: the picture
# Each box shows a node's label, op, data and grad; read the grads from the
# output (grad 1) back to x and you see the chain rule's running product.
drawing = viz.draw(L, title="L = exp(tanh(x**2)): grads multiply along the chain")
try:
    picture = drawing.render(out_dir / "chain_rule.png")
    print(f"\npicture: {picture}")
except viz.RendererMissing as missing:
    print(f"\n{missing}\nDOT source: {out_dir / 'chain_rule.dot'}")

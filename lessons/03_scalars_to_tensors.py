"""Lesson 3: from Values to Tensors, and why broadcast gradients are summed.

What you will learn
-------------------
A Tensor is many numbers moved by one node: the same derivative rules as for
Values, applied to whole arrays. Arrays of different shapes combine by
broadcasting (NumPy's rule): adding a bias of shape (3,) to a batch of shape
(4, 3) uses the same bias row for all 4 samples. So each bias number feeds 4
outputs, and, exactly as for a Value used 4 times, its gradient is the SUM of
the 4 messages it receives: the column sum of the upstream gradient.

    Y = X + b      X: (4, 3), b: (3,)      =>   dL/db_j = sum_i dL/dY_ij

This script shows the elementwise rules agree between the two engines,
builds X + b with Tensors and with a grid of Values, checks that the bias
gradient is the column sum in both, does the same for a (4, 1) column
stretched along the other axis, and asks you to write the bias gradient.

Run:  python lessons/03_scalars_to_tensors.py [--quick] [--check | --solution | --wrong] [--out DIR]
"""
import argparse
from pathlib import Path

import numpy as np

import tinyad
from tinyad import Tensor, Value, viz
from tinyad.exercises import Exercise, add_arguments

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--quick", action="store_true", help="skip nothing heavy (this lesson is small anyway)")
add_arguments(parser)  # --check, --solution, --wrong: how the exercise is graded
parser.add_argument("--out", default="lesson-output/03_scalars_to_tensors", help="folder for the pictures")
args = parser.parse_args()
out_dir = Path(args.out)
rng = np.random.default_rng(3)
np.set_printoptions(precision=6, suppress=True)


def numbers(array) -> str:
    """One line of numbers, space separated, so they are easy to read (and to parse)."""
    return " ".join(f"{v: .6f}" for v in np.ravel(array))


# %% Step 1: one Tensor op = many Value ops
# tanh of three numbers: three Value nodes, or one Tensor node. The
# derivative rule (1 - tanh^2) is the same, applied elementwise.
data = np.array([-1.0, 0.5, 2.0])
values = [Value(v) for v in data]
for value in values:
    value.tanh().backward()
as_tensor = Tensor(data, requires_grad=True)
as_tensor.tanh().sum().backward()
print("d tanh / dx, three Values:", numbers([v.grad for v in values]))
print("d tanh / dx, one Tensor  :", numbers(as_tensor.grad))

# %% Step 2: broadcasting, forward
# NumPy lines shapes up from the right; an axis that is missing or has size 1
# is stretched (without copying) to match the other operand.
X = Tensor(rng.normal(size=(4, 3)).round(2), requires_grad=True, label="X")
b = Tensor([0.5, -1.0, 2.0], requires_grad=True, label="b")
Y = X + b
Y.label = "Y = X + b"
print(f"\nX {X.shape} + b {b.shape} -> Y {Y.shape}: every row of X gets the same b")
print("Y - X =\n", Y.data - X.data)

# %% Step 3: broadcasting, backward
# A loss that weighs every output differently: L = sum(G * Y), so dL/dY = G.
G = rng.normal(size=(4, 3)).round(2)
L = (Y * Tensor(G, label="G")).sum()
L.label = "L"
L.backward()
print("\nupstream dL/dY = G =\n", G)
print("b.grad (engine)     :", numbers(b.grad))
print("column sum of G     :", numbers(G.sum(axis=0)))
print("X.grad (engine) is G itself:", bool(np.array_equal(X.grad, G)), "  shape", X.grad.shape)

# %% Step 4: the same with Values: each bias number is used 4 times
# With one Value per number, b_j is an input of 4 additions; backward sends
# it 4 messages (one per row) and adds them up: no special rule needed.
Xv = [[Value(float(X.data[i, j]), label=f"X[{i},{j}]") for j in range(3)] for i in range(4)]
bv = [Value(float(b.data[j]), label=f"b[{j}]") for j in range(3)]
Yv = [[Xv[i][j] + bv[j] for j in range(3)] for i in range(4)]
Lv = sum((Yv[i][j] * float(G[i, j]) for i in range(4) for j in range(3)), Value(0.0))
Lv.backward()
messages = [tinyad.message(Yv[i][0], bv[0]) for i in range(4)]
print(f"\nValues: the 4 messages into b[0]: {numbers(messages)}  sum = {sum(messages):.6f}")
print("b.grad (Values)     :", numbers([v.grad for v in bv]))
# The Values add the four messages in a different order than NumPy's sum, so
# they may differ in the last bit: "approximate", not always "exact".
print("\nthree ways to the bias gradient:")
print(tinyad.check.format_table([
    tinyad.check.compare("Tensor vs sum", G.sum(axis=0), b, show=False),
    tinyad.check.compare("Values vs sum", G.sum(axis=0), [v.grad for v in bv], show=False),
    tinyad.check.compare("Tensor vs Values", [v.grad for v in bv], b, show=False),
]))

# %% Step 5: stretched along the other axis
# A (4, 1) column c times a (3,) row r gives a (4, 3) grid. c was stretched
# along axis 1, so its gradient sums over axis 1 and keeps the shape (4, 1);
# r was stretched along axis 0, so its gradient sums over axis 0.
c = Tensor(rng.normal(size=(4, 1)).round(2), requires_grad=True, label="c")
r = Tensor([1.0, 2.0, -1.0], requires_grad=True, label="r")
((c * r) * Tensor(G)).sum().backward()
print(f"\n(4, 1) * (3,): c.grad has shape {c.grad.shape}, r.grad has shape {r.grad.shape}")
print(tinyad.check.format_table([
    tinyad.check.compare("c: sum axis 1", (G * r.data).sum(axis=1, keepdims=True), c, show=False),
    tinyad.check.compare("r: sum axis 0", (G * c.data).sum(axis=0), r, show=False),
]))
print("gradcheck (X + b) and (c * r):", tinyad.check.gradcheck(
    lambda X, b, c, r: ((X + b) * Tensor(G)).sum() + ((c * r) * Tensor(G)).sum(), [X, b, c, r]))


# %% Exercise: the bias gradient
# Given dL/dY of shape (N, D) for Y = X + b with b of shape (D,), return dL/db.
# Replace the `raise NotImplementedError` line below with your code and run
# the lesson again (`--check` tries other shapes, `--solution` shows one answer).
def your_bias_gradient(upstream: np.ndarray) -> np.ndarray:  # EXERCISE: write this function
    """dL/db, shape (D,), from dL/dY of shape (N, D), for Y = X + b."""
    raise NotImplementedError("your turn: return dL/db")


def engine_bias_gradient(upstream: np.ndarray) -> np.ndarray:
    """The engine's answer, to grade yours with: backward through X + b with L = sum(upstream * Y)."""
    bias = Tensor(np.zeros(upstream.shape[1]), requires_grad=True)
    ((Tensor(np.zeros(upstream.shape)) + bias) * Tensor(upstream)).sum().backward()
    return bias.grad


exercise = Exercise(
    "03_scalars_to_tensors",
    task="your_bias_gradient(upstream) returns dL/db, shape (D,), given dL/dY of shape (N, D) for Y = X + b",
    hints=("b_j is used once in every row of Y: what do several uses of one number do to its gradient?",
           "each use sends its own message dL/dY_ij and the messages add: sum the rows (axis 0), do not average"),
    engine=engine_bias_gradient,
    cases=[(G,), (rng.normal(size=(7, 2)),), (rng.normal(size=(1, 5)),)],
)
answer = exercise.run(your_bias_gradient, args)

# %% Step 6: the picture
# One box per Tensor: the (3,) b and its (3,) grad next to the (4, 3) Y.
drawing = viz.draw(L, title="Y = X + b with b broadcast over 4 rows: b.grad is the column sum of G")
try:
    picture = drawing.render(out_dir / "broadcast.png")
    print(f"\npicture: {picture}")
except viz.RendererMissing as missing:
    print(f"\n{missing}\nDOT source: {out_dir / 'broadcast.dot'}")

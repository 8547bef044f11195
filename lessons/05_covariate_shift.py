"""Lesson 5: internal covariate shift, and why sigmoids stop learning when they saturate.

What you will learn
-------------------
A layer deep in a network learns a mapping from its inputs to its outputs.
But its inputs are the outputs of the layers below, and those change at every
step of training. Ioffe and Szegedy (2015) call this change of distribution
"internal covariate shift": each layer chases a moving target.

The shift is worst with saturating nonlinearities. sigmoid'(z) = s (1 - s) is
0.25 at z = 0 and below 0.02 once |z| > 4, so a pre-activation pushed far from
0 passes back almost no gradient: the unit stops learning.

This script
  1. trains a 10 -> 32 -> 32 -> 2 sigmoid network and measures, on a fixed
     probe batch, how the inputs of the second hidden layer drift (mean, std,
     the 15th/50th/85th percentiles of one unit, as in the paper's Figure 1),
  2. splits that drift into the part from the layer below (layer 2 frozen)
     and the part from layer 2's own learning (layer 1 frozen), and says
     which is larger,
  3. prints sigmoid'(z) from the engine at a few z,
  4. measures, for well- and badly-scaled inputs, the fraction of
     pre-activations outside the linear region and the gradient that reaches them,
  5. asks you for sigmoid's derivative.

Run:  python lessons/05_covariate_shift.py [--quick] [--check | --solution | --wrong] [--out DIR]
"""
import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # draw into files, no window
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import make_classification

import tinyad
from tinyad import Tensor, Value, nn
from tinyad.exercises import Exercise, add_arguments
from tinyad.nn.functional import cross_entropy

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--quick", action="store_true", help="train for fewer steps")
add_arguments(parser)  # --check, --solution, --wrong: how the exercise is graded
parser.add_argument("--out", default="lesson-output/05_covariate_shift", help="folder for the pictures")
args = parser.parse_args()
out_dir = Path(args.out)
out_dir.mkdir(parents=True, exist_ok=True)
tinyad.manual_seed(0)
rng = np.random.default_rng(0)

# %% Step 1: data and a sigmoid network
# 10 features, standardized (mean 0, std 1 per feature), 2 classes.
features, labels = make_classification(n_samples=1200, n_features=10, n_informative=6, random_state=0)
features = (features - features.mean(axis=0)) / features.std(axis=0)
labels = labels.astype(np.int64)
layer1, layer2, layer3 = nn.Linear(10, 32), nn.Linear(32, 32), nn.Linear(32, 2)
model = nn.Sequential(layer1, nn.Sigmoid(), layer2, nn.Sigmoid(), layer3)
optimizer = tinyad.optim.SGD(model.parameters(), lr=1.0)
probe = Tensor(features[:500])  # always the same 500 points, so only the network changes
initial_layer2 = (layer2.weight.data.copy(), layer2.bias.data.copy())


def measure() -> tuple:
    """Layer 2's inputs h1 = sigmoid(layer1(x)) and its pre-activations z2 = layer2(h1)."""
    with tinyad.no_grad():
        h1 = layer1(probe).sigmoid()
        z2 = layer2(h1)
    return h1.data, z2.data


# %% Step 2: train, and watch the inputs of layer 2 move
# SGD, batches of 32. Every few steps, the probe batch goes through layers 1 and 2.
steps = 400 if args.quick else 2000
every, record_every = steps // 8, steps // 40  # print 8 rows, plot 40 points
h1_start, z2_start = measure()
history = []
# h1 shift: how far the 32 unit means of layer 2's inputs have moved since step 0
# (on average); h1 std: their spread; z2[0]: one unit's pre-activation.
print(f"{'step':>5s} | {'h1 shift':>8s} {'h1 std':>6s} | {'z2[0] p15':>9s} {'p50':>6s} {'p85':>6s} | {'|z2|>2':>6s} | loss")
for step in range(steps + 1):
    if step % record_every == 0:
        h1, z2 = measure()
        p15, p50, p85 = np.percentile(z2[:, 0], [15, 50, 85])
        outside = float((np.abs(z2) > 2).mean())
        history.append((step, p15, p50, p85, outside))
    if step % every == 0:
        shown_loss = f"{loss.item():.3f}" if step else "-"
        shift = np.abs(h1.mean(axis=0) - h1_start.mean(axis=0)).mean()
        print(f"{step:5d} | {shift:8.4f} {h1.std():6.3f} | {p15:9.3f} {p50:6.3f} {p85:6.3f} | {outside:6.3f} | {shown_loss}")
    if step == steps:
        break
    batch = rng.choice(len(features), size=32, replace=False)
    loss = cross_entropy(model(Tensor(features[batch])), labels[batch])
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()

h1_end, z2_end = measure()
unit_shift = np.abs(h1_end.mean(axis=0) - h1_start.mean(axis=0))
print(f"\ndrift of layer 2's inputs: each of its 32 input units moved its mean by {unit_shift.mean():.4f} on average "
      f"(largest {unit_shift.max():.4f})")
print(f"drift of unit 0's pre-activation z2[0]: median {np.median(z2_start[:, 0]):.3f} -> {np.median(z2_end[:, 0]):.3f}, "
      f"std {z2_start[:, 0].std():.3f} -> {z2_end[:, 0].std():.3f}")

# %% Step 3: whose change is it? The layer below, or layer 2 itself
# z2 = W2 h1 + b2 moves for two reasons: its inputs h1 move (the layer below
# learns: covariate shift proper), and its own weights W2 learn. Two
# counterfactuals separate them:
#   layer 2 frozen at its initial weights, on layer 1's trained outputs:  the layer below alone;
#   layer 2's trained weights, on layer 1's initial outputs:              layer 2's own learning alone.
frozen_weight, frozen_bias = initial_layer2
z2_frozen = h1_end @ frozen_weight.T + frozen_bias
z2_own = h1_start @ layer2.weight.data.T + layer2.bias.data
total_move = abs(np.median(z2_end[:, 0]) - np.median(z2_start[:, 0]))
below_move = abs(np.median(z2_frozen[:, 0]) - np.median(z2_start[:, 0]))
own_move = abs(np.median(z2_own[:, 0]) - np.median(z2_start[:, 0]))
print(f"layer 2 frozen at its initial weights: z2[0] median {np.median(z2_start[:, 0]):.3f} -> "
      f"{np.median(z2_frozen[:, 0]):.3f}, std {z2_start[:, 0].std():.3f} -> {z2_frozen[:, 0].std():.3f} "
      f"(shift from layer 1 alone: {below_move:.3f})")
print(f"layer 1 frozen at its initial weights: z2[0] median {np.median(z2_start[:, 0]):.3f} -> "
      f"{np.median(z2_own[:, 0]):.3f}, std {z2_start[:, 0].std():.3f} -> {z2_own[:, 0].std():.3f} "
      f"(shift from layer 2's own learning alone: {own_move:.3f})")
# The sentence below is written from the numbers, whichever way they fall.
share = below_move / total_move if total_move > 0 else float("nan")
larger = "the layer below" if below_move > own_move else "layer 2's own learning"
print(f"so: of the {total_move:.3f} that z2[0]'s median moved, the layer below alone moves it by {below_move:.3f} "
      f"({share:.0%}) and layer 2's own weights alone by {own_move:.3f}: here most of the drift comes from {larger}. "
      f"The inputs h1 do move (by {unit_shift.mean():.4f} per unit on average), a moving target for layer 2 to chase.")

# The paper's Figure 1 style: percentiles of one unit's input over training.
steps_seen, p15s, p50s, p85s, outsides = map(np.array, zip(*history))
figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
left.fill_between(steps_seen, p15s, p85s, color="#1f77b4", alpha=0.25, label="15th to 85th percentile")
left.plot(steps_seen, p50s, color="#1f77b4", label="median")
left.set_xlabel("training step")
left.set_ylabel("z2[0], input of a layer-2 sigmoid")
left.set_title("internal covariate shift: one unit's input distribution")
left.legend()
right.plot(steps_seen, outsides, color="#d62728")
right.set_xlabel("training step")
right.set_ylabel("fraction of |z2| > 2")
right.set_title("layer-2 pre-activations outside the linear region")
figure.tight_layout()
figure.savefig(out_dir / "covariate_shift.png", dpi=120)
plt.close(figure)
print(f"\npicture: {out_dir / 'covariate_shift.png'}")

# %% Step 4: sigmoid'(z), from the engine
# The gradient a sigmoid passes back is upstream * sigmoid'(z): a factor of at most 0.25.
print("\nsigmoid'(z) from the engine, against s (1 - s):")
for z in [0.0, 1.0, 2.0, 4.0, 6.0, 10.0]:
    node = Value(z)
    s = node.sigmoid()
    s.backward()
    print(f"  sigmoid'({z:4.1f}) = {node.grad:.3e}   s (1 - s) = {s.data * (1 - s.data):.3e}   "
          f"({node.grad / 0.25:6.2%} of the peak)")

# %% Step 5: saturation, measured
# The same features in other units (times 10) enter a fresh sigmoid layer.
# With L = sum(G * sigmoid(z)) for a random G, dL/dz = G * sigmoid'(z); the
# engine keeps the intermediate z's gradient, so we can read it directly.
tinyad.manual_seed(1)
fresh = nn.Linear(10, 32)
G = rng.normal(size=(500, 32))
saturation = {}
for name, scale in (("standardized", 1.0), ("scaled x10", 10.0)):
    z = fresh(Tensor(features[:500] * scale))
    z.label = "z"
    (z.sigmoid() * Tensor(G)).sum().backward()
    s = 1 / (1 + np.exp(-z.data))
    saturation[name] = dict(
        beyond2=float((np.abs(z.data) > 2).mean()),
        beyond4=float((np.abs(z.data) > 4).mean()),
        mean_slope=float((s * (1 - s)).mean()),
        mean_grad=float(np.abs(z.grad).mean()),
        z=z.data.ravel(),
    )
print("\nsaturation of a fresh sigmoid layer:")
slope_header = "mean sigmoid'(z)"
print(f"  {'inputs':13s} | {'|z|>2':>6s} | {'|z|>4':>6s} | {slope_header:>16s} | {'mean |dL/dz|':>12s}")
for name, row in saturation.items():
    print(f"  {name:13s} | {row['beyond2']:6.3f} | {row['beyond4']:6.3f} | {row['mean_slope']:16.4f} | {row['mean_grad']:12.4f}")
ratio = saturation["standardized"]["mean_grad"] / saturation["scaled x10"]["mean_grad"]
print(f"  the gradient reaching z is {ratio:.1f} times smaller with the badly scaled inputs")

grid = np.linspace(-10, 10, 400)
sig = 1 / (1 + np.exp(-grid))
figure, axis = plt.subplots(figsize=(6, 3.5))
axis.hist(saturation["standardized"]["z"], bins=60, range=(-10, 10), density=True, alpha=0.5, label="z, standardized inputs")
axis.hist(saturation["scaled x10"]["z"], bins=60, range=(-10, 10), density=True, alpha=0.5, label="z, inputs x10")
axis.plot(grid, sig * (1 - sig), color="k", label="sigmoid'(z)")
axis.axvspan(-10, -2, color="#d62728", alpha=0.08)
axis.axvspan(2, 10, color="#d62728", alpha=0.08)
axis.set_xlabel("pre-activation z (shaded: |z| > 2)")
axis.set_title("saturated sigmoids pass back little gradient")
axis.legend(fontsize=8)
figure.tight_layout()
figure.savefig(out_dir / "sigmoid_saturation.png", dpi=120)
plt.close(figure)
print(f"\npicture: {out_dir / 'sigmoid_saturation.png'}")


# %% Exercise: sigmoid's derivative
# Given the pre-activations z (a NumPy array), return d sigmoid(z) / dz
# elementwise. Replace the `raise NotImplementedError` line below and run the
# lesson again: `--check` grades it on more arrays, `--solution` shows the reference.
def your_sigmoid_derivative(z: np.ndarray) -> np.ndarray:  # EXERCISE: write this function
    """sigmoid'(z), elementwise, as an array of z's shape."""
    raise NotImplementedError("your turn: return sigmoid'(z)")


def engine_sigmoid_derivative(z: np.ndarray) -> np.ndarray:
    """The engine's answer: backward through Tensor.sigmoid."""
    leaf = Tensor(z, requires_grad=True)
    leaf.sigmoid().sum().backward()
    return leaf.grad


exercise = Exercise(
    "05_covariate_shift",
    task="your_sigmoid_derivative(z) returns d sigmoid(z)/dz for every element of the array z",
    hints=("write it with the output s = sigmoid(z) = 1 / (1 + exp(-z)), not with z itself",
           "sigmoid'(z) = s * (1 - s): largest (0.25) at z = 0, near 0 where the unit saturates"),
    engine=engine_sigmoid_derivative,
    cases=[(np.array([-4.0, -1.0, 0.0, 0.5, 3.0]),), (np.linspace(-8.0, 8.0, 9),), (np.array([[12.0, -12.0], [0.1, -0.1]]),)],
)
answer = exercise.run(your_sigmoid_derivative, args)
print(f"sigmoid'(z) at z = [-4, -1, 0, 0.5, 3]: {np.round(answer, 6).tolist()}")

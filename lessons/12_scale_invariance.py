"""Lesson 12: BatchNorm makes a layer blind to the scale of its weights (the paper's Section 3.3).

What you will learn
-------------------
A layer followed by BatchNorm computes BN(W u). Scale the weights by any a > 0
and the batch mean and the batch standard deviation scale by a too, so they
cancel:

    BN((a W) u) = BN(W u)                              (up to eps)

Differentiate both sides. The gradient with respect to the layer's input u
does not change, and the gradient with respect to the scaled weights shrinks
by 1 / a:

    dL/du   at a W  =  dL/du at W
    dL/d(aW)        =  (1/a) dL/dW

So larger weights get smaller gradients, and the relative size of an update,
lr |dL/dW| / |W|, falls like 1 / a^2: if a large learning rate makes the
weights grow, their updates shrink and the training steadies itself. This is
the paper's argument for higher learning rates and for caring less about the
initialization. This script

  1. checks BN((a W) u) = BN(W u) for a from 0.01 to 100, and shows where eps
     breaks it,
  2. measures the two gradients and the relative update against a,
  3. draws the gradient norms against a (slopes 0 and -1 on log-log axes),
  4. trains a 6-layer tanh network on the digits with a too-large
     initialization, with and without BatchNorm, and draws per layer the
     activation and gradient histograms and the update-to-data ratios,
  5. asks you to predict the gradients at scale a from those at scale 1.

Run:  python lessons/12_scale_invariance.py [--quick] [--check | --solution | --wrong] [--out DIR]
"""
import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # draw into files, no window
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits

import tinyad
from tinyad import Tensor, nn
from tinyad.exercises import Exercise, add_arguments
from tinyad.nn.functional import batch_norm, cross_entropy

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--quick", action="store_true", help="train for fewer steps")
add_arguments(parser)  # --check, --solution, --wrong: how the exercise is graded
parser.add_argument("--out", default="lesson-output/12_scale_invariance", help="folder for the pictures")
args = parser.parse_args()
out_dir = Path(args.out)
out_dir.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(12)
tinyad.manual_seed(12)
EPS = 1e-5

# %% Step 1: BN((a W) u) = BN(W u)
# A batch u of 64 inputs with 20 features, a layer W with 10 outputs. The
# batch variance of (a W) u is a^2 times that of W u, so x_hat is unchanged,
# except that eps, added to the variance, does not scale: when a^2 var comes
# near eps (about 1e-5), the two outputs part.
u = rng.normal(size=(64, 20))
W = rng.normal(size=(10, 20))
upstream = rng.normal(size=(64, 10))  # the loss L = sum(upstream * BN((a W) u)), so dL/dBN = upstream
scales = [0.001, 0.01, 0.1, 0.5, 1.0, 2.0, 10.0, 100.0]


def batchnorm_layer(u: Tensor, weight: Tensor) -> Tensor:
    """BN(weight u) for a batch u of shape (N, in): the layer without bias (BatchNorm's beta replaces it)."""
    return batch_norm(u @ weight.T, None, None, training=True, eps=EPS)


reference = batchnorm_layer(Tensor(u), Tensor(W)).data
print(f"variance of W u over the batch, per output (a = 1): {np.round((u @ W.T).var(axis=0)[:4], 3).tolist()} ...")
print(f"  {'a':>6s} | max |BN((aW)u) - BN(Wu)|")
for a in scales:
    print(f"  {a:6g} | {np.abs(batchnorm_layer(Tensor(u), Tensor(a * W)).data - reference).max():.1e}")

# %% Step 2: the gradients, against a
# Make u and the scaled weights aW leaves, backward, and measure. dL/du stays;
# dL/d(aW) falls like 1/a; the relative update lr |dL/d(aW)| / |aW| like 1/a^2.


def gradients_at(a: float) -> dict:
    """dL/du and dL/d(aW) for the layer with weights a W."""
    inputs = Tensor(u, requires_grad=True, label="u")
    weight = Tensor(a * W, requires_grad=True, label="aW")
    (batchnorm_layer(inputs, weight) * Tensor(upstream)).sum().backward()
    return {"u": inputs.grad, "W": weight.grad}


norms = {"u": [], "W": [], "update": []}
print(f"\n  {'a':>6s} | {'|dL/du|':>9s} | {'|dL/d(aW)|':>10s} | {'a |dL/d(aW)|':>12s} | relative update |dL/d(aW)| / |aW|")
for a in scales:
    grads = gradients_at(a)
    norms["u"].append(np.linalg.norm(grads["u"]))
    norms["W"].append(np.linalg.norm(grads["W"]))
    norms["update"].append(norms["W"][-1] / np.linalg.norm(a * W))
    print(f"  {a:6g} | {norms['u'][-1]:9.4f} | {norms['W'][-1]:10.4g} | {a * norms['W'][-1]:12.4f} | {norms['update'][-1]:.4g}")
middle = slice(2, len(scales))  # a >= 0.1: away from eps
slope_u = np.polyfit(np.log(scales[middle]), np.log(norms["u"][middle]), 1)[0]
slope_W = np.polyfit(np.log(scales[middle]), np.log(norms["W"][middle]), 1)[0]
slope_update = np.polyfit(np.log(scales[middle]), np.log(norms["update"][middle]), 1)[0]
print(f"log-log slopes for a >= 0.1: |dL/du| {slope_u:+.3f}, |dL/d(aW)| {slope_W:+.3f}, relative update {slope_update:+.3f}")

# %% Step 3: the picture of step 2
figure, axis = plt.subplots(figsize=(6, 4))
axis.loglog(scales, norms["u"], marker="o", label="|dL/du|: does not change")
axis.loglog(scales, norms["W"], marker="s", label="|dL/d(aW)|: falls like 1/a")
axis.loglog(scales, norms["update"], marker="^", label="|dL/d(aW)| / |aW|: falls like 1/a^2")
axis.set_xlabel("scale a of the weights")
axis.set_ylabel("norm")
axis.set_title("BN((aW)u): gradient norms against the weight scale")
axis.legend(fontsize=8)
figure.tight_layout()
figure.savefig(out_dir / "gradient_norms.png", dpi=120)
plt.close(figure)
print(f"picture: {out_dir / 'gradient_norms.png'}")

# %% Step 4: a deep tanh network, with and without BatchNorm
# Six Linear + tanh layers on the digits, weights initialized 3 times too
# large (std 3 / sqrt(fan_in)). Without BatchNorm many tanh units saturate
# (|tanh| near 1, where the slope 1 - tanh^2 is near 0, so little gradient
# passes); with BatchNorm every layer sees standardized inputs whatever the
# weights' scale. Look at the saturated fractions, and at how evenly the
# layers' update ratios sit. We record, per layer: the activations and their gradients
# after the last step, and at every step the update-to-data ratio
# lr * std(dL/dW) / std(W) (a healthy value is about 1e-3: each step moves
# a weight by a thousandth of its size).
digits = load_digits()
images = (digits.data / 16.0 - 0.3) / 0.4
classes = digits.target.astype(np.int64)
LAYERS, WIDTH, GAIN, LR = 6, 64, 3.0, 0.1
steps = 150 if args.quick else 1000


def deep_network(with_batchnorm: bool) -> list:
    """The layers as a list of (Linear, BatchNorm1d or None)."""
    layers = []
    for index in range(LAYERS):
        fan_in = 64 if index == 0 else WIDTH
        linear = nn.Linear(fan_in, WIDTH if index < LAYERS - 1 else 10)
        linear.weight.data = rng.normal(size=linear.weight.shape) * GAIN / np.sqrt(fan_in)
        norm = nn.BatchNorm1d(WIDTH) if with_batchnorm and index < LAYERS - 1 else None
        layers.append((linear, norm))
    return layers


def train(layers: list) -> dict:
    """SGD; returns the last step's activations and their gradients per layer, and the ratios per step."""
    parameters = [p for linear, norm in layers for p in (linear.parameters() + (norm.parameters() if norm else []))]
    optimizer = tinyad.optim.SGD(parameters, lr=LR)
    ratios, losses = [], []
    for step in range(steps):
        rows = rng.choice(len(images), size=64, replace=False)
        h, activations = Tensor(images[rows]), []
        for index, (linear, norm) in enumerate(layers):
            h = linear(h)
            if index < LAYERS - 1:
                h = (norm(h) if norm else h).tanh()
                activations.append(h)
        loss = cross_entropy(h, classes[rows])
        optimizer.zero_grad()
        loss.backward()
        ratios.append([np.log10(LR * linear.weight.grad.std() / linear.weight.data.std()) for linear, _ in layers])
        optimizer.step()
        losses.append(loss.item())
    return {"activations": [a.data.ravel() for a in activations], "gradients": [a.grad.ravel() for a in activations],
            "ratios": np.array(ratios), "losses": losses}


runs = {"without BatchNorm": train(deep_network(False)), "with BatchNorm": train(deep_network(True))}
for name, run in runs.items():
    print(f"\n{name}: loss first 10 steps {np.mean(run['losses'][:10]):.3f}, last 10 steps {np.mean(run['losses'][-10:]):.3f}")
    print(f"  {'layer':>5s} | {'saturated (|tanh| > 0.97)':>25s} | {'std of dL/dh':>12s} | log10 update/data, last 10 steps")
    for index in range(LAYERS - 1):
        saturated = np.mean(np.abs(run["activations"][index]) > 0.97)
        print(f"  {index + 1:5d} | {saturated:25.1%} | {run['gradients'][index].std():12.2e} | "
              f"{run['ratios'][-10:, index].mean():+.2f}")

for kind, xlabel in (("activations", "tanh output"), ("gradients", "dL/d(tanh output)")):
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for axis, (name, run) in zip(axes, runs.items()):
        for index, values in enumerate(run[kind]):
            counts, edges = np.histogram(values, bins=60)
            axis.plot((edges[:-1] + edges[1:]) / 2, counts, label=f"layer {index + 1}")
        axis.set_title(f"{name}: {kind} per layer")
        axis.set_xlabel(xlabel)
        if kind == "gradients":
            axis.set_yscale("log")  # the tails hold the large gradients
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(out_dir / f"{kind}.png", dpi=120)
    plt.close(figure)
    print(f"picture: {out_dir / f'{kind}.png'}")

figure, axes = plt.subplots(1, 2, figsize=(10, 3.5), sharey=True)
for axis, (name, run) in zip(axes, runs.items()):
    for index in range(LAYERS):
        axis.plot(run["ratios"][:, index], linewidth=0.8, label=f"layer {index + 1}")
    axis.axhline(-3, color="k", linestyle="--", linewidth=0.8)
    axis.set_title(f"{name}: log10(lr std(dL/dW) / std(W))")
    axis.set_xlabel("SGD step")
    axis.legend(fontsize=7)
figure.tight_layout()
figure.savefig(out_dir / "update_ratio.png", dpi=120)
plt.close(figure)
print(f"picture: {out_dir / 'update_ratio.png'}")


# %% Exercise: the gradients at scale a, predicted
# Given dL/du and dL/dW at a = 1, predict both gradients for the layer with
# weights a W (the second is dL/d(aW)), without the engine. Replace the
# `raise NotImplementedError` line below with your code and run the lesson
# again (`--check` tries other scales, `--solution` shows one answer).
def your_scaled_gradients(grad_u: np.ndarray, grad_W: np.ndarray, a: float) -> dict:  # EXERCISE: write this function
    """{"u": dL/du, "W": dL/d(aW)} for the layer BN((a W) u), from the gradients at a = 1."""
    raise NotImplementedError("your turn: return {'u': ..., 'W': ...}")


at_one = gradients_at(1.0)
exercise = Exercise(
    "12_scale_invariance",
    task='your_scaled_gradients(grad_u, grad_W, a) returns {"u": dL/du, "W": dL/d(aW)} at scale a, from those at a = 1',
    hints=("BN((aW)u) = BN(Wu): the loss, as a function of u, does not change with a; as a function of the "
           "scaled weights V = aW, it is L(V / a)",
           "the chain rule on L(V / a): dL/dV = (1/a) dL/dW; and dL/du is the same at every a"),
    engine=lambda grad_u, grad_W, a: gradients_at(a),
    cases=[(at_one["u"], at_one["W"], 10.0), (at_one["u"], at_one["W"], 0.25), (at_one["u"], at_one["W"], 3.0)],
    rtol=1e-4,  # eps does not scale with a: the prediction is exact only up to about eps / (a^2 var)
)
exercise.run(your_scaled_gradients, args)

"""Lesson 11: backprop ninja: every gradient of a BatchNorm network, by hand.

What you will learn
-------------------
loss.backward() is a loop over local derivatives. Here you write that loop
yourself, for a whole network, one intermediate at a time:

    h_pre = x @ W1 + b1                       (N, 64) -> (N, H)
    batch_mean = mean(h_pre)                  BatchNorm, per unit, over the batch
    centered = h_pre - batch_mean
    batch_var = sum(centered^2) / (m - correction)
    inv_std = (batch_var + eps)^(-1/2)
    x_hat = centered * inv_std
    h_bn = gamma * x_hat + beta
    h = tanh(h_bn)
    logits = h @ W2 + b2
    loss = cross_entropy(logits, targets)     (the mean over the N rows)

You write d loss / d(every line), from the bottom up, each checked against the
engine in one compare table; then BatchNorm's backward as one compact
expression; then you train the network with your backward instead of
loss.backward() and watch both runs give the same losses.

The variance: the paper normalizes a batch with its own (biased) variance,
dividing by m (correction = 0); Karpathy's "backprop ninja" divides by m - 1
(Bessel's correction, correction = 1), the unbiased estimate that the running
variance used at test time also is. The two differ by a factor m / (m - 1) in
the variance, and by that factor on one term of the backward pass; step 4
measures it.

Run:  python lessons/11_backprop_ninja.py [--quick] [--check | --solution | --wrong] [--out DIR]
"""
import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # draw into files, no window
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits

import tinyad
from tinyad import Tensor
from tinyad.exercises import Exercise, add_arguments
from tinyad.nn.functional import cross_entropy

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--quick", action="store_true", help="train for fewer steps")
add_arguments(parser)  # --check, --solution, --wrong: how the exercises are graded
parser.add_argument("--out", default="lesson-output/11_backprop_ninja", help="folder for the pictures")
args = parser.parse_args()
out_dir = Path(args.out)
out_dir.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(11)
np.set_printoptions(precision=4, suppress=True)
EPS = 1e-5
HIDDEN = 32

# %% Step 1: the data and the parameters
# scikit-learn's digits: 1797 images of 8 x 8 pixels (no download), 10 classes.
digits = load_digits()
inputs = digits.data / 16.0  # pixels in [0, 1]
labels = digits.target.astype(np.int64)
order = rng.permutation(len(inputs))
train_x, train_y = inputs[order[:1500]], labels[order[:1500]]
test_x, test_y = inputs[order[1500:]], labels[order[1500:]]


def new_parameters(seed: int) -> dict:
    """Small random weights; gamma = 1 and beta = 0 make BatchNorm start as plain standardization."""
    generator = np.random.default_rng(seed)
    return {
        "W1": generator.normal(size=(64, HIDDEN)) / 8.0,
        "b1": generator.normal(size=HIDDEN) * 0.1,
        "gamma": np.ones(HIDDEN) + generator.normal(size=HIDDEN) * 0.1,
        "beta": generator.normal(size=HIDDEN) * 0.1,
        "W2": generator.normal(size=(HIDDEN, 10)) / np.sqrt(HIDDEN),
        "b2": np.zeros(10),
    }


parameters = new_parameters(0)
print(f"data: {len(train_x)} training images, {len(test_x)} test images, 64 pixels, 10 classes")
print("parameters:", {name: value.shape for name, value in parameters.items()})

# %% Step 2: the forward pass, every intermediate labelled
# Each line of the docstring is one node; after backward every node has a .grad.


def forward(parameters: dict, x: np.ndarray, targets: np.ndarray, correction: int) -> tuple:
    """The loss and a dict of every node, for the network of this lesson."""
    nodes = {name: Tensor(value, requires_grad=True, label=name) for name, value in parameters.items()}
    nodes["x"] = Tensor(x, label="x")
    m = x.shape[0]
    steps = [
        ("h_pre", lambda n: n["x"] @ n["W1"] + n["b1"]),
        ("batch_mean", lambda n: n["h_pre"].mean(axis=0, keepdims=True)),
        ("centered", lambda n: n["h_pre"] - n["batch_mean"]),
        ("batch_var", lambda n: (n["centered"] ** 2).sum(axis=0, keepdims=True) / (m - correction)),
        ("inv_std", lambda n: (n["batch_var"] + EPS) ** -0.5),
        ("x_hat", lambda n: n["centered"] * n["inv_std"]),
        ("h_bn", lambda n: n["gamma"] * n["x_hat"] + n["beta"]),
        ("h", lambda n: n["h_bn"].tanh()),
        ("logits", lambda n: n["h"] @ n["W2"] + n["b2"]),
    ]
    for name, step in steps:
        nodes[name] = step(nodes)
        nodes[name].label = name
    loss = cross_entropy(nodes["logits"], targets)
    loss.label = "loss"
    return loss, nodes


def cache_of(nodes: dict) -> dict:
    """The forward values your backward may use (plain arrays), and eps."""
    return {name: np.array(node.data) for name, node in nodes.items()} | {"eps": EPS}


batch = rng.choice(len(train_x), size=32, replace=False)
loss, nodes = forward(parameters, train_x[batch], train_y[batch], correction=0)
loss.backward()
cache = cache_of(nodes)
print(f"\nloss of one batch of 32: {loss.item():.4f}  (a uniform guess over 10 classes: log 10 = {np.log(10):.4f})")
GRADIENT_NAMES = ["logits", "W2", "b2", "h", "h_bn", "gamma", "beta", "x_hat", "inv_std", "batch_var",
                  "centered", "batch_mean", "h_pre", "W1", "b1"]


def engine_backward(cache: dict, targets: np.ndarray, correction: int) -> dict:
    """The engine's gradient of the loss with respect to every intermediate, to grade yours with."""
    parameters = {name: cache[name] for name in ("W1", "b1", "gamma", "beta", "W2", "b2")}
    loss, nodes = forward(parameters, cache["x"], targets, correction)
    loss.backward()
    return {name: np.array(nodes[name].grad) for name in GRADIENT_NAMES}


# %% Exercise 1: every gradient, one line at a time
# Fill in d loss / d(each intermediate), in the order of GRADIENT_NAMES: from
# logits down to W1 and b1. Each line uses the one before and one local
# derivative. A dict with only some keys is graded row by row (the others
# say "not written"), so you can write a few lines and run the lesson again.
# Replace the `raise NotImplementedError` line below with your code.
def your_backward(cache: dict, targets: np.ndarray, correction: int) -> dict:  # EXERCISE: write this function
    """{name: d loss / d name} for the names in GRADIENT_NAMES, from the forward values in ``cache``.

    cache holds x, W1, b1, gamma, beta, W2, b2, h_pre, batch_mean, centered,
    batch_var, inv_std, x_hat, h_bn, h, logits (NumPy arrays) and eps;
    batch_var divides by m - correction.
    """
    raise NotImplementedError("your turn: return the dict of gradients")


backward_exercise = Exercise(
    "11_backprop_ninja",
    task="your_backward(cache, targets, correction) returns {name: d loss / d name} for every name in GRADIENT_NAMES",
    hints=("go from the loss down: dlogits = (softmax(logits) - one_hot) / N, then each line is the one above "
           "times one local derivative; a node used twice (centered) adds the gradients of both uses",
           "dinv_std = sum(dx_hat * centered, axis 0); dbatch_var = dinv_std * -1/2 (batch_var + eps)^(-3/2); "
           "dcentered = dx_hat * inv_std + dbatch_var * 2 centered / (m - correction); "
           "dbatch_mean = -sum(dcentered, axis 0); dh_pre = dcentered + dbatch_mean / m"),
    engine=engine_backward,
    cases=[(cache, train_y[batch], 0)]
    + [(cache_of(forward(new_parameters(seed), train_x[rows], train_y[rows], correction)[1]), train_y[rows], correction)
       for seed, rows, correction in ((1, slice(0, 32), 1), (2, slice(100, 108), 0), (3, slice(200, 204), 1))],
)
your_gradients = backward_exercise.run(your_backward, args)
print(f"  (db1 is 0 up to rounding: BatchNorm subtracts the batch mean, and any bias before it with it; "
      f"max |db1| = {np.abs(nodes['b1'].grad).max():.1e})")

# %% Exercise 2: BatchNorm's backward in one expression
# Substituting dbatch_var and dbatch_mean into dh_pre gives one line:
#
#   dh_pre = gamma * inv_std / m * (m * dh_bn - sum(dh_bn) - m / (m - correction) * x_hat * sum(dh_bn * x_hat))
#
# (sums over the batch, axis 0). Derive it, or at least check it: write it.
def your_compact_batchnorm_backward(dh_bn: np.ndarray, x_hat: np.ndarray, inv_std: np.ndarray,
                                    gamma: np.ndarray, correction: int) -> np.ndarray:  # EXERCISE: write this function
    """d loss / d h_pre from d loss / d h_bn in one expression (no intermediate gradients)."""
    raise NotImplementedError("your turn: return dh_pre")


def engine_batchnorm_backward(dh_bn, x_hat, inv_std, gamma, correction):
    """The engine's answer: BatchNorm on the centred values x_hat / inv_std, backward with dh_bn."""
    m = x_hat.shape[0]
    h_pre = Tensor(x_hat / inv_std, requires_grad=True)
    centered = h_pre - h_pre.mean(axis=0, keepdims=True)
    batch_var = (centered**2).sum(axis=0, keepdims=True) / (m - correction)
    h_bn = Tensor(gamma) * centered * (batch_var + EPS) ** -0.5
    (h_bn * Tensor(dh_bn)).sum().backward()
    return h_pre.grad


def normalized(h_pre: np.ndarray, correction: int) -> tuple:
    """x_hat and inv_std of a batch, as BatchNorm computes them."""
    centered = h_pre - h_pre.mean(axis=0, keepdims=True)
    inv_std = ((centered**2).sum(axis=0, keepdims=True) / (len(h_pre) - correction) + EPS) ** -0.5
    return centered * inv_std, inv_std


compact_exercise = Exercise(
    "11_backprop_ninja",
    task="your_compact_batchnorm_backward(dh_bn, x_hat, inv_std, gamma, correction) returns dh_pre in one expression",
    hints=("start from dh_pre = dcentered + dbatch_mean / m and substitute the lines of exercise 1; "
           "sum(centered) = 0 makes one term vanish",
           "gamma * inv_std / m * (m * dh_bn - dh_bn.sum(0) - m / (m - correction) * x_hat * (dh_bn * x_hat).sum(0))"),
    engine=engine_batchnorm_backward,
    cases=[(nodes["h_bn"].grad, cache["x_hat"], cache["inv_std"], cache["gamma"], 0),
           (rng.normal(size=(8, 3)), *normalized(rng.normal(2.0, 3.0, size=(8, 3)), 1), np.array([1.0, 2.0, -0.5]), 1),
           (rng.normal(size=(4, 5)), *normalized(rng.normal(size=(4, 5)), 0), rng.normal(size=5), 0)],
)
compact_dh_pre = compact_exercise.run(your_compact_batchnorm_backward, args)

# %% Step 3: train with your own backward
# Two copies of the same network, the same batches, plain SGD: one gets its
# gradients from loss.backward(), the other from your_backward (or, while your
# backward is not right yet, from the engine again, and the lesson says so).
use_yours = backward_exercise.passed
backward_function = backward_exercise.function if use_yours else engine_backward
steps = 200 if args.quick else 1500
learning_rate = 0.2
engine_parameters, your_parameters = new_parameters(0), new_parameters(0)
losses = {"loss.backward()": [], "your backward": []}
step_rng = np.random.default_rng(1)
for step in range(steps):
    rows = step_rng.choice(len(train_x), size=32, replace=False)
    loss, nodes = forward(engine_parameters, train_x[rows], train_y[rows], correction=0)
    loss.backward()
    for name in engine_parameters:
        engine_parameters[name] = engine_parameters[name] - learning_rate * nodes[name].grad
    losses["loss.backward()"].append(loss.item())

    with tinyad.no_grad():
        loss, nodes = forward(your_parameters, train_x[rows], train_y[rows], correction=0)
    gradients = backward_function(cache_of(nodes), train_y[rows], 0)
    for name in your_parameters:
        your_parameters[name] = your_parameters[name] - learning_rate * gradients[name]
    losses["your backward"].append(loss.item())

gap = max(abs(a - b) for a, b in zip(*losses.values()))
who = "your backward" if use_yours else "the engine's backward (yours is not right yet)"
print(f"\ntrained {steps} steps with {who} and with loss.backward():")
print(f"  first 20 steps average {np.mean(losses['your backward'][:20]):.4f}, "
      f"last 20 steps average {np.mean(losses['your backward'][-20:]):.4f}")
print(f"  largest difference between the two loss curves: {gap:.1e}")


def test_accuracy(parameters: dict) -> float:
    """Accuracy on the test images, BatchNorm using the statistics of the whole test set (one big batch)."""
    with tinyad.no_grad():
        _, nodes = forward(parameters, test_x, test_y, correction=0)
    return float((nodes["logits"].data.argmax(axis=1) == test_y).mean())


print(f"  test accuracy: {test_accuracy(your_parameters):.3f} (yours), {test_accuracy(engine_parameters):.3f} (engine)")

figure, axis = plt.subplots(figsize=(6.5, 3.5))
axis.plot(losses["loss.backward()"], color="#bbbbbb", linewidth=3, label="loss.backward()")
axis.plot(losses["your backward"], color="#d62728", linewidth=0.8, label=who)
axis.set_xlabel("SGD step")
axis.set_ylabel("cross-entropy of the batch")
axis.set_yscale("log")
axis.set_title("the same training, two backward passes: the curves coincide")
axis.legend(fontsize=8)
figure.tight_layout()
figure.savefig(out_dir / "ninja_training.png", dpi=120)
plt.close(figure)
print(f"picture: {out_dir / 'ninja_training.png'}")

# %% Step 4: biased or Bessel-corrected variance?
# The paper's training-mode BatchNorm divides by m: the batch's own variance.
# Dividing by m - 1 gives the unbiased estimate of the population variance,
# the one the running variance (used at test time) stores. The forward pass
# changes by a factor sqrt((m - 1) / m) in x_hat; the backward pass by the
# factor m / (m - correction) in front of the x_hat * sum(dh_bn * x_hat) term.
# For m = 32 that is 3%; for a batch of 4, 33%.
print("\nbiased (divide by m) against Bessel-corrected (divide by m - 1) batch variance:")
print(f"  {'m':>3s} | {'m / (m - 1)':>11s} | {'max |x_hat| change':>18s} | {'relative change of dh_pre':>25s}")
for m in (4, 8, 32, 128):
    rows = np.arange(m)
    grads = [engine_backward(cache_of(forward(parameters, train_x[rows], train_y[rows], c)[1]), train_y[rows], c)
             for c in (0, 1)]
    x_hats = [cache_of(forward(parameters, train_x[rows], train_y[rows], c)[1])["x_hat"] for c in (0, 1)]
    change = np.abs(grads[0]["h_pre"] - grads[1]["h_pre"]).max() / np.abs(grads[0]["h_pre"]).max()
    print(f"  {m:3d} | {m / (m - 1):11.4f} | {np.abs(x_hats[0] - x_hats[1]).max():18.4f} | {change:25.2%}")
# PyTorch (and tinyad's BatchNorm) normalize with the biased variance in
# training and store the unbiased one in running_var: at test time the scale is
# then a little different from training's, by the same factor. Training with the
# corrected variance, as Karpathy does, makes the two agree; for batches of 32
# and more the difference hardly matters.

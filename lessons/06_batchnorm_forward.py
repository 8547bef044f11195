"""Lesson 6: BatchNorm forward: batch statistics, gamma and beta, and why not whiten.

What you will learn
-------------------
Batch Normalization (Ioffe & Szegedy, 2015) standardizes every feature of a
layer's input over the mini-batch, then lets the network rescale it:

    batch_mean = mean over the batch       batch_var = mean of (x - batch_mean)^2
    x_hat = (x - batch_mean) / sqrt(batch_var + eps)
    y     = gamma * x_hat + beta           (gamma, beta: learned, one per feature)

This script
  1. normalizes a batch by hand and with tinyad, and compares them,
  2. shows gamma = sqrt(var + eps), beta = mean gives back the input exactly:
     normalizing takes nothing away that the layer cannot undo,
  3. shows why zero-mean inputs help: with all-positive inputs, every
     component of a neuron's weight gradient has the same sign, so the weights
     can only all grow or all shrink together, and gradient descent zigzags,
  4. times full whitening (covariance and its inverse square root) against
     BatchNorm's per-feature statistics, to see why the paper skips it,
  5. asks you to write the forward pass.

Run:  python lessons/06_batchnorm_forward.py [--quick] [--check | --solution | --wrong] [--out DIR]
"""
import argparse
import contextlib
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # draw into files, no window
import matplotlib.pyplot as plt
import numpy as np

import tinyad
from tinyad import Tensor
from tinyad.nn.functional import batch_norm
from tinyad.exercises import Exercise, add_arguments

try:  # threadpoolctl comes with scikit-learn; it lets step 4 time one BLAS thread
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover - timings are then noisier, nothing else changes
    def threadpool_limits(limits=None):
        return contextlib.nullcontext()

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--quick", action="store_true", help="fewer sizes and repeats in the timing")
add_arguments(parser)  # --check, --solution, --wrong: how the exercise is graded
parser.add_argument("--out", default="lesson-output/06_batchnorm_forward", help="folder for the pictures")
args = parser.parse_args()
out_dir = Path(args.out)
out_dir.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(6)
eps = 1e-5


def numbers(array, digits: int = 4) -> str:
    return " ".join(f"{v: .{digits}f}" for v in np.ravel(array))


# %% Step 1: a batch, normalized
# 8 samples of 3 features with very different means and spreads.
x = rng.normal(loc=[5.0, -2.0, 0.5], scale=[3.0, 0.1, 1.0], size=(8, 3))
batch_mean = x.mean(axis=0)
batch_var = ((x - batch_mean) ** 2).mean(axis=0)  # biased: divide by m = 8, the batch's own variance
x_hat_by_hand = (x - batch_mean) / np.sqrt(batch_var + eps)
x_hat = batch_norm(Tensor(x), None, None, training=True, eps=eps)  # no gamma, beta: the output is x_hat
print("per feature          mean of x:", numbers(batch_mean), "  std of x:", numbers(np.sqrt(batch_var)))
print("per feature      mean of x_hat:", numbers(x_hat.data.mean(axis=0)), "  std of x_hat:", numbers(x_hat.data.std(axis=0)))
# (Feature 1's std comes out a little under 1: its variance, about 0.004, is not
# that large next to eps = 1e-5, which sits inside the square root.)
print(tinyad.check.format_table([tinyad.check.compare("x_hat hand", x_hat_by_hand, x_hat.data, show=False)]))

# Each feature on its own line: before, wildly different places and spreads; after, the same.
figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2), sharey=True)
for j in range(3):
    left.scatter(x[:, j], np.full(8, j), label=f"feature {j}")
    right.scatter(x_hat.data[:, j], np.full(8, j))
left.set_title("x: 3 features, 8 samples")
right.set_title("x_hat: every feature mean 0, std 1")
left.set_yticks([0, 1, 2])
left.legend(fontsize=8)
figure.tight_layout()
figure.savefig(out_dir / "batchnorm_forward.png", dpi=120)
plt.close(figure)
print(f"\npicture: {out_dir / 'batchnorm_forward.png'}")

# %% Step 2: gamma and beta can undo the normalization
# Normalizing could take away what a layer needs (a sigmoid's saturated
# regime, say). The learned scale and shift can put it back: with
# gamma = sqrt(var + eps) and beta = mean, y = x exactly (up to rounding).
gamma = Tensor(np.sqrt(batch_var + eps), requires_grad=True, label="gamma")
beta = Tensor(batch_mean, requires_grad=True, label="beta")
y = batch_norm(Tensor(x), None, None, gamma, beta, training=True, eps=eps)
print(f"\ngamma = sqrt(var + eps) = {numbers(gamma.data)},  beta = mean = {numbers(beta.data)}")
print(f"identity restored: max |y - x| = {np.abs(y.data - x).max():.2e}")

# %% Step 3: why zero-mean inputs help: the sign of the weight gradient
# A neuron p = w . x with loss L = 1/2 (p - target)^2 has dL/dw_i = (p - target) * x_i.
# If every x_i > 0 (outputs of a sigmoid or a ReLU), every component has the sign
# of (p - target): one example can only push all weights up, or all down.
positive = rng.uniform(0.1, 1.0, size=(6, 5))
centered = batch_norm(Tensor(positive), None, None, training=True).data
w_true = np.array([1.0, -1.0, 0.5, -0.5, 2.0])
print("\nsigns of dL/dw, one example per row (5 weights):")
for name, inputs in (("all-positive inputs", positive), ("normalized inputs", centered)):
    all_same = []
    print(f"  {name}:")
    for row in inputs:
        w = Tensor(np.full(5, 0.3), requires_grad=True, label="w")
        target = float(w_true @ row)
        loss = 0.5 * (w @ Tensor(row) - target) ** 2
        loss.backward()
        signs = "".join("+" if g > 0 else "-" for g in w.grad)
        all_same.append(len(set(signs)) == 1)
        print(f"    dL/dw = [{numbers(w.grad)}]  signs {signs}")
    print(f"  {name}: rows whose signs are all equal: {sum(all_same)} of {len(all_same)}")

# %% Step 3b: the zigzag
# Two weights, target w* = (1, -1): one must grow, the other shrink. SGD one
# example at a time, same step-size rule for both data sets (0.5 / mean |x|^2).
# The positive data is the centered data plus 2: same spread, different mean.
w_star = np.array([1.0, -1.0])
normalized = rng.uniform(-1.0, 1.0, size=(200, 2))
normalized = (normalized - normalized.mean(axis=0)) / normalized.std(axis=0)
paths = {}
print("\nSGD towards w* = (1, -1), one example per step:")
for name, data in (("all-positive inputs", normalized + 2.0), ("normalized inputs", normalized)):
    w = Tensor(np.zeros(2), requires_grad=True, label="w")
    optimizer = tinyad.optim.SGD([w], lr=0.5 / np.mean((data**2).sum(axis=1)))
    path, same_sign, reached = [w.data.copy()], 0, None
    for step in range(2000):
        row = data[step % len(data)]
        loss = 0.5 * (w @ Tensor(row) - float(w_star @ row)) ** 2
        optimizer.zero_grad()
        loss.backward()
        same_sign += int(np.sign(w.grad[0]) == np.sign(w.grad[1]))
        optimizer.step()
        path.append(w.data.copy())
        if np.linalg.norm(w.data - w_star) < 0.05:
            reached = step + 1
            break
    paths[name] = np.array(path)
    print(f"  {name:20s}: {reached} steps to within 0.05 of w*; "
          f"updates moving both weights the same way: {same_sign / len(path[1:]):.0%}")

figure, axis = plt.subplots(figsize=(5, 4.5))
for (name, path), colour in zip(paths.items(), ["#d62728", "#1f77b4"]):
    axis.plot(path[:, 0], path[:, 1], marker=".", markersize=3, linewidth=0.8, color=colour, label=f"{name} ({len(path) - 1} steps)")
axis.plot(*w_star, marker="*", markersize=14, color="k", linestyle="none", label="w* = (1, -1)")
axis.set_xlabel("w1")
axis.set_ylabel("w2")
axis.set_title("all-positive inputs: both weights move together")
axis.legend(fontsize=8)
figure.tight_layout()
figure.savefig(out_dir / "zigzag.png", dpi=120)
plt.close(figure)
print(f"\npicture: {out_dir / 'zigzag.png'}")

# %% Step 4: why not whiten?
# Whitening also decorrelates the features: x_white = (x - mean) Cov^(-1/2).
# That needs a D x D covariance (N D^2 work) and its inverse square root, here by
# an eigendecomposition (D^3), at every step, plus a backward pass through them.
# BatchNorm needs D means and D variances (N D work). We time both on one
# thread (so the numbers count work, not how threads share a busy machine),
# after one warm-up call, and report the median of repeats.


def median_seconds(work, repeats: int) -> float:
    work()  # warm-up: first-call costs are not what we want to measure
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def per_feature_statistics(batch):
    return batch.mean(axis=0), batch.var(axis=0)


def whitening_matrix(batch):
    centered_batch = batch - batch.mean(axis=0)
    covariance = centered_batch.T @ centered_batch / len(batch)
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    return (eigenvectors / np.sqrt(eigenvalues + eps)) @ eigenvectors.T


n = 512 if args.quick else 1024  # more samples than features, so the covariance is invertible
sizes = [16, 64, 128] if args.quick else [16, 64, 256, 512]
repeats = 5 if args.quick else 11
ratios = []
print(f"\ntiming a ({n}, D) batch, median of {repeats} runs:")
print(f"  {'D':>5s} | {'per-feature mean, var':>22s} | {'covariance + Cov^-1/2':>22s} | ratio")
for d in sizes:
    batch = rng.normal(size=(n, d)) @ rng.normal(size=(d, d))  # correlated features
    with threadpool_limits(limits=1):
        cheap = median_seconds(lambda: per_feature_statistics(batch), repeats)
        costly = median_seconds(lambda: whitening_matrix(batch), repeats)
    ratios.append(costly / cheap)
    print(f"  {d:5d} | {cheap * 1e6:19.1f} us | {costly * 1e6:19.1f} us | {costly / cheap:8.1f}")
white = (batch - batch.mean(axis=0)) @ whitening_matrix(batch)
standardized = (batch - batch.mean(axis=0)) / batch.std(axis=0)
off_diagonal = ~np.eye(sizes[-1], dtype=bool)
print(f"  what whitening buys at D = {sizes[-1]}: largest |correlation| between two features "
      f"{np.abs(np.cov(standardized.T, bias=True)[off_diagonal]).max():.3f} after BatchNorm, "
      f"{np.abs(np.cov(white.T, bias=True)[off_diagonal]).max():.1e} after whitening")

figure, axis = plt.subplots(figsize=(5, 3.5))
axis.plot(sizes, ratios, marker="o")
axis.set_xscale("log", base=2)
axis.set_yscale("log")
axis.set_xlabel("features D")
axis.set_ylabel("whitening time / per-feature time")
axis.set_title(f"cost of full whitening, batch of {n}")
figure.tight_layout()
figure.savefig(out_dir / "whitening_cost.png", dpi=120)
plt.close(figure)
print(f"\npicture: {out_dir / 'whitening_cost.png'}")


# %% Exercise: the forward pass
# Given an (N, D) batch and per-feature gamma, beta, return y (training mode).
# Replace the `raise NotImplementedError` line below with your code and run
# the lesson again (`--check` tries other batches, `--solution` shows one answer).
def your_batch_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float) -> np.ndarray:  # EXERCISE: write this function
    """BatchNorm's training-mode output y, shape (N, D), with NumPy only."""
    raise NotImplementedError("your turn: return y")


def engine_batch_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float) -> np.ndarray:
    """The engine's answer, to grade yours with."""
    return batch_norm(Tensor(x), None, None, Tensor(gamma), Tensor(beta), training=True, eps=eps).data


exercise = Exercise(
    "06_batchnorm_forward",
    task="your_batch_norm(x, gamma, beta, eps) returns y = gamma * x_hat + beta for an (N, D) batch in training mode",
    hints=("per feature (axis 0): subtract the batch mean, divide by sqrt(batch variance + eps), then scale and shift",
           "the batch is normalized by ITS OWN variance, the mean of (x - mean)^2: divide by m, not m - 1 "
           "(np.var's default ddof=0), and eps goes inside the square root"),
    engine=engine_batch_norm,
    cases=[(x, np.array([1.5, 0.5, 2.0]), np.array([0.1, -0.3, 0.0]), eps),
           (rng.normal(size=(4, 2)), np.array([1.0, -1.0]), np.array([0.0, 2.0]), 1e-3),
           (rng.normal(3.0, 0.01, size=(16, 5)), np.ones(5), np.zeros(5), 1e-5)],
)
answer = exercise.run(your_batch_norm, args)

"""Lesson 4: training a small network (an MLP) with tinyad.nn and an optimizer.

What you will learn
-------------------
Training is one loop, repeated: forward a batch through the model, measure a
loss, backward to get dL/d(every parameter), let the optimizer move each
parameter a little against its gradient, and forget the gradients before the
next round. tinyad.nn packs the parameters into layers (Linear holds a weight
and a bias), tinyad.optim holds the update rule (here Adam), and
cross_entropy turns the network's scores (logits) into one number to lower.

This script trains a 2 -> 16 -> 16 -> 2 network on "two moons" (a toy data
set scikit-learn generates, no download), draws the loss curve and the
decision boundary, prints the accuracy on held-out points, and asks you for
the gradient of cross-entropy with respect to the logits.

Run:  python lessons/04_mlp_training.py [--quick] [--check | --solution | --wrong] [--out DIR]
"""
import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # draw into files, no window
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import make_moons
from tqdm import tqdm

import tinyad
from tinyad import Tensor, nn
from tinyad.nn.functional import cross_entropy
from tinyad.exercises import Exercise, add_arguments

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--quick", action="store_true", help="train for fewer steps")
add_arguments(parser)  # --check, --solution, --wrong: how the exercise is graded
parser.add_argument("--out", default="lesson-output/04_mlp_training", help="folder for the pictures")
args = parser.parse_args()
out_dir = Path(args.out)
out_dir.mkdir(parents=True, exist_ok=True)
tinyad.manual_seed(0)
rng = np.random.default_rng(0)

# %% Step 1: the data
# Two interleaved half circles, with noise; the classes cannot be split by a line.
points, labels = make_moons(n_samples=600, noise=0.15, random_state=0)
train_x, train_y = points[:400], labels[:400].astype(np.int64)
test_x, test_y = points[400:], labels[400:].astype(np.int64)
print(f"data: {len(train_x)} training points, {len(test_x)} test points, 2 classes")

# %% Step 2: the model
# Each Linear computes x W^T + b; the ReLUs between them make the whole thing
# able to bend its decision boundary. The last layer gives 2 scores per point.
model = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 2))
print(model)
print("parameters:", sum(p.data.size for p in model.parameters()))


def accuracy(x: np.ndarray, y: np.ndarray) -> float:
    with tinyad.no_grad():
        scores = model(Tensor(x)).data
    return float((scores.argmax(axis=1) == y).mean())


# %% Step 3: the training loop
# Mini-batches of 32 points drawn at random; Adam with learning rate 0.01.
optimizer = tinyad.optim.Adam(model.parameters(), lr=0.01)
steps = 300 if args.quick else 1500
losses = []
for step in tqdm(range(steps), desc="training", unit="step"):
    batch = rng.choice(len(train_x), size=32, replace=False)
    loss = cross_entropy(model(Tensor(train_x[batch])), train_y[batch])
    optimizer.zero_grad()  # gradients accumulate; start each step from nothing
    loss.backward()
    optimizer.step()
    losses.append(loss.item())

first, last = np.mean(losses[:20]), np.mean(losses[-20:])
print(f"\nloss at step 0: {losses[0]:.4f}  (a fair coin between 2 classes scores log 2 = {np.log(2):.4f})")
print(f"loss: first 20 steps average {first:.4f}, last 20 steps average {last:.4f}")
print(f"accuracy: train {accuracy(train_x, train_y):.3f}, test {accuracy(test_x, test_y):.3f}")

# %% Step 4: the loss curve
# One batch's loss is noisy; a running mean over 25 steps shows the trend.
smooth = np.convolve(losses, np.ones(25) / 25, mode="valid")
figure, axis = plt.subplots(figsize=(6, 3.5))
axis.plot(losses, color="#bbbbbb", linewidth=0.8, label="loss of each batch")
axis.plot(np.arange(24, len(losses)), smooth, color="#d62728", label="mean of 25 steps")
axis.set_xlabel("step")
axis.set_ylabel("cross-entropy")
axis.set_yscale("log")
axis.set_title("MLP on two moons, Adam (lr 0.01)")
axis.legend()
figure.tight_layout()
figure.savefig(out_dir / "loss.png", dpi=120)
plt.close(figure)
print(f"\npicture: {out_dir / 'loss.png'}")

# %% Step 5: what the network learned
# Colour every point of a grid by the class the model picks there.
grid_x, grid_y = np.meshgrid(np.linspace(-1.7, 2.7, 150), np.linspace(-1.2, 1.7, 100))
grid = np.stack([grid_x.ravel(), grid_y.ravel()], axis=1)
with tinyad.no_grad():
    predicted = model(Tensor(grid)).data.argmax(axis=1).reshape(grid_x.shape)
figure, axis = plt.subplots(figsize=(6, 4))
axis.contourf(grid_x, grid_y, predicted, levels=[-0.5, 0.5, 1.5], colors=["#dbe9f6", "#fde9b6"])
axis.scatter(test_x[:, 0], test_x[:, 1], c=test_y, cmap="coolwarm", s=12, edgecolors="k", linewidths=0.3)
axis.set_title("decision regions and the test points")
figure.tight_layout()
figure.savefig(out_dir / "decision_boundary.png", dpi=120)
plt.close(figure)
print(f"picture: {out_dir / 'decision_boundary.png'}")


# %% Exercise: the gradient of cross-entropy with respect to the logits
# For L = mean over the N rows of -log softmax(z)[target], write dL/dz, shape
# (N, classes). Replace the `raise NotImplementedError` line below with your
# code and run the lesson again (`--check` tries other batches, `--solution`
# shows one answer).
def your_logits_gradient(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:  # EXERCISE: write this function
    """dL/dlogits, shape (N, classes), for L = cross_entropy(logits, targets) (the mean over N rows)."""
    raise NotImplementedError("your turn: return dL/dlogits")


def engine_logits_gradient(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """The engine's answer, to grade yours with."""
    node = Tensor(logits, requires_grad=True)
    cross_entropy(node, targets).backward()
    return node.grad


exercise = Exercise(
    "04_mlp_training",
    task="your_logits_gradient(logits, targets) returns dL/dlogits, shape (N, classes), of the mean cross-entropy",
    hints=("softmax(z) minus a one-hot row of the target is the gradient of ONE row's loss",
           "L is the MEAN over N rows, so each row's share of the gradient is (softmax(z) - one_hot) / N"),
    engine=engine_logits_gradient,
    cases=[(rng.normal(size=(5, 2)), train_y[:5]), (rng.normal(size=(3, 4)) * 5, np.array([3, 0, 1])),
           (rng.normal(size=(1, 3)), np.array([2]))],
)
answer = exercise.run(your_logits_gradient, args)

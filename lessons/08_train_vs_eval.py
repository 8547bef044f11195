"""Lesson 8: BatchNorm in training and in evaluation.

What you will learn
-------------------
In training, BatchNorm normalizes each feature with the statistics of the
current mini-batch. At test time there may be no batch (one example at a
time), and a prediction should not depend on which other examples happen to
be around it. So evaluation uses fixed estimates of the population mean and
variance instead. Two ways to get them:

  * a running average, updated at every training step (PyTorch's default):
        running = (1 - momentum) * running + momentum * batch_statistic
  * the paper's Algorithm 2: after training, run the final network over many
    training batches and average their statistics (tinyad.nn.set_population_statistics).

This script trains a small network with a BatchNorm layer and
  1. follows the running mean while the layer below it keeps changing,
  2. compares the running average and the population statistics with the exact
     statistics of the training set,
  3. measures the gap between train-mode and eval-mode outputs for one input,
  4. shows why a batch of one cannot be trained on (the error message),
  5. measures how much one example's output changes with the batch around it:
     the noise that makes BatchNorm a regularizer,
  6. asks you to write the running-average update.

Run:  python lessons/08_train_vs_eval.py [--quick] [--check | --solution | --wrong] [--out DIR]
"""
import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # draw into files, no window
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import make_moons

import tinyad
from tinyad import Tensor, nn
from tinyad.nn.functional import cross_entropy
from tinyad.exercises import Exercise, add_arguments

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--quick", action="store_true", help="train for fewer steps")
add_arguments(parser)  # --check, --solution, --wrong: how the exercise is graded
parser.add_argument("--out", default="lesson-output/08_train_vs_eval", help="folder for the pictures")
args = parser.parse_args()
out_dir = Path(args.out)
out_dir.mkdir(parents=True, exist_ok=True)
tinyad.manual_seed(0)
rng = np.random.default_rng(8)

# %% Step 1: a network with BatchNorm, trained
# Two moons, shifted and stretched so that nothing is centred to begin with.
points, labels = make_moons(n_samples=1000, noise=0.2, random_state=1)
points = points * 3.0 + 5.0
train_x, train_y = points[:800], labels[:800].astype(np.int64)
test_x, test_y = points[800:], labels[800:].astype(np.int64)
model = nn.Sequential(nn.Linear(2, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 2))
bn = model[1]
print(model)


def full_data_statistics() -> tuple:
    """Mean and (biased) variance of BatchNorm's input over the whole training set, with today's weights."""
    with tinyad.no_grad():
        bn_input = model[0](Tensor(train_x)).data
    return bn_input.mean(axis=0), bn_input.var(axis=0)


# While training, follow feature 0: the mean of this batch (read off the graph:
# the BatchNorm node labelled "batch_mean"), the running mean, and the exact
# mean of the training set under the current weights.
optimizer = tinyad.optim.Adam(model.parameters(), lr=0.02)
steps = 150 if args.quick else 600
trace = {"batch": [], "running": [], "exact": []}
for step in range(steps):
    batch = rng.choice(len(train_x), size=32, replace=False)
    loss = cross_entropy(model(Tensor(train_x[batch])), train_y[batch])
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    trace["batch"].append(float(tinyad.find(loss, "batch_mean").data.ravel()[0]))
    trace["running"].append(float(bn.running_mean.data[0]))
    trace["exact"].append(float(full_data_statistics()[0][0]))
print(f"trained {steps} steps, last batch loss {loss.item():.4f}, batches seen by BatchNorm: {int(bn.num_batches_tracked.item())}")

figure, axis = plt.subplots(figsize=(7, 3.5))
axis.plot(trace["batch"], ".", markersize=3, color="#bbbbbb", label="this batch's mean")
axis.plot(trace["running"], color="#d62728", label="running mean (momentum 0.1)")
axis.plot(trace["exact"], color="k", linestyle="--", label="training-set mean, current weights")
axis.set_xlabel("training step")
axis.set_ylabel("BatchNorm input, feature 0")
axis.set_title("the running mean chases a moving target")
axis.legend(fontsize=8)
figure.tight_layout()
figure.savefig(out_dir / "running_stats.png", dpi=120)
plt.close(figure)
print(f"picture: {out_dir / 'running_stats.png'}")

# %% Step 2: running average versus population statistics
# The running average mixes statistics from older weights, and it is noisy:
# the last few batches weigh most. Algorithm 2 recomputes with the final
# weights over many batches: mean of batch means, and m/(m-1) times the mean
# of batch variances (the unbiased estimate, m = 32 here).
exact_mean, exact_var = full_data_statistics()
exact_std = np.sqrt(exact_var)


def statistics_error(mean: np.ndarray, var: np.ndarray) -> tuple:
    """Mean error in units of the true std, and the relative error of the variance (averaged over features)."""
    return float(np.mean(np.abs(mean - exact_mean) / exact_std)), float(np.mean(np.abs(var / exact_var - 1)))


def test_accuracy() -> float:
    model.eval()
    with tinyad.no_grad():
        accuracy = float((model(Tensor(test_x)).data.argmax(axis=1) == test_y).mean())
    model.train()
    return accuracy


running_state = model.state_dict()
running_errors = statistics_error(bn.running_mean.data, bn.running_var.data)
running_accuracy = test_accuracy()
nn.set_population_statistics(model, [train_x[i:i + 32] for i in range(0, len(train_x), 32)])
population_errors = statistics_error(bn.running_mean.data, bn.running_var.data)
population_accuracy = test_accuracy()
print("\nestimates of BatchNorm's statistics, against the exact training-set values:")
print(f"  {'':24s} | {'mean error (in stds)':>20s} | {'variance error':>14s} | test accuracy")
print(f"  {'running average':24s} | {running_errors[0]:20.4f} | {running_errors[1]:14.2%} | {running_accuracy:.3f}")
print(f"  {'population (Algorithm 2)':24s} | {population_errors[0]:20.2e} | {population_errors[1]:14.2%} | {population_accuracy:.3f}")
# (The population variance is not exact either: it averages 25 batch
# variances around their own batch means, and corrects by m/(m-1).)
model.load_state_dict(running_state)  # back to the running averages for the rest of the lesson

# %% Step 3: the same input, train mode against eval mode
# Train mode normalizes with this batch's statistics, eval mode with the
# stored ones: the outputs differ. (Train mode would also update the running
# statistics, so we save the state and put it back afterwards.)
inputs = Tensor(test_x[:16])
saved = model.state_dict()
with tinyad.no_grad():
    model.train()
    train_output = model(inputs).data
    model.eval()
    eval_output = model(inputs).data
model.load_state_dict(saved)
model.train()
print(f"\nsame 16 inputs: max |train-mode output - eval-mode output| = {np.abs(train_output - eval_output).max():.4f}")
print(f"                mean |train-mode output - eval-mode output| = {np.abs(train_output - eval_output).mean():.4f}")

# %% Step 4: a batch of one
# The variance of one number is 0: x_hat would be 0/sqrt(eps) = 0 and the
# output beta, whatever the input. tinyad refuses, as PyTorch does.
one = Tensor(test_x[:1])
saved = model.state_dict()
try:
    model(one)
    print("\nbatch of one in train mode: no error?")
except ValueError as error:
    print(f"\nbatch of one in train mode -> ValueError: {error}")
model.load_state_dict(saved)
model.eval()
with tinyad.no_grad():
    print(f"batch of one in eval mode works: output {np.round(model(one).data[0], 4).tolist()}")
model.train()

# %% Step 5: one example, many batches: BatchNorm's noise
# In training, an example's output depends on the 31 others in its batch.
# Put example 0 into 40 random batches and look at its BatchNorm output.
example = train_x[:1]
saved = model.state_dict()
outputs = []
with tinyad.no_grad():
    for _ in range(40):
        others = train_x[rng.choice(np.arange(1, len(train_x)), size=31, replace=False)]
        outputs.append(bn(model[0](Tensor(np.concatenate([example, others])))).data[0])
    model.eval()
    eval_outputs = [bn(model[0](Tensor(np.concatenate([example, train_x[rng.choice(len(train_x), 31)]])))).data[0]
                    for _ in range(5)]
model.load_state_dict(saved)
model.train()
outputs, eval_outputs = np.array(outputs), np.array(eval_outputs)
spread = outputs.max(axis=0) - outputs.min(axis=0)
print(f"\nexample 0 in 40 batches, train mode: BatchNorm output feature 0 ranges over "
      f"[{outputs[:, 0].min():.3f}, {outputs[:, 0].max():.3f}]")
print(f"  spread (max - min) averaged over the 16 features: {spread.mean():.4f}, std across batches: {outputs.std(axis=0).mean():.4f}")
print(f"  eval mode, 5 different batches: spread {np.ptp(eval_outputs, axis=0).max():.1e} (the batch no longer matters)")
# This noise is a little like dropout: the network cannot rely on the exact
# value of any one example's activation, which discourages overfitting.

figure, axis = plt.subplots(figsize=(6, 3.5))
axis.hist(outputs[:, 0], bins=15, color="#1f77b4", alpha=0.7, label="train mode, 40 batches")
axis.axvline(eval_outputs[0, 0], color="#d62728", label="eval mode (any batch)")
axis.set_xlabel("BatchNorm output of example 0, feature 0")
axis.set_title("the same example, different batches")
axis.legend(fontsize=8)
figure.tight_layout()
figure.savefig(out_dir / "batch_noise.png", dpi=120)
plt.close(figure)
print(f"picture: {out_dir / 'batch_noise.png'}")


# %% Exercise: the running-average update
# Given the running mean, this batch's mean and the momentum (PyTorch's
# convention, 0.1 by default), return the new running mean. Replace the
# `raise NotImplementedError` line below with your code and run the lesson
# again (`--check` tries other momenta, `--solution` shows one answer).
def your_running_update(running: np.ndarray, batch_statistic: np.ndarray, momentum: float) -> np.ndarray:  # EXERCISE: write this function
    """The running mean after one training step of BatchNorm."""
    raise NotImplementedError("your turn: return the new running mean")


def engine_running_update(running: np.ndarray, batch_statistic: np.ndarray, momentum: float) -> np.ndarray:
    """The engine's answer: one training-mode forward of a BatchNorm1d on a batch with that mean."""
    layer = nn.BatchNorm1d(len(running), momentum=momentum)
    layer.running_mean.data = np.array(running, dtype=np.float64)
    layer(Tensor(np.stack([batch_statistic - 1.0, batch_statistic + 1.0])))  # a batch of 2 whose mean is batch_statistic
    return layer.running_mean.data.copy()


new_batch = rng.normal(loc=3.0, size=(10, 3))
exercise = Exercise(
    "08_train_vs_eval",
    task="your_running_update(running, batch_statistic, momentum) returns the new running mean (PyTorch's momentum)",
    hints=("the new value is a weighted average of the old running value and this batch's statistic",
           "momentum is the weight of the NEW batch (PyTorch's convention): (1 - momentum) * running + momentum * batch"),
    engine=engine_running_update,
    cases=[(np.array([1.0, -2.0, 0.5]), new_batch.mean(axis=0), 0.1), (np.zeros(2), np.array([4.0, -4.0]), 0.3),
           (np.array([10.0]), np.array([0.0]), 0.01)],
)
answer = exercise.run(your_running_update, args)

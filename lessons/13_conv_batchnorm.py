"""Lesson 13: BatchNorm after a convolution: one mean and one variance per channel.

What you will learn
-------------------
A convolution slides one filter over the whole image, so every position of a
channel is the same feature, measured at another place. The paper (Section
3.2) therefore normalizes a convolutional layer per channel, with statistics
taken over the batch AND over every position: for a channel c of an
(N, C, H, W) activation,

    batch_mean[c] = mean over n, h, w of x[n, c, h, w]     (m = N * H * W values)
    batch_var[c]  = mean over n, h, w of (x[n, c, h, w] - batch_mean[c])^2

and one gamma[c], beta[c] per channel. Every value of a feature map is then
normalized the same way wherever it sits, as the convolution treats it. The
effective batch is m = N * H * W, not N: that is also how many routes the
gradient of the channel's mean and variance fans out to. This script

  1. builds Conv2d -> BatchNorm2d -> ReLU -> MaxPool2d -> Linear for the 8x8
     digits and checks BatchNorm2d's statistics against the per-channel formula,
  2. draws one channel's statistics as a graph: 2 images of 2x2 positions,
     8 values, each reaching the loss through its own x_hat, the channel's
     variance and the channel's mean,
  3. trains the network and plots, for every value of one channel of one
     batch, the three routes of its gradient, checked against the layer's own
     gradient,
  4. asks you to compute a channel's statistics yourself.

Run:  python lessons/13_conv_batchnorm.py [--quick] [--check | --solution | --wrong] [--out DIR]
"""
import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # draw into files, no window
import numpy as np
from sklearn.datasets import load_digits

import tinyad
from tinyad import Tensor, Value, nn, viz
from tinyad.exercises import Exercise, add_arguments
from tinyad.nn.functional import batch_norm, batch_norm_scalar, cross_entropy

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--quick", action="store_true", help="train for fewer steps")
add_arguments(parser)  # --check, --solution, --wrong: how the exercise is graded
parser.add_argument("--out", default="lesson-output/13_conv_batchnorm", help="folder for the pictures")
args = parser.parse_args()
out_dir = Path(args.out)
out_dir.mkdir(parents=True, exist_ok=True)
tinyad.manual_seed(13)
rng = np.random.default_rng(13)

# %% Step 1: the digits as images, and a convolutional network with BatchNorm2d
digits = load_digits()
images = (digits.images / 16.0 - 0.5)[:, None, :, :]  # (N, 1, 8, 8), values in [-0.5, 0.5]
labels = digits.target
train_x, train_y, test_x, test_y = images[:1500], labels[:1500], images[1500:], labels[1500:]
model = nn.Sequential(
    nn.Conv2d(1, 4, kernel_size=3, padding=1),  # 4 channels of 8x8
    nn.BatchNorm2d(4),
    nn.ReLU(),
    nn.MaxPool2d(2),  # 4 channels of 4x4
    nn.Flatten(),
    nn.Linear(4 * 4 * 4, 10),
)
conv, norm = model[0], model[1]
print(model)

batch = Tensor(train_x[:32])
features = conv(batch)  # (32, 4, 8, 8): the input of BatchNorm2d
momentum_before = norm.running_mean.data.copy()
normalized = norm(features)
by_formula = features.data.mean(axis=(0, 2, 3))  # one mean per channel, over N, H and W
from_layer = (norm.running_mean.data - 0.9 * momentum_before) / 0.1  # the batch mean the layer just used
print(f"\nBatchNorm2d's input has shape {features.shape}: per channel m = 32 * 8 * 8 = {32 * 8 * 8} values")
print("batch mean per channel, by the formula over (N, H, W):", np.round(by_formula, 6).tolist())
print("batch mean per channel, as the layer used it:         ", np.round(from_layer, 6).tolist())
per_channel = normalized.data.transpose(1, 0, 2, 3).reshape(4, -1)
print("after BatchNorm2d, each channel's mean and std:", np.round(per_channel.mean(axis=1), 6).tolist(),
      np.round(per_channel.std(axis=1), 4).tolist())

# %% Step 2: one channel's statistics as a graph
# Two images of a 2x2 feature map: one channel holds 2 * 2 * 2 = 8 values,
# and all 8 feed that channel's batch_mean and batch_var. In scalars, each
# value is its own node, and the picture shows the gradient of every one of
# them coming back through its own x_hat (red), the channel's variance (blue)
# and the channel's mean (green).
small = rng.normal(size=(2, 2, 2))  # (N, H, W) of one channel
cells = [Value(float(v), label=f"x[{n},{h},{w}]") for (n, h, w), v in np.ndenumerate(small)]
gamma, beta = Value(1.2, label="gamma"), Value(0.1, label="beta")
outputs = [row[0] for row in batch_norm_scalar([[cell] for cell in cells], [gamma], [beta])]
loss = sum((float(weight) * y for weight, y in zip(rng.uniform(-1, 1, size=len(cells)), outputs)), Value(0.0))
loss.label = "L"
loss.backward()
drawing = viz.every_sample(loss, cells, title="One channel of 2 images x 2x2 positions: 8 values, one mean, one variance")
try:
    print(f"\npicture: {drawing.render(out_dir / 'channel_statistics.png')}  (every value of the channel feeds the same two statistics)")
except viz.RendererMissing as missing:
    print(f"\n{missing}")

# %% Step 3: train, then the routes of every value of one channel
optimizer = tinyad.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
steps = 150 if args.quick else 600
for step in range(1, steps + 1):
    pick = rng.integers(0, len(train_x), size=64)
    loss = cross_entropy(model(Tensor(train_x[pick])), train_y[pick])
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    if step % (steps // 3) == 0:
        model.eval()
        with tinyad.no_grad():
            accuracy = float((model(Tensor(test_x)).data.argmax(axis=1) == test_y).mean())
        model.train()
        print(f"step {step:4d}: loss {loss.item():.3f}, test accuracy {accuracy:.3f}")

# BatchNorm's own backward pass on a batch of 4 images, in tensors: the
# layer's gamma and beta, the rest of the trained network above it.
channel = 0
features = Tensor(conv(Tensor(train_x[:4])).data, requires_grad=True, label="conv output")
y = batch_norm(features, None, None, norm.weight, norm.bias, training=True, eps=norm.eps)
cross_entropy(nn.Sequential(*list(model)[2:])(y), train_y[:4]).backward()
dL_dy = y.grad[:, channel].reshape(-1)  # what the network above sent back to this channel (tinyad keeps y.grad)

# The same channel in scalars: its 4 * 8 * 8 = 256 values as one BatchNorm
# over m = 256 samples, with the layer's gamma and beta, and a loss whose
# dL/dy is that same message. Its dL/dx must equal the tensor graph's.
cells = [Value(float(v)) for v in features.data[:, channel].reshape(-1)]
ys = [row[0] for row in batch_norm_scalar([[c] for c in cells], [Value(float(norm.weight.data[channel]))],
                                          [Value(float(norm.bias.data[channel]))], eps=norm.eps)]
scalar_loss = sum((float(g) * y for g, y in zip(dL_dy, ys)), Value(0.0))
scalar_loss.backward()
difference = np.abs(np.array([c.grad for c in cells]) - features.grad[:, channel].reshape(-1)).max()
print(f"\nchannel {channel}: 256 values; the scalar graph's dL/dx against BatchNorm2d's own: largest difference {difference:.1e}")
table = viz.route_table(cells, scalar_loss)
print(f"the mean route is one number for all 256 values ({table['batch mean'][0]:.3e}); the variance route is a line in x")
# Read the plot: max pooling passed on only the largest value of each 2x2
# window, so most values get nothing through their own x_hat (no red bar).
# They still get a gradient, through the channel's mean and variance: in
# BatchNorm every value of a channel hears about every other.
unpicked = int((np.abs(table["own x_hat"]) == 0).sum())
print(f"{unpicked} of 256 values get no gradient through their own x_hat (max pooling dropped them), "
      f"yet every one has a nonzero dL/dx: {int((table['total'] != 0).sum())} of 256")
try:
    viz.plot_routes(cells, scalar_loss, out_dir / "channel_routes.png",
                    title=f"Channel {channel} of a batch of 4 digits: the three routes of dL/dx for its 256 values")
    print(f"picture: {out_dir / 'channel_routes.png'}")
except ImportError as missing:
    print(f"no route plot: {missing}")


# %% Exercise: a channel's statistics
# Given the (N, C, H, W) input of BatchNorm2d, return the batch mean and the
# (biased) batch variance of every channel: two arrays of shape (C,).
# Replace the `raise NotImplementedError` line below and run the lesson again:
# `--check` grades it on more inputs, `--solution` shows the reference answer.
def your_channel_statistics(x: np.ndarray) -> dict:  # EXERCISE: write this function
    """{"batch_mean": (C,) array, "batch_var": (C,) array} of BatchNorm2d's input x."""
    raise NotImplementedError("your turn: return the per-channel batch mean and variance")


def engine_channel_statistics(x: np.ndarray) -> dict:
    """The engine's answer: the batch_mean and batch_var nodes of BatchNorm's graph."""
    out = tinyad.nn.functional.batch_norm(Tensor(x, requires_grad=True), None, None, training=True)
    return {"batch_mean": tinyad.find(out, "batch_mean").data.reshape(-1),
            "batch_var": tinyad.find(out, "batch_var").data.reshape(-1)}


exercise = Exercise(
    "13_conv_batchnorm",
    task="your_channel_statistics(x) returns the per-channel batch mean and biased variance of an (N, C, H, W) array",
    hints=("one mean per channel: average over every axis except the channel axis",
           "axes (0, 2, 3): x.mean(axis=(0, 2, 3)) and ((x - mean)**2).mean(axis=(0, 2, 3)), dividing by m = N*H*W"),
    engine=engine_channel_statistics,
    cases=[(features.data,), (rng.normal(size=(2, 3, 5, 5)),), (rng.normal(2.0, 3.0, size=(8, 1, 2, 2)),)],
)
answer = exercise.run(your_channel_statistics, args)
print(f"channel means of the 4-image batch: {np.round(answer['batch_mean'], 4).tolist()}")

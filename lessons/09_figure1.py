"""Lesson 9: the paper's Figure 1, a sigmoid network with and without BatchNorm.

What you will learn
-------------------
Figure 1 of Ioffe & Szegedy (2015) is the paper's first experiment. A network
with 3 fully connected hidden layers of 100 sigmoid units is trained on
handwritten digits, with mini-batches of 60 examples, twice:

  * plain:            u -> sigmoid(W u + b)
  * with BatchNorm:   u -> sigmoid(BN(W u))   (the bias b is dropped: BN's
                      shift beta takes its place, and BN would cancel b anyway)

and two things are followed during training:

  (a) the test accuracy against the number of training steps;
  (b, c) the input distribution of one sigmoid unit of the last hidden layer,
      drawn as its 15th, 50th and 85th percentiles. Without BatchNorm it
      drifts (internal covariate shift); with BatchNorm it stays in place.

The paper uses MNIST (28x28 images) and 50,000 steps. By default this script
uses scikit-learn's bundled 8x8 digits (no download) and 3000 steps; pass
--mnist DIR (the four IDX files, gzipped or not) for the real thing, and
--steps 50000 for the paper's length. The paper leaves several choices open
(optimizer, learning rate, initialization, eps, ...): the script prints the
ones it made, and writes them at the top of its results file.

Run:  python lessons/09_figure1.py [--quick] [--wrong] [--steps N] [--mnist DIR] [--out DIR]
      --wrong puts a typical mistake into the exercise at the end, to see what it reports.
"""
import os

# The matrices here are small (60 x 100): one BLAS thread is the fastest, and
# several threads fighting over a laptop's cores can make every step 10x slower.
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import argparse  # noqa: E402
import gzip  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import matplotlib  # noqa: E402

matplotlib.use("Agg")  # draw into files, no window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

import tinyad  # noqa: E402
from tinyad import Tensor, nn  # noqa: E402
from tinyad.nn.functional import cross_entropy  # noqa: E402

# The choices the paper does not make for us, in one place (printed, and
# written at the top of the results file).
LEARNING_RATE = 0.5  # plain SGD, no momentum, no weight decay, constant rate
BATCH = 60  # the paper's
HIDDEN = (100, 100, 100)  # the paper's
EPS = 1e-5  # BatchNorm's eps (PyTorch's default)
MOMENTUM = 0.1  # running-average momentum of BatchNorm (PyTorch's convention: weight of the new batch)
SEED = 0
UNIT = 0  # the sigmoid whose input distribution is followed (last hidden layer)


# --- Step 1: the data -------------------------------------------------------------------
# MNIST comes as four IDX files. An IDX file is: two zero bytes, one byte for
# the element type, one byte for the number of dimensions, then each dimension
# as a big-endian 32-bit integer, then the numbers themselves (big-endian).
IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path) -> np.ndarray:
    """The array stored in an IDX file (gzipped or not: the gzip header is sniffed)."""
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":  # gzip's magic number
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path}: not an IDX file (it must start with two zero bytes)")
    type_code, ndim = raw[2], raw[3]
    if type_code not in IDX_TYPES:
        raise ValueError(f"{path}: unknown IDX element type 0x{type_code:02x} (known: {sorted(hex(c) for c in IDX_TYPES)})")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: IDX header promises {ndim} dimensions but the file ends after {len(raw)} bytes")
    shape = tuple(int(n) for n in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(IDX_TYPES[type_code])
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        raise ValueError(f"{path}: IDX shape {shape} of {dtype} needs {expected} bytes, the file has {len(raw)}")
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))  # native byte order, and a writable copy


def find_idx(folder: Path, name: str) -> Path:
    """train-images-idx3-ubyte and its usual spellings (a dot for the last dash, .gz or not)."""
    stem, kind = name.rsplit("-", 2)[0], "-".join(name.rsplit("-", 2)[1:])
    for candidate in (name, f"{stem}.{kind}"):
        for suffix in ("", ".gz"):
            if (folder / (candidate + suffix)).is_file():
                return folder / (candidate + suffix)
    raise FileNotFoundError(f"--mnist {folder}: no {name} (or {name}.gz) in that folder")


def load_mnist(folder) -> tuple:
    """MNIST from its four IDX files: pixels / 255, then minus the training mean, over the training std (two numbers)."""
    folder = Path(folder)
    parts = [read_idx(find_idx(folder, name)) for name in
             ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")]
    train_x, train_y, test_x, test_y = parts
    train_x = train_x.reshape(len(train_x), -1) / 255.0
    test_x = test_x.reshape(len(test_x), -1) / 255.0
    mean, std = train_x.mean(), train_x.std()
    return (train_x - mean) / std, train_y.astype(np.int64), (test_x - mean) / std, test_y.astype(np.int64)


def load_small_digits() -> tuple:
    """scikit-learn's 1797 8x8 digits: 75% to train, 25% to test (stratified), each pixel standardized."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    train_x, test_x, train_y, test_y = train_test_split(
        digits.data, digits.target, test_size=0.25, random_state=0, stratify=digits.target)
    mean, std = train_x.mean(axis=0), train_x.std(axis=0)
    std[std == 0] = 1.0  # a few border pixels are always 0
    return (train_x - mean) / std, train_y.astype(np.int64), (test_x - mean) / std, test_y.astype(np.int64)


# --- Step 2: the two networks ------------------------------------------------------------
# Same layers, same initialization rule (PyTorch's default: uniform in
# [-1/sqrt(fan_in), 1/sqrt(fan_in)]; the paper used small Gaussian weights).
def build_network(batch_norm: bool, inputs: int, classes: int) -> nn.Sequential:
    layers, width = [], inputs
    for hidden in HIDDEN:
        if batch_norm:
            layers += [nn.Linear(width, hidden, bias=False), nn.BatchNorm1d(hidden, eps=EPS, momentum=MOMENTUM)]
        else:
            layers += [nn.Linear(width, hidden)]
        layers.append(nn.Sigmoid())
        width = hidden
    layers.append(nn.Linear(width, classes))
    return nn.Sequential(*layers)


def evaluate(model: nn.Sequential, x: np.ndarray, y: np.ndarray) -> tuple:
    """Test accuracy (eval mode), and the inputs of sigmoid UNIT of the last hidden layer (as in training).

    Accuracy in eval mode: BatchNorm normalizes with its running averages, so
    an example's prediction does not depend on the others it is evaluated with.
    The sigmoid's inputs are taken the way the sigmoid sees them in training:
    BatchNorm normalizes with the statistics of the batch, here the whole
    test set (close to the population's). That forward pass would also update
    the running averages, so the state is saved and put back.
    """
    layers = [model[i] for i in range(len(model))]
    last_sigmoid = max(i for i, layer in enumerate(layers) if isinstance(layer, nn.Sigmoid))
    with tinyad.no_grad():
        model.eval()
        accuracy = float((model(Tensor(x)).data.argmax(axis=1) == y).mean())
        model.train()
        saved = model.state_dict()
        h = Tensor(x)
        for layer in layers[:last_sigmoid]:
            h = layer(h)
        model.load_state_dict(saved)
    return accuracy, h.data[:, UNIT].copy()


# --- Step 3: training, with a look every few steps ---------------------------------------
def train(name: str, batch_norm: bool, data: tuple, steps: int, eval_every: int) -> dict:
    train_x, train_y, test_x, test_y = data
    tinyad.manual_seed(SEED)
    model = build_network(batch_norm, train_x.shape[1], int(train_y.max()) + 1)
    optimizer = tinyad.optim.SGD(model.parameters(), lr=LEARNING_RATE)
    rng = np.random.default_rng(SEED)  # the same batches, in the same order, for both networks
    history = {"step": [], "accuracy": [], "percentiles": [], "loss": []}

    def look(step: int) -> None:
        accuracy, sigmoid_input = evaluate(model, test_x, test_y)
        history["step"].append(step)
        history["accuracy"].append(accuracy)
        history["percentiles"].append(np.percentile(sigmoid_input, [15, 50, 85]))

    look(0)
    order, position = rng.permutation(len(train_x)), 0
    for step in tqdm(range(1, steps + 1), desc=f"training {name}", unit="step", mininterval=0.5):
        if position + BATCH > len(order):  # a new epoch, reshuffled (the last partial batch is dropped)
            order, position = rng.permutation(len(train_x)), 0
        batch = order[position:position + BATCH]
        position += BATCH
        loss = cross_entropy(model(Tensor(train_x[batch])), train_y[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history["loss"].append(loss.item())
        if step % eval_every == 0 or step == steps:
            look(step)
    history["model"] = model
    history["percentiles"] = np.array(history["percentiles"])
    return history


# --- Exercise: the gradient that starts every backward pass -------------------------------
# The loss is the MEAN cross-entropy over a batch of N examples,
#     L = -(1/N) sum_n log softmax(z_n)[y_n],
# and its gradient with respect to the logits z (an N x classes array) is
#     dL/dz = (softmax(z) - onehot(y)) / N.
# Fill it in with numpy; the engine's logits.grad is the answer it is compared with.
def your_logits_gradient(z: np.ndarray, y: np.ndarray, wrong: bool = False) -> np.ndarray:  # EXERCISE
    shifted = z - z.max(axis=1, keepdims=True)  # the same softmax, without overflow
    softmax = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    onehot = np.eye(z.shape[1])[y]
    if wrong:
        return softmax - onehot  # forgot the 1/N of the mean: the gradient of the SUM of the losses
    return (softmax - onehot) / len(z)


def exercise(model: nn.Sequential, x: np.ndarray, y: np.ndarray, wrong: bool) -> None:
    """Compare the learner's dL/dlogits with the engine's, on one batch of the trained plain network."""
    with tinyad.no_grad():
        z = model(Tensor(x)).data  # the network's logits for the batch
    logits = Tensor(z, requires_grad=True, label="logits")  # a leaf, so that backward stops here
    cross_entropy(logits, y).backward()
    answer = your_logits_gradient(z, y, wrong)
    verdict = tinyad.check.compare("your dL/dlogits", answer, logits.grad, show=False)
    print(f"\nexercise: dL/dlogits on one batch of {len(z)}: largest difference from the engine {verdict.maxdiff:.2e}:",
          "right!" if verdict.approximate else "not yet: the loss is a mean over the batch; what does that do to each gradient?")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="300 steps instead of 3000, for a first look")
    parser.add_argument("--wrong", action="store_true", help="use a wrong answer in the exercise to see what it reports")
    parser.add_argument("--steps", type=int, default=None, help="training steps per network (default 3000; the paper: 50000)")
    parser.add_argument("--eval-every", type=int, default=None, help="steps between two looks at the test set (default steps/60)")
    parser.add_argument("--mnist", default=None, metavar="DIR",
                        help="folder with MNIST's four IDX files (train-images-idx3-ubyte ..., .gz or not); default: sklearn digits")
    parser.add_argument("--out", default="lesson-output/09_figure1", help="folder for the pictures and the results file")
    args = parser.parse_args(argv)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    steps = args.steps if args.steps is not None else (300 if args.quick else 3000)
    eval_every = args.eval_every or max(1, steps // 60)
    started = time.perf_counter()

    if args.mnist:
        data, dataset = load_mnist(args.mnist), f"MNIST from {args.mnist} (pixels/255, standardized with the training set's mean and std)"
    else:
        data, dataset = load_small_digits(), "scikit-learn digits, 8x8 (1347 train / 450 test, each pixel standardized)"
    train_x, train_y, test_x, test_y = data

    settings = [
        ("data", dataset),
        ("network", f"{train_x.shape[1]} -> {' -> '.join(str(h) for h in HIDDEN)} sigmoid -> {int(train_y.max()) + 1} "
                    "(plain: Linear with bias; BN: Linear(bias=False) -> BatchNorm1d -> sigmoid)"),
        ("optimizer", f"SGD, learning rate {LEARNING_RATE} (constant), no momentum, no weight decay, the same for both networks"),
        ("batch", f"{BATCH} examples, reshuffled every epoch, the same batches for both networks"),
        ("initialization", "PyTorch's default: W and b uniform in [-1/sqrt(fan_in), 1/sqrt(fan_in)]; "
                           "BatchNorm gamma = 1, beta = 0 (the paper: small random Gaussian weights)"),
        ("BatchNorm", f"eps = {EPS} (inside the square root), running-average momentum {MOMENTUM}"),
        ("test-time statistics", "eval mode: BatchNorm's running averages (not Algorithm 2's population statistics; "
                                 "the final accuracy with those is printed as a check)"),
        ("steps", f"{steps} per network (the paper: 50,000)"),
        ("evaluation", f"the whole test set, every {eval_every} steps and at step 0"),
        ("followed sigmoid", f"unit {UNIT} of the last hidden layer: its input over the test set, "
                             "with BatchNorm in training mode (the test set's own batch statistics), as the sigmoid sees it in training"),
        ("seeds", f"tinyad.manual_seed({SEED}) for the weights, numpy default_rng({SEED}) for the batches"),
    ]
    print("settings (the choices the paper leaves open are ours):")
    for key, value in settings:
        print(f"  {key:20s} {value}")

    runs = {}
    for name, batch_norm in (("without BatchNorm", False), ("with BatchNorm", True)):
        runs[name] = train(name, batch_norm, data, steps, eval_every)
    plain, bn = runs["without BatchNorm"], runs["with BatchNorm"]

    # --- Step 4: the numbers behind the pictures -----------------------------------------
    print(f"\n{'step':>6s} | {'test accuracy':^15s} | {'unit ' + str(UNIT) + ' input, no BN (p15 p50 p85)':^30s} | "
          f"{'with BN (p15 p50 p85)':^24s}")
    print(f"{'':6s} | {'no BN':>7s} {'BN':>7s} | {'':30s} | {'':24s}")
    shown = sorted(set(np.linspace(0, len(plain["step"]) - 1, 11).round().astype(int)))
    for i in shown:
        p, b = plain["percentiles"][i], bn["percentiles"][i]
        print(f"{plain['step'][i]:6d} | {plain['accuracy'][i]:7.3f} {bn['accuracy'][i]:7.3f} | "
              f"{p[0]:9.3f} {p[1]:9.3f} {p[2]:9.3f}  | {b[0]:7.3f} {b[1]:7.3f} {b[2]:7.3f}")
    print(f"\nfinal test accuracy: without BatchNorm {plain['accuracy'][-1]:.4f}, with BatchNorm {bn['accuracy'][-1]:.4f}")
    print(f"best test accuracy:  without BatchNorm {max(plain['accuracy']):.4f}, with BatchNorm {max(bn['accuracy']):.4f}")
    # How far each percentile wandered: its range (largest - smallest value) over the whole run.
    for name, run in runs.items():
        wander = run["percentiles"].max(axis=0) - run["percentiles"].min(axis=0)
        print(f"unit {UNIT} input {name:17s}: range over training of p15 {wander[0]:.3f}, p50 {wander[1]:.3f}, p85 {wander[2]:.3f}")

    # The paper's Algorithm 2 instead of the running averages, as a check.
    model = bn["model"]
    nn.set_population_statistics(model, [train_x[i:i + BATCH] for i in range(0, len(train_x) - BATCH + 1, BATCH)])
    population_accuracy, _ = evaluate(model, test_x, test_y)
    print(f"with BatchNorm, population statistics (Algorithm 2) instead of running averages: test accuracy {population_accuracy:.4f}")

    # --- Step 5: the pictures ------------------------------------------------------------
    figure, axis = plt.subplots(figsize=(6, 4))
    axis.plot(plain["step"], plain["accuracy"], color="#1f77b4", linestyle="--", label="without BatchNorm")
    axis.plot(bn["step"], bn["accuracy"], color="#d62728", label="with BatchNorm")
    axis.set_xlabel("training step")
    axis.set_ylabel("test accuracy")
    axis.set_ylim(0, 1)
    axis.set_title(f"Figure 1(a): {'MNIST' if args.mnist else 'sklearn digits'}, SGD lr {LEARNING_RATE}, batch {BATCH}")
    axis.legend(loc="lower right")
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(out_dir / "figure1_accuracy.png", dpi=120)
    plt.close(figure)

    figure, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for axis, (name, run), color in zip(axes, runs.items(), ("#1f77b4", "#d62728")):
        for column, style in zip(range(3), (":", "-", ":")):
            axis.plot(run["step"], run["percentiles"][:, column], color=color, linestyle=style,
                      label=("15th / 85th percentile" if column == 0 else "median" if column == 1 else None))
        axis.fill_between(run["step"], run["percentiles"][:, 0], run["percentiles"][:, 2], color=color, alpha=0.15)
        axis.set_title(f"Figure 1({'b' if run is plain else 'c'}): {name}")
        axis.set_xlabel("training step")
        axis.legend(fontsize=8)
        axis.grid(alpha=0.3)
    axes[0].set_ylabel(f"input of sigmoid {UNIT}, last hidden layer")
    figure.tight_layout()
    figure.savefig(out_dir / "figure1_percentiles.png", dpi=120)
    plt.close(figure)

    # --- Step 6: the results file, its header stating every choice -----------------------
    lines = ["# Figure 1 of Ioffe & Szegedy (2015), reproduced with tinyad", "",
             "Written by `lessons/09_figure1.py`. Every choice the paper leaves open:", ""]
    lines += [f"* **{key}**: {value}" for key, value in settings]
    lines += ["", "| step | test accuracy, no BN | test accuracy, BN | no BN p15 | p50 | p85 | BN p15 | p50 | p85 |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for i in range(len(plain["step"])):
        p, b = plain["percentiles"][i], bn["percentiles"][i]
        lines.append(f"| {plain['step'][i]} | {plain['accuracy'][i]:.4f} | {bn['accuracy'][i]:.4f} | "
                     f"{p[0]:.3f} | {p[1]:.3f} | {p[2]:.3f} | {b[0]:.3f} | {b[1]:.3f} | {b[2]:.3f} |")
    (out_dir / "figure1_results.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"\npictures: {out_dir / 'figure1_accuracy.png'}, {out_dir / 'figure1_percentiles.png'}")
    print(f"results:  {out_dir / 'figure1_results.md'}")

    # --- Exercise (after the experiment, so it changes none of its numbers) ---------------
    exercise(plain["model"], train_x[:BATCH], train_y[:BATCH], args.wrong)
    print(f"time: {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()

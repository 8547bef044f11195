"""The paper's experiments (lessons 9 and 10) run at a small size, and the claims point the right way.

Each lesson runs once with --quick (a module fixture); the tests read what it
printed, the pictures it drew and the numbers it saved (claims.json), and
check the DIRECTION of each claim that docs/claims.md makes: BatchNorm reaches
the target accuracy in fewer steps, trains at a learning rate where the plain
network's loss stays high, is less sensitive to the initialization scale, and
detaching its statistics from the gradient lets the shift before it run away.
The IDX reader of lesson 9 is checked on small files written here.
"""
from __future__ import annotations

import gzip
import importlib.util
import json
import os
import re
import struct
import subprocess
import sys
from pathlib import Path
from unittest import mock

import numpy as np
import pytest

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")
pytest.importorskip("tqdm")

REPO = Path(__file__).resolve().parent.parent
FIGURE1 = REPO / "lessons" / "09_figure1.py"
CLAIMS = REPO / "lessons" / "10_paper_claims.py"
NUMBER = r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?"


def run_script(script: Path, *flags: str) -> str:
    done = subprocess.run([sys.executable, str(script), *flags], capture_output=True, text=True, timeout=180, cwd=REPO)
    assert done.returncode == 0, f"{script.name} failed:\n{done.stdout}\n{done.stderr[-4000:]}"
    return done.stdout


def png_size(path: Path) -> tuple:
    """(width, height) from a PNG's IHDR chunk."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


# --- lesson 9: Figure 1 -------------------------------------------------------------------


@pytest.fixture(scope="module")
def figure1(tmp_path_factory):
    out = tmp_path_factory.mktemp("figure1")
    return run_script(FIGURE1, "--quick", "--out", str(out)), out


def test_figure1_draws_both_pictures(figure1):
    _, out = figure1
    for name in ("figure1_accuracy.png", "figure1_percentiles.png"):
        width, height = png_size(out / name)
        assert 300 <= width <= 3000 and 200 <= height <= 2000, (name, width, height)
    # the percentiles picture has two panels side by side, wider than it is tall
    width, height = png_size(out / "figure1_percentiles.png")
    assert width > 1.5 * height


def test_figure1_prints_accuracies_between_0_and_1(figure1):
    output, _ = figure1
    final = re.search(rf"final test accuracy: without BatchNorm ({NUMBER}), with BatchNorm ({NUMBER})", output)
    assert final, output
    rows = re.findall(rf"^\s*(\d+) \|\s+({NUMBER})\s+({NUMBER}) \|", output, re.M)
    assert len(rows) >= 5, output
    accuracies = [float(a) for _, *pair in rows for a in pair] + [float(x) for x in final.groups()]
    assert all(0.0 <= a <= 1.0 for a in accuracies), accuracies
    assert [int(step) for step, *_ in rows][0] == 0 and int(rows[-1][0]) == 300


def test_figure1_states_its_open_choices_in_the_output_and_the_results_file(figure1):
    output, out = figure1
    results = (out / "figure1_results.md").read_text()
    for key in ("optimizer", "initialization", "BatchNorm", "test-time statistics", "steps", "evaluation", "seeds"):
        assert re.search(rf"^\s+{re.escape(key)}\s", output, re.M), f"{key} not printed"
        assert f"**{key}**" in results, f"{key} not in the results header"
    assert "running averages" in output and "eps = 1e-05" in output and "learning rate 0.5" in output


def load_figure1_module():
    """lessons/09_figure1.py as a module (its training runs only under __main__)."""
    spec = importlib.util.spec_from_file_location("lesson_09_figure1", FIGURE1)
    module = importlib.util.module_from_spec(spec)
    with mock.patch.dict(os.environ):  # the lesson sets BLAS thread counts; keep them out of this process
        spec.loader.exec_module(module)
    return module


def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> None:
    codes = {np.dtype("uint8"): 0x08, np.dtype("int8"): 0x09, np.dtype("int16"): 0x0B,
             np.dtype("int32"): 0x0C, np.dtype("float32"): 0x0D, np.dtype("float64"): 0x0E}
    header = bytes([0, 0, codes[array.dtype], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)


@pytest.mark.parametrize("dtype", ["uint8", "int8", "int16", "int32", "float32", "float64"])
@pytest.mark.parametrize("compress", [False, True])
def test_idx_reader_reads_back_what_was_written(tmp_path, dtype, compress):
    read_idx = load_figure1_module().read_idx
    rng = np.random.default_rng(0)
    array = (rng.normal(size=(3, 4, 5)) * 50).astype(dtype)
    path = tmp_path / ("tiny.idx.gz" if compress else "tiny.idx")
    write_idx(path, array, compress)
    back = read_idx(path)
    assert back.shape == (3, 4, 5) and back.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(back, array)


def test_idx_reader_refuses_broken_files(tmp_path):
    read_idx = load_figure1_module().read_idx
    path = tmp_path / "labels"
    write_idx(path, np.arange(10, dtype=np.uint8))
    np.testing.assert_array_equal(read_idx(path), np.arange(10))
    path.write_bytes(path.read_bytes()[:-1])  # one byte short
    with pytest.raises(ValueError, match="needs 18 bytes, the file has 17"):
        read_idx(path)
    path.write_bytes(b"\x01\x02\x08\x01" + struct.pack(">I", 1) + b"\x00")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(path)
    path.write_bytes(b"\x00\x00\x07\x01" + struct.pack(">I", 1) + b"\x00")
    with pytest.raises(ValueError, match="unknown IDX element type"):
        read_idx(path)


def test_figure1_runs_on_mnist_idx_files(tmp_path):
    """Four small MNIST-shaped IDX files (two gzipped, one with the dotted spelling) through --mnist."""
    rng = np.random.default_rng(1)
    folder = tmp_path / "mnist"
    folder.mkdir()
    write_idx(folder / "train-images-idx3-ubyte.gz", rng.integers(0, 256, size=(180, 28, 28)).astype(np.uint8), compress=True)
    write_idx(folder / "train-labels-idx1-ubyte", rng.integers(0, 10, size=180).astype(np.uint8))
    write_idx(folder / "t10k-images.idx3-ubyte", rng.integers(0, 256, size=(50, 28, 28)).astype(np.uint8))
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", rng.integers(0, 10, size=50).astype(np.uint8), compress=True)
    out = tmp_path / "out"
    output = run_script(FIGURE1, "--mnist", str(folder), "--steps", "20", "--eval-every", "10", "--out", str(out))
    assert "MNIST" in output and "784 -> 100 -> 100 -> 100" in output
    assert (out / "figure1_accuracy.png").exists() and (out / "figure1_percentiles.png").exists()
    final = re.search(rf"final test accuracy: without BatchNorm ({NUMBER}), with BatchNorm ({NUMBER})", output)
    assert final and all(0 <= float(x) <= 1 for x in final.groups())


# --- lesson 10: the claims ------------------------------------------------------------------


@pytest.fixture(scope="module")
def claims(tmp_path_factory):
    docs = REPO / "docs" / "claims.md"
    before = docs.read_bytes() if docs.exists() else None
    out = tmp_path_factory.mktemp("claims")
    output = run_script(CLAIMS, "--quick", "--out", str(out))
    after = docs.read_bytes() if docs.exists() else None
    return output, out, json.loads((out / "claims.json").read_text()), before == after


def test_quick_run_leaves_docs_claims_alone_and_writes_its_own_copy(claims):
    output, out, numbers, docs_unchanged = claims
    assert docs_unchanged and "not written" in output
    assert numbers["quick"] is True
    text = (out / "claims.md").read_text()
    assert text.startswith("# Reproduced claims") and "python lessons/10_paper_claims.py --quick" in text
    for letter in "abcde":
        assert re.search(rf"^\| \({letter}\) \|", text, re.M), f"row ({letter}) missing"
    for name in ("learning_rates.png", "init_scale.png", "steps_to_target.png", "detached_statistics.png"):
        width, height = png_size(out / name)
        assert width >= 300 and height >= 200


def test_batchnorm_reaches_the_target_accuracy_in_fewer_steps(claims):
    speed = claims[2]["steps_to_target"]["same_lr"]
    assert speed["bn"] is not None, "the BN network never reached the target"
    assert speed["plain"] is None or speed["bn"] < speed["plain"], speed


def test_at_a_large_learning_rate_the_plain_loss_is_worse(claims):
    numbers = claims[2]
    large = numbers["learning_rate"][str(numbers["large_lr"])]
    assert large["plain"]["loss"] > 2 * large["bn"]["loss"], large
    assert large["bn"]["test"] > large["plain"]["test"], large


def test_batchnorm_is_less_sensitive_to_the_init_scale(claims):
    numbers = claims[2]
    assert len(numbers["init_scale"]) >= 3
    spread = numbers["init_spread"]
    assert spread["bn"] < spread["plain"], spread


def test_detached_statistics_let_the_shift_before_normalization_grow(claims):
    blowup = claims[2]["detached_stats"]
    detached, true = blowup["detached"], blowup["true-grad"]
    # only b trains: the true gradient of b is 0 (b cannot change the output); detached, b walks away
    assert detached["only_b"]["shift"][-1] > 1e-2
    assert detached["only_b"]["shift"][-1] > 1000 * true["only_b"]["shift"][-1]
    # steadily, about linearly in the number of steps: twice the steps, about twice as far
    checkpoints, shift = detached["only_b"]["checkpoints"], detached["only_b"]["shift"]
    quarter, half = shift[checkpoints.index(checkpoints[-1] // 4)], shift[checkpoints.index(checkpoints[-1] // 2)]
    assert 0 < quarter < half < shift[-1]
    assert 1.5 < shift[-1] / half < 2.5 and 1.5 < half / quarter < 2.5, (quarter, half, shift[-1])
    # ... and the loss does not move, because the normalization undoes every step of b
    assert abs(detached["only_b"]["loss_after"] - detached["only_b"]["loss_before"]) < 1e-8
    # the whole network trained: the same, b moves only with the detached statistics
    assert detached["all"]["shift"] > 1000 * true["all"]["shift"]


def test_the_printed_summary_matches_the_saved_rows(claims):
    output, _, numbers, _ = claims
    for letter, row in numbers["rows"].items():
        verdict = "inconclusive" if row["reproduced"] is None else "yes" if row["reproduced"] else "**no**"
        assert re.search(rf"\({letter}\) .*\s{re.escape(verdict)}$", output, re.M), (letter, verdict)


# --- the exercises of lessons 9 and 10 ---------------------------------------------------------
# The shipped answer is the right one (the module fixtures' quick runs); --wrong
# puts a typical mistake in its place, which the lesson must report as wrong.


def test_figure1_exercise_shipped_answer_is_right(figure1):
    output, _ = figure1
    assert "exercise: dL/dlogits" in output and "right!" in output and "not yet" not in output, output[-2000:]


def test_figure1_exercise_wrong_answer_reports_not_yet(tmp_path):
    output = run_script(FIGURE1, "--quick", "--wrong", "--out", str(tmp_path))
    assert "exercise: dL/dlogits" in output and "not yet" in output and "right!" not in output, output[-2000:]


def test_claims_exercise_shipped_answer_is_right(claims):
    output = claims[0]
    assert "exercise: dL/dx with detached statistics" in output and "right!" in output and "not yet" not in output, output[-2000:]


def test_claims_exercise_wrong_answer_reports_not_yet(tmp_path):
    docs = REPO / "docs" / "claims.md"
    before = docs.read_bytes() if docs.exists() else None
    output = run_script(CLAIMS, "--quick", "--no-write-docs", "--wrong", "--out", str(tmp_path))
    assert "exercise: dL/dx with detached statistics" in output and "not yet" in output and "right!" not in output, output[-2000:]
    assert (docs.read_bytes() if docs.exists() else None) == before
    # the exercise changes no number of the experiments, and --wrong is left out of the recorded command
    assert "--wrong" not in (tmp_path / "claims.md").read_text()

"""The lessons run, print the numbers behind what they claim, draw their pictures, and grade the exercise.

Each lesson runs once with --quick (a fixture shared by the tests of that
lesson); the tests read its printed numbers and check the claim itself, not
only the exit code. Every lesson's --wrong run is run from another directory
with the default --out, so that the script is shown to need neither the repo
root as working directory nor an explicit output folder.

Every lesson ships its exercise as a stub (tinyad.exercises): the plain run
must go to the end and say "not yet" with a first hint, --wrong must give the
second hint and name the mistake, and --solution (the reference in
lessons/solutions/) must say "right!". Lessons 9 and 10 are tested the same
way in test_experiments.py.
"""
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LESSONS = {
    "01": "01_chain_rule",
    "02": "02_neuron_by_hand",
    "03": "03_scalars_to_tensors",
    "04": "04_mlp_training",
    "05": "05_covariate_shift",
    "06": "06_batchnorm_forward",
    "07": "07_batchnorm_backward",
    "08": "08_train_vs_eval",
    "11": "11_backprop_ninja",
    "12": "12_scale_invariance",
    "13": "13_conv_batchnorm",
}
EXERCISE_STUBS = ["01", "02", "03", "04", "05", "06", "07", "08", "11", "12", "13"]
PICTURES = {
    "01": ["chain_rule.png", "chain_rule.dot"],
    "02": ["neuron.png", "neuron.dot"],
    "03": ["broadcast.png", "broadcast.dot"],
    "04": ["loss.png", "decision_boundary.png"],
    "05": ["covariate_shift.png", "sigmoid_saturation.png"],
    "06": ["batchnorm_forward.png", "zigzag.png", "whitening_cost.png"],
    "07": ["batchnorm_every_sample.png", "batchnorm_routes.png", "batchnorm_routes_16.png", "batchnorm_explore.html"],
    "08": ["running_stats.png", "batch_noise.png"],
    "11": ["ninja_training.png"],
    "12": ["gradient_norms.png", "activations.png", "gradients.png", "update_ratio.png"],
    "13": ["channel_statistics.png", "channel_routes.png"],
}
NUMBER = r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?"


def run_lesson(number: str, *flags: str, cwd: Path | None = None) -> str:
    script = REPO / "lessons" / f"{LESSONS[number]}.py"
    done = subprocess.run(
        [sys.executable, str(script), "--quick", *flags],
        capture_output=True, text=True, timeout=120, cwd=cwd or REPO,
    )
    assert done.returncode == 0, f"lesson {number} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def lesson(tmp_path_factory):
    """lesson(number) -> (stdout, out folder), each lesson run once per test module."""
    cache = {}

    def get(number: str) -> tuple:
        if number not in cache:
            out = tmp_path_factory.mktemp(f"lesson{number}")
            cache[number] = (run_lesson(number, "--out", str(out)), out)
        return cache[number]

    return get


@pytest.fixture(scope="module")
def solved(tmp_path_factory):
    """solved(number) -> stdout of the lesson run with --solution, once per test module."""
    cache = {}

    def get(number: str) -> str:
        if number not in cache:
            cache[number] = run_lesson(number, "--solution", "--out", str(tmp_path_factory.mktemp(f"solved{number}")))
        return cache[number]

    return get


def find(pattern: str, text: str) -> tuple:
    """The numbers captured by ``pattern`` (which must match) as floats."""
    match = re.search(pattern, text)
    assert match, f"no line matches {pattern!r} in:\n{text}"
    return tuple(float(group) for group in match.groups())


def numbers_after(label: str, text: str) -> list:
    line = next(line for line in text.splitlines() if line.startswith(label))
    return [float(value) for value in re.findall(NUMBER, line[len(label):])]


def comparison_rows(text: str) -> list:
    """(name, exact, approximate) of every row of every tinyad.check.format_table in ``text``."""
    rows, lines = [], text.splitlines()
    for index, line in enumerate(lines):
        if re.match(r"name\s*\| exact\s*\| approximate\s*\| maxdiff", line):
            for row in lines[index + 2:]:
                cells = [cell.strip() for cell in row.split("|")]
                if len(cells) < 4:
                    break
                rows.append((cells[0], cells[1] == "True", cells[2] == "True"))
    return rows


def assert_exercise_right(text: str) -> None:
    lines = [line for line in text.splitlines() if line.startswith("exercise:")]
    assert lines and all(line.endswith("right!") for line in lines), lines


# --- every lesson --------------------------------------------------------------------


@pytest.mark.parametrize("number", sorted(LESSONS))
def test_lesson_writes_its_pictures_to_the_out_folder(lesson, number):
    _, out = lesson(number)
    for name in PICTURES[number]:
        picture = out / name
        assert picture.exists() and picture.stat().st_size > 0, f"{name} missing in {sorted(out.iterdir())}"
        if name.endswith(".png"):
            assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_lesson_ships_its_exercise_as_a_stub():
    assert EXERCISE_STUBS == sorted(LESSONS)
    for name in LESSONS.values():
        source = (REPO / "lessons" / f"{name}.py").read_text()
        assert "# EXERCISE" in source and "raise NotImplementedError" in source, name
        assert (REPO / "lessons" / "solutions" / f"{name}.py").exists(), name


@pytest.mark.parametrize("number", EXERCISE_STUBS)
def test_stub_exercise_says_what_to_write_and_the_lesson_runs_to_the_end(lesson, number):
    output, out = lesson(number)
    blocks = output.split("\nexercise: ")[1:]
    assert blocks, output
    for block in blocks:
        assert block.splitlines()[0].endswith("is not written yet: not yet"), block
        assert "\n  write: " in block and "\n  hint: " in block and "--check" in block
    assert output.count("raise NotImplementedError") == len(blocks)  # the "where:" line names the line to replace
    assert "right!" not in output
    assert all((out / name).exists() for name in PICTURES[number])  # the steps after the exercise ran too


@pytest.mark.parametrize("number", EXERCISE_STUBS)
def test_reference_solution_is_graded_right(solved, number):
    output = solved(number)
    assert_exercise_right(output)
    assert "not yet" not in output


@pytest.mark.parametrize("number", sorted(LESSONS))
def test_wrong_exercise_is_reported_from_another_directory(tmp_path, number):
    output = run_lesson(number, "--wrong", cwd=tmp_path)
    line = next(line for line in output.splitlines() if line.startswith("exercise:"))
    assert "not yet" in line and "right!" not in line, line
    if number in EXERCISE_STUBS:  # graded hints: the second hint after a wrong answer, and the mistake named
        block = output.split(line)[1]
        assert "\n  a common mistake: " in block and "\n  hint 1: " in block and "\n  hint 2: " in block, block
    default_out = tmp_path / "lesson-output" / LESSONS[number]
    assert all((default_out / name).exists() for name in PICTURES[number])


@pytest.mark.parametrize("number", sorted(LESSONS))
def test_lesson_source_uses_only_public_names_and_marks_its_exercise(number):
    source = (REPO / "lessons" / f"{LESSONS[number]}.py").read_text()
    private = [name for name in re.findall(r"\.(_\w+)", source) if not (name.startswith("__") and name.endswith("__"))]
    assert not private, f"private names used: {private}"
    assert not re.search(r"import\s+_|import .*\b_[a-z]", source)
    assert "# EXERCISE" in source
    if "pyplot" in source:
        assert source.index('matplotlib.use("Agg")') < source.index("import matplotlib.pyplot")


# --- lesson 1: the chain rule ------------------------------------------------------------


def test_lesson_01_central_difference_agrees_with_the_engine(lesson):
    output = lesson("01")[0]
    engine, = find(rf"engine dL/dx = ({NUMBER})", output)
    central, difference = find(rf"central difference \(h = {NUMBER}\) = ({NUMBER})\s+difference = ({NUMBER})", output)
    assert abs(engine - central) < 1e-8 and difference < 1e-8
    assert "gradcheck L = exp(tanh(x^2)): True" in output
    assert "gradcheck q = a*b + a (two inputs): True" in output


def test_lesson_01_central_differences_beat_forward_differences(lesson):
    output = lesson("01")[0]
    rows = re.findall(rf"^\s+({NUMBER})\s+({NUMBER})\s+({NUMBER})\s+({NUMBER})\s+({NUMBER})$", output, re.M)
    assert len(rows) >= 2
    for _, _, forward_error, _, central_error in rows:
        assert float(central_error) < float(forward_error)


def test_lesson_01_grad_is_the_product_of_local_derivatives_and_messages_add(lesson):
    output = lesson("01")[0]
    grad, product = find(rf"x.grad = ({NUMBER})\s+\(dL/dv \* dv/du \* du/dx = ({NUMBER})\)", output)
    assert grad == product
    first, second, total, a_grad = find(
        rf"message from a\*b = ({NUMBER}), message from \+ = ({NUMBER}), sum = ({NUMBER}), a.grad = ({NUMBER})", output)
    assert first + second == total == a_grad


# --- lesson 2: a neuron by hand ----------------------------------------------------------


def test_lesson_02_every_hand_gradient_matches_the_engine(lesson):
    rows = comparison_rows(lesson("02")[0])
    names = [name for name, _, _ in rows]
    for expected in ("dL/do", "dL/dn", "dL/dw1", "dL/dw2", "dL/db", "dL/dx1", "dL/dx2", "dL/dw (tensor)"):
        assert expected in names
    assert len(rows) == 10 and all(approximate for _, _, approximate in rows), rows


# --- lesson 3: broadcasting ----------------------------------------------------------------


def test_lesson_03_bias_gradient_is_the_column_sum(lesson):
    output = lesson("03")[0]
    engine = numbers_after("b.grad (engine)     :", output)
    column_sum = numbers_after("column sum of G     :", output)
    values = numbers_after("b.grad (Values)     :", output)
    assert len(engine) == 3
    assert max(abs(a - b) for a, b in zip(engine, column_sum)) < 1e-6
    assert max(abs(a - b) for a, b in zip(engine, values)) < 1e-6
    *messages, total = find(rf"messages into b\[0\]:\s+({NUMBER})\s+({NUMBER})\s+({NUMBER})\s+({NUMBER})\s+sum = ({NUMBER})", output)
    assert abs(sum(messages) - total) < 1e-6 and abs(total - engine[0]) < 1e-6


def test_lesson_03_comparisons_and_gradcheck_pass(lesson):
    output = lesson("03")[0]
    rows = comparison_rows(output)
    assert len(rows) == 5 and all(approximate for _, _, approximate in rows), rows
    assert "gradcheck (X + b) and (c * r): True" in output
    assert "c.grad has shape (4, 1), r.grad has shape (3,)" in output


# --- lesson 4: training an MLP --------------------------------------------------------------


def test_lesson_04_loss_decreases_and_the_model_learns(lesson):
    output = lesson("04")[0]
    start, log2 = find(rf"loss at step 0: ({NUMBER})\s+\(.* = ({NUMBER})\)", output)
    first, last = find(rf"first 20 steps average ({NUMBER}), last 20 steps average ({NUMBER})", output)
    train, test = find(rf"accuracy: train ({NUMBER}), test ({NUMBER})", output)
    assert abs(start - log2) < 0.2  # an untrained classifier is close to a coin flip
    assert last < 0.5 * first
    assert train > 0.9 and test > 0.9


# --- lesson 5: internal covariate shift and saturation ----------------------------------------


def test_lesson_05_inputs_of_layer_2_drift_while_training(lesson):
    output = lesson("05")[0]
    mean_shift, largest = find(rf"moved its mean by ({NUMBER}) on average \(largest ({NUMBER})\)", output)
    assert 0 < mean_shift <= largest
    median_start, median_end, std_start, std_end = find(
        rf"drift of unit 0's pre-activation z2\[0\]: median ({NUMBER}) -> ({NUMBER}), std ({NUMBER}) -> ({NUMBER})", output)
    assert abs(median_end - median_start) > 0.1 and std_end > 2 * std_start
    alone, = find(rf"shift from layer 1 alone: ({NUMBER})", output)
    assert alone > 0


def test_lesson_05_sigmoid_gradients_shrink_when_saturated(lesson):
    output = lesson("05")[0]
    slopes = re.findall(rf"sigmoid'\(\s*({NUMBER})\) = ({NUMBER})\s+s \(1 - s\) = ({NUMBER})", output)
    assert len(slopes) == 6
    engine = [float(value) for _, value, _ in slopes]
    assert all(abs(float(a) - float(b)) < 1e-9 for _, a, b in slopes)
    assert engine[0] == 0.25 and engine == sorted(engine, reverse=True) and engine[-1] < 1e-4
    good = find(rf"standardized\s+\|\s+({NUMBER}) \|\s+({NUMBER}) \|\s+({NUMBER}) \|\s+({NUMBER})", output)
    bad = find(rf"scaled x10\s+\|\s+({NUMBER}) \|\s+({NUMBER}) \|\s+({NUMBER}) \|\s+({NUMBER})", output)
    assert bad[0] > 0.5 > good[0]  # fraction of |z| > 2
    assert bad[2] < good[2] and bad[3] < good[3]  # mean sigmoid'(z), mean |dL/dz|
    ratio, = find(rf"the gradient reaching z is ({NUMBER}) times smaller", output)
    assert ratio > 1


# --- lesson 6: BatchNorm forward ----------------------------------------------------------------


def test_lesson_06_normalizes_and_gamma_beta_restore_the_identity(lesson):
    output = lesson("06")[0]
    rows = comparison_rows(output)
    assert rows == [("x_hat hand", rows[0][1], True)]
    means = numbers_after("per feature      mean of x_hat:", output.replace("std of x_hat:", ""))
    assert all(abs(value) < 1e-3 for value in means[:3])
    difference, = find(rf"identity restored: max \|y - x\| = ({NUMBER})", output)
    assert difference < 1e-6


def test_lesson_06_all_positive_inputs_give_same_sign_gradients(lesson):
    output = lesson("06")[0]
    positive_part = output.split("  all-positive inputs:\n")[1].split("all-positive inputs: rows")[0]
    signs = re.findall(r"signs ([+-]+)", positive_part)
    assert len(signs) == 6 and all(len(set(row)) == 1 for row in signs)
    assert find(r"all-positive inputs: rows whose signs are all equal: (\d+) of (\d+)", output) == (6.0, 6.0)
    mixed, total = find(r"normalized inputs: rows whose signs are all equal: (\d+) of (\d+)", output)
    assert mixed < total
    positive_steps, positive_same = find(rf"all-positive inputs\s*: (\d+) steps .* same way: ({NUMBER})%", output)
    normalized_steps, normalized_same = find(rf"normalized inputs\s*: (\d+) steps .* same way: ({NUMBER})%", output)
    assert positive_same == 100 and normalized_same < 100
    assert normalized_steps < positive_steps


def test_lesson_06_whitening_costs_more_than_per_feature_statistics(lesson):
    output = lesson("06")[0]
    rows = re.findall(rf"^\s+(\d+) \|\s+({NUMBER}) us \|\s+({NUMBER}) us \|\s+({NUMBER})$", output, re.M)
    assert len(rows) >= 3
    for _, cheap, costly, ratio in rows:
        assert abs(float(costly) / float(cheap) - float(ratio)) < 0.05 * float(ratio) + 0.1
    assert float(rows[-1][3]) > 1  # at the largest D, whitening is slower
    after_bn, after_white = find(rf"({NUMBER}) after BatchNorm, ({NUMBER}) after whitening", output)
    assert after_white < 0.1 < after_bn


# --- lesson 8: train versus eval -------------------------------------------------------------


def test_lesson_08_population_statistics_beat_the_running_average(lesson):
    output = lesson("08")[0]
    running = find(rf"running average\s+\|\s+({NUMBER}) \|\s+({NUMBER})% \|\s+({NUMBER})", output)
    population = find(rf"population \(Algorithm 2\)\s+\|\s+({NUMBER}) \|\s+({NUMBER})% \|\s+({NUMBER})", output)
    assert population[0] < 1e-9 < running[0]  # equal batches covering the set: the mean is exact
    assert population[1] < running[1]
    assert min(running[2], population[2]) > 0.8


def test_lesson_08_train_and_eval_outputs_differ(lesson):
    gap, = find(rf"max \|train-mode output - eval-mode output\| = ({NUMBER})", lesson("08")[0])
    assert gap > 0


def test_lesson_08_batch_of_one_raises_with_a_clear_message(lesson):
    output = lesson("08")[0]
    line = next(line for line in output.splitlines() if line.startswith("batch of one in train mode"))
    assert "-> ValueError:" in line and "more than 1 value per channel" in line and "(1, 16)" in line
    assert "batch of one in eval mode works" in output


def test_lesson_08_same_example_varies_across_batches_only_in_training(lesson):
    output = lesson("08")[0]
    spread, std = find(rf"spread \(max - min\) averaged over the 16 features: ({NUMBER}), std across batches: ({NUMBER})", output)
    assert spread > 0 and std > 0
    eval_spread, = find(rf"eval mode, 5 different batches: spread ({NUMBER})", output)
    assert eval_spread == 0


# --- lesson 11: backprop ninja ----------------------------------------------------------------


def test_lesson_11_reference_backward_matches_the_engine_for_every_intermediate(solved):
    rows = comparison_rows(solved("11"))
    names = [name for name, _, _ in rows]
    for expected in ("dlogits", "dW2", "dh_bn", "dx_hat", "dinv_std", "dbatch_var", "dcentered", "dbatch_mean",
                     "dh_pre", "dW1", "db1"):
        assert expected in names
    assert len(rows) == 16 and all(approximate for _, _, approximate in rows), rows  # 15 gradients + the compact one


def test_lesson_11_training_with_your_backward_gives_the_same_losses_as_loss_backward(solved):
    output = solved("11")
    assert "with your backward and with loss.backward()" in output
    first, last = find(rf"first 20 steps average ({NUMBER}), last 20 steps average ({NUMBER})", output)
    gap, = find(rf"largest difference between the two loss curves: ({NUMBER})", output)
    assert last < first / 3 and gap < 1e-10
    yours, engine = find(rf"test accuracy: ({NUMBER}) \(yours\), ({NUMBER}) \(engine\)", output)
    assert yours == engine and yours > 0.8


def test_lesson_11_stub_trains_with_the_engine_and_says_so(lesson):
    output = lesson("11")[0]
    assert "with the engine's backward (yours is not right yet)" in output


def test_lesson_11_bessel_factor_and_its_effect_shrink_with_the_batch(lesson):
    rows = re.findall(rf"^\s+(\d+) \|\s+({NUMBER}) \|\s+({NUMBER}) \|\s+({NUMBER})%$", lesson("11")[0], re.M)
    assert [int(m) for m, *_ in rows] == [4, 8, 32, 128]
    for m, factor, _, _ in rows:
        assert float(factor) == pytest.approx(int(m) / (int(m) - 1), abs=1e-4)
    changes = [float(change) for *_, change in rows]
    assert changes == sorted(changes, reverse=True) and changes[-1] < 1


def test_lesson_11_bias_before_batchnorm_gets_no_gradient(lesson):
    largest, = find(rf"max \|db1\| = ({NUMBER})", lesson("11")[0])
    assert largest < 1e-12


# --- lesson 12: scale invariance -------------------------------------------------------------


def test_lesson_12_batchnorm_output_ignores_the_weight_scale_until_eps_matters(lesson):
    rows = dict(re.findall(rf"^\s+({NUMBER}) \| ({NUMBER})$", lesson("12")[0], re.M))
    assert float(rows["1"]) == 0
    assert all(float(rows[a]) < 1e-5 for a in ("0.5", "2", "10", "100"))
    assert float(rows["0.001"]) > 0.1  # a^2 var is then far below eps


def test_lesson_12_input_gradient_stays_and_weight_gradient_falls_like_one_over_a(lesson):
    slope_u, slope_w, slope_update = find(
        rf"\|dL/du\| ({NUMBER}), \|dL/d\(aW\)\| ({NUMBER}), relative update ({NUMBER})", lesson("12")[0])
    assert abs(slope_u) < 0.01 and abs(slope_w + 1) < 0.01 and abs(slope_update + 2) < 0.01


def test_lesson_12_batchnorm_keeps_tanh_units_out_of_saturation(lesson):
    output = lesson("12")[0]
    plain = output.split("without BatchNorm:")[1].split("with BatchNorm:")[0]
    normed = output.split("\nwith BatchNorm:")[1]
    pattern = rf"^\s+\d \|\s+({NUMBER})% \|"
    saturated_plain = [float(value) for value in re.findall(pattern, plain, re.M)]
    saturated_normed = [float(value) for value in re.findall(pattern, normed, re.M)]
    assert len(saturated_plain) == len(saturated_normed) == 5
    assert min(saturated_plain) > 3 * max(saturated_normed)

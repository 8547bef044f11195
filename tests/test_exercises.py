"""tinyad.exercises: stubs are recognised, answers graded against the engine, hints given in order.

The lessons' own stub, wrong and solution runs are in test_lessons.py; here
the grader itself, and a learner's written answer in a copy of lesson 1.
"""
import argparse
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tinyad.exercises import Exercise, add_arguments, is_stub

REPO = Path(__file__).resolve().parent.parent


def flags(*given: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(given))


def square_exercise(**options) -> Exercise:
    return Exercise("99_test", task="return 2x", hints=("first hint", "second hint"),
                    engine=lambda x: 2 * x, cases=[(3.0,), (-1.0,)], **options)


def stub(x):
    raise NotImplementedError("your turn")


def test_a_function_raising_not_implemented_itself_is_a_stub():
    assert is_stub(stub, (1.0,))[0] is True


def test_not_implemented_raised_deeper_down_is_a_bug_not_a_stub():
    def written(x):
        return stub(x) + 1

    is_a_stub, _, error = is_stub(written, (1.0,))
    assert is_a_stub is False and isinstance(error, NotImplementedError)


def test_stub_prints_the_task_and_only_the_first_hint_and_returns_the_engine_answer(capsys):
    answer = square_exercise().run(stub, flags())
    printed = capsys.readouterr().out
    assert answer == 6.0
    assert "exercise: stub is not written yet: not yet" in printed
    assert "write: return 2x" in printed and "hint: first hint" in printed and "second hint" not in printed


def test_right_answer_says_right_and_is_what_the_lesson_goes_on_with(capsys):
    exercise = square_exercise()
    assert exercise.run(lambda x: x + x, flags()) == 6.0
    printed = capsys.readouterr().out
    assert re.search(r"^exercise: .*: right!$", printed, re.M) and exercise.passed


def test_wrong_answer_gives_both_hints_and_the_engine_answer(capsys):
    exercise = square_exercise()
    assert exercise.run(lambda x: x * x, flags()) == 6.0
    printed = capsys.readouterr().out
    assert "not yet" in printed and "hint 1: first hint" in printed and "hint 2: second hint" in printed
    assert "DIFFERS" in printed and not exercise.passed


def test_check_grades_every_case_and_catches_an_answer_right_only_by_luck(capsys):
    lucky = lambda x: 6.0  # noqa: E731 - right for the first case only
    square_exercise().run(lucky, flags())
    assert "right!" in capsys.readouterr().out
    square_exercise().run(lucky, flags("--check"))
    printed = capsys.readouterr().out
    assert "on all 2 examples: not yet" in printed and "case 2" in printed


def test_an_error_in_the_learners_code_is_reported_and_the_lesson_goes_on(capsys):
    assert square_exercise().run(lambda x: x / 0, flags()) == 6.0
    assert "raised ZeroDivisionError" in capsys.readouterr().out


def test_dict_answers_are_graded_row_by_row_and_missing_rows_say_not_written(capsys):
    exercise = Exercise("99_test", task="t", hints=("a", "b"),
                        engine=lambda x: {"a": x, "b": 2 * x}, cases=[(np.ones(3),)])
    exercise.run(lambda x: {"a": x, "b": None}, flags())
    printed = capsys.readouterr().out
    assert re.search(r"^da\s+\| True", printed, re.M) and "db: not written" in printed and "not yet" in printed


def test_wrong_shape_is_reported_with_both_shapes(capsys):
    square = Exercise("99_test", task="t", hints=("a", "b"), engine=lambda x: x.sum(axis=0), cases=[(np.ones((4, 3)),)])
    square.run(lambda x: x.sum(axis=1), flags())
    assert re.search(r"shapes \(4,\) and \(3,\) differ \(expected, actual\)", capsys.readouterr().out)


def test_exercise_needs_two_hints():
    with pytest.raises(ValueError, match="two hints"):
        Exercise("99_test", task="t", hints=("only one",), engine=lambda: 0, cases=[()])


def lesson_01_with(body: str, tmp_path: Path) -> Path:
    """A copy of lesson 1 whose exercise body is ``body``, beside a copy of its solutions."""
    source = (REPO / "lessons" / "01_chain_rule.py").read_text()
    stub_line = '    raise NotImplementedError("your turn: return dL/dx")'
    assert stub_line in source
    (tmp_path / "solutions").mkdir()
    (tmp_path / "solutions" / "01_chain_rule.py").write_text((REPO / "lessons/solutions/01_chain_rule.py").read_text())
    copy = tmp_path / "01_chain_rule.py"
    copy.write_text(source.replace(stub_line, body))
    return copy


def run(script: Path, *extra: str) -> str:
    done = subprocess.run([sys.executable, str(script), "--quick", "--out", str(script.parent / "out"), *extra],
                          capture_output=True, text=True, timeout=120, cwd=script.parent)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_learner_who_writes_the_chain_rule_is_graded_right_on_every_example(tmp_path):
    script = lesson_01_with("    v = math.tanh(x**2)\n    return math.exp(v) * (1 - v**2) * 2 * x", tmp_path)
    output = run(script, "--check")
    assert re.search(r"^exercise: your your_chain_rule = .* on all 4 examples: right!$", output, re.M), output


def test_learner_who_forgets_a_link_gets_the_mistake_named_and_the_second_hint(tmp_path):
    script = lesson_01_with("    v = math.tanh(x**2)\n    return math.exp(v) * (1 - v**2)", tmp_path)
    output = run(script)
    assert "not yet" in output and "a common mistake: stopped one link early" in output
    assert "hint 2: with u = x**2" in output and "picture:" in output

"""Exercises the learner writes, graded against the engine.

A lesson's exercise is a function the learner fills in. Until then it is a
stub whose body raises ``NotImplementedError``; the lesson runs anyway:

* **stub**: the lesson prints what to write, where, and a first hint, then
  goes on with the engine's answer, so every later step still runs;
* **your answer**: it is compared with the engine's answer
  (``tinyad.check.compare``, one row per number or per named gradient). A
  right answer says "right!" and the lesson goes on with it. A wrong one says
  "not yet", shows the table, names the common mistake it matches (if any),
  gives a second, more specific hint, and the lesson goes on with the engine's
  answer;
* ``--check`` grades your function on every example of the exercise, not only
  on the lesson's own (an answer that fits one example by luck is caught);
* ``--solution`` uses the reference solution from ``lessons/solutions/``;
* ``--wrong`` uses the first common mistake listed there, to show what a wrong
  answer reports.

A lesson adds the flags with :func:`add_arguments` and grades with
:meth:`Exercise.run`. Its solution file ``lessons/solutions/NN_name.py``
defines a function with the stub's name (the reference answer) and a dict
``MISTAKES = {"stub_name": [("what the mistake is", function), ...]}``.
"""
from __future__ import annotations

import argparse
import copy
import importlib.util
import sys
import traceback
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .check import Comparison, compare, format_table
from .graph import Node

__all__ = ["Exercise", "add_arguments", "is_stub", "load_solutions", "solutions_folder"]

NOT_WRITTEN = "not written"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--check``, ``--solution`` and ``--wrong`` to a lesson's command line."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--check", action="store_true",
                       help="grade your exercise on every example (not only the lesson's own)")
    group.add_argument("--solution", action="store_true",
                       help="use the reference solution from lessons/solutions/ instead of yours")
    group.add_argument("--wrong", action="store_true",
                       help="use a common mistake instead of your answer, to see what a wrong answer reports")


def is_stub(function: Callable, args: Sequence[Any]) -> tuple[bool, Any, BaseException | None]:
    """Call ``function(*args)``: (is it still the stub?, its result, the error it raised).

    A stub is a function whose own body raises NotImplementedError; the same
    error raised deeper down (by something the learner called) is a bug in a
    written answer, not a stub.
    """
    try:
        return False, function(*copy.deepcopy(tuple(args))), None
    except NotImplementedError as error:
        frames = traceback.extract_tb(error.__traceback__)
        raised_here = frames[-1].filename == function.__code__.co_filename and frames[-1].name == function.__name__
        return raised_here, None, error
    except Exception as error:  # a bug in the learner's code: reported, and the lesson goes on
        return False, None, error


def solutions_folder(lesson: str) -> Path | None:
    """``lessons/solutions`` beside the running lesson, or in the checkout tinyad came from."""
    candidates = []
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    if main_file and Path(main_file).stem == lesson:
        candidates.append(Path(main_file).resolve().parent / "solutions")
    candidates += [Path.cwd() / "lessons" / "solutions", Path.cwd() / "solutions",
                   Path(__file__).resolve().parent.parent / "lessons" / "solutions"]
    for folder in candidates:
        if (folder / f"{lesson}.py").is_file():
            return folder
    return None


def load_solutions(lesson: str) -> Any:
    """Import ``lessons/solutions/<lesson>.py`` as a module (its name starts with digits, so no plain import)."""
    folder = solutions_folder(lesson)
    if folder is None:
        raise FileNotFoundError(
            f"no solutions/{lesson}.py found: run the lesson from a checkout of tinyad (lessons/solutions/ "
            "holds the reference answers)"
        )
    spec = importlib.util.spec_from_file_location(f"tinyad_solutions_{lesson}", folder / f"{lesson}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _plain(answer: Any) -> Any:
    """A learner's answer as numbers: a Value or Tensor counts by its data (not its grad)."""
    if isinstance(answer, Node):
        return answer.numpy() if hasattr(answer, "numpy") else answer.data
    return answer


def _short(answer: Any) -> str:
    """A one-line view of an answer: the number, or the first few numbers and the shape."""
    array = np.asarray(_plain(answer), dtype=np.float64)
    if array.ndim == 0:
        return f"{float(array):.6g}"
    head = " ".join(f"{value:.4g}" for value in array.ravel()[:4])
    return f"[{head}{' ...' if array.size > 4 else ''}] shape {array.shape}"


class Exercise:
    """One exercise of a lesson: what to write, two hints, and how to get the engine's answer.

    ``engine(*case)`` computes the right answer with the engine (a number, an
    array, or a dict of named arrays when the exercise returns several
    gradients); ``cases`` are argument tuples, the first being the lesson's
    own example. ``hints`` are the first hint (shown with the stub) and the
    second, more specific one (shown after a wrong answer).
    """

    def __init__(self, lesson: str, task: str, hints: Sequence[str], engine: Callable[..., Any],
                 cases: Sequence[tuple], *, rtol: float = 1e-5, atol: float = 1e-8) -> None:
        if len(hints) != 2:
            raise ValueError(f"Exercise: give two hints (a first one and a more specific one), got {len(hints)}")
        if not cases:
            raise ValueError("Exercise: give at least one case (the lesson's own arguments)")
        self.lesson, self.task, self.hints = lesson, task, tuple(hints)
        self.engine, self.cases = engine, [tuple(case) for case in cases]
        self.rtol, self.atol = rtol, atol
        self.passed = False  # after run(): did the graded function give the engine's answer?
        self.function: Callable | None = None  # after run(): the function graded (yours, the reference or a mistake)

    # --- grading -------------------------------------------------------------------

    def grade(self, answer: Any, expected: Any, prefix: str = "") -> list[Comparison | tuple[str, str]]:
        """Rows comparing ``answer`` with ``expected``; a row that cannot be compared is (name, reason)."""
        name = prefix or "your answer"
        if isinstance(expected, Mapping):
            if not isinstance(answer, Mapping):
                return [(name, f"expected a dict with keys {', '.join(expected)}, got {type(answer).__name__}")]
            rows: list = []
            for key, value in expected.items():
                rows += self.grade(answer.get(key), value, f"{prefix}d{key}" if not prefix else f"{prefix} d{key}")
            return rows
        if answer is None:
            return [(name, NOT_WRITTEN)]
        try:
            return [compare(name, _plain(answer), _plain(expected), rtol=self.rtol, atol=self.atol, show=False)]
        except (ValueError, TypeError) as error:
            return [(name, str(error).replace("compare ", "", 1))]

    @staticmethod
    def _passed(rows: Sequence) -> bool:
        return all(isinstance(row, Comparison) and row.approximate for row in rows)

    @staticmethod
    def _table(rows: Sequence) -> str:
        compared = [row for row in rows if isinstance(row, Comparison)]
        lines = [format_table(compared)] if compared else []
        lines += [f"{row[0]}: {row[1]}" for row in rows if not isinstance(row, Comparison)]
        return "\n".join(lines)

    # --- running -------------------------------------------------------------------

    def run(self, yours: Callable, args: argparse.Namespace | None = None) -> Any:
        """Grade ``yours`` as the lesson's flags ask; return the answer the lesson goes on with.

        The return value is the answer to the lesson's own case: yours when it
        is right, else the engine's (so the rest of the lesson runs either way).
        """
        mode = "yours"
        for flag in ("check", "solution", "wrong"):
            if getattr(args, flag, False):
                mode = flag
        name = yours.__name__
        expected = self.engine(*copy.deepcopy(self.cases[0]))
        function, label = yours, f"your {name}"
        self.passed, self.function = False, yours
        if mode in ("solution", "wrong"):
            try:
                solutions = load_solutions(self.lesson)
            except FileNotFoundError as missing:
                print(f"\nexercise: {name}: cannot load the {mode}: {missing}")
                return expected
            if mode == "solution":
                function, label = getattr(solutions, name), f"the reference {name}"
            else:
                description, function = solutions.MISTAKES[name][0]
                label = f"a wrong {name} ({description})"

        self.function = function
        stub, answer, error = is_stub(function, self.cases[0])
        if stub:
            self._explain_stub(yours)
            return expected
        if error is not None:
            print(f"\nexercise: {label} raised {type(error).__name__}: {error}: not yet")
            print(f"  (the line: {traceback.extract_tb(error.__traceback__)[-1].line})")
            self._hints(both=True)
            print("  (the lesson goes on with the engine's answer)")
            return expected

        cases = self.cases if mode == "check" else self.cases[:1]
        rows: list = []
        for number, case in enumerate(cases):
            if number == 0:
                case_answer, case_expected = answer, expected
            else:
                _, case_answer, case_error = is_stub(function, case)
                if case_error is not None:
                    rows.append((f"case {number + 1}", f"raised {type(case_error).__name__}: {case_error}"))
                    continue
                case_expected = self.engine(*copy.deepcopy(case))
            rows += self.grade(case_answer, case_expected, f"case {number + 1}" if mode == "check" else "")
        right = self._passed(rows)
        where = f" on all {len(cases)} examples" if mode == "check" else ""
        values = "" if isinstance(expected, Mapping) else f" = {_short(answer)}, engine = {_short(expected)}"
        print(f"\nexercise: {label}{values}{where}: " + ("right!" if right else "not yet"))
        print(self._table(rows))
        self.passed = right
        if right:
            if mode == "yours":
                print(f"  (`tinyad lesson {int(self.lesson[:2])} --check` tries it on {len(self.cases)} examples)")
            return answer
        self._name_mistake(name, answer)
        self._hints(both=True)
        print("  (the lesson goes on with the engine's answer)")
        return expected

    def _explain_stub(self, yours: Callable) -> None:
        code = yours.__code__
        source = Path(code.co_filename).resolve()
        if source.is_file():
            shown = source.relative_to(Path.cwd()) if source.is_relative_to(Path.cwd()) else source
            where = f"{shown}, line {code.co_firstlineno}"
        else:
            where = "the notebook cell that defines it"
        number = int(self.lesson[:2])
        print(f"\nexercise: {yours.__name__} is not written yet: not yet")
        print(f"  write: {self.task}")
        print(f"  where: def {yours.__name__} in {where} (replace its `raise NotImplementedError`)")
        print(f"  hint: {self.hints[0]}")
        print(f"  then: run the lesson again, or `tinyad lesson {number} --check`; "
              f"`--solution` shows the reference answer")
        print("  (until then the lesson goes on with the engine's answer)")

    def _hints(self, both: bool) -> None:
        print(f"  hint 1: {self.hints[0]}")
        if both:
            print(f"  hint 2: {self.hints[1]}")

    def _name_mistake(self, name: str, answer: Any) -> None:
        """Say which common mistake the answer matches, if the solutions file lists it."""
        try:
            mistakes = load_solutions(self.lesson).MISTAKES.get(name, [])
        except (FileNotFoundError, AttributeError):
            return
        for description, mistake in mistakes:
            try:
                their = mistake(*copy.deepcopy(self.cases[0]))
            except Exception:  # a listed mistake that fails here cannot be matched
                continue
            if self._passed(self.grade(answer, their)):
                print(f"  a common mistake: {description}")
                return

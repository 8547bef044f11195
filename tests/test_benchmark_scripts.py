"""The benchmark scripts run: each answers --help, and a quick run writes where it is told.

Nothing here is timed: speed is what the scripts measure, on a quiet machine, and
never what a test asserts.
"""
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BENCHMARKS_MD = REPO / "docs" / "benchmarks.md"
SCRIPTS = sorted(path for path in (REPO / "benchmarks").glob("*.py") if not path.name.startswith("_"))


def run_script(script: Path, *arguments: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(script), *arguments], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def test_there_are_benchmark_scripts():
    assert len(SCRIPTS) >= 4, f"found only {[script.name for script in SCRIPTS]} in benchmarks/"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_every_benchmark_script_answers_help_and_offers_quick(script):
    done = run_script(script, "--help")
    assert done.returncode == 0, f"{script.name} --help failed:\n{done.stdout}{done.stderr}"
    assert done.stdout.startswith("usage:"), f"{script.name} --help printed no usage:\n{done.stdout}"
    assert "--quick" in done.stdout, f"{script.name} --help lists no --quick option:\n{done.stdout}"


def test_a_quick_run_writes_its_section_where_told_and_leaves_the_docs_alone(tmp_path):
    before = BENCHMARKS_MD.read_bytes()
    out = tmp_path / "benchmarks.md"
    done = run_script(REPO / "benchmarks" / "layout.py", "--quick", "--out", str(out), cwd=tmp_path)
    assert done.returncode == 0, f"layout.py --quick failed:\n{done.stdout}{done.stderr}"
    text = out.read_text(encoding="utf-8")
    assert "<!-- begin layout -->" in text and "<!-- end layout -->" in text
    assert "| renderer | graph | boxes |" in text
    assert BENCHMARKS_MD.read_bytes() == before, "a quick run changed docs/benchmarks.md"

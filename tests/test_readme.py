"""The README's first screen: its ten-line example runs and prints what it says; every lesson is listed."""
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()


def test_first_python_example_is_at_most_ten_lines_runs_and_prints_its_comment(tmp_path):
    example = re.search(r"```python\n(.*?)```", README, re.S).group(1)
    code_lines = [line for line in example.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert len(code_lines) <= 10
    assert README.index("```python") < README.index("```bash")  # the example comes before the commands
    done = subprocess.run([sys.executable, "-c", example], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    promised = re.search(r"^# (y = .*)$", example, re.M).group(1)
    assert done.stdout.strip() == promised
    assert (tmp_path / "neuron.png").read_bytes()[:4] == b"\x89PNG"


def test_lessons_list_names_every_lesson_once():
    listed = re.findall(r"^(\d\d)\. ", README.split("## Lessons")[1], re.M)
    assert listed == sorted(path.name[:2] for path in (REPO / "lessons").glob("[0-9][0-9]_*.py"))


def test_install_note_does_not_promise_a_cpu_wheel_from_pypi():
    assert "--index-url https://download.pytorch.org/whl/cpu" in README
    assert "CUDA build (several" in README

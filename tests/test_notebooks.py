"""tinyad notebook N: percent-format lessons become notebooks that run in a kernel."""
import importlib.util
import json
from pathlib import Path

import pytest

from tinyad.cli import main
from tinyad.notebooks import cells_of, lesson_notebook

REPO = Path(__file__).resolve().parent.parent
LESSON_SOURCE = '''"""Lesson 99: a title.

Some text.
"""
import argparse

# %% Step 1: a title
# Why this step.
# Second line.
x = 1
print(x)

# %% [markdown]
# Only text here.

# %%
figure.savefig(out_dir / "a.png", dpi=120)
picture = drawing.render(out_dir / "b.png")
'''


def test_percent_cells_become_text_and_code_cells():
    cells = cells_of(LESSON_SOURCE)
    assert cells[0] == ("markdown", "# Lesson 99: a title.\n\nSome text.")
    assert cells[1] == ("code", "import argparse")
    assert cells[2] == ("markdown", "## Step 1: a title\n\nWhy this step.\nSecond line.")
    assert cells[3] == ("code", "x = 1\nprint(x)")
    assert cells[4] == ("markdown", "Only text here.")
    assert cells[5][0] == "code" and len(cells) == 6


def test_notebook_sets_the_flags_and_shows_pictures_inline(tmp_path):
    script = tmp_path / "99_test.py"
    script.write_text(LESSON_SOURCE)
    notebook = lesson_notebook(script, ["--quick"])
    setup = notebook.cells[1].source
    assert "sys.argv = ['99_test.py', '--quick']" in setup and "__doc__ = 'Lesson 99: a title.'" in setup
    last = notebook.cells[-1].source
    assert 'display(Image(filename=str(out_dir / "a.png")))' in last and "display(drawing)" in last


def test_every_lesson_converts_to_a_valid_notebook(tmp_path):
    assert main(["notebook", "all", "-o", str(tmp_path)]) == 0
    written = sorted(path.name for path in tmp_path.glob("*.ipynb"))
    assert written == sorted(path.stem + ".ipynb" for path in (REPO / "lessons").glob("[0-9][0-9]_*.py"))
    notebook = json.loads((tmp_path / "01_chain_rule.ipynb").read_text())
    assert notebook["nbformat"] == 4 and notebook["cells"][0]["cell_type"] == "markdown"


def test_notebook_for_a_missing_lesson_is_refused(capsys):
    assert main(["notebook", "99"]) == 2
    assert "no lesson 99" in capsys.readouterr().err


def kernel_or_skip() -> None:
    for module in ("nbformat", "nbclient", "ipykernel"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"executing notebooks needs {module}: pip install \"tinyad[notebooks]\"")
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec("python3")
    except NoSuchKernel:
        pytest.skip("no Jupyter kernel named python3: python -m ipykernel install --user")


@pytest.mark.parametrize("number, name, picture", [
    ("1", "01_chain_rule", "image/svg+xml"),  # the graph through Drawing._repr_svg_
    ("11", "11_backprop_ninja", "image/png"),  # a matplotlib figure saved by the lesson
])
def test_generated_notebook_runs_in_a_kernel_in_quick_mode(tmp_path, number, name, picture):
    kernel_or_skip()
    import nbformat
    from nbclient import NotebookClient

    assert main(["notebook", number, "-o", str(tmp_path), "--quick", "--out", str(tmp_path / "out")]) == 0
    notebook = nbformat.read(tmp_path / f"{name}.ipynb", as_version=4)
    NotebookClient(notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"]
    text = "".join(output.get("text", "") for output in outputs if output.output_type == "stream")
    assert "is not written yet: not yet" in text and "the notebook cell that defines it" in text
    assert any(picture in output.get("data", {}) for output in outputs)

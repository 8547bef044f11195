"""The GPU scripts without a GPU: benchmarks/bench_gpu.py, gpu_smoke.py and gpu_check.sh."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from types import SimpleNamespace

import pytest

import cupy_standin
from device_cases import ROOT
from test_cuda_standin import no_cuda_backend_cached  # noqa: F401 - a fixture


@pytest.fixture
def bench_gpu(monkeypatch):
    """benchmarks/bench_gpu.py as a module, with write_section recording instead of writing."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_gpu_under_test", ROOT / "benchmarks" / "bench_gpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    written = []
    monkeypatch.setattr(module, "write_section", lambda name, markdown: written.append((name, markdown)))
    module.written = written
    return module


def test_gpu_benchmark_without_cupy_exits_with_a_message_and_writes_nothing(bench_gpu, monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)
    with pytest.raises(SystemExit) as info:
        bench_gpu.main([])
    message = str(info.value.code)
    assert "CuPy is not installed" in message and 'pip install ".[gpu]"' in message and "cupy-cuda13x" in message
    assert "not changed" in message and bench_gpu.written == []


def test_gpu_benchmark_with_a_cpu_only_torch_exits_and_writes_nothing(bench_gpu, monkeypatch, no_cuda_backend_cached):
    cupy_standin.install(monkeypatch)  # a CuPy that runs kernels, and a torch without CUDA
    monkeypatch.setitem(sys.modules, "torch", SimpleNamespace(__version__="cpu-only", cuda=SimpleNamespace(is_available=lambda: False)))
    with pytest.raises(SystemExit, match="cannot use the GPU"):
        bench_gpu.main([])
    assert bench_gpu.written == []


def test_gpu_benchmark_placeholder_says_not_yet_measured_and_how_to_run_it(bench_gpu):
    bench_gpu.main(["--placeholder"])
    [(name, markdown)] = bench_gpu.written
    assert name == "gpu"
    assert "Not yet measured" in markdown and "python benchmarks/bench_gpu.py" in markdown
    assert 'pip install ".[gpu]"' in markdown and "benchmarks/gpu_check.sh" in markdown


def test_docs_benchmarks_page_has_the_gpu_section():
    text = (ROOT / "docs" / "benchmarks.md").read_text()
    section = text[text.index("<!-- begin gpu -->"): text.index("<!-- end gpu -->")]
    assert "python benchmarks/bench_gpu.py" in section
    assert "Not yet measured" in section or "GB/s" in section




def test_gpu_benchmark_answers_help_and_has_quick_and_markdown(bench_gpu, capsys):
    with pytest.raises(SystemExit) as info:
        bench_gpu.main(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert "--quick" in text and "--markdown" in text and "--placeholder" in text


def test_gpu_check_script_runs_every_step_under_out_and_within_its_limits():
    script = (ROOT / "benchmarks" / "gpu_check.sh").read_text()
    for needed in ("gpu_smoke.py", "pytest tests/backend", "bench_gpu.py --quick --markdown", '"$OUT/', "TINYAD_GPU_DRY_RUN"):
        assert needed in script, needed
    limits = [int(n) for n in re.findall(r"^\s*step \w+ (\d+) ", script, flags=re.M)]
    limits_by_mode = limits[0] + max(limits[1], limits[3]) + max(limits[2], limits[4]) + limits[5]
    assert limits_by_mode + 4 * 10 < 8 * 60, limits  # every step's limit and its kill grace: under 8 minutes


def test_gpu_check_script_answers_help_and_offers_quick_without_running_anything(tmp_path):
    out = tmp_path / "never-written"
    environment = {**os.environ, "OUT": str(out)}
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--help"], capture_output=True,
                          text=True, env=environment, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("usage:") and "--quick" in done.stdout, done.stdout
    assert not out.exists(), "--help ran the checks"
    refused = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--fast"], capture_output=True,
                             text=True, env=environment, timeout=60)
    assert refused.returncode == 2 and "unknown option --fast" in refused.stderr and not out.exists()


def test_gpu_smoke_passes_on_the_stand_in(monkeypatch, no_cuda_backend_cached, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_smoke_under_test", ROOT / "benchmarks" / "gpu_smoke.py")
    smoke = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(smoke)
    cupy_standin.install(monkeypatch)
    assert smoke.main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert "FAIL" not in out and out.count("PASS") == len(smoke.cases(True))

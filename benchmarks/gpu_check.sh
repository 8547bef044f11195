#!/usr/bin/env bash
# The one script for a machine with an NVIDIA GPU: run it from the repository root.
#
#   OUT=gpu-check bash benchmarks/gpu_check.sh [--quick] [--help]
#
# --quick runs the smoke test on small shapes (as the dry run below always does); the device
# tests and the benchmark (already --quick) are the same. --help prints this text.
#
# Needs no network: the Python on PATH must already have CuPy (with NVRTC: cupy-cuda12x[ctk]),
# a CUDA build of PyTorch, pytest and hypothesis. Writes everything under $OUT:
#   environment.txt  the GPU, driver, CUDA, CuPy, PyTorch and NumPy versions
#   smoke.txt        every fused kernel against a float64 host reference (benchmarks/gpu_smoke.py)
#   tests.txt        the device tests (tests/backend, and the CUDA pickling test; none should be SKIPPED)
#   bench_gpu.txt    benchmarks/bench_gpu.py --quick, and bench_gpu.md, the table for docs/benchmarks.md
#   summary.txt      one line per step: its exit code and seconds
# Each step has its own time limit (30 + 80 + 170 + 150 s, each with 10 s to be killed), so
# the whole run ends within 8 minutes; a step that fails or runs out of time does not stop
# the next, and summary.txt says which one.
#
# Dry run on a machine without a GPU: TINYAD_GPU_DRY_RUN=1 makes "cupy" the NumPy stand-in of
# tests/backend/cupy_standin.py for the smoke test (shrunk with --quick) and runs the device
# tests that need no GPU; the benchmark then stops with its no-GPU message. It checks this
# script and the smoke test's logic, not CUDA.
set -uo pipefail

QUICK=0
for argument in "$@"; do
    case "$argument" in
        -h|--help)
            echo "usage: [OUT=DIR] [TINYAD_GPU_DRY_RUN=1] bash benchmarks/gpu_check.sh [--quick] [--help]"
            sed -n '2,/^set -uo pipefail/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
            exit 0 ;;
        --quick) QUICK=1 ;;
        *) echo "gpu_check.sh: unknown option $argument (try --help)" >&2; exit 2 ;;
    esac
done

cd "$(dirname "$0")/.."

OUT=${OUT:-gpu-check}
mkdir -p "$OUT"
DRY=${TINYAD_GPU_DRY_RUN:-0}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
: > "$OUT/summary.txt"

step() {  # step NAME SECONDS FILE COMMAND...: run, tee to FILE, record exit code and time
    local name=$1 limit=$2 file=$3
    shift 3
    local start=$SECONDS
    echo "=== $name (limit ${limit}s): $*" > "$OUT/$file"
    timeout --kill-after=10 "$limit" "$@" >> "$OUT/$file" 2>&1
    local code=$?
    tail -n 25 "$OUT/$file"
    echo "$name: exit $code, $((SECONDS - start)) s$([ "$code" = 124 ] && echo ' (TIME LIMIT)')" | tee -a "$OUT/summary.txt"
}

environment() {
    echo "date: $(date -u +%FT%TZ)"
    echo "git: $(git rev-parse --short HEAD 2>/dev/null) $(git status --porcelain 2>/dev/null | wc -l) changed files"
    echo "dry run: $DRY"
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,clocks.max.mem --format=csv 2>&1 || echo "nvidia-smi: not available"
    python - <<'PY'
import platform, sys
print("python", sys.version.split()[0], platform.platform())
import numpy; print("numpy", numpy.__version__)
try:
    import cupy
    print("cupy", cupy.__version__)
    from cupy.cuda import nvrtc, runtime
    print("nvrtc", nvrtc.getVersion())
    print("cuda runtime", runtime.runtimeGetVersion(), "driver", runtime.driverGetVersion())
    props = runtime.getDeviceProperties(0)
    print("device", props["name"].decode(), "SMs", props["multiProcessorCount"], "cc", props["major"], props["minor"])
except Exception as error:
    print("cupy:", type(error).__name__, error)
try:
    import torch
    print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
except Exception as error:
    print("torch:", type(error).__name__, error)
from tinyad.backend import cuda_unavailable_reason
print("tinyad device 'cuda':", cuda_unavailable_reason() or "usable (a test kernel compiled and ran)")
PY
}

export DRY
export -f environment
step environment 30 environment.txt bash -c environment
if [ "$DRY" = "1" ]; then
    step smoke 80 smoke.txt python benchmarks/gpu_smoke.py --quick
    step tests 170 tests.txt python -m pytest tests/backend/test_cuda_device.py tests/backend/test_cuda_standin.py \
        tests/backend/test_cuda_launch.py tests/backend/test_devices.py -q -rs -p no:cacheprovider
else
    step smoke 80 smoke.txt python benchmarks/gpu_smoke.py $([ "$QUICK" = 1 ] && echo --quick)
    step tests 170 tests.txt python -m pytest tests/backend tests/test_pickling.py -q -rs -p no:cacheprovider
fi
step bench_gpu 150 bench_gpu.txt python benchmarks/bench_gpu.py --quick --markdown "$OUT/bench_gpu.md"
echo "=== summary ($OUT/summary.txt)"
cat "$OUT/summary.txt"

#!/usr/bin/env bash
# Sets up a fresh machine (a virtual environment in .venv) and runs nbconv's whole test suite:
# the linter, the CPU tests with doctests, then the CUDA kernels under numba's simulator.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
# mpi: mpi4py and the mpich wheel (mpiexec), for the tests that launch mpiexec -n 2 and -n 3;
# onnx: onnx and onnxruntime for nbconv.onnx's tests
.venv/bin/python -m pip install -q -e ".[test,data,mpi,onnx]"

# PyTorch is an optional cross-check.  Install it only where the CPU build lies on local disk,
# never a multi-GB CUDA build from the internet; without it those tests skip with a message.
tmp=$(mktemp -d)
if .venv/bin/python -c "import torch" 2>/dev/null; then
    :
elif .venv/bin/python -m pip download -q --no-index --no-deps "torch==2.13.0" -d "$tmp" >/dev/null 2>&1; then
    .venv/bin/python -m pip install -q "torch==2.13.0"
else
    echo "note: no local CPU build of torch; PyTorch cross-check tests will be skipped"
fi
rm -rf "$tmp"
# torch.onnx.export's default (dynamo) exporter needs onnxscript; the ONNX tests use both
# exporters and skip the dynamo one without it.
if .venv/bin/python -c "import torch" 2>/dev/null; then
    .venv/bin/python -m pip install -q onnxscript \
        || echo "note: onnxscript not installed; dynamo ONNX export tests will be skipped"
fi

export NUMBA_CACHE_DIR=${NUMBA_CACHE_DIR:-$PWD/.numba_cache}
.venv/bin/ruff check .
.venv/bin/python -m pytest -q -n 2 --dist loadfile tests README.md nbconv --doctest-glob=README.md --doctest-modules --ignore=tests/cuda "$@"
# The CUDA kernels under numba's simulator: the variable must be set before numba is imported,
# hence a process of its own (tiny shapes and blocks; about a minute on 2 cores).
NUMBA_ENABLE_CUDASIM=1 .venv/bin/python -m pytest -q -n 2 tests/cuda "$@"

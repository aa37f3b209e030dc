#!/usr/bin/env bash
# Sets up a fresh machine (a virtual environment in .venv) and trains LeNet-5 with
# examples/train_lenet.py: MNIST if found (--data-dir or ~/.cache/nbconv/mnist), else Debian's
# Fashion-MNIST (apt-get install dataset-fashion-mnist), else the bundled scikit-learn digits.
# Writes lenet5.h5 (model file) and lenet5.png (training curves); extra arguments go to the script.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
# Install once: the install is editable, so only a changed pyproject.toml (recorded by its hash
# in a stamp file) or a missing package calls pip again.
stamp=.venv/.nbconv-train-installed
if ! .venv/bin/python - "$stamp" <<'PY'
import hashlib, importlib.util, sys
want = hashlib.sha256(open("pyproject.toml", "rb").read()).hexdigest()
try:
    have = open(sys.argv[1]).read().strip()
except OSError:
    have = ""
ok = have == want and all(importlib.util.find_spec(m) for m in ("nbconv", "sklearn", "h5py"))
sys.exit(0 if ok else 1)
PY
then
    .venv/bin/python -m pip install -q -e ".[data]"
    .venv/bin/python -c "import hashlib; print(hashlib.sha256(open('pyproject.toml', 'rb').read()).hexdigest())" > "$stamp"
fi
# the compiled kernels are cached where scripts/test.sh caches them
export NUMBA_CACHE_DIR=${NUMBA_CACHE_DIR:-$PWD/.numba_cache}
exec .venv/bin/python examples/train_lenet.py "$@"

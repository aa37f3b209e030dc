#!/usr/bin/env bash
# Sets up a fresh machine (a virtual environment in .venv) and trains LeNet-5 with
# examples/train_lenet.py: MNIST if found (--data-dir or ~/.cache/nbconv/mnist), else Debian's
# Fashion-MNIST (apt-get install dataset-fashion-mnist), else the bundled scikit-learn digits.
# Writes lenet5.h5 (model file) and lenet5.png (training curves); extra arguments go to the script.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install -q -e ".[data]"
exec .venv/bin/python examples/train_lenet.py "$@"

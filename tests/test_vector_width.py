"""The register-blocked kernels' vector width (``nbconv.kernels._ir.VECTOR_BYTES``).

The main suite runs the kernels at the host's native width.  On an AVX-512 host that is 64
bytes, and the 32-byte (AVX2) build, which other machines get, would go untested; here a
subprocess compiles for the host's CPU with AVX-512 switched off (numba's
``NUMBA_CPU_FEATURES``, its own cache directory) and checks the forward pass, both
gradients and a strided layer of the pixel-vector and register-blocked families against
the float64 scipy references, and the packed-panel linear kernel against NumPy's float64
product.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from llvmlite import binding

HERE = Path(__file__).resolve().parent

SCRIPT = r"""
import sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from reference_conv import ref_conv2d, ref_conv2d_backward_exact
import nbconv
from nbconv.kernels import _ir
from nbconv.conv import plan

assert _ir.VECTOR_BYTES == 32, _ir.VECTOR_BYTES
rng = np.random.default_rng(0)
layers = [  # (N, C, F, H, k, stride, padding, family the direct forward pass takes)
    (3, 6, 20, 12, 5, 1, 0, "regblock"),
    (2, 3, 40, 11, 3, 1, 1, "pixvec"),
    (2, 1, 6, 13, 5, 1, 2, "pixvec"),
    (2, 3, 9, 15, 3, 2, 1, "phases"),
]
for N, C, F, H, k, s, p, family in layers:
    OH = (H + 2 * p - k) // s + 1
    got = plan.direct_forward_kernel(F, C, k, k, OH, OH, s, s, 1, 1, 1, 4)
    assert got == family, (got, family)
    x = rng.standard_normal((N, C, H, H)).astype(np.float32)
    w = rng.standard_normal((F, C, k, k)).astype(np.float32)
    b = rng.standard_normal(F).astype(np.float32)
    y = nbconv.conv2d(x, w, b, stride=s, padding=p, algorithm="direct")
    want = ref_conv2d(x, w, b, stride=s, padding=p)
    assert np.abs(y - want).max() <= 1e-4 * max(1.0, np.abs(want).max()), (N, C, F)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    got = nbconv.conv2d_backward(dy, x, w, stride=s, padding=p, algorithm="direct")
    for g, r in zip(got, ref_conv2d_backward_exact(dy, x, w, stride=s, padding=p)):
        assert np.abs(g - r).max() <= 1e-4 * max(1.0, np.abs(r).max()), (N, C, F)

from nbconv.functional.linear import pack_panels
from nbconv.kernels.linear import _linear_panels
from nbconv.kernels.panels import PANEL_ROWS
assert PANEL_ROWS == 4, PANEL_ROWS
for dtype in (np.float32, np.float64):  # rows, outputs and terms with remainders
    x = rng.standard_normal((11, 1030)).astype(dtype)
    w = rng.standard_normal((70, 1030)).astype(dtype)
    b = rng.standard_normal(70).astype(dtype)
    y = np.full((11, 70), np.nan, dtype)
    _linear_panels(x, pack_panels(w), b, True, False, y)
    want = x.astype(np.float64) @ w.T.astype(np.float64) + b
    assert np.abs(y - want).max() <= 1e-4 * np.abs(want).max(), dtype
print("ok")
"""


def _host_features() -> str:
    try:
        return binding.get_host_cpu_features().flatten()
    except RuntimeError:
        return ""


@pytest.mark.skipif("+avx512f" not in _host_features().split(","),
                    reason="the host has no AVX-512: the main suite already runs the "
                           "32-byte build")
def test_avx2_build_on_an_avx512_host_matches_references(tmp_path):
    features = ",".join("-" + f[1:] if f.startswith("+avx512") or f.startswith("+avx10")
                        or f.startswith("+amx") else f
                        for f in _host_features().split(","))
    env = dict(os.environ, NUMBA_CPU_FEATURES=features,
               NUMBA_CPU_NAME=binding.get_host_cpu_name(),
               NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(HERE)], capture_output=True,
                          text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().endswith("ok")

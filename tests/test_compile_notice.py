"""The one-line notice that nbconv's kernels are being compiled: shown once on the first real
compilation, not when the kernels load from a warm cache, silenced by NBCONV_COMPILE_NOTICE=0."""

import os
import subprocess
import sys

SCRIPT = ("import numpy as np, nbconv as nc; "
          "nc.relu(np.ones(8, np.float32)); nc.relu(np.ones(8)); print('ok')")


def _run(cache, **env):
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                         timeout=300, env={**os.environ, "NUMBA_CACHE_DIR": str(cache), **env})
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
    return out.stderr


def test_notice_once_on_compile_and_not_from_cache(tmp_path):
    first = _run(tmp_path / "cache")
    assert first.count("nbconv: compiling kernels") == 1, first
    assert str(tmp_path / "cache") in first
    assert "nbconv: compiling" not in _run(tmp_path / "cache")  # warm: loaded, not compiled
    assert "nbconv: compiling" not in _run(tmp_path / "other", NBCONV_COMPILE_NOTICE="0")

"""Process-wide settings made at import: glibc's allocator thresholds and the thread pool."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


def _probe(env_extra: dict, code: str) -> str:
    env = {k: v for k, v in os.environ.items()
           if k not in ("NBCONV_MALLOC_TUNING", "MALLOC_TRIM_THRESHOLD_",
                        "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_")}
    env.update(env_extra)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120, check=True)
    return out.stdout.strip()


@pytest.mark.skipif(not GLIBC, reason="the allocator tuning applies to glibc only")
@pytest.mark.parametrize("env, expected", [
    ({}, "True"),
    ({"NBCONV_MALLOC_TUNING": "0"}, "False"),
    ({"MALLOC_TRIM_THRESHOLD_": "1000000"}, "False"),  # the user's own choice wins
])
def test_malloc_tuning_switch(env, expected):
    assert _probe(env, "import nbconv._config as c; print(c.MALLOC_TUNED)") == expected


@pytest.mark.skipif(not GLIBC, reason="the allocator tuning applies to glibc only")
def test_malloc_tuning_keeps_freed_arrays_mapped():
    """After the tuning a 1 MiB array freed and allocated again reuses the same pages (no new
    mmap), which is what saves the page faults; without it glibc hands out fresh pages."""
    code = (
        "import numpy as np, nbconv._config as c\n"
        "a = np.ones(1 << 18, np.float32); p = a.ctypes.data; del a\n"
        "b = np.empty(1 << 18, np.float32)\n"
        "print(c.MALLOC_TUNED, b.ctypes.data == p)"
    )
    assert _probe({}, code) == "True True"


def test_threads_start_on_openmp_when_torch_was_imported_first():
    pytest.importorskip("torch")
    code = (
        "import torch, numpy as np, nbconv, numba\n"
        "nbconv.relu(np.ones(1 << 20, np.float32))\n"
        "print(numba.threading_layer())"
    )
    assert _probe({}, code) == "omp"


@pytest.mark.parametrize("user_env", [{}, {"GOMP_SPINCOUNT": "5"}, {"OMP_WAIT_POLICY": "passive"}])
def test_openmp_spin_default_leaves_the_environment_as_it_was(user_env):
    """nbconv sets GOMP_SPINCOUNT only while it starts numba's threads, and never when the
    user chose an OpenMP wait policy or spin count."""
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    env.update(user_env)
    code = ("import os, nbconv._config as c; "
            "print(os.environ.get('GOMP_SPINCOUNT'), os.environ.get('OMP_WAIT_POLICY'))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == [user_env.get("GOMP_SPINCOUNT", "None"), user_env.get("OMP_WAIT_POLICY", "None")]

"""Configuration of the CUDA tests (run in their own pytest process).

They run under numba's CUDA simulator in CI::

    NUMBA_ENABLE_CUDASIM=1 python -m pytest -q tests/cuda

or on a real GPU without the variable.  Anywhere else (no simulator variable, no usable GPU)
the whole directory is skipped.  ``NUMBA_ENABLE_CUDASIM`` must be set before numba is first
imported, which is why the CPU test run (``--ignore=tests/cuda``) and this one are separate
processes.

Tiny shapes and a tiny block size (``CUDA_BLOCK = 8``, matrix tiles of 4, convolution tiles of
8x8 in 4-deep slices with 2x2 per thread) make every
multi-block path of the kernels run while keeping the simulator (one Python thread per CUDA
thread) fast.
"""

import os
import sys

import pytest

os.environ.setdefault("NBCONV_CUDA_TILE", "4")
os.environ.setdefault("NBCONV_CUDA_CONV_TILE", "8,8,4,2,2")  # 16 threads a block

SIMULATOR = os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")


def _gpu_available() -> bool:
    try:
        from nbconv import cuda

        return cuda.is_available()
    except Exception:  # noqa: BLE001 - no usable CUDA target means "skip"
        return False


AVAILABLE = SIMULATOR or _gpu_available()
if not AVAILABLE:
    collect_ignore_glob = ["test_*.py"]



def _patch_simulator_shared_arrays():
    """Make the simulator's ``cuda.shared.array`` thread-safe.

    numba's simulator (numba 0.68 and numba-cuda 0.30) creates a block's shared array lazily,
    keyed by the calling source line, with an unlocked ``dict.get``/``dict[...] =``: two
    simulated threads that both find no entry each allocate their own array, and the block's
    threads then no longer share it (a race in the simulator, not in the kernels; it made about
    one launch in a few hundred give a wrong reduction).  This replacement does the same under a
    lock.
    """
    import threading

    import numpy as np
    from numba.core import types
    from numba.cuda.simulator import kernelapi
    from numba.np import numpy_support

    cls = kernelapi.FakeCUDAShared
    original = cls.array
    lock = threading.Lock()

    def array(self, shape, dtype, alignment=None):
        if alignment is not None or shape == 0:
            return original(self, shape, dtype, alignment)
        if isinstance(dtype, types.Type):
            dtype = numpy_support.as_dtype(dtype)
        frame = sys._getframe(1)
        caller = (frame.f_code.co_filename, frame.f_lineno)
        with lock:
            res = self._allocations.get(caller)
            if res is None:
                res = self._allocations[caller] = np.empty(shape, dtype)
        return res

    cls.array = array


if SIMULATOR:
    _patch_simulator_shared_arrays()
    # Simulated threads hand the GIL to each other at every __syncthreads(); the default 5 ms
    # switch interval would make each barrier cost milliseconds.
    sys.setswitchinterval(1e-5)


@pytest.fixture(autouse=True)
def _tiny_block(monkeypatch):
    from nbconv import _config

    monkeypatch.setattr(_config, "CUDA_BLOCK", 8)

"""Every tunable of nbconv in one place.

Kernels read their decorator flags from here, so that a single environment variable changes the
behaviour of the whole library:

``NBCONV_CACHE``
    ``"0"`` disables numba's on-disk cache (default: enabled).
``NBCONV_IM2COL_MAX_BYTES``
    Upper bound of one im2col buffer in bytes (default 64 MiB); im2col works in chunks below it.
``NBCONV_CUDA_BLOCK``
    Threads per block of the 1-D CUDA launches (default 128).
``NUMBA_THREADING_LAYER``
    numba's own variable; nbconv defaults it to ``"workqueue"`` (see ``THREADING_LAYER``).
"""

from __future__ import annotations

import os

import numba

#: numba's threading layer.  The OpenMP layer spins its idle threads, which fights OpenBLAS's
#: threads (im2col's GEMMs) and any other busy process: measured on a loaded 2-core machine, a
#: LeNet training step took 655 ms with "omp" and 41 ms with "workqueue".  workqueue may not be
#: entered from two Python threads at once; set NUMBA_THREADING_LAYER=omp or tbb for that.
THREADING_LAYER: str = os.environ.get("NUMBA_THREADING_LAYER", "workqueue")
numba.config.THREADING_LAYER = THREADING_LAYER

#: numba's on-disk cache for every kernel (``cache=True``).
CACHE: bool = os.environ.get("NBCONV_CACHE", "1") != "0"

#: fast-math flags that keep NaN/inf semantics: no "nnan", no "ninf".  "reassoc" and "contract"
#: let LLVM vectorise reductions and use FMA; results differ from strict IEEE order only by
#: rounding.
FASTMATH: frozenset = frozenset({"nsz", "arcp", "contract", "reassoc"})

#: largest im2col buffer one call may allocate, in bytes.
IM2COL_MAX_BYTES: int = int(os.environ.get("NBCONV_IM2COL_MAX_BYTES", str(64 * 2**20)))

#: threads per block of 1-D CUDA launches.
CUDA_BLOCK: int = int(os.environ.get("NBCONV_CUDA_BLOCK", "128"))

JIT_OPTIONS: dict = {"cache": CACHE, "fastmath": set(FASTMATH), "nogil": True}
"""Keyword arguments of every ``@njit`` kernel (add ``parallel=True`` where it pays)."""


def set_num_threads(n: int) -> None:
    """Set the number of threads nbconv's parallel kernels use.

    Parameters
    ----------
    n : int
        Between 1 and ``numba.config.NUMBA_NUM_THREADS`` (the number of cores by default).

    Examples
    --------
    >>> import nbconv as nc
    >>> nc.set_num_threads(1); nc.get_num_threads()
    1
    >>> nc.set_num_threads(nc.max_num_threads())
    """
    if isinstance(n, bool) or not isinstance(n, (int,)) and not hasattr(n, "__index__"):
        raise TypeError(f"set_num_threads: argument 'n' must be an int, got {type(n).__name__}")
    n = int(n)
    top = numba.config.NUMBA_NUM_THREADS
    if not 1 <= n <= top:
        raise ValueError(f"set_num_threads: argument 'n' must be in [1, {top}], got {n}")
    numba.set_num_threads(n)


def get_num_threads() -> int:
    """Number of threads the parallel kernels use now."""
    return numba.get_num_threads()


def max_num_threads() -> int:
    """Largest value :func:`set_num_threads` accepts (``NUMBA_NUM_THREADS``)."""
    return numba.config.NUMBA_NUM_THREADS

"""Every tunable of nbconv in one place.

Kernels read their decorator flags from here, so that a single environment variable changes the
behaviour of the whole library:

``NBCONV_CACHE``
    ``"0"`` disables numba's on-disk cache (default: enabled).
``NBCONV_IM2COL_MAX_BYTES``
    Upper bound of one im2col buffer in bytes (default 64 MiB); im2col works in chunks below it.
``NBCONV_SERIAL_BELOW``
    Element count below which memory-bound kernels skip the thread pool (default 2**18).
``NBCONV_CUDA_BLOCK``
    Threads per block of the 1-D CUDA launches (default 128).
``NBCONV_CUDA_TILE``
    Edge of the CUDA matrix-product tiles (default 16).
``NUMBA_THREADING_LAYER``, ``OMP_WAIT_POLICY``
    numba's and OpenMP's own variables; nbconv prefers numba's OpenMP layer with passive
    (sleeping) idle threads unless they are set (see ``THREADING_LAYER``).
"""

from __future__ import annotations

import os
import sys

import numba

#: numba's threading layer: OpenMP first (then TBB, then workqueue), with OpenMP's idle threads
#: told to sleep (``OMP_WAIT_POLICY=PASSIVE``) instead of spinning.  Spinning threads fought
#: OpenBLAS's threads and other processes (a LeNet step of 24.5 ms on an idle 2-core machine,
#: 655 ms on a loaded one); sleeping OpenMP threads gave 7.5 ms idle, workqueue 14.4 ms.  Both
#: variables are only defaults: set NUMBA_THREADING_LAYER / OMP_WAIT_POLICY to override.
#: The OpenMP runtime reads the variable when it is loaded, so numba's threads are started
#: here with it set and the variable is removed again: an OpenMP library loaded later (PyTorch
#: in the benchmarks) sees the environment the user gave it (PyTorch's LeNet step: 6.6 ms with
#: its default policy, 7.1 ms passive).
#: With PyTorch already imported its OpenMP runtime is in the process, and numba's OpenMP
#: threads then fought it (a LeNet step took 52 ms instead of 7.5): nbconv falls back to
#: numba's own workqueue layer (14.4 ms) and leaves OpenMP alone.  Importing nbconv first
#: keeps the OpenMP layer; PyTorch imported afterwards was measured up to 30% slower.
_OPENMP_TAKEN = "torch" in sys.modules
if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER_PRIORITY = (
        ["workqueue", "tbb", "omp"] if _OPENMP_TAKEN else ["omp", "tbb", "workqueue"]
    )
if "OMP_WAIT_POLICY" not in os.environ and not _OPENMP_TAKEN:
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    try:
        from numba.np.ufunc import parallel as _parallel

        _parallel._launch_threads()
    except Exception:  # noqa: BLE001 - a numba without this helper starts threads lazily
        pass
    finally:
        del os.environ["OMP_WAIT_POLICY"]
THREADING_LAYER: str = os.environ.get("NUMBA_THREADING_LAYER", "default")

#: numba's on-disk cache for every kernel (``cache=True``).
CACHE: bool = os.environ.get("NBCONV_CACHE", "1") != "0"

#: fast-math flags that keep NaN/inf semantics: no "nnan", no "ninf".  "reassoc" and "contract"
#: let LLVM vectorise reductions and use FMA; results differ from strict IEEE order only by
#: rounding.
FASTMATH: frozenset = frozenset({"nsz", "arcp", "contract", "reassoc"})

#: memory-bound kernels (ReLU, max pooling, ...) on fewer elements than this run on the calling
#: thread: waking numba's sleeping threads costs about 12 µs, as much as one core's pass over
#: 256k float32 values (ReLU of 110k values: 24 µs with two threads, 14 µs on one).
SERIAL_BELOW: int = int(os.environ.get("NBCONV_SERIAL_BELOW", str(1 << 18)))

#: largest im2col buffer one call may allocate, in bytes.
IM2COL_MAX_BYTES: int = int(os.environ.get("NBCONV_IM2COL_MAX_BYTES", str(64 * 2**20)))

#: threads per block of 1-D CUDA launches.
CUDA_BLOCK: int = int(os.environ.get("NBCONV_CUDA_BLOCK", "128"))

#: edge of the shared-memory tiles of the CUDA matrix product (fixed when that kernel module is
#: first imported: the tile is a compile-time constant of the kernel), clipped to [1, 32].
CUDA_TILE: int = max(1, min(32, int(os.environ.get("NBCONV_CUDA_TILE", "16"))))

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

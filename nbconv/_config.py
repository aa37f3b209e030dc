"""Every tunable of nbconv in one place.

Kernels read their decorator flags from here, so that a single environment variable changes the
behaviour of the whole library:

``NBCONV_CACHE``
    ``"0"`` disables numba's on-disk cache (default: enabled).  The cache lives where numba puts
    it (``NUMBA_CACHE_DIR`` when set, else ``__pycache__`` next to the sources), in a folder
    ``nbconv-<digest>`` whose name hashes nbconv's version and every ``.py`` file of the
    package, so that an upgrade or an edited helper never loads a stale kernel; superseded
    folders are deleted after an hour unused (:mod:`nbconv._cache`).
``NBCONV_COMPILE_NOTICE``
    ``"0"`` silences the one-line notice on stderr when nbconv's kernels are compiled (the
    first run with an empty cache); default: shown.
``NBCONV_LOOP_UNSWITCH``
    ``"1"`` lets LLVM unswitch loops non-trivially in nbconv's kernels too (numba's default);
    default: off while nbconv's kernels compile, which compiles them faster at the same speed
    (:mod:`nbconv._compile_options`).
``NBCONV_IM2COL_MAX_BYTES``
    Upper bound of one im2col buffer in bytes (default 16 MiB; SPEC's ceiling is 64 MiB);
    im2col works in chunks below it.
``NBCONV_SERIAL_BELOW``
    Element count below which memory-bound kernels skip the thread pool (default 2**18).
``NBCONV_CUDA_BLOCK``
    Threads per block of the 1-D CUDA launches (default 128).
``NBCONV_CUDA_TILE``
    Edge of the CUDA matrix-product tiles (default 16).
``NBCONV_CUDA_CONV_TILE``
    Tiles of the CUDA implicit-GEMM convolution kernels as ``BM,BN,BK,TM,TN`` (default
    ``64,64,8,4,4``: 64x64 output tiles, 8-deep reduction slices, a 4x4 register tile per
    thread, 256 threads per block).
``NBCONV_MALLOC_TUNING``
    ``"0"`` leaves glibc's allocator as it is (default: tuned at import, see ``MALLOC_TUNED``).
``NUMBA_THREADING_LAYER``, ``OMP_WAIT_POLICY``, ``GOMP_SPINCOUNT``
    numba's and OpenMP's own variables; nbconv prefers numba's OpenMP layer with idle threads
    that spin briefly, then sleep, unless they are set (see ``THREADING_LAYER``).
"""

from __future__ import annotations

import ctypes
import os
import sys

import numba

from . import _cache

#: numba's threading layer: OpenMP first (then TBB, then workqueue).  When nbconv is the first
#: to load OpenMP, its idle threads spin only briefly (``GOMP_SPINCOUNT``, below) before they
#: sleep: spinning for long fought OpenBLAS's threads and other processes (a LeNet step of
#: 24.5 ms on an idle 2-core machine, 655 ms on a loaded one), while sleeping at once made
#: every parallel kernel wait for its threads to wake (resnet18 inference at batch 1 on 2
#: threads, ``nbconv.compile``: 4.1 ms sleeping at once, 1.0 ms with a short spin).  The runtime
#: reads the variable when it is loaded, so numba's threads are started here with it set and
#: the variable is removed again.  When PyTorch was imported first its OpenMP runtime
#: (``libgomp.so.1``, the same soname as the system's) is already in the process and numba's
#: OpenMP layer shares it, with PyTorch's settings.  Measured on 2 cores with glibc's
#: allocator tuned (below), LeNet training step at batch 64 in one process with PyTorch
#: imported first: nbconv 5.2 ms on OpenMP, 7.6 ms on numba's workqueue layer (whose waiting
#: main thread competes with its workers), PyTorch 4.6-5.3 ms either way.  These are only
#: defaults: set NUMBA_THREADING_LAYER, OMP_WAIT_POLICY or GOMP_SPINCOUNT to override.
_OPENMP_TAKEN = "torch" in sys.modules
#: spins of an idle OpenMP thread before it sleeps (libgomp's default is 300,000; 0 is
#: ``OMP_WAIT_POLICY=PASSIVE``): short enough that a loaded machine loses little to it
SPIN_COUNT = 1000
if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER_PRIORITY = ["omp", "tbb", "workqueue"]
if ("OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ
        and not _OPENMP_TAKEN):
    os.environ["GOMP_SPINCOUNT"] = str(SPIN_COUNT)
    try:
        from numba.np.ufunc import parallel as _parallel

        _parallel._launch_threads()
    except Exception:  # noqa: BLE001 - a numba without this helper starts threads lazily
        pass
    finally:
        del os.environ["GOMP_SPINCOUNT"]
THREADING_LAYER: str = os.environ.get("NUMBA_THREADING_LAYER", "default")


def _tune_malloc() -> bool:
    """Let glibc's malloc keep freed memory for reuse instead of returning it to the system.

    By default glibc serves arrays above a (dynamic) threshold with fresh ``mmap`` pages and
    trims the heap soon after a free, so the arrays of every training step (activations,
    gradients, workspaces of 0.1-1 MB) were new pages that the kernel first had to fault in and
    zero: about 1 ms of a 4 ms LeNet step at batch 32 (3.2 ms with the tuning).  Here arrays up
    to 32 MiB come from the heap and up to 128 MiB of freed heap stay mapped: the process keeps
    its peak working set instead of handing it back between steps (jemalloc and tcmalloc, which
    PyTorch recommends for CPU training, behave alike).  Skipped where the user set glibc's own
    variables, with ``NBCONV_MALLOC_TUNING=0``, and off glibc.
    """
    if os.environ.get("NBCONV_MALLOC_TUNING", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    if any(k in os.environ for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_",
                                     "MALLOC_TOP_PAD_")):
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 - raises AttributeError off glibc
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's <malloc.h>
    return bool(mallopt(m_mmap_threshold, 32 << 20)) and bool(mallopt(m_trim_threshold, 128 << 20))


#: True when :func:`_tune_malloc` changed glibc's thresholds at import.
MALLOC_TUNED: bool = _tune_malloc()

#: numba's on-disk cache for every kernel (``cache=True``), in a folder named after a hash of
#: nbconv's version and sources (:mod:`nbconv._cache`): a kernel compiled by another version of
#: any nbconv file, its helpers' included, is never loaded.
CACHE: bool = os.environ.get("NBCONV_CACHE", "1") != "0"
if CACHE:
    _cache.install()

#: print one line on stderr when the first nbconv kernel of the process is compiled
COMPILE_NOTICE: bool = os.environ.get("NBCONV_COMPILE_NOTICE", "1") != "0"

#: let LLVM unswitch loops non-trivially in nbconv's kernels (off: :mod:`nbconv._compile_options`)
LOOP_UNSWITCH: bool = os.environ.get("NBCONV_LOOP_UNSWITCH", "0") == "1"

#: fast-math flags that keep NaN/inf semantics: no "nnan", no "ninf".  "reassoc" and "contract"
#: let LLVM vectorise reductions and use FMA; results differ from strict IEEE order only by
#: rounding.
FASTMATH: frozenset = frozenset({"nsz", "arcp", "contract", "reassoc"})

#: memory-bound kernels (ReLU, max pooling, ...) on fewer elements than this run on the calling
#: thread: waking numba's sleeping threads costs about 12 µs, as much as one core's pass over
#: 256k float32 values (ReLU of 110k values: 24 µs with two threads, 14 µs on one).
SERIAL_BELOW: int = int(os.environ.get("NBCONV_SERIAL_BELOW", str(1 << 18)))

#: largest im2col buffer one call may allocate, in bytes.  Kept below glibc's largest mmap
#: threshold (32 MiB, see ``_tune_malloc``): bigger buffers are fresh pages on every call, and
#: their page faults made VGG's im2col forward 92 ms instead of 53 (chunks of 64 vs 16 MiB).
IM2COL_MAX_BYTES: int = int(os.environ.get("NBCONV_IM2COL_MAX_BYTES", str(16 * 2**20)))

#: threads per block of 1-D CUDA launches.
CUDA_BLOCK: int = int(os.environ.get("NBCONV_CUDA_BLOCK", "128"))

#: edge of the shared-memory tiles of the CUDA matrix product (fixed when that kernel module is
#: first imported: the tile is a compile-time constant of the kernel), clipped to [1, 32].
CUDA_TILE: int = max(1, min(32, int(os.environ.get("NBCONV_CUDA_TILE", "16"))))

#: ``(BM, BN, BK, TM, TN)`` of the CUDA implicit-GEMM convolutions
#: (:mod:`nbconv.cuda.kernels.conv2d_im2col`, which checks them): each block computes a
#: ``BM x BN`` output tile in ``BK``-deep slices, each thread a ``TM x TN`` register tile.  Read at
#: launch (one compiled kernel per value), so tests can shrink it.
CUDA_CONV_TILE: tuple = tuple(
    int(v) for v in os.environ.get("NBCONV_CUDA_CONV_TILE", "64,64,8,4,4").split(",")
)

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

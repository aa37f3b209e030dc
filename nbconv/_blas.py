"""Matrix products through NumPy's BLAS on nbconv's terms: BLAS runs inside numba's threads.

OpenBLAS's worker threads busy-wait (for about 0.1 s) after every call that used them, and on
a 2-core machine they then steal the cores from the numba kernels that follow: in a LeNet
training step at batch 32 that cost 5.0 ms instead of 3.8 ms, and an im2col convolution's own
numba passes ran up to 2x slower right after its GEMM.  The reverse happens too: numba's
OpenMP workers spin after a parallel kernel (when PyTorch was imported first they use
PyTorch's libgomp, which spins), and any other thread that wants the cores then waits.
So every product here runs on numba's own threads, with BLAS single-threaded:

* products below :data:`SMALL_MACS` multiply-adds run as one ``np.matmul`` call in the calling
  thread;
* larger ones are cut into tasks (one per matrix of a batch, or slabs of output rows/columns
  when there are fewer matrices than threads) and a numba ``prange`` kernel calls BLAS's
  ``cblas_?gemm`` once per task.  The kernel reaches the very BLAS that NumPy uses (found
  through threadpoolctl, called through its address), so the speed is NumPy's.  Moving the
  products of a 1x1 convolution from a pool of Python threads onto numba's threads took it
  from 19 to 13 ms when PyTorch had been imported first (PyTorch: 14 ms).

The thread count is switched through `threadpoolctl <https://github.com/joblib/threadpoolctl>`_
(about 1 µs a switch; installed with nbconv).  Without it, or with a BLAS that has no CBLAS
``gemm`` to call, every product is a plain ``np.matmul`` with BLAS's own threading.  Switching
is process-wide: while any nbconv product runs (in any Python thread) BLAS is
single-threaded, and the first count is restored when the last one finishes.
"""

from __future__ import annotations

import ctypes
import threading

import numba
import numpy as np

from .kernels.gemm import _NO_TRANS, _TRANS, _gemm_tasks

__all__ = ["matmul", "SMALL_MACS"]

#: products with at most this many multiply-adds are one single-threaded call (about 0.5 ms of
#: work on one core; LeNet's largest, 64x256 @ 256x120, takes 0.06 ms single-threaded).
SMALL_MACS = 1 << 23

_controllers = None
# {np.dtype: address of cblas_?gemm}, and the width of its integers
_gemm = None
_gemm_int = np.int32
# products in flight and the BLAS thread counts to restore when the last one ends: two Python
# threads saving and restoring on their own could leave BLAS single-threaded for good
_lock = threading.Lock()
_active = 0
_saved: list = []


def _blas_controllers() -> list:
    """threadpoolctl's controllers of the BLAS libraries loaded now (found once, cached)."""
    global _controllers
    if _controllers is None:
        try:
            from threadpoolctl import ThreadpoolController

            found = list(ThreadpoolController().select(user_api="blas").lib_controllers)
        except Exception:  # noqa: BLE001 - no threadpoolctl, or a BLAS it cannot drive
            found = []
        # NumPy's own BLAS (in NumPy's wheel folder) is the only one nbconv calls: switching
        # just that one halves the cost of a switch (~3 µs per library and call) when SciPy
        # has loaded a second BLAS
        numpys = [c for c in found if "numpy" in str(c.filepath)]
        _controllers = numpys or found
    return _controllers


#: CBLAS gemm symbols to look for, with the width of their integer arguments: NumPy's wheels
#: ship an ILP64 OpenBLAS with prefixed and suffixed names; a system BLAS has the plain ones.
_GEMM_SYMBOLS = (("scipy_cblas_{}gemm64_", np.int64), ("cblas_{}gemm64_", np.int64),
                 ("cblas_{}gemm", np.int32))


def _gemm_functions() -> dict:
    """Addresses of NumPy's ``cblas_sgemm``/``cblas_dgemm`` by dtype; empty if not found.

    NumPy's own BLAS comes first (the library under ``numpy``'s folder): a different BLAS
    loaded by SciPy measured 20% slower here."""
    global _gemm, _gemm_int
    if _gemm is not None:
        return _gemm
    _gemm = {}
    libs = sorted(_blas_controllers(), key=lambda c: "numpy" not in str(c.filepath))
    for lib in libs:
        try:
            dll = ctypes.CDLL(lib.filepath)
        except OSError:
            continue
        for pattern, int_type in _GEMM_SYMBOLS:
            try:
                found = {np.dtype(np.float32): getattr(dll, pattern.format("s")),
                         np.dtype(np.float64): getattr(dll, pattern.format("d"))}
            except AttributeError:
                continue
            _gemm = {k: ctypes.cast(f, ctypes.c_void_p).value for k, f in found.items()}
            _gemm_int = int_type
            return _gemm
    return _gemm


def gemm_description() -> str:
    """Which product nbconv's GEMMs run, in words (for benchmark reports)."""
    gemm = _gemm_functions()
    if not gemm:
        return "numpy.matmul (no CBLAS gemm found)"
    libs = _blas_controllers()
    name = f"{libs[0].internal_api} {libs[0].version}" if libs else "BLAS"
    core = getattr(libs[0], "architecture", None) if libs else None
    blas = f"{name} ({core} kernels)" if core else name
    return f"NumPy's {blas}"


def _operand(x):
    """``(trans, ld)`` under which CBLAS reads the 2-D view ``x`` in row-major order, or None
    when its strides fit no BLAS layout (then it must be copied)."""
    it = x.itemsize
    rows, cols = x.shape
    s0, s1 = x.strides
    if (cols == 1 or s1 == it) and s0 % it == 0:
        ld = s0 // it if rows > 1 else max(cols, 1)
        if ld >= max(cols, 1):
            return _NO_TRANS, ld
    if (rows == 1 or s0 == it) and s1 % it == 0:
        ld = s1 // it if cols > 1 else max(rows, 1)
        if ld >= max(rows, 1):
            return _TRANS, ld
    return None


def _switch_functions(controller) -> tuple:
    """``(get, set)`` of one BLAS library's thread count: OpenBLAS's own C functions where
    threadpoolctl finds them (its Python layer looks each symbol up again at every call, which
    made a switch and its restore cost 3 us; a batch-1 network switches once per product),
    else the controller's methods."""
    find = getattr(controller, "_get_symbol", None)  # threadpoolctl's, prefixes and suffixes
    if getattr(controller, "internal_api", None) == "openblas" and find is not None:
        try:
            get, set_ = find("openblas_get_num_threads"), find("openblas_set_num_threads")
        except Exception:  # noqa: BLE001 - another threadpoolctl: its public methods then
            get = set_ = None
        if get is not None and set_ is not None:
            return get, set_
    return controller.get_num_threads, controller.set_num_threads


_switches = None  # (the controllers they were made for, their [(get, set), ...])


def _thread_switches() -> list:
    """:func:`_switch_functions` of each of :func:`_blas_controllers` (made once)."""
    global _switches
    libs = _blas_controllers()
    if _switches is None or _switches[0] is not libs:
        _switches = (libs, [_switch_functions(c) for c in libs])
    return _switches[1]


def _single_threaded(switches: list) -> None:
    """Enter a product: the first one in flight saves BLAS's thread counts and sets them to 1."""
    global _active, _saved
    with _lock:
        if _active == 0:
            _saved = [get() for get, _ in switches]
            for _, set_ in switches:
                set_(1)
        _active += 1


def _restore(switches: list) -> None:
    """Leave a product: the last one in flight restores the saved thread counts."""
    global _active
    with _lock:
        _active -= 1
        if _active == 0:
            for (_, set_), n in zip(switches, _saved):
                set_(n)


def _as3(x):
    """``x`` as a batch of matrices: 2-D arrays get a leading axis of one."""
    return x[None] if x.ndim == 2 else x


def _blas_ready(a, b, out) -> bool:
    """Whether the threaded path takes these arrays as they are: one float dtype with a CBLAS
    gemm, 2-D or 3-D arrays (a batch axis of 1 broadcasts), every matrix in a BLAS layout and
    ``out`` row-major and writeable.  Anything else goes to ``np.matmul``."""
    if not (a.dtype == b.dtype == out.dtype and out.dtype in _gemm_functions()):
        return False
    if not (out.flags.writeable and {a.ndim, b.ndim, out.ndim} <= {2, 3}
            and out.ndim == max(a.ndim, b.ndim)):
        return False
    a3, b3, c3 = _as3(a), _as3(b), _as3(out)
    B = c3.shape[0]
    if (a3.shape[0] not in (1, B) or b3.shape[0] not in (1, B) or a3.shape[2] != b3.shape[1]
            or c3.shape[1:] != (a3.shape[1], b3.shape[2])):
        return False
    layouts = [_operand(m[0]) for m in (a3, b3, c3)]
    return all(layouts) and layouts[2][0] == _NO_TRANS


class _SingleThreadedBlas:
    """The context of :func:`single_threaded_blas`: stateless (the count of products in
    flight is module-wide), so one instance serves every ``with``, nested or concurrent; a
    class rather than a generator, since a planned network's batch-1 call enters it once
    per call and the generator's machinery took more than the two thread-count switches."""

    __slots__ = ()

    def __enter__(self):
        _single_threaded(_thread_switches())

    def __exit__(self, *exc):
        _restore(_thread_switches())
        return False


_SINGLE_THREADED = _SingleThreadedBlas()


def single_threaded_blas():
    """Within the block BLAS runs single-threaded (for kernels that call :func:`gemm_for`'s
    function on numba's threads); nests, and is safe in several Python threads at once."""
    return _SINGLE_THREADED


def gemm_for(dtype):
    """``(address, integer width marker)`` of the CBLAS gemm for ``dtype``, for kernels that
    call :func:`nbconv.kernels.gemm._cblas_gemm` themselves; None if there is none (or no
    threadpoolctl to keep it single-threaded)."""
    if not _blas_controllers():
        return None
    fn = _gemm_functions().get(np.dtype(dtype))
    return None if fn is None else (fn, _gemm_int(0))


def _threaded(a, b, out, beta) -> None:
    """The large-product path: one task per matrix of the batch, or slabs of every matrix
    (along the longer axis of the output) when the batch does not divide evenly among the
    threads.  O(1) Python work: the kernel computes every task's addresses."""
    a3, b3, c3 = _as3(a), _as3(b), _as3(out)
    threads = numba.get_num_threads()
    batch, m, n = c3.shape
    parts = 1 if batch % threads == 0 else threads
    ta, lda = _operand(a3[0])
    tb, ldb = _operand(b3[0])
    ldc = _operand(c3[0])[1]
    geometry = np.array([ta, tb, m, n, a3.shape[2], lda, ldb, ldc, batch, out.itemsize,
                         m >= n], dtype=np.int64)
    addresses = np.array([a3.ctypes.data, b3.ctypes.data, c3.ctypes.data,
                          a3.strides[0] if len(a3) > 1 else 0,
                          b3.strides[0] if len(b3) > 1 else 0, c3.strides[0]], dtype=np.int64)
    _gemm_tasks(_gemm_functions()[out.dtype], _gemm_int(0), geometry, addresses, parts,
                out.dtype.type(1.0), out.dtype.type(beta))


def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray, accumulate: bool = False) -> np.ndarray:
    """``out = a @ b`` (or ``out += a @ b``) with single-threaded BLAS calls run by numba's
    threads (see the module docstring).

    Parameters
    ----------
    a : ndarray, shape (..., M, K)
    b : ndarray, shape (..., K, N)
    out : ndarray, shape (..., M, N)
        May be a strided view; it is written in place.
    accumulate : bool
        Add the product to ``out`` instead of overwriting it.

    Returns
    -------
    out
    """
    libs = _blas_controllers()
    if not libs:
        if accumulate:
            out += np.matmul(a, b)
            return out
        return np.matmul(a, b, out=out)
    with single_threaded_blas():
        # a matrix-vector product (a batch-1 Linear) is NumPy's GEMV: slabs of a GEMM with
        # one row each repack the whole weight matrix, which took twice as long on 2 threads
        large = (out.size * a.shape[-1] > SMALL_MACS and numba.get_num_threads() > 1
                 and min(out.shape[-2:]) > 1)
        if large and _blas_ready(a, b, out):
            _threaded(a, b, out, 1.0 if accumulate else 0.0)
        elif accumulate:
            out += np.matmul(a, b)
        else:
            np.matmul(a, b, out=out)
        return out

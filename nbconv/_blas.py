"""Matrix products through NumPy's BLAS on nbconv's terms: no spinning BLAS worker threads.

OpenBLAS's worker threads busy-wait (for about 0.1 s) after every call that used them, and on
a 2-core machine they then steal the cores from the numba kernels that follow: in a LeNet
training step at batch 32 (three small fully connected layers between the convolutions) that
cost 5.0 ms instead of 3.8 ms, and an im2col convolution's own numba passes (building the
columns, col2im) ran up to 2x slower right after its GEMM.  So BLAS always runs
single-threaded here, in the calling thread:

* products below :data:`SMALL_MACS` multiply-adds run as one call;
* larger ones are cut into ``nbconv.get_num_threads()`` slabs of output rows (or columns,
  whichever axis is longer), computed concurrently by a small pool of Python threads (NumPy
  releases the GIL inside BLAS) whose idle workers sleep instead of spinning.

The thread count is switched through `threadpoolctl <https://github.com/joblib/threadpoolctl>`_
(about 1 µs a switch; installed with nbconv).  Without it every product is a plain
``np.matmul`` with BLAS's own threading.  Switching is process-wide: while any nbconv product
runs (in any Python thread) BLAS is single-threaded, and the first count is restored when the
last one finishes.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

__all__ = ["matmul", "SMALL_MACS"]

#: products with at most this many multiply-adds are one single-threaded call (about 0.5 ms of
#: work on one core; LeNet's largest, 64x256 @ 256x120, takes 0.06 ms single-threaded).
SMALL_MACS = 1 << 23

_controllers = None
_pool: ThreadPoolExecutor | None = None
_pool_workers = 0
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

            _controllers = list(ThreadpoolController().select(user_api="blas").lib_controllers)
        except Exception:  # noqa: BLE001 - no threadpoolctl, or a BLAS it cannot drive
            _controllers = []
    return _controllers


def _forget_pool() -> None:
    """After ``fork`` the child has none of the parent's threads: start a fresh pool there
    (submitting to the inherited one would wait forever)."""
    global _pool, _pool_workers, _lock, _active
    _pool, _pool_workers = None, 0
    _lock, _active = threading.Lock(), 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def _single_threaded(libs: list) -> None:
    """Enter a product: the first one in flight saves BLAS's thread counts and sets them to 1."""
    global _active, _saved
    with _lock:
        if _active == 0:
            _saved = [lib.get_num_threads() for lib in libs]
            for lib in libs:
                lib.set_num_threads(1)
        _active += 1


def _restore(libs: list) -> None:
    """Leave a product: the last one in flight restores the saved thread counts."""
    global _active
    with _lock:
        _active -= 1
        if _active == 0:
            for lib, n in zip(libs, _saved):
                lib.set_num_threads(n)


def _workers(n: int) -> ThreadPoolExecutor:
    """A pool of at least ``n`` threads (grown on demand; its idle threads sleep)."""
    global _pool, _pool_workers
    if _pool is None or _pool_workers < n:
        # the old pool is left alone (not shut down): another Python thread may still be
        # submitting to it; its few idle threads sleep
        _pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="nbconv-blas")
        _pool_workers = n
    return _pool


def _slabs(a, b, out, parts: int):
    """``parts`` argument triples ``(a_i, b_i, out_i)`` covering ``out`` along its longer axis."""
    rows, cols = out.shape[-2], out.shape[-1]
    axis_len = max(rows, cols)
    edges = [axis_len * i // parts for i in range(parts + 1)]
    if rows >= cols:
        return [(a[..., r0:r1, :], b, out[..., r0:r1, :])
                for r0, r1 in zip(edges[:-1], edges[1:])]
    return [(a, b[..., :, c0:c1], out[..., :, c0:c1]) for c0, c1 in zip(edges[:-1], edges[1:])]


def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``np.matmul(a, b, out=out)`` with single-threaded BLAS calls (see the module docstring).

    Parameters
    ----------
    a : ndarray, shape (..., M, K)
    b : ndarray, shape (..., K, N)
    out : ndarray, shape (..., M, N)

    Returns
    -------
    out
    """
    libs = _blas_controllers()
    if not libs:
        return np.matmul(a, b, out=out)
    parts = 1
    if out.size * a.shape[-1] > SMALL_MACS:
        parts = min(numba.get_num_threads(), max(out.shape[-2], out.shape[-1]))
    _single_threaded(libs)
    try:
        if parts <= 1:
            return np.matmul(a, b, out=out)
        first, *rest = _slabs(a, b, out, parts)
        pool = _workers(len(rest))
        futures = [pool.submit(np.matmul, ai, bi, out=oi) for ai, bi, oi in rest]
        try:
            np.matmul(*first[:2], out=first[2])
        finally:
            for f in futures:
                f.result()  # re-raises a worker's exception here
        return out
    finally:
        _restore(libs)

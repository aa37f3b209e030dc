"""Matrix products through NumPy's BLAS, multi-threaded only where that pays.

OpenBLAS's worker threads busy-wait (for about 0.1 s) after every call that used them, and on
a 2-core machine they then steal the cores from the numba kernels that follow: in a LeNet
training step at batch 32 (three small fully connected layers between the convolutions) that
cost 5.0 ms instead of 3.8 ms.  So products below :data:`SMALL_MACS` multiply-adds run on one
BLAS thread (the calling one); the worker threads stay asleep.

The thread count is switched through `threadpoolctl <https://github.com/joblib/threadpoolctl>`_
(about 1 µs a switch; installed with nbconv).  Without it every product uses BLAS's default.
Switching is process-wide, so a product running at the same moment in another Python thread
may also run single-threaded.
"""

from __future__ import annotations

import numpy as np

__all__ = ["matmul", "SMALL_MACS"]

#: products with at most this many multiply-adds run on one BLAS thread (about 0.5 ms of work
#: on one core; measured: LeNet's largest, 64x256 @ 256x120, takes 0.06 ms single-threaded).
SMALL_MACS = 1 << 23

_controllers = None


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


def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``np.matmul(a, b, out=out)``, on one BLAS thread when the product is small.

    Parameters
    ----------
    a : ndarray, shape (..., M, K)
    b : ndarray, shape (..., K, N)
    out : ndarray, shape (..., M, N)

    Returns
    -------
    out
    """
    macs = out.size * a.shape[-1]
    libs = _blas_controllers() if macs <= SMALL_MACS else ()
    if not libs:
        return np.matmul(a, b, out=out)
    before = [lib.get_num_threads() for lib in libs]
    for lib in libs:
        lib.set_num_threads(1)
    try:
        return np.matmul(a, b, out=out)
    finally:
        for lib, n in zip(libs, before):
            lib.set_num_threads(n)

"""Bias kernels of the fully connected layer (the matrix products are BLAS calls), and the
whole layer for tiny products (:func:`_linear_tiny`).

``y`` and ``dy`` are C-contiguous ``(M, F)`` arrays: M rows (all leading dimensions flattened),
F output features.
"""

from __future__ import annotations

import numba
import numpy as np

from .._config import JIT_OPTIONS

#: rows per parallel chunk.
_ROWS = 64


@numba.njit(parallel=True, **JIT_OPTIONS)
def _linear_bias_fwd(y, b):
    """``y[m, f] += b[f]`` in place; each chunk of rows belongs to one iteration."""
    M, F = y.shape
    nch = (M + _ROWS - 1) // _ROWS
    for ch in numba.prange(nch):
        for m in range(ch * _ROWS, min(M, (ch + 1) * _ROWS)):
            for f in range(F):
                y[m, f] += b[f]


@numba.njit(parallel=True, **JIT_OPTIONS)
def _linear_bias_bwd(dy, db):
    """``db[f] = sum_m dy[m, f]``: per-chunk partial sums (float64), reduced serially after."""
    M, F = dy.shape
    nch = (M + _ROWS - 1) // _ROWS
    part = np.zeros((nch, F))
    for ch in numba.prange(nch):
        for m in range(ch * _ROWS, min(M, (ch + 1) * _ROWS)):
            for f in range(F):
                part[ch, f] += dy[m, f]
    for f in range(F):
        s = 0.0
        for ch in range(nch):
            s += part[ch, f]
        db[f] = s


@numba.njit(**JIT_OPTIONS)
def _linear_tiny(x, w, b, has_bias, relu, y):
    """``y = x @ w.T (+ b)``, then ``max(y, 0)`` with ``relu`` (NaN kept), in one serial
    pass: for products of up to some ten thousand multiply-adds (a classifier at batch 1),
    where NumPy's three calls (product, sum, maximum) cost more than the arithmetic.

    x : (M, K); w : (F, K); b : (F,) (any length when not ``has_bias``); y : (M, F)."""
    M, K = x.shape
    F = w.shape[0]
    zero = y.dtype.type(0)
    for m in range(M):
        for f in range(F):
            s = zero
            for k in range(K):
                s += x[m, k] * w[f, k]
            if has_bias:
                s += b[f]
            y[m, f] = s if not (relu and s <= 0) else zero

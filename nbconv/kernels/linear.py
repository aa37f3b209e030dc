"""Kernels of the fully connected layer: the bias passes around BLAS's products, the whole
layer for tiny products (:func:`_linear_tiny`), and a product on weights packed once into
panels (:func:`_linear_panels`) for a planned network's layers with few rows.

``y`` and ``dy`` are C-contiguous ``(M, F)`` arrays: M rows (all leading dimensions flattened),
F output features.

The panels (:mod:`.panels`): a classifier at batch 32 reads its large weight matrix once, in
order, where BLAS packs it into its own layout at every call.
"""

from __future__ import annotations

import numba
import numpy as np

from .._config import JIT_OPTIONS
from .panels import PANEL_ROWS, PANEL_TERMS, _panel_block, _panel_start, _panel_store

__all__ = ["_linear_bias_fwd", "_linear_bias_bwd", "_linear_tiny", "_linear_panels"]


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


@numba.njit(parallel=True, **JIT_OPTIONS)
def _linear_panels(x, P, b, has_bias, relu, y):
    """``y = x @ w.T (+ b)``, then ``max(y, 0)`` with ``relu`` (NaN kept), with ``w`` packed
    as panels (module docstring).

    x : (M, K) C-contiguous; P : (ceil(F / FB), K, FB) the panels, ``FB`` =
    ``PANEL_VECTORS`` native vectors; b : (F,) (any length when not ``has_bias``); y : (M, F).
    One task per panel: its accumulators for all ``M`` rows start from the bias, take
    :data:`PANEL_TERMS` terms at a time for every block of rows, and are stored once."""
    M, K = x.shape
    nfb, _, FB = P.shape
    zero = y.dtype.type(0)
    it = y.itemsize
    for fb in numba.prange(nfb):
        f0 = fb * FB
        acc = np.empty((M, FB), dtype=y.dtype)
        _panel_start(acc, b, f0, has_bias, zero)
        for k0 in range(0, K, PANEL_TERMS):
            pa = P.ctypes.data + (fb * K + k0) * FB * it
            for m0 in range(0, M, PANEL_ROWS):
                _panel_block(x.ctypes.data + (m0 * K + k0) * it, K, min(PANEL_TERMS, K - k0), pa,
                             acc.ctypes.data + m0 * FB * it, min(PANEL_ROWS, M - m0), FB * it,
                             it, zero)
        _panel_store(acc, y, f0, relu, zero)

"""Kernels of the fully connected layer: the bias passes around BLAS's products, the whole
layer for tiny products (:func:`_linear_tiny`), and a product on weights packed once into
panels (:func:`_linear_panels`) for a planned network's layers with few rows.

``y`` and ``dy`` are C-contiguous ``(M, F)`` arrays: M rows (all leading dimensions flattened),
F output features.

*Panels*: the weights ``w`` (F, K) are packed into ``ceil(F / FB)`` panels of ``FB`` filters
(:data:`PANEL_VECTORS` native vectors), each a contiguous (K, FB) array with zeros past ``F``,
so that a panel streams from memory in order.  A block of :data:`PANEL_ROWS` rows of ``x``
times one panel keeps its ``PANEL_ROWS * PANEL_VECTORS`` accumulators in registers (an
``@intrinsic``, as the register blocks of the convolution do): per reduction term it loads
the panel's vectors once and broadcasts one value of each row.  A classifier at batch 32
reads its large weight matrix once, where BLAS packs it into its own layout at every call.
"""

from __future__ import annotations

import numba
import numpy as np
from numba.core import types
from numba.extending import intrinsic

from .._config import JIT_OPTIONS
from ._ir import VECTOR_BYTES, VectorIR, float_type_ok

__all__ = ["_linear_bias_fwd", "_linear_bias_bwd", "_linear_tiny", "_linear_panels",
           "panel_rows", "PANEL_ROWS", "PANEL_VECTORS", "PANEL_TERMS"]


def panel_rows(vector_bytes: int) -> int:
    """Rows of ``x`` per panel block on vectors of ``vector_bytes``: 8 with AVX-512's 32
    registers (16 accumulators), else 4 (8 of AVX2's 16)."""
    return 8 if vector_bytes >= 64 else 4


#: rows per panel block on this machine (:func:`panel_rows`)
PANEL_ROWS = panel_rows(VECTOR_BYTES)
#: native vectors of filters per panel
PANEL_VECTORS = 2
#: reduction terms per pass over a panel (a slice of 1024 terms stays in L2 while every block
#: of rows reads it)
PANEL_TERMS = 1024

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


@intrinsic
def _fma_panel(typingctx, x_addr, x_stride, K, p_addr, acc_addr, nrows, zero):
    """``acc[m, v*L:(v+1)*L] += sum_{k<K} x[m*x_stride + k] * p[(k*NV + v)*L : ... + L]`` for
    ``m < nrows`` (a literal; 0 stands for :data:`PANEL_ROWS`) and ``v < NV`` =
    :data:`PANEL_VECTORS`, ``L`` native lanes of ``zero``'s float type; addresses as integers,
    ``acc`` (nrows, NV*L) contiguous."""
    if not (isinstance(nrows, types.IntegerLiteral) and float_type_ok(zero)):
        return None
    NR, NV = nrows.literal_value or PANEL_ROWS, PANEL_VECTORS
    sig = types.void(x_addr, x_stride, K, p_addr, acc_addr, nrows, zero)

    def codegen(context, builder, signature, args):
        v = VectorIR(context, builder, zero)
        xs, k = v.int64(args[1]), v.int64(args[2])
        xp, pp, ap = v.reals(args[0]), v.reals(args[3]), v.reals(args[4])
        const, lanes = v.const, v.lanes

        def term(r, accs):
            row = builder.mul(r, const(NV * lanes))
            wv = [v.load_vector(pp, builder.add(row, const(j * lanes))) for j in range(NV)]
            new = []
            for m in range(NR):
                xm = builder.load(builder.gep(xp, [builder.add(r, builder.mul(xs, const(m)))]))
                xv = v.splat(xm)
                new += [v.fma(xv, wv[j], accs[m * NV + j]) for j in range(NV)]
            return new

        init = [v.load_vector(ap, const(a * lanes)) for a in range(NR * NV)]
        for a, acc in enumerate(v.reduction_loop(k, init, term, "panel")):
            v.store_vector(acc, ap, const(a * lanes))
        return context.get_dummy_value()

    return sig, codegen


@numba.njit(**JIT_OPTIONS)
def _panel_block(xa, x_stride, K, pa, aa, nrows, fb_bytes, it, zero):
    """:func:`_fma_panel` for ``nrows`` rows: a full block at once, fewer in blocks of 4, 2
    and 1 (a single row's two chains of FMAs wait on each other: batch 1 ran at a quarter
    of the speed) (serial helper; numba types a global as a plain integer, so
    :data:`PANEL_ROWS`' literal is 0)."""
    if nrows == PANEL_ROWS:
        _fma_panel(xa, x_stride, K, pa, aa, 0, zero)
        return
    m = 0
    if nrows - m >= 4:
        _fma_panel(xa, x_stride, K, pa, aa, 4, zero)
        m += 4
    if nrows - m >= 2:
        _fma_panel(xa + m * x_stride * it, x_stride, K, pa, aa + m * fb_bytes, 2, zero)
        m += 2
    if nrows - m >= 1:
        _fma_panel(xa + m * x_stride * it, x_stride, K, pa, aa + m * fb_bytes, 1, zero)


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
    F = y.shape[1]
    zero = y.dtype.type(0)
    it = y.itemsize
    for fb in numba.prange(nfb):
        f0 = fb * FB
        nf = min(FB, F - f0)
        acc = np.empty((M, FB), dtype=y.dtype)
        for m in range(M):
            for f in range(FB):
                acc[m, f] = b[f0 + f] if has_bias and f < nf else zero
        for k0 in range(0, K, PANEL_TERMS):
            pa = P.ctypes.data + (fb * K + k0) * FB * it
            for m0 in range(0, M, PANEL_ROWS):
                _panel_block(x.ctypes.data + (m0 * K + k0) * it, K, min(PANEL_TERMS, K - k0), pa,
                             acc.ctypes.data + m0 * FB * it, min(PANEL_ROWS, M - m0), FB * it,
                             it, zero)
        for m in range(M):
            for f in range(nf):
                v = acc[m, f]
                y[m, f0 + f] = v if not (relu and v <= 0) else zero

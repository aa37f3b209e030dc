"""Products on weights packed once into panels: the register block of a planned network's
linear layers (:mod:`.linear`) and of its tap-GEMM layers at small batches
(:mod:`.conv.tapgemm`).

The weights of ``F`` outputs over ``K`` reduction terms are packed into ``ceil(F / FB)``
panels of ``FB`` outputs (:data:`PANEL_VECTORS` native vectors), each a contiguous (K, FB)
array with zeros past ``F``, so that a panel streams from memory in order.  A block of
:data:`PANEL_ROWS` rows of the input times one panel keeps its ``PANEL_ROWS *
PANEL_VECTORS`` accumulators in registers (an ``@intrinsic``, as the register blocks of the
convolution do): per reduction term it loads the panel's vectors once and broadcasts one
value of each row.  BLAS instead packs the weights into its own layout at every call, which
for a product of few rows costs more than the product.
"""

from __future__ import annotations

import numba
from numba.core import types
from numba.extending import intrinsic

from .._config import JIT_OPTIONS
from ._ir import VECTOR_BYTES, VectorIR, float_type_ok

__all__ = ["panel_rows", "PANEL_ROWS", "PANEL_VECTORS", "PANEL_TERMS", "_fma_panel",
           "_panel_block", "_panel_start", "_panel_store"]


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
    and 1 (row by row, a row's two chains of FMAs would wait on each other) (serial helper;
    numba types a global as a plain integer, so :data:`PANEL_ROWS`' literal is 0)."""
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


@numba.njit(**JIT_OPTIONS)
def _panel_start(acc, b, f0, has_bias, zero):
    """``acc`` (M, FB), a panel's accumulators for outputs ``f0 ...``, set to the bias (zeros
    past the last output, or everywhere when not ``has_bias``) (serial helper)."""
    M, FB = acc.shape
    nf = min(FB, b.shape[0] - f0) if has_bias else 0
    for m in range(M):
        for f in range(FB):
            acc[m, f] = b[f0 + f] if f < nf else zero


@numba.njit(**JIT_OPTIONS)
def _panel_store(acc, y, f0, relu, zero):
    """``y[:, f0 + f] = act(acc[:, f])`` for the panel's outputs that exist (``y`` (M, F)),
    ``act`` the ReLU (NaN kept) with ``relu`` (serial helper)."""
    M, FB = acc.shape
    nf = min(FB, y.shape[1] - f0)
    for m in range(M):
        for f in range(nf):
            v = acc[m, f]
            y[m, f0 + f] = v if not (relu and v <= 0) else zero

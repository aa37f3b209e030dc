"""CUDA implicit-GEMM convolution: the im2col columns are gathered straight into shared-memory
tiles and never written to global memory (twins of :mod:`nbconv.kernels.conv.im2col`).

Cross-correlation of ``x (N, C, H, W)`` with ``w (F, C // G, kh, kw)``, ``G`` groups, stride
``(sy, sx)``, dilation ``(dh, dw)``, implicit zero padding ``pt`` (top) / ``pl`` (left); the
bottom/right padding is implied by the output size ``(OH, OW)``.  Per group ``g`` each pass is a
matrix product ``out (M, P) = A (M, K) @ B (K, P)``:

=============  ==================  ==========================  ==============================
pass           rows ``M``          columns ``P``               reduction ``K``
=============  ==================  ==========================  ==============================
forward        ``F/G`` filters     ``N*OH*OW`` output pixels   ``kh*kw`` taps x ``C/G``
data grad.     ``C/G`` channels    ``N*H*W`` input pixels      ``kh*kw`` taps x ``F/G``
weight grad.   ``F/G`` filters     ``(C/G)*kh*kw`` (+1 bias)   ``N*OH*OW`` pixels, split
=============  ==================  ==========================  ==============================

The textbook SGEMM scheme: a block of ``NT = (BM/TM) * (BN/TN)`` threads owns a ``BM x BN``
tile of ``out``; for every ``BK``-deep slice of ``K`` it stages ``A`` and ``B`` tiles in shared
memory (gathering ``x``/``dy`` on the fly, zeros outside the image) and each thread accumulates
a ``TM x TN`` micro-tile in registers (``cuda.local.array`` of constant size, loops of constant
trip count, so NVVM keeps them in registers).  A thread's rows are ``ty + a*(BM/TM)`` and its
columns ``tx + b*(BN/TN)``: neighbouring threads read neighbouring shared-memory words (no bank
conflicts) and store neighbouring pixels (coalesced).  Global loads are coalesced along the
pixel axis; for the forward and data-gradient passes the weights are first copied tap-major,
``(kh, kw, K, M)`` per tap contiguous along the rows, so that the ``A`` loads coalesce too.

The forward and data-gradient reductions run tap by tap, ``BK`` channels at a time (the last
slice of a tap is zero-padded), so a thread decides once per tap whether its pixel reads inside
the image (or, for the data gradient, whether the stride divides) and no slice needs an integer
division.  The weight gradient's ``K`` is long and its output small, so ``K`` is split into
``S`` contiguous chunks, one per block along the grid's z axis, each writing its own slice of a
partials buffer ``(S, F, P)``; a second kernel sums the ``S`` partials of every element in
increasing order.  No atomics anywhere: results are bit-identical from run to run.  The bias
gradient is folded in as one more column of ``B`` that is all ones.

The tile sizes ``(BM, BN, BK, TM, TN)`` are compile-time constants of each kernel, read from
``nbconv._config.CUDA_CONV_TILE`` (``NBCONV_CUDA_CONV_TILE``, default ``64,64,8,4,4``: 256
threads) at launch; one kernel is compiled per (pass, dtype, tiles), so the simulator tests can
use tiny tiles.  Accumulation is in the arrays' dtype (float32 or float64).
"""

from __future__ import annotations

import numba
import numpy as np

from ... import _config
from .._target import cuda
from . import grid

__all__ = [
    "tiles",
    "wgrad_splits",
    "_conv2d_im2col_fwd",
    "_conv2d_im2col_bwd_data",
    "_conv2d_im2col_bwd_weight",
]

#: weight gradient split-K: aim for at least this many blocks in the grid (an H100 has 132
#: SMs; a few blocks each hide latency) ...
SPLIT_TARGET_BLOCKS = 512
#: ... without making a chunk shorter than this many terms of ``K`` ...
SPLIT_MIN_K = 256
#: ... or the partials buffer more than this many times the weight gradient.
SPLIT_MAX = 64


def tiles() -> tuple[int, int, int, int, int]:
    """``(BM, BN, BK, TM, TN)`` from ``nbconv._config.CUDA_CONV_TILE``, checked.

    Raises ValueError unless ``TM | BM``, ``TN | BN`` and the ``NT = (BM/TM) * (BN/TN)``
    threads split both tile loads evenly (``BK``, ``BM`` and ``BN`` divide ``NT``, ``NT``
    divides ``BM*BK`` and ``BK*BN``; powers of two always do).
    """
    t = tuple(int(v) for v in _config.CUDA_CONV_TILE)
    if len(t) != 5 or min(t) < 1:
        raise ValueError(f"NBCONV_CUDA_CONV_TILE must be 5 positive ints BM,BN,BK,TM,TN; got {t}")
    BM, BN, BK, TM, TN = t
    ok = BM % TM == 0 and BN % TN == 0
    NT = (BM // TM) * (BN // TN) if ok else 0
    if not (ok and NT <= 1024 and NT % BK == 0 and NT % BM == 0 and NT % BN == 0
            and (BM * BK) % NT == 0 and (BK * BN) % NT == 0):
        raise ValueError(
            f"NBCONV_CUDA_CONV_TILE {t}: need TM | BM, TN | BN and NT = (BM/TM)*(BN/TN) <= 1024 "
            "threads with BK, BM and BN dividing NT and NT dividing BM*BK and BK*BN"
        )
    return t


def _cdiv(a, b):
    return (a + b - 1) // b


def _unroll(BK):
    """Inner trip count ``KU`` of the slice loop, written ``for k2 in range(0, BK, KU): for k1
    in range(KU)``: NVVM (numba-cuda 0.30, sm_90 PTX) unrolls a 2-step inner loop, i.e. 2*TM*TN
    FMAs between loop branches, but neither a plain 8-step loop nor a 4-step one."""
    return 2 if BK % 2 == 0 else 1


# --------------------------------------------------------------------------- kernel factories
# Every factory closes over the tile constants, so the compiled kernel sees them as literals.
# The inner product over a staged slice (the "mma" loop) is written out in each kernel rather
# than in a device function, so that the accumulator stays an unrolled register array.


def _make_fwd(nbtype, BM, BN, BK, TM, TN):
    WM, WN = BM // TM, BN // TN
    NT = WM * WN
    RA, RB = BM * BK // NT, BK * BN // NT  # tile elements each thread loads
    BM1, BN1, TMN = BM + 1, BN + 1, TM * TN  # array shapes must be plain constants
    SA, SB = NT // BM, NT // BN  # k-row steps between a thread's loads of A, B
    KU = _unroll(BK)

    @cuda.jit
    def kernel(x, wt, b, y, sy, sx, pt, pl, dh, dw):  # pragma: no cover
        As = cuda.shared.array((BK, BM1), nbtype)  # +1: the transposing stores hit
        Bs = cuda.shared.array((BK, BN1), nbtype)  # distinct banks
        acc = cuda.local.array(TMN, nbtype)
        ra = cuda.local.array(TM, nbtype)
        rb = cuda.local.array(TN, nbtype)
        N, C, H, W = x.shape
        kh, kw, Cg, F = wt.shape
        OH = y.shape[2]
        OW = y.shape[3]
        Fg = F // cuda.gridDim.z
        fbase = cuda.blockIdx.z * Fg
        cbase = cuda.blockIdx.z * Cg
        m0 = cuda.blockIdx.y * BM
        col0 = cuda.blockIdx.x * BN
        tid = cuda.threadIdx.x
        tx = tid % WN
        ty = tid // WN
        OHW = OH * OW
        ncols = N * OHW
        # B loads: this thread always gathers output pixel ``col`` (rows bk + r*SB).
        bcol = tid % BN
        bk = tid // BN
        col = col0 + bcol
        n = col // OHW
        rem = col - n * OHW
        i = rem // OW
        j = rem - i * OW
        ih0 = i * sy - pt
        iw0 = j * sx - pl
        colok = col < ncols
        # A loads: this thread always loads filter ``am`` (k-rows ak + r*SA), coalesced in wt
        am = tid % BM
        ak = tid // BM
        zero = nbtype(0)
        for e in range(TMN):
            acc[e] = zero
        for p in range(kh):
            ih = ih0 + p * dh
            hok = colok and ih >= 0 and ih < H
            for q in range(kw):
                iw = iw0 + q * dw
                ok = hok and iw >= 0 and iw < W
                for c0 in range(0, Cg, BK):
                    for r in range(RA):
                        kk = ak + r * SA
                        v = zero
                        if c0 + kk < Cg and m0 + am < Fg:
                            v = wt[p, q, c0 + kk, fbase + m0 + am]
                        As[kk, am] = v
                    for r in range(RB):
                        kk = bk + r * SB
                        v = zero
                        if ok and c0 + kk < Cg:
                            v = x[n, cbase + c0 + kk, ih, iw]
                        Bs[kk, bcol] = v
                    cuda.syncthreads()
                    for k2 in range(0, BK, KU):
                        for k1 in range(KU):
                            kk = k2 + k1
                            for a in range(TM):
                                ra[a] = As[kk, ty + a * WM]
                            for bb in range(TN):
                                rb[bb] = Bs[kk, tx + bb * WN]
                            for a in range(TM):
                                for bb in range(TN):
                                    acc[a * TN + bb] += ra[a] * rb[bb]
                    cuda.syncthreads()
        for bb in range(TN):
            cc = col0 + tx + bb * WN
            if cc < ncols:
                nn = cc // OHW
                rr = cc - nn * OHW
                ii = rr // OW
                jj = rr - ii * OW
                for a in range(TM):
                    f = m0 + ty + a * WM
                    if f < Fg:
                        y[nn, fbase + f, ii, jj] = acc[a * TN + bb] + b[fbase + f]

    return kernel


def _make_bwd_data(nbtype, BM, BN, BK, TM, TN):
    WM, WN = BM // TM, BN // TN
    NT = WM * WN
    RA, RB = BM * BK // NT, BK * BN // NT
    BM1, BN1, TMN = BM + 1, BN + 1, TM * TN
    SA, SB = NT // BM, NT // BN
    KU = _unroll(BK)

    @cuda.jit
    def kernel(dy, wt, dx, sy, sx, pt, pl, dh, dw):  # pragma: no cover
        As = cuda.shared.array((BK, BM1), nbtype)
        Bs = cuda.shared.array((BK, BN1), nbtype)
        acc = cuda.local.array(TMN, nbtype)
        ra = cuda.local.array(TM, nbtype)
        rb = cuda.local.array(TN, nbtype)
        N, C, H, W = dx.shape
        kh, kw, F, Cg = wt.shape
        OH = dy.shape[2]
        OW = dy.shape[3]
        Fg = F // cuda.gridDim.z
        fbase = cuda.blockIdx.z * Fg
        cbase = cuda.blockIdx.z * Cg
        m0 = cuda.blockIdx.y * BM  # rows: input channels of the group
        col0 = cuda.blockIdx.x * BN  # columns: input pixels (n, h, w)
        tid = cuda.threadIdx.x
        tx = tid % WN
        ty = tid // WN
        HW = H * W
        ncols = N * HW
        bcol = tid % BN
        bk = tid // BN
        col = col0 + bcol
        n = col // HW
        rem = col - n * HW
        h = rem // W
        ww = rem - h * W
        colok = col < ncols
        am = tid % BM
        ak = tid // BM
        zero = nbtype(0)
        for e in range(TMN):
            acc[e] = zero
        for p in range(kh):
            # output row i reads input row h through tap p iff i*sy == h + pt - p*dh
            num = h + pt - p * dh
            i = num // sy
            hok = colok and num >= 0 and i * sy == num and i < OH
            for q in range(kw):
                numw = ww + pl - q * dw
                j = numw // sx
                ok = hok and numw >= 0 and j * sx == numw and j < OW
                for f0 in range(0, Fg, BK):
                    for r in range(RA):
                        kk = ak + r * SA
                        v = zero
                        if f0 + kk < Fg and m0 + am < Cg:
                            v = wt[p, q, fbase + f0 + kk, m0 + am]
                        As[kk, am] = v
                    for r in range(RB):
                        kk = bk + r * SB
                        v = zero
                        if ok and f0 + kk < Fg:
                            v = dy[n, fbase + f0 + kk, i, j]
                        Bs[kk, bcol] = v
                    cuda.syncthreads()
                    for k2 in range(0, BK, KU):
                        for k1 in range(KU):
                            kk = k2 + k1
                            for a in range(TM):
                                ra[a] = As[kk, ty + a * WM]
                            for bb in range(TN):
                                rb[bb] = Bs[kk, tx + bb * WN]
                            for a in range(TM):
                                for bb in range(TN):
                                    acc[a * TN + bb] += ra[a] * rb[bb]
                    cuda.syncthreads()
        for bb in range(TN):
            cc = col0 + tx + bb * WN
            if cc < ncols:
                nn = cc // HW
                rr = cc - nn * HW
                hh = rr // W
                wc = rr - hh * W
                for a in range(TM):
                    c = m0 + ty + a * WM
                    if c < Cg:
                        dx[nn, cbase + c, hh, wc] = acc[a * TN + bb]

    return kernel


def _make_bwd_weight(nbtype, BM, BN, BK, TM, TN):
    WM, WN = BM // TM, BN // TN
    NT = WM * WN
    RA, RB = BM * BK // NT, BK * BN // NT
    BM1, BN1, TMN = BM + 1, BN + 1, TM * TN
    SAB = NT // BK  # both tiles are loaded along k: ``BK`` consecutive threads, one row each
    KU = _unroll(BK)

    @cuda.jit
    def kernel(dy, x, part, sy, sx, pt, pl, dh, dw, kh, kw, klen):  # pragma: no cover
        As = cuda.shared.array((BK, BM1), nbtype)
        Bs = cuda.shared.array((BK, BN1), nbtype)
        acc = cuda.local.array(TMN, nbtype)
        ra = cuda.local.array(TM, nbtype)
        rb = cuda.local.array(TN, nbtype)
        bc = cuda.local.array(RB, numba.int64)  # per B column of this thread: channel,
        bp = cuda.local.array(RB, numba.int64)  # row offset p*dh - pt,
        bq = cuda.local.array(RB, numba.int64)  # column offset q*dw - pl,
        bt = cuda.local.array(RB, numba.int64)  # 1 weight, 2 bias (all ones), 0 outside
        S = part.shape[0]
        F = part.shape[1]
        P = part.shape[2]
        N, C, H, W = x.shape
        OH = dy.shape[2]
        OW = dy.shape[3]
        G = cuda.gridDim.z // S
        g = cuda.blockIdx.z // S
        s = cuda.blockIdx.z - g * S
        Fg = F // G
        Cg = C // G
        fbase = g * Fg
        khw = kh * kw
        CKK = Cg * khw
        OHW = OH * OW
        kbeg = s * klen
        kend = min(N * OHW, kbeg + klen)
        m0 = cuda.blockIdx.y * BM
        col0 = cuda.blockIdx.x * BN
        tid = cuda.threadIdx.x
        tx = tid % WN
        ty = tid // WN
        ak = tid % BK
        am = tid // BK
        zero = nbtype(0)
        one = nbtype(1)
        for r in range(RB):
            cl = col0 + am + r * SAB
            c = cl // khw
            t = cl - c * khw
            pp = t // kw
            bc[r] = g * Cg + c
            bp[r] = pp * dh - pt
            bq[r] = (t - pp * kw) * dw - pl
            bt[r] = 1 if cl < CKK else (2 if cl < P else 0)
        for e in range(TMN):
            acc[e] = zero
        # (n, i, j) of this thread's k = k0 + ak, advanced by BK per slice (no divisions)
        k = kbeg + ak
        n = k // OHW
        rem = k - n * OHW
        i = rem // OW
        j = rem - i * OW
        for k0 in range(kbeg, kend, BK):
            kok = k0 + ak < kend
            for r in range(RA):
                m = am + r * SAB
                v = zero
                if kok and m0 + m < Fg:
                    v = dy[n, fbase + m0 + m, i, j]
                As[ak, m] = v
            ih0 = i * sy
            iw0 = j * sx
            for r in range(RB):
                v = zero
                if kok:
                    kind = bt[r]
                    if kind == 1:
                        ih = ih0 + bp[r]
                        iw = iw0 + bq[r]
                        if ih >= 0 and ih < H and iw >= 0 and iw < W:
                            v = x[n, bc[r], ih, iw]
                    elif kind == 2:
                        v = one
                Bs[ak, am + r * SAB] = v
            cuda.syncthreads()
            for k2 in range(0, BK, KU):
                for k1 in range(KU):
                    kk = k2 + k1
                    for a in range(TM):
                        ra[a] = As[kk, ty + a * WM]
                    for bb in range(TN):
                        rb[bb] = Bs[kk, tx + bb * WN]
                    for a in range(TM):
                        for bb in range(TN):
                            acc[a * TN + bb] += ra[a] * rb[bb]
            cuda.syncthreads()
            j += BK
            while j >= OW:
                j -= OW
                i += 1
            while i >= OH:
                i -= OH
                n += 1
        for a in range(TM):
            f = m0 + ty + a * WM
            if f < Fg:
                for bb in range(TN):
                    cc = col0 + tx + bb * WN
                    if cc < P:
                        part[s, fbase + f, cc] = acc[a * TN + bb]

    return kernel


@cuda.jit
def _w_tap_major(w, wt, rows_last):  # pragma: no cover
    """``wt[p, q, c, f] = w[f, c, p, q]`` (``rows_last``) or ``wt[p, q, f, c] = w[f, c, p, q]``:
    the weights tap by tap, contiguous along the GEMM rows (filters for the forward pass,
    channels for the data gradient) so that the ``A`` tile loads coalesce."""
    t = cuda.grid(1)
    F, Cg, kh, kw = w.shape
    if t >= F * Cg * kh * kw:
        return
    q = t % kw
    r = t // kw
    p = r % kh
    r = r // kh
    c = r % Cg
    f = r // Cg
    if rows_last:
        wt[p, q, c, f] = w[f, c, p, q]
    else:
        wt[p, q, f, c] = w[f, c, p, q]


@cuda.jit
def _sum_partials(part, gw, gb):  # pragma: no cover
    """``gw[f, e] = sum_s part[s, f, e]`` in increasing ``s``; column ``e == CKK`` goes to
    ``gb[f]`` (the bias column, present when ``part.shape[2] > gw.shape[1]``)."""
    t = cuda.grid(1)
    S = part.shape[0]
    F = part.shape[1]
    P = part.shape[2]
    CKK = gw.shape[1]
    if t >= F * P:
        return
    f = t // P
    e = t - f * P
    acc = part[0, f, e]
    for s in range(1, S):
        acc += part[s, f, e]
    if e < CKK:
        gw[f, e] = acc
    else:
        gb[f] = acc


_KERNELS: dict = {}
_FACTORIES = {"fwd": _make_fwd, "bwd_data": _make_bwd_data, "bwd_weight": _make_bwd_weight}


def _kernel(kind, dtype):
    """The compiled ``kind`` kernel for ``dtype`` and the current tiles, and the tiles."""
    t = tiles()
    key = (kind, np.dtype(dtype), t)
    k = _KERNELS.get(key)
    if k is None:
        k = _KERNELS[key] = _FACTORIES[kind](numba.from_dtype(np.dtype(dtype)), *t)
    return k, t


def _threads(t):
    BM, BN, BK, TM, TN = t
    return (BM // TM) * (BN // TN)


# --------------------------------------------------------------------------- launchers


def _conv2d_im2col_fwd(x, w, wt, b, y, sy, sx, pt, pl, dh, dw, groups):
    """``y[:] = conv(x, w) + b`` (``b`` an (F,) array, zeros when the op has no bias).

    x : (N, C, H, W), w : (F, C // groups, kh, kw), y : (N, F, OH, OW), C-contiguous device
    arrays of one dtype, ``y`` non-empty; wt : (kh, kw, C // groups, F) scratch (the
    transposed weights).  Grid: (pixel tiles, filter tiles, groups).
    """
    k, t = _kernel("fwd", y.dtype)
    _w_tap_major[grid(w.size)](w, wt, 1)
    N, F, OH, OW = y.shape
    blocks = (_cdiv(N * OH * OW, t[1]), _cdiv(F // groups, t[0]), groups)
    k[blocks, _threads(t)](x, wt, b, y, sy, sx, pt, pl, dh, dw)


def _conv2d_im2col_bwd_data(dy, w, wt, dx, sy, sx, pt, pl, dh, dw, groups):
    """``dx[:] = conv_transpose(dy, w)`` as a gather (each thread owns the ``dx`` elements it
    writes).  dy : (N, F, OH, OW), w : (F, C // groups, kh, kw), dx : (N, C, H, W) non-empty;
    wt : (kh, kw, F, C // groups) scratch.  Grid: (input-pixel tiles, channel tiles, groups)."""
    k, t = _kernel("bwd_data", dx.dtype)
    _w_tap_major[grid(w.size)](w, wt, 0)
    N, C, H, W = dx.shape
    blocks = (_cdiv(N * H * W, t[1]), _cdiv(C // groups, t[0]), groups)
    k[blocks, _threads(t)](dy, wt, dx, sy, sx, pt, pl, dh, dw)


def wgrad_splits(K, F, P, groups):
    """Number ``S`` of split-K chunks of the weight gradient: ``K = N*OH*OW`` terms, ``F``
    filters, ``P = (C/groups)*kh*kw (+1 with bias)`` columns.  Allocate the partials buffer
    as ``(S, F, P)``."""
    BM, BN, BK, _, _ = tiles()
    blocks = _cdiv(P, BN) * _cdiv(F // groups, BM) * groups
    s = min(_cdiv(SPLIT_TARGET_BLOCKS, blocks), max(1, K // SPLIT_MIN_K), SPLIT_MAX,
            max(1, 65535 // groups))
    s = max(1, s)
    klen = _cdiv(_cdiv(K, s), BK) * BK
    return max(1, _cdiv(K, klen)) if K else 1


def _conv2d_im2col_bwd_weight(dy, x, part, gw, gb, sy, sx, pt, pl, dh, dw, groups):
    """``gw[:] = d<y, dy>/dw`` and, if ``part`` has the bias column, ``gb[f] = sum(dy[:, f])``.

    dy : (N, F, OH, OW), x : (N, C, H, W), gw : (F, C // groups, kh, kw), gb : (F,) (any
    (1,)-array without bias), part : (S, F, P) scratch with ``P = (C // groups)*kh*kw + 1``
    for the bias gradient (``+ 0`` without) and ``S = wgrad_splits(N*OH*OW, F, P, groups)``.
    Chunk ``s`` of ``K`` writes ``part[s]``; a second kernel sums the chunks in order.
    """
    k, t = _kernel("bwd_weight", gw.dtype)
    BM, BN, BK, _, _ = t
    S, F, P = part.shape
    N, _, OH, OW = dy.shape
    kh, kw = gw.shape[2], gw.shape[3]
    K = N * OH * OW
    klen = max(BK, _cdiv(_cdiv(K, S), BK) * BK)
    blocks = (_cdiv(P, BN), _cdiv(F // groups, BM), groups * S)
    k[blocks, _threads(t)](dy, x, part, sy, sx, pt, pl, dh, dw, kh, kw, klen)
    gw2 = gw.reshape(F, gw.size // F)
    _sum_partials[grid(F * P)](part, gw2, gb)

"""The register-block family of the direct algorithm: the accumulators of a block of outputs
stay in vector registers for the whole reduction, the vectors running along filters -- forward
pass at any stride and stride-1 weight gradient, groups 1.

Run by :mod:`nbconv.conv.direct` for the plan's family ``"regblock"``: groups-1 layers with at
least 16 filters whose weights stay in L2.

A block is ``NP`` neighbouring output pixels of one row times ``NV`` vectors of filters (of
the machine's width, :data:`._ir.VECTOR_BYTES`: 16 float32 lanes with AVX-512, else 8).
For every term ``r = (c, p, q)`` of the reduction the block loads ``NV`` weight vectors
once and, for each pixel, broadcasts one input value and does ``NV`` fused multiply-adds:
``NP*NV`` FMAs for ``NV + NP`` loads, and no accumulator traffic at all until the block is
done.  numba cannot keep an array in registers, so the inner loop is written in LLVM IR
(:func:`_fma_block`, an ``@intrinsic`` whose accumulators are SSA values); everything around
it is plain numba (the comparison with the wide rows and PyTorch on LeNet c2 is in
``benchmarks/results/conv_plan_measurements.csv``).

The input is explicitly zero-padded; ``off[r] = (c*Hp + p*dh)*Wp + q*dw`` are the offsets of
the reduction terms from a pixel's window origin, and the weights are laid out ``(K, Fpad)``
(``K = C*kh*kw`` terms, ``Fpad`` filters rounded up to whole vectors, zeros past ``F``).

*Row taps* (:func:`_fma_rowtaps`): in the forward pass of a layer whose kernel width and
stride are one of :data:`ROW_TAPS` (dilation 1 along rows), a full block takes a whole kernel
row ``(c, p)`` per step.  Its ``NP`` pixels then read the ``(NP-1)*stride + kw`` consecutive
input values of that row, each broadcast once and used by every (pixel, tap) pair that
reads it, instead of once per pair: 5x5 at stride 1 loads 12 values for 40 products rather
than 40, which the plain blocks' broadcasts (one load each) were bound by.  Such a block
starts from the bias vectors and, writing rows of channels with whole filter vectors, stores
its results (ReLU applied) straight into the output: the scalar copy out of a scratch took
a quarter of a ResNet stem's time.
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic

from ..._config import JIT_OPTIONS
from .._ir import LANES32, LANES64, VECTOR_BYTES, VectorIR, float_type_ok

__all__ = ["_conv2d_regblock_fwd", "_conv2d_regblock_fwd_serial", "_conv2d_regblock_bwd_weight",
           "NP", "ROW_TAPS", "row_taps", "block_pixels"]


def block_pixels(vector_bytes: int) -> int:
    """Output pixels of a forward block on vectors of ``vector_bytes``: 8 with AVX-512's 32
    registers (16 accumulators with two filter vectors), else 4 (8 accumulators of AVX2's
    16)."""
    return 8 if vector_bytes >= 64 else 4


#: output pixels per forward block on this machine (:func:`block_pixels`)
NP = block_pixels(VECTOR_BYTES)
#: output pixels per weight-gradient block (taps of one kernel row)
NP_GRAD = 4

#: ``(kernel width, stride)`` of the forward passes whose full blocks take row taps (module
#: docstring); a layer's code is its index + 1, 0 for the others.  Each entry compiles two
#: more block variants, so the list holds the common first-layer and 3x3 shapes only.
ROW_TAPS = ((3, 1), (5, 1), (7, 2), (3, 2))


def row_taps(kw: int, sx: int, dw: int) -> int:
    """The row-tap code of a forward pass (see :data:`ROW_TAPS`): 0 for none."""
    if dw != 1 or (kw, sx) not in ROW_TAPS:
        return 0
    return ROW_TAPS.index((kw, sx)) + 1


@intrinsic
def _fma_block(typingctx, x_addr, xstep, off_addr, K, w_addr, wstride, acc_addr, nvec, npix,
               zero):
    """``acc[pi, v*L:(v+1)*L] += sum_r x[off[r] + pi*xstep] * w[r*wstride + v*L : ...]`` for
    ``pi < npix``, ``v < nvec`` (literals; ``npix`` 0 stands for :data:`NP`), ``L`` native
    lanes of ``zero``'s float type; addresses as integers, ``acc`` (npix, nvec*L)
    contiguous."""
    if not (isinstance(nvec, types.IntegerLiteral) and isinstance(npix, types.IntegerLiteral)
            and float_type_ok(zero)):
        return None
    NV, NPIX = nvec.literal_value, npix.literal_value or NP
    sig = types.void(x_addr, xstep, off_addr, K, w_addr, wstride, acc_addr, nvec, npix, zero)

    def codegen(context, builder, signature, args):
        v = VectorIR(context, builder, zero)
        xs, k, ws = v.int64(args[1]), v.int64(args[3]), v.int64(args[5])
        xp, op, wp, ap = v.reals(args[0]), v.ints(args[2]), v.reals(args[4]), v.reals(args[6])
        const, lanes = v.const, v.lanes

        def term(r, accs):
            o = builder.load(builder.gep(op, [r]))
            wrow = builder.mul(r, ws)
            wv = [v.load_vector(wp, builder.add(wrow, const(j * lanes))) for j in range(NV)]
            new = []
            for pi in range(NPIX):
                xi = builder.add(o, builder.mul(xs, const(pi)))
                xv = v.splat(builder.load(builder.gep(xp, [xi])))
                new += [v.fma(xv, wv[j], accs[pi * NV + j]) for j in range(NV)]
            return new

        init = [v.load_vector(ap, const(a * lanes)) for a in range(NPIX * NV)]
        for a, acc in enumerate(v.reduction_loop(k, init, term, "block")):
            v.store_vector(acc, ap, const(a * lanes))
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _fma_rowtaps(typingctx, x_addr, roff_addr, R, w_addr, wstride, init_addr, out_addr,
                 out_step, relu, nvec, npix, kw, sx, zero):
    """``out[pi*out_step + v*L : ... + L] = act(init[v*L : (v+1)*L] + sum_{r, q}
    x[roff[r] + pi*sx + q] * w[(r*kw + q)*wstride + v*L : ...])`` for ``pi < npix``,
    ``v < nvec``, ``q < kw`` (``nvec``, ``npix``, ``kw``, ``sx`` literals; ``npix`` 0 stands
    for :data:`NP`), ``r < R`` kernel rows; ``act`` the ReLU (NaN kept) when ``relu``, else
    the identity; ``L`` native lanes of ``zero``'s float type; addresses as integers.  Every
    pixel starts from the same ``init`` (the bias), and the results go straight to ``out``
    (a row of channels per pixel, or a scratch).  Every input value of a kernel row is
    broadcast once (module docstring)."""
    lits = (nvec, npix, kw, sx)
    if not (all(isinstance(a, types.IntegerLiteral) for a in lits) and float_type_ok(zero)
            and isinstance(relu, types.Boolean)):
        return None
    NV, NPIX, KW, SX = (a.literal_value for a in lits)
    NPIX = NPIX or NP
    sig = types.void(x_addr, roff_addr, R, w_addr, wstride, init_addr, out_addr, out_step, relu,
                     nvec, npix, kw, sx, zero)

    def codegen(context, builder, signature, args):
        v = VectorIR(context, builder, zero)
        k, ws, ostep = v.int64(args[2]), v.int64(args[4]), v.int64(args[7])
        xp, op, wp = v.reals(args[0]), v.ints(args[1]), v.reals(args[3])
        ip, outp = v.reals(args[5]), v.reals(args[6])
        const, lanes = v.const, v.lanes

        def kernel_row(r, accs):
            accs = list(accs)
            o = builder.load(builder.gep(op, [r]))
            wrow = builder.mul(builder.mul(r, const(KW)), ws)
            weights = {}  # (tap, vector) -> loaded on first use
            for t in range((NPIX - 1) * SX + KW):
                xv = v.splat(builder.load(builder.gep(xp, [builder.add(o, const(t))])))
                for pi in range(NPIX):
                    q = t - pi * SX
                    if not 0 <= q < KW:
                        continue
                    for j in range(NV):
                        if (q, j) not in weights:
                            at = builder.add(wrow, builder.add(builder.mul(const(q), ws),
                                                               const(j * lanes)))
                            weights[q, j] = v.load_vector(wp, at)
                        accs[pi * NV + j] = v.fma(xv, weights[q, j], accs[pi * NV + j])
            return accs

        bias = [v.load_vector(ip, const(j * lanes)) for j in range(NV)]
        init = [bias[a % NV] for a in range(NPIX * NV)]
        zeros = ir.Constant(v.vec, [0.0] * lanes)
        i32 = ir.IntType(32)
        flags = ir.VectorType(ir.IntType(1), lanes)
        clip = builder.shuffle_vector(  # relu in every lane
            builder.insert_element(ir.Constant(flags, ir.Undefined), args[8], ir.Constant(i32, 0)),
            ir.Constant(flags, ir.Undefined), ir.Constant(ir.VectorType(i32, lanes), [0] * lanes))
        for a, acc in enumerate(v.reduction_loop(k, init, kernel_row, "rowtaps")):
            pi, j = divmod(a, NV)
            # the ReLU as "v <= 0 -> 0": an ordered compare, false for NaN (kept)
            off_ = builder.fcmp_ordered("<=", acc, zeros)
            acc = builder.select(builder.and_(off_, clip), zeros, acc)
            v.store_vector(acc, outp, builder.add(builder.mul(ostep, const(pi)),
                                                  const(j * lanes)))
        return context.get_dummy_value()

    return sig, codegen


@numba.njit(**JIT_OPTIONS)
def _block(xa, xstep, off, K, wa, wstride, acc, nvec, npix, zero):
    """:func:`_fma_block` with the literal block shape picked at run time: ``npix`` is
    :data:`NP`, :data:`NP_GRAD` or 1 (serial helper; numba types a global as a plain integer,
    so :data:`NP`'s literal is the intrinsic's 0)."""
    oa = off.ctypes.data
    aa = acc.ctypes.data
    if nvec == 2:
        if npix == NP:
            _fma_block(xa, xstep, oa, K, wa, wstride, aa, 2, 0, zero)
        elif npix == NP_GRAD:
            _fma_block(xa, xstep, oa, K, wa, wstride, aa, 2, 4, zero)
        else:
            _fma_block(xa, xstep, oa, K, wa, wstride, aa, 2, 1, zero)
    else:
        if npix == NP:
            _fma_block(xa, xstep, oa, K, wa, wstride, aa, 1, 0, zero)
        elif npix == NP_GRAD:
            _fma_block(xa, xstep, oa, K, wa, wstride, aa, 1, 4, zero)
        else:
            _fma_block(xa, xstep, oa, K, wa, wstride, aa, 1, 1, zero)


@numba.njit(**JIT_OPTIONS)
def _row_block(xa, roff, R, wa, wstride, ia, oa, ostep, relu, nvec, taps, zero):
    """:func:`_fma_rowtaps` for a full block (:data:`NP` pixels) with the literal shape of
    row-tap code ``taps`` (:data:`ROW_TAPS`) picked at run time (serial helper)."""
    ra = roff.ctypes.data
    if nvec == 2:
        if taps == 1:
            _fma_rowtaps(xa, ra, R, wa, wstride, ia, oa, ostep, relu, 2, 0, 3, 1, zero)
        elif taps == 2:
            _fma_rowtaps(xa, ra, R, wa, wstride, ia, oa, ostep, relu, 2, 0, 5, 1, zero)
        elif taps == 3:
            _fma_rowtaps(xa, ra, R, wa, wstride, ia, oa, ostep, relu, 2, 0, 7, 2, zero)
        else:
            _fma_rowtaps(xa, ra, R, wa, wstride, ia, oa, ostep, relu, 2, 0, 3, 2, zero)
    else:
        if taps == 1:
            _fma_rowtaps(xa, ra, R, wa, wstride, ia, oa, ostep, relu, 1, 0, 3, 1, zero)
        elif taps == 2:
            _fma_rowtaps(xa, ra, R, wa, wstride, ia, oa, ostep, relu, 1, 0, 5, 1, zero)
        elif taps == 3:
            _fma_rowtaps(xa, ra, R, wa, wstride, ia, oa, ostep, relu, 1, 0, 7, 2, zero)
        else:
            _fma_rowtaps(xa, ra, R, wa, wstride, ia, oa, ostep, relu, 1, 0, 3, 2, zero)


@numba.njit(parallel=True, **JIT_OPTIONS)
def _conv2d_regblock_fwd(xp, wt, b, off, y, sy, sx, nvec, relu, rows=False, roff=None,
                         taps=0):
    """``y = conv(xp, w) + b`` (groups 1) with register-blocked accumulators; with ``relu``
    ``y = relu(conv(xp, w) + b)`` (NaN kept, as :func:`nbconv.relu`).

    ``xp`` (N, C, Hp, Wp) is the zero-padded input; ``wt`` (K, Fpad) the weights, ``Fpad`` a
    multiple of ``nvec`` vectors; ``off`` (K,) the term offsets (see the module docstring);
    ``b`` (F,); ``y`` (N, F, OH, OW), or with ``rows`` rows of channels (OH, OW, N, F) (a
    planned network's layout between layers: each block's filters are then one contiguous
    run).  With a row-tap code ``taps`` (:func:`row_taps`, matching the layer's kernel width
    and ``sx``) the full blocks take row taps, ``roff`` (C*kh,) holding each kernel row's
    offset ``(c*Hp + p*dh)*Wp``.  One task per (image, output row, block of filters):
    :func:`_regblock_fwd_task`.
    """
    tasks, bias = _regblock_fwd_setup(xp, wt, b, y, nvec, rows)
    for task in numba.prange(tasks):
        # int64 as in the serial twin: a prange index is typed int64, then uint64 inside the
        # parallel loop's function, and each type would compile the helper once more
        _regblock_fwd_task(np.int64(task), xp, wt, b, bias, off, y, sy, sx, nvec, relu, rows,
                           roff, taps)


@numba.njit(**JIT_OPTIONS)
def _conv2d_regblock_fwd_serial(xp, wt, b, off, y, sy, sx, nvec, relu, rows=False, roff=None,
                                taps=0):
    """:func:`_conv2d_regblock_fwd` on the calling thread (layers too small to be worth
    waking the others: LeNet at batch 1)."""
    tasks, bias = _regblock_fwd_setup(xp, wt, b, y, nvec, rows)
    for task in range(tasks):
        _regblock_fwd_task(task, xp, wt, b, bias, off, y, sy, sx, nvec, relu, rows, roff, taps)


@numba.njit(**JIT_OPTIONS)
def _regblock_fwd_setup(xp, wt, b, y, nvec, rows):
    """``(tasks, bias)`` of the forward kernels: the task count and the bias as whole
    filter vectors (zeros past ``F``), which row-tap blocks start from."""
    F = y.shape[3] if rows else y.shape[1]
    OH = y.shape[0] if rows else y.shape[2]
    Fpad = wt.shape[1]
    lanes = LANES32 if y.itemsize == 4 else LANES64
    bias = np.zeros(Fpad, dtype=y.dtype)
    bias[:F] = b
    return xp.shape[0] * OH * (Fpad // (nvec * lanes)), bias


@numba.njit(**JIT_OPTIONS)
def _regblock_fwd_task(task, xp, wt, b, bias, off, y, sy, sx, nvec, relu, rows, roff, taps):
    """Task ``task`` of the forward kernels: output row ``i`` of image ``n`` for one block of
    filters, in blocks of ``NP`` pixels (serial helper)."""
    plane = xp.shape[1] * xp.shape[2] * xp.shape[3]
    Wp = xp.shape[3]
    K, Fpad = wt.shape
    R = 0 if roff is None else roff.shape[0]
    if rows:
        OH, OW, N, F = y.shape[0], y.shape[1], y.shape[2], y.shape[3]
    else:
        N, F, OH, OW = y.shape[0], y.shape[1], y.shape[2], y.shape[3]
    zero = y.dtype.type(0)
    lanes = LANES32 if y.itemsize == 4 else LANES64
    FBK = nvec * lanes
    nfb = Fpad // FBK
    it = y.itemsize
    n = task // (OH * nfb)
    rest = task - n * (OH * nfb)
    i = rest // nfb
    f0 = (rest - i * nfb) * FBK
    acc = np.empty((NP, FBK), dtype=y.dtype)
    wa = wt.ctypes.data + f0 * it
    ba = bias.ctypes.data + f0 * it
    row = xp.ctypes.data + (n * plane + i * sy * Wp) * it
    j0 = 0
    while j0 < OW:
        npix = NP if j0 + NP <= OW else 1
        if taps and npix == NP and rows and f0 + FBK <= F:
            # whole filter vectors into rows of channels: stored by the block itself
            out = y.ctypes.data + (((i * OW + j0) * N + n) * F + f0) * it
            _row_block(row + j0 * sx * it, roff, R, wa, Fpad, ba, out, N * F, relu, nvec,
                       taps, zero)
            j0 += npix
            continue
        if taps and npix == NP:
            # typed as the call above (int64 address, run-time bool): one compiled helper
            _row_block(row + j0 * sx * it, roff, R, wa, Fpad, ba, np.int64(acc.ctypes.data),
                       FBK, np.bool_(False), nvec, taps, zero)
        else:
            for pi in range(npix):
                for f in range(FBK):
                    acc[pi, f] = b[f0 + f] if f0 + f < F else zero
            _block(row + j0 * sx * it, sx, off, K, wa, Fpad, acc, nvec, npix, zero)
        if rows:
            for pi in range(npix):
                out = y[i, j0 + pi, n]
                for f in range(min(FBK, F - f0)):
                    v = acc[pi, f]
                    out[f0 + f] = v if not (relu and v <= 0) else zero
        else:
            # filter by filter: a block's pixels are one run of each plane, stored
            # together (pixel by pixel, planes a power of two apart evicted each other's
            # lines between the pixels)
            for f in range(min(FBK, F - f0)):
                for pi in range(npix):
                    v = acc[pi, f]
                    y[n, f0 + f, i, j0 + pi] = v if not (relu and v <= 0) else zero
        j0 += npix


@numba.njit(parallel=True, **JIT_OPTIONS)
def _conv2d_regblock_bwd_weight(xp, dyt, off, gw, kh, kw, dh, dw, nvec):
    """``gw[f, c, p, q] = sum over pixels r of dyt[r, f] * xp.flat[off[r] + tap(c, p, q)]``
    with register-blocked accumulators: the weight gradient as a product over all output
    pixels of the batch, without building columns.

    ``xp`` (N, C, Hp, Wp) is the zero-padded input; ``dyt`` (N*OH*OW, Fpad) the output
    gradient with the filters last (zeros past ``F``); ``off[r]`` the flat index in ``xp`` of
    pixel ``r``'s window origin (stride included); ``gw`` (F, C, kh, kw).  A block is
    :data:`NP_GRAD` taps ``q0..q0+NP_GRAD-1`` of one kernel row (consecutive in ``xp``,
    ``dw`` apart) times ``nvec`` vectors of filters; one task per (channel, kernel row,
    filter block), each owning its outputs (deterministic).
    """
    C, Hp, Wp = xp.shape[1], xp.shape[2], xp.shape[3]
    R, Fpad = dyt.shape
    F = gw.shape[0]
    zero = gw.dtype.type(0)
    lanes = LANES32 if gw.itemsize == 4 else LANES64
    FBK = nvec * lanes
    nfb = Fpad // FBK
    it = gw.itemsize
    for task in numba.prange(C * kh * nfb):
        c = task // (kh * nfb)
        rest = task - c * (kh * nfb)
        p = rest // nfb
        f0 = (rest - p * nfb) * FBK
        acc = np.empty((NP_GRAD, FBK), dtype=gw.dtype)
        wa = dyt.ctypes.data + f0 * it
        q0 = 0
        while q0 < kw:
            npix = NP_GRAD if q0 + NP_GRAD <= kw else 1
            for pi in range(npix):
                for f in range(FBK):
                    acc[pi, f] = zero
            xa = xp.ctypes.data + ((c * Hp + p * dh) * Wp + q0 * dw) * it
            _block(xa, dw, off, R, wa, Fpad, acc, nvec, npix, zero)
            for pi in range(npix):
                for f in range(min(FBK, F - f0)):
                    gw[f0 + f, c, p, q0 + pi] = acc[pi, f]
            q0 += npix

"""The pixel-vector family of the direct algorithm: register-blocked convolution for few
filters or short reductions, the vectors running along output pixels -- forward pass and
weight gradient, groups 1.

Run by :mod:`nbconv.conv.direct` for the plan's families ``"pixvec"`` (stride-1 passes: first
layers, layers with few filters, data gradients with few input channels) and ``"phases"``
(strided forward passes, on the input's stride phases: :func:`_stride_phases`; grouped ones
a group at a time).

:mod:`.register_blocks` puts filters in the vector lanes, which leaves lanes idle below 16
filters (LeNet c1's 6, or the data gradient of a layer with few input channels, LeNet c1's
one).  Here a lane is an output pixel instead.  As in the wide-row kernels
(:mod:`.wide`), flatten an explicitly padded plane with its row pitch: output ``t``
reads input ``t + off[r]`` for every term ``r = (c, p, q)`` of the reduction,
``off[r] = (c*rows + p*dh)*pitch + q*dw``.  So ``NPV`` vectors of consecutive outputs (a
*block*) need ``NPV`` plain vector loads per term, one broadcast weight per filter and
``NPV * NF`` fused multiply-adds, and their accumulators stay in registers for the whole
reduction (:func:`_fma_pixels`, LLVM IR in a numba ``@intrinsic`` as in
:mod:`.register_blocks`).  The columns past the output width in each wide row are computed
and dropped.

Blocks are whole vectors, so the last one of an image reads up to a block past the image:
into the next image (results dropped), and for the last image of the batch from a copy of
that image with a block of zeros after it, so that the input needs no slack (no copy when
it needs no padding either).  Small padded images are padded by the task that computes them,
into a scratch that stays in cache (a separate padding pass over the batch cost LeNet's data
gradients as much as their arithmetic).

Strided layers run on the same blocks after :func:`_stride_phases` splits the input into its
``sy*sx`` stride phases: in phase ``(a, b)`` of a channel, neighbouring output pixels read
neighbouring values, so a strided convolution becomes a stride-1 one over ``C*sy*sx`` phase
planes, each tap reading one of them.
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

from ..._config import JIT_OPTIONS
from .._ir import VECTOR_BYTES as NATIVE_BYTES
from .._ir import VectorIR, copy_bytes, float_type_ok, zero_bytes

__all__ = ["_conv2d_pixvec_fwd", "_conv2d_pixvec_fwd_serial", "_conv2d_pixvec_bwd_weight",
           "_stride_phases", "MAX_FILTERS", "TERM_PAD", "MAX_GRAD_FILTERS", "block_positions"]

#: most filters in one block (more are split into groups of at most this many)
MAX_FILTERS = 6

#: vectors of pixels per block for 1..MAX_FILTERS filters: about 12 accumulators of AVX2's
#: 16 registers, the rest for the input vectors and the broadcast weight.
_PIXEL_VECTORS = (6, 4, 3, 3, 2, 2)
#: the same for the native vectors of a machine with AVX-512 (:data:`.._ir.VECTOR_BYTES`):
#: about 24 accumulators of its 32 registers.
_PIXEL_VECTORS_WIDE = (8, 8, 6, 5, 4, 3)


#: weight gradient: most filters per block, and reduction terms per block for 1..4 filters
#: (8-9 accumulators, plus the filters' dy vectors and one input vector: 13 registers at
#: most; six filters by two terms spilled to the stack and ran 2x slower)
MAX_GRAD_FILTERS = 4
_TERMS = (8, 4, 3, 2)
#: bytes of the narrow pixel vectors: AVX2's 32 (8 float32 lanes) on every machine, for the
#: stride phases and the weight gradient.  AVX-512's 64 make blocks twice as long, which the
#: narrow planes of strided first layers (stride phases) waste; the weight gradient's rows
#: shorter than a vector would take plain loops more often (8- to 15-column rows).  Stride-1
#: forward passes (``wide``) take the machine's native vectors, :data:`.._ir.VECTOR_BYTES`.
VECTOR_BYTES = 32
LANES32 = VECTOR_BYTES // 4
LANES64 = VECTOR_BYTES // 8
#: entries of zeros the weight gradient's term offsets need after the real ones
TERM_PAD = max(_TERMS) - 1


def _block_shape(nf: int, wide: bool, native: int = NATIVE_BYTES):
    """``(vector bytes, vectors per block)`` of the forward blocks for ``nf`` filters: the
    ``native`` vectors (the machine's) with ``wide``, else :data:`VECTOR_BYTES`."""
    if wide and native > VECTOR_BYTES:
        return native, _PIXEL_VECTORS_WIDE[nf - 1]
    return VECTOR_BYTES, _PIXEL_VECTORS[nf - 1]


#: bytes of one forward block for 1..MAX_FILTERS filters, narrow and wide: from
#: :func:`_block_shape`, the one rule that the intrinsic's code and the kernels' block
#: positions both follow
_BLOCK_BYTES = tuple(int(np.prod(_block_shape(nf, False))) for nf in range(1, MAX_FILTERS + 1))
_BLOCK_BYTES_WIDE = tuple(int(np.prod(_block_shape(nf, True)))
                          for nf in range(1, MAX_FILTERS + 1))


@numba.njit(**JIT_OPTIONS)
def block_positions(nf, itemsize, wide=False):
    """Output positions of one forward block for ``nf`` filters (whole vectors: native ones
    with ``wide``, else of :data:`VECTOR_BYTES`)."""
    return (_BLOCK_BYTES_WIDE if wide else _BLOCK_BYTES)[nf - 1] // itemsize


@intrinsic
def _fma_pixels(typingctx, x_addr, off_addr, K, w_addr, acc_addr, acc_stride, nf, wide, zero):
    """``acc[f, v*L:(v+1)*L] += sum_r w[r*nf + f] * x[off[r] + v*L : ... + L]`` for
    ``f < nf`` and ``v < NPV`` (``nf`` and ``wide`` literals; ``L`` lanes and ``NPV`` from
    :func:`_block_shape`, of ``zero``'s float type); addresses as integers, ``acc`` rows
    ``acc_stride`` elements apart."""
    if not (isinstance(nf, types.IntegerLiteral) and isinstance(wide, types.BooleanLiteral)
            and float_type_ok(zero)):
        return None
    NF = nf.literal_value
    nbytes, NPV = _block_shape(NF, wide.literal_value)
    sig = types.void(x_addr, off_addr, K, w_addr, acc_addr, acc_stride, nf, wide, zero)

    def codegen(context, builder, signature, args):
        v = VectorIR(context, builder, zero, nbytes)
        k, astr = v.int64(args[2]), v.int64(args[5])
        xp, op, wp, ap = v.reals(args[0]), v.ints(args[1]), v.reals(args[3]), v.reals(args[4])
        const, lanes = v.const, v.lanes
        cells = [builder.add(builder.mul(astr, const(f)), const(j * lanes))
                 for f in range(NF) for j in range(NPV)]

        def term(r, accs):
            o = builder.load(builder.gep(op, [r]))
            xv = [v.load_vector(xp, builder.add(o, const(j * lanes))) for j in range(NPV)]
            wrow = builder.mul(r, const(NF))
            new = []
            for f in range(NF):
                wv = v.splat(builder.load(builder.gep(wp, [builder.add(wrow, const(f))])))
                new += [v.fma(wv, xv[j], accs[f * NPV + j]) for j in range(NPV)]
            return new

        init = [v.load_vector(ap, c) for c in cells]
        for acc, c in zip(v.reduction_loop(k, init, term, "pixels"), cells):
            v.store_vector(acc, ap, c)
        return context.get_dummy_value()

    return sig, codegen


@numba.njit(**JIT_OPTIONS)
def _pixels(xa, off, K, wa, aa, acc_stride, nf, wide, zero):
    """:func:`_fma_pixels` with the literal filter count and width picked at run time
    (serial helper)."""
    oa = off.ctypes.data
    if wide:
        if nf == 1:
            _fma_pixels(xa, oa, K, wa, aa, acc_stride, 1, True, zero)
        elif nf == 2:
            _fma_pixels(xa, oa, K, wa, aa, acc_stride, 2, True, zero)
        elif nf == 3:
            _fma_pixels(xa, oa, K, wa, aa, acc_stride, 3, True, zero)
        elif nf == 4:
            _fma_pixels(xa, oa, K, wa, aa, acc_stride, 4, True, zero)
        elif nf == 5:
            _fma_pixels(xa, oa, K, wa, aa, acc_stride, 5, True, zero)
        else:
            _fma_pixels(xa, oa, K, wa, aa, acc_stride, 6, True, zero)
    else:
        if nf == 1:
            _fma_pixels(xa, oa, K, wa, aa, acc_stride, 1, False, zero)
        elif nf == 2:
            _fma_pixels(xa, oa, K, wa, aa, acc_stride, 2, False, zero)
        elif nf == 3:
            _fma_pixels(xa, oa, K, wa, aa, acc_stride, 3, False, zero)
        elif nf == 4:
            _fma_pixels(xa, oa, K, wa, aa, acc_stride, 4, False, zero)
        elif nf == 5:
            _fma_pixels(xa, oa, K, wa, aa, acc_stride, 5, False, zero)
        else:
            _fma_pixels(xa, oa, K, wa, aa, acc_stride, 6, False, zero)


@numba.njit(**JIT_OPTIONS)
def _stage_image(x, n, pt, pl, rows, pitch, xs):
    """``xs`` = image ``n`` of ``x`` (N, C, H, W) placed at ``(pt, pl)`` (cropped where
    negative) in zero planes of ``rows x pitch``, then zeros to the end (serial helper).
    Flat indices, no views: views of a shared array inside a parallel loop update its
    reference count from every thread."""
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    it = x.itemsize
    c0, c1 = max(pl, 0), min(pl + W, pitch)
    zero_bytes(xs.ctypes.data, xs.size * it)
    if c1 <= c0:
        return
    xa = x.ctypes.data + (n * C * H * W + c0 - pl) * it
    sa = xs.ctypes.data + c0 * it
    for c in range(C):
        for i in range(max(pt, 0), min(pt + H, rows)):
            copy_bytes(sa + ((c * rows + i) * pitch) * it,
                        xa + ((c * H + i - pt) * W) * it, (c1 - c0) * it)


@numba.njit(parallel=True, **JIT_OPTIONS)
def _conv2d_pixvec_fwd(x, pt, pl, rows, pitch, wt, b, off, y, blocks_per_task, relu,
                       wide=False):
    """``y = conv(x, w) + b``, stride 1, groups 1, with pixel-vector register blocks; with
    ``relu`` ``y = relu(conv(x, w) + b)`` (NaN kept, as :func:`nbconv.relu`).

    The input is read as planes of ``rows x pitch`` with ``x`` placed at ``(pt, pl)``, output
    pixel ``(i, j)`` at ``i*pitch + j`` of its image.  Either ``x`` (N, C, rows, pitch) is
    that padded input already (``pt == pl == 0``; read in place), or each task copies its
    image into such planes first (then tasks must hold whole images: ``blocks_per_task`` at
    least the blocks of an image).  ``wt`` (G, K, NF) holds the weights of ``G`` groups of
    ``NF`` filters (zeros past ``F``), ``off`` (K,) the term offsets (module docstring),
    ``b`` (F,), ``y`` (N, F, OH, OW) with contiguous rows.  Blocks of the machine's native
    vectors with ``wide`` (see :func:`block_positions`).  One task per (image, run of
    ``blocks_per_task`` blocks); each fills a scratch with the bias, accumulates into it
    block by block and copies the valid columns out.
    """
    tasks, per, nct, reach = _pixvec_fwd_setup(x, pt, pl, rows, pitch, wt, off, y,
                                               blocks_per_task, wide)
    for task in numba.prange(tasks):
        _pixvec_fwd_task(task, x, pt, pl, rows, pitch, wt, b, off, y, per, nct, reach, relu,
                         wide)


@numba.njit(**JIT_OPTIONS)
def _conv2d_pixvec_fwd_serial(x, pt, pl, rows, pitch, wt, b, off, y, blocks_per_task, relu,
                              wide=False):
    """:func:`_conv2d_pixvec_fwd` on the calling thread (layers too small to be worth waking
    the others: LeNet's first layer at batch 1)."""
    tasks, per, nct, reach = _pixvec_fwd_setup(x, pt, pl, rows, pitch, wt, off, y,
                                               blocks_per_task, wide)
    for task in range(tasks):
        _pixvec_fwd_task(task, x, pt, pl, rows, pitch, wt, b, off, y, per, nct, reach, relu,
                         wide)


@numba.njit(**JIT_OPTIONS)
def _pixvec_fwd_setup(x, pt, pl, rows, pitch, wt, off, y, blocks_per_task, wide):
    """``(tasks, per, nct, reach)`` of the forward kernels: the task count, blocks per task,
    tasks per image and the farthest term offset."""
    N, F, OH, OW = y.shape
    staged = not (x.shape[2] == rows and x.shape[3] == pitch and pt == 0 and pl == 0)
    B = block_positions(wt.shape[2], y.itemsize, wide)
    nblk = -(-((OH - 1) * pitch + OW) // B)
    per = nblk if staged else min(blocks_per_task, nblk)
    reach = 0
    for r in range(off.shape[0]):
        reach = max(reach, off[r])
    return N * (-(-nblk // per)), per, -(-nblk // per), reach


@numba.njit(**JIT_OPTIONS)
def _pixvec_fwd_task(task, x, pt, pl, rows, pitch, wt, b, off, y, per, nct, reach, relu,
                     wide):
    """Task ``task`` of the forward kernels: ``per`` blocks of one image (serial helper)."""
    N, F, OH, OW = y.shape
    C = x.shape[1]
    plane = C * rows * pitch
    staged = not (x.shape[2] == rows and x.shape[3] == pitch and pt == 0 and pl == 0)
    G, K, NF = wt.shape
    zero = y.dtype.type(0)
    it = y.itemsize
    B = block_positions(NF, it, wide)
    nblk = -(-((OH - 1) * pitch + OW) // B)
    n = task // nct
    t0 = (task - n * nct) * per * B
    t1 = min(t0 + per * B, nblk * B)
    width = t1 - t0
    acc = np.empty((NF, width), dtype=y.dtype)
    aa = acc.ctypes.data
    # in place, blocks from t_safe on would read past the batch: they read a padded copy
    t_safe = t1 if n < N - 1 else min(t1, max(t0, plane - reach - B + 1))
    if staged:
        t_safe = t0
    xa = x.ctypes.data + n * plane * it
    xs = np.empty(plane + B if t_safe < t1 else 0, dtype=y.dtype)
    if t_safe < t1:
        _stage_image(x, n, pt, pl, rows, pitch, xs)
    for g in range(G):
        for f in range(NF):
            acc[f, :] = b[g * NF + f] if g * NF + f < F else zero
        wa = wt.ctypes.data + g * K * NF * it
        for t in range(t0, t1, B):
            # "+ 0": the same integer type as xa (uintp and int64 unify to float64)
            src = xa if t < t_safe else xs.ctypes.data + 0
            _pixels(src + t * it, off, K, wa, aa + (t - t0) * it, width, NF, wide, zero)
        for f in range(min(NF, F - g * NF)):
            if relu:  # on the whole scratch row: one vectorised loop
                for t in range(width):
                    v = acc[f, t]
                    acc[f, t] = v if not (v <= 0) else zero
            # rows that overlap [t0, t1) (a row may be longer than the pitch: see
            # _zero_padded_shared); memcpy: numba's slice copies of these short rows
            # cost more than the block's arithmetic
            ya = y.ctypes.data + n * y.strides[0] + (g * NF + f) * y.strides[1]
            for i in range(max(0, (t0 - OW) // pitch + 1), min(OH, -(-t1 // pitch))):
                j0 = max(t0 - i * pitch, 0)
                j1 = min(OW, t1 - i * pitch)
                if j1 > j0:
                    copy_bytes(ya + i * y.strides[2] + j0 * it,
                               aa + (f * width + i * pitch - t0 + j0) * it, (j1 - j0) * it)


@numba.njit(parallel=True, **JIT_OPTIONS)
def _stride_phases(x, pt, pl, sy, sx, out):
    """``out[n, (c*sy + a)*sx + b, u, v] = x[n, c, u*sy + a - pt, v*sx + b - pl]``, zero
    where that lies outside ``x``: the zero-padded input (``pt`` rows on top, ``pl`` columns
    on the left) split into its stride phases, cropped or padded to ``out``'s planes.

    ``x`` (N, C, H, W) and ``out`` (N, C*sy*sx, Hq, Wq) C-contiguous.  One task per (image,
    channel, phase row), on flat indices (no views: see :func:`_stage_image`).  At stride 2
    both column phases come from one pass over the source row, which LLVM vectorises as an
    interleaved load.
    """
    N, C, H, W = x.shape
    Hq, Wq = out.shape[2], out.shape[3]
    xf = x.reshape(x.size)
    of = out.reshape(out.size)
    zero = out.dtype.type(0)
    plane = Hq * Wq
    # columns v of phase b whose source v*sx + b - pl lies in [0, W): [first[b], last[b])
    first = np.empty(sx, dtype=np.int64)
    last = np.empty(sx, dtype=np.int64)
    for b in range(sx):
        first[b] = min(Wq, max(0, -(-(pl - b) // sx)))
        last[b] = max(first[b], min(Wq, -(-(W + pl - b) // sx)))
    both = sx == 2
    lo = max(first[0], first[1]) if both else 0  # columns both stride-2 phases copy
    hi = max(lo, min(last[0], last[1])) if both else 0
    for task in numba.prange(N * C * sy):
        a = task % sy
        nc = task // sy  # n*C + c
        for u in range(Hq):
            h = u * sy + a - pt
            src = (nc * H + h) * W - pl  # flat index of x[n, c, h, -pl]
            d0 = (nc * sy + a) * sx * plane + u * Wq  # row u of phase (a, 0)
            if h < 0 or h >= H:
                for b in range(sx):
                    for v in range(Wq):
                        of[d0 + b * plane + v] = zero
                continue
            for b in range(sx):
                d = d0 + b * plane
                for v in range(first[b]):
                    of[d + v] = zero
                for v in range(last[b], Wq):
                    of[d + v] = zero
                # the columns the stride-2 loop below leaves out (at most one at each end)
                v1 = min(lo, last[b]) if both else last[b]
                for v in range(first[b], v1):
                    of[d + v] = xf[src + v * sx + b]
                for v in range(max(hi, first[b]) if both else last[b], last[b]):
                    of[d + v] = xf[src + v * sx + b]
            if both:
                for v in range(lo, hi):
                    of[d0 + v] = xf[src + 2 * v]
                    of[d0 + plane + v] = xf[src + 2 * v + 1]


@intrinsic
def _dot_rows(typingctx, dy_addr, dy_fstride, x_addr, pitch, off_addr, rows, nvec, ow,
              acc_addr, acc_fstride, nf, zero):
    """Lane-wise partial dot products for the weight gradient:
    ``acc[f*acc_fstride + k*L + l] += sum_{i < rows, j < ow, j = l mod L} dy[f*dy_fstride +
    i*ow + j] * x[off[k] + i*pitch + j]`` for ``f < nf`` (a literal), ``k < NT`` (from
    :data:`_TERMS`), ``L`` lanes of ``zero``'s float type; addresses as integers.  Each row
    is ``nvec = ow // L >= 1`` whole vectors plus, when ``ow`` is not a multiple of ``L``, the
    row's last ``L`` columns with the lanes already counted masked to zero in both operands
    (never ``0 * x``: an inf in ``x`` must not reach terms that do not see it).  Nothing
    outside the rows' ``ow`` columns is read."""
    if not (isinstance(nf, types.IntegerLiteral) and float_type_ok(zero)):
        return None
    NF = nf.literal_value
    NT = _TERMS[NF - 1]
    sig = types.void(dy_addr, dy_fstride, x_addr, pitch, off_addr, rows, nvec, ow, acc_addr,
                     acc_fstride, nf, zero)

    def codegen(context, builder, signature, args):
        v = VectorIR(context, builder, zero, VECTOR_BYTES)
        dfs, pit, nrows, nv, ow_, afs = (v.int64(args[i]) for i in (1, 3, 5, 6, 7, 9))
        dp, xp, op, ap = v.reals(args[0]), v.reals(args[2]), v.ints(args[4]), v.reals(args[8])
        const, lanes = v.const, v.lanes

        # accumulators in a stack slot with constant indices: LLVM promotes them to registers
        slot = cgutils.alloca_once(builder, v.vec, size=const(NF * NT))
        cells = [builder.add(builder.mul(afs, const(f)), const(k * lanes))
                 for f in range(NF) for k in range(NT)]
        for a, c in enumerate(cells):
            builder.store(v.load_vector(ap, c), builder.gep(slot, [const(a)]))
        offs = [builder.load(builder.gep(op, [const(k)])) for k in range(NT)]
        # the tail: lanes >= L - (ow - nvec*L) of the vector that ends the row
        tail = builder.sub(ow_, builder.mul(nv, const(lanes)))
        has_tail = builder.icmp_signed(">", tail, const(0))
        keep = v.lanes_from(builder.sub(const(lanes), tail))
        zeros = ir.Constant(v.vec, [0.0] * lanes)

        def columns(dyrow, xrow, j, mask):
            dv = [v.load_vector(dp, builder.add(builder.add(dyrow, j),
                                                builder.mul(dfs, const(f))))
                  for f in range(NF)]
            if mask is not None:
                dv = [builder.select(mask, d, zeros) for d in dv]
            xj = builder.add(xrow, j)
            for k in range(NT):
                xv = v.load_vector(xp, builder.add(xj, offs[k]))
                if mask is not None:
                    xv = builder.select(mask, xv, zeros)
                for f in range(NF):
                    cell = builder.gep(slot, [const(f * NT + k)])
                    builder.store(v.fma(dv[f], xv, builder.load(cell)), cell)

        with cgutils.for_range(builder, nrows) as row:
            dyrow = builder.mul(row.index, ow_)
            xrow = builder.mul(row.index, pit)
            with cgutils.for_range(builder, nv) as col:
                columns(dyrow, xrow, builder.mul(col.index, const(lanes)), None)
            with builder.if_then(has_tail, likely=False):
                columns(dyrow, xrow, builder.sub(ow_, const(lanes)), keep)
        for a, c in enumerate(cells):
            v.store_vector(builder.load(builder.gep(slot, [const(a)])), ap, c)
        return context.get_dummy_value()

    return sig, codegen


@numba.njit(**JIT_OPTIONS)
def _dots(da, dfs, xa, pitch, oa, rows, nvec, ow, aa, afs, nf, zero):
    """:func:`_dot_rows` with the literal filter count picked at run time (serial helper)."""
    if nf == 1:
        _dot_rows(da, dfs, xa, pitch, oa, rows, nvec, ow, aa, afs, 1, zero)
    elif nf == 2:
        _dot_rows(da, dfs, xa, pitch, oa, rows, nvec, ow, aa, afs, 2, zero)
    elif nf == 3:
        _dot_rows(da, dfs, xa, pitch, oa, rows, nvec, ow, aa, afs, 3, zero)
    else:
        _dot_rows(da, dfs, xa, pitch, oa, rows, nvec, ow, aa, afs, 4, zero)


@numba.njit(parallel=True, **JIT_OPTIONS)
def _conv2d_pixvec_bwd_weight(xp, dy, off, gw, tasks):
    """``gw[f, r] = sum_{n, i, j} dy[n, f, i, j] * xp[n].flat[i*pitch + j + off[r]]``: the
    weight gradient of a stride-1, groups-1 convolution with few filters, as lane-wise dot
    products along output rows (vectors of pixels; no garbage columns, so an inf or NaN
    reaches exactly the terms whose windows hold it).

    ``xp`` (N, C, rows, pitch) is the zero-padded input, ``dy`` (N, F, OH, OW) C-contiguous,
    ``off`` the term offsets (see the module docstring) followed by :data:`TERM_PAD` zeros,
    ``gw`` (F, K) is overwritten.  ``tasks`` runs of
    images each sum into their own partial buffer; the partials are reduced in a fixed order
    (deterministic).  Rows shorter than a vector are summed by plain loops.
    """
    N, F, OH, OW = dy.shape
    pitch = xp.shape[3]
    plane = xp.shape[1] * xp.shape[2] * pitch
    F, K = gw.shape
    Kp = off.size
    it = gw.itemsize
    zero = gw.dtype.type(0)
    lanes = LANES32 if it == 4 else LANES64
    nvec = OW // lanes
    G = -(-F // MAX_GRAD_FILTERS)
    NF = -(-F // G)
    part = np.zeros((tasks, F, Kp, lanes), dtype=gw.dtype)
    xflat = xp.reshape(N * plane)
    # raw addresses: views of the shared arrays inside the loop would cost contended
    # reference-count updates
    xa0, da0, oa0, pa0 = xp.ctypes.data, dy.ctypes.data, off.ctypes.data, part.ctypes.data
    for task in numba.prange(tasks):
        for n in range(task * N // tasks, (task + 1) * N // tasks):
            for f0 in range(0, F, NF):
                nf = min(NF, F - f0)
                NT = _TERMS[nf - 1]
                for r0 in range(0, K, NT):
                    if nvec > 0:
                        _dots(da0 + (n * F + f0) * OH * OW * it, OH * OW,
                              xa0 + n * plane * it, pitch, oa0 + r0 * 8, OH, nvec, OW,
                              pa0 + ((task * F + f0) * Kp + r0) * lanes * it, Kp * lanes,
                              nf, zero)
            for j in range(0 if nvec == 0 else OW, OW):  # rows shorter than a vector
                for f in range(F):
                    for r in range(K):
                        s = zero
                        for i in range(OH):
                            s += dy[n, f, i, j] * xflat[n * plane + i * pitch + j + off[r]]
                        part[task, f, r, 0] += s
    for f in range(F):
        for r in range(K):
            s = zero
            for task in range(tasks):
                for lane in range(lanes):
                    s += part[task, f, r, lane]
            gw[f, r] = s

"""CUDA twins of the row loops of :mod:`nbconv.kernels.conv.rows` (same names, same driver
semantics).

Cross-correlation of ``x (N, C, H, W)`` with ``w (F, C // groups, kh, kw)``, stride
``(sy, sx)``, dilation ``(dh, dw)``, implicit zero padding ``pt`` (top) / ``pl`` (left); the
bottom/right padding is implied by the output size.

* forward: one thread per output element ``(n, f, i, j)``;
* data gradient: a gather, one thread per input element ``(n, c, h, w)`` summing over the
  output pixels and filters that read it (no atomics);
* weight/bias gradient: one block per weight element (and per bias element), its threads
  striding over ``(n, i, j)`` and a fixed-order shared-memory tree reduction (deterministic).

Consecutive threads take consecutive output columns, so global loads and stores coalesce.

Every kernel reads only the taps that land inside ``x`` (zero padding adds no term, SPEC
section 2), so inf and NaN reach exactly the outputs the definition says.  With
``only_nonfinite`` set a kernel recomputes only the elements of its output that already hold
inf or NaN: the engine's recomputation after the implicit-GEMM kernels, which multiply the
zeros of the padding (0 * inf is NaN).
"""

from __future__ import annotations

import math

import numba

from .._target import cuda
from . import MAX_BLOCK
from ._reduce import block_sum_for

__all__ = [
    "_conv2d_direct_fwd",
    "_conv2d_direct_bwd_data",
    "_conv2d_direct_bwd_weight",
    "_pad_gather",
    "_pad_fold",
]

_block_sum = block_sum_for(globals())  # this module's own copy: see _reduce


@cuda.jit
def _conv2d_direct_fwd(x, w, b, y, sy, sx, pt, pl, dh, dw, groups,
                       only_nonfinite):  # pragma: no cover
    """``y[:] = conv(x, w) + b``; ``b`` is an (F,) array (zeros when the op has no bias);
    with ``only_nonfinite`` only where ``y`` holds inf or NaN."""
    t = cuda.grid(1)
    N, C, H, W = x.shape
    F, Cg, kh, kw = w.shape
    OH = y.shape[2]
    OW = y.shape[3]
    if t >= N * F * OH * OW:
        return
    j = t % OW
    r = t // OW
    i = r % OH
    r = r // OH
    f = r % F
    n = r // F
    if only_nonfinite and math.isfinite(y[n, f, i, j]):
        return
    c0 = (f // (F // groups)) * Cg
    acc = b[f]
    for cl in range(Cg):
        for p in range(kh):
            ih = i * sy - pt + p * dh
            if ih >= 0 and ih < H:
                for q in range(kw):
                    iw = j * sx - pl + q * dw
                    if iw >= 0 and iw < W:
                        acc += w[f, cl, p, q] * x[n, c0 + cl, ih, iw]
    y[n, f, i, j] = acc


@cuda.jit
def _conv2d_direct_bwd_data(dy, w, dx, sy, sx, pt, pl, dh, dw, groups, zero,
                            only_nonfinite):  # pragma: no cover
    """``dx[:] = conv_transpose(dy, w)`` as a gather; ``zero`` is 0 in ``dx``'s dtype; with
    ``only_nonfinite`` only where ``dx`` holds inf or NaN."""
    t = cuda.grid(1)
    N, C, H, W = dx.shape
    F, Cg, kh, kw = w.shape
    OH = dy.shape[2]
    OW = dy.shape[3]
    if t >= N * C * H * W:
        return
    ww = t % W
    r = t // W
    h = r % H
    r = r // H
    c = r % C
    n = r // C
    if only_nonfinite and math.isfinite(dx[n, c, h, ww]):
        return
    Fg = F // groups
    g = c // Cg
    cl = c - g * Cg
    acc = zero
    for f in range(g * Fg, (g + 1) * Fg):
        for p in range(kh):
            num = h + pt - p * dh
            if num < 0 or num % sy != 0:
                continue
            i = num // sy
            if i >= OH:
                continue
            for q in range(kw):
                numw = ww + pl - q * dw
                if numw < 0 or numw % sx != 0:
                    continue
                j = numw // sx
                if j < OW:
                    acc += w[f, cl, p, q] * dy[n, f, i, j]
    dx[n, c, h, ww] = acc


@cuda.jit
def _conv2d_direct_bwd_weight(dy, x, gw, gb, with_bias, sy, sx, pt, pl, dh, dw, groups,
                              only_nonfinite):  # pragma: no cover
    """``gw[:] = d<y, dy>/dw``; if ``with_bias`` also ``gb[f] = sum(dy[:, f])``; with
    ``only_nonfinite`` only the weight elements that hold inf or NaN.

    Launch with ``F*Cg*kh*kw (+ F if with_bias)`` blocks: block ``k`` reduces weight element
    ``k`` (row-major), the blocks after them the bias elements.  ``gb`` must be an (F,) array
    even when ``with_bias`` is 0.
    """
    sh = cuda.shared.array(MAX_BLOCK, numba.float64)
    N, C, H, W = x.shape
    F, Cg, kh, kw = gw.shape
    OH = dy.shape[2]
    OW = dy.shape[3]
    Fg = F // groups
    k = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    bd = cuda.blockDim.x
    nw = F * Cg * kh * kw
    total = N * OH * OW
    s = 0.0
    if k < nw:
        q = k % kw
        r = k // kw
        p = r % kh
        r = r // kh
        cl = r % Cg
        f = r // Cg
        # the whole block reads the same element before any thread writes it (after the
        # reduction's barriers), so all its threads leave together
        if only_nonfinite and math.isfinite(gw[f, cl, p, q]):
            return
        c = (f // Fg) * Cg + cl
        for e in range(tid, total, bd):
            j = e % OW
            r2 = e // OW
            i = r2 % OH
            n = r2 // OH
            ih = i * sy - pt + p * dh
            iw = j * sx - pl + q * dw
            if ih >= 0 and ih < H and iw >= 0 and iw < W:
                s += dy[n, f, i, j] * x[n, c, ih, iw]
        s = _block_sum(sh, s)
        if tid == 0:
            gw[f, cl, p, q] = s
    elif with_bias:
        f = k - nw
        for e in range(tid, total, bd):
            j = e % OW
            r2 = e // OW
            i = r2 % OH
            n = r2 // OH
            s += dy[n, f, i, j]
        s = _block_sum(sh, s)
        if tid == 0:
            gb[f] = s


@cuda.jit
def _pad_gather(x, src_h, src_w, xp):  # pragma: no cover
    """``xp[n, c, i, j] = x[n, c, src_h[i], src_w[j]]`` (explicit reflect/replicate/circular
    padding; ``src_*`` are the pads of ``arange`` computed on the host)."""
    t = cuda.grid(1)
    N, C, Hp, Wp = xp.shape
    if t >= N * C * Hp * Wp:
        return
    j = t % Wp
    r = t // Wp
    i = r % Hp
    r = r // Hp
    c = r % C
    n = r // C
    xp[n, c, i, j] = x[n, c, src_h[i], src_w[j]]


@cuda.jit
def _pad_fold(dxp, src_h, src_w, dx, zero):  # pragma: no cover
    """Adjoint of :func:`_pad_gather` as a gather: ``dx[h, w] = sum of dxp[i, j]`` over the
    padded positions with ``src_h[i] == h`` and ``src_w[j] == w``."""
    t = cuda.grid(1)
    N, C, H, W = dx.shape
    Hp = dxp.shape[2]
    Wp = dxp.shape[3]
    if t >= N * C * H * W:
        return
    ww = t % W
    r = t // W
    h = r % H
    r = r // H
    c = r % C
    n = r // C
    acc = zero
    for i in range(Hp):
        if src_h[i] == h:
            for j in range(Wp):
                if src_w[j] == ww:
                    acc += dxp[n, c, i, j]
    dx[n, c, h, ww] = acc

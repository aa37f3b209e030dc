"""The im2col family: the kernels of the im2col + GEMM convolution, run by
:mod:`nbconv.conv.im2col` (``algorithm="im2col"``): column matrices and their adjoint
(col2im), stride phases, bias and ``dy`` layouts.  The GEMMs are BLAS calls in the driver,
except in the fused forward kernel, which calls ``cblas_?gemm`` itself on each task's band
(:mod:`nbconv.kernels.gemm`).

All kernels work on one *chunk* of the output: images ``n0 .. n0+nb``, output rows
``r0 .. r0+nr`` and output columns ``j0 .. j0+nj`` (a chunk is either a run of whole images, or a
run of whole rows of one image, or a run of pixels of one output row).  The column matrix of a
chunk has shape ``(C*kh*kw, M)`` with ``M = nb*nr*nj``: row ``(c*kh + p)*kw + q`` holds tap
``(p, q)`` of channel ``c``, column ``(b*nr + r)*nj + jj`` is output pixel
``(n0+b, r0+r, j0+jj)``.  The rows of one group of channels are therefore one contiguous block,
which is what the per-group GEMMs need.

Zero padding is implicit: ``pt`` rows on top and ``pl`` columns on the left; any tap that falls
outside the input (including past the bottom/right edge) reads 0.

Every kernel is parallel over a flattened index that includes rows of the image, so batch 1 keeps
every core busy, and every ``prange`` iteration writes only memory it owns (col2im is a gather:
an iteration owns a row of input pixels and sums every column entry that reads from it).
"""

from __future__ import annotations

import numba
import numpy as np

from ... import _config
from ..gemm import _NO_TRANS, _cblas_gemm

__all__: list[str] = []


@numba.njit(inline="always")
def _valid_range(off, s, length, j0, nj):
    """Range ``[lo, hi)`` of ``jj`` in ``[0, nj)`` with ``0 <= (j0 + jj)*s + off < length``."""
    if off >= 0:
        jlo = 0
    else:
        jlo = (-off + s - 1) // s
    top = length - 1 - off
    if top < 0:
        jhi = 0
    else:
        jhi = top // s + 1
    lo = min(max(jlo - j0, 0), nj)
    hi = max(min(jhi - j0, nj), lo)
    return lo, hi


@numba.njit(**_config.JIT_OPTIONS)
def _cols_row(x, out, n0, nb, r0, nr, j0, nj, c, p, q, sy, sx, pt, pl, dh, dw):
    """One row ``out`` (nb*nr*nj,) of the column matrix: tap (c, p, q) over the chunk.

    A serial helper: numba vectorises these copies, not the same loops inline in ``prange``.
    """
    H = x.shape[2]
    W = x.shape[3]
    off = q * dw - pl
    lo, hi = _valid_range(off, sx, W, j0, nj)
    start = j0 * sx + off
    for b in range(nb):
        for r in range(nr):
            seg = out[(b * nr + r) * nj:(b * nr + r + 1) * nj]
            iy = (r0 + r) * sy - pt + p * dh
            if iy < 0 or iy >= H:
                seg[:] = 0.0
                continue
            seg[:lo] = 0.0
            seg[hi:] = 0.0
            xrow = x[n0 + b, c, iy]
            if sx == 1:
                seg[lo:hi] = xrow[start + lo:start + hi]
            else:
                for jj in range(lo, hi):
                    seg[jj] = xrow[start + jj * sx]


@numba.njit(parallel=True, **_config.JIT_OPTIONS)
def _conv2d_im2col_cols(x, cols, n0, nb, r0, nr, j0, nj, kh, kw, sy, sx, pt, pl, dh, dw):
    """Write the column matrix ``cols`` (C*kh*kw, nb*nr*nj) of one chunk of ``x`` (N, C, H, W).

    Row ``(c*kh + p)*kw + q`` holds tap (c, p, q); column ``(b*nr + r)*nj + jj`` output pixel
    (n0+b, r0+r, j0+jj); taps outside the input are 0.  One parallel task per row.
    """
    K = kh * kw
    for row in numba.prange(cols.shape[0]):
        c = row // K
        pq = row - c * K
        p = pq // kw
        _cols_row(x, cols[row], n0, nb, r0, nr, j0, nj, c, p, pq - p * kw, sy, sx, pt, pl,
                  dh, dw)


@numba.njit(parallel=True, **_config.JIT_OPTIONS)
def _conv2d_im2col_cols_images(x, cols, n0, nb, kh, kw, sy, sx, pt, pl, dh, dw, OH, OW):
    """:func:`_conv2d_im2col_cols` for a chunk of whole images, one task per (image,
    channel), indexing the arrays directly: the small-image case, where slicing out one short
    segment per output row cost more than the copies (LeNet c2: 64 images of 8x8 outputs,
    150 rows: 1.2 -> 0.85 ms on a busy machine)."""
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    P = OH * OW
    for task in numba.prange(nb * C):
        b = task // C
        c = task - b * C
        n = n0 + b
        for p in range(kh):
            for q in range(kw):
                row = (c * kh + p) * kw + q
                off = q * dw - pl
                lo, hi = _valid_range(off, sx, W, 0, OW)
                for i in range(OH):
                    iy = i * sy - pt + p * dh
                    base = b * P + i * OW
                    if iy < 0 or iy >= H:
                        for j in range(OW):
                            cols[row, base + j] = 0.0
                        continue
                    for j in range(lo):
                        cols[row, base + j] = 0.0
                    if sx == 1:  # contiguous: vectorised
                        for j in range(lo, hi):
                            cols[row, base + j] = x[n, c, iy, j + off]
                    else:
                        for j in range(lo, hi):
                            cols[row, base + j] = x[n, c, iy, j * sx + off]
                    for j in range(hi, OW):
                        cols[row, base + j] = 0.0


@numba.njit(parallel=True, **_config.JIT_OPTIONS)
def _conv2d_im2col_col2im_images(dcols, dx, n0, nb, kh, kw, sy, sx, pt, pl, dh, dw, OH, OW):
    """Adjoint of :func:`_conv2d_im2col_cols_images`: ``dx[n0:n0+nb]`` (overwritten) from the
    chunk's column matrix, one task per (image, channel) plane, each adding the plane's
    column entries in a fixed order (no two tasks share a plane: no races, deterministic)."""
    C, H, W = dx.shape[1], dx.shape[2], dx.shape[3]
    P = OH * OW
    for task in numba.prange(nb * C):
        b = task // C
        c = task - b * C
        n = n0 + b
        for iy in range(H):
            for ix in range(W):
                dx[n, c, iy, ix] = 0.0
        for p in range(kh):
            for q in range(kw):
                row = (c * kh + p) * kw + q
                off = q * dw - pl
                lo, hi = _valid_range(off, sx, W, 0, OW)
                for i in range(OH):
                    iy = i * sy - pt + p * dh
                    if iy < 0 or iy >= H:
                        continue
                    base = b * P + i * OW
                    if sx == 1:  # contiguous: vectorised
                        for j in range(lo, hi):
                            dx[n, c, iy, j + off] += dcols[row, base + j]
                    else:
                        for j in range(lo, hi):
                            dx[n, c, iy, j * sx + off] += dcols[row, base + j]


@numba.njit(parallel=True, **_config.JIT_OPTIONS)
def _conv2d_im2col_scatter_images(ybuf, b, y, n0, nb):
    """``y[n0 + i, f] = ybuf[f, i*P:(i+1)*P] + b[f]``: a chunk's product (F, nb*P), computed
    as one GEMM, into the batch (N, F, P) layout, with the bias."""
    F = y.shape[1]
    P = y.shape[2]
    for task in numba.prange(nb * F):
        i = task // F
        f = task - i * F
        src = ybuf[f, i * P:(i + 1) * P]
        dst = y[n0 + i, f]
        bf = b[f]
        for t in range(P):
            dst[t] = src[t] + bf


@numba.njit(parallel=True, **_config.JIT_OPTIONS)
def _conv2d_im2col_phases(x, xph):
    """``xph[n, c, h, k, u] = x[n, c, h, u*s + k]`` for ``s = xph.shape[3]`` (columns split by
    their remainder mod the stride; entries past the row's end are left as they are)."""
    N, C, H, W = x.shape
    s = xph.shape[3]
    for t in numba.prange(N * C * H):
        n = t // (C * H)
        c = (t // H) % C
        h = t % H
        row = x[n, c, h]
        for k in range(s):
            dst = xph[n, c, h, k]
            for u in range((W - k + s - 1) // s):
                dst[u] = row[u * s + k]


@numba.njit(**_config.JIT_OPTIONS)
def _cols_row_phased(xph, out, n, r0, nr, OW, W, c, p, q, sy, sx, pt, pl, dh, dw):
    """Like :func:`_cols_row` for one image, reading the input split into stride phases
    (``xph`` from :func:`_conv2d_im2col_phases`): input column ``jj*sx + off`` is column
    ``jj + off // sx`` of phase ``off % sx``, so every tap is a contiguous copy even for
    strided convolutions (a strided gather was a third of AlexNet c1's forward time)."""
    H = xph.shape[2]
    off = q * dw - pl
    lo, hi = _valid_range(off, sx, W, 0, OW)
    phase = off % sx
    base = off // sx
    for r in range(nr):
        seg = out[r * OW:(r + 1) * OW]
        iy = (r0 + r) * sy - pt + p * dh
        if iy < 0 or iy >= H:
            seg[:] = 0.0
            continue
        seg[:lo] = 0.0
        seg[hi:] = 0.0
        src = xph[n, c, iy, phase]
        seg[lo:hi] = src[base + lo:base + hi]


@numba.njit(parallel=True, **_config.JIT_OPTIONS)
def _conv2d_im2col_fused_fwd(xph, W, w2, b, y, fn, width, kh, kw, sy, sx, pt, pl, dh, dw,
                             band):
    """``y = conv(x, w) + b`` (groups 1) with each task building the columns of ``band``
    output rows of one image in its own small buffer and multiplying them at once (BLAS
    gemm at address ``fn``, single-threaded, on this task's thread), so that the columns are
    still in cache when the product reads them and no task waits for a shared buffer.

    ``xph`` (N, C, H, sx, ceil(W/sx)) is ``x`` split into stride phases (for stride 1, ``x``
    with an axis of length 1 inserted); ``W`` the input width; ``w2`` is ``w`` as
    (F, C*kh*kw); ``b`` (F,); ``width`` the BLAS integer marker.
    """
    N = xph.shape[0]
    F, K = w2.shape
    OH, OW = y.shape[2], y.shape[3]
    nbands = (OH + band - 1) // band
    it = y.itemsize
    one = y.dtype.type(1)
    zero = y.dtype.type(0)
    for task in numba.prange(N * nbands):
        n = task // nbands
        r0 = (task - n * nbands) * band
        nr = min(band, OH - r0)
        M = nr * OW
        cols = np.empty((K, M), dtype=y.dtype)
        for row in range(K):
            c = row // (kh * kw)
            pq = row - c * (kh * kw)
            p = pq // kw
            _cols_row_phased(xph, cols[row], n, r0, nr, OW, W, c, p, pq - p * kw, sy, sx, pt,
                             pl, dh, dw)
        # y[n, :, r0:r0+nr, :] is an (F, M) row-major block with row pitch OH*OW
        pc = y.ctypes.data + ((n * F * OH + r0) * OW) * it
        _cblas_gemm(fn, width, _NO_TRANS, _NO_TRANS, F, M, K, one, w2.ctypes.data, K,
                    cols.ctypes.data, M, zero, pc, OH * OW)
        for f in range(F):
            bf = b[f]
            for r in range(r0, r0 + nr):
                row_out = y[n, f, r]
                for j in range(OW):
                    row_out[j] += bf


@numba.njit(parallel=True, **_config.JIT_OPTIONS)
def _conv2d_im2col_col2im(
    dcols, dx, n0, nb, r0, nr, j0, nj, kh, kw, sy, sx, pt, pl, dh, dw, iy0, iy1, zero
):
    """Adjoint of :func:`_conv2d_im2col_cols`, as a gather: add the chunk's column matrix
    ``dcols`` (C*kh*kw, nb*nr*nj) into ``dx`` (N, C, H, W) rows ``iy0 .. iy1`` of images
    ``n0 .. n0+nb``.  With ``zero`` != 0 those rows are overwritten instead of added to.
    """
    C = dx.shape[1]
    W = dx.shape[3]
    nh = iy1 - iy0
    total = nb * C * nh
    for t in numba.prange(total):
        b = t // (C * nh)
        rem = t - b * (C * nh)
        c = rem // nh
        iy = iy0 + (rem - c * nh)
        n = n0 + b
        if zero != 0:
            for ix in range(W):
                dx[n, c, iy, ix] = 0.0
        for p in range(kh):
            ty = iy + pt - p * dh
            if ty < 0:
                break
            if ty % sy != 0:
                continue
            i = ty // sy
            if i < r0 or i >= r0 + nr:
                continue
            base = (b * nr + (i - r0)) * nj
            for q in range(kw):
                off = q * dw - pl
                lo, hi = _valid_range(off, sx, W, j0, nj)
                row = (c * kh + p) * kw + q
                start = j0 * sx + off
                for jj in range(lo, hi):
                    dx[n, c, iy, start + jj * sx] += dcols[row, base + jj]


@numba.njit(parallel=True, **_config.JIT_OPTIONS)
def _conv2d_im2col_fwd_bias(y, bias, n0, nb, r0, nr, j0, nj):
    """``y[n0+b, f, r0+r, j0+jj] += bias[f]`` for the chunk (in place)."""
    F = y.shape[1]
    total = nb * F * nr
    for t in numba.prange(total):
        b = t // (F * nr)
        rem = t - b * (F * nr)
        f = rem // nr
        r = rem - f * nr
        bf = bias[f]
        for jj in range(nj):
            y[n0 + b, f, r0 + r, j0 + jj] += bf


@numba.njit(parallel=True, **_config.JIT_OPTIONS)
def _conv2d_im2col_bwd_gather_dy(dy, dyt, n0, nb, r0, nr, j0, nj):
    """``dyt[f, (b*nr + r)*nj + jj] = dy[n0+b, f, r0+r, j0+jj]``: the chunk of ``dy`` laid out
    like the columns of the column matrix."""
    F = dy.shape[1]
    total = nb * F * nr
    for t in numba.prange(total):
        b = t // (F * nr)
        rem = t - b * (F * nr)
        f = rem // nr
        r = rem - f * nr
        base = (b * nr + r) * nj
        for jj in range(nj):
            dyt[f, base + jj] = dy[n0 + b, f, r0 + r, j0 + jj]


@numba.njit(parallel=True, **_config.JIT_OPTIONS)
def _conv2d_im2col_pixel_rows(x, cols, kh, kw, sy, sx, pt, pl, OH, OW):
    """Pixel-major columns, dilation 1: ``cols[(i*OW + j)*N + n, (c*kh + p)*kw + q] =
    x[n, c, i*sy - pt + p, j*sx - pl + q]`` (0 outside ``x``).

    The transpose of the chunk layout above, with the output pixels in rows-of-channels order
    ``(i, j, n)``: ``cols @ W.T`` is then the convolution as rows of channels
    ``(OH, OW, N, F)``, and each (channel, kernel row) of a row of ``cols`` is one run of
    ``kw`` consecutive input values.  x : (N, C, H, W); cols : (OH*OW*N, C*kh*kw).  One task
    per output pixel (all images)."""
    N, C, H, W = x.shape
    for task in numba.prange(OH * OW):
        i = task // OW
        j = task - i * OW
        q0 = max(0, pl - j * sx)  # the taps inside the image's columns: q0 <= q < q1
        q1 = min(kw, W + pl - j * sx)
        for n in range(N):
            row = cols[task * N + n]
            for c in range(C):
                for p in range(kh):
                    h = i * sy - pt + p
                    base = (c * kh + p) * kw
                    if h < 0 or h >= H or q1 <= q0:
                        for q in range(kw):
                            row[base + q] = 0.0
                        continue
                    for q in range(q0):
                        row[base + q] = 0.0
                    xr = x[n, c, h]
                    w0 = j * sx - pl
                    for q in range(q0, q1):
                        row[base + q] = xr[w0 + q]
                    for q in range(q1, kw):
                        row[base + q] = 0.0

"""Column matrices of *patch* convolutions: kernel equal to the stride, no padding, no dilation
(a ViT's patch embedding, a U-Net's 2x2 stride-2 up-convolution seen from its output).

Their windows tile the input without overlap, so the column matrix of im2col
(:mod:`.im2col`) is a plain rearrangement of the input -- *space to depth* -- and
col2im its inverse, *depth to space*, with no sum and no padding.  These kernels do that in
one pass each, reading and writing whole rows (the general kernels gather and add every
entry at a stride).

Layout as in :mod:`.im2col`, for a chunk of whole images ``n0 .. n0+nb`` with an
``OH x OW`` output: row ``(c*kh + p)*kw + q`` of the column matrix holds tap ``(p, q)`` of
channel ``c``, column ``b*OH*OW + i*OW + j`` output pixel ``(n0+b, i, j)``, and it reads
``x[n0+b, c, i*kh + p, j*kw + q]``.  Rows and columns of ``x`` past ``OH*kh`` and ``OW*kw`` are
read by no window.
"""

from __future__ import annotations

import numba

from ... import _config

__all__: list[str] = []


@numba.njit(parallel=True, **_config.JIT_OPTIONS)
def _patches_space_to_depth(x, cols, n0, nb, kh, kw, OH, OW):
    """``cols[(c*kh + p)*kw + q, b*OH*OW + i*OW + j] = x[n0+b, c, i*kh + p, j*kw + q]``, one
    task per (image, channel)."""
    C = x.shape[1]
    P = OH * OW
    for task in numba.prange(nb * C):
        b = task // C
        c = task - b * C
        n = n0 + b
        for p in range(kh):
            for i in range(OH):
                src = x[n, c, i * kh + p]
                base = b * P + i * OW
                for q in range(kw):
                    dst = cols[(c * kh + p) * kw + q, base:base + OW]
                    for j in range(OW):
                        dst[j] = src[j * kw + q]


@numba.njit(parallel=True, **_config.JIT_OPTIONS)
def _patches_depth_to_space(cols, dx, n0, nb, kh, kw, OH, OW):
    """The inverse: ``dx[n0+b, c, i*kh + p, j*kw + q]`` from the column matrix, and 0 in the
    rows and columns of ``dx`` that no window reads (``dx`` is overwritten); one task per
    (image, channel), writing whole rows."""
    C, H, W = dx.shape[1], dx.shape[2], dx.shape[3]
    P = OH * OW
    zero = dx.dtype.type(0)
    for task in numba.prange(nb * C):
        b = task // C
        c = task - b * C
        n = n0 + b
        for p in range(kh):
            for i in range(OH):
                dst = dx[n, c, i * kh + p]
                base = b * P + i * OW
                for q in range(kw):
                    src = cols[(c * kh + p) * kw + q, base:base + OW]
                    for j in range(OW):
                        dst[j * kw + q] = src[j]
                for t in range(OW * kw, W):
                    dst[t] = zero
        for r in range(OH * kh, H):
            for t in range(W):
                dx[n, c, r, t] = zero

"""The im2row layout of im2col's forward pass (driver: ``nbconv.conv.im2col``).

im2col's column matrix transposed: one *row* of ``K = C*kh*kw`` input values per output pixel
and image, ``rows[(i*OW + j)*nb + b, (c*kh + p)*kw + q] = x[n0 + b, c, i*sy - pt + p*dh,
j*sx - pl + q*dw]`` (0 outside the image).  The forward product is then ``rows @ W.T``:
pixels as the product's rows and filters as its columns, which is the shape nbconv's vector
product (:mod:`.gemm_vector`) runs fastest, and its ``(OH, OW, nb, F)`` result is tap-GEMM's
output layout (:func:`.conv2d_tapgemm._conv2d_tapgemm_from_rows` writes ``y``).
"""

from __future__ import annotations

import numba

from .. import _config

__all__: list[str] = []


@numba.njit(parallel=True, **_config.JIT_OPTIONS)
def _conv2d_im2row(x, rows, n0, nb, kh, kw, sy, sx, pt, pl, dh, dw, OH, OW):
    """Fill ``rows`` (OH*OW*nb, C*kh*kw) for images ``n0 .. n0+nb`` of ``x`` (N, C, H, W) (see
    the module docstring).  One task per (output row, image)."""
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    zero = rows.dtype.type(0)
    for task in numba.prange(OH * nb):
        i = task // nb
        b = task - i * nb
        n = n0 + b
        for j in range(OW):
            row = rows[(i * OW + j) * nb + b]
            w0 = j * sx - pl
            for c in range(C):
                for p in range(kh):
                    h = i * sy - pt + p * dh
                    base = (c * kh + p) * kw
                    if h < 0 or h >= H:
                        for q in range(kw):
                            row[base + q] = zero
                        continue
                    src = x[n, c, h]
                    for q in range(kw):
                        v = w0 + q * dw
                        row[base + q] = src[v] if 0 <= v < W else zero

"""The Winograd family: F(2x2, 3x3), 3x3 stride-1 convolution with 16 instead of 36
multiplications per 2x2 block of outputs (Lavin & Gray, "Fast Algorithms for Convolutional
Neural Networks", 2015), run by :mod:`nbconv.conv.winograd` (``algorithm="winograd"``).
Larger kernels are taken as 3x3 pieces (see :mod:`nbconv.conv.winograd`).

Every 2x2 output tile ``Y`` of a plane is computed from the 4x4 input patch ``d`` under it and
the 3x3 filter ``g`` as ``Y = A^T [(G g G^T) * (B^T d B)] A`` (``*`` elementwise), with::

    B^T = [[1, 0, -1, 0],     G = [[1,    0,   0],     A^T = [[1, 1,  1,  0],
           [0, 1,  1, 0],          [1/2,  1/2, 1/2],          [0, 1, -1, -1]]
           [0, -1, 1, 0],          [1/2, -1/2, 1/2],
           [0, 1,  0, -1]]         [0,    0,   1]]

Summed over input channels, the elementwise products become 16 independent matrix products
``M[k] = U[k] @ V[k]`` (``U[k]``: filters x channels, ``V[k]``: channels x tiles), which BLAS
computes; the kernels here are the two memory-bound transforms around them.  Tile ``t`` of a
chunk is ``((n - n0) * ni + (i - i0)) * tw + j`` for image ``n``, tile row ``i`` (rows
``i0..i0+ni-1`` of the chunk) and tile column ``j``; position ``k = 4*a + b`` of the 4x4
transform.  Inputs are C-contiguous float32/float64 arrays of one dtype; outputs overwritten.
"""

from __future__ import annotations

import numba
import numpy as np

from ..._config import JIT_OPTIONS
from .._finite import _finite
from .layout import _pad_plane

__all__ = ["_conv2d_winograd_filter", "_conv2d_winograd_input", "_conv2d_winograd_output"]


@numba.njit(**JIT_OPTIONS)
def _tap(w, f, c, i, j):
    """``w[f, c, i, j]``, zero past the kernel's edge (serial helper: the kernel zero-padded
    to whole 3x3 pieces)."""
    return w[f, c, i, j] if i < w.shape[2] and j < w.shape[3] else w.dtype.type(0)


@numba.njit(parallel=True, **JIT_OPTIONS)
def _conv2d_winograd_filter(w, U, Pw):
    """``U[4a + b, f, blk*C + c] = (G g G^T)[a, b]`` for every 3x3 piece ``g`` of ``w`` (F, C,
    kh, kw) zero-padded to ``3Ph x 3Pw``: piece ``blk = pa*Pw + pb`` holds rows ``3pa..3pa+2``
    and columns ``3pb..3pb+2``; ``U`` (16, F, Ph*Pw*C).  Indices, not views of ``w``: views
    taken in the parallel loop cost the 5x5 transform 2 ms (reference counts updated by both
    threads)."""
    F, C = w.shape[0], w.shape[1]
    P = U.shape[2] // C
    for f in numba.prange(F):
        for blk in range(P):
            i0 = (blk // Pw) * 3
            j0 = (blk % Pw) * 3
            for c in range(C):
                col = blk * C + c
                # G g: rows g0, (g0+g1+g2)/2, (g0-g1+g2)/2, g2 -- then the same along each row
                for a in range(4):
                    if a == 0 or a == 3:
                        i = i0 + (0 if a == 0 else 2)
                        r0 = _tap(w, f, c, i, j0)
                        r1 = _tap(w, f, c, i, j0 + 1)
                        r2 = _tap(w, f, c, i, j0 + 2)
                    else:
                        sign = 1.0 if a == 1 else -1.0
                        r0 = 0.5 * (_tap(w, f, c, i0, j0) + sign * _tap(w, f, c, i0 + 1, j0)
                                    + _tap(w, f, c, i0 + 2, j0))
                        r1 = 0.5 * (_tap(w, f, c, i0, j0 + 1)
                                    + sign * _tap(w, f, c, i0 + 1, j0 + 1)
                                    + _tap(w, f, c, i0 + 2, j0 + 1))
                        r2 = 0.5 * (_tap(w, f, c, i0, j0 + 2)
                                    + sign * _tap(w, f, c, i0 + 1, j0 + 2)
                                    + _tap(w, f, c, i0 + 2, j0 + 2))
                    U[4 * a, f, col] = r0
                    U[4 * a + 1, f, col] = 0.5 * (r0 + r1 + r2)
                    U[4 * a + 2, f, col] = 0.5 * (r0 - r1 + r2)
                    U[4 * a + 3, f, col] = r2


@numba.njit(**JIT_OPTIONS)
def _input_tiles(xs, V, row, t0, tw, oy, ox, ni):
    """``V[k, row, t0 + il*tw + j] = (B^T d B)[a, b]`` for the 4x4 patches
    ``d = xs[2il+oy : 2il+oy+4, 2j+ox : 2j+ox+4]`` of a padded band ``xs`` (serial helper)."""
    for il in range(ni):
        r0 = xs[2 * il + oy, ox:]
        r1 = xs[2 * il + oy + 1, ox:]
        r2 = xs[2 * il + oy + 2, ox:]
        r3 = xs[2 * il + oy + 3, ox:]
        tr = t0 + il * tw
        for j in range(tw):
            s = 2 * j
            # Z = B^T d: combine the four rows, column by column
            z00 = r0[s] - r2[s]
            z01 = r0[s + 1] - r2[s + 1]
            z02 = r0[s + 2] - r2[s + 2]
            z03 = r0[s + 3] - r2[s + 3]
            z10 = r1[s] + r2[s]
            z11 = r1[s + 1] + r2[s + 1]
            z12 = r1[s + 2] + r2[s + 2]
            z13 = r1[s + 3] + r2[s + 3]
            z20 = r2[s] - r1[s]
            z21 = r2[s + 1] - r1[s + 1]
            z22 = r2[s + 2] - r1[s + 2]
            z23 = r2[s + 3] - r1[s + 3]
            z30 = r1[s] - r3[s]
            z31 = r1[s + 1] - r3[s + 1]
            z32 = r1[s + 2] - r3[s + 2]
            z33 = r1[s + 3] - r3[s + 3]
            # Z B: the same combination along each row of Z
            t = tr + j
            V[0, row, t] = z00 - z02
            V[1, row, t] = z01 + z02
            V[2, row, t] = z02 - z01
            V[3, row, t] = z01 - z03
            V[4, row, t] = z10 - z12
            V[5, row, t] = z11 + z12
            V[6, row, t] = z12 - z11
            V[7, row, t] = z11 - z13
            V[8, row, t] = z20 - z22
            V[9, row, t] = z21 + z22
            V[10, row, t] = z22 - z21
            V[11, row, t] = z21 - z23
            V[12, row, t] = z30 - z32
            V[13, row, t] = z31 + z32
            V[14, row, t] = z32 - z31
            V[15, row, t] = z31 - z33


@numba.njit(parallel=True, **JIT_OPTIONS)
def _conv2d_winograd_input(x, V, n0, nb, i0, ni, tw, pt, pl, Ph, Pw, bad):
    """Input transform of tile rows ``i0 .. i0+ni-1`` of images ``n0 .. n0+nb-1``.

    ``x`` (N, C, H, W) is padded implicitly (``pt`` rows on top, ``pl`` columns on the left,
    negative values crop, zeros wherever a patch leaves the input).  For every 3x3 piece
    ``(a, b)`` of a ``3Ph x 3Pw`` kernel, ``V[k, (a*Pw + b)*C + c, t]`` is position ``k`` of
    the transformed patch at rows ``2i + 3a``, columns ``2j + 3b`` of the padded plane.
    One parallel task per (image, channel): it copies the band of the padded plane that its
    tiles read into a small buffer (in cache) once, for all pieces; no padded copy of the
    whole input is made (one read and one write of the input less).  ``V`` is
    (16, Ph*Pw*C, >= T).  ``bad[task]`` (``nb*C`` values) is set to 1 where the band holds an
    inf or NaN, 0 elsewhere: the transforms would spread such values differently from a
    direct convolution, so the caller falls back to one.
    """
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    Hs = 2 * ni + 3 * Ph - 1
    Ws = 2 * tw + 3 * Pw - 1
    top = pt - 2 * i0  # where row 0 of x lands in the band
    r0, r1 = max(top, 0), min(top + H, Hs)
    c0, c1 = max(pl, 0), min(pl + W, Ws)
    for task in numba.prange(nb * C):
        nl = task // C
        c = task - nl * C
        xs = np.empty((Hs, Ws), dtype=V.dtype)
        _pad_plane(x[n0 + nl, c], xs, top, pl, r0, r1, c0, c1)
        bad[task] = 0 if _finite(xs) else 1
        for a in range(Ph):
            for b in range(Pw):
                _input_tiles(xs, V, (a * Pw + b) * C + c, nl * ni * tw, tw, 3 * a, 3 * b, ni)


@numba.njit(parallel=True, **JIT_OPTIONS)
def _conv2d_winograd_output(M, b, y, n0, nb, i0, ni, tw):
    """``y[n, f, 2i:2i+2, 2j:2j+2] = (A^T m A) + b[f]`` with ``m[a, b] = M[4a + b, f, t]``,
    cropped at the bottom/right edges of ``y`` (odd output sizes).

    ``M`` is (16, F, >= nb*ni*tw).  One parallel task per (image, filter).
    """
    F = y.shape[1]
    OH, OW = y.shape[2], y.shape[3]
    for task in numba.prange(nb * F):
        nl = task // F
        f = task - nl * F
        out = y[n0 + nl, f]
        bias = b[f]
        for il in range(ni):
            i = i0 + il
            t0 = (nl * ni + il) * tw
            two_rows = 2 * i + 1 < OH
            for j in range(tw):
                t = t0 + j
                # A^T m: rows 0+1+2 and 1-2-3, per column
                p0 = M[0, f, t] + M[4, f, t] + M[8, f, t]
                p1 = M[1, f, t] + M[5, f, t] + M[9, f, t]
                p2 = M[2, f, t] + M[6, f, t] + M[10, f, t]
                p3 = M[3, f, t] + M[7, f, t] + M[11, f, t]
                q0 = M[4, f, t] - M[8, f, t] - M[12, f, t]
                q1 = M[5, f, t] - M[9, f, t] - M[13, f, t]
                q2 = M[6, f, t] - M[10, f, t] - M[14, f, t]
                q3 = M[7, f, t] - M[11, f, t] - M[15, f, t]
                s = 2 * j
                out[2 * i, s] = p0 + p1 + p2 + bias
                if s + 1 < OW:
                    out[2 * i, s + 1] = p1 - p2 - p3 + bias
                if two_rows:
                    out[2 * i + 1, s] = q0 + q1 + q2 + bias
                    if s + 1 < OW:
                        out[2 * i + 1, s + 1] = q1 - q2 - q3 + bias

"""Winograd F(2x2, 3x3): 3x3 stride-1 convolution with 16 instead of 36 multiplications per
2x2 block of outputs (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2015).
Larger kernels are taken as 3x3 pieces (see :mod:`nbconv.functional._winograd`).

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

from .._config import JIT_OPTIONS

__all__ = ["_conv2d_winograd_filter", "_conv2d_winograd_input", "_conv2d_winograd_output"]


@numba.njit(parallel=True, **JIT_OPTIONS)
def _conv2d_winograd_filter(w, U):
    """``U[4a + b, f, c] = (G w[f, c] G^T)[a, b]`` for ``w`` (F, C, 3, 3), ``U`` (16, F, C)."""
    F, C = w.shape[0], w.shape[1]
    for f in numba.prange(F):
        for c in range(C):
            g = w[f, c]
            # G g: rows g0, (g0+g1+g2)/2, (g0-g1+g2)/2, g2 -- then the same along each row
            for a in range(4):
                if a == 0:
                    r0, r1, r2 = g[0, 0], g[0, 1], g[0, 2]
                elif a == 3:
                    r0, r1, r2 = g[2, 0], g[2, 1], g[2, 2]
                else:
                    sign = 1.0 if a == 1 else -1.0
                    r0 = 0.5 * (g[0, 0] + sign * g[1, 0] + g[2, 0])
                    r1 = 0.5 * (g[0, 1] + sign * g[1, 1] + g[2, 1])
                    r2 = 0.5 * (g[0, 2] + sign * g[1, 2] + g[2, 2])
                U[4 * a, f, c] = r0
                U[4 * a + 1, f, c] = 0.5 * (r0 + r1 + r2)
                U[4 * a + 2, f, c] = 0.5 * (r0 - r1 + r2)
                U[4 * a + 3, f, c] = r2


@numba.njit(parallel=True, **JIT_OPTIONS)
def _conv2d_winograd_input(xp, V, n0, nb, i0, ni, tw, oy, ox):
    """``V[k, c, t] = (B^T d B)[a, b]`` for the 4x4 patch
    ``d = xp[n, c, 2i+oy : 2i+oy+4, 2j+ox : 2j+ox+4]`` (``oy``, ``ox``: the offset of a 3x3
    piece of a larger kernel).

    ``xp`` (N, C, Hp, Wp) is zero-padded so that every patch of the chunk lies inside it;
    ``V`` is (16, C, >= nb*ni*tw).  One parallel task per (image, channel).
    """
    C = xp.shape[1]
    for task in numba.prange(nb * C):
        nl = task // C
        c = task - nl * C
        plane = xp[n0 + nl, c]
        for il in range(ni):
            i = i0 + il
            t0 = (nl * ni + il) * tw
            r0 = plane[2 * i + oy, ox:]
            r1 = plane[2 * i + oy + 1, ox:]
            r2 = plane[2 * i + oy + 2, ox:]
            r3 = plane[2 * i + oy + 3, ox:]
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
                t = t0 + j
                V[0, c, t] = z00 - z02
                V[1, c, t] = z01 + z02
                V[2, c, t] = z02 - z01
                V[3, c, t] = z01 - z03
                V[4, c, t] = z10 - z12
                V[5, c, t] = z11 + z12
                V[6, c, t] = z12 - z11
                V[7, c, t] = z11 - z13
                V[8, c, t] = z20 - z22
                V[9, c, t] = z21 + z22
                V[10, c, t] = z22 - z21
                V[11, c, t] = z21 - z23
                V[12, c, t] = z30 - z32
                V[13, c, t] = z31 + z32
                V[14, c, t] = z32 - z31
                V[15, c, t] = z31 - z33


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

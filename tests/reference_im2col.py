"""Slow, independent references for the im2col transform and the convolution it computes.

Never imports nbconv.  Conventions (those of ``nbconv.conv.im2col``): ``x`` is
``(N, C, H, W)``, ``w`` is ``(F, C // groups, kh, kw)``; zero padding of ``pt`` rows on top and
``pl`` columns on the left, the bottom/right padding implied by the requested output size
``(OH, OW)``; output pixel ``(i, j)`` tap ``(p, q)`` reads ``x[.., i*sy - pt + p*dh,
j*sx - pl + q*dw]`` (0 outside ``x``).  Column matrices are ``(N, C*kh*kw, OH*OW)`` with row
``(c*kh + p)*kw + q`` and column ``i*OW + j``.

Three independent formulations are used: a zero-padded copy sliced per tap (``im2col_ref``,
``conv2d_ref``, ``conv2d_backward_ref``) and plain scalar loops (``conv2d_naive``) that check
the sliced ones on small cases.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "zero_pad_for",
    "im2col_ref",
    "conv2d_ref",
    "conv2d_backward_ref",
    "conv2d_naive",
    "natural_out_size",
]


def natural_out_size(n, k, s, p_before, p_after, d):
    """``floor((n + p_before + p_after - d*(k-1) - 1) / s) + 1`` (may be <= 0)."""
    span = n + p_before + p_after - d * (k - 1) - 1
    return span // s + 1 if span >= 0 else 0


def zero_pad_for(x, kh, kw, sy, sx, pt, pl, dh, dw, OH, OW):
    """``x`` zero-padded so that every tap of an ``OH x OW`` output is inside the result."""
    H, W = x.shape[-2:]
    pb = max(0, (OH - 1) * sy + (kh - 1) * dh + 1 - H - pt)
    pr = max(0, (OW - 1) * sx + (kw - 1) * dw + 1 - W - pl)
    widths = [(0, 0)] * (x.ndim - 2) + [(pt, pb), (pl, pr)]
    return np.pad(x, widths, mode="constant", constant_values=0)


def _tap(xp, p, q, sy, sx, dh, dw, OH, OW):
    """The (…, OH, OW) slice of the padded input read by tap (p, q)."""
    r = p * dh
    c = q * dw
    return xp[..., r : r + (OH - 1) * sy + 1 : sy, c : c + (OW - 1) * sx + 1 : sx]


def im2col_ref(x, kh, kw, sy, sx, pt, pl, dh, dw, OH, OW):
    """Column matrix ``(N, C*kh*kw, OH*OW)`` built from a padded copy, one tap at a time."""
    N, C = x.shape[:2]
    xp = zero_pad_for(x, kh, kw, sy, sx, pt, pl, dh, dw, OH, OW)
    cols = np.zeros((N, C, kh, kw, OH * OW), dtype=x.dtype)
    for p in range(kh):
        for q in range(kw):
            cols[:, :, p, q, :] = _tap(xp, p, q, sy, sx, dh, dw, OH, OW).reshape(N, C, OH * OW)
    return cols.reshape(N, C * kh * kw, OH * OW)


def conv2d_ref(x, w, b, sy, sx, pt, pl, dh, dw, groups, OH, OW):
    """Grouped, strided, dilated cross-correlation in float64, as a sum over taps of shifted
    slices of the zero-padded input.  Returns ``(N, F, OH, OW)``."""
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    N, C = x.shape[:2]
    F, Cg, kh, kw = w.shape
    Fg = F // groups
    xp = zero_pad_for(x, kh, kw, sy, sx, pt, pl, dh, dw, OH, OW)
    y = np.zeros((N, F, OH, OW))
    for g in range(groups):
        xs = xp[:, g * Cg : (g + 1) * Cg]
        fs = slice(g * Fg, (g + 1) * Fg)
        for p in range(kh):
            for q in range(kw):
                t = _tap(xs, p, q, sy, sx, dh, dw, OH, OW)
                y[:, fs] += np.einsum("nchw,fc->nfhw", t, w[fs, :, p, q])
    if b is not None:
        y += np.asarray(b, np.float64)[None, :, None, None]
    return y


def conv2d_backward_ref(dy, x, w, sy, sx, pt, pl, dh, dw, groups):
    """Gradients ``(dx, dw, db)`` of ``sum(conv2d_ref(x, w, b, ...) * dy)`` in float64, each
    written out tap by tap on the zero-padded input."""
    dy = np.asarray(dy, np.float64)
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    N, C, H, W = x.shape
    F, Cg, kh, kw = w.shape
    OH, OW = dy.shape[2:]
    Fg = F // groups
    xp = zero_pad_for(x, kh, kw, sy, sx, pt, pl, dh, dw, OH, OW)
    dxp = np.zeros_like(xp)
    gw = np.zeros_like(w)
    for g in range(groups):
        cs = slice(g * Cg, (g + 1) * Cg)
        fs = slice(g * Fg, (g + 1) * Fg)
        for p in range(kh):
            for q in range(kw):
                t = _tap(xp[:, cs], p, q, sy, sx, dh, dw, OH, OW)
                gw[fs, :, p, q] = np.einsum("nfhw,nchw->fc", dy[:, fs], t)
                dt = _tap(dxp[:, cs], p, q, sy, sx, dh, dw, OH, OW)  # a view: add in place
                dt += np.einsum("nfhw,fc->nchw", dy[:, fs], w[fs, :, p, q])
    dx = dxp[:, :, pt : pt + H, pl : pl + W]
    return np.ascontiguousarray(dx), gw, dy.sum(axis=(0, 2, 3))


def conv2d_naive(x, w, b, sy, sx, pt, pl, dh, dw, groups, OH, OW):
    """The definition, one scalar at a time (tiny shapes only)."""
    N, C, H, W = x.shape
    F, Cg, kh, kw = w.shape
    Fg = F // groups
    y = np.zeros((N, F, OH, OW))
    for n in range(N):
        for f in range(F):
            g = f // Fg
            for i in range(OH):
                for j in range(OW):
                    s = 0.0 if b is None else float(b[f])
                    for c in range(Cg):
                        for p in range(kh):
                            for q in range(kw):
                                iy = i * sy - pt + p * dh
                                ix = j * sx - pl + q * dw
                                if 0 <= iy < H and 0 <= ix < W:
                                    s += float(w[f, c, p, q]) * float(x[n, g * Cg + c, iy, ix])
                    y[n, f, i, j] = s
    return y

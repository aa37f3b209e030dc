"""Layout code shared by several kernel families, so that no family imports another.

* The tasks of the row families' forward kernels (:mod:`.rows`, :mod:`.wide`): blocks of
  :data:`FB` output channels of one image, split into bands of output rows when there are too
  few (image, block) pairs for the threads (:func:`_row_bands`, :func:`_fwd_task`).
* Zero-padded planes: :func:`_pad_planes` pads a batch in one threaded pass (the direct
  driver's explicit padding), :func:`_pad_plane` one plane inside a task (the depthwise and
  Winograd kernels pad in L1).
* The bias gradient ``gb[f] = sum(dy[:, f])`` of the drivers whose weight-gradient kernels do
  not compute it (:func:`_conv2d_im2col_bwd_bias`: im2col, tap-GEMM, and the direct
  algorithm's pixel-vector and register-block families).
* The per-channel epilogue of results held as rows of channels (:func:`_epilogue` for one
  value, :func:`_conv2d_rows_epilogue` in place on rows): tap-GEMM's and the pixel-major
  im2col's.

Inputs are C-contiguous float32/float64 arrays of one dtype; outputs are overwritten.
"""

from __future__ import annotations

import numba
import numpy as np

from ... import _config
from .._ir import copy_bytes, zero_bytes

__all__ = ["FB", "_row_bands", "_fwd_task", "_pad_plane", "_pad_planes",
           "_conv2d_im2col_bwd_bias", "_conv2d_rows_epilogue", "_epilogue"]

#: output channels computed together by one forward task of the row families: each input row
#: (or shifted window of wide rows) loaded once feeds FB accumulating output rows (register/L1
#: blocking); the direct driver rounds groups-1 filters up to a multiple of it for wide rows.
FB = 4


@numba.njit(**_config.JIT_OPTIONS)
def _row_bands(planes, OH, min_tasks):
    """Split ``OH`` output rows into ``nbands`` bands of ``band`` rows, just enough that
    ``planes * nbands`` parallel tasks reach ``min_tasks`` (batch 1 still feeds every thread)."""
    nbands = 1
    while planes * nbands < min_tasks and nbands < OH:
        nbands += 1
    return nbands, (OH + nbands - 1) // nbands


@numba.njit(**_config.JIT_OPTIONS)
def _fwd_task(t, nbands, band, nfb, groups, Fg, OH):
    """Forward task ``t`` -> (image n, group g, first channel f0, channel count nf <= FB, rows
    i0..i1-1): tasks enumerate (image, group, block of FB channels, band of rows)."""
    bi = t % nbands
    r = t // nbands
    fbk = r % nfb
    r = r // nfb
    g = r % groups
    f0 = g * Fg + fbk * FB
    i0 = bi * band
    return r // groups, g, f0, min(FB, (g + 1) * Fg - f0), i0, min(OH, i0 + band)


@numba.njit(**_config.JIT_OPTIONS)
def _pad_plane(src, dst, pt, pl, r0, r1, c0, c1):
    """``dst`` (Hp, Wp) = zeros with ``src`` placed at (pt, pl), rows ``r0:r1`` and columns
    ``c0:c1`` of ``dst`` being the part that overlaps (serial helper).  Rows with unit
    element strides are cleared and copied with ``memset``/``memcpy`` (short rows: see
    :mod:`nbconv.kernels._ir`)."""
    Wp = dst.shape[1]
    it = dst.itemsize
    if src.strides[1] == it and dst.strides[1] == it:
        da, ds = dst.ctypes.data, dst.strides[0]
        for i in range(dst.shape[0]):
            if i < r0 or i >= r1 or c1 <= c0:
                zero_bytes(da + i * ds, Wp * it)
                continue
            zero_bytes(da + i * ds, c0 * it)
            copy_bytes(da + i * ds + c0 * it,
                       src.ctypes.data + (i - pt) * src.strides[0] + (c0 - pl) * it,
                       (c1 - c0) * it)
            zero_bytes(da + i * ds + c1 * it, (Wp - c1) * it)
        return
    for i in range(dst.shape[0]):
        row = dst[i]
        if i < r0 or i >= r1:
            for j in range(Wp):
                row[j] = 0
            continue
        srow = src[i - pt]
        for j in range(c0):
            row[j] = 0
        for j in range(c0, c1):
            row[j] = srow[j - pl]
        for j in range(c1, Wp):
            row[j] = 0


@numba.njit(parallel=True, **_config.JIT_OPTIONS)
def _pad_planes(src, dst, pt, pl):
    """``dst[a, b]`` = zeros with ``src[a, b]`` placed at (pt, pl), cropped to fit, for every
    plane of ``src`` (A, B, H, W) and ``dst`` (A, B, Hp, Wp), both C-contiguous.  One pass
    that writes every element once, on all threads; NumPy's ``zeros`` + slice assignment made
    two single-threaded passes (depthwise 3x3 at (16, 128, 56, 56): 3.4 ms)."""
    A, B, H, W = src.shape
    Hp, Wp = dst.shape[2], dst.shape[3]
    r0, r1 = max(pt, 0), min(pt + H, Hp)
    c0, c1 = max(pl, 0), min(pl + W, Wp)
    for t in numba.prange(A * B):
        a = t // B
        b = t % B
        _pad_plane(src[a, b], dst[a, b], pt, pl, r0, r1, c0, c1)


@numba.njit(parallel=True, **_config.JIT_OPTIONS)
def _conv2d_im2col_bwd_bias(dy, gb):
    """``gb[f] = sum over n, i, j of dy[n, f, i, j]`` (float64 accumulation)."""
    N = dy.shape[0]
    F = dy.shape[1]
    P = dy.shape[2] * dy.shape[3]
    d = dy.reshape(N, F, P)
    for f in numba.prange(F):
        acc = 0.0
        for n in range(N):
            part = 0.0
            for k in range(P):
                part += np.float64(d[n, f, k])
            acc += part
        gb[f] = acc


@numba.njit(parallel=True, **_config.JIT_OPTIONS)
def _conv2d_rows_epilogue(yt, b, has_bias, relu=False, scale=None):
    """:func:`nbconv.kernels.conv.tapgemm._conv2d_tapgemm_from_rows`'s per-channel epilogue
    in place, the result staying in rows of channels (a planned network's next layer reads
    them as its own rows; tap-GEMM and the pixel-major im2col write them):
    ``yt[r, c] = max(yt[r, c] (* scale[c]) (+ b[c]), 0)`` (the parts asked for; NaN kept).

    yt : (R, C) C-contiguous; b : (C,) (any length when not ``has_bias``); scale : (C,)
    float64, or None.  Tasks of whole rows."""
    R, C = yt.shape
    zero = yt.dtype.type(0)
    tasks = min(R, 64)
    for task in numba.prange(tasks):
        for r in range(task * R // tasks, (task + 1) * R // tasks):
            row = yt[r]
            for c in range(C):
                row[c] = _epilogue(row[c], c, b, has_bias, relu, scale, zero)


@numba.njit(inline="always")
def _epilogue(v, c, b, has_bias, relu, scale, zero):
    """Channel ``c``'s ``v (* scale[c]) (+ b[c])``, then ``max(., 0)`` with ``relu`` (the
    "not (v <= 0)" keeps NaN, as :func:`nbconv.relu` does)."""
    if scale is not None:
        v = v * scale[c]
    if has_bias:
        v = v + b[c]
    return v if not relu or not (v <= 0) else zero

"""Winograd F(2x2, 3x3) convolution: the driver of ``algorithm="winograd"`` (kernels of 2 to 9
taps a side, stride 1, dilation 1, groups 1).

A kernel larger than 3x3 is zero-padded to ``3Ph x 3Pw`` and cut into ``Ph*Pw`` 3x3 pieces;
piece ``(a, b)`` convolves the input shifted by ``(3a, 3b)``.  The pieces' transformed inputs
are stacked along the channel axis (``Ph*Pw*C`` rows of ``V[k]``), so each of the 16 products
sums over all pieces at once: a 5x5 kernel costs 16*4 = 64 multiplications per 2x2 outputs
and channel pair instead of 100.

The arithmetic is in :mod:`nbconv.kernels.conv.winograd`.  Per chunk of tiles:

1. ``V[k] (C, T)`` = input transform of every 4x4 patch (numba kernel);
2. ``M[k] (F, T) = U[k] (F, C) @ V[k]`` for the 16 positions ``k`` (BLAS on numba's threads,
   :func:`nbconv._blas.matmul`), with ``U`` the transformed filters;
3. output transform of ``M`` plus the bias into ``y`` (numba kernel).

Chunks are whole images, or runs of tile rows of one image, such that ``V`` and ``M``
together stay below ``plan.WINOGRAD_CHUNK_BYTES`` (and ``nbconv._config.IM2COL_MAX_BYTES``).
Results equal the direct algorithm's to float rounding: the transforms only add, subtract and halve.
"""

from __future__ import annotations

import numpy as np

from .. import _config
from .._blas import matmul
from .._checks.conv import Geom
from ..kernels.conv.winograd import (
    _conv2d_winograd_filter,
    _conv2d_winograd_input,
    _conv2d_winograd_output,
)
from . import direct, plan

__all__ = ["conv2d_forward", "conv2d_backward", "try_forward"]


def _pieces(kh, kw):
    """3x3 pieces along each axis of a ``kh x kw`` kernel."""
    return -(-kh // 3), -(-kw // 3)


def _planes(rows, cols, dtype):
    """An uninitialised ``(16, rows, cols)`` array whose 16 planes are a cache line more than
    ``rows*cols`` numbers apart.  The transforms read or write the 16 positions as 16 streams
    one plane apart, and a plane size that is a multiple of 4 KiB (VGG's 128 channels x 784
    tiles, 128 x 128 filters) puts all 16 on the same cache sets: the input transform took
    5.0 instead of 2.6 ms per image, the filter transform 0.42 instead of 0.11 ms."""
    dtype = np.dtype(dtype)
    flat = np.empty((16, rows * cols + 64 // dtype.itemsize), dtype=dtype)
    return flat[:, :rows * cols].reshape(16, rows, cols)


def filter_transform(w):
    """``U[4a + b, f, c] = (G w[f, c] G^T)[a, b]``.

    Parameters
    ----------
    w : ndarray, shape (F, C, kh, kw)

    Returns
    -------
    U : ndarray, shape (16, F, Ph*Pw*C), ``w``'s dtype (planes padded, see :func:`_planes`)
        Piece ``(a, b)`` (rows ``3a..3a+2``, columns ``3b..3b+2`` of ``w`` zero-padded to
        ``3Ph x 3Pw``) in columns ``(a*Pw + b)*C`` to ``(a*Pw + b + 1)*C``.
    """
    F, C, kh, kw = w.shape
    Ph, Pw = _pieces(kh, kw)
    U = _planes(F, Ph * Pw * C, w.dtype)
    _conv2d_winograd_filter(np.ascontiguousarray(w), U, Pw)
    return U


def _chunks(N, th, tw, tile_bytes):
    """``(n0, nb, i0, ni)`` chunks of whole images, or of tile rows of one image, whose
    buffers (``tile_bytes`` per tile) fit the bound (at least one tile row per chunk)."""
    per_chunk = max(1, min(plan.WINOGRAD_CHUNK_BYTES, _config.IM2COL_MAX_BYTES) // tile_bytes)
    if per_chunk >= th * tw:
        nb = min(N, per_chunk // (th * tw))
        return [(n0, min(nb, N - n0), 0, th) for n0 in range(0, N, nb)]
    ni = max(1, per_chunk // tw)
    return [(n, 1, i0, min(ni, th - i0)) for n in range(N) for i0 in range(0, th, ni)]


def winograd_chunks(N, C, F, kh, kw, OH, OW, itemsize):
    """The chunks ``(n0, nb, i0, ni)`` (images, tile rows) of a forward pass, sized by
    ``plan.WINOGRAD_CHUNK_BYTES`` for its transformed tiles."""
    Ph, Pw = _pieces(kh, kw)
    return _chunks(N, -(-OH // 2), -(-OW // 2), 16 * (Ph * Pw * C + F) * itemsize)


def try_forward(x, w, b, y, g: Geom):
    """Winograd forward convolution into the preallocated ``y`` (arguments as for
    :func:`nbconv.conv.im2col.conv2d_forward`; the geometry must pass
    :func:`nbconv._checks.conv.winograd_supports`).

    Returns False, with ``y`` partly written, when ``x`` or ``w`` holds an inf or NaN: the
    transforms mix neighbouring values, so such values would reach other outputs than in a
    direct convolution (and an infinite result could become NaN).  The caller then computes
    ``y`` another way.

    Examples
    --------
    >>> import numpy as np
    >>> from nbconv._checks.conv import Geom
    >>> from nbconv.conv.winograd import try_forward
    >>> x = np.arange(16.0).reshape(1, 1, 4, 4); w = np.ones((1, 1, 3, 3))
    >>> y = np.empty((1, 1, 2, 2))
    >>> try_forward(x, w, None, y, Geom.of(x.shape, w.shape)), y[0, 0]
    (True, array([[45., 54.],
           [81., 90.]]))
    """
    if not np.isfinite(w).all():
        return False
    N, C = x.shape[:2]
    F, _, kh, kw = w.shape
    Ph, Pw = _pieces(kh, kw)
    PC = Ph * Pw * C
    OH, OW = y.shape[2], y.shape[3]
    tw = -(-OW // 2)
    U = filter_transform(w)
    if b is None:
        b = np.zeros(F, dtype=y.dtype)
    chunks = winograd_chunks(N, C, F, kh, kw, OH, OW, y.itemsize)
    max_tiles = max(nb * ni for _, nb, _, ni in chunks) * tw
    V = _planes(PC, max_tiles, y.dtype)
    M = _planes(F, max_tiles, y.dtype)
    bad = np.empty(max(nb for _, nb, _, _ in chunks) * C, dtype=np.uint8)
    for n0, nb, i0, ni in chunks:
        T = nb * ni * tw
        _conv2d_winograd_input(x, V, n0, nb, i0, ni, tw, g.pt, g.pl, Ph, Pw, bad)
        if bad[:nb * C].any():
            return False
        matmul(U, V[:, :, :T], M[:, :, :T])
        _conv2d_winograd_output(M, b, y, n0, nb, i0, ni, tw)
    return True


def conv2d_forward(x, w, b, y, g: Geom, kernels=("winograd",)):
    """Winograd forward convolution; ``y`` all NaN when ``x`` or ``w`` holds an inf or NaN,
    for the engine to recompute by the definition (:mod:`nbconv.conv.exact`), so that
    non-finite values reach exactly the outputs they reach in a direct convolution."""
    if not try_forward(x, w, b, y, g):
        y.fill(np.nan)


def conv2d_backward(dy, x, w, dx, gw, gb, g: Geom, kernels, spread=False):
    """The data gradient of a stride-1 convolution is one too (of ``dy`` with the flipped,
    transposed kernel): Winograd (``dx`` all NaN when ``dy`` or ``w`` is not finite, for the
    engine to recompute); the weight gradient by the direct kernels of the plan's family
    ``kernels[1]``."""
    if dx is not None and not try_forward(
            dy, direct._flip_transpose(w, 1), None, dx,
            g.data_gradient(w.shape[2], w.shape[3], dx.shape[2], dx.shape[3])):
        dx.fill(np.nan)
    if gw is not None:  # None: the data gradient alone (x may be None)
        direct.weight_gradient(kernels[1], dy, x, gw, gb, g)

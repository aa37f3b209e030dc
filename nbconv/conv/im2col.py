"""The im2col + GEMM convolution: the driver of ``algorithm="im2col"``.

Arguments arrive validated and normalised (C-contiguous arrays of one float dtype, Python ints);
nothing here checks them.  The work goes in *chunks* so that no temporary buffer is larger than
``nbconv._config.IM2COL_MAX_BYTES`` (read at call time):

* whole images when at least one image's columns fit (``nb`` images per chunk);
* otherwise runs of output rows of one image;
* otherwise (one output row does not fit) runs of pixels of one output row.

Only if a single output pixel's column (``max(C*kh*kw, F)`` numbers) exceeds the bound is the
bound exceeded, by that one column.

The forward pass with one group and a small weight matrix is *fused* instead: each numba task
builds the columns of a band of output rows in its own buffer of about
``plan.FUSED_COLS_BYTES`` and multiplies them right away with a single-threaded BLAS call on its
own thread (``_conv2d_im2col_fused_fwd``).  Otherwise, for each chunk the column matrix
``cols`` ``(C*kh*kw, M)`` is written by a numba kernel and the products are single-threaded
BLAS calls run side by side on numba's threads
(:func:`nbconv._blas.matmul`: one GEMM per group, or slabs of it, reading strided views in place):

* forward: ``y_chunk[g] = W[g] @ cols[g]`` (+ bias);
* backward: ``dW[g] += dy_chunk[g] @ cols[g].T``, ``dcols[g] = W[g].T @ dy_chunk[g]`` and
  ``dx += col2im(dcols)`` (a gather kernel); ``db`` is a reduction kernel over ``dy``.
"""

from __future__ import annotations

import numpy as np

from .. import _config
from .._blas import gemm_for, matmul, single_threaded_blas
from .._checks.conv import Geom
from ..kernels.conv.im2col import (
    _conv2d_im2col_bwd_gather_dy,
    _conv2d_im2col_col2im,
    _conv2d_im2col_col2im_images,
    _conv2d_im2col_cols,
    _conv2d_im2col_cols_images,
    _conv2d_im2col_fused_fwd,
    _conv2d_im2col_fwd_bias,
    _conv2d_im2col_phases,
    _conv2d_im2col_pixel_rows,
    _conv2d_im2col_scatter_images,
)
from ..kernels.conv.layout import _conv2d_im2col_bwd_bias, _conv2d_rows_epilogue
from ..kernels.conv.patches import _patches_depth_to_space, _patches_space_to_depth
from . import plan

__all__ = ["conv2d_forward", "conv2d_backward", "im2col", "col2im", "plan_chunks",
           "pixel_rows_takes", "prepare_pixel_rows"]


def plan_chunks(N, OH, OW, rows, itemsize, max_bytes=None):
    """How the output is split into chunks whose column buffers stay below the bound.

    Parameters
    ----------
    N, OH, OW : int
        Batch size and output height/width.
    rows : int
        Rows of the largest temporary buffer: ``max(C*kh*kw, F)``.
    itemsize : int
        Bytes per number (4 or 8).
    max_bytes : int, optional
        The bound; default ``nbconv._config.IM2COL_MAX_BYTES`` read now.

    Returns
    -------
    mode : str
        ``"images"``, ``"rows"`` or ``"pixels"``.
    chunks : list of tuple
        ``(n0, nb, r0, nr, j0, nj)`` for every chunk, in order.
    max_cols : int
        Largest ``M = nb*nr*nj`` of any chunk (the buffers have ``rows * max_cols`` numbers).

    Examples
    --------
    >>> from nbconv.conv.im2col import plan_chunks
    >>> plan_chunks(4, 2, 3, rows=10, itemsize=8, max_bytes=1000)
    ('images', [(0, 2, 0, 2, 0, 3), (2, 2, 0, 2, 0, 3)], 12)
    >>> plan_chunks(1, 2, 3, rows=10, itemsize=8, max_bytes=300)[:2]
    ('rows', [(0, 1, 0, 1, 0, 3), (0, 1, 1, 1, 0, 3)])
    """
    if max_bytes is None:
        max_bytes = _config.IM2COL_MAX_BYTES
    max_cols = max(1, int(max_bytes) // (rows * itemsize))
    P = OH * OW
    chunks = []
    if max_cols >= P:
        nb = min(N, max_cols // P)
        for n0 in range(0, N, nb):
            chunks.append((n0, min(nb, N - n0), 0, OH, 0, OW))
        return "images", chunks, nb * P
    if max_cols >= OW:
        nr = max_cols // OW
        for n in range(N):
            for r0 in range(0, OH, nr):
                chunks.append((n, 1, r0, min(nr, OH - r0), 0, OW))
        return "rows", chunks, nr * OW
    nj = max_cols
    for n in range(N):
        for r in range(OH):
            for j0 in range(0, OW, nj):
                chunks.append((n, 1, r, 1, j0, min(nj, OW - j0)))
    return "pixels", chunks, nj


def _buffer(flat, rows, m):
    """A C-contiguous ``(rows, m)`` view of the first ``rows*m`` numbers of ``flat``."""
    return flat[: rows * m].reshape(rows, m)


def _pixel_view(a, G, n, r0, nr, j0, nj):
    """``a[n]`` as ``(G, F // G, nr*nj)``: the flat pixels of a one-image chunk, per group.

    Valid when the chunk's pixels are contiguous in the flattened image (whole rows, or part of
    one row): then it is a strided view (never a copy) that BLAS reads or writes directly.
    """
    F, OH, OW = a.shape[1:]
    start = r0 * OW + j0
    return a[n].reshape(G, F // G, OH * OW)[:, :, start : start + nr * nj]


def conv2d_forward(x, w, b, y, g: Geom, kernels=("columns",)):
    """im2col + GEMM forward convolution into the preallocated ``y``.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W)
    w : ndarray, shape (F, C // groups, kh, kw)
    b : ndarray, shape (F,), or None
    y : ndarray, shape (N, F, OH, OW)
        Output, fully overwritten:
        ``y[n,f,i,j] = b[f] + sum_{c,p,q} w[f,c,p,q] * x[n, k*C/groups + c, i*sy-pt+p*dh,
        j*sx-pl+q*dw]`` with zeros outside the input (``k`` the group of ``f``).
    g : Geom
        Stride, top/left zero padding (bottom/right implied by OH/OW), dilation, groups.
    kernels : tuple of str
        The plan's path (:func:`nbconv.conv.plan.im2col_forward_path`): ``("pointwise",)``
        (stride-1 1x1 without padding only), ``("fused",)`` (groups 1 with a CBLAS gemm
        only) or ``("columns",)`` (any layer).

    Examples
    --------
    >>> import numpy as np
    >>> from nbconv._checks.conv import Geom
    >>> from nbconv.conv.im2col import conv2d_forward
    >>> x = np.arange(16.0).reshape(1, 1, 4, 4); w = np.ones((1, 1, 2, 2))
    >>> y = np.empty((1, 1, 2, 2))
    >>> conv2d_forward(x, w, None, y, Geom.of(x.shape, w.shape, stride=2)); y[0, 0]
    array([[10., 18.],
           [42., 50.]])
    """
    N, C, H, W = x.shape
    F, Cg, kh, kw = w.shape
    OH, OW = y.shape[2], y.shape[3]
    path = kernels[0]
    if path == "pointwise":
        # A pointwise convolution is one matrix product per image, y[n] = W @ x[n]: no
        # columns to build.
        matmul(w.reshape(1, F, C), x.reshape(N, C, H * W), y.reshape(N, F, H * W))
        if b is not None:
            _conv2d_im2col_fwd_bias(y, b, 0, N, 0, OH, 0, OW)
        return
    if path == "fused":
        gemm = gemm_for(y.dtype)
        band = plan.fused_band(Cg * kh * kw, OH, OW, y.itemsize)
        bias = b if b is not None else np.zeros(F, dtype=y.dtype)
        sx = g.sx
        if sx == 1:
            xph = x[:, :, :, None, :]
        else:
            xph = np.empty((N, C, H, sx, -(-W // sx)), dtype=x.dtype)
            _conv2d_im2col_phases(x, xph)
        with single_threaded_blas():
            _conv2d_im2col_fused_fwd(xph, W, w.reshape(F, -1), bias, y, gemm[0], gemm[1], kh,
                                     kw, g.sy, sx, g.pt, g.pl, g.dh, g.dw, band)
        return
    G = g.groups
    Fg = F // G
    K = Cg * kh * kw
    CK = C * kh * kw
    dtype = y.dtype
    mode, chunks, max_cols = plan_chunks(N, OH, OW, max(CK, F), dtype.itemsize)
    w3 = w.reshape(G, Fg, K)
    cols_flat = np.empty(CK * max_cols, dtype)
    P = OH * OW
    batched = mode == "images" and P < plan.BATCHED_BELOW
    ybuf_flat = np.empty(F * max_cols, dtype) if batched else None
    bias = b if b is not None else np.zeros(F, dtype=dtype)
    for n0, nb, r0, nr, j0, nj in chunks:
        M = nb * nr * nj
        cols = _buffer(cols_flat, CK, M)
        _columns(x, cols, mode, n0, nb, r0, nr, j0, nj, kh, kw, g)
        cols3 = cols.reshape(G, K, M)
        if batched:
            # small images: one GEMM for the chunk, then each image's block into y with the
            # bias (64 products of 16 x 150 x 64 for LeNet c2 were slower than one of
            # 16 x 150 x 4096 plus the copy)
            ybuf = _buffer(ybuf_flat, F, M)
            matmul(w3, cols3, ybuf.reshape(G, Fg, M))
            _conv2d_im2col_scatter_images(ybuf, bias, y.reshape(N, F, P), n0, nb)
            continue
        # Each image's pixels are contiguous in y[n] (a multi-image chunk holds whole images):
        # BLAS writes straight into y, one GEMM per image reading its block of columns.  This
        # beat one GEMM for the chunk plus a scatter pass into y for larger images.
        P_chunk = nr * nj
        if G == 1 and nb > 1:  # one batched call: one parallel region for the chunk
            matmul(w3, cols.reshape(CK, nb, P_chunk).transpose(1, 0, 2),
                   y[n0:n0 + nb].reshape(nb, F, P_chunk))
        for i in range(nb if G > 1 or nb == 1 else 0):
            out = _pixel_view(y, G, n0 + i, r0, nr, j0, nj)
            matmul(w3, cols3[:, :, i * P_chunk:(i + 1) * P_chunk], out)
        if b is not None:
            _conv2d_im2col_fwd_bias(y, b, n0, nb, r0, nr, j0, nj)


#: least stride of the layers :func:`prepare_pixel_rows` takes: with windows that overlap
#: little, building pixel-major columns is one run copy per (channel, kernel row); at stride 2
#: (ResNet's 7x7 stem) the columns cost as much as the register blocks' whole layer
PIXEL_ROWS_MIN_STRIDE = 4
#: most input channels of those layers (first layers: the columns are short runs otherwise)
PIXEL_ROWS_MAX_CHANNELS = 4


def pixel_rows_takes(x_shape, w_shape, g: Geom, dtype) -> bool:
    """Whether :func:`prepare_pixel_rows` runs this layer in a planned network: a first layer
    (at most ``PIXEL_ROWS_MAX_CHANNELS`` channels) of stride at least
    ``PIXEL_ROWS_MIN_STRIDE``, groups 1, no dilation, zero padding, a CBLAS gemm, and
    columns within ``nbconv._config.IM2COL_MAX_BYTES``."""
    N, C, H, W = x_shape
    F, _, kh, kw = w_shape
    M = N * g.OH * g.OW
    return (C <= PIXEL_ROWS_MAX_CHANNELS and min(g.sy, g.sx) >= PIXEL_ROWS_MIN_STRIDE
            and g.groups == 1 and (g.dh, g.dw) == (1, 1) and g.mode == "zeros" and N > 0
            and gemm_for(dtype) is not None
            and M * C * kh * kw * np.dtype(dtype).itemsize <= _config.IM2COL_MAX_BYTES)


def prepare_pixel_rows(x_shape, w, g: Geom):
    """A planned first layer (see :func:`pixel_rows_takes`) as pixel-major columns times the
    weights: ``run(x, b, y, relu, scale)`` writes rows of channels ``y`` (OH, OW, N, F), what
    the tap-GEMM layers after it read, with the bias, ``scale`` and ReLU of
    ``kernels.conv.layout._conv2d_rows_epilogue``.  NiN's and AlexNet's 11x11
    stride-4 first layers on 32x32 inputs: one run copy per (channel, kernel row), then one
    GEMM, in place of register blocks whose 6-7 pixel rows split into blocks of 4, 1 and 1."""
    N, C, H, W = x_shape
    F, _, kh, kw = w.shape
    OH, OW = g.OH, g.OW
    K, M = C * kh * kw, OH * OW * N
    wt = np.ascontiguousarray(w.reshape(F, K).T)
    no_bias = np.zeros(1, dtype=w.dtype)
    sy, sx, pt, pl = g.sy, g.sx, g.pt, g.pl

    def run(x, b, y, relu, scale):
        cols = np.empty((M, K), dtype=w.dtype)
        _conv2d_im2col_pixel_rows(x, cols, kh, kw, sy, sx, pt, pl, OH, OW)
        y2 = y.reshape(M, F)
        matmul(cols, wt, y2)
        _conv2d_rows_epilogue(y2, no_bias if b is None else b, b is not None, relu,
                                      scale)

    return run


def patches(kh, kw, g: Geom, H, W) -> bool:
    """Whether the windows tile the ``H x W`` input without overlap or padding (kernel =
    stride, no padding on any side, no dilation): then the columns are a rearrangement of the
    input (:mod:`nbconv.kernels.conv.patches`).  Windows that reach past the bottom or right
    edge read implicit zero padding, which the rearrangement does not know."""
    return ((kh, kw, g.pt, g.pl) == (g.sy, g.sx, 0, 0) and (g.dh == 1 or kh == 1)
            and (g.dw == 1 or kw == 1) and g.OH * kh <= H and g.OW * kw <= W)


def _columns(x, cols, mode, n0, nb, r0, nr, j0, nj, kh, kw, g: Geom):
    """The column matrix of one chunk: whole narrow images one task per (image, channel),
    other chunks one task per row of the matrix (one long write stream each: for AlexNet
    c2's 27-pixel rows 3.3 vs 4.3 ms a chunk, for LeNet c2's 8-pixel rows 1.2 vs 0.85 ms)."""
    if mode == "images" and patches(kh, kw, g, x.shape[2], x.shape[3]):
        _patches_space_to_depth(x, cols, n0, nb, kh, kw, nr, nj)
    elif mode == "images" and nj < plan.NARROW_ROWS:
        _conv2d_im2col_cols_images(x, cols, n0, nb, kh, kw, g.sy, g.sx, g.pt, g.pl, g.dh, g.dw,
                                   nr, nj)
    else:
        _conv2d_im2col_cols(x, cols, n0, nb, r0, nr, j0, nj, kh, kw, g.sy, g.sx, g.pt, g.pl,
                            g.dh, g.dw)


def conv2d_backward(dy, x, w, dx, gw, gb, g: Geom, kernels=("im2col", "im2col"), spread=False):
    """im2col + GEMM gradients of ``sum(conv2d_forward(x, w, b) * dy)``.

    Parameters
    ----------
    dy : ndarray, shape (N, F, OH, OW)
    x : ndarray, shape (N, C, H, W), or None (only with ``gw`` None)
    w : ndarray, shape (F, C // groups, kh, kw)
    dx : ndarray, shape (N, C, H, W), or None
        Overwritten with the input gradient; ``None`` skips it (and its col2im work).
    gw : ndarray, shape (F, C // groups, kh, kw), or None
        Overwritten with the weight gradient; ``None`` skips it (and the columns of ``x``).
    gb : ndarray, shape (F,), or None
        Overwritten with the bias gradient ``dy.sum((0, 2, 3))``; ``None`` skips it.
    g : Geom
        As in :func:`conv2d_forward`.

    Examples
    --------
    >>> import numpy as np
    >>> from nbconv._checks.conv import Geom
    >>> from nbconv.conv.im2col import conv2d_backward
    >>> x = np.arange(9.0).reshape(1, 1, 3, 3); w = np.ones((1, 1, 2, 2))
    >>> dy = np.ones((1, 1, 2, 2)); dx = np.empty_like(x); gw = np.empty_like(w)
    >>> gb = np.empty(1)
    >>> conv2d_backward(dy, x, w, dx, gw, gb, Geom.of(x.shape, w.shape))
    >>> dx[0, 0]
    array([[1., 2., 1.],
           [2., 4., 2.],
           [1., 2., 1.]])
    >>> gw[0, 0], gb
    (array([[ 8., 12.],
           [20., 24.]]), array([4.]))
    """
    N, C, H, W = (dx if gw is None else x).shape
    F, Cg, kh, kw = w.shape
    OH, OW = dy.shape[2], dy.shape[3]
    G = g.groups
    Fg = F // G
    K = Cg * kh * kw
    CK = C * kh * kw
    dtype = dy.dtype
    if gb is not None:
        _conv2d_im2col_bwd_bias(dy, gb)
    mode, chunks, max_cols = plan_chunks(N, OH, OW, max(CK, F), dtype.itemsize)
    w3t = w.reshape(G, Fg, K).transpose(0, 2, 1)
    gw3 = gw.reshape(G, Fg, K) if gw is not None else None
    cols_flat = np.empty(CK * max_cols, dtype) if gw is not None else None
    dcols_flat = np.empty(CK * max_cols, dtype) if dx is not None else None
    dyt_flat = None
    last_n = -1
    # as in the forward pass, large images are multiplied one by one on dy's own pixels
    # rather than gathered into one product per chunk
    per_image = OH * OW >= plan.BATCHED_BELOW
    for k, (n0, nb, r0, nr, j0, nj) in enumerate(chunks):
        M = nb * nr * nj
        m = nr * nj
        if nb == 1 or per_image:
            # (dy's pixels of image i, their first column in the chunk's matrices)
            parts = [(_pixel_view(dy, G, n0 + i, r0, nr, j0, nj), i * m) for i in range(nb)]
        else:
            if dyt_flat is None:
                dyt_flat = np.empty(F * max_cols, dtype)
            dyt = _buffer(dyt_flat, F, M)
            _conv2d_im2col_bwd_gather_dy(dy, dyt, n0, nb, r0, nr, j0, nj)
            parts, m = [(dyt.reshape(G, Fg, M), 0)], M
        if gw is not None:
            cols = _buffer(cols_flat, CK, M)
            _columns(x, cols, mode, n0, nb, r0, nr, j0, nj, kh, kw, g)
            # weight gradient: sum over chunks of dy_chunk @ cols_chunk.T, per group
            for t, (dyt3, a) in enumerate(parts):
                matmul(dyt3, cols[:, a:a + m].reshape(G, K, m).transpose(0, 2, 1), gw3,
                       accumulate=k > 0 or t > 0)
        if dx is None:
            continue
        dcols = _buffer(dcols_flat, CK, M)
        if G == 1 and len(parts) > 1:  # the images in one batched call
            matmul(w3t, dy[n0:n0 + nb].reshape(nb, F, m),
                   dcols.reshape(CK, nb, m).transpose(1, 0, 2))
            parts = []
        for dyt3, a in parts:
            matmul(w3t, dyt3, dcols[:, a:a + m].reshape(G, K, m))
        if mode == "images" and patches(kh, kw, g, dx.shape[2], dx.shape[3]):
            _patches_depth_to_space(dcols, dx, n0, nb, kh, kw, OH, OW)
        elif mode == "images":
            _conv2d_im2col_col2im_images(dcols, dx, n0, nb, kh, kw, g.sy, g.sx, g.pt, g.pl, g.dh,
                                         g.dw, OH, OW)
        else:
            if n0 != last_n:
                dx[n0] = 0.0
                last_n = n0
            # input rows this chunk's output rows read from
            iy0 = min(max(r0 * g.sy - g.pt, 0), H)
            iy1 = min(max((r0 + nr - 1) * g.sy - g.pt + (kh - 1) * g.dh + 1, iy0), H)
            _conv2d_im2col_col2im(dcols, dx, n0, nb, r0, nr, j0, nj, kh, kw, g.sy, g.sx, g.pt,
                                  g.pl, g.dh, g.dw, iy0, iy1, 0)


def im2col(x, kh, kw, sy, sx, pt, pl, dh, dw, OH, OW):
    """The full column matrix of ``x`` (no chunking; for tests and teaching).

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W)
        C-contiguous float32/float64.
    kh, kw, sy, sx, pt, pl, dh, dw, OH, OW : int
        Kernel size, stride, top/left zero padding, dilation and output size.

    Returns
    -------
    cols : ndarray, shape (N, C*kh*kw, OH*OW)
        ``cols[n, (c*kh + p)*kw + q, i*OW + j] = x[n, c, i*sy - pt + p*dh, j*sx - pl + q*dw]``,
        0 where that index is outside ``x``.

    Examples
    --------
    >>> import numpy as np
    >>> from nbconv.conv.im2col import im2col
    >>> im2col(np.arange(4.0).reshape(1, 1, 2, 2), 2, 2, 1, 1, 1, 1, 1, 1, 1, 1)[0, :, 0]
    array([0., 0., 0., 0.])
    >>> im2col(np.arange(4.0).reshape(1, 1, 2, 2), 2, 2, 1, 1, 0, 0, 1, 1, 1, 1)[0, :, 0]
    array([0., 1., 2., 3.])
    """
    N, C = x.shape[:2]
    cols = np.empty((N, C * kh * kw, OH * OW), x.dtype)
    for n in range(N):
        _conv2d_im2col_cols(x, cols[n], n, 1, 0, OH, 0, OW, kh, kw, sy, sx, pt, pl, dh, dw)
    return cols


def col2im(cols, x_shape, kh, kw, sy, sx, pt, pl, dh, dw, OH, OW):
    """Adjoint of :func:`im2col`: sum every column entry back onto the pixel it was read from.

    Parameters
    ----------
    cols : ndarray, shape (N, C*kh*kw, OH*OW)
        C-contiguous float32/float64.
    x_shape : tuple (N, C, H, W)
    kh, kw, sy, sx, pt, pl, dh, dw, OH, OW : int
        As in :func:`im2col`.

    Returns
    -------
    dx : ndarray, shape (N, C, H, W)
        ``<im2col(x), cols> == <x, col2im(cols)>`` for every ``x``.

    Examples
    --------
    >>> import numpy as np
    >>> from nbconv.conv.im2col import col2im
    >>> col2im(np.ones((1, 4, 4)), (1, 1, 3, 3), 2, 2, 1, 1, 0, 0, 1, 1, 2, 2)[0, 0]
    array([[1., 2., 1.],
           [2., 4., 2.],
           [1., 2., 1.]])
    """
    N, C, H, W = x_shape
    dx = np.empty((N, C, H, W), cols.dtype)
    for n in range(N):
        _conv2d_im2col_col2im(
            cols[n], dx, n, 1, 0, OH, 0, OW, kh, kw, sy, sx, pt, pl, dh, dw, 0, H, 1
        )
    return dx

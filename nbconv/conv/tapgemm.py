"""The tap-GEMM convolution for small feature maps: one matrix product per kernel tap over
the whole batch, and no work on padded taps.

On the small maps of CIFAR-sized networks (8x8 down to 1x1 planes, 64-512 channels) im2col
multiplies one tiny matrix per image and, like Winograd and the direct kernels, spends most
of its work on taps that read zero padding: a 3x3 pad-1 layer on a 2x2 map has 16 valid
(pixel, tap) pairs out of 36.  Here, with the input as rows of channels (one row per pixel
and image, ``(H, W, N, C)``) and ``W_t = w[:, :, p, q]`` for tap ``t = (p, q)``, output
pixel ``o`` gets ``Y_o (N, F) += X_(o+t) (N, C) @ W_t.T`` for every tap whose input pixel is
inside the image.  Those output pixels form a rectangle and their inputs the same rectangle
shifted, so a tap is one product ``(pixels*N, C) @ (C, F)`` of strided blocks (one per band
row of the rectangle unless it spans whole rows); see
:mod:`nbconv.kernels.conv.tapgemm` for the layouts, the stride phases and how the
products are spread over numba's threads.

* forward: ``Y_rect += X_rect @ W_t.T`` per tap, then ``y = Y`` in NCHW plus the bias;
* data gradient: ``dX_rect += dY_rect @ W_t`` per tap;
* weight gradient: ``dW_t = dY_rect.T @ X_rect`` per tap; bias gradient ``dy.sum((0, 2, 3))``.

The layout changes NCHW <-> rows cost one pass over ``x``/``y`` each, which is little beside
the products at these sizes. A batch whose row copies would exceed
``nbconv._config.IM2COL_MAX_BYTES`` runs a few images at a time (the weight gradient summed
over the chunks), so memory stays bounded as for im2col. Arguments arrive validated
(C-contiguous float32/float64, the zero padding given by the geometry's ``pt``/``pl``, the
output size by ``y``); nothing here checks them. Without a CBLAS gemm to call (see
:func:`nbconv._blas.gemm_for`) the same products run as ``np.matmul`` calls on the strided
views.
"""

from __future__ import annotations

import numba
import numpy as np

from .. import _config
from .._blas import gemm_for, single_threaded_blas
from .._checks.conv import Geom
from ..functional.linear import pack_panels, panels_apply
from ..kernels.conv.layout import _conv2d_im2col_bwd_bias, _conv2d_rows_epilogue
from ..kernels.conv.tapgemm import (
    _conv2d_tap_panels_fwd,
    _conv2d_tapgemm_bwd_data,
    _conv2d_tapgemm_bwd_weight,
    _conv2d_tapgemm_from_rows,
    _conv2d_tapgemm_from_rows_by8,
    _conv2d_tapgemm_fwd,
    _conv2d_tapgemm_to_rows,
    _conv2d_tapgemm_to_rows_by8,
    aliasing_planes,
    tap_range,
    tap_table,
)
from . import plan

__all__ = ["conv2d_forward", "conv2d_backward", "supports", "pack_weights", "prepare_forward",
           "can_prepare"]


def supports(kh, kw, sy, sx, dh, dw, groups):
    """Whether the tap-GEMM driver runs this layer: any kernel, stride and dilation with
    ``groups == 1`` (zero padding is implied: the caller pads other modes explicitly).

    >>> from nbconv.conv.tapgemm import supports
    >>> supports(3, 3, 1, 1, 1, 1, 1), supports(3, 3, 2, 2, 1, 1, 1), supports(3, 3, 1, 1, 1, 1, 2)
    (True, True, False)
    """
    return groups == 1 and min(kh, kw, sy, sx, dh, dw) >= 1


def _parts(cols):
    """Tasks for a product with ``cols`` output columns: one per numba thread, at least
    ``plan.TAPGEMM_MIN_SLAB`` columns each."""
    return max(1, min(numba.get_num_threads(), cols // plan.TAPGEMM_MIN_SLAB))


def _split(plane_rows, cols, by_rows):
    """``(row_parts, column_parts)``: slabs of ``plane_rows`` rows of pixels when ``by_rows``
    (see :func:`plan.tapgemm_row_slabs`), else of ``cols`` columns, one per thread."""
    if not by_rows:
        return 1, _parts(cols)
    threads = numba.get_num_threads()
    rparts = min(threads, plane_rows)
    return rparts, max(1, min(threads // rparts, cols // plan.TAPGEMM_MIN_SLAB))


def _to_rows_kernel(H, W, itemsize):
    """The kernel that lays ``H x W`` planes out as rows of channels: 8 channels at a time
    where the planes are a multiple of 4 KiB apart (:func:`~nbconv.kernels.conv.tapgemm.
    aliasing_planes`; at 1-2 KiB all channels at once still won)."""
    return (_conv2d_tapgemm_to_rows_by8 if aliasing_planes(H, W, itemsize, 4096)
            else _conv2d_tapgemm_to_rows)


def _from_rows_kernel(H, W, itemsize):
    """The kernel that writes rows of channels back as ``H x W`` planes: 8 channels at a
    time where the planes are a multiple of 1 KiB apart (``aliasing_planes``)."""
    return (_conv2d_tapgemm_from_rows_by8 if aliasing_planes(H, W, itemsize)
            else _conv2d_tapgemm_from_rows)


def _rows(a, sy, sx):
    """``a`` (N, C, H, W) as stride-phased rows of channels (sy, sx, ceil(H/sy), ceil(W/sx),
    N, C); see :mod:`nbconv.kernels.conv.tapgemm`."""
    N, C, H, W = a.shape
    out = np.empty((sy, sx, -(-H // sy), -(-W // sx), N, C), dtype=a.dtype)
    _to_rows_kernel(H, W, a.itemsize)(a, out)
    return out


def _taps(kh, kw, OH, OW, H, W, g: Geom):
    """:func:`~nbconv.kernels.conv.tapgemm.tap_table` of this layer: ``(taps, full_out,
    full_in)``."""
    return tap_table(kh, kw, OH, OW, H, W, g.sy, g.sx, g.pt, g.pl, g.dh, g.dw)


def _rects(OH, OW, kh, kw, H, W, g: Geom):
    """For the fallback: ``(p, q, out_slices, in_index)`` of every tap that reads the input."""
    for p in range(kh):
        i0, i1, ry, qy = tap_range(OH, H, g.sy, p * g.dh - g.pt)
        for q in range(kw):
            j0, j1, rx, qx = tap_range(OW, W, g.sx, q * g.dw - g.pl)
            if i1 > i0 and j1 > j0:
                yield (p, q, (slice(i0, i1), slice(j0, j1)),
                       (ry, rx, slice(i0 + qy, i1 + qy), slice(j0 + qx, j1 + qx)))


def pack_weights(w):
    """``w`` (F, C, kh, kw) as the forward kernel's per-tap matrices ``W_t`` (kh*kw, F, C),
    C-contiguous: what :func:`conv2d_forward` would rearrange at every call, made once (a
    planned network's constant weights, :mod:`nbconv.inference`)."""
    F, C, kh, kw = w.shape
    return np.ascontiguousarray(w.transpose(2, 3, 0, 1)).reshape(kh * kw, F, C)


def can_prepare(x_shape, w_shape, g: Geom, dtype) -> bool:
    """Whether :func:`prepare_forward` makes a closure for this layer (a CBLAS gemm, the
    batch in one chunk), which may then read and write rows of channels."""
    N, C, H, W = x_shape
    F = w_shape[0]
    return (gemm_for(dtype) is not None and g.groups == 1
            and _images_per_chunk(N, max(C * H * W, F * g.OH * g.OW), np.dtype(dtype).itemsize)
            >= N)


def uses_panels(x_shape, w_shape, g: Geom) -> bool:
    """Whether :func:`prepare_forward` runs the products on weights packed once into panels
    (:func:`nbconv.kernels.conv.tapgemm._conv2d_tap_panels_fwd`) instead of BLAS: layers
    of the few output rows ``N*OH*OW`` that :func:`~nbconv.functional.linear.panels_apply`
    takes for ``kh*kw*C`` terms (BLAS packs every tap's weights at every call)."""
    F, C, kh, kw = w_shape
    return USE_PANELS and panels_apply(x_shape[0] * g.OH * g.OW, F, kh * kw * C)


#: whether prepared layers may run on packed panels (:func:`uses_panels`)
USE_PANELS = True


def _input_rows(x, in_rows, xt_shape, to_rows):
    """``x`` as the prepared kernels read it, rows of channels in stride phases ``xt_shape =
    (sy, sx, Hq, Wq, N, C)``: ``x`` itself when it is rows already (``in_rows``) at stride 1,
    else a fresh array (cells past the edge are read by no tap) that rows are split into by
    block copies, or that ``to_rows`` fills from NCHW."""
    sy, sx = xt_shape[0], xt_shape[1]
    if in_rows and sy == sx == 1:
        return x.reshape(xt_shape)
    xt = np.empty(xt_shape, dtype=x.dtype)
    if in_rows:
        for ry in range(sy):
            for rx in range(sx):
                phase = x[ry::sy, rx::sx]
                xt[ry, rx, :phase.shape[0], :phase.shape[1]] = phase
    else:
        to_rows(x, xt)
    return xt


def _prepare_panels(x_shape, w, g: Geom, in_rows, out_rows):
    """:func:`prepare_forward`'s closure on packed panels (:func:`uses_panels`)."""
    N, C, H, W = x_shape
    F, _, kh, kw = w.shape
    OH, OW = g.OH, g.OW
    xt_shape = (g.sy, g.sx, -(-H // g.sy), -(-W // g.sx), N, C)
    taps = _taps(kh, kw, OH, OW, H, W, g)[0]
    dtype = w.dtype
    panels = pack_panels(w)  # the taps' weights, tap by tap, as each output's terms
    panels = panels.reshape(panels.shape[0], kh * kw, C, panels.shape[2])
    no_bias = np.zeros(1, dtype=dtype)
    to_rows = _to_rows_kernel(H, W, dtype.itemsize)
    from_rows = _from_rows_kernel(OH, OW, dtype.itemsize)

    def run(x, b, y, relu, scale):
        if scale is not None:  # planned networks fold their batch norms into w and b
            raise AssertionError("the packed panels take no scale")
        xt = _input_rows(x, in_rows, xt_shape, to_rows)
        yt = y if out_rows else np.empty((OH, OW, N, F), dtype=dtype)
        _conv2d_tap_panels_fwd(xt, panels, no_bias if b is None else b, b is not None, relu,
                               yt, taps)
        if not out_rows:
            from_rows(yt[None, None], y, no_bias, False, False, None)

    return run


def prepare_forward(x_shape, w, g: Geom, packed, in_rows=False, out_rows=False):
    """:func:`conv2d_forward` for inputs of ``x_shape`` with everything that depends only on
    the shapes and the weights decided once: a closure ``run(x, b, y, relu, scale)`` that
    calls the kernels and nothing else, or None where the general path is needed (see
    :func:`can_prepare`).  At batch 1 the per-call decisions of :func:`conv2d_forward` took as
    long as its kernels.

    With ``in_rows`` ``x`` is already rows of channels ``(H, W, N, C)``: at stride 1 the
    kernels' own layout, read in place, else split into its stride phases by block copies
    (runs of ``N*C`` contiguous numbers); with ``out_rows`` ``y`` is ``(OH, OW, N, F)`` and
    the result stays in that layout (the epilogue in place).  A planned network chains layers
    so, without the two layout passes between them.

    ``packed`` is :func:`pack_weights` of ``w`` (None for layers on packed panels, which
    pack their own: :func:`uses_panels`); the slabs are sized for the thread count at hand
    (another count later still computes the same result).  The caller holds BLAS
    single-threaded around ``run`` (:func:`nbconv._blas.single_threaded_blas`)."""
    N, C, H, W = x_shape
    F, _, kh, kw = w.shape
    OH, OW = g.OH, g.OW
    if not can_prepare(x_shape, w.shape, g, w.dtype):
        return None
    if uses_panels(x_shape, w.shape, g):
        return _prepare_panels(x_shape, w, g, in_rows, out_rows)
    fn, width = gemm_for(w.dtype)
    sy, sx = g.sy, g.sx
    xt_shape = (sy, sx, -(-H // sy), -(-W // sx), N, C)
    taps, full, _ = _taps(kh, kw, OH, OW, H, W, g)
    yt_shape = (1, 1, OH, OW, N, F)
    dtype = w.dtype
    threads = numba.get_num_threads()
    by_rows = plan.tapgemm_row_slabs(OH, OH * OW * N, F, threads)
    rparts, fparts = (threads, 1) if by_rows else (1, _parts(F))
    no_bias = np.zeros(1, dtype=dtype)
    to_rows, products = _to_rows_kernel(H, W, dtype.itemsize), _conv2d_tapgemm_fwd
    from_rows, epilogue = _from_rows_kernel(OH, OW, dtype.itemsize), _conv2d_rows_epilogue

    def run(x, b, y, relu, scale):
        # fresh buffers each call: the allocator reuses them, and a planned network keeps
        # no per-layer scratch alive
        xt = _input_rows(x, in_rows, xt_shape, to_rows)
        yt = y.reshape(yt_shape) if out_rows else np.empty(yt_shape, dtype=dtype)
        products(fn, width, xt, w, packed, yt[0, 0], taps, full, rparts, fparts, False)
        bias = no_bias if b is None else b
        if out_rows:
            epilogue(y.reshape(OH * OW * N, F), bias, b is not None, relu, scale)
        else:
            from_rows(yt, y, bias, b is not None, relu, scale)

    return run


def _forward_images(x, w, b, y, g: Geom, relu, scale, packed=None):
    """:func:`conv2d_forward` on all images of ``x`` at once."""
    N, C, H, W = x.shape
    F, _, kh, kw = w.shape
    OH, OW = y.shape[2], y.shape[3]
    xt = _rows(x, g.sy, g.sx)
    yt = np.empty((OH, OW, N, F), dtype=y.dtype)
    gemm = gemm_for(y.dtype)
    if gemm is None:
        yt[...] = 0
        for p, q, out, inp in _rects(OH, OW, kh, kw, H, W, g):
            yt[out] += np.matmul(xt[inp], w[:, :, p, q].T)
    else:
        # the valid taps' weights are rearranged inside the kernel, in slabs of filters
        # spread over the tasks (a NumPy transpose of resnet18's 512 -> 512 3x3 weights took
        # longer than the products on a 1x1 map); a 1x1 kernel's weights are already its
        # one (F, C) matrix
        one_tap = kh * kw == 1
        if packed is not None:
            wt, rearrange = packed, False
        else:
            wt = w.reshape(1, F, C) if one_tap else np.empty((kh * kw, F, C), dtype=y.dtype)
            rearrange = not one_tap
        with single_threaded_blas():
            threads = numba.get_num_threads()
            # the forward kernel cuts slabs of product rows: any number of map rows splits
            by_rows = plan.tapgemm_row_slabs(OH, OH * OW * N, F, threads)
            parts = (threads, 1) if by_rows else (1, _parts(F))
            taps, full, _ = _taps(kh, kw, OH, OW, H, W, g)
            _conv2d_tapgemm_fwd(gemm[0], gemm[1], xt, w, wt, yt, taps, full, *parts, rearrange)
    bias = b if b is not None else np.zeros(1, dtype=y.dtype)
    _from_rows_kernel(OH, OW, y.itemsize)(yt[None, None], y, bias, b is not None, relu, scale)


def _backward_images(dy, x, w, dx, gw, g: Geom):
    """:func:`conv2d_backward` (but the bias gradient) on all images at once; ``gw`` is
    overwritten unless None (then ``x`` may be None)."""
    N, C, H, W = (dx if gw is None else x).shape
    F, _, kh, kw = w.shape
    sy, sx = g.sy, g.sx
    xt = _rows(x, sy, sx) if gw is not None else None
    dyt = _rows(dy, 1, 1)[0, 0]  # (OH, OW, N, F)
    OH, OW = dyt.shape[0], dyt.shape[1]
    rows_shape = (sy, sx, -(-H // sy), -(-W // sx), N, C)  # that of _rows(x, sy, sx)
    dxt = np.empty(rows_shape, dtype=dy.dtype) if dx is not None else None
    gemm = gemm_for(dy.dtype)
    if gemm is None:
        if gw is not None:
            gw[...] = 0
        if dx is not None:
            dxt[...] = 0
        for p, q, out, inp in _rects(OH, OW, kh, kw, H, W, g):
            if gw is not None:
                gw[:, :, p, q] = dyt[out].reshape(-1, F).T @ xt[inp].reshape(-1, C)
            if dx is not None:
                dxt[inp] += np.matmul(dyt[out], w[:, :, p, q])
    else:
        threads = numba.get_num_threads()
        rparts, fparts = _split(OH, F, plan.tapgemm_row_slabs(OH, OH * OW * N, F * C, threads,
                                                              weight_grad=True))
        # gw's taps as (F, C), one set per row slab; then w's taps
        scratch = np.empty((rparts if gw is not None else 1, kh * kw, F, C), dtype=dy.dtype)
        taps, _, full = _taps(kh, kw, OH, OW, H, W, g)
        with single_threaded_blas():
            if gw is not None:
                _conv2d_tapgemm_bwd_weight(gemm[0], gemm[1], dyt, xt, scratch, gw, taps, rparts,
                                           fparts)
            if dx is not None:
                Hq = dxt.shape[2]
                by_rows = plan.tapgemm_row_slabs(Hq, H * W * N, C, threads)
                one_tap = kh * kw == 1
                _conv2d_tapgemm_bwd_data(gemm[0], gemm[1], dyt, w,
                                         w.reshape(1, F, C) if one_tap else scratch[0], dxt,
                                         taps, full, *_split(Hq, C, by_rows), not one_tap)
    if dx is not None:
        # every argument given, as by the forward's call: one compiled signature
        from_rows = _from_rows_kernel(H, W, dx.itemsize)
        from_rows(dxt, dx, np.zeros(1, dtype=dx.dtype), False, False, None)


def _images_per_chunk(N, per_image, itemsize):
    """Images per call so that no row-layout copy exceeds ``nbconv._config.IM2COL_MAX_BYTES``
    (read now; at least one image)."""
    return max(1, min(N, _config.IM2COL_MAX_BYTES // max(1, per_image * itemsize)))


def conv2d_forward(x, w, b, y, g: Geom, kernels=("tapgemm",), relu=False, scale=None,
                   packed=None):
    """Tap-GEMM forward convolution into the preallocated ``y`` (``groups`` must be 1); in
    the pass that writes ``y``, each filter's output times ``scale[f]`` (when given: an
    inference batch norm folded in), plus ``b[f]``, then ``max(y, 0)`` (NaN kept) with
    ``relu``.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W)
    w : ndarray, shape (F, C, kh, kw)
    b : ndarray, shape (F,), or None
    y : ndarray, shape (N, F, OH, OW)
        Output, fully overwritten: ``y[n,f,i,j] = b[f] + sum_{c,p,q} w[f,c,p,q] *
        x[n, c, i*sy-pt+p*dh, j*sx-pl+q*dw]`` over the terms inside ``x``.
    g : Geom
        Stride, top/left zero padding (bottom/right implied by OH/OW), dilation, groups.
    kernels : tuple of str
        The plan's (one family: ``("tapgemm",)``).
    relu : bool
    scale : ndarray, shape (F,), float64, or None
        Multiplies the sum before ``b`` is added.
    packed : ndarray, shape (kh*kw, F, C), or None
        ``pack_weights(w)``, made once by the caller; None rearranges ``w`` in this call.

    Examples
    --------
    >>> import numpy as np
    >>> from nbconv._checks.conv import Geom
    >>> from nbconv.conv.tapgemm import conv2d_forward
    >>> x = np.arange(4.0).reshape(1, 1, 2, 2); w = np.ones((1, 1, 3, 3))
    >>> y = np.empty((1, 1, 2, 2))
    >>> conv2d_forward(x, w, np.array([10.0]), y, Geom.of(x.shape, w.shape, padding=1))
    >>> y[0, 0]
    array([[16., 16.],
           [16., 16.]])
    """
    N, C, H, W = x.shape
    nb = _images_per_chunk(N, max(C * H * W, y[0].size), y.itemsize)
    for n0 in range(0, N, nb):
        _forward_images(x[n0:n0 + nb], w, b, y[n0:n0 + nb], g, relu, scale, packed)


def conv2d_backward(dy, x, w, dx, gw, gb, g: Geom, kernels=("tapgemm", "tapgemm"),
                    spread=False):
    """Tap-GEMM gradients of ``sum(conv2d_forward(x, w, b) * dy)`` (``groups`` must be 1).

    Parameters
    ----------
    dy : ndarray, shape (N, F, OH, OW)
    x : ndarray, shape (N, C, H, W), or None (only with ``gw`` None)
    w : ndarray, shape (F, C, kh, kw)
    dx : ndarray, shape (N, C, H, W), or None
        Overwritten with the input gradient; ``None`` skips it.
    gw : ndarray, shape (F, C, kh, kw), or None
        Overwritten with the weight gradient (0 for taps that read only padding); ``None``
        skips it.
    gb : ndarray, shape (F,), or None
        Overwritten with the bias gradient ``dy.sum((0, 2, 3))``; ``None`` skips it.
    g : Geom
        As in :func:`conv2d_forward`.
    kernels, spread
        The plan's (one family, no spreading).

    Examples
    --------
    >>> import numpy as np
    >>> from nbconv._checks.conv import Geom
    >>> from nbconv.conv.tapgemm import conv2d_backward
    >>> x = np.arange(9.0).reshape(1, 1, 3, 3); w = np.ones((1, 1, 2, 2))
    >>> dy = np.ones((1, 1, 2, 2)); dx = np.empty_like(x); gw = np.empty_like(w)
    >>> conv2d_backward(dy, x, w, dx, gw, None, Geom.of(x.shape, w.shape))
    >>> dx[0, 0]
    array([[1., 2., 1.],
           [2., 4., 2.],
           [1., 2., 1.]])
    >>> gw[0, 0]
    array([[ 8., 12.],
           [20., 24.]])
    """
    N, C, H, W = (dx if gw is None else x).shape
    if gb is not None:
        _conv2d_im2col_bwd_bias(dy, gb)
    nb = _images_per_chunk(N, max(C * H * W, dy[0].size), dy.itemsize)
    part = np.empty_like(gw) if nb < N and gw is not None else None
    for n0 in range(0, N, nb):
        target = gw if n0 == 0 else part
        _backward_images(dy[n0:n0 + nb], None if x is None else x[n0:n0 + nb], w,
                         None if dx is None else dx[n0:n0 + nb], target, g)
        if n0 and gw is not None:
            gw += part

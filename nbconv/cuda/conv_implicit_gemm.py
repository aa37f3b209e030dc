"""The device's implicit-GEMM convolution driver: the kernels of
:mod:`nbconv.cuda.kernels.conv2d_im2col` (the im2col columns gathered straight into
shared-memory tiles), with the interface of the host drivers (see
:data:`nbconv.cuda.conv_drivers.DRIVERS`).

The tiles hold zeros where a tap reads the padding and multiply them like any other value, so
``0 * inf`` can leave NaN where the definition has no term (:data:`EXACT` is False): the engine
has the direct kernels recompute the non-finite results.
"""

from __future__ import annotations

from .._checks.conv import Geom
from ._plumbing import _empty, _kernels, _zeros

__all__ = ["EXACT", "conv2d_forward", "conv2d_backward"]

#: whether inf and NaN reach exactly the outputs whose sums hold them (no term of the padding)
EXACT = False


def conv2d_forward(x, w, b, y, g: Geom):
    """``y[:] = conv(x, w) + b`` (``b`` (F,) or None) for C-contiguous device arrays of one
    dtype, ``x (N, C, H, W)``, ``w (F, C // groups, kh, kw)``, ``y (N, F, OH, OW)`` non-empty;
    implicit zero padding ``g.pt``/``g.pl`` on the top/left."""
    F, Cg, kh, kw = w.shape
    wt = _empty((kh, kw, Cg, F), y.dtype)  # the weights tap-major, for coalesced loads
    b = b if b is not None else _zeros((F,), y.dtype)
    _kernels("conv2d_im2col")._conv2d_im2col_fwd(x, w, wt, b, y, g.sy, g.sx, g.pt, g.pl, g.dh,
                                                 g.dw, g.groups)


def conv2d_backward(dy, x, w, dx, gw, gb, g: Geom):
    """``dx`` (None: not wanted), ``gw`` and ``gb`` (None: no bias) of the convolution of
    :func:`conv2d_forward`, written into the preallocated device arrays."""
    k = _kernels("conv2d_im2col")
    F, Cg, kh, kw = w.shape
    dt = gw.dtype
    if dx is not None:
        wt = _empty((kh, kw, F, Cg), dt)
        k._conv2d_im2col_bwd_data(dy, w, wt, dx, g.sy, g.sx, g.pt, g.pl, g.dh, g.dw, g.groups)
    # split-K partials (S, F, P), the bias gradient as column P - 1 (see the kernels)
    K = dy.shape[0] * dy.shape[2] * dy.shape[3]
    P = gw.size // F + int(gb is not None)
    part = _empty((k.wgrad_splits(K, F, P, g.groups), F, P), dt)
    gbuf = gb if gb is not None else _empty((1,), dt)
    k._conv2d_im2col_bwd_weight(dy, x, part, gw, gbuf, g.sy, g.sx, g.pt, g.pl, g.dh, g.dw,
                                g.groups)

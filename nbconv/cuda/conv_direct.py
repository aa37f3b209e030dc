"""The device's direct convolution driver: the kernels of
:mod:`nbconv.cuda.kernels.conv2d_direct` (a thread per output or input element, a block per
weight element), with the interface of the host drivers (see
:data:`nbconv.cuda.conv_drivers.DRIVERS`).

These kernels read only the taps that land inside ``x``, so inf and NaN follow the definition
(:data:`EXACT`); :func:`exact_forward` and :func:`exact_backward` run them again on the
non-finite elements another driver left.
"""

from __future__ import annotations

from .._checks.conv import Geom
from ._plumbing import _block, _empty, _grid, _kernels, _zero, _zeros

__all__ = ["EXACT", "conv2d_forward", "conv2d_backward", "exact_forward", "exact_backward"]

#: whether inf and NaN reach exactly the outputs whose sums hold them (no term of the padding)
EXACT = True


def _bias(b, y):
    return b if b is not None else _zeros((y.shape[1],), y.dtype)


def conv2d_forward(x, w, b, y, g: Geom, only_nonfinite=False):
    """``y[:] = conv(x, w) + b`` (``b`` (F,) or None) for C-contiguous device arrays of one
    dtype, ``x (N, C, H, W)``, ``w (F, C // groups, kh, kw)``, ``y (N, F, OH, OW)`` non-empty;
    implicit zero padding ``g.pt``/``g.pl`` on the top/left."""
    _kernels("conv2d_direct")._conv2d_direct_fwd[_grid(y.size)](
        x, w, _bias(b, y), y, g.sy, g.sx, g.pt, g.pl, g.dh, g.dw, g.groups, int(only_nonfinite))


def conv2d_backward(dy, x, w, dx, gw, gb, g: Geom):
    """``dx`` (None: not wanted), ``gw`` and ``gb`` (None: no bias) of the convolution of
    :func:`conv2d_forward`, written into the preallocated device arrays."""
    k = _kernels("conv2d_direct")
    if dx is not None:
        k._conv2d_direct_bwd_data[_grid(dx.size)](dy, w, dx, g.sy, g.sx, g.pt, g.pl, g.dh, g.dw,
                                                  g.groups, _zero(dx.dtype), 0)
    F = w.shape[0]
    gbuf = gb if gb is not None else _empty((F,), gw.dtype)
    k._conv2d_direct_bwd_weight[gw.size + (F if gb is not None else 0), _block()](
        dy, x, gw, gbuf, int(gb is not None), g.sy, g.sx, g.pt, g.pl, g.dh, g.dw, g.groups, 0)


def exact_forward(x, w, b, y, g: Geom):
    """The elements of ``y`` that hold inf or NaN, recomputed by the direct kernel (which reads
    only the taps inside ``x``); the others are left as they are."""
    conv2d_forward(x, w, b, y, g, only_nonfinite=True)


def exact_backward(dy, x, w, dx, gw, g: Geom):
    """The elements of ``dx`` (None: not wanted) and ``gw`` that hold inf or NaN, recomputed
    by the direct kernels (see :func:`exact_forward`).  The bias gradient sums ``dy`` alone,
    never the padding, so every driver's is exact."""
    k = _kernels("conv2d_direct")
    if dx is not None:
        k._conv2d_direct_bwd_data[_grid(dx.size)](dy, w, dx, g.sy, g.sx, g.pt, g.pl, g.dh, g.dw,
                                                  g.groups, _zero(dx.dtype), 1)
    gbuf = _empty((1,), gw.dtype)  # with_bias 0: never written
    k._conv2d_direct_bwd_weight[gw.size, _block()](dy, x, gw, gbuf, 0, g.sy, g.sx, g.pt, g.pl,
                                                   g.dh, g.dw, g.groups, 1)

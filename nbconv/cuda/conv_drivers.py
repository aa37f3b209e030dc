"""The device's convolution driver table and the device mechanisms of the engine's stages.

:func:`nbconv.conv.engine.device_forward` and :func:`~nbconv.conv.engine.device_backward`
run a device plan (:mod:`nbconv.conv.convplan`, ``device="cuda"``) with what this module
gives them: the driver of the plan's algorithm (:data:`DRIVERS`), device allocation, the
padding of a non-zero padding mode and its adjoint (gather kernels), the copies of the plan's
kept taps, and the recomputation of non-finite results.  The engine decides when each runs.
"""

from __future__ import annotations

import numpy as np

from .._checks.conv import NP_PAD_MODE, Geom
from . import conv_direct, conv_implicit_gemm
from ._plumbing import _copy, _empty, _grid, _kernels, _to_dev, _zero, _zeros

__all__ = ["DRIVERS", "empty", "zeros", "pad_input", "fold_padding", "take_taps", "put_taps",
           "exact_forward", "exact_backward"]

#: the device driver of each device algorithm (``plan.DEVICE_ALGORITHMS``):
#: conv2d_forward(x, w, b, y, g), conv2d_backward(dy, x, w, dx, gw, gb, g) (``g`` the
#: :class:`~nbconv._checks.conv.Geom` after the engine's padding stage) and EXACT (whether
#: inf and NaN follow the definition without the engine's recomputation)
DRIVERS = {"direct": conv_direct, "implicit-gemm": conv_implicit_gemm}

empty = _empty
zeros = _zeros
exact_forward = conv_direct.exact_forward
exact_backward = conv_direct.exact_backward


def _pad_maps(H, W, g: Geom):
    """The input row and column each padded row and column copies (the pads of an arange),
    on the device."""
    mode = NP_PAD_MODE[g.mode]
    src_h = np.pad(np.arange(H, dtype=np.int64), (g.pt, g.pb), mode=mode)
    src_w = np.pad(np.arange(W, dtype=np.int64), (g.pl, g.pr), mode=mode)
    return _to_dev(src_h), _to_dev(src_w)


def pad_input(x, g: Geom):
    """``x`` padded explicitly for the non-zero padding mode of ``g`` (a gather kernel): the
    device mechanism of the engine's padding stage (:func:`nbconv.conv.engine._padded`)."""
    N, C, H, W = x.shape
    src_h, src_w = _pad_maps(H, W, g)
    xp = _empty((N, C, H + g.pt + g.pb, W + g.pl + g.pr), x.dtype)
    _kernels("conv2d_direct")._pad_gather[_grid(xp.size)](x, src_h, src_w, xp)
    return xp


def fold_padding(dxp, x_shape, g: Geom):
    """The adjoint of :func:`pad_input`: each padded pixel's gradient added to its source
    pixel's (a gather kernel, no atomics)."""
    H, W = x_shape[2], x_shape[3]
    src_h, src_w = _pad_maps(H, W, g)
    dx = _empty(x_shape, dxp.dtype)
    _kernels("conv2d_direct")._pad_fold[_grid(dx.size)](dxp, src_h, src_w, dx,
                                                        _zero(dxp.dtype))
    return dx


def take_taps(weight, taps):
    """The weights of the plan's kept taps ``(r0, r1, c0, c1)``, copied C-contiguous on the
    device (``weight`` itself for None: every tap)."""
    if taps is None:
        return weight
    r0, r1, c0, c1 = taps
    return _copy(weight[:, :, r0:r1, c0:c1], weight.dtype)


def put_taps(gw, full_shape, taps):
    """The weight gradient of the whole kernel from that of the kept taps: zero for the taps
    that read only zero padding (``gw`` itself for None)."""
    if taps is None:
        return gw
    r0, r1, c0, c1 = taps
    full = _zeros(full_shape, gw.dtype)
    _kernels("_copy").COPY[4][_grid(gw.size)](gw, full[:, :, r0:r1, c0:c1])
    return full

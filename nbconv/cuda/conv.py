"""Device convolutions: ``conv2d``/``conv1d`` and their backward passes on the direct or the
implicit-GEMM CUDA kernels (:func:`_tiled` chooses), with the host's argument checks."""

from __future__ import annotations

import numpy as np

from .._checks import check_ndim
from .._checks.conv import (
    NP_PAD_MODE,
    W_LAYOUT,
    X_LAYOUT,
    check_algorithm,
    check_bias,
    check_dy,
    conv1d_args,
    geometry,
)
from .._checks.conv import want_bias as _want_bias
from .._dispatch import implements, is_device_array
from ._plumbing import _block, _dev, _empty, _grid, _kernels, _to_dev, _zero, _zeros


def _pad_maps(x_hw, g):
    mode = NP_PAD_MODE[g.mode]
    H, W = x_hw
    src_h = np.pad(np.arange(H, dtype=np.int64), (g.pt, g.pb), mode=mode)
    src_w = np.pad(np.arange(W, dtype=np.int64), (g.pl, g.pr), mode=mode)
    return _to_dev(src_h), _to_dev(src_w)


def _pad_input(x, g):
    if g.mode == "zeros":
        return x, g.pt, g.pl, None
    N, C, H, W = x.shape
    maps = _pad_maps((H, W), g)
    xp = _empty((N, C, H + g.pt + g.pb, W + g.pl + g.pr), x.dtype)
    _kernels("conv2d_direct")._pad_gather[_grid(xp.size)](x, maps[0], maps[1], xp)
    return xp, 0, 0, maps


def _tiled(algorithm, w, g):
    """True where the device convolution runs the implicit-GEMM (tiled) kernels of
    :mod:`nbconv.cuda.kernels.conv2d_im2col` rather than the direct ones.

    ``"direct"`` runs the direct kernels, ``"im2col"``, ``"tapgemm"`` and ``"winograd"`` (no
    Winograd or tap-GEMM kernels on the device) the tiled ones. The ``"auto"`` rule (from the
    kernels' shapes, not yet from GPU timings): tiled when every group's GEMM is big enough to
    fill a tile, i.e. at least 8 filters and 8 input channels per group (the rows of the forward
    and weight- gradient products, the data gradient's rows and its per-tap reduction) and a
    reduction ``(C/groups)*kh*kw`` of at least 32 terms. Depthwise and narrow grouped layers and
    the first layers of a network (1-3 input channels, LeNet's 6 -> 16) stay on the direct
    kernels, whose thread-per-output loops waste nothing on such shapes while a 64x64 tile would
    sit mostly empty.
    """
    if algorithm == "direct" or g.groups > 65535:  # the grid's z axis holds the groups
        return False
    if algorithm != "auto":
        return True
    F, Cg, kh, kw = w.shape
    return min(F // g.groups, Cg) >= 8 and Cg * kh * kw >= 32


def _conv_fwd(x, w, bias, g, algorithm="auto"):
    xp, pt, pl, _ = _pad_input(x, g)
    y = _empty((x.shape[0], w.shape[0], g.OH, g.OW), x.dtype)
    b = bias if bias is not None else _zeros((w.shape[0],), x.dtype)
    if not y.size:
        return y
    if _tiled(algorithm, w, g):
        F, Cg, kh, kw = w.shape
        wt = _empty((kh, kw, Cg, F), x.dtype)  # the weights tap-major, for coalesced loads
        _kernels("conv2d_im2col")._conv2d_im2col_fwd(xp, w, wt, b, y, g.sy, g.sx, pt, pl,
                                                     g.dh, g.dw, g.groups)
    else:
        _kernels("conv2d_direct")._conv2d_direct_fwd[_grid(y.size)](
            xp, w, b, y, g.sy, g.sx, pt, pl, g.dh, g.dw, g.groups)
    return y


def _conv_bwd(dy, x, w, g, want_bias, need_dx, algorithm="auto"):
    k = _kernels("conv2d_direct")
    tiled = _tiled(algorithm, w, g)
    kt = _kernels("conv2d_im2col") if tiled else None
    xp, pt, pl, maps = _pad_input(x, g)
    dt = x.dtype
    dx = None
    if need_dx:
        dxp = _empty(xp.shape, dt)
        if dxp.size and tiled:
            F, Cg, kh, kw = w.shape
            wt = _empty((kh, kw, F, Cg), dt)
            kt._conv2d_im2col_bwd_data(dy, w, wt, dxp, g.sy, g.sx, pt, pl, g.dh, g.dw,
                                       g.groups)
        elif dxp.size:
            k._conv2d_direct_bwd_data[_grid(dxp.size)](dy, w, dxp, g.sy, g.sx, pt, pl, g.dh,
                                                       g.dw, g.groups, _zero(dt))
        dx = dxp
        if maps is not None:
            dx = _empty(x.shape, dt)
            k._pad_fold[_grid(dx.size)](dxp, maps[0], maps[1], dx, _zero(dt))
    gw = _empty(w.shape, dt)
    F = w.shape[0]
    gb = _empty((F,), dt) if want_bias else _empty((1,), dt)
    if tiled:
        # split-K partials (S, F, P), the bias gradient as column P - 1 (see the kernels)
        K = dy.shape[0] * g.OH * g.OW
        P = gw.size // F + int(want_bias)
        part = _empty((kt.wgrad_splits(K, F, P, g.groups), F, P), dt)
        kt._conv2d_im2col_bwd_weight(dy, xp, part, gw, gb, g.sy, g.sx, pt, pl, g.dh, g.dw,
                                     g.groups)
        return dx, gw, (gb if want_bias else None)
    nblocks = gw.size + (F if want_bias else 0)
    if nblocks:
        k._conv2d_direct_bwd_weight[nblocks, _block()](dy, xp, gw, gb, int(want_bias), g.sy,
                                                        g.sx, pt, pl, g.dh, g.dw, g.groups)
    return dx, gw, (gb if want_bias else None)


def _check_algorithm(op, algorithm, w, g):
    """The host's checks of ``algorithm`` (a known name; Winograd's and tap-GEMM's
    geometry).  Which kernels run on the GPU is :func:`_tiled`'s choice."""
    check_algorithm(op, algorithm, w.shape[2], w.shape[3], g)


@implements
def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
           padding_mode="zeros", algorithm="auto"):
    op = "conv2d"
    x = _dev(op, "x", x)
    check_ndim(op, "x", x, 4, X_LAYOUT)
    weight = _dev(op, "weight", weight, x.dtype)
    check_ndim(op, "weight", weight, 4, W_LAYOUT)
    desc = f"x shape {tuple(x.shape)}, weight shape {tuple(weight.shape)}"
    g = geometry(op, x.shape, weight.shape, stride, padding, dilation, groups, padding_mode,
                 desc)
    bias = check_bias(op, bias, x.dtype, weight.shape[0], desc, as_array=_dev)
    _check_algorithm(op, algorithm, weight, g)
    return _conv_fwd(x, weight, bias, g, algorithm)


@implements
def conv2d_backward(dy, x, weight, stride=1, padding=0, dilation=1, groups=1,
                    padding_mode="zeros", bias=True, *, algorithm="auto", need_dx=True):
    op = "conv2d_backward"
    x = _dev(op, "x", x)
    check_ndim(op, "x", x, 4, X_LAYOUT)
    weight = _dev(op, "weight", weight, x.dtype)
    check_ndim(op, "weight", weight, 4, W_LAYOUT)
    dy = _dev(op, "dy", dy, x.dtype)
    check_ndim(op, "dy", dy, 4, "(N, F, OH, OW)")
    desc = (f"dy shape {tuple(dy.shape)}, x shape {tuple(x.shape)}, "
            f"weight shape {tuple(weight.shape)}")
    g = geometry(op, x.shape, weight.shape, stride, padding, dilation, groups, padding_mode,
                 desc)
    check_dy(op, dy, (x.shape[0], weight.shape[0], g.OH, g.OW), desc)
    _check_algorithm(op, algorithm, weight, g)
    want_bias = _want_bias(bias) if not is_device_array(bias) else True
    return _conv_bwd(dy, x, weight, g, want_bias, bool(need_dx), algorithm)


def _as4(a):
    return a.reshape(a.shape[0], a.shape[1], 1, a.shape[2])


def _as3(a):
    return a.reshape(a.shape[0], a.shape[1], a.shape[3])


@implements
def conv1d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
           padding_mode="zeros", *, algorithm="auto"):
    op = "conv1d"
    x = _dev(op, "x", x)
    check_ndim(op, "x", x, 3, "(N, C, L)")
    weight = _dev(op, "weight", weight, x.dtype)
    check_ndim(op, "weight", weight, 3, "(F, C // groups, k)")
    desc = f"x shape {tuple(x.shape)}, weight shape {tuple(weight.shape)}"
    s2, p2, d2 = conv1d_args(op, stride, padding, dilation)
    x4, w4 = _as4(x), _as4(weight)
    g = geometry(op, x4.shape, w4.shape, s2, p2, d2, groups, padding_mode, desc,
                 axes=("(height 1)", "L"))
    bias = check_bias(op, bias, x.dtype, weight.shape[0], desc, as_array=_dev)
    _check_algorithm(op, algorithm, w4, g)
    return _as3(_conv_fwd(x4, w4, bias, g, algorithm))


@implements
def conv1d_backward(dy, x, weight, stride=1, padding=0, dilation=1, groups=1,
                    padding_mode="zeros", bias=True, *, algorithm="auto", need_dx=True):
    op = "conv1d_backward"
    x = _dev(op, "x", x)
    check_ndim(op, "x", x, 3, "(N, C, L)")
    weight = _dev(op, "weight", weight, x.dtype)
    check_ndim(op, "weight", weight, 3, "(F, C // groups, k)")
    dy = _dev(op, "dy", dy, x.dtype)
    check_ndim(op, "dy", dy, 3, "(N, F, OL)")
    desc = (f"dy shape {tuple(dy.shape)}, x shape {tuple(x.shape)}, "
            f"weight shape {tuple(weight.shape)}")
    s2, p2, d2 = conv1d_args(op, stride, padding, dilation)
    x4, w4 = _as4(x), _as4(weight)
    g = geometry(op, x4.shape, w4.shape, s2, p2, d2, groups, padding_mode, desc,
                 axes=("(height 1)", "L"))
    check_dy(op, dy, (x.shape[0], weight.shape[0], g.OW), desc)
    _check_algorithm(op, algorithm, w4, g)
    want_bias = _want_bias(bias) if not is_device_array(bias) else True
    dx, gw, gb = _conv_bwd(_as4(dy), x4, w4, g, want_bias, bool(need_dx), algorithm)
    return (None if dx is None else _as3(dx)), _as3(gw), gb


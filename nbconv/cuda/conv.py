"""Device convolutions: ``conv2d``/``conv1d`` and their backward passes on CUDA device arrays,
with the host's argument checks; the convolution engine runs them
(:func:`nbconv.conv.engine.device_forward`: the device plan picks the direct or the
implicit-GEMM kernels, see ``nbconv.conv.plan.DEVICE_RULES``).

The layers' internal entries (``_conv2d_layer`` and the like, see
:mod:`nbconv.functional.conv`) have device twins here: they take the
:class:`~nbconv._checks.conv.Hyper` the layer validated when it was built."""

from __future__ import annotations

from .._checks import check_ndim
from .._checks.conv import (
    AXES,
    AXES_1D,
    W_LAYOUT,
    X_LAYOUT,
    Hyper,
    check_algorithm,
    check_bias,
    check_dy,
    conv1d_args,
    hyper,
    shaped,
)
from .._checks.conv import want_bias as _want_bias
from .._dispatch import implements, is_device_array
from ..conv import engine
from ._plumbing import _dev

_LAYOUTS = {2: (X_LAYOUT, W_LAYOUT, "(N, F, OH, OW)"),
            1: ("(N, C, L)", "(F, C // groups, k)", "(N, F, OL)")}


def _as4(a):
    return a.reshape(a.shape[0], a.shape[1], 1, a.shape[2])


def _as3(a):
    return a.reshape(a.shape[0], a.shape[1], a.shape[3])


def _geometry(op, x, weight, h, desc, nd):
    """The :class:`~nbconv._checks.conv.Geom` of 4-D ``x`` and ``weight``; ``h`` validated
    already (a layer's) or the raw hyperparameters, validated here."""
    if not isinstance(h, Hyper):
        stride, padding, dilation, groups, padding_mode = h
        if nd == 1:
            stride, padding, dilation = conv1d_args(op, stride, padding, dilation)
        h = hyper(op, stride, padding, dilation, groups, padding_mode, desc)
    return shaped(op, x.shape, weight.shape, h, desc, AXES if nd == 2 else AXES_1D)


def _forward(x, weight, bias, h, algorithm, nd=2):
    """The device convolution (``nd=1``: of sequences, as images of height 1)."""
    op = "conv2d" if nd == 2 else "conv1d"
    x_layout, w_layout, _ = _LAYOUTS[nd]
    x = _dev(op, "x", x)
    check_ndim(op, "x", x, nd + 2, x_layout)
    weight = _dev(op, "weight", weight, x.dtype)
    check_ndim(op, "weight", weight, nd + 2, w_layout)
    desc = f"x shape {tuple(x.shape)}, weight shape {tuple(weight.shape)}"
    if nd == 1:
        x, weight = _as4(x), _as4(weight)
    g = _geometry(op, x, weight, h, desc, nd)
    bias = check_bias(op, bias, x.dtype, weight.shape[0], desc, as_array=_dev)
    check_algorithm(op, algorithm, weight.shape[2], weight.shape[3], g)
    y = engine.device_forward(op, x, weight, bias, g, algorithm)
    return y if nd == 2 else _as3(y)


def _backward(dy, x, weight, h, bias, algorithm, need_dx, nd=2):
    """The device convolution's gradients (``nd=1``: of sequences)."""
    op = "conv2d_backward" if nd == 2 else "conv1d_backward"
    x_layout, w_layout, y_layout = _LAYOUTS[nd]
    x = _dev(op, "x", x)
    check_ndim(op, "x", x, nd + 2, x_layout)
    weight = _dev(op, "weight", weight, x.dtype)
    check_ndim(op, "weight", weight, nd + 2, w_layout)
    dy = _dev(op, "dy", dy, x.dtype)
    check_ndim(op, "dy", dy, nd + 2, y_layout)
    desc = (f"dy shape {tuple(dy.shape)}, x shape {tuple(x.shape)}, "
            f"weight shape {tuple(weight.shape)}")
    x4, w4 = (x, weight) if nd == 2 else (_as4(x), _as4(weight))
    g = _geometry(op, x4, w4, h, desc, nd)
    out = (x.shape[0], weight.shape[0], g.OH, g.OW)
    check_dy(op, dy, out if nd == 2 else (*out[:2], g.OW), desc)
    # the host's checks of ``algorithm``; which kernels run on the GPU is the device plan's
    check_algorithm(op, algorithm, w4.shape[2], w4.shape[3], g)
    want_bias = _want_bias(bias) if not is_device_array(bias) else True
    dx, gw, gb = engine.device_backward(op, dy if nd == 2 else _as4(dy), x4, w4, g, want_bias,
                                        bool(need_dx), algorithm)
    if nd == 1:
        dx, gw = (None if dx is None else _as3(dx)), _as3(gw)
    return dx, gw, gb


@implements
def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
           padding_mode="zeros", algorithm="auto"):
    return _forward(x, weight, bias, (stride, padding, dilation, groups, padding_mode),
                    algorithm)


@implements
def conv2d_backward(dy, x, weight, stride=1, padding=0, dilation=1, groups=1,
                    padding_mode="zeros", bias=True, *, algorithm="auto", need_dx=True):
    return _backward(dy, x, weight, (stride, padding, dilation, groups, padding_mode), bias,
                     algorithm, need_dx)


@implements
def conv1d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
           padding_mode="zeros", *, algorithm="auto"):
    return _forward(x, weight, bias, (stride, padding, dilation, groups, padding_mode),
                    algorithm, nd=1)


@implements
def conv1d_backward(dy, x, weight, stride=1, padding=0, dilation=1, groups=1,
                    padding_mode="zeros", bias=True, *, algorithm="auto", need_dx=True):
    return _backward(dy, x, weight, (stride, padding, dilation, groups, padding_mode), bias,
                     algorithm, need_dx, nd=1)


@implements
def _conv2d_layer(x, weight, bias, *, hyper):
    return _forward(x, weight, bias, hyper, "auto")


@implements
def _conv2d_backward_layer(dy, x, weight, *, hyper, bias, need_dx):
    return _backward(dy, x, weight, hyper, bias, "auto", need_dx)


@implements
def _conv1d_layer(x, weight, bias, *, hyper):
    return _forward(x, weight, bias, hyper, "auto", nd=1)


@implements
def _conv1d_backward_layer(dy, x, weight, *, hyper, bias, need_dx):
    return _backward(dy, x, weight, hyper, bias, "auto", need_dx, nd=1)

"""Device convolutions: ``conv2d``/``conv1d`` and their backward passes on CUDA device arrays,
with the host's argument checks; the convolution engine runs them
(:func:`nbconv.conv.engine.device_forward`: the device plan picks the direct or the
implicit-GEMM kernels, see ``nbconv.conv.plan.DEVICE_RULES``)."""

from __future__ import annotations

from .._checks import check_ndim
from .._checks.conv import (
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
from ..conv import engine
from ._plumbing import _dev


def _check_algorithm(op, algorithm, w, g):
    """The host's checks of ``algorithm`` (a known name; Winograd's and tap-GEMM's
    geometry).  Which kernels run on the GPU is the device plan's choice."""
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
    return engine.device_forward(op, x, weight, bias, g, algorithm)


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
    return engine.device_backward(op, dy, x, weight, g, want_bias, bool(need_dx), algorithm)


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
    return _as3(engine.device_forward(op, x4, w4, bias, g, algorithm))


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
    dx, gw, gb = engine.device_backward(op, _as4(dy), x4, w4, g, want_bias, bool(need_dx),
                                        algorithm)
    return (None if dx is None else _as3(dx)), _as3(gw), gb


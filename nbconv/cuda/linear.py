"""Device fully connected layer: ``linear`` and ``linear_backward`` (tiled matrix products)."""

from __future__ import annotations

import math

from .._checks.linear import check_linear_backward, check_x_weight
from .._dispatch import implements
from ._plumbing import _dev, _empty, _kernels, _Meta, _zeros


def _matmul(a, b, c, ta, tb):
    _kernels("linear")._matmul(a, b, c, ta, tb)


@implements
def linear(x, weight, bias=None):
    op = "linear"
    x = _dev(op, "x", x)
    weight = _dev(op, "weight", weight, x.dtype)
    check_x_weight(op, _Meta(x), _Meta(weight))
    out_f, in_f = weight.shape
    if bias is not None:
        bias = _dev(op, "bias", bias, x.dtype)
        if tuple(bias.shape) != (out_f,):
            raise ValueError(
                f"{op}: argument 'bias' must have shape ({out_f},) = (out_features,), got "
                f"{tuple(bias.shape)} (weight shape {tuple(weight.shape)})"
            )
    M = math.prod(x.shape[:-1])
    x2 = x.reshape(M, in_f)
    y2 = _empty((M, out_f), x.dtype)
    _matmul(x2, weight, y2, False, True)
    if bias is not None and y2.size:
        _kernels("linear")._linear_bias_fwd(y2, bias)
    return y2.reshape(*(tuple(x.shape[:-1]) + (out_f,)))


@implements
def linear_backward(dy, x, weight, bias=True):
    op = "linear_backward"
    x = _dev(op, "x", x)
    weight = _dev(op, "weight", weight, x.dtype)
    dy = _dev(op, "dy", dy, x.dtype)
    want_bias = check_linear_backward(op, dy, _Meta(x), _Meta(weight), bias)
    out_f, in_f = weight.shape
    M = math.prod(x.shape[:-1])
    x2 = x.reshape(M, in_f)
    dy2 = dy.reshape(M, out_f)
    dx2 = _empty((M, in_f), x.dtype)
    dweight = _empty((out_f, in_f), x.dtype)
    _matmul(dy2, weight, dx2, False, False)
    _matmul(dy2, x2, dweight, True, False)
    dbias = None
    if want_bias:
        dbias = _zeros((out_f,), x.dtype)
        if M and out_f:
            _kernels("linear")._linear_bias_bwd(dy2, dbias)
    return dx2.reshape(*tuple(x.shape)), dweight, dbias


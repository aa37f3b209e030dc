"""Device activations: ReLU, leaky ReLU, sigmoid, tanh, softmax, log-softmax, dropout."""

from __future__ import annotations

import math

import numpy as np

from .._checks import check_bool, check_real
from .._checks.activation import check_slope, dropout_generator, softmax_axis
from .._dispatch import implements
from ._plumbing import _copy, _dev, _empty, _fill, _grid, _kernels, _to_dev, _zeros


def _unary(name, op, x, *args):
    x = _dev(op, "x", x)
    y = _empty(x.shape, x.dtype)
    if x.size:
        getattr(_kernels("activations"), name)[_grid(x.size)](
            x.reshape(x.size), y.reshape(y.size), *args
        )
    return y


def _pair_same_shape(op, dy, other, other_name):
    other = _dev(op, other_name, other)
    dy = _dev(op, "dy", dy, other.dtype)
    if tuple(dy.shape) != tuple(other.shape):
        raise ValueError(
            f"{op}: argument 'dy' has shape {tuple(dy.shape)} but '{other_name}' has shape "
            f"{tuple(other.shape)}; they must be equal"
        )
    return dy, other


def _binary(name, op, dy, other, other_name, *args):
    dy, other = _pair_same_shape(op, dy, other, other_name)
    dx = _empty(other.shape, other.dtype)
    if dx.size:
        n = dx.size
        getattr(_kernels("activations"), name)[_grid(n)](
            dy.reshape(n), other.reshape(n), dx.reshape(n), *args
        )
    return dx


@implements
def relu(x):
    return _unary("_relu_fwd", "relu", x)


@implements
def relu_backward(dy, x):
    return _binary("_relu_bwd", "relu_backward", dy, x, "x")


@implements
def leaky_relu(x, negative_slope=0.01):
    op = "leaky_relu"
    return _unary("_leaky_relu_fwd", op, x, check_slope(op, negative_slope))


@implements
def leaky_relu_backward(dy, x, negative_slope=0.01):
    op = "leaky_relu_backward"
    return _binary("_leaky_relu_bwd", op, dy, x, "x", check_slope(op, negative_slope))


@implements
def sigmoid(x):
    return _unary("_sigmoid_fwd", "sigmoid", x)


@implements
def sigmoid_backward(dy, y):
    return _binary("_sigmoid_bwd", "sigmoid_backward", dy, y, "y")


@implements
def tanh(x):
    return _unary("_tanh_fwd", "tanh", x)


@implements
def tanh_backward(dy, y):
    return _binary("_tanh_bwd", "tanh_backward", dy, y, "y")


def _as3d(a, axis):
    shape = tuple(a.shape)
    return a.reshape(math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1:]))


def _softmax_fwd(op, x, axis, log):
    x = _dev(op, "x", x)
    if x.ndim == 0:
        raise ValueError(f"{op}: argument 'x' must be at least 1-D, got shape ()")
    axis = softmax_axis(op, axis, x.ndim, x.shape)
    y = _empty(x.shape, x.dtype)
    if x.size:
        x3, y3 = _as3d(x, axis), _as3d(y, axis)
        _kernels("activations")._softmax_fwd[_grid(x3.shape[0] * x3.shape[2])](x3, y3, log)
    return y


def _softmax_bwd(op, dy, y, axis, log):
    dy, y = _pair_same_shape(op, dy, y, "y")
    if y.ndim == 0:
        raise ValueError(f"{op}: argument 'y' must be at least 1-D, got shape ()")
    axis = softmax_axis(op, axis, y.ndim, y.shape)
    dx = _empty(y.shape, y.dtype)
    if y.size:
        y3 = _as3d(y, axis)
        _kernels("activations")._softmax_bwd[_grid(y3.shape[0] * y3.shape[2])](
            _as3d(dy, axis), y3, _as3d(dx, axis), log
        )
    return dx


@implements
def softmax(x, axis=-1):
    return _softmax_fwd("softmax", x, axis, 0)


@implements
def softmax_backward(dy, y, axis=-1):
    return _softmax_bwd("softmax_backward", dy, y, axis, 0)


@implements
def log_softmax(x, axis=-1):
    return _softmax_fwd("log_softmax", x, axis, 1)


@implements
def log_softmax_backward(dy, y, axis=-1):
    return _softmax_bwd("log_softmax_backward", dy, y, axis, 1)


def _copy_same(x):
    return _copy(x, x.dtype)


@implements
def dropout(x, p=0.5, training=True, rng=None, return_mask=False):
    op = "dropout"
    x = _dev(op, "x", x)
    p = check_real(op, "p", p, 0.0, 1.0)
    training = check_bool(op, "training", training)
    return_mask = check_bool(op, "return_mask", return_mask)
    dt = np.dtype(x.dtype)
    if not training or p == 0.0:
        y = _copy_same(x)
        mask = _fill(_empty(x.shape, dt), 1) if return_mask else None
    elif p == 1.0:
        dropout_generator(op, rng)
        mask = _zeros(x.shape, dt)
        y = _empty(x.shape, dt)
        if x.size:  # x * 0, not zeros: NaN and inf give NaN (as the host version)
            n = x.size
            _kernels("activations")._mul_fwd[_grid(n)](x.reshape(n), mask.reshape(n),
                                                       y.reshape(n))
        mask = mask if return_mask else None
    else:
        gen = dropout_generator(op, rng)
        keep = gen.random(tuple(x.shape)) >= p
        host_mask = keep.astype(dt)
        host_mask *= dt.type(1.0 / (1.0 - p))
        mask = _to_dev(host_mask)
        y = _empty(x.shape, dt)
        if x.size:
            n = x.size
            _kernels("activations")._mul_fwd[_grid(n)](x.reshape(n), mask.reshape(n),
                                                       y.reshape(n))
    return (y, mask) if return_mask else y


@implements
def dropout_backward(dy, mask):
    return _binary("_mul_fwd", "dropout_backward", dy, mask, "mask")


"""Device normalisation: batch norm (training and eval) and local response norm."""

from __future__ import annotations

import math

import numpy as np

from .._checks import check_bool, check_int, check_real
from .._checks.norm import bn_hyper, check_bn_x, check_channel_vec, check_running
from .._dispatch import implements, is_device_array
from ._plumbing import (
    _as_numba,
    _astype,
    _block,
    _dev,
    _empty,
    _grid,
    _is_c_contiguous,
    _kernels,
    _zeros,
)


def _bn_x(op, name, x, dtype=None):
    return check_bn_x(op, name, _dev(op, name, x, dtype))


def _channel_vec(op, name, v, x):
    return check_channel_vec(op, name, _dev(op, name, v, x.dtype), x.shape[1], x.shape)


def _running_buffer(op, name, v, C, x_shape):
    """The device twin of ``norm._running_buffer``: a contiguous device array instead of a
    writeable ndarray; the dtype and shape checks are shared."""

    if not is_device_array(v):
        raise TypeError(
            f"{op}: argument '{name}' must be a CUDA device array like 'x' (it is updated in "
            f"place when training), got {type(v).__name__}"
        )
    v = check_running(op, name, _as_numba(op, name, v), C, x_shape)
    if not _is_c_contiguous(v):
        raise ValueError(f"{op}: argument '{name}' must be contiguous (it is updated in place)")
    return v


def _bn3(a):
    return a.reshape(a.shape[0], a.shape[1], math.prod(a.shape[2:]))


@implements
def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5, return_stats=False):
    op = "batch_norm"
    x = _bn_x(op, "x", x)
    N, C = x.shape[:2]
    if weight is not None:
        weight = _channel_vec(op, "weight", weight, x)
    if bias is not None:
        bias = _channel_vec(op, "bias", bias, x)
    momentum, eps, training = bn_hyper(op, momentum, eps, training)
    x3 = _bn3(x)
    cnt = N * x3.shape[2]
    k = _kernels("norm")
    mean = _empty((C,), np.float64)
    var = _empty((C,), np.float64)
    flags = 0
    if training:
        if running_mean is not None:
            running_mean = _running_buffer(op, "running_mean", running_mean, C, x.shape)
            flags |= 1
        if running_var is not None:
            running_var = _running_buffer(op, "running_var", running_var, C, x.shape)
            flags |= 2
        if cnt <= 1:
            raise ValueError(
                f"{op}: expected more than 1 value per channel when training, got argument 'x' "
                f"of shape {tuple(x.shape)}"
            )
        if C:
            k._batch_norm_stats[C, _block()](x3, mean, var)
    else:
        for name, v in (("running_mean", running_mean), ("running_var", running_var)):
            if v is None:
                raise ValueError(
                    f"{op}: argument '{name}' is None but training=False needs the running "
                    "statistics"
                )
        running_mean = _channel_vec(op, "running_mean", running_mean, x)
        running_var = _channel_vec(op, "running_var", running_var, x)
        flags |= 16
    dummy = _empty((1,), x.dtype)
    if weight is not None:
        flags |= 4
    if bias is not None:
        flags |= 8
    invstd = _empty((C,), np.float64)
    scale = _empty((C,), np.float64)
    shift = _empty((C,), np.float64)
    if C:
        k._batch_norm_vectors[_grid(C)](
            mean, var,
            running_mean if running_mean is not None else dummy,
            running_var if running_var is not None else dummy,
            weight if weight is not None else dummy,
            bias if bias is not None else dummy,
            flags, momentum, eps, float(cnt), invstd, scale, shift,
        )
    y = _empty(x.shape, x.dtype)
    if y.size:
        k._batch_norm_fwd[_grid(y.size)](x3, mean, scale, shift, _bn3(y))
    if return_stats:
        return y, _astype(mean, x.dtype), _astype(invstd, x.dtype)
    return y


@implements
def batch_norm_backward(dy, x, mean, invstd, weight=None, training=True):
    op = "batch_norm_backward"
    training = check_bool(op, "training", training)
    x = _bn_x(op, "x", x)
    dy = _bn_x(op, "dy", dy, x.dtype)
    if tuple(x.shape) != tuple(dy.shape):
        raise ValueError(
            f"{op}: argument 'dy' has shape {tuple(dy.shape)} but 'x' has shape "
            f"{tuple(x.shape)}; they must be equal"
        )
    C = x.shape[1]
    mean = _channel_vec(op, "mean", mean, x)
    invstd = _channel_vec(op, "invstd", invstd, x)
    if weight is not None:
        weight = _channel_vec(op, "weight", weight, x)
    x3 = _bn3(x)
    dy3 = _bn3(dy)
    cnt = x3.shape[0] * x3.shape[2]
    k = _kernels("norm")
    sum_dy = _zeros((C,), np.float64)
    sum_dy_xhat = _zeros((C,), np.float64)
    if cnt and C and (training or weight is not None):
        k._batch_norm_bwd_reduce[C, _block()](dy3, x3, mean, invstd, sum_dy, sum_dy_xhat)
    dx = _empty(dy.shape, x.dtype)
    if dx.size:
        k._batch_norm_bwd_data[_grid(dx.size)](
            dy3, x3, mean, invstd, weight if weight is not None else invstd,
            int(weight is not None), sum_dy, sum_dy_xhat, float(cnt), int(bool(training)),
            _bn3(dx),
        )
    if weight is None:
        return dx, None, None
    return dx, _astype(sum_dy_xhat, x.dtype), _astype(sum_dy, x.dtype)


def _lrn_args(op, x, size, alpha, beta, k):
    x = _dev(op, "x", x)
    if x.ndim < 3:
        raise ValueError(
            f"{op}: argument 'x' must be at least 3-D (N, C, L) or (N, C, H, W), got shape "
            f"{tuple(x.shape)}"
        )
    size = check_int(op, "size", size, 1)
    return (x, size, check_real(op, "alpha", alpha), check_real(op, "beta", beta),
            check_real(op, "k", k))


@implements
def local_response_norm(x, size, alpha=1e-4, beta=0.75, k=1.0):
    op = "local_response_norm"
    x, size, alpha, beta, k = _lrn_args(op, x, size, alpha, beta, k)
    y = _empty(x.shape, x.dtype)
    if x.size:
        _kernels("norm")._local_response_norm_fwd[_grid(x.size)](_bn3(x), _bn3(y), size, alpha,
                                                                 beta, k)
    return y


@implements
def local_response_norm_backward(dy, x, size, alpha=1e-4, beta=0.75, k=1.0):
    op = "local_response_norm_backward"
    x, size, alpha, beta, k = _lrn_args(op, x, size, alpha, beta, k)
    dy = _dev(op, "dy", dy, x.dtype)
    if tuple(dy.shape) != tuple(x.shape):
        raise ValueError(
            f"{op}: argument 'dy' has shape {tuple(dy.shape)} but 'x' has shape "
            f"{tuple(x.shape)}; they must be equal"
        )
    dx = _empty(x.shape, x.dtype)
    if dx.size:
        _kernels("norm")._local_response_norm_bwd[_grid(x.size)](_bn3(dy), _bn3(x), _bn3(dx),
                                                                 size, alpha, beta, k)
    return dx


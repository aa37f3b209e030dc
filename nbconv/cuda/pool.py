"""Device pooling: max, average, adaptive and global average pooling and their backward passes."""

from __future__ import annotations

import math

import numpy as np

from .._checks import check_bool
from .._checks.pool import (
    adaptive_size,
    avg_backward_args,
    check_divisor,
    check_input_shape,
    pool_grad,
    pool_input,
    shape_tuple,
    window_args,
)
from .._dispatch import implements
from ._plumbing import _as_numba, _copy, _dev, _empty, _grid, _is_c_contiguous, _kernels, _zero


def _planes(a):
    s = tuple(a.shape)
    return a.reshape(math.prod(s[:-2]), s[-2], s[-1])


@implements
def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    op = "max_pool2d"
    x = pool_input(op, x, as_array=_dev)
    (oh, ow), (kh, kw), (sy, sx), (ph, pw), (dh, dw) = window_args(
        op, x.shape, kernel_size, stride, padding, dilation, ceil_mode
    )
    shape = tuple(x.shape[:-2]) + (oh, ow)
    y = _empty(shape, x.dtype)
    idx = _empty(shape, np.int64)
    if y.size:
        _kernels("pool2d")._max_pool2d_fwd[_grid(y.size)](
            _planes(x), _planes(y), _planes(idx), kh, kw, sy, sx, ph, pw, dh, dw
        )
    return (y, idx) if check_bool(op, "return_indices", return_indices) else y


@implements
def max_pool2d_backward(dy, indices, input_shape):
    op = "max_pool2d_backward"
    dy = pool_grad(op, dy, as_array=_dev)
    ind = _as_numba(op, "indices", indices)
    if np.dtype(ind.dtype).kind not in "iu":
        raise TypeError(
            f"{op}: argument 'indices' must be an integer array (int64 from max_pool2d), "
            f"got dtype {ind.dtype}"
        )
    if tuple(ind.shape) != tuple(dy.shape):
        raise ValueError(
            f"{op}: argument 'indices' shape {tuple(ind.shape)} does not match "
            f"dy shape {tuple(dy.shape)}"
        )
    shape = check_input_shape(op, input_shape, dy)
    if np.dtype(ind.dtype) != np.int64 or not _is_c_contiguous(ind):
        ind = _copy(ind, np.int64)
    W = shape[-1]
    hw = shape[-2] * W
    p = math.prod(shape[:-2])
    k = math.prod(tuple(dy.shape)[-2:])
    dx = _empty(shape, dy.dtype)
    if dx.size:
        _kernels("pool2d")._max_pool2d_bwd[_grid(p * shape[-2])](
            dy.reshape(p, k), ind.reshape(p, k), dx.reshape(p, hw), W, _zero(dy.dtype)
        )
    return dx


@implements
def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    op = "avg_pool2d"
    x = pool_input(op, x, as_array=_dev)
    div = check_divisor(op, divisor_override)
    (oh, ow), (kh, kw), (sy, sx), (ph, pw), _ = window_args(
        op, x.shape, kernel_size, stride, padding, 1, ceil_mode
    )
    y = _empty(tuple(x.shape[:-2]) + (oh, ow), x.dtype)
    if y.size:
        _kernels("pool2d")._avg_pool2d_fwd[_grid(y.size)](
            _planes(x), _planes(y), kh, kw, sy, sx, ph, pw,
            int(check_bool(op, "count_include_pad", count_include_pad)), div
        )
    return y


@implements
def avg_pool2d_backward(dy, input_shape, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True, divisor_override=None):
    op = "avg_pool2d_backward"
    dy = pool_grad(op, dy, as_array=_dev)
    shape, div, (kh, kw), (sy, sx), (ph, pw) = avg_backward_args(
        op, dy, input_shape, kernel_size, stride, padding, ceil_mode, divisor_override)
    dx = _empty(shape, dy.dtype)
    if dx.size:
        _kernels("pool2d")._avg_pool2d_bwd[_grid(dx.size)](
            _planes(dy), _planes(dx), kh, kw, sy, sx, ph, pw,
            int(check_bool(op, "count_include_pad", count_include_pad)), div,
            _zero(dy.dtype)
        )
    return dx


def _adaptive_fwd(x, oh, ow):
    y = _empty(tuple(x.shape[:-2]) + (oh, ow), x.dtype)
    if y.size:
        _kernels("pool2d")._adaptive_avg_pool2d_fwd[_grid(y.size)](_planes(x), _planes(y))
    return y


def _adaptive_bwd(dy, shape):
    dx = _empty(shape, dy.dtype)
    if dx.size:
        _kernels("pool2d")._adaptive_avg_pool2d_bwd[_grid(dx.size)](
            _planes(dy), _planes(dx), _zero(dy.dtype)
        )
    return dx


@implements
def adaptive_avg_pool2d(x, output_size):
    op = "adaptive_avg_pool2d"
    x = pool_input(op, x, as_array=_dev)
    oh, ow = adaptive_size(op, output_size, x.shape[-2:])
    return _adaptive_fwd(x, oh, ow)


@implements
def adaptive_avg_pool2d_backward(dy, input_shape):
    op = "adaptive_avg_pool2d_backward"
    dy = pool_grad(op, dy, as_array=_dev)
    shape = check_input_shape(op, input_shape, dy)
    if 0 in dy.shape[-2:]:
        raise ValueError(f"{op}: argument 'dy' has an empty spatial size {tuple(dy.shape)}")
    return _adaptive_bwd(dy, shape)


@implements
def global_avg_pool2d(x, keepdims=True):
    op = "global_avg_pool2d"
    x = pool_input(op, x, as_array=_dev)
    y = _adaptive_fwd(x, 1, 1)
    return y if check_bool(op, "keepdims", keepdims) else y.reshape(*x.shape[:-2])


@implements
def global_avg_pool2d_backward(dy, input_shape):
    op = "global_avg_pool2d_backward"
    dy = _dev(op, "dy", dy)
    shape = shape_tuple(op, input_shape, (3, 4))
    lead = shape[:-2]
    if tuple(dy.shape) not in (lead, lead + (1, 1)):
        raise ValueError(
            f"{op}: argument 'dy' must have shape {lead + (1, 1)} or {lead} for "
            f"input_shape {shape}, got {tuple(dy.shape)}"
        )
    return _adaptive_bwd(dy.reshape(*(lead + (1, 1))), shape)


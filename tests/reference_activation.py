"""Slow references for activations, softmax and dropout (NumPy/SciPy; never imports nbconv).

Every reference computes in float64 and returns float64.
"""

from __future__ import annotations

import numpy as np
from scipy import special

__all__ = [
    "relu_ref",
    "relu_backward_ref",
    "leaky_relu_ref",
    "leaky_relu_backward_ref",
    "sigmoid_ref",
    "sigmoid_backward_ref",
    "tanh_ref",
    "tanh_backward_ref",
    "softmax_ref",
    "log_softmax_ref",
    "softmax_backward_ref",
    "log_softmax_backward_ref",
]


def _f64(a):
    return np.asarray(a, dtype=np.float64)


def relu_ref(x):
    x = _f64(x)
    return np.where(x > 0, x, 0.0)


def relu_backward_ref(dy, x):
    return np.where(_f64(x) > 0, _f64(dy), 0.0)


def leaky_relu_ref(x, negative_slope=0.01):
    x = _f64(x)
    return np.where(x > 0, x, negative_slope * x)


def leaky_relu_backward_ref(dy, x, negative_slope=0.01):
    dy = _f64(dy)
    return np.where(_f64(x) > 0, dy, negative_slope * dy)


def sigmoid_ref(x):
    return special.expit(_f64(x))


def sigmoid_backward_ref(dy, y):
    y = _f64(y)
    return _f64(dy) * y * (1.0 - y)


def tanh_ref(x):
    return np.tanh(_f64(x))


def tanh_backward_ref(dy, y):
    y = _f64(y)
    return _f64(dy) * (1.0 - y * y)


def softmax_ref(x, axis=-1):
    return special.softmax(_f64(x), axis=axis)


def log_softmax_ref(x, axis=-1):
    return special.log_softmax(_f64(x), axis=axis)


def _jacobian_apply(dy, jac_of_slice, y, axis):
    """Apply the per-slice Jacobian ``J`` (n x n) of a softmax-like map: ``dx = J.T @ dy``,
    looping explicitly over every 1-D slice along ``axis``."""
    dy = np.moveaxis(_f64(dy), axis, -1)
    y = np.moveaxis(_f64(y), axis, -1)
    dx = np.empty_like(dy)
    for idx in np.ndindex(*y.shape[:-1]):
        J = jac_of_slice(y[idx])
        dx[idx] = J.T @ dy[idx]
    return np.moveaxis(dx, -1, axis)


def softmax_backward_ref(dy, y, axis=-1):
    """Full Jacobian ``J[i, j] = y_i (delta_ij - y_j)`` per slice."""
    return _jacobian_apply(dy, lambda s: np.diag(s) - np.outer(s, s), y, axis)


def log_softmax_backward_ref(dy, y, axis=-1):
    """Full Jacobian ``J[i, j] = delta_ij - softmax_j`` per slice (``y`` = log-softmax)."""
    return _jacobian_apply(
        dy, lambda s: np.eye(s.size) - np.tile(np.exp(s), (s.size, 1)), y, axis
    )

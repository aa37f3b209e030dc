"""Slow references for batch norm and local response norm (NumPy and loops; never imports
nbconv).  Every reference computes in float64."""

from __future__ import annotations

import numpy as np

__all__ = [
    "batch_norm_ref",
    "batch_norm_backward_ref",
    "local_response_norm_ref",
    "local_response_norm_backward_ref",
]


def _f64(a):
    return None if a is None else np.asarray(a, dtype=np.float64)


def _bshape(x):
    """Shape that broadcasts a (C,) vector against x (N, C, ...)."""
    return (1, x.shape[1]) + (1,) * (x.ndim - 2)


def batch_norm_ref(x, running_mean, running_var, weight=None, bias=None, training=False,
                   momentum=0.1, eps=1e-5):
    """PyTorch's published batch norm.

    Returns ``(y, mean_used, var_used, new_running_mean, new_running_var)``; the running
    statistics are updated as ``(1 - momentum) * running + momentum * stat`` with the unbiased
    batch variance (``var * n / (n - 1)``); the inputs are not modified.
    """
    x = _f64(x)
    axes = (0,) + tuple(range(2, x.ndim))
    n = x.size // x.shape[1]
    rm, rv = _f64(running_mean), _f64(running_var)
    if training:
        mean = x.mean(axis=axes)
        var = ((x - mean.reshape(_bshape(x))) ** 2).mean(axis=axes)
        new_rm = None if rm is None else (1 - momentum) * rm + momentum * mean
        new_rv = None if rv is None else (1 - momentum) * rv + momentum * var * n / (n - 1)
    else:
        mean, var, new_rm, new_rv = rm, rv, rm, rv
    y = (x - mean.reshape(_bshape(x))) / np.sqrt(var.reshape(_bshape(x)) + eps)
    if weight is not None:
        y = y * _f64(weight).reshape(_bshape(x))
    if bias is not None:
        y = y + _f64(bias).reshape(_bshape(x))
    return y, mean, var, new_rm, new_rv


def batch_norm_backward_ref(dy, x, weight, training, eps=1e-5, running_mean=None,
                            running_var=None):
    """Staged (computational-graph) backward of batch norm, written step by step.

    Training: statistics of ``x`` (biased var) with ``eps``; eval: the running statistics.
    ``weight`` None means 1.  Returns ``(dx, dweight, dbias)``.
    """
    dy, x = _f64(dy), _f64(x)
    axes = (0,) + tuple(range(2, x.ndim))
    bs = _bshape(x)
    n = x.size // x.shape[1]
    w = np.ones(x.shape[1]) if weight is None else _f64(weight)
    if training:
        mu = x.mean(axis=axes)
        xc = x - mu.reshape(bs)
        var = (xc**2).mean(axis=axes)
    else:
        var = _f64(running_var)
    std = np.sqrt(var + eps)
    if training:
        xhat = xc / std.reshape(bs)
        dxhat = dy * w.reshape(bs)
        # xhat = xc * ivar, ivar = 1/std, std = sqrt(var + eps), var = mean(xc^2), xc = x - mu
        divar = np.sum(dxhat * xc, axis=axes)
        dxc1 = dxhat / std.reshape(bs)
        dstd = -divar / std**2
        dvar = 0.5 * dstd / std
        dsq = (dvar / n).reshape(bs) * np.ones_like(x)
        dxc2 = 2 * xc * dsq
        dxc = dxc1 + dxc2
        dmu = -np.sum(dxc, axis=axes)
        dx = dxc + (dmu / n).reshape(bs)
    else:
        dx = dy * (w / std).reshape(bs)
        xhat = (x - _f64(running_mean).reshape(bs)) / std.reshape(bs)
    dbias = dy.sum(axis=axes)
    dweight = (dy * xhat).sum(axis=axes)
    return dx, dweight, dbias


def _window(c, size, C):
    return range(max(0, c - size // 2), min(C, c + (size - 1) // 2 + 1))


def local_response_norm_ref(x, size, alpha=1e-4, beta=0.75, k=1.0):
    """Explicit loop over channels: PyTorch's definition (zero padding, divisor ``size``)."""
    x = _f64(x)
    C = x.shape[1]
    y = np.empty_like(x)
    for c in range(C):
        s = np.zeros_like(x[:, 0])
        for cc in _window(c, size, C):
            s = s + x[:, cc] ** 2
        y[:, c] = x[:, c] / (k + alpha / size * s) ** beta
    return y


def local_response_norm_backward_ref(dy, x, size, alpha=1e-4, beta=0.75, k=1.0):
    """Chain rule written channel by channel: y_c depends on x_c and on every x_j in its window."""
    dy, x = _f64(dy), _f64(x)
    C = x.shape[1]
    d = np.empty_like(x)
    for c in range(C):
        s = np.zeros_like(x[:, 0])
        for cc in _window(c, size, C):
            s = s + x[:, cc] ** 2
        d[:, c] = k + alpha / size * s
    dx = dy * d ** (-beta)
    for c in range(C):
        g = dy[:, c] * x[:, c] * (-beta) * d[:, c] ** (-beta - 1) * (alpha / size)
        for j in _window(c, size, C):
            dx[:, j] += g * 2 * x[:, j]
    return dx

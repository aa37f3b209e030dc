"""Batch normalisation and local response normalisation, with their backward passes."""

from __future__ import annotations

import math

import numpy as np

from .. import _dispatch
from .._checks import as_float_array, check_bool, check_int, check_real
from .._checks.norm import bn_hyper, check_bn_x, check_channel_vec, check_running
from ..kernels import norm as _k

__all__ = [
    "batch_norm",
    "batch_norm_backward",
    "local_response_norm",
    "local_response_norm_backward",
]


def _as3d(a: np.ndarray) -> np.ndarray:
    """C-contiguous ``a`` (N, C, ...) viewed as (N, C, S)."""
    return a.reshape(a.shape[0], a.shape[1], math.prod(a.shape[2:]))


def _bn_x(op: str, name: str, x, dtype=None) -> np.ndarray:
    return check_bn_x(op, name, as_float_array(op, name, x, dtype=dtype))


def _channel_vec(op: str, name: str, v, x: np.ndarray) -> np.ndarray:
    v = as_float_array(op, name, v, dtype=x.dtype)
    return check_channel_vec(op, name, v, x.shape[1], x.shape)


def _running_buffer(op: str, name: str, v, C: int, x_shape) -> np.ndarray:
    """A running statistic updated in place: a writeable float32/float64 ndarray of shape (C,)."""
    if not isinstance(v, np.ndarray):
        raise TypeError(
            f"{op}: argument '{name}' must be a numpy.ndarray (it is updated in place when "
            f"training), got {type(v).__name__}"
        )
    check_running(op, name, v, C, x_shape)
    if not v.flags.writeable:
        raise ValueError(f"{op}: argument '{name}' is read-only but must be updated in place")
    return v


@_dispatch.dispatch
def batch_norm(
    x,
    running_mean,
    running_var,
    weight=None,
    bias=None,
    training=False,
    momentum=0.1,
    eps=1e-5,
    return_stats=False,
):
    """Batch normalisation per channel (PyTorch's ``F.batch_norm``).

    ``y = (x - mean[c]) / sqrt(var[c] + eps) * weight[c] + bias[c]`` with statistics over every
    axis but axis 1.

    * ``training=True``: ``mean``/``var`` are the batch mean and the **biased** batch variance.
      ``running_mean``/``running_var`` (when not None) are updated **in place**:
      ``running = (1 - momentum) * running + momentum * batch_stat``, using the **unbiased**
      variance ``var * n / (n - 1)`` (n = values per channel) for ``running_var``.
    * ``training=False``: the running statistics are used (they must not be None).

    Parameters
    ----------
    x : ndarray, shape (N, C), (N, C, L) or (N, C, H, W)
    running_mean, running_var : ndarray, shape (C,), or None
        Must be writeable float32/float64 ndarrays when training (updated in place).
    weight, bias : ndarray, shape (C,), optional
        Affine scale (default 1) and shift (default 0).
    training : bool, default False
    momentum : float, default 0.1
        ``None`` (PyTorch's cumulative moving average) is not supported: ValueError.
    eps : float, default 1e-5
        Added to the variance (>= 0).
    return_stats : bool, default False
        Also return the ``mean`` and ``invstd = 1 / sqrt(var + eps)`` used to normalise (batch
        statistics when training, running statistics otherwise), shape (C,), dtype of ``x``; they
        are what :func:`batch_norm_backward` takes.

    Returns
    -------
    y : ndarray, shape and dtype of ``x``
    mean, invstd : ndarray, shape (C,) (only with ``return_stats=True``)

    Raises
    ------
    ValueError
        Wrong ndim or vector shapes; running statistics missing in eval mode; a single value per
        channel when training (the variance is undefined, as in PyTorch); ``momentum=None``.

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> x = np.array([[1.0], [3.0]])
    >>> rm, rv = np.zeros(1), np.ones(1)
    >>> y = nc.batch_norm(x, rm, rv, training=True, eps=0.0)
    >>> y.ravel().tolist(), rm.tolist(), rv.tolist()
    ([-1.0, 1.0], [0.2], [1.1])
    >>> nc.batch_norm(x, np.zeros(1), np.full(1, 4.0), eps=0.0).ravel().tolist()
    [0.5, 1.5]
    """
    op = "batch_norm"
    x = _bn_x(op, "x", x)
    N, C = x.shape[:2]
    if weight is not None:
        weight = _channel_vec(op, "weight", weight, x)
    if bias is not None:
        bias = _channel_vec(op, "bias", bias, x)
    momentum, eps, training = bn_hyper(op, momentum, eps, training)
    x3 = _as3d(x)
    cnt = N * x3.shape[2]
    if training:
        if running_mean is not None:
            running_mean = _running_buffer(op, "running_mean", running_mean, C, x.shape)
        if running_var is not None:
            running_var = _running_buffer(op, "running_var", running_var, C, x.shape)
        if cnt == 1:
            raise ValueError(
                f"{op}: expected more than 1 value per channel when training, got argument 'x' "
                f"of shape {tuple(x.shape)}"
            )
        mean = np.full(C, np.nan)  # an empty batch has no statistics
        var = np.full(C, np.nan)
        if cnt:  # PyTorch: an empty batch gives an empty output and leaves the running stats
            if C:
                _k._batch_norm_stats(x3, mean, var)
            if running_mean is not None:
                running_mean[...] = (1.0 - momentum) * running_mean + momentum * mean
            if running_var is not None:
                unbiased = var * (cnt / (cnt - 1))
                running_var[...] = (1.0 - momentum) * running_var + momentum * unbiased
    else:
        for name, v in (("running_mean", running_mean), ("running_var", running_var)):
            if v is None:
                raise ValueError(
                    f"{op}: argument '{name}' is None but training=False needs the running "
                    "statistics"
                )
        mean = _channel_vec(op, "running_mean", running_mean, x).astype(np.float64)
        var = _channel_vec(op, "running_var", running_var, x).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        invstd = 1.0 / np.sqrt(var + eps)
    scale = invstd if weight is None else invstd * weight
    shift = np.zeros(C) if bias is None else bias.astype(np.float64)
    y = np.empty_like(x)
    if y.size:
        _k._batch_norm_fwd(x3, mean, np.ascontiguousarray(scale, np.float64), shift, _as3d(y))
    if check_bool(op, "return_stats", return_stats):
        return y, mean.astype(x.dtype), invstd.astype(x.dtype)
    return y


@_dispatch.dispatch
def batch_norm_backward(dy, x, mean, invstd, weight=None, training=True):
    """Gradients of :func:`batch_norm` with respect to ``x``, ``weight`` and ``bias``.

    With ``xhat = (x - mean) * invstd`` per channel and ``n`` values per channel:

    * ``training=True`` (``mean``/``invstd`` are the batch statistics of ``x``, so they depend on
      it): ``dx = weight * invstd * (dy - sum(dy)/n - xhat * sum(dy * xhat)/n)``;
    * ``training=False`` (running statistics, constants): ``dx = dy * weight * invstd``;
    * ``dweight = sum(dy * xhat)``, ``dbias = sum(dy)`` over every axis but 1.

    Parameters
    ----------
    dy : ndarray, shape of ``x``
    x : ndarray, shape (N, C), (N, C, L) or (N, C, H, W)
        The forward input.
    mean, invstd : ndarray, shape (C,)
        As returned by ``batch_norm(..., return_stats=True)``.
    weight : ndarray, shape (C,), optional
        The affine scale; ``None`` means no affine parameters (scale 1), and then ``dweight``
        and ``dbias`` are ``None``.
    training : bool, default True
        The mode of the forward pass.

    Returns
    -------
    dx : ndarray, shape of ``x``
    dweight, dbias : ndarray, shape (C,), or None (when ``weight`` is None)

    All arrays have the dtype of ``x`` (the other inputs are cast to it).

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> x = np.array([[1.0], [3.0]])
    >>> y, mean, invstd = nc.batch_norm(x, None, None, training=True, eps=0.0, return_stats=True)
    >>> dx, dw, db = nc.batch_norm_backward(np.array([[1.0], [1.0]]), x, mean, invstd, np.ones(1))
    >>> dx.ravel().tolist(), dw.tolist(), db.tolist()
    ([0.0, 0.0], [0.0], [2.0])
    """
    op = "batch_norm_backward"
    training = check_bool(op, "training", training)
    x = _bn_x(op, "x", x)
    dy = _bn_x(op, "dy", dy, dtype=x.dtype)
    if x.shape != dy.shape:
        raise ValueError(
            f"{op}: argument 'dy' has shape {tuple(dy.shape)} but 'x' has shape "
            f"{tuple(x.shape)}; they must be equal"
        )
    C = x.shape[1]
    mean = _channel_vec(op, "mean", mean, x).astype(np.float64)
    invstd = _channel_vec(op, "invstd", invstd, x).astype(np.float64)
    if weight is not None:
        weight = _channel_vec(op, "weight", weight, x).astype(np.float64)
    x3 = _as3d(x)
    dy3 = _as3d(dy)
    cnt = x3.shape[0] * x3.shape[2]
    sum_dy = np.zeros(C)
    sum_dy_xhat = np.zeros(C)
    if cnt and C and (training or weight is not None):
        _k._batch_norm_bwd_reduce(dy3, x3, mean, invstd, sum_dy, sum_dy_xhat)
    k = invstd if weight is None else invstd * weight
    dx = np.empty_like(dy)
    if dx.size:
        _k._batch_norm_bwd_data(
            dy3, x3, mean, invstd, k, sum_dy / cnt, sum_dy_xhat / cnt, int(training), _as3d(dx),
        )
    if weight is None:
        return dx, None, None
    return dx, sum_dy_xhat.astype(x.dtype), sum_dy.astype(x.dtype)


def _lrn_args(op: str, x, size, alpha, beta, k, name="x", dtype=None):
    x = as_float_array(op, name, x, dtype=dtype)
    if x.ndim < 3:
        raise ValueError(
            f"{op}: argument '{name}' must be at least 3-D (N, C, L) or (N, C, H, W), got shape "
            f"{tuple(x.shape)}"
        )
    size = check_int(op, "size", size, 1)
    return (x, size, check_real(op, "alpha", alpha), check_real(op, "beta", beta),
            check_real(op, "k", k))


@_dispatch.dispatch
def local_response_norm(x, size, alpha=1e-4, beta=0.75, k=1.0):
    """Local response normalisation across channels (AlexNet; PyTorch's definition exactly).

    ``y[:, c] = x[:, c] / (k + alpha / size * sum_{c'} x[:, c']**2) ** beta`` where ``c'`` runs
    over ``[c - size//2, c + (size-1)//2]`` clipped to ``[0, C)`` (zero padding: the divisor is
    always ``size``, also at the edges).

    Parameters
    ----------
    x : ndarray, shape (N, C, L), (N, C, H, W) or more spatial dimensions
    size : int
        Number of neighbouring channels in the window (>= 1).
    alpha, beta, k : float
        Scale, exponent and additive constant.

    Returns
    -------
    y : ndarray, shape and dtype of ``x``

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> x = np.full((1, 3, 1), 2.0)
    >>> nc.local_response_norm(x, size=3, alpha=3.0, beta=1.0, k=0.0).ravel().tolist()
    [0.25, 0.16666666666666666, 0.25]
    """
    op = "local_response_norm"
    x, size, alpha, beta, k = _lrn_args(op, x, size, alpha, beta, k)
    y = np.empty_like(x)
    if x.size:
        _k._local_response_norm_fwd(_as3d(x), _as3d(y), size, alpha, beta, k)
    return y


@_dispatch.dispatch
def local_response_norm_backward(dy, x, size, alpha=1e-4, beta=0.75, k=1.0):
    """Gradient of :func:`local_response_norm` with respect to ``x``.

    With ``d[c] = k + alpha/size * sum_{c' in window(c)} x[c']**2``::

        dx[j] = dy[j] * d[j]**-beta
                - 2*alpha*beta/size * x[j] * sum_{c : j in window(c)} dy[c] * x[c] * d[c]**(-beta-1)

    Parameters
    ----------
    dy : ndarray, shape of ``x``
    x : ndarray, shape (N, C, L), (N, C, H, W), ...
        The forward input.
    size, alpha, beta, k
        As in :func:`local_response_norm`.

    Returns
    -------
    dx : ndarray, shape and dtype of ``x``

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> nc.local_response_norm_backward(np.ones((1, 1, 1)), np.zeros((1, 1, 1)), 1).ravel()
    array([1.])
    """
    op = "local_response_norm_backward"
    x, size, alpha, beta, k = _lrn_args(op, x, size, alpha, beta, k)
    dy = as_float_array(op, "dy", dy, dtype=x.dtype)
    if dy.shape != x.shape:
        raise ValueError(
            f"{op}: argument 'dy' has shape {tuple(dy.shape)} but 'x' has shape "
            f"{tuple(x.shape)}; they must be equal"
        )
    dx = np.empty_like(dy)
    if dx.size:
        _k._local_response_norm_bwd(_as3d(dy), _as3d(x), _as3d(dx), size, alpha, beta, k)
    return dx

"""Group, instance and layer normalisation, with their backward passes.

Each op normalises *rows* of its input with their own mean and biased variance (a group of
channels of one image, one channel of one image, the trailing ``normalized_shape`` of one
sample) and applies an optional affine.  The statistics are float64 (see
:mod:`nbconv.kernels.norms`).  The ``*_backward`` functions take the statistics the forward
pass returns with ``return_stats=True`` and give the gradients of the input, the weight and
the bias; they never modify ``dy``.

Where PyTorch differs from a plain reading of its formulas, PyTorch is followed: group norm
refuses an input with a single value per channel and batch (``N * C/G * S == 1``), instance
norm in training refuses a single spatial value, and ``momentum`` may be any finite real.
"""

from __future__ import annotations

import math

import numpy as np

from .. import _config, _dispatch
from .._checks import as_float_array, check_bool
from .._checks.norm import check_channel_vec
from .._checks.norms import (
    check_eps,
    check_momentum,
    check_nc_x,
    check_num_groups,
    check_trailing,
    normalized_shape,
)
from ..kernels import norms as _k
from .norm import _running_buffer

__all__ = [
    "group_norm",
    "group_norm_backward",
    "instance_norm",
    "instance_norm_backward",
    "layer_norm",
    "layer_norm_backward",
]

#: rows per thread from which a whole row is one parallel iteration (statistics and output
#: while the row is in cache); with fewer rows the work is split into blocks of each row.
_ROWS_PER_THREAD = 4
#: row length from which layer norm's backward pass accumulates the weight gradients of a
#: chunk of rows in the input's dtype rather than float64 (rows this long are few per chunk)
_LONG_ROW = 8192


# --------------------------------------------------------------------------- helpers


def _nc_x(op: str, name: str, x, dtype=None) -> np.ndarray:
    return check_nc_x(op, name, as_float_array(op, name, x, dtype=dtype))


def _same_shape_dy(op: str, dy, x: np.ndarray) -> np.ndarray:
    dy = as_float_array(op, "dy", dy, dtype=x.dtype)
    if dy.shape != x.shape:
        raise ValueError(f"{op}: argument 'dy' has shape {tuple(dy.shape)} but 'x' has shape "
                         f"{tuple(x.shape)}; they must be equal")
    return dy


def _channel_vec64(op: str, name: str, v, x: np.ndarray):
    """A per-channel vector (C,) in ``x``'s dtype, returned as float64, or None."""
    if v is None:
        return None
    v = as_float_array(op, name, v, dtype=x.dtype)
    return check_channel_vec(op, name, v, x.shape[1], x.shape).astype(np.float64)


def _stats64(op: str, name: str, v, shape: tuple, x: np.ndarray) -> np.ndarray:
    """A statistic of the forward pass (``mean``/``rstd``) of ``shape``, as flat float64."""
    v = as_float_array(op, name, v, dtype=x.dtype)
    if tuple(v.shape) != tuple(shape):
        raise ValueError(f"{op}: argument '{name}' must have shape {tuple(shape)} (as the "
                         f"forward pass returns it for 'x' of shape {tuple(x.shape)}), got "
                         f"{tuple(v.shape)}")
    return np.ascontiguousarray(v, np.float64).ravel()


def _affine_flag(op: str, affine, weight) -> bool:
    return weight is not None if affine is None else check_bool(op, "affine", affine)


def _fused(rows: int, size: int) -> bool:
    return size < _config.SERIAL_BELOW or rows >= _ROWS_PER_THREAD * _config.get_num_threads()


def _chunks(items: int) -> int:
    """How many pieces a parallel kernel cuts ``items`` into: several per thread, so that a
    thread slowed by other work on a shared machine does not hold up the others."""
    return max(1, min(items, 8 * _config.get_num_threads()))


def _rstd(var: np.ndarray, eps: float) -> np.ndarray:
    if eps > 0:  # var >= 0 or NaN: nothing to warn about (and errstate costs microseconds)
        return 1.0 / np.sqrt(var + eps)
    with np.errstate(divide="ignore", invalid="ignore"):
        return 1.0 / np.sqrt(var + eps)


def _split_moments(x2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and biased variance of each row of ``x2`` (R, M) from per-block partials merged
    with the parallel-variance formula (the split schedule)."""
    R, M = x2.shape
    bl = _k.BLOCK
    nb = -(-M // bl)
    bmean = np.empty((R, nb))
    bm2 = np.empty((R, nb))
    _k._block_moments(x2, bl, nb, bmean, bm2, _chunks(R * nb))
    cnt = np.full(nb, float(bl))
    cnt[-1] = M - (nb - 1) * bl
    with np.errstate(invalid="ignore", over="ignore"):
        mean = bmean @ cnt / M
        m2 = bm2.sum(axis=1) + (bmean - mean[:, None]) ** 2 @ cnt
    return mean, m2 / M


def _grouped_forward(x2, y2, G, cg, S, w, b, eps):
    """Normalise rows ``x2`` (N*G, cg*S) into ``y2`` with per-channel ``w``/``b`` (float64
    (C,)); returns the rows' mean and biased variance (float64 (N*G,))."""
    R, M = x2.shape
    if y2.size == 0:  # no values, no statistics
        return np.full(R, np.nan), np.full(R, np.nan)
    if x2.size < _config.SERIAL_BELOW:
        mean, var = np.empty(R), np.empty(R)
        _k._grouped_fwd_serial(x2, y2, G, cg, S, w, b, eps, mean, var, 1)
        return mean, var
    if _fused(R, x2.size):
        mean, var = np.empty(R), np.empty(R)
        _k._grouped_fwd(x2, y2, G, cg, S, w, b, eps, mean, var, _chunks(R))
        return mean, var
    mean, var = _split_moments(x2)
    N, C = R // G, G * cg
    _k._plane_apply(x2.reshape(N * C, S), np.repeat(mean, cg),
                    np.repeat(_rstd(var, eps), cg) * np.tile(w, N), np.tile(b, N),
                    y2.reshape(N * C, S), _k.BLOCK, _chunks(N * C * -(-S // _k.BLOCK)))
    return mean, var


def _grouped_backward(dy2, x2, G, cg, S, w, mean, rstd, training, sums):
    """``dx`` (shape of ``x2``) and the per-channel sums ``s1 = sum(dy)``, ``s2 = sum(dy * (x -
    mean))`` (float64 (N, C); left zero by the split schedule unless ``sums``) for rows
    (N*G, cg*S); see
    :func:`nbconv.kernels.norms._grouped_bwd`."""
    R, M = x2.shape
    N, C = R // G, G * cg
    sums = sums or training
    dx2 = np.empty_like(x2)
    s1 = np.zeros((N, C))
    s2 = np.zeros((N, C))
    if dx2.size == 0:
        return dx2, s1, s2
    if x2.size < _config.SERIAL_BELOW:
        _k._grouped_bwd_serial(dy2, x2, G, cg, S, w, mean, rstd, int(training), dx2, s1, s2, 1)
        return dx2, s1, s2
    if _fused(R, x2.size):
        _k._grouped_bwd(dy2, x2, G, cg, S, w, mean, rstd, int(training), dx2, s1, s2,
                        _chunks(R))
        return dx2, s1, s2
    P = N * C
    mp = np.repeat(mean, cg)
    nb = -(-S // _k.BLOCK)
    if sums:
        b1 = np.empty((P, nb))
        b2 = np.empty((P, nb))
        _k._block_sums(dy2.reshape(P, S), x2.reshape(P, S), mp, _k.BLOCK, nb, b1, b2,
                       _chunks(P * nb))
        s1 = b1.sum(axis=1).reshape(N, C)
        s2 = b2.sum(axis=1).reshape(N, C)
    k = np.repeat(rstd, cg) * np.tile(w, N)
    if training:
        A = (s1 * w).reshape(R, cg).sum(axis=1)
        B = (s2 * w).reshape(R, cg).sum(axis=1)
        c2 = np.repeat(-B * rstd ** 3 / M, cg)
        c3 = np.repeat(-A * rstd / M, cg)
    else:
        c2 = c3 = np.zeros(P)
    _k._plane_bwd_apply(dy2.reshape(P, S), x2.reshape(P, S), mp, k, c2, c3,
                        dx2.reshape(P, S), _k.BLOCK, _chunks(P * nb))
    return dx2, s1, s2


def _affine_grads(s1, s2, rstd_nc, dtype):
    """``dweight = sum_n s2 * rstd`` and ``dbias = sum_n s1`` per channel, in ``dtype``."""
    return (s2 * rstd_nc).sum(axis=0).astype(dtype), s1.sum(axis=0).astype(dtype)


# --------------------------------------------------------------------------- group norm


@_dispatch.dispatch
def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5, return_stats=False):
    """Group normalisation (PyTorch's ``F.group_norm``).

    The ``C`` channels are split into ``num_groups`` groups of ``C // num_groups`` consecutive
    channels; each group of each image is normalised with its own mean and biased variance::

        y[n, c] = (x[n, c] - mean[n, g]) / sqrt(var[n, g] + eps) * weight[c] + bias[c]

    with ``g = c // (C // num_groups)`` and the statistics over the group's channels and all
    spatial positions.  ``num_groups=1`` normalises each image as a whole; ``num_groups=C`` is
    instance norm without running statistics.

    Parameters
    ----------
    x : ndarray, shape (N, C, *)
        At least 2-D; any number of spatial dimensions.
    num_groups : int
        Divides ``C`` (ValueError otherwise).
    weight, bias : ndarray, shape (C,), optional
        Per-channel scale (default 1) and shift (default 0).
    eps : float, default 1e-5
        Added to the variance (>= 0).
    return_stats : bool, default False
        Also return ``mean`` and ``rstd = 1 / sqrt(var + eps)``, shape (N, num_groups), dtype
        of ``x``: what :func:`group_norm_backward` takes.

    Returns
    -------
    y : ndarray, shape and dtype of ``x``
    mean, rstd : ndarray, shape (N, num_groups) (only with ``return_stats=True``)

    Raises
    ------
    ValueError
        ``x`` below 2-D, ``C`` not divisible by ``num_groups``, vector shapes other than (C,),
        or a single value per channel and batch (``N * C/G * prod(spatial) == 1``, as PyTorch).

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> x = np.array([[[1.0, 3.0], [5.0, 7.0]]])          # (N=1, C=2, L=2)
    >>> nc.group_norm(x, 1, eps=0.0).round(4).tolist()    # one group: both channels
    [[[-1.3416, -0.4472], [0.4472, 1.3416]]]
    >>> nc.group_norm(x, 2, eps=0.0).tolist()             # one group per channel
    [[[-1.0, 1.0], [-1.0, 1.0]]]
    """
    op = "group_norm"
    x = _nc_x(op, "x", x)
    N, C = x.shape[:2]
    G = check_num_groups(op, num_groups, C, x.shape)
    w = _channel_vec64(op, "weight", weight, x)
    b = _channel_vec64(op, "bias", bias, x)
    eps = check_eps(op, eps)
    return_stats = check_bool(op, "return_stats", return_stats)
    S = math.prod(x.shape[2:])
    cg = C // G
    if N * cg * S == 1:
        raise ValueError(f"{op}: expected more than 1 value per channel when training, got "
                         f"argument 'x' of shape {tuple(x.shape)} (num_groups={G})")
    y = np.empty_like(x)
    mean, var = _grouped_forward(
        x.reshape(N * G, cg * S), y.reshape(N * G, cg * S), G, cg, S,
        np.ones(C) if w is None else w, np.zeros(C) if b is None else b, eps)
    if return_stats:
        return (y, mean.reshape(N, G).astype(x.dtype),
                _rstd(var, eps).reshape(N, G).astype(x.dtype))
    return y


@_dispatch.dispatch
def group_norm_backward(dy, x, num_groups, mean, rstd, weight=None, affine=None):
    """Gradients of :func:`group_norm` with respect to ``x``, ``weight`` and ``bias``.

    With ``xhat = (x - mean) * rstd`` per group of ``M = C/G * prod(spatial)`` values and
    ``g = weight * dy``::

        dx = rstd * (g - sum(g) / M - xhat * sum(g * xhat) / M)      (sums over the group)
        dweight[c] = sum(dy * xhat),  dbias[c] = sum(dy)              (over n and spatial)

    Parameters
    ----------
    dy : ndarray, shape of ``x``
    x : ndarray, shape (N, C, *)
        The forward input.
    num_groups : int
        As in the forward pass.
    mean, rstd : ndarray, shape (N, num_groups)
        As returned by ``group_norm(..., return_stats=True)``.
    weight : ndarray, shape (C,), optional
        The affine scale (``None``: 1).
    affine : bool, optional
        Whether to compute ``dweight`` and ``dbias`` (default: when ``weight`` is given; pass
        True for a bias without a weight).

    Returns
    -------
    dx : ndarray, shape of ``x``
    dweight, dbias : ndarray, shape (C,), or None (when ``affine`` is False)

    All arrays have the dtype of ``x`` (the other inputs are cast to it).

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> x = np.array([[[1.0, 3.0], [5.0, 7.0]]])
    >>> y, mean, rstd = nc.group_norm(x, 1, eps=0.0, return_stats=True)
    >>> dx, dw, db = nc.group_norm_backward(np.ones_like(x), x, 1, mean, rstd, np.ones(2))
    >>> bool(np.abs(dx).max() < 1e-12), db.tolist()
    (True, [2.0, 2.0])
    """
    op = "group_norm_backward"
    x = _nc_x(op, "x", x)
    dy = _same_shape_dy(op, dy, x)
    N, C = x.shape[:2]
    G = check_num_groups(op, num_groups, C, x.shape)
    mean = _stats64(op, "mean", mean, (N, G), x)
    rstd = _stats64(op, "rstd", rstd, (N, G), x)
    w = _channel_vec64(op, "weight", weight, x)
    affine = _affine_flag(op, affine, weight)
    S = math.prod(x.shape[2:])
    cg = C // G
    dx, s1, s2 = _grouped_backward(
        dy.reshape(N * G, cg * S), x.reshape(N * G, cg * S), G, cg, S,
        np.ones(C) if w is None else w, mean, rstd, True, affine)
    dx = dx.reshape(x.shape)
    if not affine:
        return dx, None, None
    return (dx, *_affine_grads(s1, s2, np.repeat(rstd.reshape(N, G), cg, axis=1), x.dtype))


# --------------------------------------------------------------------------- instance norm


@_dispatch.dispatch
def instance_norm(x, running_mean=None, running_var=None, weight=None, bias=None,
                  use_input_stats=True, momentum=0.1, eps=1e-5, return_stats=False):
    """Instance normalisation (PyTorch's ``F.instance_norm``): each channel of each image
    normalised by its own statistics over the spatial positions.

    * ``use_input_stats=True``: ``y[n, c] = (x[n, c] - mean[n, c]) / sqrt(var[n, c] + eps) *
      weight[c] + bias[c]`` with the biased variance.  ``running_mean``/``running_var``, when
      given, are updated **in place** with the statistics averaged over the batch:
      ``running = (1 - momentum) * running + momentum * mean_n(stat[n, c])``, using the
      **unbiased** variance (``var * S / (S - 1)``, ``S`` spatial positions) for
      ``running_var``.  An empty batch leaves them alone (PyTorch makes them NaN).
    * ``use_input_stats=False``: the running statistics normalise (they must be given).

    Parameters
    ----------
    x : ndarray, shape (N, C, *)
        At least 2-D; with ``use_input_stats`` more than one spatial value (as PyTorch).
    running_mean, running_var : ndarray, shape (C,), optional
        Writeable float32/float64 ndarrays when updated in place.
    weight, bias : ndarray, shape (C,), optional
        Per-channel scale (default 1) and shift (default 0).
    use_input_stats : bool, default True
    momentum : float, default 0.1
        Any finite real.
    eps : float, default 1e-5
        Added to the variance (>= 0).
    return_stats : bool, default False
        Also return the ``mean`` and ``rstd = 1 / sqrt(var + eps)`` used, shape (N, C), dtype
        of ``x`` (the running statistics repeated over ``n`` when ``use_input_stats=False``):
        what :func:`instance_norm_backward` takes.

    Returns
    -------
    y : ndarray, shape and dtype of ``x``
    mean, rstd : ndarray, shape (N, C) (only with ``return_stats=True``)

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> x = np.array([[[1.0, 3.0], [2.0, 6.0]]])           # (N=1, C=2, L=2)
    >>> rm, rv = np.zeros(2), np.ones(2)
    >>> nc.instance_norm(x, rm, rv, eps=0.0).tolist()
    [[[-1.0, 1.0], [-1.0, 1.0]]]
    >>> rm.round(6).tolist(), rv.round(6).tolist()          # 0.9 * old + 0.1 * new
    ([0.2, 0.4], [1.1, 1.7])
    """
    op = "instance_norm"
    x = _nc_x(op, "x", x)
    N, C = x.shape[:2]
    S = math.prod(x.shape[2:])
    w = _channel_vec64(op, "weight", weight, x)
    b = _channel_vec64(op, "bias", bias, x)
    use_input_stats = check_bool(op, "use_input_stats", use_input_stats)
    momentum = check_momentum(op, momentum)
    eps = check_eps(op, eps)
    return_stats = check_bool(op, "return_stats", return_stats)
    w = np.ones(C) if w is None else w
    b = np.zeros(C) if b is None else b
    y = np.empty_like(x)
    if use_input_stats:
        if running_mean is not None:
            running_mean = _running_buffer(op, "running_mean", running_mean, C, x.shape)
        if running_var is not None:
            running_var = _running_buffer(op, "running_var", running_var, C, x.shape)
        if S == 1:
            raise ValueError(f"{op}: expected more than 1 spatial element when training, got "
                             f"argument 'x' of shape {tuple(x.shape)}")
        mean, var = _grouped_forward(x.reshape(N * C, S), y.reshape(N * C, S), C, 1, S, w, b,
                                     eps)
        rstd = _rstd(var, eps)
        if N and S:
            with np.errstate(invalid="ignore", over="ignore"):
                if running_mean is not None:
                    new = mean.reshape(N, C).mean(axis=0)
                    running_mean[...] = (1.0 - momentum) * running_mean + momentum * new
                if running_var is not None:
                    new = var.reshape(N, C).mean(axis=0) * (S / (S - 1))
                    running_var[...] = (1.0 - momentum) * running_var + momentum * new
    else:
        for name, v in (("running_mean", running_mean), ("running_var", running_var)):
            if v is None:
                raise ValueError(f"{op}: argument '{name}' is None but use_input_stats=False "
                                 "needs the running statistics")
        rm = _channel_vec64(op, "running_mean", running_mean, x)
        rs = _rstd(_channel_vec64(op, "running_var", running_var, x), eps)
        mean = np.tile(rm, N)
        rstd = np.tile(rs, N)
        if y.size:
            serial = y.size < _config.SERIAL_BELOW
            kernel = _k._plane_apply_serial if serial else _k._plane_apply
            kernel(x.reshape(N * C, S), mean, rstd * np.tile(w, N), np.tile(b, N),
                   y.reshape(N * C, S), _k.BLOCK,
                   1 if serial else _chunks(N * C * -(-S // _k.BLOCK)))
    if return_stats:
        return y, mean.reshape(N, C).astype(x.dtype), rstd.reshape(N, C).astype(x.dtype)
    return y


@_dispatch.dispatch
def instance_norm_backward(dy, x, mean, rstd, weight=None, use_input_stats=True, affine=None):
    """Gradients of :func:`instance_norm` with respect to ``x``, ``weight`` and ``bias``.

    With ``xhat = (x - mean) * rstd`` per channel of each image (``S`` spatial values) and
    ``g = weight * dy``:

    * ``use_input_stats=True`` (the statistics depend on ``x``): ``dx = rstd * (g - sum(g)/S -
      xhat * sum(g * xhat)/S)``, sums over the spatial positions;
    * ``use_input_stats=False`` (running statistics, constants): ``dx = rstd * g``;
    * ``dweight[c] = sum(dy * xhat)``, ``dbias[c] = sum(dy)`` over ``n`` and the positions.

    Parameters
    ----------
    dy : ndarray, shape of ``x``
    x : ndarray, shape (N, C, *)
        The forward input.
    mean, rstd : ndarray, shape (N, C)
        As returned by ``instance_norm(..., return_stats=True)``.
    weight : ndarray, shape (C,), optional
        The affine scale (``None``: 1).
    use_input_stats : bool, default True
        As in the forward pass.
    affine : bool, optional
        Whether to compute ``dweight`` and ``dbias`` (default: when ``weight`` is given).

    Returns
    -------
    dx : ndarray, shape of ``x``
    dweight, dbias : ndarray, shape (C,), or None (when ``affine`` is False)

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> x = np.array([[[1.0, 3.0]]])
    >>> y, mean, rstd = nc.instance_norm(x, eps=0.0, return_stats=True)
    >>> dx, dw, db = nc.instance_norm_backward(np.array([[[1.0, 0.0]]]), x, mean, rstd,
    ...                                        np.ones(1))
    >>> dx.tolist(), dw.tolist(), db.tolist()
    ([[[0.0, 0.0]]], [-1.0], [1.0])
    """
    op = "instance_norm_backward"
    x = _nc_x(op, "x", x)
    dy = _same_shape_dy(op, dy, x)
    N, C = x.shape[:2]
    S = math.prod(x.shape[2:])
    mean = _stats64(op, "mean", mean, (N, C), x)
    rstd = _stats64(op, "rstd", rstd, (N, C), x)
    w = _channel_vec64(op, "weight", weight, x)
    use_input_stats = check_bool(op, "use_input_stats", use_input_stats)
    affine = _affine_flag(op, affine, weight)
    dx, s1, s2 = _grouped_backward(
        dy.reshape(N * C, S), x.reshape(N * C, S), C, 1, S, np.ones(C) if w is None else w,
        mean, rstd, use_input_stats, affine)
    dx = dx.reshape(x.shape)
    if not affine:
        return dx, None, None
    return (dx, *_affine_grads(s1, s2, rstd.reshape(N, C), x.dtype))


# --------------------------------------------------------------------------- layer norm


def _trailing_vec(op: str, name: str, v, shape: tuple, x: np.ndarray):
    """A weight or bias of shape ``normalized_shape``, flat, C-contiguous, in ``x``'s dtype."""
    if v is None:
        return None
    v = as_float_array(op, name, v, dtype=x.dtype)
    if tuple(v.shape) != shape:
        raise ValueError(f"{op}: argument '{name}' must have shape {shape} (normalized_shape), "
                         f"got {tuple(v.shape)}")
    return v.ravel()


def _layer_args(op, x, normalized_shape_, name="x", dtype=None):
    shape = normalized_shape(op, normalized_shape_)
    x = as_float_array(op, name, x, dtype=dtype)
    R, M = check_trailing(op, x.shape, shape)
    return x, shape, R, M


@_dispatch.dispatch
def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5, return_stats=False):
    """Layer normalisation over the trailing ``normalized_shape`` (PyTorch's ``F.layer_norm``).

    Every sample -- the values of ``x[i..., :, ..., :]`` over the last ``len(normalized_shape)``
    axes -- is normalised with its own mean and biased variance, then scaled and shifted
    elementwise::

        y = (x - mean) / sqrt(var + eps) * weight + bias

    Parameters
    ----------
    x : ndarray, shape (*, *normalized_shape)
        Any leading shape (also none).
    normalized_shape : int or tuple of int
        The trailing shape normalised over (non-empty).
    weight, bias : ndarray, shape normalized_shape, optional
        Elementwise scale (default 1) and shift (default 0).
    eps : float, default 1e-5
        Added to the variance (>= 0).
    return_stats : bool, default False
        Also return ``mean`` and ``rstd = 1 / sqrt(var + eps)``, shape ``x.shape[:-k]`` (``k =
        len(normalized_shape)``), dtype of ``x``: what :func:`layer_norm_backward` takes.

    Returns
    -------
    y : ndarray, shape and dtype of ``x``
    mean, rstd : ndarray, shape x.shape[:-k] (only with ``return_stats=True``)

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> x = np.array([[1.0, 3.0], [0.0, 10.0]])
    >>> nc.layer_norm(x, 2, eps=0.0).tolist()
    [[-1.0, 1.0], [-1.0, 1.0]]
    >>> nc.layer_norm(x, (2, 2), eps=0.0).round(4).tolist()   # mean 3.5, variance 15.25
    [[-0.6402, -0.128], [-0.8963, 1.6645]]
    """
    op = "layer_norm"
    x, shape, R, M = _layer_args(op, x, normalized_shape)
    w = _trailing_vec(op, "weight", weight, shape, x)
    b = _trailing_vec(op, "bias", bias, shape, x)
    eps = check_eps(op, eps)
    return_stats = check_bool(op, "return_stats", return_stats)
    y = np.empty_like(x)
    mean = np.full(R, np.nan) if y.size == 0 else np.empty(R)  # (no values, no statistics)
    var = np.full(R, np.nan) if y.size == 0 else np.empty(R)
    if y.size:
        x2, y2 = x.reshape(R, M), y.reshape(R, M)
        w = np.ones(M, x.dtype) if w is None else w
        b = np.zeros(M, x.dtype) if b is None else b
        if x.size < _config.SERIAL_BELOW:
            _k._layer_fwd_serial(x2, y2, w, b, eps, mean, var, 1)
        elif _fused(R, x.size):
            _k._layer_fwd(x2, y2, w, b, eps, mean, var, _chunks(R))
        else:
            mean, var = _split_moments(x2)
            _k._layer_apply(x2, mean, _rstd(var, eps), w, b, y2, _k.BLOCK,
                            _chunks(R * -(-M // _k.BLOCK)))
    if return_stats:
        lead = x.shape[:x.ndim - len(shape)]
        return y, mean.reshape(lead).astype(x.dtype), _rstd(var, eps).reshape(lead).astype(
            x.dtype)
    return y


@_dispatch.dispatch
def layer_norm_backward(dy, x, normalized_shape, mean, rstd, weight=None, affine=None):
    """Gradients of :func:`layer_norm` with respect to ``x``, ``weight`` and ``bias``.

    With ``xhat = (x - mean) * rstd`` per sample of ``M = prod(normalized_shape)`` values and
    ``g = weight * dy``::

        dx = rstd * (g - sum(g) / M - xhat * sum(g * xhat) / M)     (sums over the sample)
        dweight = sum(dy * xhat),  dbias = sum(dy)                   (over the leading axes)

    Parameters
    ----------
    dy : ndarray, shape of ``x``
    x : ndarray, shape (*, *normalized_shape)
        The forward input.
    normalized_shape : int or tuple of int
        As in the forward pass.
    mean, rstd : ndarray, shape x.shape[:-len(normalized_shape)]
        As returned by ``layer_norm(..., return_stats=True)``.
    weight : ndarray, shape normalized_shape, optional
        The affine scale (``None``: 1).
    affine : bool, optional
        Whether to compute ``dweight`` and ``dbias`` (default: when ``weight`` is given).

    Returns
    -------
    dx : ndarray, shape of ``x``
    dweight, dbias : ndarray, shape normalized_shape, or None (when ``affine`` is False)

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> x = np.array([[1.0, 3.0]])
    >>> y, mean, rstd = nc.layer_norm(x, 2, eps=0.0, return_stats=True)
    >>> dx, dw, db = nc.layer_norm_backward(np.array([[1.0, 0.0]]), x, 2, mean, rstd,
    ...                                     np.ones(2))
    >>> dx.tolist(), dw.tolist(), db.tolist()
    ([[0.0, 0.0]], [-1.0, 0.0], [1.0, 0.0])
    """
    op = "layer_norm_backward"
    x, shape, R, M = _layer_args(op, x, normalized_shape)
    dy = _same_shape_dy(op, dy, x)
    lead = x.shape[:x.ndim - len(shape)]
    mean = _stats64(op, "mean", mean, lead, x)
    rstd = _stats64(op, "rstd", rstd, lead, x)
    w = _trailing_vec(op, "weight", weight, shape, x)
    affine = _affine_flag(op, affine, weight)
    w = np.ones(M, x.dtype) if w is None else w
    dx = np.empty_like(x)
    dg = db = np.zeros(M)
    if dx.size:
        dy2, x2, dx2 = dy.reshape(R, M), x.reshape(R, M), dx.reshape(R, M)
        width = M if affine else 0
        if x.size < _config.SERIAL_BELOW:
            pg, pb = np.zeros((1, width)), np.zeros((1, width))
            _k._layer_bwd_serial(dy2, x2, w, mean, rstd, int(affine), dx2, pg, pb)
            dg, db = pg[0], pb[0]
        elif _fused(R, x.size):
            T = min(R, _config.get_num_threads())
            # float64 partials while they are small; long rows sum their few rows per chunk
            # in the input's dtype, so that a row, its weights and the partials share L2
            part = np.float64 if M <= _LONG_ROW else x.dtype
            pg, pb = np.zeros((T, width), part), np.zeros((T, width), part)
            _k._layer_bwd(dy2, x2, w, mean, rstd, int(affine), dx2, pg, pb)
            if affine:  # (a sum of T rows: in the partials' dtype, a fraction of the time)
                dg, db = pg.sum(axis=0), pb.sum(axis=0)
        else:
            dg, db = np.zeros(M), np.zeros(M)
            nb = -(-M // _k.BLOCK)
            sa = np.empty((R, nb))
            sb = np.empty((R, nb))
            _k._layer_row_sums(dy2, x2, w, mean, _k.BLOCK, nb, sa, sb, _chunks(R * nb))
            _k._layer_bwd_cols(dy2, x2, w, mean, rstd, sa.sum(axis=1), sb.sum(axis=1),
                               int(affine), dx2, dg, db, _k.COL_BLOCK)
    if not affine:
        return dx, None, None
    return (dx, dg.reshape(shape).astype(x.dtype, copy=False),
            db.reshape(shape).astype(x.dtype, copy=False))

"""Adaptive and global max pooling, with their backward passes (PyTorch's
``adaptive_max_pool2d``; ``global_max_pool2d`` is ONNX's ``GlobalMaxPool``).

Inputs are ``(N, C, H, W)`` or unbatched ``(C, H, W)``.  Output bin ``i`` along an axis of
length ``H`` covers ``floor(i*H/OH) <= h < ceil((i+1)*H/OH)``.  Indices are PyTorch's: the flat
position ``h * W + w`` of the maximum in its ``(n, c)`` plane, int64; ties go to the first
maximum in row-major order, a NaN wins (the last NaN's position), and the backward pass sends
each gradient to the recorded argmax, as :func:`nbconv.max_pool2d_backward` does.
"""

from __future__ import annotations

import math

import numpy as np

from .. import _config, _dispatch
from .._checks import as_float_array, check_bool
from .._checks.pool import adaptive_size, pool_grad, pool_input, shape_tuple
from .._checks.pool1d import check_indices
from ..kernels import adaptive_pool as _ka
from ..kernels import pool2d as _kp
from . import pool as _pool

__all__ = [
    "adaptive_max_pool2d",
    "adaptive_max_pool2d_backward",
    "global_max_pool2d",
    "global_max_pool2d_backward",
]

#: most blocks of whole planes the plane-maximum kernel splits its planes into
_BLOCKS = 64


def _planes(a: np.ndarray) -> np.ndarray:
    """View (N, C, H, W) or (C, H, W) as (N*C, H, W)."""
    return a.reshape((-1,) + a.shape[-2:])


def _adaptive_max(x: np.ndarray, oh: int, ow: int, want_idx: bool):
    """Adaptive max pooling of the checked host array ``x`` to ``(oh, ow)``: ``(y, idx)``,
    ``idx`` None unless ``want_idx``."""
    y = np.empty(x.shape[:-2] + (oh, ow), dtype=x.dtype)
    idx = np.empty(y.shape, dtype=np.int64) if want_idx else None
    xp, yp = _planes(x), _planes(y)
    ip = _planes(idx) if want_idx else np.empty((1, 1, 1), dtype=np.int64)
    serial = x.size < _config.SERIAL_BELOW
    if (oh, ow) == (1, 1):
        # one bin per plane: the plane-maximum mode of the max-pool kernel runs over blocks
        # of whole planes (late CNN maps are 1x1 to 7x7: per-row tasks would be all overhead)
        kernel = _kp._max_pool2d_sep_fwd_serial if serial else _kp._max_pool2d_sep_fwd
        kernel(xp, yp, ip, want_idx, max(1, min(xp.shape[0], _BLOCKS)), 1, 1, 1, 1, 1, 0, 0)
    else:
        kernel = _ka._adaptive_max_pool2d_fwd_serial if serial else _ka._adaptive_max_pool2d_fwd
        kernel(xp, yp, ip, want_idx)
    return y, idx


def _scatter(op: str, dy, indices, shape):
    """Checked ``dy``/``indices`` of a max pooling sent back to ``shape`` (N, C, H, W) or
    (C, H, W) by the max-pool scatter."""
    ind = check_indices(op, indices, dy, shape[-2] * shape[-1])
    return _pool._max_pool2d_scatter(dy, ind, shape)


@_dispatch.dispatch
def adaptive_max_pool2d(x, output_size, return_indices=False):
    """Adaptive max pooling to a fixed output size (PyTorch's ``adaptive_max_pool2d``).

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W) or (C, H, W)
        float32/float64 (kept); integer/bool inputs are cast to float32.
    output_size : int or (int or None, int or None)
        ``(OH, OW)``; ``None`` keeps that input size.  ``OH > H`` is allowed (bins repeat).
    return_indices : bool
        Also return the argmax positions.

    Returns
    -------
    y : ndarray, shape (N, C, OH, OW), dtype of ``x``
        The maximum of each bin ``floor(i*H/OH) <= h < ceil((i+1)*H/OH)`` (same for ``w``).
    indices : ndarray of int64, shape (N, C, OH, OW)
        Only with ``return_indices=True``: the flat position ``h * W + w`` of each maximum in
        its plane; ties go to the first maximum, a NaN wins (the last NaN's position).

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> x = np.array([[[[1., 5., 2.], [4., 0., 3.]]]])
    >>> y, idx = nc.adaptive_max_pool2d(x, (1, 2), return_indices=True)
    >>> y[0, 0].tolist(), idx[0, 0].tolist()
    ([[5.0, 5.0]], [[1, 1]])
    """
    op = "adaptive_max_pool2d"
    x = pool_input(op, x)
    want = check_bool(op, "return_indices", return_indices)
    oh, ow = adaptive_size(op, output_size, x.shape[-2:])
    y, idx = _adaptive_max(x, oh, ow, want)
    return (y, idx) if want else y


@_dispatch.dispatch
def adaptive_max_pool2d_backward(dy, indices, input_shape):
    """Gradient of :func:`adaptive_max_pool2d` with respect to its input.

    Each ``dy[n, c, i, j]`` is added to ``dx[n, c]`` at the flat position
    ``indices[n, c, i, j]``; overlapping bins accumulate.

    Parameters
    ----------
    dy : ndarray, shape (N, C, OH, OW) or (C, OH, OW)
        Upstream gradient.
    indices : ndarray of int, shape like ``dy``
        From ``adaptive_max_pool2d(..., return_indices=True)``.
    input_shape : tuple of int
        ``(N, C, H, W)`` or ``(C, H, W)``, the shape of the forward input.

    Returns
    -------
    dx : ndarray, shape ``input_shape``, dtype of ``dy``

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> x = np.array([[[[1., 5., 2.], [4., 0., 3.]]]])
    >>> y, idx = nc.adaptive_max_pool2d(x, (1, 2), return_indices=True)
    >>> nc.adaptive_max_pool2d_backward(np.ones_like(y), idx, x.shape)[0, 0].tolist()
    [[0.0, 2.0, 0.0], [0.0, 0.0, 0.0]]
    """
    op = "adaptive_max_pool2d_backward"
    dy = pool_grad(op, dy)
    shape = shape_tuple(op, input_shape, (dy.ndim,))
    if shape[:-2] != tuple(dy.shape[:-2]):
        raise ValueError(
            f"{op}: argument 'input_shape' {shape} does not match dy shape {tuple(dy.shape)} "
            "in the batch/channel axes"
        )
    return _scatter(op, dy, indices, shape)


@_dispatch.dispatch
def global_max_pool2d(x, keepdims=True, return_indices=False):
    """Maximum over the spatial axes (ONNX's ``GlobalMaxPool``, ``adaptive_max_pool2d(x, 1)``).

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W) or (C, H, W)
    keepdims : bool
        True (default): output ``(N, C, 1, 1)``; False: ``(N, C)``.
    return_indices : bool
        Also return the argmax positions (flat ``h * W + w``, shaped like ``y``).

    Returns
    -------
    y : ndarray, shape (N, C, 1, 1) or (N, C), dtype of ``x``
    indices : ndarray of int64, shape of ``y`` (only with ``return_indices=True``)

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> x = np.array([[[[1., 5.], [7., 0.]], [[2., 2.], [-1., 0.]]]])
    >>> y, idx = nc.global_max_pool2d(x, keepdims=False, return_indices=True)
    >>> y.tolist(), idx.tolist()
    ([[7.0, 2.0]], [[2, 0]])
    """
    op = "global_max_pool2d"
    x = pool_input(op, x)
    keepdims = check_bool(op, "keepdims", keepdims)
    want = check_bool(op, "return_indices", return_indices)
    y, idx = _adaptive_max(x, 1, 1, want)
    if not keepdims:
        y = y.reshape(x.shape[:-2])
        idx = None if idx is None else idx.reshape(x.shape[:-2])
    return (y, idx) if want else y


@_dispatch.dispatch
def global_max_pool2d_backward(dy, indices, input_shape):
    """Gradient of :func:`global_max_pool2d`: each ``dy[n, c]`` goes to the argmax of its plane.

    Parameters
    ----------
    dy : ndarray, shape (N, C, 1, 1) or (N, C)
        (``(C, 1, 1)`` or ``(C,)`` for a 3-D input.)
    indices : ndarray of int, shape like ``dy``
        From ``global_max_pool2d(..., return_indices=True)``.
    input_shape : tuple of int
        ``(N, C, H, W)`` or ``(C, H, W)``.

    Returns
    -------
    dx : ndarray, shape ``input_shape``, dtype of ``dy``

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> x = np.array([[[[1., 5.], [7., 0.]]]])
    >>> y, idx = nc.global_max_pool2d(x, return_indices=True)
    >>> nc.global_max_pool2d_backward(np.ones_like(y), idx, x.shape)[0, 0].tolist()
    [[0.0, 0.0], [1.0, 0.0]]
    """
    op = "global_max_pool2d_backward"
    dy = as_float_array(op, "dy", dy)
    shape = shape_tuple(op, input_shape, (3, 4))
    lead = shape[:-2]
    if tuple(dy.shape) not in (lead, lead + (1, 1)):
        raise ValueError(
            f"{op}: argument 'dy' must have shape {lead + (1, 1)} or {lead} for "
            f"input_shape {shape}, got {tuple(dy.shape)}"
        )
    ind = check_indices(op, indices, dy, math.prod(shape[-2:]))
    return _pool._max_pool2d_scatter(dy.reshape(lead + (1, 1)), ind.reshape(lead + (1, 1)),
                                     shape)

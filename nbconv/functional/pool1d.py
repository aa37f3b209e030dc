"""1-D pooling: max, average, adaptive average and adaptive max, with their backward passes.

Semantics follow PyTorch (``torch.nn.functional.max_pool1d`` and friends).  An ``(N, C, L)``
input is pooled as the ``(N, C, 1, L)`` image by the 2-D kernels (:mod:`nbconv.functional.pool`,
:mod:`nbconv.functional.adaptive_pool`; max pooling's forward pass has a 1-D kernel of its own,
:mod:`nbconv.kernels.pool1d`), so every rule of the 2-D ops holds along ``L``:

* ``kernel_size``, ``stride``, ``padding``, ``dilation`` are ints (or 1-tuples);
  ``stride=None`` means ``kernel_size``; ``padding <= kernel_size // 2``.
* Output length: ``floor((L + 2p - d(k-1) - 1) / s) + 1``; with ``ceil_mode=True`` the ceiling,
  but the last window must start inside the input or the left padding.
* Max-pool indices are PyTorch's: the position ``l`` of the maximum in its ``(n, c)`` row,
  int64; ties go to the first maximum, a NaN wins (the last NaN's position).
* Inputs are ``(N, C, L)``; unbatched ``(C, L)`` gives a 2-D result.
"""

from __future__ import annotations

import numpy as np

from .. import _config, _dispatch
from .._checks import check_bool
from .._checks.pool1d import (
    adaptive_size_1d,
    check_indices,
    input_shape_1d,
    pool1d_grad,
    pool1d_input,
    window_args_1d,
)
from ..kernels import pool1d as _k
from . import adaptive_pool as _adaptive
from . import pool as _pool

__all__ = [
    "max_pool1d",
    "max_pool1d_backward",
    "avg_pool1d",
    "avg_pool1d_backward",
    "adaptive_avg_pool1d",
    "adaptive_avg_pool1d_backward",
    "adaptive_max_pool1d",
    "adaptive_max_pool1d_backward",
]

#: most blocks of whole rows one kernel call splits its rows into
_BLOCKS = 64


def _image(a: np.ndarray) -> np.ndarray:
    """View (N, C, L) / (C, L) as the image (N, C, 1, L) / (C, 1, L)."""
    return a.reshape(a.shape[:-1] + (1, a.shape[-1]))


def _image_shape(shape: tuple) -> tuple:
    return shape[:-1] + (1, shape[-1])


def _seq(a: np.ndarray) -> np.ndarray:
    """View an (N, C, 1, OL) / (C, 1, OL) result as (N, C, OL) / (C, OL)."""
    return a.reshape(a.shape[:-2] + (a.shape[-1],))


# --------------------------------------------------------------------------- max pooling


@_dispatch.dispatch
def max_pool1d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """1-D max pooling (PyTorch's ``max_pool1d``).

    Parameters
    ----------
    x : ndarray, shape (N, C, L) or (C, L)
        float32/float64 (kept); integer/bool inputs are cast to float32.
    kernel_size : int
        Window length ``k``.
    stride : int, optional
        Window step; ``None`` (default) means ``kernel_size``.
    padding : int
        Implicit ``-inf`` padding at both ends; at most ``kernel_size // 2``.  Padding never
        wins the maximum.
    dilation : int
        Spacing between window taps.
    ceil_mode : bool
        Round the output length up (the last window must still start inside the input or the
        left padding).
    return_indices : bool
        Also return the argmax positions.

    Returns
    -------
    y : ndarray, shape (N, C, OL)
        ``OL = floor((L + 2*p - d*(k-1) - 1) / s) + 1`` (ceil with ``ceil_mode``); dtype of
        ``x``.
    indices : ndarray of int64, shape (N, C, OL)
        Only with ``return_indices=True``: the position ``l`` of each maximum in its row.
        Ties go to the first maximum; a NaN in a window makes the output NaN and records the
        last NaN's position.  A window that covers no input element (possible only with
        dilation) gives ``-inf`` and index ``-1``.

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> x = np.array([[[1., 3., 2., 5., 4.]]])
    >>> y, idx = nc.max_pool1d(x, 2, return_indices=True)
    >>> y.tolist(), idx.tolist()
    ([[[3.0, 5.0]]], [[[1, 3]]])
    >>> nc.max_pool1d(x, 2, ceil_mode=True).tolist()
    [[[3.0, 5.0, 4.0]]]
    """
    op = "max_pool1d"
    x = pool1d_input(op, x)
    want = check_bool(op, "return_indices", return_indices)
    ol, k, s, p, d = window_args_1d(op, x.shape, kernel_size, stride, padding, dilation,
                                    ceil_mode)
    y = np.empty(x.shape[:-1] + (ol,), dtype=x.dtype)
    idx = np.empty(y.shape, dtype=np.int64) if want else None
    rows = x.reshape(-1, x.shape[-1])
    # its own kernel rather than the 2-D one on an (N, C, 1, L) view: the taps sweep whole
    # rows of windows (vectorised), where the 2-D kernels pay per window for the row loop
    kernel = _k._max_pool1d_fwd_serial if x.size < _config.SERIAL_BELOW else _k._max_pool1d_fwd
    kernel(rows, y.reshape(-1, ol), idx.reshape(-1, ol) if want else np.empty((1, 1), np.int64),
           want, max(1, min(rows.shape[0], _BLOCKS)), k, s, p, d)
    return (y, idx) if want else y


@_dispatch.dispatch
def max_pool1d_backward(dy, indices, input_shape):
    """Gradient of :func:`max_pool1d` with respect to its input.

    Each ``dy[n, c, i]`` is added to ``dx[n, c]`` at ``indices[n, c, i]``; overlapping windows
    accumulate; index ``-1`` is skipped.

    Parameters
    ----------
    dy : ndarray, shape (N, C, OL) or (C, OL)
        Upstream gradient.
    indices : ndarray of int, shape like ``dy``
        From ``max_pool1d(..., return_indices=True)`` (values in ``[-1, L)``).
    input_shape : tuple of int
        ``(N, C, L)`` or ``(C, L)``, the shape of the forward input.

    Returns
    -------
    dx : ndarray, shape ``input_shape``, dtype of ``dy``

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> x = np.array([[[1., 3., 2., 5.]]])
    >>> y, idx = nc.max_pool1d(x, 2, return_indices=True)
    >>> nc.max_pool1d_backward(np.ones_like(y), idx, x.shape).tolist()
    [[[0.0, 1.0, 0.0, 1.0]]]
    """
    op = "max_pool1d_backward"
    dy = pool1d_grad(op, dy)
    shape = input_shape_1d(op, input_shape, dy)
    ind = check_indices(op, indices, dy, shape[-1])
    dx = _pool._max_pool2d_scatter(_image(dy), _image(ind), _image_shape(shape))
    return dx.reshape(shape)


# --------------------------------------------------------------------------- average pooling


@_dispatch.dispatch
def avg_pool1d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """1-D average pooling (PyTorch's ``avg_pool1d``).

    Parameters
    ----------
    x : ndarray, shape (N, C, L) or (C, L)
    kernel_size : int
    stride : int, optional
        ``None`` (default) means ``kernel_size``.
    padding : int
        Implicit zero padding at both ends; at most ``kernel_size // 2``.
    ceil_mode : bool
        Round the output length up (the last window must start inside the input or the left
        padding).
    count_include_pad : bool
        If True (default) the divisor counts the padded elements of the window; a window is
        first clipped to the padded input, so with ``ceil_mode`` the part hanging past the
        padding is never counted (PyTorch).  If False the divisor is the number of real input
        elements in the window.

    Returns
    -------
    y : ndarray, shape (N, C, OL)
        ``OL = floor((L + 2*p - k) / s) + 1`` (ceil with ``ceil_mode``); dtype of ``x``.

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> x = np.arange(7.0).reshape(1, 1, 7)
    >>> nc.avg_pool1d(x, 2, stride=3, ceil_mode=True).tolist()
    [[[0.5, 3.5, 6.0]]]
    >>> nc.avg_pool1d(x, 3, padding=1, count_include_pad=False).tolist()
    [[[0.5, 3.0, 5.5]]]
    """
    op = "avg_pool1d"
    x = pool1d_input(op, x)
    cip = check_bool(op, "count_include_pad", count_include_pad)
    _, k, s, p, _ = window_args_1d(op, x.shape, kernel_size, stride, padding, 1, ceil_mode)
    return _seq(_pool.avg_pool2d(_image(x), (1, k), (1, s), (0, p), bool(ceil_mode), cip))


@_dispatch.dispatch
def avg_pool1d_backward(dy, input_shape, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True):
    """Gradient of :func:`avg_pool1d` with respect to its input.

    Parameters
    ----------
    dy : ndarray, shape (N, C, OL) or (C, OL)
        Upstream gradient; ``OL`` must be the output length of the forward call.
    input_shape : tuple of int
        ``(N, C, L)`` or ``(C, L)``, the shape of the forward input.
    kernel_size, stride, padding, ceil_mode, count_include_pad
        As given to :func:`avg_pool1d`.

    Returns
    -------
    dx : ndarray, shape ``input_shape``, dtype of ``dy``
        ``dx[l] = sum over windows covering l of dy / divisor``.

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> nc.avg_pool1d_backward(np.ones((1, 1, 2)), (1, 1, 4), 2).tolist()
    [[[0.5, 0.5, 0.5, 0.5]]]
    """
    op = "avg_pool1d_backward"
    dy = pool1d_grad(op, dy)
    shape = input_shape_1d(op, input_shape, dy)
    cip = check_bool(op, "count_include_pad", count_include_pad)
    ol, k, s, p, _ = window_args_1d(op, shape, kernel_size, stride, padding, 1, ceil_mode)
    if dy.shape[-1] != ol:
        raise ValueError(
            f"{op}: argument 'dy' has length {dy.shape[-1]} but pooling input_shape {shape} "
            f"gives {ol}"
        )
    dx = _pool.avg_pool2d_backward(_image(dy), _image_shape(shape), (1, k), (1, s), (0, p),
                                   bool(ceil_mode), cip)
    return dx.reshape(shape)


# --------------------------------------------------------------------------- adaptive


@_dispatch.dispatch
def adaptive_avg_pool1d(x, output_size):
    """Adaptive average pooling to a fixed length (PyTorch's ``adaptive_avg_pool1d``).

    Output bin ``i`` averages ``floor(i*L/OL) <= l < ceil((i+1)*L/OL)``; bins may overlap and
    ``OL > L`` is allowed.

    Parameters
    ----------
    x : ndarray, shape (N, C, L) or (C, L)
    output_size : int
        ``OL`` (a 1-tuple is accepted).

    Returns
    -------
    y : ndarray, shape (N, C, OL), dtype of ``x``

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> nc.adaptive_avg_pool1d(np.arange(5.0).reshape(1, 1, 5), 2).tolist()
    [[[1.0, 3.0]]]
    """
    op = "adaptive_avg_pool1d"
    x = pool1d_input(op, x)
    ol = adaptive_size_1d(op, output_size)
    return _seq(_pool.adaptive_avg_pool2d(_image(x), (1, ol)))


@_dispatch.dispatch
def adaptive_avg_pool1d_backward(dy, input_shape):
    """Gradient of :func:`adaptive_avg_pool1d` with respect to its input.

    Parameters
    ----------
    dy : ndarray, shape (N, C, OL) or (C, OL)
        Upstream gradient; its length is the forward ``output_size``.
    input_shape : tuple of int
        ``(N, C, L)`` or ``(C, L)``.

    Returns
    -------
    dx : ndarray, shape ``input_shape``, dtype of ``dy``

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> nc.adaptive_avg_pool1d_backward(np.ones((1, 1, 2)), (1, 1, 4)).tolist()
    [[[0.5, 0.5, 0.5, 0.5]]]
    """
    op = "adaptive_avg_pool1d_backward"
    dy = pool1d_grad(op, dy)
    shape = input_shape_1d(op, input_shape, dy)
    if dy.shape[-1] == 0:
        raise ValueError(f"{op}: argument 'dy' has an empty length, shape {tuple(dy.shape)}")
    return _pool.adaptive_avg_pool2d_backward(_image(dy), _image_shape(shape)).reshape(shape)


@_dispatch.dispatch
def adaptive_max_pool1d(x, output_size, return_indices=False):
    """Adaptive max pooling to a fixed length (PyTorch's ``adaptive_max_pool1d``).

    Parameters
    ----------
    x : ndarray, shape (N, C, L) or (C, L)
    output_size : int
        ``OL`` (a 1-tuple is accepted); bin ``i`` covers ``floor(i*L/OL) <= l <
        ceil((i+1)*L/OL)``.
    return_indices : bool
        Also return the argmax positions.

    Returns
    -------
    y : ndarray, shape (N, C, OL), dtype of ``x``
    indices : ndarray of int64, shape (N, C, OL)
        Only with ``return_indices=True``: the position ``l`` of each maximum; ties go to the
        first maximum, a NaN wins (the last NaN's position).

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> y, idx = nc.adaptive_max_pool1d(np.array([[[1., 3., 3., 0., 2.]]]), 2,
    ...                                 return_indices=True)
    >>> y.tolist(), idx.tolist()
    ([[[3.0, 3.0]]], [[[1, 2]]])
    """
    op = "adaptive_max_pool1d"
    x = pool1d_input(op, x)
    want = check_bool(op, "return_indices", return_indices)
    ol = adaptive_size_1d(op, output_size)
    y, idx = _adaptive._adaptive_max(_image(x), 1, ol, want)
    return (_seq(y), _seq(idx)) if want else _seq(y)


@_dispatch.dispatch
def adaptive_max_pool1d_backward(dy, indices, input_shape):
    """Gradient of :func:`adaptive_max_pool1d` with respect to its input.

    Parameters
    ----------
    dy : ndarray, shape (N, C, OL) or (C, OL)
    indices : ndarray of int, shape like ``dy``
        From ``adaptive_max_pool1d(..., return_indices=True)``.
    input_shape : tuple of int
        ``(N, C, L)`` or ``(C, L)``.

    Returns
    -------
    dx : ndarray, shape ``input_shape``, dtype of ``dy``

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> x = np.array([[[1., 3., 3., 0., 2.]]])
    >>> y, idx = nc.adaptive_max_pool1d(x, 2, return_indices=True)
    >>> nc.adaptive_max_pool1d_backward(np.ones_like(y), idx, x.shape).tolist()
    [[[0.0, 1.0, 1.0, 0.0, 0.0]]]
    """
    op = "adaptive_max_pool1d_backward"
    dy = pool1d_grad(op, dy)
    shape = input_shape_1d(op, input_shape, dy)
    ind = check_indices(op, indices, dy, shape[-1])
    dx = _pool._max_pool2d_scatter(_image(dy), _image(ind), _image_shape(shape))
    return dx.reshape(shape)

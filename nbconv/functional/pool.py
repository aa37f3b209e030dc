"""Pooling: max, average, adaptive average and global average, with their backward passes.

Semantics follow PyTorch exactly (``torch.nn.functional.max_pool2d`` and friends):

* ``stride=None`` means ``stride = kernel_size``; ``kernel_size``, ``stride``, ``padding`` and
  ``dilation`` are an int or a pair ``(vertical, horizontal)``.
* ``padding`` is at most half the kernel size on each axis (``p <= k // 2``).
* Output size per axis: ``floor((n + 2p - d(k-1) - 1) / s) + 1``; with ``ceil_mode=True`` the
  ceiling, but the last window must start inside the input or the left padding.
* Inputs are ``(N, C, H, W)``; ``(C, H, W)`` is accepted too and gives a 3-D result.
"""

from __future__ import annotations

import math

import numpy as np

from .. import _config, _dispatch
from .._checks import as_float_array, check_bool
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
from ..kernels import pool2d as _k

__all__ = [
    "max_pool2d",
    "max_pool2d_backward",
    "avg_pool2d",
    "avg_pool2d_backward",
    "adaptive_avg_pool2d",
    "adaptive_avg_pool2d_backward",
    "global_avg_pool2d",
    "global_avg_pool2d_backward",
]


# --------------------------------------------------------------------------- helpers


def _planes(a: np.ndarray) -> np.ndarray:
    """View (N, C, H, W) or (C, H, W) as (N*C, H, W)."""
    return a.reshape((-1,) + a.shape[-2:])


# --------------------------------------------------------------------------- max pooling


@_dispatch.dispatch
def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """2-D max pooling (PyTorch's ``max_pool2d``).

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W) or (C, H, W)
        float32/float64 (kept); integer/bool inputs are cast to float32.
    kernel_size : int or (int, int)
        Window size ``(kh, kw)``.
    stride : int or (int, int), optional
        Window step; ``None`` (default) means ``kernel_size``.
    padding : int or (int, int)
        Implicit ``-inf`` padding on each side; at most ``kernel_size // 2``.  Padding never
        wins the maximum.
    dilation : int or (int, int)
        Spacing between window taps.
    ceil_mode : bool
        Round the output size up (the last window must still start inside the input or the
        left padding).
    return_indices : bool
        Also return the argmax positions.

    Returns
    -------
    y : ndarray, shape (N, C, OH, OW)
        ``OH = floor((H + 2*ph - dh*(kh-1) - 1) / sy) + 1`` (ceil with ``ceil_mode``), same for
        ``OW``; dtype of ``x``.
    indices : ndarray of int64, shape (N, C, OH, OW)
        Only with ``return_indices=True``: the flat position ``h * W + w`` of each maximum in
        its (unpadded) ``(n, c)`` plane.  Ties go to the first maximal element in row-major
        window order; a NaN in a window makes the output NaN and records the NaN's position
        (the last NaN if several, as PyTorch's CPU kernel).  A window that covers no input
        element at all (possible only with dilation) gives ``-inf`` and index ``-1``.

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    >>> y, idx = nc.max_pool2d(x, 2, return_indices=True)
    >>> y[0, 0].tolist(), idx[0, 0].tolist()
    ([[5.0, 7.0], [13.0, 15.0]], [[5, 7], [13, 15]])
    """
    op = "max_pool2d"
    x = pool_input(op, x)
    return_indices = check_bool(op, "return_indices", return_indices)
    (oh, ow), (kh, kw), (sy, sx), (ph, pw), (dh, dw) = window_args(
        op, x.shape, kernel_size, stride, padding, dilation, ceil_mode
    )
    y = np.empty(x.shape[:-2] + (oh, ow), dtype=x.dtype)
    return _max_pool2d_into(x, y, return_indices, (kh, kw), (sy, sx), (ph, pw), (dh, dw))


def _classic_2x2(x_shape, y_shape, k, s, p, d) -> bool:
    """Whether a max pooling is the classic 2x2/2 one without partial windows, which a
    branch-free kernel runs 4.7x faster."""
    return (tuple(k) + tuple(s) + tuple(p) + tuple(d) == (2, 2, 2, 2, 0, 0, 1, 1)
            and tuple(y_shape[-2:]) == (x_shape[-2] // 2, x_shape[-1] // 2))


def _max_pool2d_2x2_values(x_size):
    """The kernel of the classic 2x2/2 max pooling without indices for inputs of
    ``x_size`` values: ``kernel(x_planes, y_planes)`` (serial below
    :data:`nbconv._config.SERIAL_BELOW` values: waking the threads would cost more)."""
    return (_k._max_pool2d_2x2_fwd_noidx_serial if x_size < _config.SERIAL_BELOW
            else _k._max_pool2d_2x2_fwd_noidx)


def _max_pool2d_into(x, y, return_indices, k, s, p, d):
    """:func:`max_pool2d` of checked C-contiguous host ``x`` into ``y`` (its output shape and
    dtype) with normalised window pairs; returns ``y`` or ``(y, indices)``.  A planned
    network (:mod:`nbconv.inference`) calls it with its own buffer as ``y``."""
    (kh, kw), (sy, sx), (ph, pw), (dh, dw) = k, s, p, d
    H, W = x.shape[-2], x.shape[-1]
    if _classic_2x2(x.shape, y.shape, k, s, p, d):
        if not return_indices:
            _max_pool2d_2x2_values(x.size)(_planes(x), _planes(y))
            return y
        idx = np.empty(y.shape, dtype=np.int64)
        # with argmax bookkeeping the work per element is larger: threads pay 4x sooner
        serial = x.size < _config.SERIAL_BELOW // 4
        kernel = _k._max_pool2d_2x2_fwd_serial if serial else _k._max_pool2d_2x2_fwd
        kernel(_planes(x), _planes(y), _planes(idx))
    elif (return_indices and (dh, dw) == (1, 1) and H * W <= _k.ACROSS_MAX_PLANE
          and _separable_mode(x.shape, y.shape, kh, kw, sy, sx, ph, pw) != 1):
        # training's small planes: values and argmax pooled 64 planes at a time
        idx = np.empty(y.shape, dtype=np.int64)
        xp = _planes(x)
        _k._max_pool2d_across_fwd(xp, _planes(y), _planes(idx), _values_blocks(xp.shape),
                                  kh, kw, sy, sx, ph, pw)
    elif (not return_indices and (dh, dw) == (1, 1)
          and _separable_mode(x.shape, y.shape, kh, kw, sy, sx, ph, pw) != 1):
        # inference: the maxima alone, a tap at a time over whole output rows (vectorised)
        xp = _planes(x)
        # nine taps an element: threads pay from a few thousand elements on
        serial = x.size < _config.SERIAL_BELOW // 32
        kernel = (_k._max_pool2d_values_fwd_serial if serial
                  else _k._max_pool2d_values_fwd)
        kernel(xp, _planes(y), _values_blocks(xp.shape), kh, kw, sy, sx, ph, pw)
    elif (dh, dw) == (1, 1) and (mode := _separable_mode(x.shape, y.shape, kh, kw, sy, sx,
                                                          ph, pw)) is not None:
        # separable row and column passes, or a plane maximum, over blocks of whole planes
        idx = np.empty(y.shape, dtype=np.int64) if return_indices else None
        _max_pool2d_separable(x, y, idx, mode, (kh, kw), (sy, sx), (ph, pw))
    else:
        idx = np.empty(y.shape, dtype=np.int64)
        _k._max_pool2d_fwd(_planes(x), _planes(y), _planes(idx), kh, kw, sy, sx, ph, pw, dh, dw)
    if return_indices:
        return y, idx
    return y


#: most blocks of planes one pooling kernel call splits its planes into (a block is one
#: ``prange`` task; planes of 1x1 or 2x2 make per-plane tasks all overhead)
_POOL_BLOCKS = 64


def _values_blocks(planes_shape) -> int:
    """Blocks of planes for the kernels that take ``nblocks`` (the values-only max pooling,
    the adaptive average across planes): whole groups of lanes when small planes are pooled
    across planes (a block of fewer planes than lanes would pool mostly stale lanes), else up
    to ``_POOL_BLOCKS``."""
    P, H, W = planes_shape
    if H * W <= _k.ACROSS_MAX_PLANE:
        return max(1, min(-(-P // _k.ACROSS_PLANES), _POOL_BLOCKS))
    return max(1, min(P, _POOL_BLOCKS))


def _separable_mode(shape, out_shape, kh, kw, sy, sx, ph, pw):
    """Which mode of :func:`nbconv.kernels.pool2d._max_pool2d_sep_fwd` pays for a
    dilation-free max pooling of ``shape`` into ``out_shape``: 1 when every window covers its
    whole plane (3x3 windows with padding 1 on 2x2 or 1x1 maps: a plane maximum), 0 (the
    separable passes) with stride 1 or narrow planes (up to 7 columns), where they were 1.2-2x
    faster than the per-window kernel; None otherwise (wider planes at stride >= 2: the
    per-window kernel :func:`nbconv.kernels.pool2d._max_pool2d_fwd` was as fast or faster,
    e.g. 3x3/2 on 16x16 maps by 1.3x)."""
    H, W = shape[-2:]
    oh, ow = out_shape[-2:]
    if (oh - 1) * sy <= ph and kh - ph >= H and (ow - 1) * sx <= pw and kw - pw >= W:
        return 1
    if (sy == 1 and sx == 1) or W < 8:
        return 0
    return None


def _max_pool2d_separable(x, y, idx, mode, k, s, p):
    """Dilation-free max pooling of checked host arrays ``x`` into ``y`` (and the argmax into
    ``idx`` unless it is None) by :func:`nbconv.kernels.pool2d._max_pool2d_sep_fwd` in
    ``mode`` (see :func:`_separable_mode`)."""
    (kh, kw), (sy, sx), (ph, pw) = k, s, p
    xp = _planes(x)
    want = idx is not None
    ip = _planes(idx) if want else np.empty((1, 1, 1), dtype=np.int64)
    serial = x.size < _config.SERIAL_BELOW // 4
    kernel = _k._max_pool2d_sep_fwd_serial if serial else _k._max_pool2d_sep_fwd
    kernel(xp, _planes(y), ip, want, min(xp.shape[0], _POOL_BLOCKS), mode,
           kh, kw, sy, sx, ph, pw)


@_dispatch.dispatch
def max_pool2d_backward(dy, indices, input_shape):
    """Gradient of :func:`max_pool2d` with respect to its input.

    Each ``dy[n, c, i, j]`` is added to ``dx[n, c]`` at the flat position
    ``indices[n, c, i, j]``; overlapping windows accumulate.

    Parameters
    ----------
    dy : ndarray, shape (N, C, OH, OW) or (C, OH, OW)
        Upstream gradient.
    indices : ndarray of int, shape like ``dy``
        The ``indices`` returned by ``max_pool2d(..., return_indices=True)`` (PyTorch's
        layout: ``h * W + w`` within each unpadded plane; ``-1`` entries are skipped).
    input_shape : tuple of int
        Shape of the pooled input, ``(N, C, H, W)`` or ``(C, H, W)``.

    Returns
    -------
    dx : ndarray, shape ``input_shape``, dtype of ``dy``

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> x = np.array([[[[1., 3.], [2., 0.]]]])
    >>> y, idx = nc.max_pool2d(x, 2, return_indices=True)
    >>> nc.max_pool2d_backward(np.ones_like(y), idx, x.shape)[0, 0].tolist()
    [[0.0, 1.0], [0.0, 0.0]]
    """
    op = "max_pool2d_backward"
    dy = pool_grad(op, dy)
    ind = np.asarray(indices)
    if ind.dtype.kind not in "iu":
        raise TypeError(
            f"{op}: argument 'indices' must be an integer array (int64 from max_pool2d), "
            f"got dtype {ind.dtype}"
        )
    if ind.shape != dy.shape:
        raise ValueError(
            f"{op}: argument 'indices' shape {tuple(ind.shape)} does not match "
            f"dy shape {tuple(dy.shape)}"
        )
    shape = check_input_shape(op, input_shape, dy)
    hw = shape[-2] * shape[-1]
    ind = np.ascontiguousarray(ind, dtype=np.int64)
    if ind.size and (ind.min() < -1 or ind.max() >= hw):
        raise ValueError(
            f"{op}: argument 'indices' has values in [{ind.min()}, {ind.max()}], outside "
            f"[0, {hw}) for input_shape {shape}"
        )
    return _max_pool2d_scatter(dy, ind, shape)


def _max_pool2d_scatter(dy, ind, shape, relu_out=None):
    """:func:`max_pool2d_backward` on checked arrays: ``dy`` (float), ``ind`` (int64, same
    shape, C-contiguous, values in [-1, H*W)) and the input ``shape``.  ``MaxPool2d`` calls
    it directly with the indices its forward pass made.  With ``relu_out`` (the pooled
    output, same shape as ``dy``) it is also the backward pass of a ReLU applied before the
    pooling (see :func:`nbconv.kernels.pool2d._max_pool2d_bwd`)."""
    dx = np.empty(shape, dtype=dy.dtype)
    hw = shape[-2] * shape[-1]
    p = math.prod(shape[:-2])
    k = dy.shape[-2] * dy.shape[-1]
    relu = relu_out is not None
    y = relu_out if relu else dy
    # a scatter costs ~1.7 ns an element, 10x a ReLU's: threads pay 4x sooner (at 98k
    # elements 0.115 vs 0.137 ms, at 61k 0.122 vs 0.107, on a loaded machine)
    serial = dx.size < _config.SERIAL_BELOW // 4
    if hw < 16:
        # tiny planes (googlenet's 1x1 to 3x3 maps): one loop over groups of planes, 3-7x
        # faster there; from 4x4 planes on the per-plane kernel is faster (1.3-2.8x)
        kernel = _k._max_pool2d_bwd_flat_serial if serial else _k._max_pool2d_bwd_flat
        kernel(dy.reshape(-1), ind.reshape(-1), y.reshape(-1), relu, dx.reshape(-1), k, hw,
               max(1, min(p, _POOL_BLOCKS)))
    else:
        kernel = _k._max_pool2d_bwd_serial if serial else _k._max_pool2d_bwd
        kernel(dy.reshape(p, k), ind.reshape(p, k), y.reshape(p, k), relu, dx.reshape(p, hw))
    return dx


def _global_mean(x, y):
    """``y`` (P, 1, 1) = the mean of each plane of the checked host array ``x`` (P, H, W) by
    the flat block kernel (the 1x1 output of adaptive/global average pooling)."""
    hw = x.shape[-2] * x.shape[-1]
    kernel = (_k._global_avg_pool2d_fwd_serial if x.size < _config.SERIAL_BELOW
              else _k._global_avg_pool2d_fwd)
    kernel(x.reshape(-1), y.reshape(-1), hw, max(1, min(y.size, _POOL_BLOCKS)))


def _global_mean_backward(dy, dx):
    """Gradient of :func:`_global_mean`: ``dx`` (P, H, W) = ``dy`` (P, 1, 1) / (H * W)."""
    hw = dx.shape[-2] * dx.shape[-1]
    kernel = (_k._global_avg_pool2d_bwd_serial if dx.size < _config.SERIAL_BELOW
              else _k._global_avg_pool2d_bwd)
    kernel(dy.reshape(-1), dx.reshape(-1), hw, max(1, min(dy.size, _POOL_BLOCKS)))


# --------------------------------------------------------------------------- average pooling


@_dispatch.dispatch
def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    """2-D average pooling (PyTorch's ``avg_pool2d``).

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W) or (C, H, W)
    kernel_size : int or (int, int)
    stride : int or (int, int), optional
        ``None`` (default) means ``kernel_size``.
    padding : int or (int, int)
        Implicit zero padding on each side; at most ``kernel_size // 2``.
    ceil_mode : bool
        Round the output size up (the last window must start inside the input or the left
        padding).
    count_include_pad : bool
        If True (default) the divisor counts the padded elements of the window.  As in PyTorch,
        the window is first clipped to the padded input, so with ``ceil_mode`` the part hanging
        past the padding is never counted: ``avg_pool2d(arange(49).reshape(1, 1, 7, 7), 2,
        stride=3, ceil_mode=True)`` has first row ``[4, 7, 9.5]``.  If False the divisor is the
        number of real input elements in the window.
    divisor_override : int, optional
        Non-zero divisor used instead of the window size.

    Returns
    -------
    y : ndarray, shape (N, C, OH, OW)
        ``OH = floor((H + 2*ph - kh) / sy) + 1`` (ceil with ``ceil_mode``); dtype of ``x``.

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> x = np.arange(49.0).reshape(1, 1, 7, 7)
    >>> nc.avg_pool2d(x, 2, stride=3, ceil_mode=True)[0, 0, 0].tolist()
    [4.0, 7.0, 9.5]
    """
    op = "avg_pool2d"
    x = pool_input(op, x)
    div = check_divisor(op, divisor_override)
    (oh, ow), (kh, kw), (sy, sx), (ph, pw), _ = window_args(
        op, x.shape, kernel_size, stride, padding, 1, ceil_mode
    )
    y = np.empty(x.shape[:-2] + (oh, ow), dtype=x.dtype)
    return _avg_pool2d_into(x, y, (kh, kw), (sy, sx), (ph, pw),
                            int(check_bool(op, "count_include_pad", count_include_pad)), div)


def _avg_pool2d_into(x, y, k, s, p, include_pad, div):
    """:func:`avg_pool2d` of checked C-contiguous host ``x`` into ``y`` (its output shape and
    dtype); ``include_pad`` 0 or 1, ``div`` the checked divisor (0: none).  Returns ``y``."""
    (kh, kw), (sy, sx), (ph, pw) = k, s, p
    _k._avg_pool2d_fwd(_planes(x), _planes(y), kh, kw, sy, sx, ph, pw, include_pad, div)
    return y


@_dispatch.dispatch
def avg_pool2d_backward(dy, input_shape, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True, divisor_override=None):
    """Gradient of :func:`avg_pool2d` with respect to its input.

    Parameters
    ----------
    dy : ndarray, shape (N, C, OH, OW) or (C, OH, OW)
        Upstream gradient; ``(OH, OW)`` must be the output size of the forward call.
    input_shape : tuple of int
        ``(N, C, H, W)`` or ``(C, H, W)``, the shape of the forward input.
    kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override
        As given to :func:`avg_pool2d`.

    Returns
    -------
    dx : ndarray, shape ``input_shape``, dtype of ``dy``
        ``dx[h, w] = sum over windows covering (h, w) of dy / divisor``.

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> dx = nc.avg_pool2d_backward(np.ones((1, 1, 2, 2)), (1, 1, 4, 4), 2)
    >>> float(dx.sum()), dx.shape
    (4.0, (1, 1, 4, 4))
    """
    op = "avg_pool2d_backward"
    dy = pool_grad(op, dy)
    shape, div, (kh, kw), (sy, sx), (ph, pw) = avg_backward_args(
        op, dy, input_shape, kernel_size, stride, padding, ceil_mode, divisor_override)
    dx = np.empty(shape, dtype=dy.dtype)
    _k._avg_pool2d_bwd(_planes(dy), _planes(dx), kh, kw, sy, sx, ph, pw,
                       int(check_bool(op, "count_include_pad", count_include_pad)), div)
    return dx


# --------------------------------------------------------------------------- adaptive / global


@_dispatch.dispatch
def adaptive_avg_pool2d(x, output_size):
    """Adaptive average pooling to a fixed output size (PyTorch's ``adaptive_avg_pool2d``).

    Output bin ``i`` along an axis of length ``H`` averages the rows
    ``floor(i*H/OH) <= h < ceil((i+1)*H/OH)``; bins may overlap and ``OH > H`` is allowed.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W) or (C, H, W)
    output_size : int or (int or None, int or None)
        ``(OH, OW)``; ``None`` keeps that input size.

    Returns
    -------
    y : ndarray, shape (N, C, OH, OW), dtype of ``x``

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> x = np.arange(12.0).reshape(1, 1, 3, 4)
    >>> nc.adaptive_avg_pool2d(x, (1, 2))[0, 0].tolist()
    [[4.5, 6.5]]
    """
    op = "adaptive_avg_pool2d"
    x = pool_input(op, x)
    oh, ow = adaptive_size(op, output_size, x.shape[-2:])
    y = np.empty(x.shape[:-2] + (oh, ow), dtype=x.dtype)
    return _adaptive_avg_pool2d_into(x, y)


def _adaptive_avg_pool2d_into(x, y):
    """:func:`adaptive_avg_pool2d` of checked C-contiguous host ``x`` into ``y``, whose
    spatial size is the output size (a planned network's buffer).  Returns ``y``."""
    if y.shape[-2:] == (1, 1):
        _global_mean(x, y)
    elif x.shape[-2] * x.shape[-1] <= _k.ACROSS_MAX_PLANE:
        xp = _planes(x)
        _k._adaptive_avg_pool2d_fwd_across(xp, _planes(y), _values_blocks(xp.shape))
    else:
        _k._adaptive_avg_pool2d_fwd(_planes(x), _planes(y))
    return y


@_dispatch.dispatch
def adaptive_avg_pool2d_backward(dy, input_shape):
    """Gradient of :func:`adaptive_avg_pool2d` with respect to its input.

    Parameters
    ----------
    dy : ndarray, shape (N, C, OH, OW) or (C, OH, OW)
        Upstream gradient; its spatial size is the forward ``output_size``.
    input_shape : tuple of int
        ``(N, C, H, W)`` or ``(C, H, W)``.

    Returns
    -------
    dx : ndarray, shape ``input_shape``, dtype of ``dy``

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> nc.adaptive_avg_pool2d_backward(np.ones((1, 1, 1, 2)), (1, 1, 2, 4))[0, 0].tolist()
    [[0.25, 0.25, 0.25, 0.25], [0.25, 0.25, 0.25, 0.25]]
    """
    op = "adaptive_avg_pool2d_backward"
    dy = pool_grad(op, dy)
    shape = check_input_shape(op, input_shape, dy)
    if 0 in dy.shape[-2:]:
        raise ValueError(f"{op}: argument 'dy' has an empty spatial size {tuple(dy.shape)}")
    dx = np.empty(shape, dtype=dy.dtype)
    if dy.shape[-2:] == (1, 1):
        _global_mean_backward(dy, dx)
    else:
        _k._adaptive_avg_pool2d_bwd(_planes(dy), _planes(dx))
    return dx


@_dispatch.dispatch
def global_avg_pool2d(x, keepdims=True):
    """Mean over the spatial axes (``AdaptiveAvgPool2d(1)``).

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W) or (C, H, W)
    keepdims : bool
        True (default): output ``(N, C, 1, 1)``; False: ``(N, C)``.

    Returns
    -------
    y : ndarray, shape (N, C, 1, 1) or (N, C), dtype of ``x``

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> x = np.arange(8.0).reshape(1, 2, 2, 2)
    >>> nc.global_avg_pool2d(x).shape, nc.global_avg_pool2d(x, keepdims=False).tolist()
    ((1, 2, 1, 1), [[1.5, 5.5]])
    """
    op = "global_avg_pool2d"
    x = pool_input(op, x)
    keepdims = check_bool(op, "keepdims", keepdims)
    y = np.empty(x.shape[:-2] + (1, 1), dtype=x.dtype)
    _global_mean(x, y)
    return y if keepdims else y.reshape(x.shape[:-2])


@_dispatch.dispatch
def global_avg_pool2d_backward(dy, input_shape):
    """Gradient of :func:`global_avg_pool2d`: ``dx = dy / (H * W)`` broadcast over each plane.

    Parameters
    ----------
    dy : ndarray, shape (N, C, 1, 1) or (N, C)
        (``(C, 1, 1)`` or ``(C,)`` for a 3-D input.)
    input_shape : tuple of int
        ``(N, C, H, W)`` or ``(C, H, W)``.

    Returns
    -------
    dx : ndarray, shape ``input_shape``, dtype of ``dy``

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> nc.global_avg_pool2d_backward(np.ones((1, 1)), (1, 1, 2, 2))[0, 0].tolist()
    [[0.25, 0.25], [0.25, 0.25]]
    """
    op = "global_avg_pool2d_backward"
    dy = as_float_array(op, "dy", dy)
    shape = shape_tuple(op, input_shape, (3, 4))
    lead = shape[:-2]
    if tuple(dy.shape) not in (lead, lead + (1, 1)):
        raise ValueError(
            f"{op}: argument 'dy' must have shape {lead + (1, 1)} or {lead} for "
            f"input_shape {shape}, got {tuple(dy.shape)}"
        )
    dy = dy.reshape(lead + (1, 1))
    dx = np.empty(shape, dtype=dy.dtype)
    _global_mean_backward(dy, dx)
    return dx

"""Channel dropout (PyTorch's ``dropout1d`` / ``dropout2d``): whole channels zeroed.

In training mode each ``(n, c)`` channel is kept with probability ``1 - p`` and scaled by
``1 / (1 - p)``, or zeroed; one draw per channel, ``u = rng.random((N, C))`` (float64), kept
where ``u >= p`` -- the rule and the generator of :func:`nbconv.dropout`, so that a seeded run
is reproducible.  The output is ``x * mask`` for every ``p`` (PyTorch's rule: a dropped NaN or
inf gives NaN); in eval mode (``training=False``) or with ``p == 0`` it is a copy of ``x``.
The mask has ``x``'s number of axes with size 1 on the spatial ones (``(N, C, 1, 1)`` for an
``(N, C, H, W)`` input), and the backward pass is ``dy * mask``.
"""

from __future__ import annotations

import warnings

import numpy as np

from .. import _config, _dispatch
from .._checks import as_float_array, check_bool, check_real
from .._checks.activation import dropout_generator
from .._checks.pool1d import channel_mask_shape
from ..kernels import channel_dropout as _k

__all__ = ["dropout1d", "dropout1d_backward", "dropout2d", "dropout2d_backward"]

#: most blocks of whole channels one kernel call splits its channels into
_BLOCKS = 64


def _mul(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``x * mask`` for a checked host ``x`` and a mask of its leading axes followed by ones,
    by the channel kernel (a new array of ``x``'s shape and dtype)."""
    y = np.empty_like(x)
    P = mask.size
    if x.size == 0 or P == 0:
        return y
    kernel = _k._channel_mul_serial if x.size < _config.SERIAL_BELOW else _k._channel_mul
    kernel(x.reshape(P, -1), mask.reshape(P), y.reshape(P, -1), max(1, min(P, _BLOCKS)))
    return y


def _channel_dropout(op, x, lead, p, training, rng, return_mask):
    """Dropout of ``x`` with one mask value per index of its first ``lead`` axes."""
    p = check_real(op, "p", p, 0.0, 1.0)
    training = check_bool(op, "training", training)
    return_mask = check_bool(op, "return_mask", return_mask)
    mshape = x.shape[:lead] + (1,) * (x.ndim - lead)
    if not training or p == 0.0:
        y = x.copy()
        mask = np.ones(mshape, dtype=x.dtype)
    else:
        gen = dropout_generator(op, rng)  # validated even when p == 1 draws nothing
        if p == 1.0:
            mask = np.zeros(mshape, dtype=x.dtype)
        else:
            mask = (gen.random(x.shape[:lead]) >= p).astype(x.dtype).reshape(mshape)
            mask *= x.dtype.type(1.0 / (1.0 - p))
        y = _mul(x, mask)
    return (y, mask) if return_mask else y


def _backward(op, dy, mask):
    mask = as_float_array(op, "mask", mask)
    dy = as_float_array(op, "dy", dy, dtype=mask.dtype)
    channel_mask_shape(op, mask, dy)
    return _mul(dy, mask)


@_dispatch.dispatch
def dropout1d(x, p=0.5, training=True, rng=None, return_mask=False):
    """Channel dropout of sequences (PyTorch's ``F.dropout1d``): zero whole ``(n, c)`` rows.

    Parameters
    ----------
    x : ndarray, shape (N, C, L) or unbatched (C, L)
        float32/float64 (kept); integer/bool inputs are cast to float32.
    p : float in [0, 1], default 0.5
        Probability of zeroing a channel.
    training : bool, default True
        False: the identity (a copy of ``x``).
    rng : None, int or numpy.random.Generator
        Source of randomness, as :func:`nbconv.dropout`: ``None`` a fresh unseeded generator,
        an int a seed, a Generator is used (and advanced) as is.
    return_mask : bool, default False
        Also return the mask.

    Returns
    -------
    y : ndarray, shape and dtype of ``x``
    mask : ndarray, shape (N, C, 1) (or (C, 1)), dtype of ``x``
        Only with ``return_mask=True``: 0 for dropped channels, ``1 / (1 - p)`` for kept ones
        (ones in eval mode or with ``p == 0``, zeros with ``p == 1``); ``y = x * mask``.

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> y, mask = nc.dropout1d(np.ones((2, 3, 4)), p=0.5, rng=0, return_mask=True)
    >>> mask.shape, sorted(set(mask.ravel().tolist()))
    ((2, 3, 1), [0.0, 2.0])
    >>> bool(np.all((y == 0) | (y == 2)) and np.all(y == mask))
    True
    """
    op = "dropout1d"
    x = as_float_array(op, "x", x)
    if x.ndim not in (2, 3):
        raise ValueError(f"{op}: argument 'x' must be 3-D (N, C, L) or 2-D (C, L), got shape "
                         f"{tuple(x.shape)}")
    return _channel_dropout(op, x, 2 if x.ndim == 3 else 1, p, training, rng, return_mask)


@_dispatch.dispatch
def dropout1d_backward(dy, mask):
    """Gradient of :func:`dropout1d`: ``dy * mask`` with the mask the forward pass returned.

    Parameters
    ----------
    dy : ndarray, shape (N, C, L) or (C, L)
    mask : ndarray, shape (N, C, 1) or (C, 1)
        From ``dropout1d(..., return_mask=True)``.

    Returns
    -------
    dx : ndarray, shape of ``dy``, dtype of ``mask``

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> nc.dropout1d_backward(np.ones((1, 2, 3)), np.array([[[0.0], [2.0]]])).tolist()
    [[[0.0, 0.0, 0.0], [2.0, 2.0, 2.0]]]
    """
    return _backward("dropout1d_backward", dy, mask)


@_dispatch.dispatch
def dropout2d(x, p=0.5, training=True, rng=None, return_mask=False):
    """Channel dropout of images (PyTorch's ``F.dropout2d``): zero whole ``(n, c)`` planes.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W)
        float32/float64 (kept); integer/bool inputs are cast to float32.  A 3-D input is read
        as ``(N, C, L)`` with one mask value per ``(x[0], x[1])`` pair, not as an unbatched
        image, with a warning: PyTorch's behaviour (use :func:`dropout1d` for sequences).
    p : float in [0, 1], default 0.5
        Probability of zeroing a channel.
    training : bool, default True
        False: the identity (a copy of ``x``).
    rng : None, int or numpy.random.Generator
        Source of randomness, as :func:`nbconv.dropout`.
    return_mask : bool, default False
        Also return the mask.

    Returns
    -------
    y : ndarray, shape and dtype of ``x``
    mask : ndarray, shape (N, C, 1, 1) (or (N, C, 1) for a 3-D ``x``), dtype of ``x``
        Only with ``return_mask=True``: 0 or ``1 / (1 - p)`` per channel; ``y = x * mask``.

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> y, mask = nc.dropout2d(np.ones((1, 4, 2, 2)), p=0.5, rng=1, return_mask=True)
    >>> mask.shape, bool(np.array_equal(y, np.broadcast_to(mask, y.shape)))
    ((1, 4, 1, 1), True)
    >>> nc.dropout2d(np.ones((1, 1, 1, 2)), training=False).tolist()
    [[[[1.0, 1.0]]]]
    """
    op = "dropout2d"
    x = as_float_array(op, "x", x)
    if x.ndim not in (3, 4):
        raise ValueError(f"{op}: argument 'x' must be 4-D (N, C, H, W) (or 3-D, read as "
                         f"(N, C, L)), got shape {tuple(x.shape)}; use nbconv.dropout for "
                         "elementwise dropout")
    if x.ndim == 3:
        warnings.warn(f"{op}: a 3-D input is read as (N, C, L), one mask value per (N, C) "
                      "pair, as PyTorch does (not as an unbatched (C, H, W) image); use "
                      "dropout1d for sequences", UserWarning, stacklevel=3)
    return _channel_dropout(op, x, 2, p, training, rng, return_mask)


@_dispatch.dispatch
def dropout2d_backward(dy, mask):
    """Gradient of :func:`dropout2d`: ``dy * mask`` with the mask the forward pass returned.

    Parameters
    ----------
    dy : ndarray, shape (N, C, H, W)
    mask : ndarray, shape (N, C, 1, 1)
        From ``dropout2d(..., return_mask=True)``.

    Returns
    -------
    dx : ndarray, shape of ``dy``, dtype of ``mask``

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> mask = np.array([[[[2.0]], [[0.0]]]])
    >>> nc.dropout2d_backward(np.ones((1, 2, 1, 2)), mask).tolist()
    [[[[2.0, 2.0]], [[0.0, 0.0]]]]
    """
    return _backward("dropout2d_backward", dy, mask)

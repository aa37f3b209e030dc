"""Activations, softmax and dropout, with their backward passes.

Every function accepts an array of any shape; float32/float64 are kept, integer/bool inputs are
cast to float32 (``nbconv._checks.as_float_array``).  Backward functions return an array in the
dtype of the forward tensor they take (``x``, ``y`` or ``mask``; ``dy`` is cast to it, as
``conv2d_backward`` does) and never modify ``dy``.
"""

from __future__ import annotations

import math

import numpy as np

from .. import _config, _dispatch
from .._checks import as_float_array, check_bool, check_real
from .._checks.activation import check_slope, dropout_generator, softmax_axis
from ..kernels import activations as _k

__all__ = [
    "relu",
    "relu_backward",
    "leaky_relu",
    "leaky_relu_backward",
    "sigmoid",
    "sigmoid_backward",
    "tanh",
    "tanh_backward",
    "softmax",
    "softmax_backward",
    "log_softmax",
    "log_softmax_backward",
    "dropout",
    "dropout_backward",
]


# --------------------------------------------------------------------------- helpers


def _pair_same_shape(op: str, dy, other, other_name: str):
    """Cast ``other`` (the forward tensor, the main input) and ``dy`` (to other's dtype) and
    check that their shapes agree."""
    other = as_float_array(op, other_name, other)
    dy = as_float_array(op, "dy", dy, dtype=other.dtype)
    if dy.shape != other.shape:
        raise ValueError(
            f"{op}: argument 'dy' has shape {tuple(dy.shape)} but '{other_name}' has shape "
            f"{tuple(other.shape)}; they must be equal"
        )
    return dy, other


def _sized(kernel, n: int):
    """``kernel``, or its serial twin when ``n`` elements are too few to wake the threads:
    fewer than ``_config.SERIAL_BELOW`` for the memory-bound kernels, 32 times fewer for
    sigmoid and tanh, which compute an exponential per element (on two threads the
    crossover was near 8192 elements)."""
    if n < _config.SERIAL_BELOW:
        serial = _k.SERIAL_TWIN.get(kernel)
        if serial is not None:
            return serial
        if n < _config.SERIAL_BELOW // 32:
            return _SERIAL_UNARY.get(kernel, kernel)
    return kernel


def _unary(kernel, op: str, x, *args):
    x = as_float_array(op, "x", x)
    y = np.empty_like(x)
    _sized(kernel, x.size)(x.ravel(), y.ravel(), *args)
    return y


def _binary(kernel, op: str, dy, other, other_name: str, *args):
    dy, other = _pair_same_shape(op, dy, other, other_name)
    dx = np.empty_like(other)
    _sized(kernel, dx.size)(dy.ravel(), other.ravel(), dx.ravel(), *args)
    return dx


# --------------------------------------------------------------------------- relu family


@_dispatch.dispatch
def relu(x):
    """Rectified linear unit, ``max(x, 0)`` elementwise.

    Parameters
    ----------
    x : ndarray, any shape

    Returns
    -------
    y : ndarray, same shape and dtype as ``x`` (NaN stays NaN)

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> nc.relu(np.array([-2.0, 0.0, 3.0]))
    array([0., 0., 3.])
    """
    return _unary(_k._relu_fwd, "relu", x)


def _relu_into(x, y):
    """``y = relu(x)`` for C-contiguous host arrays of one float dtype and shape (``y`` may be
    ``x``): the unchecked core of :func:`relu`, for a planned network (:mod:`nbconv.inference`)."""
    _sized(_k._relu_fwd, x.size)(x.reshape(-1), y.reshape(-1))


def _unary_into(name, x, y, *args):
    """``y = name(x, *args)`` for ``name`` in "relu", "sigmoid", "tanh", "leaky_relu" (its
    checked arguments), C-contiguous host arrays of one float dtype and shape (``y`` may be
    ``x``): the unchecked core of those ops, for a planned network."""
    _sized(_UNARY[name], x.size)(x.reshape(-1), y.reshape(-1), *args)


def _add_relu_into(a, b, y):
    """``y = relu(a + b)`` in one pass, for C-contiguous host arrays of one float dtype and
    shape (``y`` may be ``a`` or ``b``): a residual sum and its ReLU (:mod:`nbconv.inference`)."""
    _sized(_k._add_relu_fwd, a.size)(a.reshape(-1), b.reshape(-1), y.reshape(-1))


@_dispatch.dispatch
def relu_backward(dy, x):
    """Gradient of :func:`relu`: ``dy`` where ``x > 0``, 0 elsewhere (0 at ``x == 0``).

    Parameters
    ----------
    dy : ndarray, same shape as ``x``
        Upstream gradient.
    x : ndarray
        The forward input.

    Returns
    -------
    dx : ndarray, shape and dtype of ``x``

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> nc.relu_backward(np.ones(3), np.array([-1.0, 0.0, 2.0]))
    array([0., 0., 1.])
    """
    return _binary(_k._relu_bwd, "relu_backward", dy, x, "x")


@_dispatch.dispatch
def leaky_relu(x, negative_slope=0.01):
    """Leaky ReLU: ``x`` where ``x > 0``, ``negative_slope * x`` elsewhere.

    Parameters
    ----------
    x : ndarray, any shape
    negative_slope : float, default 0.01

    Returns
    -------
    y : ndarray, same shape and dtype as ``x``

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> nc.leaky_relu(np.array([-2.0, 3.0]), negative_slope=0.5)
    array([-1.,  3.])
    """
    op = "leaky_relu"
    return _unary(_k._leaky_relu_fwd, op, x, check_slope(op, negative_slope))


@_dispatch.dispatch
def leaky_relu_backward(dy, x, negative_slope=0.01):
    """Gradient of :func:`leaky_relu`: ``dy`` where ``x > 0``, ``negative_slope * dy`` elsewhere.

    Parameters
    ----------
    dy : ndarray, same shape as ``x``
    x : ndarray
        The forward input.
    negative_slope : float, default 0.01

    Returns
    -------
    dx : ndarray, shape and dtype of ``x``

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> nc.leaky_relu_backward(np.ones(2), np.array([-1.0, 1.0]), negative_slope=0.25)
    array([0.25, 1.  ])
    """
    op = "leaky_relu_backward"
    return _binary(_k._leaky_relu_bwd, op, dy, x, "x", check_slope(op, negative_slope))


# --------------------------------------------------------------------------- sigmoid / tanh


@_dispatch.dispatch
def sigmoid(x):
    """Logistic sigmoid ``1 / (1 + exp(-x))``, computed without overflow.

    Only ``exp`` of non-positive numbers is evaluated, so ``sigmoid(-1000)`` is exactly 0,
    ``sigmoid(1000)`` exactly 1, and no warning is emitted.  float32 runs an exponential that
    the compiler vectorises (:mod:`nbconv.kernels._vmath`; results within 3 ulp of the exact
    value), float64 the C library's.

    Parameters
    ----------
    x : ndarray, any shape

    Returns
    -------
    y : ndarray, same shape and dtype as ``x``, values in [0, 1]

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> nc.sigmoid(np.array([-1000.0, 0.0, 1000.0]))
    array([0. , 0.5, 1. ])
    """
    return _unary(_k._sigmoid_fwd, "sigmoid", x)


@_dispatch.dispatch
def sigmoid_backward(dy, y):
    """Gradient of :func:`sigmoid` from its **output**: ``dy * y * (1 - y)``.

    Parameters
    ----------
    dy : ndarray, same shape as ``y``
    y : ndarray
        ``sigmoid(x)``, the forward output.

    Returns
    -------
    dx : ndarray, shape and dtype of ``y``

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> nc.sigmoid_backward(np.ones(1), nc.sigmoid(np.zeros(1)))
    array([0.25])
    """
    return _binary(_k._sigmoid_bwd, "sigmoid_backward", dy, y, "y")


@_dispatch.dispatch
def tanh(x):
    """Hyperbolic tangent elementwise (float32 by a formula the compiler vectorises,
    :mod:`nbconv.kernels._vmath`, within 3 ulp of the exact value; float64 by the C
    library).

    Parameters
    ----------
    x : ndarray, any shape

    Returns
    -------
    y : ndarray, same shape and dtype as ``x``

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> nc.tanh(np.array([0.0, 1000.0]))
    array([0., 1.])
    """
    return _unary(_k._tanh_fwd, "tanh", x)


@_dispatch.dispatch
def tanh_backward(dy, y):
    """Gradient of :func:`tanh` from its **output**: ``dy * (1 - y**2)``.

    Parameters
    ----------
    dy : ndarray, same shape as ``y``
    y : ndarray
        ``tanh(x)``, the forward output.

    Returns
    -------
    dx : ndarray, shape and dtype of ``y``

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> nc.tanh_backward(np.ones(1), np.zeros(1))
    array([1.])
    """
    return _binary(_k._tanh_bwd, "tanh_backward", dy, y, "y")


# --------------------------------------------------------------------------- softmax


def _as3d(a: np.ndarray, axis: int) -> np.ndarray:
    """View of C-contiguous ``a`` as (A, n, B), reducing along the middle axis."""
    shape = a.shape
    A = math.prod(shape[:axis])
    B = math.prod(shape[axis + 1 :])
    return a.reshape(A, shape[axis], B)


def _softmax_fwd(op: str, x, axis, log: int):
    x = as_float_array(op, "x", x)
    if x.ndim == 0:
        raise ValueError(f"{op}: argument 'x' must be at least 1-D, got shape ()")
    axis = softmax_axis(op, axis, x.ndim, x.shape)
    y = np.empty_like(x)
    if x.size:
        x3, y3 = _as3d(x, axis), _as3d(y, axis)
        (_k._softmax_fwd_rows if x3.shape[2] == 1 else _k._softmax_fwd_blocked)(x3, y3, log)
    return y


def _softmax_bwd(op: str, dy, y, axis, log: int):
    dy, y = _pair_same_shape(op, dy, y, "y")
    if y.ndim == 0:
        raise ValueError(f"{op}: argument 'y' must be at least 1-D, got shape ()")
    axis = softmax_axis(op, axis, y.ndim, y.shape)
    dx = np.empty_like(dy)
    if y.size:
        dy3, y3, dx3 = _as3d(dy, axis), _as3d(y, axis), _as3d(dx, axis)
        kernel = _k._softmax_bwd_rows if y3.shape[2] == 1 else _k._softmax_bwd_blocked
        kernel(dy3, y3, dx3, log)
    return dx


@_dispatch.dispatch
def softmax(x, axis=-1):
    """Softmax along ``axis``: ``exp(x - max) / sum(exp(x - max))``.

    Numerically stable: the maximum along ``axis`` is subtracted first, so logits like ``1e4`` or
    ``-1e4`` give exact probabilities without overflow.  A NaN makes its whole slice NaN.

    Parameters
    ----------
    x : ndarray, at least 1-D, any shape
    axis : int, default -1
        Axis along which the probabilities sum to 1 (any axis, negative counts from the end).

    Returns
    -------
    y : ndarray, same shape and dtype as ``x``

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> nc.softmax(np.array([[1e4, 1e4], [0.0, -1e4]]))
    array([[0.5, 0.5],
           [1. , 0. ]])
    """
    return _softmax_fwd("softmax", x, axis, 0)


@_dispatch.dispatch
def softmax_backward(dy, y, axis=-1):
    """Gradient of :func:`softmax` from its **output**: ``y * (dy - sum(dy * y, axis))``.

    Parameters
    ----------
    dy : ndarray, same shape as ``y``
    y : ndarray
        ``softmax(x, axis)``, the forward output.
    axis : int, default -1

    Returns
    -------
    dx : ndarray, shape and dtype of ``y``

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> nc.softmax_backward(np.array([1.0, 0.0]), np.array([0.5, 0.5]))
    array([ 0.25, -0.25])
    """
    return _softmax_bwd("softmax_backward", dy, y, axis, 0)


@_dispatch.dispatch
def log_softmax(x, axis=-1):
    """Log of the softmax along ``axis``: ``x - max - log(sum(exp(x - max)))``, stable.

    Parameters
    ----------
    x : ndarray, at least 1-D
    axis : int, default -1

    Returns
    -------
    y : ndarray, same shape and dtype as ``x`` (finite for finite logits, e.g. ``-1e4``)

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> nc.log_softmax(np.array([0.0, -1e4]))
    array([     0., -10000.])
    """
    return _softmax_fwd("log_softmax", x, axis, 1)


@_dispatch.dispatch
def log_softmax_backward(dy, y, axis=-1):
    """Gradient of :func:`log_softmax` from its **output**: ``dy - exp(y) * sum(dy, axis)``.

    Parameters
    ----------
    dy : ndarray, same shape as ``y``
    y : ndarray
        ``log_softmax(x, axis)``, the forward output.
    axis : int, default -1

    Returns
    -------
    dx : ndarray, shape and dtype of ``y``

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> nc.log_softmax_backward(np.array([1.0, 0.0]), np.log([0.5, 0.5]))
    array([ 0.5, -0.5])
    """
    return _softmax_bwd("log_softmax_backward", dy, y, axis, 1)


# --------------------------------------------------------------------------- dropout


@_dispatch.dispatch
def dropout(x, p=0.5, training=True, rng=None, return_mask=False):
    """Inverted dropout (PyTorch's ``F.dropout``).

    In training mode every element is zeroed with probability ``p`` and the kept ones are scaled
    by ``1 / (1 - p)`` so that the expectation is unchanged.  The keep/drop decisions are drawn
    with a NumPy ``Generator``: ``u = rng.random(x.shape)`` (float64), kept where ``u >= p``.
    In eval mode (``training=False``) or with ``p == 0`` the output is a copy of ``x``.  For
    every ``p`` the output is ``x * mask`` (PyTorch's rule), so a dropped NaN or inf gives NaN
    rather than 0; with ``p == 1`` the output is ``x * 0`` (zeros for finite ``x``).

    Parameters
    ----------
    x : ndarray, any shape
    p : float in [0, 1], default 0.5
        Probability of zeroing an element.
    training : bool, default True
    rng : None, int or numpy.random.Generator
        Source of randomness: ``None`` a fresh unseeded generator, an int a seed (reproducible),
        a Generator is used (and advanced) as is.
    return_mask : bool, default False
        Also return the mask.

    Returns
    -------
    y : ndarray, same shape and dtype as ``x``
    mask : ndarray, same shape and dtype as ``x`` (only with ``return_mask=True``)
        0 for dropped elements, ``1 / (1 - p)`` for kept ones (all ones in eval mode or with
        ``p == 0``, all zeros with ``p == 1``), so that ``y = x * mask`` and
        ``dropout_backward(dy, mask) = dy * mask``.

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> y, mask = nc.dropout(np.ones(1000), p=0.5, rng=0, return_mask=True)
    >>> sorted(set(mask.tolist())), bool(np.array_equal(y, mask))
    ([0.0, 2.0], True)
    >>> nc.dropout(np.ones(3), p=0.5, training=False)
    array([1., 1., 1.])
    """
    op = "dropout"
    x = as_float_array(op, "x", x)
    p = check_real(op, "p", p, 0.0, 1.0)
    training = check_bool(op, "training", training)
    return_mask = check_bool(op, "return_mask", return_mask)
    if not training or p == 0.0:
        y = x.copy()
        mask = np.ones_like(x)
    elif p == 1.0:
        dropout_generator(op, rng)  # validate rng even when unused
        mask = np.zeros_like(x)
        with np.errstate(invalid="ignore"):  # x * 0, not zeros: NaN and inf give NaN
            y = x * mask  # as in PyTorch, and as the p < 1 branch does
    else:
        gen = dropout_generator(op, rng)
        keep = gen.random(x.shape) >= p
        mask = keep.astype(x.dtype)
        mask *= x.dtype.type(1.0 / (1.0 - p))
        y = np.empty_like(x)
        _sized(_k._mul_fwd, x.size)(x.ravel(), mask.ravel(), y.ravel())
    return (y, mask) if return_mask else y


@_dispatch.dispatch
def dropout_backward(dy, mask):
    """Gradient of :func:`dropout`: ``dy * mask`` with the mask the forward pass returned.

    Parameters
    ----------
    dy : ndarray, same shape as ``mask``
    mask : ndarray
        The ``mask`` from ``dropout(..., return_mask=True)`` (0 or ``1/(1-p)``).

    Returns
    -------
    dx : ndarray, shape and dtype of ``mask``

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> nc.dropout_backward(np.ones(3), np.array([0.0, 2.0, 2.0]))
    array([0., 2., 2.])
    """
    return _binary(_k._mul_fwd, "dropout_backward", dy, mask, "mask")


_UNARY = {"relu": _k._relu_fwd, "sigmoid": _k._sigmoid_fwd, "tanh": _k._tanh_fwd,
          "leaky_relu": _k._leaky_relu_fwd}
_SERIAL_UNARY = {_k._sigmoid_fwd: _k._sigmoid_fwd_chunk, _k._tanh_fwd: _k._tanh_fwd_chunk}

"""The modern activations, PyTorch's ``F.prelu``, ``elu``, ``selu``, ``celu``, ``gelu``,
``silu``, ``mish``, ``hardswish``, ``hardsigmoid``, ``relu6`` and ``softplus``, with their
backward passes.

The conventions of :mod:`nbconv.functional.activation` hold: any shape, float32/float64 kept,
integer/bool input cast to float32, float16/complex refused; a backward function takes the
upstream gradient ``dy`` and the forward **input** ``x`` (as PyTorch's kernels do), returns
``dx`` in ``x``'s dtype and never modifies ``dy``.  At a kink the gradient is PyTorch's (e.g.
``relu6_backward`` is 0 at 0 and at 6; ``hardswish_backward`` is 0 at -3 and 1 at 3), and so is
the gradient at inf and NaN (``gelu_backward`` at inf is NaN, ``relu6_backward`` at NaN is
0: PyTorch's vectorised loops, which compute all but a tensor's last few elements; its scalar
remainder loop disagrees for NaN).  The float32 transcendental functions are nbconv's own
vectorised ones (:mod:`nbconv.kernels._vmath`, a few float32 ulp); float64 calls the C
library.
"""

from __future__ import annotations

import math

import numpy as np

from .. import _config, _dispatch
from .._checks import as_float_array, check_real
from ..kernels import activations_ext as _k
from .activation import _pair_same_shape

__all__ = [
    "prelu", "prelu_backward",
    "elu", "elu_backward",
    "selu", "selu_backward",
    "celu", "celu_backward",
    "gelu", "gelu_backward",
    "silu", "silu_backward",
    "mish", "mish_backward",
    "hardswish", "hardswish_backward",
    "hardsigmoid", "hardsigmoid_backward",
    "relu6", "relu6_backward",
    "softplus", "softplus_backward",
]

#: SELU's constants (Klambauer et al. 2017), as PyTorch uses them
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
#: sqrt(2 / pi) and the cubic coefficient of GELU's tanh form
_GELU_K = math.sqrt(2.0 / math.pi)
_GELU_KAPPA = 0.044715
GELU_APPROXIMATIONS = ("none", "tanh")


# --------------------------------------------------------------------------- helpers


def _sized(kernel, n: int):
    """``kernel``, or its serial twin when ``n`` elements are too few to wake the threads."""
    if n < _config.SERIAL_BELOW:
        return _k.SERIAL_TWIN.get(kernel, kernel)
    return kernel


def _unary(kernel, op: str, x, *scalars):
    x = as_float_array(op, "x", x)
    y = np.empty_like(x)
    if x.size:
        t = x.dtype.type
        _sized(kernel, x.size)(x.ravel(), y.ravel(), *(t(s) for s in scalars))
    return y


def _binary(kernel, op: str, dy, x, *scalars):
    dy, x = _pair_same_shape(op, dy, x, "x")
    dx = np.empty_like(x)
    if x.size:
        t = x.dtype.type
        _sized(kernel, x.size)(dy.ravel(), x.ravel(), dx.ravel(), *(t(s) for s in scalars))
    return dx


def _alpha(op: str, alpha, nonzero: bool = False) -> float:
    alpha = check_real(op, "alpha", alpha)
    if nonzero and alpha == 0.0:
        raise ValueError(f"{op}: argument 'alpha' must not be 0 (CELU divides by it), got "
                         f"{alpha!r}")
    return alpha


def check_approximate(op: str, approximate) -> str:
    """GELU's ``approximate`` argument: ``"none"`` or ``"tanh"``."""
    if not isinstance(approximate, str):
        raise TypeError(f"{op}: argument 'approximate' must be a string, 'none' or 'tanh', "
                        f"got {approximate!r} ({type(approximate).__name__})")
    if approximate not in GELU_APPROXIMATIONS:
        raise ValueError(f"{op}: argument 'approximate' must be 'none' or 'tanh', got "
                         f"{approximate!r}")
    return approximate


def _softplus_args(op: str, beta, threshold) -> tuple[float, float]:
    return (check_real(op, "beta", beta),
            check_real(op, "threshold", threshold, finite=False))


# --------------------------------------------------------------------------- PReLU


def _prelu_views(op: str, x, weight):
    """``x`` as a C-contiguous (A, C, S) array with C the slope axis (C == 1 for one slope),
    and the slopes as a (C,) array in x's dtype."""
    x = as_float_array(op, "x", x)
    w = as_float_array(op, "weight", weight, dtype=x.dtype)
    if w.ndim > 1:
        raise ValueError(f"{op}: argument 'weight' must be a scalar or 1-D (one slope, or one "
                         f"per channel), got shape {tuple(w.shape)}")
    channels = x.shape[1] if x.ndim >= 2 else 1
    if w.size != 1 and w.size != channels:
        raise ValueError(
            f"{op}: argument 'weight' has {w.size} slopes but 'x' has {channels} channels along "
            f"axis 1 (x shape {tuple(x.shape)}; inputs of fewer than 2 dimensions have 1 "
            "channel); give one slope or one per channel")
    w = w.reshape(-1)
    trailing = math.prod(x.shape[2:])
    if w.size == 1 or x.ndim < 2:
        # one slope: rows of the trailing axes, so that the rows spread over the threads
        rows = x.shape[0] * x.shape[1] if x.ndim >= 2 else 1
        x3 = x.reshape(rows, 1, trailing if x.ndim >= 2 else x.size)
    else:
        x3 = x.reshape(x.shape[0], channels, trailing)
    return x, x3, w


@_dispatch.dispatch
def prelu(x, weight):
    """Parametric ReLU (PyTorch's ``F.prelu``): ``x`` where ``x > 0``, ``weight * x`` elsewhere.

    Parameters
    ----------
    x : ndarray, shape (N, C, *) or any shape with one slope
        Axis 1 is the channel axis; an input of fewer than 2 dimensions has one channel.
    weight : ndarray, shape (C,) or (1,) or ()
        One slope per channel, or one for everything; cast to ``x``'s dtype.

    Returns
    -------
    y : ndarray, shape and dtype of ``x``

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> nc.prelu(np.array([[-2.0, 3.0], [-1.0, -4.0]]), np.array([0.5, 0.25]))
    array([[-1. ,  3. ],
           [-0.5, -1. ]])
    """
    x, x3, w = _prelu_views("prelu", x, weight)
    y = np.empty_like(x)
    if x.size:
        _sized(_k._prelu_fwd, x.size)(x3, w, y.reshape(x3.shape))
    return y


@_dispatch.dispatch
def prelu_backward(dy, x, weight):
    """Gradients of :func:`prelu`.

    ``dx = dy`` where ``x > 0`` and ``weight * dy`` elsewhere (so ``weight * dy`` at
    ``x == 0``, PyTorch's rule); ``dweight`` sums ``x * dy`` over the elements with
    ``x <= 0`` (and NaN ``x``) of each channel, over every axis but axis 1, or over all of them
    for a single slope.

    Parameters
    ----------
    dy : ndarray, shape of ``x``
    x : ndarray
        The forward input.
    weight : ndarray, shape (C,) or (1,) or ()

    Returns
    -------
    dx : ndarray, shape and dtype of ``x``
    dweight : ndarray, shape of ``weight``, dtype of ``x`` (sums accumulated in float64)

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> dx, dw = nc.prelu_backward(np.ones(3), np.array([-2.0, 0.0, 3.0]), np.array(0.5))
    >>> dx, dw
    (array([0.5, 0.5, 1. ]), array(-2.))
    """
    op = "prelu_backward"
    x, x3, w = _prelu_views(op, x, weight)
    dy, _ = _pair_same_shape(op, dy, x, "x")
    wshape = np.shape(weight)
    dx = np.empty_like(x)
    partial = np.zeros(x3.shape[0] * x3.shape[1], np.float64)
    if x.size:
        _sized(_k._prelu_bwd, x.size)(dy.reshape(x3.shape), x3, w, dx.reshape(x3.shape),
                                      partial)
    dw = partial.reshape(x3.shape[0], x3.shape[1]).sum(axis=0)
    if w.size == 1:
        dw = dw.sum(keepdims=True)
    return dx, dw.astype(x.dtype).reshape(wshape)


# --------------------------------------------------------------------------- ELU family


@_dispatch.dispatch
def elu(x, alpha=1.0):
    """Exponential linear unit: ``x`` where ``x > 0``, ``alpha * (exp(x) - 1)`` elsewhere.

    Parameters
    ----------
    x : ndarray, any shape
    alpha : float, default 1.0

    Returns
    -------
    y : ndarray, same shape and dtype as ``x``

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> nc.elu(np.array([-np.inf, 0.0, 2.0]), alpha=0.5)
    array([-0.5,  0. ,  2. ])
    """
    alpha = _alpha("elu", alpha)
    return _unary(_k._elu_fwd, "elu", x, alpha, 1.0, 1.0)


@_dispatch.dispatch
def elu_backward(dy, x, alpha=1.0):
    """Gradient of :func:`elu` from its input: ``dy`` where ``x > 0``, ``alpha * exp(x) * dy``
    elsewhere (so ``alpha * dy`` at 0, NaN for NaN).

    Parameters
    ----------
    dy : ndarray, same shape as ``x``
    x : ndarray
        The forward input.
    alpha : float, default 1.0

    Returns
    -------
    dx : ndarray, shape and dtype of ``x``

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> nc.elu_backward(np.ones(3), np.array([-np.inf, 0.0, 2.0]), alpha=0.5)
    array([0. , 0.5, 1. ])
    """
    op = "elu_backward"
    return _binary(_k._elu_bwd, op, dy, x, _alpha(op, alpha), 1.0, 1.0)


@_dispatch.dispatch
def selu(x):
    """Scaled ELU: ``scale * elu(x, alpha)`` with PyTorch's constants ``alpha = 1.6732632...``
    and ``scale = 1.0507009...`` (``SELU_ALPHA``, ``SELU_SCALE``).

    Parameters
    ----------
    x : ndarray, any shape

    Returns
    -------
    y : ndarray, same shape and dtype as ``x``

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> nc.selu(np.array([0.0, 1.0])).round(6)
    array([0.      , 1.050701])
    """
    return _unary(_k._elu_fwd, "selu", x, SELU_ALPHA * SELU_SCALE, SELU_SCALE, 1.0)


@_dispatch.dispatch
def selu_backward(dy, x):
    """Gradient of :func:`selu` from its input: ``scale * dy`` where ``x > 0``,
    ``scale * alpha * exp(x) * dy`` elsewhere.

    Parameters
    ----------
    dy : ndarray, same shape as ``x``
    x : ndarray
        The forward input.

    Returns
    -------
    dx : ndarray, shape and dtype of ``x``

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> nc.selu_backward(np.ones(2), np.array([0.0, 1.0])).round(6)
    array([1.758099, 1.050701])
    """
    return _binary(_k._elu_bwd, "selu_backward", dy, x, SELU_ALPHA * SELU_SCALE, SELU_SCALE,
                   1.0)


@_dispatch.dispatch
def celu(x, alpha=1.0):
    """Continuously differentiable ELU: ``x`` where ``x > 0``,
    ``alpha * (exp(x / alpha) - 1)`` elsewhere.

    Parameters
    ----------
    x : ndarray, any shape
    alpha : float, default 1.0
        Not 0 (ValueError, as PyTorch's).

    Returns
    -------
    y : ndarray, same shape and dtype as ``x``

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> nc.celu(np.array([-np.inf, 3.0]), alpha=2.0)
    array([-2.,  3.])
    """
    alpha = _alpha("celu", alpha, nonzero=True)
    return _unary(_k._elu_fwd, "celu", x, alpha, 1.0, 1.0 / alpha)


@_dispatch.dispatch
def celu_backward(dy, x, alpha=1.0):
    """Gradient of :func:`celu` from its input: ``dy`` where ``x > 0``,
    ``exp(x / alpha) * dy`` elsewhere.

    Parameters
    ----------
    dy : ndarray, same shape as ``x``
    x : ndarray
        The forward input.
    alpha : float, default 1.0

    Returns
    -------
    dx : ndarray, shape and dtype of ``x``

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> nc.celu_backward(np.ones(2), np.array([0.0, 1.0]), alpha=2.0)
    array([1., 1.])
    """
    op = "celu_backward"
    alpha = _alpha(op, alpha, nonzero=True)
    return _binary(_k._elu_bwd, op, dy, x, alpha, 1.0, 1.0 / alpha)


# --------------------------------------------------------------------------- GELU


@_dispatch.dispatch
def gelu(x, approximate="none"):
    """Gaussian error linear unit: ``x * Phi(x)``, Phi the standard normal CDF.

    ``approximate="tanh"`` gives ``x/2 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x**3)))``
    (PyTorch's two forms).  The exact form computes Phi without cancellation in the lower
    tail, so that ``gelu(-10)`` is ``-7.6e-23`` rather than ``1 + erf`` cancelled to 0, and
    ``gelu(inf)`` is inf in both dtypes (PyTorch's float32 gives NaN there, its float64 inf).

    Parameters
    ----------
    x : ndarray, any shape
    approximate : {"none", "tanh"}, default "none"

    Returns
    -------
    y : ndarray, same shape and dtype as ``x``

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> nc.gelu(np.array([-1.0, 0.0, 1.0])).round(6)
    array([-0.158655,  0.      ,  0.841345])
    >>> nc.gelu(np.array([1.0]), approximate="tanh").round(6)
    array([0.841192])
    """
    if check_approximate("gelu", approximate) == "tanh":
        return _unary(_k._gelu_tanh_fwd, "gelu", x, _GELU_K, _GELU_KAPPA)
    return _unary(_k._gelu_fwd, "gelu", x)


@_dispatch.dispatch
def gelu_backward(dy, x, approximate="none"):
    """Gradient of :func:`gelu` from its input: ``dy * (Phi(x) + x * phi(x))`` (phi the normal
    density), or the derivative of the tanh form (PyTorch's formula).

    Parameters
    ----------
    dy : ndarray, same shape as ``x``
    x : ndarray
        The forward input.
    approximate : {"none", "tanh"}, default "none"

    Returns
    -------
    dx : ndarray, shape and dtype of ``x`` (NaN at ``x = +-inf``, as PyTorch)

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> nc.gelu_backward(np.ones(2), np.array([0.0, 1.0])).round(6)
    array([0.5     , 1.083315])
    """
    op = "gelu_backward"
    if check_approximate(op, approximate) == "tanh":
        return _binary(_k._gelu_tanh_bwd, op, dy, x, _GELU_K, _GELU_KAPPA)
    return _binary(_k._gelu_bwd, op, dy, x)


# --------------------------------------------------------------------------- SiLU, Mish


@_dispatch.dispatch
def silu(x):
    """Sigmoid linear unit (swish): ``x * sigmoid(x)``, without overflow.

    Parameters
    ----------
    x : ndarray, any shape

    Returns
    -------
    y : ndarray, same shape and dtype as ``x``

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> nc.silu(np.array([-1000.0, 0.0, 1.0])).round(6)
    array([-0.      ,  0.      ,  0.731059])
    """
    return _unary(_k._silu_fwd, "silu", x)


@_dispatch.dispatch
def silu_backward(dy, x):
    """Gradient of :func:`silu` from its input: ``dy * s * (1 + x * (1 - s))``,
    ``s = sigmoid(x)``.

    Parameters
    ----------
    dy : ndarray, same shape as ``x``
    x : ndarray
        The forward input.

    Returns
    -------
    dx : ndarray, shape and dtype of ``x``

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> nc.silu_backward(np.ones(2), np.array([0.0, 1.0])).round(6)
    array([0.5     , 0.927671])
    """
    return _binary(_k._silu_bwd, "silu_backward", dy, x)


@_dispatch.dispatch
def mish(x):
    """Mish: ``x * tanh(softplus(x))``, computed from one exponential without overflow.

    Parameters
    ----------
    x : ndarray, any shape

    Returns
    -------
    y : ndarray, same shape and dtype as ``x``

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> nc.mish(np.array([-1.0, 0.0, 1.0, 100.0])).round(6)
    array([ -0.303401,   0.      ,   0.865098, 100.      ])
    """
    return _unary(_k._mish_fwd, "mish", x)


@_dispatch.dispatch
def mish_backward(dy, x):
    """Gradient of :func:`mish` from its input:
    ``dy * (t + x * sigmoid(x) * (1 - t**2))``, ``t = tanh(softplus(x))``.

    Parameters
    ----------
    dy : ndarray, same shape as ``x``
    x : ndarray
        The forward input.

    Returns
    -------
    dx : ndarray, shape and dtype of ``x``

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> nc.mish_backward(np.ones(2), np.array([0.0, 1.0])).round(6)
    array([0.6     , 1.049036])
    """
    return _binary(_k._mish_bwd, "mish_backward", dy, x)


# --------------------------------------------------------------------------- hard ones


@_dispatch.dispatch
def hardswish(x):
    """Hard swish (MobileNetV3): ``x * min(max(x + 3, 0), 6) / 6``.

    Parameters
    ----------
    x : ndarray, any shape

    Returns
    -------
    y : ndarray, same shape and dtype as ``x``

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> nc.hardswish(np.array([-4.0, -1.5, 0.0, 1.5, 4.0]))
    array([-0.   , -0.375,  0.   ,  1.125,  4.   ])
    """
    return _unary(_k._hardswish_fwd, "hardswish", x)


@_dispatch.dispatch
def hardswish_backward(dy, x):
    """Gradient of :func:`hardswish` from its input, PyTorch's: 0 where ``x <= -3``, ``dy``
    where ``x >= 3``, ``dy * (x / 3 + 1/2)`` between (NaN for NaN).

    Parameters
    ----------
    dy : ndarray, same shape as ``x``
    x : ndarray
        The forward input.

    Returns
    -------
    dx : ndarray, shape and dtype of ``x``

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> nc.hardswish_backward(np.ones(4), np.array([-3.0, 0.0, 1.5, 3.0]))
    array([0. , 0.5, 1. , 1. ])
    """
    return _binary(_k._hardswish_bwd, "hardswish_backward", dy, x)


@_dispatch.dispatch
def hardsigmoid(x):
    """Hard sigmoid: ``min(max(x + 3, 0), 6) / 6`` (PyTorch's slope 1/6).

    Parameters
    ----------
    x : ndarray, any shape

    Returns
    -------
    y : ndarray, same shape and dtype as ``x``

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> nc.hardsigmoid(np.array([-4.0, 0.0, 1.5, 4.0]))
    array([0.  , 0.5 , 0.75, 1.  ])
    """
    return _unary(_k._hardsigmoid_fwd, "hardsigmoid", x)


@_dispatch.dispatch
def hardsigmoid_backward(dy, x):
    """Gradient of :func:`hardsigmoid` from its input: ``dy / 6`` where ``-3 < x < 3``, 0
    elsewhere (also at -3, at 3 and for NaN).

    Parameters
    ----------
    dy : ndarray, same shape as ``x``
    x : ndarray
        The forward input.

    Returns
    -------
    dx : ndarray, shape and dtype of ``x``

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> nc.hardsigmoid_backward(np.full(3, 6.0), np.array([-3.0, 0.0, 3.0]))
    array([0., 1., 0.])
    """
    return _binary(_k._hardsigmoid_bwd, "hardsigmoid_backward", dy, x)


@_dispatch.dispatch
def relu6(x):
    """ReLU capped at 6: ``min(max(x, 0), 6)`` (NaN stays NaN).

    Parameters
    ----------
    x : ndarray, any shape

    Returns
    -------
    y : ndarray, same shape and dtype as ``x``

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> nc.relu6(np.array([-1.0, 3.0, 7.0]))
    array([0., 3., 6.])
    """
    return _unary(_k._relu6_fwd, "relu6", x)


@_dispatch.dispatch
def relu6_backward(dy, x):
    """Gradient of :func:`relu6` from its input: ``dy`` where ``0 < x < 6``, 0 elsewhere (at
    0, at 6 and for NaN: PyTorch's hardtanh rule).

    Parameters
    ----------
    dy : ndarray, same shape as ``x``
    x : ndarray
        The forward input.

    Returns
    -------
    dx : ndarray, shape and dtype of ``x``

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> nc.relu6_backward(np.ones(4), np.array([0.0, 3.0, 6.0, np.nan]))
    array([0., 1., 0., 0.])
    """
    return _binary(_k._relu6_bwd, "relu6_backward", dy, x)


# --------------------------------------------------------------------------- Softplus


@_dispatch.dispatch
def softplus(x, beta=1.0, threshold=20.0):
    """Softplus: ``log(1 + exp(beta * x)) / beta``, and ``x`` itself where
    ``beta * x > threshold`` (PyTorch's linear region).

    Computed as ``(max(z, 0) + log1p(exp(-|z|))) / beta`` with ``z = beta * x``, which never
    overflows (PyTorch's float32 gives inf for ``88 < beta * x <= threshold`` when the
    threshold is that high; here the value is finite).

    Parameters
    ----------
    x : ndarray, any shape
    beta : float, default 1.0
    threshold : float, default 20.0
        May be inf (never linear).

    Returns
    -------
    y : ndarray, same shape and dtype as ``x``

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> nc.softplus(np.array([-np.inf, 0.0, 30.0])).round(6)
    array([ 0.      ,  0.693147, 30.      ])
    """
    beta, threshold = _softplus_args("softplus", beta, threshold)
    return _unary(_k._softplus_fwd, "softplus", x, beta, threshold)


@_dispatch.dispatch
def softplus_backward(dy, x, beta=1.0, threshold=20.0):
    """Gradient of :func:`softplus` from its input: ``dy * sigmoid(beta * x)``, and ``dy``
    where ``beta * x > threshold``.  (With a threshold above ~88 in float32, ~709 in float64,
    PyTorch's ``exp(z) / (exp(z) + 1)`` is NaN where ``exp`` overflows; the sigmoid here is 1.)

    Parameters
    ----------
    dy : ndarray, same shape as ``x``
    x : ndarray
        The forward input.
    beta : float, default 1.0
    threshold : float, default 20.0

    Returns
    -------
    dx : ndarray, shape and dtype of ``x``

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> nc.softplus_backward(np.ones(2), np.array([0.0, 30.0]))
    array([0.5, 1. ])
    """
    op = "softplus_backward"
    beta, threshold = _softplus_args(op, beta, threshold)
    return _binary(_k._softplus_bwd, op, dy, x, beta, threshold)

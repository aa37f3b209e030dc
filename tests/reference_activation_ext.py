"""Slow references of the issue-27 activations (NumPy/SciPy in float64; never imports nbconv).

Each ``<op>_ref(x, **hyper)`` returns the forward value and ``<op>_grad_ref(dy, x, **hyper)``
the input gradient, from the textbook formulas, with PyTorch's conventions at the kinks (the
branch ``x > 0`` of ELU, Hardswish's 0 at -3 and 1 at 3, the open intervals of Hardsigmoid and
ReLU6, Softplus's ``beta * x > threshold``).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
GELU_K = math.sqrt(2.0 / math.pi)
GELU_KAPPA = 0.044715


def _f64(a):
    return np.asarray(a, dtype=np.float64)


def _slopes(x, w):
    """The PReLU weight broadcast against x (axis 1 is the channel axis)."""
    w = _f64(w).reshape(-1)
    if w.size == 1 or x.ndim < 2:
        return w.reshape(()) if w.size == 1 else w
    return w.reshape((1, -1) + (1,) * (x.ndim - 2))


def prelu_ref(x, weight):
    x = _f64(x)
    return np.where(x > 0, x, _slopes(x, weight) * x)


def prelu_grad_ref(dy, x, weight):
    """(dx, dweight): dweight sums x * dy where x <= 0 over all axes but the channel axis."""
    x, dy = _f64(x), _f64(dy)
    dx = np.where(x > 0, dy, _slopes(x, weight) * dy)
    contrib = np.where(x > 0, 0.0, x * dy)
    w = np.asarray(weight)
    if w.size == 1 or x.ndim < 2:
        dw = np.array(contrib.sum()).reshape(w.shape)
    else:
        axes = (0,) + tuple(range(2, x.ndim))
        dw = contrib.sum(axis=axes).reshape(w.shape)
    return dx, dw


def elu_ref(x, alpha=1.0):
    x = _f64(x)
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))


def elu_grad_ref(dy, x, alpha=1.0):
    x = _f64(x)
    return _f64(dy) * np.where(x > 0, 1.0, alpha * np.exp(np.minimum(x, 0)))


def selu_ref(x):
    return SELU_SCALE * elu_ref(x, SELU_ALPHA)


def selu_grad_ref(dy, x):
    return SELU_SCALE * elu_grad_ref(dy, x, SELU_ALPHA)


def celu_ref(x, alpha=1.0):
    x = _f64(x)
    with np.errstate(over="ignore"):
        return np.where(x > 0, x, alpha * np.expm1(x / alpha))


def celu_grad_ref(dy, x, alpha=1.0):
    x = _f64(x)
    with np.errstate(over="ignore"):
        return _f64(dy) * np.where(x > 0, 1.0, np.exp(x / alpha))


def gelu_ref(x, approximate="none"):
    x = _f64(x)
    if approximate == "tanh":
        return 0.5 * x * (1.0 + np.tanh(GELU_K * (x + GELU_KAPPA * x**3)))
    return x * special.ndtr(x)


def gelu_grad_ref(dy, x, approximate="none"):
    x = _f64(x)
    if approximate == "tanh":
        t = np.tanh(GELU_K * (x + GELU_KAPPA * x**3))
        d = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * GELU_K * (1 + 3 * GELU_KAPPA * x * x)
        return _f64(dy) * d
    pdf = np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
    return _f64(dy) * (special.ndtr(x) + x * pdf)


def silu_ref(x):
    x = _f64(x)
    return x * special.expit(x)


def silu_grad_ref(dy, x):
    x = _f64(x)
    s = special.expit(x)
    return _f64(dy) * s * (1 + x * (1 - s))


def mish_ref(x):
    x = _f64(x)
    return x * np.tanh(np.logaddexp(0.0, x))


def mish_grad_ref(dy, x):
    x = _f64(x)
    t = np.tanh(np.logaddexp(0.0, x))
    return _f64(dy) * (t + x * special.expit(x) * (1 - t * t))


def hardswish_ref(x):
    x = _f64(x)
    return x * np.clip(x + 3, 0, 6) / 6


def hardswish_grad_ref(dy, x):
    x, dy = _f64(x), _f64(dy)
    return np.where(x <= -3, 0.0, np.where(x >= 3, dy, dy * (x / 3 + 0.5)))


def hardsigmoid_ref(x):
    return np.clip(_f64(x) + 3, 0, 6) / 6


def hardsigmoid_grad_ref(dy, x):
    x = _f64(x)
    return np.where((x > -3) & (x < 3), _f64(dy) / 6, 0.0)


def relu6_ref(x):
    return np.clip(_f64(x), 0, 6)


def relu6_grad_ref(dy, x):
    x = _f64(x)
    return np.where((x > 0) & (x < 6), _f64(dy), 0.0)


def softplus_ref(x, beta=1.0, threshold=20.0):
    x = _f64(x)
    z = x * beta
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(z > threshold, x, np.logaddexp(0.0, z) / beta)


def softplus_grad_ref(dy, x, beta=1.0, threshold=20.0):
    x = _f64(x)
    z = x * beta
    return _f64(dy) * np.where(z > threshold, 1.0, special.expit(z))

"""CUDA twins of :mod:`nbconv.kernels.activations` (same names and semantics; one softmax
kernel for both of the CPU's, ``_softmax_fwd_rows`` and ``_softmax_fwd_blocked``).

Elementwise kernels take flattened C-contiguous device arrays and use a grid-stride loop (any
launch size covers any array).  Softmax kernels see ``(A, n, B)`` arrays reduced along axis 1,
one thread per ``(a, b)`` slice, accumulating in float64 like the CPU kernels.
"""

from __future__ import annotations

import math

from .._target import cuda

__all__ = [
    "_relu_fwd",
    "_relu_bwd",
    "_leaky_relu_fwd",
    "_leaky_relu_bwd",
    "_sigmoid_fwd",
    "_sigmoid_bwd",
    "_tanh_fwd",
    "_tanh_bwd",
    "_mul_fwd",
    "_softmax_fwd",
    "_softmax_bwd",
]


@cuda.jit
def _relu_fwd(x, y):  # pragma: no cover
    start, step = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, x.size, step):
        v = x[i]
        y[i] = v if not (v <= 0) else 0  # NaN stays NaN


@cuda.jit
def _relu_bwd(dy, x, dx):  # pragma: no cover
    start, step = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, x.size, step):
        dx[i] = dy[i] if not (x[i] <= 0) else 0


@cuda.jit
def _leaky_relu_fwd(x, y, slope):  # pragma: no cover
    start, step = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, x.size, step):
        v = x[i]
        y[i] = v if v > 0 else v * slope


@cuda.jit
def _leaky_relu_bwd(dy, x, dx, slope):  # pragma: no cover
    start, step = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, x.size, step):
        g = dy[i]
        dx[i] = g if x[i] > 0 else g * slope


@cuda.jit
def _sigmoid_fwd(x, y):  # pragma: no cover
    start, step = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, x.size, step):
        v = x[i]
        # exp of a non-positive number only: no overflow, exact 0/1 limits
        if v >= 0:
            y[i] = 1.0 / (1.0 + math.exp(-v))
        else:
            e = math.exp(v)  # NaN lands here and stays NaN
            y[i] = e / (1.0 + e)


@cuda.jit
def _sigmoid_bwd(dy, y, dx):  # pragma: no cover
    start, step = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, y.size, step):
        s = y[i]
        dx[i] = dy[i] * s * (1 - s)


@cuda.jit
def _tanh_fwd(x, y):  # pragma: no cover
    start, step = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, x.size, step):
        y[i] = math.tanh(x[i])


@cuda.jit
def _tanh_bwd(dy, y, dx):  # pragma: no cover
    start, step = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, y.size, step):
        t = y[i]
        dx[i] = dy[i] * (1 - t * t)


@cuda.jit
def _mul_fwd(a, b, out):  # pragma: no cover
    """``out = a * b`` elementwise (dropout forward and backward)."""
    start, step = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, a.size, step):
        out[i] = a[i] * b[i]


@cuda.jit
def _softmax_fwd(x, y, log):  # pragma: no cover
    """Softmax (``log == 0``) or log-softmax (``log == 1``) of ``x`` (A, n, B) along axis 1."""
    t = cuda.grid(1)
    A, n, B = x.shape
    if t >= A * B:
        return
    b = t % B
    a = t // B
    m = -math.inf
    for j in range(n):
        v = x[a, j, b]
        if v > m:
            m = v
    if m == -math.inf:
        m = 0.0  # all -inf slice: exp(-inf) = 0 below, 0/0 = NaN like NumPy/PyTorch
    s = 0.0
    for j in range(n):
        s += math.exp(x[a, j, b] - m)
    if log:
        c = m + math.log(s)
        for j in range(n):
            y[a, j, b] = x[a, j, b] - c
    else:
        r = 1.0 / s
        for j in range(n):
            y[a, j, b] = math.exp(x[a, j, b] - m) * r


@cuda.jit
def _softmax_bwd(dy, y, dx, log):  # pragma: no cover
    """Gradient of softmax (``y * (dy - sum(dy*y))``) or log-softmax (``dy - exp(y) *
    sum(dy)``) along axis 1 of (A, n, B) arrays."""
    t = cuda.grid(1)
    A, n, B = y.shape
    if t >= A * B:
        return
    b = t % B
    a = t // B
    s = 0.0
    if log:
        for j in range(n):
            s += dy[a, j, b]
        for j in range(n):
            dx[a, j, b] = dy[a, j, b] - math.exp(y[a, j, b]) * s
    else:
        for j in range(n):
            s += dy[a, j, b] * y[a, j, b]
        for j in range(n):
            dx[a, j, b] = y[a, j, b] * (dy[a, j, b] - s)

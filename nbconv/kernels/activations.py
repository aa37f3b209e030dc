"""Activation, softmax and dropout kernels.

Elementwise kernels take the flattened C-contiguous arrays (``x.ravel()``), so that one compiled
signature per dtype serves every shape; the work is split into contiguous chunks with
``numba.prange`` (both cores work at batch size 1).  Softmax kernels see the input as a
C-contiguous ``(A, n, B)`` array reduced along the middle axis (``B == 1`` when the softmax axis is
the last one).  NaN propagates: a NaN input gives a NaN output (and, for softmax, a NaN row).
"""

from __future__ import annotations

import numba
import numpy as np

from .._config import JIT_OPTIONS

#: elements per parallel chunk of the elementwise kernels.
_CHUNK = 4096
#: positions of the trailing axis handled together by the strided softmax kernels.
_BLOCK = 256


@numba.njit(parallel=True, **JIT_OPTIONS)
def _relu_fwd(x, y):
    n = x.size
    nch = (n + _CHUNK - 1) // _CHUNK
    for ch in numba.prange(nch):
        for i in range(ch * _CHUNK, min(n, (ch + 1) * _CHUNK)):
            v = x[i]
            # "not (v <= 0)" keeps NaN
            y[i] = v if not (v <= 0) else 0


@numba.njit(parallel=True, **JIT_OPTIONS)
def _relu_bwd(dy, x, dx):
    n = x.size
    nch = (n + _CHUNK - 1) // _CHUNK
    for ch in numba.prange(nch):
        for i in range(ch * _CHUNK, min(n, (ch + 1) * _CHUNK)):
            # PyTorch's threshold_backward: zero where x <= 0, dy elsewhere (NaN x passes dy)
            dx[i] = dy[i] if not (x[i] <= 0) else 0


@numba.njit(parallel=True, **JIT_OPTIONS)
def _leaky_relu_fwd(x, y, slope):
    n = x.size
    nch = (n + _CHUNK - 1) // _CHUNK
    for ch in numba.prange(nch):
        for i in range(ch * _CHUNK, min(n, (ch + 1) * _CHUNK)):
            v = x[i]
            y[i] = v if v > 0 else v * slope


@numba.njit(parallel=True, **JIT_OPTIONS)
def _leaky_relu_bwd(dy, x, dx, slope):
    n = x.size
    nch = (n + _CHUNK - 1) // _CHUNK
    for ch in numba.prange(nch):
        for i in range(ch * _CHUNK, min(n, (ch + 1) * _CHUNK)):
            g = dy[i]
            dx[i] = g if x[i] > 0 else g * slope


@numba.njit(parallel=True, **JIT_OPTIONS)
def _sigmoid_fwd(x, y):
    n = x.size
    nch = (n + _CHUNK - 1) // _CHUNK
    for ch in numba.prange(nch):
        for i in range(ch * _CHUNK, min(n, (ch + 1) * _CHUNK)):
            v = x[i]
            # exp of a non-positive number only: no overflow, exact 0/1 limits
            if v >= 0:
                y[i] = 1.0 / (1.0 + np.exp(-v))
            else:
                e = np.exp(v)  # NaN lands here and stays NaN
                y[i] = e / (1.0 + e)


@numba.njit(parallel=True, **JIT_OPTIONS)
def _sigmoid_bwd(dy, y, dx):
    n = y.size
    nch = (n + _CHUNK - 1) // _CHUNK
    for ch in numba.prange(nch):
        for i in range(ch * _CHUNK, min(n, (ch + 1) * _CHUNK)):
            s = y[i]
            dx[i] = dy[i] * s * (1.0 - s)


@numba.njit(parallel=True, **JIT_OPTIONS)
def _tanh_fwd(x, y):
    n = x.size
    nch = (n + _CHUNK - 1) // _CHUNK
    for ch in numba.prange(nch):
        for i in range(ch * _CHUNK, min(n, (ch + 1) * _CHUNK)):
            y[i] = np.tanh(x[i])


@numba.njit(parallel=True, **JIT_OPTIONS)
def _tanh_bwd(dy, y, dx):
    n = y.size
    nch = (n + _CHUNK - 1) // _CHUNK
    for ch in numba.prange(nch):
        for i in range(ch * _CHUNK, min(n, (ch + 1) * _CHUNK)):
            t = y[i]
            dx[i] = dy[i] * (1.0 - t * t)


@numba.njit(parallel=True, **JIT_OPTIONS)
def _mul_fwd(a, b, out):
    """``out = a * b`` elementwise (dropout forward and backward)."""
    n = a.size
    nch = (n + _CHUNK - 1) // _CHUNK
    for ch in numba.prange(nch):
        for i in range(ch * _CHUNK, min(n, (ch + 1) * _CHUNK)):
            out[i] = a[i] * b[i]


@numba.njit(parallel=True, **JIT_OPTIONS)
def _softmax_fwd(x, y, log):
    """Softmax (``log == 0``) or log-softmax (``log == 1``) of ``x`` (A, n, B) along axis 1."""
    A, n, B = x.shape
    if B == 1:
        for a in numba.prange(A):
            m = -np.inf
            for j in range(n):
                v = x[a, j, 0]
                if v > m:
                    m = v
            if m == -np.inf:
                m = 0.0  # all -inf row: exp(-inf) = 0 below, 0/0 = NaN like NumPy/PyTorch
            s = 0.0
            for j in range(n):
                s += np.exp(x[a, j, 0] - m)
            if log:
                c = m + np.log(s)
                for j in range(n):
                    y[a, j, 0] = x[a, j, 0] - c
            else:
                r = 1.0 / s
                for j in range(n):
                    y[a, j, 0] = np.exp(x[a, j, 0] - m) * r
        return
    nb = (B + _BLOCK - 1) // _BLOCK
    for t in numba.prange(A * nb):
        a = t // nb
        b0 = (t % nb) * _BLOCK
        b1 = min(B, b0 + _BLOCK)
        w = b1 - b0
        m = np.full(w, -np.inf)
        s = np.zeros(w)
        for j in range(n):
            for b in range(w):
                v = x[a, j, b0 + b]
                if v > m[b]:
                    m[b] = v
        for b in range(w):
            if m[b] == -np.inf:
                m[b] = 0.0
        for j in range(n):
            for b in range(w):
                s[b] += np.exp(x[a, j, b0 + b] - m[b])
        if log:
            for b in range(w):
                s[b] = m[b] + np.log(s[b])
            for j in range(n):
                for b in range(w):
                    y[a, j, b0 + b] = x[a, j, b0 + b] - s[b]
        else:
            for b in range(w):
                s[b] = 1.0 / s[b]
            for j in range(n):
                for b in range(w):
                    y[a, j, b0 + b] = np.exp(x[a, j, b0 + b] - m[b]) * s[b]


@numba.njit(parallel=True, **JIT_OPTIONS)
def _softmax_bwd(dy, y, dx, log):
    """Gradient of softmax (``log == 0``: ``y * (dy - sum(dy*y))``) or log-softmax
    (``log == 1``: ``dy - exp(y) * sum(dy)``) along axis 1 of (A, n, B) arrays."""
    A, n, B = y.shape
    if B == 1:
        for a in numba.prange(A):
            s = 0.0
            if log:
                for j in range(n):
                    s += dy[a, j, 0]
                for j in range(n):
                    dx[a, j, 0] = dy[a, j, 0] - np.exp(y[a, j, 0]) * s
            else:
                for j in range(n):
                    s += dy[a, j, 0] * y[a, j, 0]
                for j in range(n):
                    dx[a, j, 0] = y[a, j, 0] * (dy[a, j, 0] - s)
        return
    nb = (B + _BLOCK - 1) // _BLOCK
    for t in numba.prange(A * nb):
        a = t // nb
        b0 = (t % nb) * _BLOCK
        b1 = min(B, b0 + _BLOCK)
        w = b1 - b0
        s = np.zeros(w)
        if log:
            for j in range(n):
                for b in range(w):
                    s[b] += dy[a, j, b0 + b]
            for j in range(n):
                for b in range(w):
                    dx[a, j, b0 + b] = dy[a, j, b0 + b] - np.exp(y[a, j, b0 + b]) * s[b]
        else:
            for j in range(n):
                for b in range(w):
                    s[b] += dy[a, j, b0 + b] * y[a, j, b0 + b]
            for j in range(n):
                for b in range(w):
                    dx[a, j, b0 + b] = y[a, j, b0 + b] * (dy[a, j, b0 + b] - s[b])

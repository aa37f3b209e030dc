"""Batch-norm and local-response-norm kernels.

Inputs are C-contiguous ``(N, C, S)`` arrays (``S`` = product of the spatial dimensions, 1 for
``(N, C)`` inputs).  Per-channel vectors (means, scales, sums) are float64 so that one signature
per input dtype serves every call and reductions accumulate in double precision.

Race freedom: per-channel reductions parallelise over channels (each iteration owns one output
element); the elementwise passes parallelise over the ``N * C`` planes; local response norm
parallelises over (image, block of positions), which owns its outputs for every channel.
"""

from __future__ import annotations

import numba
import numpy as np

from .._config import JIT_OPTIONS

#: spatial positions handled together by one local-response-norm iteration.
_BLOCK = 256


@numba.njit(parallel=True, **JIT_OPTIONS)
def _batch_norm_stats(x, mean, var):
    """Per-channel mean and biased variance over axes 0 and 2 (two passes, float64)."""
    N, C, S = x.shape
    cnt = N * S
    for c in numba.prange(C):
        s = 0.0
        for n in range(N):
            for i in range(S):
                s += x[n, c, i]
        m = s / cnt
        q = 0.0
        for n in range(N):
            for i in range(S):
                d = x[n, c, i] - m
                q += d * d
        mean[c] = m
        var[c] = q / cnt


@numba.njit(parallel=True, **JIT_OPTIONS)
def _batch_norm_fwd(x, mean, scale, shift, y):
    """``y = (x - mean[c]) * scale[c] + shift[c]`` (scale = weight * invstd, shift = bias)."""
    N, C, S = x.shape
    for t in numba.prange(N * C):
        n = t // C
        c = t % C
        m = mean[c]
        a = scale[c]
        b = shift[c]
        for i in range(S):
            y[n, c, i] = (x[n, c, i] - m) * a + b


@numba.njit(parallel=True, **JIT_OPTIONS)
def _batch_norm_bwd_reduce(dy, x, mean, invstd, sum_dy, sum_dy_xhat):
    """Per channel: ``sum(dy)`` and ``sum(dy * (x - mean) * invstd)`` (float64)."""
    N, C, S = x.shape
    for c in numba.prange(C):
        m = mean[c]
        s1 = 0.0
        s2 = 0.0
        for n in range(N):
            for i in range(S):
                g = dy[n, c, i]
                s1 += g
                s2 += g * (x[n, c, i] - m)
        sum_dy[c] = s1
        sum_dy_xhat[c] = s2 * invstd[c]


@numba.njit(parallel=True, **JIT_OPTIONS)
def _batch_norm_bwd_data(dy, x, mean, invstd, k, mean_dy, mean_dy_xhat, training, dx):
    """Training: ``dx = k[c] * (dy - mean_dy[c] - xhat * mean_dy_xhat[c])`` with
    ``xhat = (x - mean[c]) * invstd[c]``; eval (``training == 0``): ``dx = k[c] * dy``.
    ``k = weight * invstd``."""
    N, C, S = dy.shape
    for t in numba.prange(N * C):
        n = t // C
        c = t % C
        kc = k[c]
        if training:
            m = mean[c]
            r = invstd[c]
            a = mean_dy[c]
            b = mean_dy_xhat[c]
            for i in range(S):
                dx[n, c, i] = kc * (dy[n, c, i] - a - (x[n, c, i] - m) * r * b)
        else:
            for i in range(S):
                dx[n, c, i] = kc * dy[n, c, i]


@numba.njit(parallel=True, **JIT_OPTIONS)
def _local_response_norm_fwd(x, y, size, alpha, beta, k):
    """``y[c] = x[c] * (k + alpha/size * sum_{c' in window(c)} x[c']**2) ** -beta``, window
    ``[c - size//2, c + (size-1)//2]`` clipped to the channels (zero padding)."""
    N, C, S = x.shape
    nb = (S + _BLOCK - 1) // _BLOCK
    lo = size // 2
    hi = (size - 1) // 2
    coef = alpha / size
    for t in numba.prange(N * nb):
        n = t // nb
        s0 = (t % nb) * _BLOCK
        w = min(S, s0 + _BLOCK) - s0
        acc = np.empty(w)
        for c in range(C):
            acc[:] = 0.0
            for cc in range(max(0, c - lo), min(C, c + hi + 1)):
                for i in range(w):
                    v = x[n, cc, s0 + i]
                    acc[i] += v * v
            for i in range(w):
                y[n, c, s0 + i] = x[n, c, s0 + i] * (k + coef * acc[i]) ** (-beta)


@numba.njit(parallel=True, **JIT_OPTIONS)
def _local_response_norm_bwd(dy, x, dx, size, alpha, beta, k):
    """Gradient of :func:`_local_response_norm_fwd`:
    ``dx[j] = dy[j] * d[j]**-beta - 2*alpha*beta/size * x[j] * sum_{c: j in window(c)}
    dy[c] * x[c] * d[c]**(-beta-1)``, i.e. c in ``[j - (size-1)//2, j + size//2]``."""
    N, C, S = x.shape
    nb = (S + _BLOCK - 1) // _BLOCK
    lo = size // 2
    hi = (size - 1) // 2
    coef = alpha / size
    coef2 = 2.0 * alpha * beta / size
    for t in numba.prange(N * nb):
        n = t // nb
        s0 = (t % nb) * _BLOCK
        w = min(S, s0 + _BLOCK) - s0
        acc = np.empty(w)
        dpow = np.empty((C, w))  # d ** -beta
        tmp = np.empty((C, w))  # dy * x * d ** (-beta - 1)
        for c in range(C):
            acc[:] = 0.0
            for cc in range(max(0, c - lo), min(C, c + hi + 1)):
                for i in range(w):
                    v = x[n, cc, s0 + i]
                    acc[i] += v * v
            for i in range(w):
                d = k + coef * acc[i]
                p = d ** (-beta)
                dpow[c, i] = p
                tmp[c, i] = dy[n, c, s0 + i] * x[n, c, s0 + i] * p / d
        for j in range(C):
            acc[:] = 0.0
            for c in range(max(0, j - hi), min(C, j + lo + 1)):
                for i in range(w):
                    acc[i] += tmp[c, i]
            for i in range(w):
                dx[n, j, s0 + i] = dy[n, j, s0 + i] * dpow[j, i] - coef2 * x[n, j, s0 + i] * acc[i]

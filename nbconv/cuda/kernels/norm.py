"""CUDA twins of :mod:`nbconv.kernels.norm` (batch norm and local response norm).

Inputs are C-contiguous ``(N, C, S)`` device arrays; per-channel vectors are float64 device
arrays.  Per-channel reductions run one block per channel with a fixed-order tree reduction in
shared memory (deterministic, float64); elementwise passes run one thread per element.
"""

from __future__ import annotations

import math

import numba

from .._target import cuda
from . import MAX_BLOCK
from ._reduce import block_sum_for

__all__ = [
    "_batch_norm_stats",
    "_batch_norm_vectors",
    "_batch_norm_fwd",
    "_batch_norm_bwd_reduce",
    "_batch_norm_bwd_data",
    "_local_response_norm_fwd",
    "_local_response_norm_bwd",
]

_block_sum = block_sum_for(globals())  # this module's own copy: see _reduce


@cuda.jit
def _batch_norm_stats(x, mean, var):  # pragma: no cover
    """Per-channel mean and biased variance (two passes, float64); one block per channel."""
    sh = cuda.shared.array(MAX_BLOCK, numba.float64)
    N, C, S = x.shape
    c = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    bd = cuda.blockDim.x
    cnt = N * S
    s = 0.0
    for e in range(tid, cnt, bd):
        s += x[e // S, c, e % S]
    m = _block_sum(sh, s) / cnt
    q = 0.0
    for e in range(tid, cnt, bd):
        d = x[e // S, c, e % S] - m
        q += d * d
    q = _block_sum(sh, q)
    if tid == 0:
        mean[c] = m
        var[c] = q / cnt


@cuda.jit
def _batch_norm_vectors(mean, var, rm, rv, weight, bias, flags, momentum, eps, cnt,
                        invstd, scale, shift):  # pragma: no cover
    """Per-channel vectors of the forward pass, one thread per channel.

    ``flags``: 1 update ``rm`` in place, 2 update ``rv`` in place (unbiased variance),
    4 ``weight`` given, 8 ``bias`` given, 16 eval mode (``mean``/``var`` are first read from
    ``rm``/``rv``).  Writes ``invstd = 1/sqrt(var + eps)``, ``scale = invstd * weight`` and
    ``shift = bias`` (float64).
    """
    c = cuda.grid(1)
    if c >= mean.shape[0]:
        return
    if flags & 16:
        mean[c] = rm[c]
        var[c] = rv[c]
    m = mean[c]
    v = var[c]
    if flags & 1:
        rm[c] = (1.0 - momentum) * rm[c] + momentum * m
    if flags & 2:
        rv[c] = (1.0 - momentum) * rv[c] + momentum * (v * (cnt / (cnt - 1)))
    r = 1.0 / math.sqrt(v + eps)
    invstd[c] = r
    scale[c] = r * weight[c] if flags & 4 else r
    shift[c] = bias[c] if flags & 8 else 0.0


@cuda.jit
def _batch_norm_fwd(x, mean, scale, shift, y):  # pragma: no cover
    """``y = (x - mean[c]) * scale[c] + shift[c]``."""
    t = cuda.grid(1)
    N, C, S = x.shape
    if t >= N * C * S:
        return
    i = t % S
    r = t // S
    c = r % C
    n = r // C
    y[n, c, i] = (x[n, c, i] - mean[c]) * scale[c] + shift[c]


@cuda.jit
def _batch_norm_bwd_reduce(dy, x, mean, invstd, sum_dy, sum_dy_xhat):  # pragma: no cover
    """Per channel: ``sum(dy)`` and ``sum(dy * (x - mean) * invstd)``; one block per channel."""
    sh = cuda.shared.array(MAX_BLOCK, numba.float64)
    N, C, S = x.shape
    c = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    bd = cuda.blockDim.x
    m = mean[c]
    s1 = 0.0
    s2 = 0.0
    for e in range(tid, N * S, bd):
        n = e // S
        i = e % S
        g = dy[n, c, i]
        s1 += g
        s2 += g * (x[n, c, i] - m)
    s1 = _block_sum(sh, s1)
    s2 = _block_sum(sh, s2)
    if tid == 0:
        sum_dy[c] = s1
        sum_dy_xhat[c] = s2 * invstd[c]


@cuda.jit
def _batch_norm_bwd_data(dy, x, mean, invstd, weight, has_weight, sum_dy, sum_dy_xhat, cnt,
                         training, dx):  # pragma: no cover
    """Training: ``dx = k[c] * (dy - sum_dy[c]/cnt - xhat * sum_dy_xhat[c]/cnt)``; eval:
    ``dx = k[c] * dy``, with ``k = invstd * weight`` (``weight`` ignored unless
    ``has_weight``)."""
    t = cuda.grid(1)
    N, C, S = dy.shape
    if t >= N * C * S:
        return
    i = t % S
    r = t // S
    c = r % C
    n = r // C
    kc = invstd[c] * weight[c] if has_weight else invstd[c] * 1.0
    if training:
        a = sum_dy[c] / cnt
        b = sum_dy_xhat[c] / cnt
        dx[n, c, i] = kc * (dy[n, c, i] - a - (x[n, c, i] - mean[c]) * invstd[c] * b)
    else:
        dx[n, c, i] = kc * dy[n, c, i]


@cuda.jit(device=True)
def _lrn_denom(x, n, c, i, C, lo, hi, coef, k):  # pragma: no cover
    acc = 0.0
    for cc in range(max(0, c - lo), min(C, c + hi + 1)):
        v = x[n, cc, i]
        acc += v * v
    return k + coef * acc


@cuda.jit
def _local_response_norm_fwd(x, y, size, alpha, beta, k):  # pragma: no cover
    """``y[c] = x[c] * (k + alpha/size * sum_{c' in window(c)} x[c']**2) ** -beta``."""
    t = cuda.grid(1)
    N, C, S = x.shape
    if t >= N * C * S:
        return
    i = t % S
    r = t // S
    c = r % C
    n = r // C
    d = _lrn_denom(x, n, c, i, C, size // 2, (size - 1) // 2, alpha / size, k)
    y[n, c, i] = x[n, c, i] * d ** (-beta)


@cuda.jit
def _local_response_norm_bwd(dy, x, dx, size, alpha, beta, k):  # pragma: no cover
    """``dx[j] = dy[j] * d[j]**-beta - 2*alpha*beta/size * x[j] * sum_{c: j in window(c)}
    dy[c] * x[c] * d[c]**(-beta-1)``, one thread per element (a gather)."""
    t = cuda.grid(1)
    N, C, S = x.shape
    if t >= N * C * S:
        return
    i = t % S
    r = t // S
    j = r % C
    n = r // C
    lo = size // 2
    hi = (size - 1) // 2
    coef = alpha / size
    acc = 0.0
    for c in range(max(0, j - hi), min(C, j + lo + 1)):
        d = _lrn_denom(x, n, c, i, C, lo, hi, coef, k)
        acc += dy[n, c, i] * x[n, c, i] * d ** (-beta) / d
    dj = _lrn_denom(x, n, j, i, C, lo, hi, coef, k)
    dx[n, j, i] = dy[n, j, i] * dj ** (-beta) - 2.0 * alpha * beta / size * x[n, j, i] * acc

"""CUDA kernels of the losses in :mod:`nbconv.losses` (on the host those are NumPy
expressions, so there is no CPU twin).

The loss value itself is finished on the host from a short vector (one float per row for
cross-entropy, one partial sum per block for the elementwise losses), so that a loss costs one
small device-to-host copy; partial sums use the fixed-order block reduction of
:mod:`._reduce` and are deterministic.
"""

from __future__ import annotations

import math

import numba

from .._target import cuda
from . import MAX_BLOCK
from ._reduce import block_sum_for

__all__ = ["_cross_entropy_rows", "_cross_entropy_bwd", "_sub", "_sum_partials",
           "_mse_bwd", "_l1_bwd"]

_block_sum = block_sum_for(globals())  # this module's own copy: see _reduce


@cuda.jit
def _cross_entropy_rows(logp, target, out):  # pragma: no cover
    """``out[n] = -logp[n, target[n]]`` (float64), NaN where the label is outside [0, C)."""
    start, step = cuda.grid(1), cuda.gridsize(1)
    N, C = logp.shape
    for n in range(start, N, step):
        t = target[n]
        if t >= 0 and t < C:
            out[n] = -logp[n, t]
        else:
            out[n] = math.nan


@cuda.jit
def _cross_entropy_bwd(logp, target, scale, d):  # pragma: no cover
    """``d[n, c] = (exp(logp[n, c]) - [c == target[n]]) * scale`` (softmax minus one-hot)."""
    start, step = cuda.grid(1), cuda.gridsize(1)
    N, C = logp.shape
    for t in range(start, N * C, step):
        c = t % C
        n = t // C
        v = math.exp(logp[n, c])
        if c == target[n]:
            v -= 1
        d[n, c] = v * scale


@cuda.jit
def _sub(a, b, out):  # pragma: no cover
    """``out = a - b`` (1-D)."""
    start, step = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, out.shape[0], step):
        out[i] = a[i] - b[i]


@cuda.jit
def _sum_partials(x, kind, partial):  # pragma: no cover
    """``partial[block] = sum of f(x[i])`` over the block's grid-stride share, in float64;
    ``f`` is the square (``kind == 0``) or the absolute value (``kind == 1``), computed in
    ``x``'s dtype like the NumPy expression on the host."""
    sh = cuda.shared.array(MAX_BLOCK, numba.float64)
    start, step = cuda.grid(1), cuda.gridsize(1)
    s = 0.0
    for i in range(start, x.shape[0], step):
        v = x[i]
        s += v * v if kind == 0 else abs(v)
    s = _block_sum(sh, s)
    if cuda.threadIdx.x == 0:
        partial[cuda.blockIdx.x] = s


@cuda.jit
def _mse_bwd(diff, c, d):  # pragma: no cover
    """``d = c * diff`` (``c = 2 / n`` or 2)."""
    start, step = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, d.shape[0], step):
        d[i] = c * diff[i]


@cuda.jit
def _l1_bwd(diff, c, d):  # pragma: no cover
    """``d = c * sign(diff)``, 0 at 0 and NaN at NaN (``numpy.sign``)."""
    start, step = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, d.shape[0], step):
        v = diff[i]
        if v > 0:
            d[i] = c
        elif v < 0:
            d[i] = -c
        elif v == 0:
            d[i] = 0
        else:
            d[i] = v

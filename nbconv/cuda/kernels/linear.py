"""CUDA kernels of the fully connected layer: a tiled matrix product and the bias kernels
(twins of :mod:`nbconv.kernels.linear`; on the CPU the products are BLAS calls).

``_matmul`` computes ``c = op(a) @ op(b)`` with ``op`` an optional transpose, in
``TILE x TILE`` thread blocks that stage tiles of both operands in shared memory; every output
element sums over ``k`` in increasing order (deterministic).  ``TILE`` is fixed when this module
is first imported: ``nbconv._config.CUDA_TILE`` (``NBCONV_CUDA_TILE``, default 16; the simulator
tests use 4 so that multi-tile paths run).
"""

from __future__ import annotations

import numba
import numpy as np

from ... import _config
from .._target import cuda
from . import MAX_BLOCK, grid
from ._reduce import block_sum_for

__all__ = ["TILE", "_matmul", "_linear_bias_fwd", "_linear_bias_bwd"]

_block_sum = block_sum_for(globals())  # this module's own copy: see _reduce

#: edge of the square thread blocks and shared-memory tiles of the matrix product.
TILE: int = _config.CUDA_TILE


def _make_matmul(nbtype):
    T = TILE

    @cuda.jit
    def kernel(a, b, c, ta, tb):  # pragma: no cover
        sa = cuda.shared.array((T, T), nbtype)
        sb = cuda.shared.array((T, T), nbtype)
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        i = cuda.blockIdx.y * T + ty
        j = cuda.blockIdx.x * T + tx
        M = c.shape[0]
        N = c.shape[1]
        K = a.shape[0] if ta else a.shape[1]
        acc = nbtype(0)
        for k0 in range(0, K, T):
            ka = k0 + tx
            if i < M and ka < K:
                sa[ty, tx] = a[ka, i] if ta else a[i, ka]
            else:
                sa[ty, tx] = 0
            kb = k0 + ty
            if j < N and kb < K:
                sb[ty, tx] = b[j, kb] if tb else b[kb, j]
            else:
                sb[ty, tx] = 0
            cuda.syncthreads()
            for kk in range(T):
                acc += sa[ty, kk] * sb[kk, tx]
            cuda.syncthreads()
        if i < M and j < N:
            c[i, j] = acc

    return kernel


_MATMUL = {}


def _matmul(a, b, c, ta, tb):
    """``c[:] = op(a) @ op(b)``; ``op(a) = a.T`` if ``ta``, ``op(b) = b.T`` if ``tb``.

    ``a``, ``b``, ``c`` are C-contiguous 2-D device arrays of one float dtype; ``K >= 0``
    (``K == 0`` gives zeros).  Launches its own grid.
    """
    dt = np.dtype(c.dtype)
    k = _MATMUL.get(dt)
    if k is None:
        k = _MATMUL[dt] = _make_matmul(numba.from_dtype(dt))
    M, N = c.shape
    if M == 0 or N == 0:
        return
    blocks = ((N + TILE - 1) // TILE, (M + TILE - 1) // TILE)
    k[blocks, (TILE, TILE)](a, b, c, int(bool(ta)), int(bool(tb)))


@cuda.jit
def _linear_bias_fwd_kernel(y, b):  # pragma: no cover
    start, step = cuda.grid(1), cuda.gridsize(1)
    M, F = y.shape
    for t in range(start, M * F, step):
        f = t % F
        m = t // F
        y[m, f] += b[f]


def _linear_bias_fwd(y, b):
    """``y[m, f] += b[f]`` in place (one thread per element)."""
    if y.size:
        _linear_bias_fwd_kernel[grid(y.size)](y, b)


@cuda.jit
def _linear_bias_bwd_kernel(dy, db):  # pragma: no cover
    sh = cuda.shared.array(MAX_BLOCK, numba.float64)
    M, F = dy.shape
    f = cuda.blockIdx.x
    s = 0.0
    for m in range(cuda.threadIdx.x, M, cuda.blockDim.x):
        s += dy[m, f]
    s = _block_sum(sh, s)
    if cuda.threadIdx.x == 0:
        db[f] = s


def _linear_bias_bwd(dy, db):
    """``db[f] = sum_m dy[m, f]``: one block per feature, deterministic tree reduction."""
    M, F = dy.shape
    if F:
        _linear_bias_bwd_kernel[F, grid(1)[1]](dy, db)

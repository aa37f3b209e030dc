"""Deterministic block reduction shared by the CUDA kernels."""

from __future__ import annotations

from ..._cuda_target import cuda


@cuda.jit(device=True)
def _block_sum(sh, v):  # pragma: no cover - compiled
    """Sum ``v`` over the threads of the block (tree order fixed by the block size).

    ``sh`` is a float64 shared array of at least ``blockDim.x`` elements; every thread of the
    block must call this (it synchronises).  Returns the sum in every thread.
    """
    tid = cuda.threadIdx.x
    bd = cuda.blockDim.x
    sh[tid] = v
    cuda.syncthreads()
    s = 1
    while s < bd:
        if tid % (2 * s) == 0 and tid + s < bd:
            sh[tid] += sh[tid + s]
        s *= 2
        cuda.syncthreads()
    r = sh[0]
    cuda.syncthreads()
    return r

"""Deterministic block reduction shared by the CUDA kernels.

Each kernel module compiles its own copy, ``_block_sum = block_sum_for(globals())``, so that
the device function's globals are the kernel module's.  numba's CUDA simulator swaps the
``cuda`` global of a kernel's module once for the whole launch, but that of a device function
from another module on every call, by every simulated thread: a thread leaving the call put
the real module back while others still read ``cuda.blockDim`` (an AttributeError seen in
CI).  On a GPU the copies compile to the same code.
"""

from __future__ import annotations

import types

from .._target import cuda


def _block_sum_body(sh, v):  # pragma: no cover - compiled
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


def block_sum_for(namespace: dict):
    """``_block_sum(sh, v)`` as a CUDA device function whose globals are ``namespace`` (the
    calling kernel module's ``globals()``, which must bind ``cuda``)."""
    fn = types.FunctionType(_block_sum_body.__code__, namespace, "_block_sum")
    fn.__doc__ = _block_sum_body.__doc__
    return cuda.jit(device=True)(fn)

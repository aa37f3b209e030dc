"""Small CUDA kernels that stand in for the NumPy array arithmetic of the layers, containers
and optimizers (gradient accumulation, sums at fan-in, concatenation, counters).

They have no CPU twin in :mod:`nbconv.kernels`: on the host these are plain NumPy expressions
(``a += b``, ``np.concatenate``).  Elementwise kernels take flat C-contiguous device arrays and
use grid-stride loops, so any launch size covers any array.
"""

from __future__ import annotations

from .._target import cuda

__all__ = ["_add_inplace", "_add", "_add_scalar", "_slab_copy"]


@cuda.jit
def _add_inplace(a, b):  # pragma: no cover
    """``a += b`` (1-D arrays of one length; ``b`` is cast to ``a``'s dtype)."""
    start, step = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, a.shape[0], step):
        a[i] += b[i]


@cuda.jit
def _add(a, b, out):  # pragma: no cover
    """``out = a + b`` (1-D arrays of one length)."""
    start, step = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, out.shape[0], step):
        out[i] = a[i] + b[i]


@cuda.jit
def _add_scalar(a, v):  # pragma: no cover
    """``a += v`` for every element of the 1-D array ``a`` (step counters)."""
    start, step = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, a.shape[0], step):
        a[i] += v


@cuda.jit
def _slab_copy(src, dst, src_off, dst_off, count):  # pragma: no cover
    """``dst[:, dst_off:dst_off+count, :] = src[:, src_off:src_off+count, :]`` for (A, n, B)
    arrays that share A and B: one launch per input of a concatenation or output of a split."""
    start, step = cuda.grid(1), cuda.gridsize(1)
    A = src.shape[0]
    B = src.shape[2]
    for t in range(start, A * count * B, step):
        b = t % B
        r = t // B
        j = r % count
        a = r // count
        dst[a, dst_off + j, b] = src[a, src_off + j, b]

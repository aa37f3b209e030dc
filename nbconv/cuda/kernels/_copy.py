"""Small CUDA utility kernels: strided-to-contiguous copies with a dtype cast, fill, 2-D flip."""

from __future__ import annotations

from .._target import cuda

__all__ = ["COPY", "_fill", "_flip2"]


@cuda.jit
def _copy1(src, dst):  # pragma: no cover
    t = cuda.grid(1)
    if t < dst.shape[0]:
        dst[t] = src[t]


@cuda.jit
def _copy2(src, dst):  # pragma: no cover
    t = cuda.grid(1)
    A, B = dst.shape
    if t < A * B:
        dst[t // B, t % B] = src[t // B, t % B]


@cuda.jit
def _copy3(src, dst):  # pragma: no cover
    t = cuda.grid(1)
    A, B, C = dst.shape
    if t < A * B * C:
        c = t % C
        r = t // C
        dst[r // B, r % B, c] = src[r // B, r % B, c]


@cuda.jit
def _copy4(src, dst):  # pragma: no cover
    t = cuda.grid(1)
    A, B, C, D = dst.shape
    if t < A * B * C * D:
        d = t % D
        r = t // D
        c = r % C
        r = r // C
        dst[r // B, r % B, c, d] = src[r // B, r % B, c, d]


@cuda.jit
def _copy5(src, dst):  # pragma: no cover
    t = cuda.grid(1)
    A, B, C, D, E = dst.shape
    if t < A * B * C * D * E:
        e = t % E
        r = t // E
        d = r % D
        r = r // D
        c = r % C
        r = r // C
        dst[r // B, r % B, c, d, e] = src[r // B, r % B, c, d, e]


#: copy kernel by number of dimensions: ``COPY[ndim][grid](src, dst)`` copies any strided
#: ``src`` into the C-contiguous ``dst`` of the same shape, casting to ``dst``'s dtype.
COPY = {1: _copy1, 2: _copy2, 3: _copy3, 4: _copy4, 5: _copy5}


@cuda.jit
def _fill(a, v):  # pragma: no cover
    """``a[:] = v`` for a 1-D array."""
    start, step = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, a.shape[0], step):
        a[i] = v


@cuda.jit
def _flip2(src, dst):  # pragma: no cover
    """``dst = src[::-1, ::-1]`` (C-contiguous ``dst``)."""
    t = cuda.grid(1)
    A, B = dst.shape
    if t < A * B:
        i = t // B
        j = t % B
        dst[i, j] = src[A - 1 - i, B - 1 - j]

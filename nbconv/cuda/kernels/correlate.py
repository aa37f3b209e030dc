"""CUDA twins of :mod:`nbconv.kernels.correlate` (``correlate2d``/``convolve2d``).

``_correlate2d_valid_fwd`` is the 'valid' correlation of an already padded input.  On the device
nbconv avoids materialising the padded input: ``_correlate2d_gather_fwd`` reads ``in1`` through
two small index vectors (computed on the host from the mode and boundary; ``-1`` means
``fillvalue``).  One thread per output element; taps summed row-major like the CPU kernel.
"""

from __future__ import annotations

from .._target import cuda

__all__ = ["_correlate2d_valid_fwd", "_correlate2d_gather_fwd"]


@cuda.jit
def _correlate2d_valid_fwd(p, w, out, zero):  # pragma: no cover
    """``out[i, j] = sum_{a, b} p[i + a, j + b] * w[a, b]`` (``out`` overwritten; ``zero`` is
    0 in the arrays' dtype)."""
    t = cuda.grid(1)
    oh, ow = out.shape
    kh, kw = w.shape
    if t >= oh * ow:
        return
    j = t % ow
    i = t // ow
    acc = zero
    for a in range(kh):
        for b in range(kw):
            acc += p[i + a, j + b] * w[a, b]
    out[i, j] = acc


@cuda.jit
def _correlate2d_gather_fwd(a, rows, cols, w, out, fv, zero):  # pragma: no cover
    """``out[i, j] = sum_{s, t} A[i + s, j + t] * w[s, t]`` with
    ``A[u, v] = a[rows[u], cols[v]]``, or ``fv`` where ``rows[u]`` or ``cols[v]`` is -1."""
    t = cuda.grid(1)
    oh, ow = out.shape
    kh, kw = w.shape
    if t >= oh * ow:
        return
    j = t % ow
    i = t // ow
    acc = zero
    for s in range(kh):
        r = rows[i + s]
        for u in range(kw):
            c = cols[j + u]
            v = fv if r < 0 or c < 0 else a[r, c]
            acc += v * w[s, u]
    out[i, j] = acc

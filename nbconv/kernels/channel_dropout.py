"""Channel dropout kernel: every element of a channel times that channel's mask value.

``x`` and ``y`` are (P, S): ``P`` channels (the flattened ``(n, c)`` pairs) of ``S`` elements
each; ``m`` is (P,).  C-contiguous float32/float64, validated by
:mod:`nbconv.functional.channel_dropout`.  The same kernel is the backward pass (``dy`` times
the mask).  ``y = x * m`` for every mask value, so a dropped NaN or inf stays NaN (PyTorch).
"""

from __future__ import annotations

from numba import njit, prange

from .. import _config

__all__ = ["_channel_mul", "_channel_mul_serial"]


@njit(**_config.JIT_OPTIONS)
def _channel_mul_rows(x, m, y, p0, p1):
    """Channels ``p0:p1`` (serial helper)."""
    S = x.shape[1]
    for p in range(p0, p1):
        g = m[p]
        for t in range(S):
            y[p, t] = x[p, t] * g


@njit(parallel=True, **_config.JIT_OPTIONS)
def _channel_mul(x, m, y, nblocks):
    """``y[p, :] = x[p, :] * m[p]``, ``prange`` over ``nblocks`` blocks of whole channels (a
    channel of a late CNN layer can be a single element: no per-channel tasks)."""
    P = x.shape[0]
    for b in prange(nblocks):
        _channel_mul_rows(x, m, y, b * P // nblocks, (b + 1) * P // nblocks)


@njit(**_config.JIT_OPTIONS)
def _channel_mul_serial(x, m, y, nblocks):
    """:func:`_channel_mul` on the calling thread (small inputs; ``nblocks`` unused)."""
    _channel_mul_rows(x, m, y, 0, x.shape[0])

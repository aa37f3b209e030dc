"""Device loss values and gradients (cross-entropy, squared and absolute error)."""

from __future__ import annotations

import numpy as np

from .._dispatch import implements
from ._plumbing import _as_numba, _block, _dev, _empty, _flat, _grid, _kernels
from .activation import log_softmax


@implements
def cross_entropy(logits, target, op="CrossEntropyLoss"):
    """Device half of cross-entropy: ``logp = log_softmax(logits)`` stays on the device, the
    per-row losses ``-logp[n, target[n]]`` come back as one float64 host vector.

    Returns
    -------
    rows : ndarray, shape (N,), float64, on the host
    logp : device array, shape (N, C), logits' dtype
    target : device array, shape (N,), integer
    """
    logits = _dev(op, "logits", logits)
    if logits.ndim != 2:
        raise ValueError(f"{op}: argument 'logits' must be 2-D (N, C), got shape "
                         f"{tuple(logits.shape)}")
    t = _as_numba(op, "target", target)
    N, C = tuple(logits.shape)
    if np.dtype(t.dtype).kind not in "iu" or tuple(t.shape) != (N,):
        raise ValueError(
            f"{op}: argument 'target' must be integer labels of shape ({N},), got dtype "
            f"{t.dtype} shape {tuple(t.shape)}")
    logp = log_softmax(logits, axis=1)
    rows = _empty((N,), np.float64)
    if N:
        _kernels("_losses")._cross_entropy_rows[_grid(N)](logp, t, rows)
    rows = rows.copy_to_host()
    if np.isnan(rows).any():  # a bad label, or NaN logits: only then look at the labels
        th = t.copy_to_host()
        if th.min() < 0 or th.max() >= C:
            raise ValueError(f"{op}: argument 'target' has labels outside [0, {C}): min "
                             f"{th.min()}, max {th.max()}")
    return rows, logp, t


@implements
def cross_entropy_backward(logp, target, scale):
    """``(softmax - one_hot(target)) * scale`` as a new device array shaped like ``logp``."""
    d = _empty(logp.shape, logp.dtype)
    if d.size:
        _kernels("_losses")._cross_entropy_bwd[_grid(d.size)](logp, target, float(scale), d)
    return d


#: ``kind`` of the elementwise losses: the per-element value summed by ``_sum_partials``.
LOSS_KINDS = {"square": 0, "abs": 1}


@implements
def elementwise_loss(pred, target, kind, op):
    """``(sum of f(pred - target), pred - target)``: the sum as a Python float (one copy of
    the per-block partial sums to the host), the difference as a device array.

    ``f`` is the square (``kind="square"``, MSE) or the absolute value (``kind="abs"``, L1).
    """
    pred = _dev(op, "pred", pred)
    target = _dev(op, "target", target, pred.dtype)
    if tuple(pred.shape) != tuple(target.shape):
        raise ValueError(f"{op}: arguments 'pred' {tuple(pred.shape)} and 'target' "
                         f"{tuple(target.shape)} must have the same shape")
    diff = _empty(pred.shape, pred.dtype)
    n = diff.size
    if n == 0:
        return 0.0, diff
    k = _kernels("_losses")
    k._sub[_grid(n)](_flat(pred), _flat(target), _flat(diff))
    blocks = min(_grid(n)[0], 1024)
    partial = _empty((blocks,), np.float64)
    k._sum_partials[blocks, _block()](_flat(diff), LOSS_KINDS[kind], partial)
    return float(np.sum(partial.copy_to_host())), diff


@implements
def elementwise_loss_backward(diff, c, kind):
    """``c * diff`` (square) or ``c * sign(diff)`` (abs) as a new device array."""
    d = _empty(diff.shape, diff.dtype)
    if d.size:
        name = "_mse_bwd" if kind == "square" else "_l1_bwd"
        getattr(_kernels("_losses"), name)[_grid(d.size)](_flat(diff), float(c), _flat(d))
    return d

"""CUDA twins of :mod:`nbconv.kernels.optim`: the fused SGD and Adam updates.

Same names, arguments and arithmetic as the CPU kernels; arrays are flat C-contiguous device
arrays of one dtype, scalars Python floats and bools.  One grid-stride pass per parameter, each
element owned by one thread (no races, no reductions).
"""

from __future__ import annotations

import math

from .._target import cuda

__all__ = ["_sgd_step", "_adam_step"]


@cuda.jit
def _sgd_step(p, g, buf, lr, momentum, dampening, weight_decay, nesterov,
              first):  # pragma: no cover
    """``p -= lr * d`` with PyTorch's SGD direction ``d``; ``buf`` is the momentum buffer
    (ignored when ``momentum == 0``; initialised to the gradient when ``first``)."""
    start, step = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, p.shape[0], step):
        d = g[i] + weight_decay * p[i] if weight_decay != 0.0 else g[i]  # 0 * inf is NaN
        if momentum != 0.0:
            if first:
                b = d
            else:
                b = momentum * buf[i] + (1.0 - dampening) * d
            buf[i] = b
            d = d + momentum * b if nesterov else b
        p[i] -= lr * d


@cuda.jit
def _adam_step(p, g, m, v, lr, beta1, beta2, eps, weight_decay, bc1, bc2):  # pragma: no cover
    """Adam with bias corrections ``bc1 = 1 - beta1**t``, ``bc2 = 1 - beta2**t`` (PyTorch)."""
    step_size = lr / bc1
    root_bc2 = math.sqrt(bc2)
    start, step = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, p.shape[0], step):
        d = g[i] + weight_decay * p[i] if weight_decay != 0.0 else g[i]  # 0 * inf is NaN
        mi = beta1 * m[i] + (1.0 - beta1) * d
        vi = beta2 * v[i] + (1.0 - beta2) * d * d
        m[i] = mi
        v[i] = vi
        p[i] -= step_size * mi / (math.sqrt(vi) / root_bc2 + eps)

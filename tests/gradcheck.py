"""Finite-difference gradient checks (Chainer's ``check_backward``), independent of nbconv.

For a scalar loss ``L(inputs) = <f(*inputs), dy>`` and the gradients ``grads`` claimed by a
backward pass, compare the directional derivative along a random direction ``v`` computed two
ways: analytically ``sum_i <grads[i], v[i]>`` and by central differences
``(L(x + eps v) - L(x - eps v)) / (2 eps)``.  Run it in float64.
"""

from __future__ import annotations

import numpy as np


def directional_check(f, inputs, dy, grads, *, eps=1e-6, rtol=1e-6, atol=1e-9, seed=0):
    """Assert that ``grads`` (one per input, ``None`` to skip) match ``f`` by finite differences.

    Parameters
    ----------
    f : callable
        ``f(*inputs) -> ndarray``; must be deterministic.
    inputs : list of ndarray (float64)
    dy : ndarray
        Upstream gradient, same shape as ``f(*inputs)``.
    grads : list of ndarray or None
        The claimed gradients of ``<f(*inputs), dy>`` with respect to each input.
    """
    rng = np.random.default_rng(seed)
    inputs = [np.asarray(a, dtype=np.float64) for a in inputs]
    dirs = [None if g is None else rng.standard_normal(a.shape) for a, g in zip(inputs, grads)]
    analytic = sum(float(np.sum(g * v)) for g, v in zip(grads, dirs) if g is not None)

    def loss(sign):
        moved = [a if v is None else a + sign * eps * v for a, v in zip(inputs, dirs)]
        return float(np.sum(np.asarray(f(*moved), dtype=np.float64) * dy))

    numeric = (loss(+1) - loss(-1)) / (2 * eps)
    scale = max(abs(analytic), abs(numeric), 1.0)
    err = abs(analytic - numeric)
    assert err <= rtol * scale + atol, (
        f"directional derivative mismatch: analytic {analytic!r} vs numeric {numeric!r} "
        f"(relative error {err / scale:.3e})"
    )
    return analytic, numeric

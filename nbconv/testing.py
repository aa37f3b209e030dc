"""Tools for people who write their own layers: a finite-difference gradient checker.

Every backward in nbconv is written by hand: a layer's, a functional op's, or the walk of a
PyTorch-style module's recorded forward over them.  :func:`gradcheck` tells whether one is
right, for any module (with or without its own ``backward``) or function.
"""

from __future__ import annotations

import copy

import numpy as np

__all__ = ["gradcheck", "GradcheckError"]


class GradcheckError(AssertionError):
    """A backward pass that disagrees with finite differences (the message lists each
    input and parameter that failed, with both numbers)."""


def gradcheck(layer_or_fn, inputs, backward=None, *, dy=None, eps=1e-6, rtol=1e-6,
              atol=1e-8, seed=0, raise_exception=True) -> bool:
    """Check a backward pass against float64 central differences along random directions.

    For the scalar ``L = sum(forward(*inputs) * dy)`` (``dy`` random unless given), and for
    each floating input and each parameter ``a`` separately, the directional derivative along
    a random direction ``v`` is computed twice: from the backward pass, ``sum(grad_a * v)``,
    and numerically, ``(L(a + eps v) - L(a - eps v)) / (2 eps)``.  They must agree to
    ``atol + rtol * max(|analytic|, |numeric|)``.  Everything runs in float64 on copies: the
    layer and the inputs given are not modified.

    For a ``Module`` the check also fails when the forward pass is not deterministic (dropout
    in training mode: call ``.eval()`` or give it a fixed ``rng``), when ``backward`` modifies
    ``dy`` in place, or when a second forward/backward does not *add* to the parameter
    gradients (``grad += ...``, which optimizers and fan-out in ``Graph`` rely on).

    Parameters
    ----------
    layer_or_fn : nbconv.nn.Module or callable
        A module (``forward(*inputs) -> y``, ``backward(dy) -> dx``, or a tuple of one
        gradient per input; its parameters are checked too), or a function
        ``fn(*inputs) -> y`` whose gradients ``backward`` gives.
    inputs : ndarray or tuple
        The arguments of the forward pass.  Floating arrays are checked; anything else (int
        labels, sizes, flags) is passed through unchanged.
    backward : callable, optional
        Only with a function: ``backward(dy, *inputs)`` returning the gradient of each input
        (a tuple aligned with ``inputs``, ``None`` for those without one, trailing ones may
        be left out; or a single array for a single input).  E.g.
        ``lambda dy, x, w, b: nbconv.conv2d_backward(dy, x, w)``.
    dy : ndarray, optional
        The upstream gradient, shape of the output; standard normal by default.
    eps, rtol, atol : float
        Step and tolerances (float64 central differences are good to ~1e-9 here).
    seed : int
        Of ``dy`` and the directions.
    raise_exception : bool
        Raise :class:`GradcheckError` on failure (default) instead of returning False.

    Returns
    -------
    bool
        True when every check passes.

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> from nbconv.testing import gradcheck
    >>> x = np.random.default_rng(0).standard_normal((2, 3, 6, 6))
    >>> gradcheck(nc.nn.Conv2d(3, 4, 3, padding=1), x)
    True
    >>> w = np.ones((4, 3, 3, 3))
    >>> gradcheck(nc.conv2d, (x, w), lambda dy, x, w: nc.conv2d_backward(dy, x, w)[:2])
    True
    """
    from .nn.module import Module, no_grad

    rng = np.random.default_rng(seed)
    args = list(inputs) if isinstance(inputs, (tuple, list)) else [inputs]
    checked = [i for i, a in enumerate(args) if _is_float_array(a)]
    args = [np.array(a, dtype=np.float64) if i in checked else a for i, a in enumerate(args)]
    is_module = isinstance(layer_or_fn, Module)
    if is_module:
        if backward is not None:
            raise TypeError("gradcheck: argument 'backward' is for functions; a Module brings "
                            "its own backward")
        model = copy.deepcopy(layer_or_fn).astype(np.float64)
        forward = model.forward
        params = list(model.named_parameters())
    else:
        if not callable(layer_or_fn) or not callable(backward):
            raise TypeError("gradcheck: pass a Module, or a function and its 'backward' "
                            "(backward(dy, *inputs) -> one gradient per input)")
        model, forward, params = None, layer_or_fn, []
    name = type(layer_or_fn).__name__ if is_module else getattr(layer_or_fn, "__name__", "fn")

    y = forward(*args)
    if not _is_float_array(y):
        raise TypeError(f"gradcheck: {name} must return one floating ndarray, got "
                        f"{type(y).__name__}")
    g = (rng.standard_normal(np.shape(y)) if dy is None
         else np.array(dy, dtype=np.float64))
    if g.shape != np.shape(y):
        raise ValueError(f"gradcheck: argument 'dy' has shape {g.shape}, the output has shape "
                         f"{np.shape(y)}")
    failures = []

    def loss(*a):
        if is_module:
            with no_grad():
                out = forward(*a)
        else:
            out = forward(*a)
        return float(np.sum(np.asarray(out, dtype=np.float64) * g))

    if is_module:
        if loss(*args) != loss(*args):
            failures.append("the forward pass is not deterministic (dropout in training "
                            "mode? call .eval() or give it a fixed rng)")
        model.zero_grad()
        forward(*args)
        g_seen = g.copy()
        grads = model.backward(g_seen)
        if not np.array_equal(g_seen, g):
            failures.append("backward modified its argument dy in place")
        first = {k: np.array(p.grad) for k, p in params}
        forward(*args)
        model.backward(g.copy())
        for k, p in params:
            if not np.allclose(p.grad, 2 * first[k], rtol=1e-9, atol=1e-12):
                failures.append(f"parameter {k!r}: a second backward pass did not add to "
                                "its gradient (accumulate with grad += ..., never grad = ...)")
        forward(*args)  # leave the caches as after one pass
    else:
        grads = backward(g, *args)
    grads = list(grads) if isinstance(grads, (tuple, list)) else [grads]
    if len(args) == 1 and len(grads) != 1:
        grads = [grads[0]]
    if len(grads) > len(args):
        failures.append(f"backward returned {len(grads)} gradients for {len(args)} inputs")
    grads = (grads + [None] * len(args))[: len(args)]  # missing trailing ones: not checked
    if not params and all(grads[i] is None for i in checked):
        failures.append("nothing to check: no floating input has a gradient and there are "
                        "no parameters")

    def compare(what, analytic, shift):
        numeric = (shift(+eps) - shift(-eps)) / (2 * eps)
        err = abs(analytic - numeric)
        scale = max(abs(analytic), abs(numeric))
        if not err <= atol + rtol * scale:  # also catches NaN
            failures.append(f"{what}: backward gives {analytic:.10g}, finite differences "
                            f"{numeric:.10g} (relative error {err / max(scale, 1e-300):.2e})")

    for i in checked:
        if grads[i] is None:
            continue
        gi = np.asarray(grads[i], dtype=np.float64)
        if gi.shape != args[i].shape:
            failures.append(f"input {i}: gradient has shape {gi.shape}, the input "
                            f"{args[i].shape}")
            continue
        v = rng.standard_normal(args[i].shape)

        def shift(h, i=i, v=v):
            moved = list(args)
            moved[i] = args[i] + h * v
            return loss(*moved)

        compare(f"input {i} (shape {args[i].shape})", float(np.sum(gi * v)), shift)
    for k, p in params:
        v = rng.standard_normal(p.data.shape)
        keep = p.data.copy()

        def shift(h, p=p, v=v, keep=keep):
            p.data[...] = keep + h * v
            try:
                return loss(*args)
            finally:
                p.data[...] = keep

        compare(f"parameter {k!r} (shape {p.data.shape})", float(np.sum(first[k] * v)), shift)
    if failures:
        if raise_exception:
            raise GradcheckError(f"gradcheck of {name} failed:\n  " + "\n  ".join(failures))
        return False
    return True


def _is_float_array(a) -> bool:
    return isinstance(a, np.ndarray) and a.dtype.kind == "f"

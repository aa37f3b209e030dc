"""Gradient clipping with PyTorch's names and semantics (``torch.nn.utils``).

Call these between the backward pass and ``optimizer.step()``.  They act on the gradients of
the parameters with ``requires_grad`` (a frozen parameter has no gradient in PyTorch), on the
host (a parameter on a CUDA device raises TypeError).

>>> import numpy as np, nbconv as nc
>>> fc = nc.nn.Linear(3, 2)
>>> fc.weight.grad[...] = 3.0
>>> fc.bias.grad[...] = 4.0
>>> total = nc.nn.utils.clip_grad_norm_(fc.parameters(), max_norm=1.0)
>>> round(float(total), 4), round(float(np.sqrt((fc.weight.grad**2).sum()
...                                              + (fc.bias.grad**2).sum())), 4)
(9.2736, 1.0)
"""

from __future__ import annotations

import math

import numpy as np

from .._checks import check_real
from .module import Module, Parameter

__all__ = ["clip_grad_norm_", "clip_grad_value_", "get_total_norm", "clip_grads_with_norm_",
           "parameters_to_vector", "vector_to_parameters"]


def _parameters(op: str, parameters) -> list:
    if isinstance(parameters, Parameter):
        return [parameters]
    if isinstance(parameters, Module):
        raise TypeError(f"{op}: argument 'parameters' is a {type(parameters).__name__} module; "
                        "pass model.parameters()")
    if isinstance(parameters, (np.ndarray, str, bytes)) or not hasattr(parameters, "__iter__"):
        raise TypeError(f"{op}: argument 'parameters' must be a Parameter or an iterable of "
                        f"them, got {type(parameters).__name__}")
    out = list(parameters)
    for i, p in enumerate(out):
        if not isinstance(p, Parameter):
            raise TypeError(f"{op}: argument 'parameters' must hold nbconv Parameters; item {i} "
                            f"is a {type(p).__name__}")
    return out


def _grads(op: str, params) -> list[np.ndarray]:
    grads = [p.grad for p in params if p.requires_grad]
    for g in grads:
        if type(g) is not np.ndarray:
            raise TypeError(f"{op}: gradients on a CUDA device are not supported; move the "
                            "model to the host (nbconv.cuda.to_host)")
    return grads


def _norm_type(op: str, norm_type) -> float:
    if isinstance(norm_type, str):
        try:
            norm_type = float(norm_type)  # PyTorch accepts "inf"
        except ValueError:
            raise ValueError(f"{op}: argument 'norm_type' must be a number or 'inf', got "
                             f"{norm_type!r}") from None
    return check_real(op, "norm_type", norm_type, finite=False)


def _vector_norm(a: np.ndarray, p: float):
    """``torch.linalg.vector_norm(a, p)`` of a flat array (in its dtype)."""
    a = np.abs(a.reshape(-1))
    if p == math.inf:
        return a.max() if a.size else a.dtype.type(0)
    if p == -math.inf:
        return a.min() if a.size else a.dtype.type(math.inf)
    if p == 0:
        return a.dtype.type(np.count_nonzero(a))
    if p == 1:
        return a.sum(dtype=a.dtype)
    if p == 2:
        return np.sqrt(np.dot(a, a)) if a.size else a.dtype.type(0)
    return (a ** a.dtype.type(p)).sum(dtype=a.dtype) ** a.dtype.type(1.0 / p)


def get_total_norm(tensors, norm_type: float = 2.0, error_if_nonfinite: bool = False,
                   foreach=None):
    """The ``norm_type`` norm of all ``tensors`` together, as if concatenated into one vector.

    Parameters
    ----------
    tensors : ndarray or iterable of ndarrays (e.g. the gradients)
    norm_type : float or "inf", default 2
    error_if_nonfinite : bool, default False
        Raise RuntimeError (as PyTorch) when the norm is NaN or infinite.
    foreach : None
        Accepted for PyTorch's signature.

    Returns
    -------
    NumPy scalar
        In the tensors' dtype (float32 ``0.0`` for no tensors, like PyTorch's default).

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> float(nc.nn.utils.get_total_norm([np.array([3.0]), np.array([4.0])]))
    5.0
    """
    op = "get_total_norm"
    p = _norm_type(op, norm_type)
    arrays = [tensors] if isinstance(tensors, np.ndarray) else list(tensors)
    arrays = [np.asarray(t) for t in arrays]
    if not arrays:
        return np.float32(0.0)
    dtype = np.result_type(*arrays)
    if dtype.kind != "f":
        dtype = np.dtype(np.float32)
    norms = np.array([_vector_norm(t.astype(dtype, copy=False), p) for t in arrays], dtype)
    total = dtype.type(_vector_norm(norms, p))
    if error_if_nonfinite and not np.isfinite(total):
        raise RuntimeError(f"{op}: the total norm of order {p} of the gradients is "
                           f"non-finite ({total}), so it cannot be clipped; pass "
                           "error_if_nonfinite=False to scale the gradients by it anyway")
    return total


def clip_grads_with_norm_(parameters, max_norm: float, total_norm, foreach=None) -> None:
    """Scale the gradients by ``min(max_norm / (total_norm + 1e-6), 1)`` in place (always
    multiplied, as PyTorch does: a NaN or infinite norm turns the gradients into NaN or 0).

    Parameters
    ----------
    parameters : Parameter or iterable of Parameters
    max_norm : float
        >= 0 (may be inf).
    total_norm : float
        E.g. :func:`get_total_norm` of the gradients.
    foreach : None
        Accepted for PyTorch's signature.
    """
    op = "clip_grads_with_norm_"
    params = _parameters(op, parameters)
    max_norm = check_real(op, "max_norm", max_norm, 0.0, finite=False)
    grads = _grads(op, params)
    for g in grads:
        t = g.dtype.type
        # in the norm's precision, as PyTorch's tensor arithmetic
        coef = np.minimum(t(max_norm) / (t(total_norm) + t(1e-6)), t(1.0))
        with np.errstate(invalid="ignore"):  # inf * 0 -> NaN, as in PyTorch
            np.multiply(g, coef, out=g)


def clip_grad_norm_(parameters, max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False, foreach=None):
    """Scale the gradients in place so that their total norm is at most ``max_norm``.

    The norm is taken over all gradients together, as if concatenated into one vector; the
    gradients are multiplied by ``min(max_norm / (total_norm + 1e-6), 1)``.

    Parameters
    ----------
    parameters : Parameter or iterable of Parameters (e.g. ``model.parameters()``)
        Those with ``requires_grad = False`` are left out.
    max_norm : float
        >= 0 (may be inf: only measure the norm).
    norm_type : float or "inf", default 2
    error_if_nonfinite : bool, default False
        Raise RuntimeError (as PyTorch) instead of clipping when the norm is NaN or infinite.
    foreach : None
        Accepted for PyTorch's signature.

    Returns
    -------
    NumPy scalar
        The total norm before clipping, in the gradients' dtype.

    Examples
    --------
    See the module's example.
    """
    op = "clip_grad_norm_"
    params = _parameters(op, parameters)
    max_norm = check_real(op, "max_norm", max_norm, 0.0, finite=False)
    p = _norm_type(op, norm_type)
    total = get_total_norm(_grads(op, params), p, error_if_nonfinite)
    clip_grads_with_norm_(params, max_norm, total)
    return total


def clip_grad_value_(parameters, clip_value: float, foreach=None) -> None:
    """Clip every gradient element to [-clip_value, clip_value] in place (NaN stays NaN).

    Parameters
    ----------
    parameters : Parameter or iterable of Parameters
        Those with ``requires_grad = False`` are left out.
    clip_value : float
        >= 0 (PyTorch does not check; a negative value would set every element to it).
    foreach : None
        Accepted for PyTorch's signature.

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> fc = nc.nn.Linear(2, 1)
    >>> fc.weight.grad[...] = [[-5.0, 0.5]]
    >>> nc.nn.utils.clip_grad_value_(fc.parameters(), 1.0)
    >>> fc.weight.grad
    array([[-1. ,  0.5]], dtype=float32)
    """
    op = "clip_grad_value_"
    params = _parameters(op, parameters)
    c = check_real(op, "clip_value", clip_value, 0.0, finite=False)
    for g in _grads(op, params):
        t = g.dtype.type
        np.clip(g, t(-c), t(c), out=g)


def parameters_to_vector(parameters) -> np.ndarray:
    """The parameters' values flattened and concatenated into one vector.

    Examples
    --------
    >>> import nbconv as nc
    >>> nc.nn.utils.parameters_to_vector(nc.nn.Linear(3, 2).parameters()).shape
    (8,)
    """
    params = _parameters("parameters_to_vector", parameters)
    return np.concatenate([np.asarray(p.data).reshape(-1) for p in params]) if params else \
        np.zeros(0, np.float32)


def vector_to_parameters(vec, parameters) -> None:
    """Copy consecutive slices of the 1-D ``vec`` into the parameters' values (in place).

    Raises
    ------
    ValueError
        ``vec`` is not 1-D or its length is not the parameters' total size.
    """
    op = "vector_to_parameters"
    params = _parameters(op, parameters)
    vec = np.asarray(vec)
    n = sum(int(np.prod(p.shape)) for p in params)
    if vec.ndim != 1 or vec.size != n:
        raise ValueError(f"{op}: argument 'vec' must be 1-D with {n} elements (the parameters' "
                         f"total size), got shape {vec.shape}")
    start = 0
    for p in params:
        k = int(np.prod(p.shape))
        p.data[...] = vec[start:start + k].reshape(p.shape)
        start += k

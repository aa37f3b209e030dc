"""Joining and flattening arrays with PyTorch's names: ``cat`` and ``flatten``.

On plain arrays they are ``numpy.concatenate`` and ``reshape``; given recorded arrays (inside a
PyTorch-style ``forward``) the call is recorded with its backward, as every functional op.
"""

from __future__ import annotations

import math

import numpy as np

from .. import _dispatch
from .._checks import check_int

__all__ = ["cat", "flatten"]


def cat(tensors, dim=0, *, axis=None):
    """Concatenate arrays along ``dim`` (``torch.cat``; ``axis`` is accepted as NumPy's name).

    Parameters
    ----------
    tensors : sequence of ndarray
        Same shape except along ``dim``; at least one.
    dim : int, default 0
        Negative counts from the end.

    Returns
    -------
    y : ndarray
        ``numpy.concatenate(tensors, axis=dim)``; dtype by NumPy's promotion.

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> nc.cat([np.zeros((2, 3, 4, 4)), np.ones((2, 5, 4, 4))], 1).shape
    (2, 8, 4, 4)
    """
    if axis is not None:
        dim = axis
    dim = check_int("cat", "dim", dim)
    if isinstance(tensors, np.ndarray) or not isinstance(tensors, (list, tuple)):
        raise TypeError(f"cat: argument 'tensors' must be a list or tuple of arrays, got "
                        f"{type(tensors).__name__}")
    if not tensors:
        raise ValueError("cat: argument 'tensors' is empty (at least one array is needed)")
    if any(_dispatch.is_recorded(t) for t in tensors):
        return _dispatch.record("cat", cat, (tensors, dim), {})
    arrays = [np.asarray(t) for t in tensors]
    nd = arrays[0].ndim
    if nd == 0 or any(a.ndim != nd for a in arrays):
        raise ValueError(f"cat: the arrays must have the same number of dimensions (at least "
                         f"1), got shapes {[a.shape for a in arrays]}")
    if not -nd <= dim < nd:
        raise ValueError(f"cat: argument 'dim'={dim} is out of range for {nd}-D arrays")
    d = dim % nd
    if any(a.shape[:d] + a.shape[d + 1:] != arrays[0].shape[:d] + arrays[0].shape[d + 1:]
           for a in arrays):
        raise ValueError(f"cat: the arrays must have the same shape except along dim {dim}, "
                         f"got shapes {[a.shape for a in arrays]}")
    return np.concatenate(arrays, axis=d)


@_dispatch.dispatch
def flatten(x, start_dim=0, end_dim=-1):
    """Flatten dims ``start_dim..end_dim`` into one (``torch.flatten``).

    Parameters
    ----------
    x : ndarray, any shape (a 0-d array counts as 1-d)
    start_dim, end_dim : int
        Inclusive; negative counts from the end.

    Returns
    -------
    y : ndarray
        A view of ``x`` where possible, shape ``x.shape[:s] + (prod,) + x.shape[e+1:]``.

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> nc.flatten(np.zeros((2, 3, 4, 5)), 1).shape
    (2, 60)
    """
    x = np.asarray(x)
    start = check_int("flatten", "start_dim", start_dim)
    end = check_int("flatten", "end_dim", end_dim)
    shape = x.shape or (1,)
    n = len(shape)
    for name, d in (("start_dim", start), ("end_dim", end)):
        if not -n <= d < n:
            raise ValueError(f"flatten: argument '{name}'={d} is out of range for an input of "
                             f"shape {x.shape} (expected a dim in [{-n}, {n - 1}])")
    s, e = start % n, end % n
    if s > e:
        raise ValueError(f"flatten: argument 'start_dim'={start} comes after 'end_dim'={end} "
                         f"for an input of shape {x.shape}")
    return x.reshape(shape[:s] + (math.prod(shape[s:e + 1]),) + shape[e + 1:])

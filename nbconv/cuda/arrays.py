"""The device half of the layers', containers' and optimizers' array arithmetic (``grad += g``,
sums at fan-in, concatenation, copies); :mod:`nbconv.nn._arrays` reaches it through
:data:`nbconv._dispatch.device`."""

from __future__ import annotations

import math

import numpy as np

from .._dispatch import implements
from ._plumbing import (
    _as_numba,
    _copy,
    _empty,
    _fill,
    _flat,
    _grid,
    _is_c_contiguous,
    _kernels,
    _zeros,
)

# Device versions of the NumPy expressions that layers, containers, losses and optimizers
# apply to their arrays (``grad += dw``, ``a + b``, ``np.concatenate``, ...).  They are called
# through the host/device-agnostic helpers of :mod:`nbconv.nn._arrays`, only for device arrays.
# ``op`` and the argument names only label the TypeError raised for a host array.


def _contiguous(op, name, a):
    """``a`` as a C-contiguous numba device array (copied only if strided)."""
    a = _as_numba(op, name, a)
    return a if _is_c_contiguous(a) else _copy(a, a.dtype)


def _same_shape(op, names, a, b):
    if tuple(a.shape) != tuple(b.shape):
        raise ValueError(
            f"{op}: arguments '{names[0]}' {tuple(a.shape)} and '{names[1]}' {tuple(b.shape)} "
            "must have the same shape"
        )


@implements
def empty_like(a):
    """Uninitialised C-contiguous device array with ``a``'s shape and dtype."""
    return _empty(a.shape, a.dtype)


@implements
def zeros(shape, dtype):
    """Device array of zeros."""
    return _zeros(shape, dtype)


@implements
def zero_(a):
    """``a[...] = 0`` in place (``a`` C-contiguous: parameters, gradients, optimizer state)."""
    if not _is_c_contiguous(a):
        raise ValueError(f"zero_: the device array must be contiguous, got shape {tuple(a.shape)}")
    _fill(a.reshape(a.size), 0)
    return a


@implements
def copy(a, op="copy", name="a"):
    """C-contiguous device copy of device array ``a`` (same dtype)."""
    a = _as_numba(op, name, a)
    return _copy(a, a.dtype)


@implements
def astype(a, dtype):
    """C-contiguous device copy of ``a`` cast to ``dtype`` (always a copy, as
    ``ndarray.astype``)."""
    return _copy(a, dtype)


@implements
def reshape(a, shape, op="reshape", name="a"):
    """``a`` viewed with ``shape`` (no copy if ``a`` is C-contiguous; numba's device arrays
    reshape only contiguous data)."""
    return _contiguous(op, name, a).reshape(*(int(s) for s in shape))


@implements
def iadd(a, b, op="iadd", names=("a", "b")):
    """``a += b`` in place on the device (``a`` C-contiguous, ``b`` of the same shape)."""
    b = _contiguous(op, names[1], b)
    _same_shape(op, names, a, b)
    if a.size:
        _kernels("_arrays")._add_inplace[_grid(a.size)](_flat(a), _flat(b))
    return a


@implements
def add(a, b, op="add", names=("a", "b")):
    """``a + b`` as a new device array (same shapes and dtypes)."""
    a = _contiguous(op, names[0], a)
    b = _contiguous(op, names[1], b)
    _same_shape(op, names, a, b)
    out = _empty(a.shape, a.dtype)
    if a.size:
        _kernels("_arrays")._add[_grid(a.size)](_flat(a), _flat(b), _flat(out))
    return out


@implements
def increment(a, v=1):
    """``a += v`` for every element of the C-contiguous device array ``a`` (0-d counters)."""
    if a.size:
        flat = a.reshape(a.size)
        _kernels("_arrays")._add_scalar[_grid(a.size)](flat, np.dtype(a.dtype).type(v))
    return a


def _slabs(a, axis):
    """``a`` (C-contiguous) viewed as (before ``axis``, along ``axis``, after ``axis``)."""
    s = tuple(a.shape)
    return a.reshape(math.prod(s[:axis]), s[axis], math.prod(s[axis + 1:]))


@implements
def concat(xs, axis, op="concat"):
    """``numpy.concatenate(xs, axis)`` for device arrays of one dtype."""
    xs = [_contiguous(op, f"inputs[{i}]", x) for i, x in enumerate(xs)]
    first = tuple(xs[0].shape)
    axis = axis % len(first)
    for i, x in enumerate(xs):
        s = tuple(x.shape)
        if len(s) != len(first) or s[:axis] + s[axis + 1:] != first[:axis] + first[axis + 1:]:
            raise ValueError(
                f"{op}: input {i} has shape {s}, which does not match input 0 {first} "
                f"outside axis {axis}"
            )
    dtypes = {np.dtype(x.dtype) for x in xs}
    if len(dtypes) != 1:
        raise TypeError(f"{op}: inputs have different dtypes {sorted(map(str, dtypes))}")
    total = sum(int(x.shape[axis]) for x in xs)
    out = _empty(first[:axis] + (total,) + first[axis + 1:], xs[0].dtype)
    o3 = _slabs(out, axis)
    off = 0
    for x in xs:
        c = int(x.shape[axis])
        if x.size:
            _kernels("_arrays")._slab_copy[_grid(x.size)](_slabs(x, axis), o3, 0, off, c)
        off += c
    return out


@implements
def split(a, sizes, axis, op="split", name="dy"):
    """Split ``a`` along ``axis`` into C-contiguous pieces of ``sizes`` (the inverse of
    :func:`concat`)."""
    a = _contiguous(op, name, a)
    shape = tuple(a.shape)
    axis = axis % len(shape)
    if sum(sizes) != shape[axis]:
        raise ValueError(
            f"{op}: argument '{name}' has size {shape[axis]} along axis {axis}, the pieces "
            f"{list(sizes)} add up to {sum(sizes)}"
        )
    a3 = _slabs(a, axis)
    parts, off = [], 0
    for c in sizes:
        p = _empty(shape[:axis] + (int(c),) + shape[axis + 1:], a.dtype)
        if p.size:
            _kernels("_arrays")._slab_copy[_grid(p.size)](a3, _slabs(p, axis), off, 0, int(c))
        parts.append(p)
        off += int(c)
    return parts



@implements
def optim_kernel(name, size):
    """The ``@cuda.jit`` twin of the fused optimizer kernel ``name``, configured for ``size``
    parameters (:mod:`nbconv.cuda.kernels.optim`)."""
    return getattr(_kernels("optim"), name)[_grid(size)]

"""Array arithmetic of layers, containers, losses and optimizers for host and device arrays.

Each helper keeps the NumPy expression it replaces for ``numpy.ndarray`` arguments (one
``type(a) is ndarray`` test is all it adds on the host) and otherwise calls its device half in
the device room (:mod:`nbconv.cuda.arrays`, reached through :data:`nbconv._dispatch.device`), which
launches a small ``@cuda.jit`` kernel: gradients accumulate on the device, with no copies
through the host.
"""

from __future__ import annotations

import numba
import numpy as np

from .. import _config
from .._dispatch import device, is_device_array

__all__ = ["accumulate", "zero_", "copy", "add", "zeros", "reshape", "concat", "split",
           "increment", "host_copy", "assign", "astype", "empty_like", "zeros_like",
           "is_device_array"]

_ndarray = np.ndarray


def accumulate(grad, g, op="backward", names=("grad", "g")):
    """``grad += g`` in place (parameter gradients)."""
    if type(grad) is _ndarray:
        grad += g
    else:
        device.iadd(grad, g, op, names)


def zero_(a):
    """``a[...] = 0`` in place (on every thread for large contiguous host arrays)."""
    if type(a) is _ndarray:
        if a.size >= _config.SERIAL_BELOW and a.flags.c_contiguous:
            from ..kernels.optim import _zero_parallel

            _zero_parallel(a.reshape(-1), 4 * numba.get_num_threads())
        else:
            a[...] = 0
    else:
        device.zero_(a)


def copy(a, op="copy", name="x"):
    """A copy of ``a`` (``numpy.array(a, copy=True)`` on the host)."""
    if is_device_array(a):
        return device.copy(a, op, name)
    return np.array(a, copy=True)


def add(a, b, op="add", names=("a", "b")):
    """``a + b`` as a new array."""
    if type(a) is _ndarray and type(b) is _ndarray:
        return a + b
    return device.add(a, b, op, names)


def zeros(shape, dtype, like):
    """Zeros on the side (host or device) where ``like`` lives."""
    if is_device_array(like):
        return device.zeros(shape, dtype)
    return np.zeros(shape, dtype)


def empty_like(a):
    """``numpy.empty_like(a)`` on either side."""
    if type(a) is _ndarray:
        return np.empty_like(a)
    return device.empty_like(a)


def zeros_like(a):
    """``numpy.zeros_like(a)`` on either side."""
    if type(a) is _ndarray:
        return np.zeros_like(a)
    return device.zeros(a.shape, a.dtype)


def astype(a, dtype):
    """``a.astype(dtype)`` (a copy) on either side."""
    if type(a) is _ndarray:
        return a.astype(dtype)
    return device.astype(a, dtype)


def reshape(a, shape, op="reshape", name="x"):
    """``a.reshape(shape)`` (``shape`` without -1 on the device)."""
    if is_device_array(a):
        return device.reshape(a, shape, op, name)
    return np.asarray(a).reshape(shape)


def concat(xs, axis, op="Concat"):
    """``numpy.concatenate(xs, axis)``; on the device if any input is there (then all must
    be)."""
    if any(is_device_array(x) for x in xs):
        return device.concat(xs, axis, op)
    return np.concatenate(xs, axis=axis)


def split(a, sizes, axis, op="Concat.backward", name="dy"):
    """Split ``a`` along ``axis`` into contiguous pieces of the given sizes."""
    if is_device_array(a):
        return tuple(device.split(a, sizes, axis, op, name))
    cuts = np.cumsum(sizes)[:-1]
    return tuple(np.ascontiguousarray(p) for p in np.split(a, cuts, axis=axis))


def increment(a, v=1):
    """``a[...] += v`` in place (step counters such as batch norm's num_batches_tracked)."""
    if type(a) is _ndarray:
        a[...] += v
    else:
        device.increment(a, v)


def host_copy(a):
    """A host ``numpy.ndarray`` copy of ``a`` (device arrays are copied to the host)."""
    if is_device_array(a):
        return device.to_host(a)
    return np.array(a, copy=True)


def assign(dst, value):
    """``dst[...] = value`` in place; ``value`` may live on the host or the device."""
    if type(dst) is _ndarray:
        if is_device_array(value):
            value = host_copy(value)
        dst[...] = value
        return
    if is_device_array(value):
        value = host_copy(value)  # a state dict is small; keep one code path
    # A fresh array, not ascontiguousarray(broadcast_to(...)): that keeps a zero stride on a
    # length-1 axis (a (6, 1, 5, 5) conv weight), which the simulator's copy drops as a
    # broadcast axis and then refuses the shape.
    host = np.empty(tuple(dst.shape), dst.dtype)
    host[...] = value
    dst.copy_to_device(host)

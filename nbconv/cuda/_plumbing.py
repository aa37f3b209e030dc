"""Device plumbing shared by the device ops: the CUDA target, kernel modules and launch
shapes, device allocation, casts and copies, the device counterpart of
:func:`nbconv._checks.as_float_array`."""

from __future__ import annotations

import numpy as np

from .._dispatch import is_device_array


def _cuda():
    from ._target import cuda

    return cuda


def _kernels(name):
    import importlib

    return importlib.import_module(f"nbconv.cuda.kernels.{name}")


def _grid(n):
    from .kernels import grid

    return grid(n)


def _block():
    from .kernels import block

    return block()


def _empty(shape, dtype):
    return _cuda().device_array(tuple(int(s) for s in shape), dtype=np.dtype(dtype))


def _fill(a, v):
    """``a[...] = v`` on the device (``a`` C-contiguous)."""
    if a.size:
        _kernels("_copy")._fill[_grid(min(a.size, 1 << 20))](a.reshape(a.size), a.dtype.type(v))
    return a


def _zeros(shape, dtype):
    return _fill(_empty(shape, dtype), 0)


def _is_c_contiguous(a) -> bool:
    f = getattr(a, "is_c_contiguous", None)
    return bool(f()) if f is not None else bool(a.flags["C_CONTIGUOUS"])


def _copy(a, dtype):
    """C-contiguous device copy of device array ``a`` cast to ``dtype``."""
    out = _empty(a.shape, dtype)
    if a.size == 0:
        return out
    if a.ndim == 0:
        src, dst = a.reshape(1), out.reshape(1)
    else:
        src, dst = a, out
    kern = _kernels("_copy").COPY.get(src.ndim)
    if kern is None:
        raise TypeError(
            f"nbconv: non-contiguous or cast device arrays with {a.ndim} > 5 dimensions are not "
            "supported; pass a C-contiguous float32/float64 array"
        )
    kern[_grid(a.size)](src, dst)
    return out


def _as_numba(op, name, a):
    """``a`` as a numba device array (zero-copy view of a foreign CUDA array)."""
    if not is_device_array(a):
        what = "a host array" if isinstance(a, np.ndarray) else f"a {type(a).__name__}"
        raise TypeError(
            f"{op}: argument '{name}' is {what} but other inputs are CUDA device arrays; "
            "move it with nbconv.cuda.to_device (a model: nbconv.cuda.to_device(model)), or "
            "everything with nbconv.cuda.to_host"
        )
    if hasattr(a, "_numba_type_") or type(a).__name__ == "FakeCUDAArray":
        return a
    return _cuda().as_cuda_array(a)


def _dev(op, name, a, dtype=None):
    """The device counterpart of ``nbconv._checks.as_float_array``."""
    a = _as_numba(op, name, a)
    dt = np.dtype(a.dtype)
    kind = dt.kind
    if kind == "c":
        raise TypeError(f"{op}: argument '{name}' is complex ({dt}); nbconv ops are real")
    if kind == "f" and dt.itemsize < 4:
        raise TypeError(
            f"{op}: argument '{name}' has dtype {dt}; use float32 or float64 "
            "(float16 is not supported)"
        )
    if kind not in "fiub":
        raise TypeError(f"{op}: argument '{name}' has unsupported dtype {dt}")
    if dtype is None:
        dtype = dt if kind == "f" and dt.itemsize in (4, 8) else np.dtype(np.float32)
        if kind == "f" and dt.itemsize > 8:
            raise TypeError(f"{op}: argument '{name}' has dtype {dt}; use float32/float64")
    dtype = np.dtype(dtype)
    if dt == dtype and _is_c_contiguous(a):
        return a
    return _copy(a, dtype)


def _astype(a, dtype):
    dtype = np.dtype(dtype)
    return a if np.dtype(a.dtype) == dtype else _copy(a, dtype)


def _to_dev(host):
    return _cuda().to_device(np.ascontiguousarray(host))


class _Meta:
    """Shape/ndim/dtype of a device array as plain Python values, for the host helpers (the
    simulator's shapes refuse negative indices)."""

    __slots__ = ("shape", "ndim", "dtype")

    def __init__(self, a):
        self.shape = tuple(a.shape)
        self.ndim = len(self.shape)
        self.dtype = np.dtype(a.dtype)


def _zero(dtype):
    return np.dtype(dtype).type(0)


def _flat(a):
    return a.reshape(a.size)

"""GPU support: move arrays to and from a CUDA device; every functional op then runs there.

Every functional op (``nbconv.conv2d``, ``nbconv.max_pool2d``, … and their ``*_backward``)
accepts CUDA device arrays — numba device arrays, or anything with ``__cuda_array_interface__``
such as CuPy arrays and PyTorch CUDA tensors (viewed without a copy) — and then returns numba
device arrays computed by ``@cuda.jit`` kernels (:mod:`nbconv.kernels.cuda`), without copying the
data through the host.  Passing host and device arrays to the same op raises TypeError.

Without a GPU the same kernels run in numba's CUDA simulator: set ``NUMBA_ENABLE_CUDASIM=1``
in the environment before numba is imported (slow, pure Python; that is how CI tests them).
GPU support needs numba's CUDA target: ``pip install nbconv[cuda]`` installs NVIDIA's
``numba-cuda`` package (numba's built-in ``numba.cuda`` also works while it exists).  Importing
nbconv never imports it.

Tunables (environment, read by :mod:`nbconv._config` and :mod:`nbconv.kernels.cuda`):
``NBCONV_CUDA_BLOCK`` threads per block of the 1-D launches (default 128),
``NBCONV_CUDA_TILE`` edge of the matrix-product tiles (default 16).

Device-specific behaviour:

* ``conv2d``/``conv1d`` use the direct CUDA kernels whatever ``algorithm`` says.
* ``dropout`` draws its mask on the host with the same NumPy ``Generator`` rule as the CPU op
  (the same seed gives the same mask on both) and copies the mask to the device.
* ``max_pool2d_backward`` ignores out-of-range ``indices`` instead of raising.
* ``correlate2d``/``convolve2d`` take float32/float64 device arrays only.
* Reductions (weight and bias gradients, batch-norm statistics) are deterministic: no atomics,
  fixed-order tree reductions, so repeated runs give bit-identical results.

Examples
--------
>>> import numpy as np, nbconv as nc
>>> x = nc.cuda.to_device(np.ones((1, 1, 4, 4), np.float32))  # doctest: +SKIP
>>> w = nc.cuda.to_device(np.ones((1, 1, 3, 3), np.float32))  # doctest: +SKIP
>>> nc.cuda.to_host(nc.conv2d(x, w))[0, 0].tolist()  # doctest: +SKIP
[[9.0, 9.0], [9.0, 9.0]]
"""

from __future__ import annotations

import numpy as np

from .functional._device import is_device_array

__all__ = ["is_available", "is_device_array", "to_device", "to_host", "synchronize"]


def is_available() -> bool:
    """True if CUDA kernels can run here: an NVIDIA GPU with a working driver and numba's CUDA
    target, or numba's simulator (``NUMBA_ENABLE_CUDASIM=1``).  Never raises."""
    try:
        from . import _cuda_target
    except ImportError:
        return False
    return _cuda_target.is_available()


def _target():
    from . import _cuda_target

    return _cuda_target.cuda


def _is_model(obj) -> bool:
    return hasattr(obj, "parameters") and callable(obj.parameters) and hasattr(obj, "backward")


def to_device(obj):
    """Copy host data to the current CUDA device.

    Parameters
    ----------
    obj : array_like, device array, tuple, list or dict of them
        Arrays are made C-contiguous and copied; device arrays are returned unchanged; the
        containers are rebuilt with their elements moved.  Models (``nbconv.nn`` modules) are
        not supported yet: move their inputs and call the functional ops.

    Returns
    -------
    numba device array (or the same kind of container)
    """
    if is_device_array(obj):
        return obj
    if isinstance(obj, (tuple, list)):
        return type(obj)(to_device(o) for o in obj)
    if isinstance(obj, dict):
        return {k: to_device(v) for k, v in obj.items()}
    if _is_model(obj):
        raise NotImplementedError(
            "nbconv.cuda.to_device: moving a model to the GPU is not supported yet; use the "
            "functional ops (nbconv.conv2d, ...) on device arrays"
        )
    if obj is None:
        return None
    return _target().to_device(np.ascontiguousarray(obj))


def to_host(obj):
    """Copy device arrays back to host ``numpy.ndarray`` (the inverse of :func:`to_device`).

    Host arrays are returned unchanged (``numpy.asarray``); tuples, lists and dicts are rebuilt;
    ``None`` stays ``None``.
    """
    if obj is None:
        return None
    if isinstance(obj, (tuple, list)):
        return type(obj)(to_host(o) for o in obj)
    if isinstance(obj, dict):
        return {k: to_host(v) for k, v in obj.items()}
    if is_device_array(obj):
        if not hasattr(obj, "copy_to_host"):
            obj = _target().as_cuda_array(obj)
        return obj.copy_to_host()
    return np.asarray(obj)


def synchronize() -> None:
    """Wait until every launched kernel has finished (for timing)."""
    _target().synchronize()

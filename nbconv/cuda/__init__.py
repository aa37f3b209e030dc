"""GPU support: move arrays and models to and from a CUDA device; the ops then run there.

Every functional op (``nbconv.conv2d``, ``nbconv.max_pool2d``, … and their ``*_backward``)
accepts CUDA device arrays — numba device arrays, or anything with ``__cuda_array_interface__``
such as CuPy arrays and PyTorch CUDA tensors (viewed without a copy) — and then returns numba
device arrays computed by ``@cuda.jit`` kernels (:mod:`nbconv.cuda.kernels`), without copying the
data through the host.  Passing host and device arrays to the same op raises TypeError.

Models: ``nbconv.cuda.to_device(model)`` moves every parameter (``data`` and ``grad``) and every
buffer (batch-norm running statistics) of an ``nbconv.nn`` module in place, and every layer then
runs forward and backward on device arrays; gradients accumulate on the device.  Losses accept
device predictions and targets (the loss value comes back as a Python float, its gradient stays
on the device), and ``nbconv.optim`` updates device parameters with ``@cuda.jit`` twins of its
fused kernels.  ``model.state_dict()`` and ``optimizer.state_dict()`` always return host copies,
so ``nbconv.save`` works on a model that is on the device; ``load_state_dict`` copies onto the
device.  ``to_host(model)`` moves it back.  Feed a device model device batches: a host batch
raises TypeError naming the argument.

Without a GPU the same kernels run in numba's CUDA simulator: set ``NUMBA_ENABLE_CUDASIM=1``
in the environment before numba is imported (slow, pure Python; that is how CI tests them).
GPU support needs numba's CUDA target: ``pip install nbconv[cuda]`` installs NVIDIA's
``numba-cuda`` package (numba's built-in ``numba.cuda`` also works while it exists).  Importing
nbconv never imports it.

Tunables (environment, read by :mod:`nbconv._config` and :mod:`nbconv.cuda.kernels`):
``NBCONV_CUDA_BLOCK`` threads per block of the 1-D launches (default 128),
``NBCONV_CUDA_TILE`` edge of the matrix-product tiles (default 16),
``NBCONV_CUDA_CONV_TILE`` tiles of the implicit-GEMM convolutions (default ``64,64,8,4,4``).

Device-specific behaviour:

* ``conv2d``/``conv1d`` run through the host's convolution engine with a device plan
  (``nbconv.conv.explain(..., device="cuda")`` shows it, no GPU needed) and the device
  drivers of :mod:`nbconv.cuda.conv_drivers`: ``algorithm="direct"`` runs direct CUDA
  kernels (a thread per output element); ``"im2col"``, ``"tapgemm"`` and ``"winograd"`` run
  implicit-GEMM kernels (shared-memory tiles, no im2col buffer; there are no Winograd or
  tap-GEMM kernels on the device); ``"auto"`` applies ``nbconv.conv.plan.DEVICE_RULES``:
  the GEMM kernels (rule ``device-tiled``) where each group has at least 8 input and 8
  output channels and ``(C/groups)*kh*kw >= 32``, the direct ones (``device-direct``) for
  depthwise, narrow and first layers and past 65535 groups.  Padding modes, trimmed taps,
  empty batches and inf/NaN behave as on the host.
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

Training on the device:

>>> net = nc.cuda.to_device(nc.models.lenet5())  # doctest: +SKIP
>>> crit = nc.losses.CrossEntropyLoss()
>>> opt = nc.optim.SGD(net.parameters(), lr=0.1)  # doctest: +SKIP
>>> xb, yb = nc.cuda.to_device((images, labels))  # doctest: +SKIP
>>> loss = crit(net(xb), yb); net.backward(crit.backward()); opt.step()  # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np

from .._dispatch import implements, is_device_array, set_loader

__all__ = ["is_available", "is_device_array", "to_device", "to_host", "synchronize"]


def is_available() -> bool:
    """True if CUDA kernels can run here: an NVIDIA GPU with a working driver and numba's CUDA
    target, or numba's simulator (``NUMBA_ENABLE_CUDASIM=1``).  Never raises."""
    try:
        from . import _target
    except ImportError:
        return False
    return _target.is_available()


def _cuda():
    from ._target import cuda

    return cuda


def _is_model(obj) -> bool:
    from ..nn.module import Module

    return isinstance(obj, Module)


def _array_to_device(a):
    if is_device_array(a):
        return a
    a = np.asarray(a)
    if not a.flags.c_contiguous:  # (ascontiguousarray would turn a 0-d array into 1-d)
        a = np.ascontiguousarray(a)
    return _cuda().to_device(a)


@implements
def to_device(obj):
    """Copy host data to the current CUDA device.

    Parameters
    ----------
    obj : array_like, device array, ``nbconv.nn`` module, tuple, list or dict of them
        Arrays are made C-contiguous and copied; device arrays are returned unchanged; the
        containers are rebuilt with their elements moved.  A module (a layer, ``Sequential``,
        ``Graph``) is moved *in place*: every parameter's ``data`` and ``grad`` and every
        buffer becomes a device array, and the same module is returned.

    Returns
    -------
    numba device array, the module, or the same kind of container
    """
    if is_device_array(obj):
        return obj
    if isinstance(obj, (tuple, list)):
        return type(obj)(to_device(o) for o in obj)
    if isinstance(obj, dict):
        return {k: to_device(v) for k, v in obj.items()}
    if _is_model(obj):
        return obj._apply(_array_to_device)
    if obj is None:
        return None
    return _array_to_device(obj)


@implements
def to_host(obj):
    """Copy device arrays back to host ``numpy.ndarray`` (the inverse of :func:`to_device`).

    Host arrays are returned unchanged (``numpy.asarray``); tuples, lists and dicts are rebuilt;
    ``None`` stays ``None``; a module is moved back in place and returned.
    """
    if obj is None:
        return None
    if _is_model(obj):
        return obj._apply(to_host)
    if isinstance(obj, (tuple, list)):
        return type(obj)(to_host(o) for o in obj)
    if isinstance(obj, dict):
        return {k: to_host(v) for k, v in obj.items()}
    if is_device_array(obj):
        if not hasattr(obj, "copy_to_host"):
            obj = _cuda().as_cuda_array(obj)
        return obj.copy_to_host()
    return np.asarray(obj)


def synchronize() -> None:
    """Wait until every launched kernel has finished (for timing)."""
    _cuda().synchronize()


def _load_device_ops() -> None:
    """Import the device ops, which register themselves in the dispatch table."""
    from . import activation, arrays, conv, correlate, linear, losses, norm, pool  # noqa: F401


set_loader(_load_device_ops)

"""The one place that imports numba's CUDA target.

numba's built-in ``numba.cuda`` is deprecated in favour of NVIDIA's ``numba-cuda`` package
(``pip install nbconv[cuda]``), which installs itself under the same name ``numba.cuda`` (a
``.pth`` redirector makes ``import numba.cuda`` load ``numba_cuda``).  Both provide the same
``cuda.jit`` / ``cuda.to_device`` / ``cuda.device_array`` API, so nbconv only needs
``from numba import cuda``; which implementation answered is recorded in :data:`IMPLEMENTATION`.

With ``NUMBA_ENABLE_CUDASIM=1`` in the environment *before numba is first imported*, either
implementation runs kernels in numba's CUDA simulator (pure Python, no GPU, no toolkit): that is
how CI tests the CUDA kernels.

This module is imported lazily (by :mod:`nbconv.cuda` functions, the device ops
and :mod:`nbconv.cuda.kernels`), never by ``import nbconv``, so importing nbconv needs neither a
GPU nor the CUDA toolkit.
"""

from __future__ import annotations

import numba

_INSTALL_HINT = (
    "nbconv's GPU support needs numba's CUDA target: `pip install nbconv[cuda]` (NVIDIA's "
    "numba-cuda package) and an NVIDIA driver, or NUMBA_ENABLE_CUDASIM=1 for the simulator"
)

try:
    from numba import cuda
except ImportError as e:  # pragma: no cover - depends on the installation
    raise ImportError(f"{_INSTALL_HINT} ({e})") from e

#: True when kernels run in numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``).
SIMULATOR: bool = bool(numba.config.ENABLE_CUDASIM)

#: "NVIDIA" for the numba-cuda package, "Built-in" for numba's deprecated in-tree target.
IMPLEMENTATION: str = getattr(cuda, "implementation", "Built-in")

__all__ = ["cuda", "SIMULATOR", "IMPLEMENTATION", "is_available", "device_types"]


def is_available() -> bool:
    """True if kernels can run: a usable GPU and driver, or the simulator."""
    try:
        return bool(cuda.is_available())
    except Exception:  # noqa: BLE001 - a broken driver means "not available"
        return False


def device_types() -> tuple:
    """The classes of numba's own device arrays (real or simulated)."""
    if SIMULATOR:
        from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray

        return (FakeCUDAArray,)
    from numba.cuda.cudadrv.devicearray import DeviceNDArray

    return (DeviceNDArray,)

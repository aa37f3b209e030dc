"""CUDA twins of the CPU kernels in :mod:`nbconv.kernels`: same module and function names,
except the convolution's (``conv2d_direct`` twins the row loops of
:mod:`nbconv.kernels.conv.rows`, ``conv2d_im2col`` the im2col algorithm as implicit GEMM),
written with ``@cuda.jit`` (numba's CUDA target, imported through :mod:`nbconv.cuda._target`).

These modules are imported lazily by the device ops (:mod:`nbconv.cuda`), only when an op receives
CUDA device arrays; ``import nbconv`` never imports them.  Kernels take C-contiguous device arrays
and Python ints/floats (a typed zero ``zero`` where an accumulator must have the array's dtype),
write into preallocated outputs and never allocate.  Every launch is 1-D with
``nbconv._config.CUDA_BLOCK`` threads per block (read at launch time, so tests can shrink it and
exercise multi-block paths), except the tiled matrix product (2-D blocks of ``TILE x TILE``)
and the implicit-GEMM convolutions (:mod:`.conv2d_im2col`, blocks sized by their tiles).

Determinism: no kernel uses atomics.  Data gradients are gathers (each thread owns the input
element it writes); weight/bias/statistics reductions run one block per reduced element with a
fixed-shape tree reduction in shared memory (the implicit-GEMM weight gradient: split-K partials
summed in a fixed order by a second kernel), so results are bit-identical from run to run for a
given block size.
"""

from __future__ import annotations

from ... import _config

#: largest block size the shared-memory reductions support.
MAX_BLOCK = 1024


def block() -> int:
    """Threads per block of the 1-D launches (``NBCONV_CUDA_BLOCK``, clipped to [1, 1024])."""
    return max(1, min(int(_config.CUDA_BLOCK), MAX_BLOCK))


def grid(n: int) -> tuple[int, int]:
    """``(blocks, threads)`` of a 1-D launch covering ``n`` threads."""
    b = block()
    return max(1, (int(n) + b - 1) // b), b

"""Numba kernels only: arrays and ints in, results written into preallocated outputs.

No validation, no allocation policy, no Python objects.  One module per op (``activations``,
``pool2d``, ``norm``, ``linear``, ...), its kernels named ``_<op>_<pass>`` (``_relu_fwd``,
``_max_pool2d_fwd``, ``_batch_norm_bwd_data``) and their serial helpers after what they do.
The convolution kernels are in :mod:`nbconv.kernels.conv`, one module per kernel family (no
family imports another), run by the drivers of :mod:`nbconv.conv`.

Shared by several modules: :mod:`._ir` (LLVM IR for ``@intrinsic`` functions: native float
vectors, ``memcpy``/``memset``), :mod:`.gemm` (BLAS's gemm called from kernels),
:mod:`._finite` (finite-value checks) and :mod:`._vmath` (float32 math that LLVM vectorises).
The CUDA twins are in :mod:`nbconv.cuda.kernels`, which says which CPU module each one twins.
"""

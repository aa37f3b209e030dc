"""Numba kernels only: arrays and ints in, results written into preallocated outputs.

No validation, no allocation policy, no Python objects.  Names follow
``_<op>_<algorithm>_{fwd,bwd_data,bwd_weight}``; the CUDA twins live in :mod:`nbconv.cuda.kernels`
under the same module and function names.  The convolution kernels' drivers are in
:mod:`nbconv.conv`.
"""

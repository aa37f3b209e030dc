# Repository-level pytest configuration.
#
# numba's CUDA target is optional: the modules that import it are not collected for doctests in
# the CPU test run.  The CUDA kernels are tested by tests/cuda, in their own pytest process under
# numba's simulator (NUMBA_ENABLE_CUDASIM=1 must be set before numba is imported).
collect_ignore = ["nbconv/_cuda_target.py", "nbconv/kernels/cuda"]

"""``@cuda.jit`` twins of the CPU kernels (imported lazily, never by ``import nbconv``)."""

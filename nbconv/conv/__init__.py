"""The convolution engine: everything between :func:`nbconv.conv2d`'s validated arguments and
the numba kernels of :mod:`nbconv.kernels`.

``plan``
    Which algorithm (``"auto"``'s table) and which direct kernel family runs a layer of a
    given shape, and every threshold and tuning constant behind those choices.
``engine``
    :func:`~nbconv.conv.engine.forward` / :func:`~nbconv.conv.engine.backward`: tap trimming,
    padding modes, empty batches and the non-finite fallback around the driver call.
``direct``, ``im2col``, ``winograd``
    One driver per algorithm, all with the same ``conv2d_forward`` / ``conv2d_backward``
    interface; they lay the data out for their kernels and call them.
``exact``
    The row-loop recomputation that makes inf and NaN follow the definition.

Nothing here validates user input (:mod:`nbconv._checks.conv` does, for the host and the device
alike) or knows about devices, layers or files.
"""

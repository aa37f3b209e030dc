"""The convolution kernels, one module per kernel family; no family imports another
(``tests/test_kernel_layout.py`` checks it).

The direct algorithm's families, picked per pass by :mod:`nbconv.conv.plan` (the names in
quotes) and run by :mod:`nbconv.conv.direct`:

``rows``
    ``"rows"``: the general strided row loops, any geometry; also the exact reference for
    inf and NaN (:mod:`nbconv.conv.exact`).
``wide``
    ``"wide"``: stride-1 passes on wide rows of an explicitly padded input.
``pixel_vectors``
    ``"pixvec"`` and ``"phases"``: register blocks whose vectors run along output pixels, for
    few filters or short reductions (strided layers on the input's stride phases).
``register_blocks``
    ``"regblock"``: register blocks whose vectors run along filters (at least 16).
``depthwise``
    ``"depthwise"``: one padded plane per task, in L1.

The other algorithms' kernels, one driver each in :mod:`nbconv.conv`: ``im2col`` (column
matrices for BLAS), ``tapgemm`` (one product per kernel tap, small maps) and ``winograd``
(the F(2x2, 3x3) transforms).

``layout`` holds what several families share (the row families' forward tasks, zero-padded
planes, the bias gradient); LLVM IR helpers are in :mod:`nbconv.kernels._ir`.
"""

"""The convolution engine: everything between :func:`nbconv.conv2d`'s validated arguments and
the numba kernels of :mod:`nbconv.kernels.conv`.

``plan``
    The rules: which algorithm (``"auto"``'s named rules) and which kernel family runs a
    layer of a given shape, and every threshold and tuning constant behind those choices.
``convplan``
    :class:`~nbconv.conv.convplan.ConvPlan`, the rules applied once per pass and shape (after
    tap trimming) and cached; :func:`explain` shows a layer's plans.
``engine``
    :func:`~nbconv.conv.engine.forward` / :func:`~nbconv.conv.engine.backward`: run a plan --
    kept taps, padding modes, empty batches and the non-finite policy around the driver call.
``direct``, ``im2col``, ``winograd``, ``tapgemm``
    One driver per algorithm, all with the same ``conv2d_forward`` / ``conv2d_backward``
    interface; they lay the data out for the plan's kernels and call them.  ``direct`` runs
    the plan's kernel family among five modules of :mod:`nbconv.kernels.conv` (``rows``,
    ``wide``, ``pixel_vectors``, ``register_blocks``, ``depthwise``); each other driver has
    the kernel module of its own name there.
``exact``
    The recomputation by the row loops (:mod:`nbconv.kernels.conv.rows`) that makes inf and
    NaN follow the definition.

Nothing here validates user input (:mod:`nbconv._checks.conv` does, for the host and the device
alike) or knows about layers or files.  Device arrays take the same engine and plans
(``device="cuda"``) with the device's driver table, :mod:`nbconv.cuda.conv_drivers`, imported
only when a device array arrives.
"""

from .convplan import ConvPlan, explain

__all__ = ["ConvPlan", "explain"]

"""Non-finite values by the definition: where a fast driver's result holds inf or NaN, the
engine recomputes it with the general row loops of :mod:`nbconv.kernels.conv.rows`, which
read only the taps that land inside ``x`` (zero padding adds no term, SPEC section 2)."""

from __future__ import annotations

import numba
import numpy as np

from .. import _config
from .._checks.conv import Geom
from ..kernels._finite import _all_finite, _finite_flat
from ..kernels.conv.rows import (
    _conv2d_direct_bwd_data,
    _conv2d_direct_bwd_weight,
    _conv2d_direct_fwd,
)

__all__ = ["finite_array", "finite", "exact_forward", "exact_backward"]


def finite_array(a) -> bool:
    """Whether every value of ``a`` is finite (on all threads unless ``a`` is small)."""
    flat = a.reshape(-1)  # the drivers' outputs are C-contiguous: a view
    if a.size < _config.SERIAL_BELOW:
        return _finite_flat(flat)
    return _all_finite(flat, 4 * numba.get_num_threads())


def finite(*arrays) -> bool:
    """Whether every value of every array given (None skipped) is finite: the engine's one
    call for all its inputs."""
    return all(finite_array(a) for a in arrays if a is not None)


def exact_forward(x, w, b, y, g: Geom):
    """``y`` by the row loops of :mod:`nbconv.kernels.conv.rows`, which read only the
    taps that land inside ``x`` (the definition of zero padding: padded positions add no
    term).  The fast kernels multiply explicit zeros of the padding (0 * inf is NaN) and
    Winograd's transforms mix neighbouring values, so where their result is not finite it is
    recomputed here: inf/NaN then reach exactly the outputs whose windows hold them, whatever
    the algorithm."""
    bias = np.zeros(w.shape[0], dtype=x.dtype) if b is None else b
    _conv2d_direct_fwd(x, w, bias, y, g.sy, g.sx, g.pt, g.pl, g.dh, g.dw, g.groups,
                       numba.get_num_threads())


def exact_backward(dy, x, w, dx, gw, gb, g: Geom):
    """The gradients the fast kernels left non-finite, recomputed by the row loops (see
    :func:`exact_forward`): ``dx`` gathers only the taps that read ``x``, ``gw`` sums only
    products of ``dy`` with input values (never with zero padding).  ``dx`` or ``gw`` None:
    that gradient was not asked for (``x`` may then be None too)."""
    if dx is not None and not finite_array(dx):
        _conv2d_direct_bwd_data(dy, w, dx, g.sy, g.sx, g.pt, g.pl, g.dh, g.dw, g.groups)
    if gw is not None and not finite_array(gw):
        gbuf = gb if gb is not None else np.empty(w.shape[0], dtype=x.dtype)
        _conv2d_direct_bwd_weight(dy, x, gw, gbuf, int(gb is not None), g.sy, g.sx, g.pt, g.pl,
                                  g.dh, g.dw, g.groups)

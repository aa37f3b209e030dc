"""Resizing layers: ``Upsample`` (PyTorch's names, arguments and defaults) and its fixed-mode
forms ``UpsamplingNearest2d`` and ``UpsamplingBilinear2d``.

They run :func:`nbconv.interpolate` forward and :func:`nbconv.interpolate_backward` backward,
keep only the input shape (and only while gradients are on), and have no parameters.
"""

from __future__ import annotations

import numpy as np

from .. import functional as F
from ..functional.interpolate import _resolve
from .layers import _no_cache, _plain
from .module import Module

__all__ = ["Upsample", "UpsamplingNearest2d", "UpsamplingBilinear2d"]


def _check(op, size, scale_factor, mode, align_corners, recompute_scale_factor):
    """Validate the arguments without an input: the number of spatial axes is the length of
    a sequence ``size``/``scale_factor``, else the one ``mode`` implies (2 for nearest)."""
    given = size if size is not None else scale_factor
    if isinstance(given, (tuple, list)) and len(given) in (1, 2):
        d = len(given)
    else:
        d = 1 if mode == "linear" else 2
    # a large dummy input, so that any positive scale factor gives a non-empty output
    _resolve(op, (1 << 30,) * d, size, scale_factor, mode, align_corners, recompute_scale_factor)


def _flag(v):
    """A checked optional flag as plain JSON (numpy bools become bools)."""
    return None if v is None else bool(v)


class Upsample(Module):
    """Resize by nearest or (bi)linear interpolation, as ``torch.nn.Upsample``.

    (N, C, H, W) -> (N, C, OH, OW) (modes ``"nearest"``, ``"nearest-exact"``,
    ``"bilinear"``), or (N, C, L) -> (N, C, OL) (``"nearest"``, ``"nearest-exact"``,
    ``"linear"``).  Exactly one of ``size`` and ``scale_factor`` is given; the output size is
    ``floor(in * scale_factor)`` and the source positions use ``1 / scale_factor`` (PyTorch's
    rules, see :func:`nbconv.interpolate`).  ``align_corners`` only with the linear modes.

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> up = nc.nn.Upsample(scale_factor=2, mode="bilinear")
    >>> up(np.array([[[[0., 4.]]]]))[0, 0].tolist()
    [[0.0, 1.0, 3.0, 4.0], [0.0, 1.0, 3.0, 4.0]]
    """

    def __init__(self, size=None, scale_factor=None, mode="nearest", align_corners=None,
                 recompute_scale_factor=None):
        super().__init__()
        _check(type(self).__name__, size, scale_factor, mode, align_corners,
               recompute_scale_factor)
        self._config = dict(size=_plain(size), scale_factor=_plain(scale_factor), mode=mode,
                            align_corners=_flag(align_corners),
                            recompute_scale_factor=_flag(recompute_scale_factor))
        self._shape = None

    def _args(self):
        return self._config

    def forward(self, x):
        y = F.interpolate(x, **self._args())
        self._shape = tuple(np.shape(x)) if self._keep() else None
        return y

    def backward(self, dy):
        if self._shape is None:
            raise _no_cache(type(self).__name__)
        return F.interpolate_backward(dy, self._shape, **self._args())


class UpsamplingNearest2d(Upsample):
    """``Upsample(size, scale_factor, mode="nearest")`` on (N, C, H, W), as
    ``torch.nn.UpsamplingNearest2d``.

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> nc.nn.UpsamplingNearest2d(size=(1, 3))(np.array([[[[1., 2.]]]])).tolist()
    [[[[1.0, 1.0, 2.0]]]]
    """

    def __init__(self, size=None, scale_factor=None):
        super().__init__(size, scale_factor, mode="nearest")
        self._config = dict(size=_plain(size), scale_factor=_plain(scale_factor))

    def _args(self):
        return dict(self._config, mode="nearest")


class UpsamplingBilinear2d(Upsample):
    """``Upsample(size, scale_factor, mode="bilinear", align_corners=True)`` on
    (N, C, H, W), as ``torch.nn.UpsamplingBilinear2d``.

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> nc.nn.UpsamplingBilinear2d(size=(1, 3))(np.array([[[[1., 2.]]]])).tolist()
    [[[[1.0, 1.5, 2.0]]]]
    """

    def __init__(self, size=None, scale_factor=None):
        super().__init__(size, scale_factor, mode="bilinear", align_corners=True)
        self._config = dict(size=_plain(size), scale_factor=_plain(scale_factor))

    def _args(self):
        return dict(self._config, mode="bilinear", align_corners=True)

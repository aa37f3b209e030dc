"""Pooling and channel-dropout layers beyond :mod:`nbconv.nn.layers`: 1-D pooling, adaptive
and global max pooling, ``Dropout1d``/``Dropout2d``.

Names, constructor arguments and defaults are PyTorch's (``GlobalMaxPool2d`` is ONNX's
``GlobalMaxPool``, next to :class:`~nbconv.nn.GlobalAvgPool2d`).  Each layer validates its
arguments in the constructor (a bad value fails there, naming it), records them in
``_config`` for model files, keeps in ``forward`` only what ``backward`` needs and only while
gradients are on, and its ``backward(dy)`` returns ``dx``.  The max pools send the gradient to
the argmax their forward pass recorded.  These layers run on host arrays (their ops have no
CUDA twin; a device array raises TypeError).

A max pool built with ``return_indices=True`` returns ``(y, indices)``; its backward works in
the explicit form (``layer.backward(dy)``), but a recorded (PyTorch-style) forward does not
follow a module with several outputs and raises where a gradient would pass through it: there,
call the functional op (``nc.max_pool1d(x, ..., return_indices=True)``), which records.
"""

from __future__ import annotations

import numpy as np

from .. import functional as F
from .._checks import check_bool, check_real, single
from .._checks.activation import dropout_generator
from .._checks.pool import adaptive_size
from ..functional import pool as _pool
from ._arrays import copy, is_device_array
from .layers import _no_cache, _plain, _window_hyper
from .module import Module, default_rng

__all__ = [
    "MaxPool1d", "AvgPool1d", "AdaptiveAvgPool1d", "AdaptiveMaxPool1d", "AdaptiveMaxPool2d",
    "GlobalMaxPool2d", "Dropout1d", "Dropout2d",
]

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _pool1d_hyper(op, kernel_size, stride, padding, dilation):
    """1-D window hyperparameters, with PyTorch's ``padding <= kernel_size // 2``."""
    (k,) = _window_hyper(op, 1, kernel_size, stride, padding, dilation)
    p = single(op, "padding", padding, 0)
    if p > k // 2:
        raise ValueError(f"{op}: argument 'padding' {p} must be at most half of the kernel "
                         f"size {k} (padding <= kernel_size // 2)")


def _check_dy(name: str, dy, shape: tuple) -> None:
    """Refuse a ``dy`` whose shape is not the forward output's (any size is a valid adaptive
    output: only the layer knows the right one)."""
    if tuple(np.shape(dy)) != shape:
        raise ValueError(f"{name}.backward: argument 'dy' has shape {tuple(np.shape(dy))} but "
                         f"the forward output had shape {shape}")


class _MaxPool(Module):
    """A max pooling whose backward scatters ``dy`` to the argmax kept by ``forward``."""

    def _pool(self, x, want_idx):
        raise NotImplementedError

    def _scatter(self, dy, idx, shape):
        raise NotImplementedError

    def __init__(self):
        super().__init__()
        self._cache = None

    def forward(self, x):
        ri = self._config.get("return_indices", False)
        keep = self._keep()
        if not (keep or ri):  # inference: the argmax is not needed
            self._cache = None
            return self._pool(x, False)
        y, idx = self._pool(x, True)
        self._cache = (idx, tuple(np.shape(x))) if keep else None
        return (y, idx) if ri else y

    def backward(self, dy):
        if self._cache is None:
            raise _no_cache(type(self).__name__)
        idx, shape = self._cache
        _check_dy(type(self).__name__, dy, idx.shape)
        if type(dy) is np.ndarray and dy.dtype in _FLOATS and dy.flags.c_contiguous:
            # indices this layer made itself: no need to scan them for bad values again
            return self._scatter(dy, idx, shape)
        return self._backward_op(dy, idx, shape)


class _MaxPool1dBase(_MaxPool):
    """A 1-D max pooling: the scatter of the 2-D kernels on (N, C, 1, L) views."""

    def _scatter(self, dy, idx, shape):
        image = shape[:-1] + (1, shape[-1])
        view = dy.shape[:-1] + (1, dy.shape[-1])
        return _pool._max_pool2d_scatter(dy.reshape(view), idx.reshape(view),
                                         image).reshape(shape)


class MaxPool1d(_MaxPool1dBase):
    """1-D max pooling as ``torch.nn.MaxPool1d``: (N, C, L) -> (N, C, OL), or (C, L) -> (C, OL).

    ``OL = floor((L + 2*padding - dilation*(kernel_size-1) - 1) / stride) + 1`` (ceil with
    ``ceil_mode``); ``stride`` defaults to ``kernel_size``; ``padding <= kernel_size // 2``.
    With ``return_indices=True`` the forward pass returns ``(y, indices)`` (PyTorch's
    positions).  Backward sends ``dy`` to the first maximum of each window.

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> pool = nc.nn.MaxPool1d(2)
    >>> pool(np.array([[[1., 3., 2., 5., 4.]]])).tolist()
    [[[3.0, 5.0]]]
    >>> pool.backward(np.ones((1, 1, 2))).tolist()
    [[[0.0, 1.0, 0.0, 1.0, 0.0]]]
    """

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False,
                 ceil_mode=False):
        super().__init__()
        op = "MaxPool1d"
        _pool1d_hyper(op, kernel_size, stride, padding, dilation)
        self._config = dict(kernel_size=_plain(kernel_size), stride=_plain(stride),
                            padding=_plain(padding), dilation=_plain(dilation),
                            return_indices=check_bool(op, "return_indices", return_indices),
                            ceil_mode=check_bool(op, "ceil_mode", ceil_mode))

    def _pool(self, x, want_idx):
        c = self._config
        return F.max_pool1d(x, c["kernel_size"], c["stride"], c["padding"], c["dilation"],
                            c["ceil_mode"], want_idx)

    @staticmethod
    def _backward_op(dy, idx, shape):
        return F.max_pool1d_backward(dy, idx, shape)


class AdaptiveMaxPool1d(_MaxPool1dBase):
    """Adaptive max pooling to length ``output_size``, as ``torch.nn.AdaptiveMaxPool1d``.

    (N, C, L) -> (N, C, output_size); bin ``i`` covers ``floor(i*L/OL) <= l <
    ceil((i+1)*L/OL)``.  ``return_indices=True``: forward returns ``(y, indices)``.

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> nc.nn.AdaptiveMaxPool1d(2)(np.array([[[1., 3., 3., 0., 2.]]])).tolist()
    [[[3.0, 3.0]]]
    """

    def __init__(self, output_size, return_indices=False):
        super().__init__()
        op = "AdaptiveMaxPool1d"
        single(op, "output_size", output_size, 1)
        self._config = dict(output_size=_plain(output_size),
                            return_indices=check_bool(op, "return_indices", return_indices))

    def _pool(self, x, want_idx):
        return F.adaptive_max_pool1d(x, self._config["output_size"], want_idx)

    @staticmethod
    def _backward_op(dy, idx, shape):
        return F.adaptive_max_pool1d_backward(dy, idx, shape)


class AdaptiveMaxPool2d(_MaxPool):
    """Adaptive max pooling to ``output_size``, as ``torch.nn.AdaptiveMaxPool2d``.

    (N, C, H, W) -> (N, C, OH, OW); ``output_size`` an int or a pair whose ``None`` keeps
    that input size; bin ``i`` covers ``floor(i*H/OH) <= h < ceil((i+1)*H/OH)``.
    ``return_indices=True``: forward returns ``(y, indices)`` (flat ``h * W + w``).

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> pool = nc.nn.AdaptiveMaxPool2d((1, None))
    >>> pool(np.array([[[[1., 5.], [4., 0.]]]])).tolist()
    [[[[4.0, 5.0]]]]
    """

    def __init__(self, output_size, return_indices=False):
        super().__init__()
        op = "AdaptiveMaxPool2d"
        adaptive_size(op, output_size, (1, 1))  # validate
        self._config = dict(output_size=_plain(output_size),
                            return_indices=check_bool(op, "return_indices", return_indices))

    def _pool(self, x, want_idx):
        return F.adaptive_max_pool2d(x, self._config["output_size"], want_idx)

    def _scatter(self, dy, idx, shape):
        return _pool._max_pool2d_scatter(dy, idx, shape)

    @staticmethod
    def _backward_op(dy, idx, shape):
        return F.adaptive_max_pool2d_backward(dy, idx, shape)


class GlobalMaxPool2d(_MaxPool):
    """Maximum over H and W (ONNX's ``GlobalMaxPool``): (N, C, H, W) -> (N, C, 1, 1), or
    (N, C) with ``keepdims=False``.  Backward sends each gradient to its plane's argmax.

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> nc.nn.GlobalMaxPool2d(keepdims=False)(np.array([[[[1., 5.], [7., 0.]]]])).tolist()
    [[7.0]]
    """

    def __init__(self, keepdims=True):
        super().__init__()
        self._config = dict(keepdims=check_bool("GlobalMaxPool2d", "keepdims", keepdims))

    def _pool(self, x, want_idx):
        return F.global_max_pool2d(x, self._config["keepdims"], want_idx)

    def _scatter(self, dy, idx, shape):
        lead = shape[:-2] + (1, 1)
        return _pool._max_pool2d_scatter(dy.reshape(lead), idx.reshape(lead), shape)

    @staticmethod
    def _backward_op(dy, idx, shape):
        return F.global_max_pool2d_backward(dy, idx, shape)


class AvgPool1d(Module):
    """1-D average pooling as ``torch.nn.AvgPool1d``: (N, C, L) -> (N, C, OL).

    ``OL = floor((L + 2*padding - kernel_size) / stride) + 1`` (ceil with ``ceil_mode``);
    ``count_include_pad`` as PyTorch (the padded elements count in the divisor).

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> nc.nn.AvgPool1d(3, stride=2, padding=1)(np.arange(5.0).reshape(1, 1, 5)).tolist()
    [[[0.3333333333333333, 2.0, 2.3333333333333335]]]
    """

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False,
                 count_include_pad=True):
        super().__init__()
        op = "AvgPool1d"
        _pool1d_hyper(op, kernel_size, stride, padding, 1)
        self._config = dict(kernel_size=_plain(kernel_size), stride=_plain(stride),
                            padding=_plain(padding),
                            ceil_mode=check_bool(op, "ceil_mode", ceil_mode),
                            count_include_pad=check_bool(op, "count_include_pad",
                                                         count_include_pad))
        self._shape = None

    def forward(self, x):
        y = F.avg_pool1d(x, **self._config)
        self._shape = tuple(np.shape(x)) if self._keep() else None
        return y

    def backward(self, dy):
        if self._shape is None:
            raise _no_cache("AvgPool1d")
        return F.avg_pool1d_backward(dy, self._shape, **self._config)


class AdaptiveAvgPool1d(Module):
    """Adaptive average pooling to length ``output_size``, as ``torch.nn.AdaptiveAvgPool1d``.

    (N, C, L) -> (N, C, output_size); bin ``i`` averages ``floor(i*L/OL) <= l <
    ceil((i+1)*L/OL)``.

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> nc.nn.AdaptiveAvgPool1d(2)(np.arange(5.0).reshape(1, 1, 5)).tolist()
    [[[1.0, 3.0]]]
    """

    def __init__(self, output_size):
        super().__init__()
        single("AdaptiveAvgPool1d", "output_size", output_size, 1)
        self._config = dict(output_size=_plain(output_size))
        self._shapes = None

    def forward(self, x):
        y = F.adaptive_avg_pool1d(x, self._config["output_size"])
        self._shapes = (tuple(np.shape(x)), tuple(np.shape(y))) if self._keep() else None
        return y

    def backward(self, dy):
        if self._shapes is None:
            raise _no_cache("AdaptiveAvgPool1d")
        x_shape, y_shape = self._shapes
        _check_dy("AdaptiveAvgPool1d", dy, y_shape)
        return F.adaptive_avg_pool1d_backward(dy, x_shape)


#: the mask of a forward pass that dropped nothing (eval mode, ``p == 0``): backward copies
_IDENTITY = "identity"


class _ChannelDropout(Module):
    _op = None
    _backward_op = None

    def __init__(self, p=0.5, inplace=False, rng=None):
        super().__init__()
        op = type(self).__name__
        self._config = dict(p=check_real(op, "p", p, 0.0, 1.0),
                            inplace=check_bool(op, "inplace", inplace))
        self._rng = None if rng is None else dropout_generator(op, rng)
        self._mask = None

    def forward(self, x):
        p = self._config["p"]
        if not self.training or p == 0.0:
            self._mask = _IDENTITY
            if is_device_array(x):
                return copy(x, f"{type(self).__name__}.forward", "x")
            return type(self)._op(x, p, training=False)
        rng = self._rng if self._rng is not None else default_rng()
        y, mask = type(self)._op(x, p, training=True, rng=rng, return_mask=True)
        self._mask = mask if self._keep() else None
        return y

    def backward(self, dy):
        if self._mask is None:
            raise _no_cache(type(self).__name__)
        if self._mask is _IDENTITY:
            return copy(dy, f"{type(self).__name__}.backward", "dy")
        return type(self)._backward_op(dy, self._mask)


class Dropout1d(_ChannelDropout):
    """Channel dropout of sequences, as ``torch.nn.Dropout1d``: in training mode each
    ``(n, c)`` row of an (N, C, L) (or unbatched (C, L)) input is zeroed with probability
    ``p``, the others scaled by ``1 / (1 - p)``; the identity in eval mode.

    Masks come from ``rng`` (a seed or Generator) or the library generator seeded by
    :func:`nbconv.manual_seed`, so seeded training is reproducible.  ``inplace`` is accepted
    for PyTorch's signature; the output is always a new array (a recorded forward pass needs
    its input intact).

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> drop = nc.nn.Dropout1d(0.5, rng=0)
    >>> y = drop(np.ones((2, 3, 4)))
    >>> bool(np.all((y == 0) | (y == 2)) and np.all(y == y[..., :1]))
    True
    >>> bool(np.array_equal(drop.eval()(np.ones((2, 3, 4))), np.ones((2, 3, 4))))
    True
    """

    _op = staticmethod(F.dropout1d)
    _backward_op = staticmethod(F.dropout1d_backward)


class Dropout2d(_ChannelDropout):
    """Channel dropout of images, as ``torch.nn.Dropout2d``: in training mode each ``(n, c)``
    plane of an (N, C, H, W) input is zeroed with probability ``p``, the others scaled by
    ``1 / (1 - p)``; the identity in eval mode.

    A 3-D input is read as (N, C, L) with a warning, as PyTorch does.  Masks come from
    ``rng`` (a seed or Generator) or the library generator seeded by
    :func:`nbconv.manual_seed`.  ``inplace`` is accepted for PyTorch's signature; the output
    is always a new array.

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> nc.manual_seed(0)
    >>> y = nc.nn.Dropout2d(0.5)(np.ones((2, 3, 4, 4), np.float32))
    >>> y.dtype, bool(np.all(y == y[:, :, :1, :1]))
    (dtype('float32'), True)
    """

    _op = staticmethod(F.dropout2d)
    _backward_op = staticmethod(F.dropout2d_backward)

"""Layers with hand-written backward passes, one thin class per functional op.

Each layer records its constructor arguments in ``_config`` (the model file rebuilds it from
them), caches in ``forward`` only what its ``backward`` needs, and accumulates parameter
gradients with ``+=``.

Layers run on host ``numpy.ndarray`` and, after :func:`nbconv.cuda.to_device(model)
<nbconv.cuda.to_device>`, on CUDA device arrays: the functional ops dispatch on their inputs,
and the little array arithmetic of the layers themselves goes through :mod:`._arrays`.  A host
input to a layer whose parameters are on the device (or the reverse) raises TypeError naming
the argument.
"""

from __future__ import annotations

import math

import numpy as np

from .. import _dispatch
from .. import functional as F
from .._checks import (
    check_bool,
    check_int,
    check_padding_mode,
    check_real,
    pair,
    single,
)
from .._checks.conv import as_hyper
from .._checks.pool import adaptive_size
from ..functional import conv as _conv
from ..functional import pool as _pool
from ..functional.linear import _linear_backward_into
from ._arrays import copy, increment, is_device_array, reshape
from .init import as_generator, constant, uniform_fan_in
from .module import Module, default_rng

__all__ = [
    "Conv2d", "Conv1d", "Linear", "Flatten",
    "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "GlobalAvgPool2d",
    "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "Softmax", "Dropout",
    "BatchNorm1d", "BatchNorm2d", "LocalResponseNorm",
]


def _window_hyper(op: str, ndim: int, kernel_size, stride, padding, dilation,
                  padding_strings: bool = False) -> tuple[int, ...]:
    """Validate a layer's window hyperparameters as its functional op will read them (ints or
    ``ndim``-tuples; ``stride=None`` is the kernel size; ``padding`` may be "same"/"valid"
    with ``padding_strings``), so that a bad value fails when the layer is built, naming the
    argument, and not at its first forward pass.  Returns the kernel size as a tuple."""
    norm = pair if ndim == 2 else (lambda op_, name, v, m: (single(op_, name, v, m),))
    ks = norm(op, "kernel_size", kernel_size, 1)
    if stride is not None:
        norm(op, "stride", stride, 1)
    norm(op, "dilation", dilation, 1)
    if isinstance(padding, str) and padding_strings:
        if padding not in ("same", "valid"):
            raise ValueError(f"{op}: argument 'padding' must be an int, a tuple, 'same' or "
                             f"'valid', got {padding!r}")
    else:
        norm(op, "padding", padding, 0)
    return ks


def _no_cache(name: str):
    return RuntimeError(
        f"{name}.backward called without a cached forward pass (was forward run inside "
        "nbconv.no_grad(), or backward called twice?)"
    )


class _ConvNd(Module):
    _ndim = 2
    _supports_need_dx = True

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, padding_mode="zeros", dtype=np.float32, rng=None):
        super().__init__()
        op = type(self).__name__
        ks = _window_hyper(op, self._ndim, kernel_size, stride, padding, dilation,
                           padding_strings=True)
        in_channels = check_int(op, "in_channels", in_channels, 1)
        out_channels = check_int(op, "out_channels", out_channels, 1)
        groups = check_int(op, "groups", groups, 1)
        bias = check_bool(op, "bias", bias)
        check_padding_mode(op, padding_mode)
        rng = as_generator(op, rng)
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"{op}: argument 'groups'={groups} must divide both in_channels={in_channels} "
                f"and out_channels={out_channels}"
            )
        self._config = dict(in_channels=int(in_channels), out_channels=int(out_channels),
                            kernel_size=_plain(kernel_size), stride=_plain(stride),
                            padding=_plain(padding), dilation=_plain(dilation),
                            groups=int(groups), bias=bool(bias), padding_mode=padding_mode)
        self.stride, self.padding, self.dilation = stride, padding, dilation
        self.groups, self.padding_mode = groups, padding_mode
        self._hyper_of = (None, None)  # (the attributes, their Hyper): see _hyper
        self._hyper()
        fan_in = in_channels // groups * int(np.prod(ks))
        wshape = (out_channels, in_channels // groups, *ks)
        self.weight = self._param("weight", uniform_fan_in(wshape, fan_in, dtype, rng))
        self.bias = (self._param("bias", uniform_fan_in((out_channels,), fan_in, dtype, rng))
                     if bias else None)
        self._x = None

    def _args(self):
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation,
                    groups=self.groups, padding_mode=self.padding_mode)

    def _hyper(self):
        """The hyperparameters validated once, as a :class:`~nbconv._checks.conv.Hyper` for
        the functional's internal entries (validated again only after an attribute changed,
        e.g. ``layer.padding = 2``)."""
        key = (self.stride, self.padding, self.dilation, self.groups, self.padding_mode)
        seen, h = self._hyper_of
        if key != seen:
            h = as_hyper(type(self).__name__, key, self._ndim)
            self._hyper_of = (key, h)
        return h

    def _call(self, entry, public, *arrays, **kwargs):
        """``entry(*arrays, weight, ..., hyper=...)``, one of the functional's internal entries
        (:mod:`nbconv.functional.conv`), when ``arrays`` and the parameters are all host
        arrays, its device twin (:mod:`nbconv.cuda.conv`) when they are all device arrays;
        else the public op ``public`` with the hyperparameters, which dispatches anything
        else (and names the argument that does not match the others)."""
        w = self.weight.data
        params = (w,) if self.bias is None else (w, self.bias.data)
        if all(type(a) is np.ndarray for a in arrays + params):
            return entry(*arrays, w, **kwargs, hyper=self._hyper())
        if all(is_device_array(a) for a in arrays + params):
            return _dispatch.implementation(entry.__name__)(*arrays, w, **kwargs,
                                                            hyper=self._hyper())
        return public(*arrays, w, **kwargs, **self._args())


class Conv2d(_ConvNd):
    """2-D convolution (cross-correlation) layer; arguments and init as ``torch.nn.Conv2d``.

    Input (N, C_in, H, W) -> output (N, C_out, H_out, W_out); weight (C_out, C_in/groups, kh, kw).
    """

    def forward(self, x):
        return self._forward_with(_conv._conv2d_layer, x)

    def _forward_with(self, conv, x):
        """``conv``, one of the functional's internal entries (see :meth:`_call`)."""
        b = None if self.bias is None else self.bias.data
        y = self._call(conv, F.conv2d, x, bias=b)
        self._x = x if self._keep() else None
        return y

    def _forward_through(self, after, x):
        """``after.forward(self.forward(x))`` in one pass, everything on the host:

        * ``after`` a ReLU: the ReLU in the convolution's store (saves the ReLU's pass); the
          ReLU keeps the output for its backward pass (``relu(v) <= 0`` exactly when ``v <=
          0``);
        * ``after`` a BatchNorm2d normalising with its running statistics (eval mode), under
          ``no_grad``: the normalisation folded into the convolution's store as a scale and
          shift per filter (inference, where nothing is kept for a backward pass)."""
        if (type(x) is not np.ndarray or type(self.weight.data) is not np.ndarray
                or type(self).forward is not Conv2d.forward):  # a subclass's own forward runs
            return None
        if type(after) is ReLU:
            y = self._forward_with(_conv._conv2d_relu, x)
            after._saved = y if self._keep() else None
            return y
        if type(after) is BatchNorm2d and not self._keep() and x.ndim == 4:
            affine = after._inference_affine(self.weight.data.shape[0])
            if affine is None:
                return None
            scale, shift = affine
            if self.bias is not None:  # BN(conv + b) = conv * scale + (b * scale + shift)
                shift = shift + scale * self.bias.data
            y = _conv._conv2d_scaled(x, self.weight.data, scale, shift, hyper=self._hyper())
            self._x = None
            after._cache = None
            return y
        return None

    def backward(self, dy, need_dx=True):
        """``need_dx=False`` skips the input gradient (returns None): the first layer."""
        if self._x is None:
            raise _no_cache("Conv2d")
        dx, dw, db = self._call(_conv._conv2d_backward_layer, F.conv2d_backward, dy, self._x,
                                bias=self.bias is not None, need_dx=need_dx)
        self.weight.accumulate_grad(dw, "Conv2d.backward", owned=True)
        if db is not None:
            self.bias.accumulate_grad(db, "Conv2d.backward", owned=True)
        return dx


class Conv1d(_ConvNd):
    """1-D convolution layer; (N, C_in, L) -> (N, C_out, L_out), as ``torch.nn.Conv1d``."""

    _ndim = 1

    def forward(self, x):
        b = None if self.bias is None else self.bias.data
        y = self._call(_conv._conv1d_layer, F.conv1d, x, bias=b)
        self._x = x if self._keep() else None
        return y

    def backward(self, dy, need_dx=True):
        """``need_dx=False`` skips the input gradient (returns None): the first layer."""
        if self._x is None:
            raise _no_cache("Conv1d")
        dx, dw, db = self._call(_conv._conv1d_backward_layer, F.conv1d_backward, dy, self._x,
                                bias=self.bias is not None, need_dx=need_dx)
        self.weight.accumulate_grad(dw, "Conv1d.backward", owned=True)
        if db is not None:
            self.bias.accumulate_grad(db, "Conv1d.backward", owned=True)
        return dx


class Linear(Module):
    """Fully-connected layer ``y = x @ W.T + b``; weight (out_features, in_features)."""

    def __init__(self, in_features, out_features, bias=True, dtype=np.float32, rng=None):
        super().__init__()
        in_features = check_int("Linear", "in_features", in_features, 1)
        out_features = check_int("Linear", "out_features", out_features, 1)
        bias = check_bool("Linear", "bias", bias)
        rng = as_generator("Linear", rng)
        self._config = dict(in_features=in_features, out_features=out_features, bias=bias)
        self.weight = self._param(
            "weight", uniform_fan_in((out_features, in_features), in_features, dtype, rng))
        self.bias = (self._param("bias", uniform_fan_in((out_features,), in_features, dtype, rng))
                     if bias else None)
        self._x = None

    def forward(self, x):
        y = F.linear(x, self.weight.data, None if self.bias is None else self.bias.data)
        self._x = x if self._keep() else None
        return y

    def backward(self, dy):
        if self._x is None:
            raise _no_cache("Linear")
        if _host_grads(self._x, self.weight, self.bias):
            # the weight gradient accumulates inside the GEMM (no weight-sized temporary)
            return _linear_backward_into(
                dy, self._x, self.weight.data, self.weight.grad,
                None if self.bias is None else self.bias.grad)
        dx, dw, db = F.linear_backward(dy, self._x, self.weight.data, bias=self.bias is not None)
        self.weight.accumulate_grad(dw, "Linear.backward", owned=True)
        if db is not None:
            self.bias.accumulate_grad(db, "Linear.backward", owned=True)
        return dx


class Flatten(Module):
    """Flatten dims ``start_dim..end_dim`` into one (default: all but the batch axis).

    As ``torch.nn.Flatten``: negative dims count from the end, a dim outside the input's
    range raises, and a 0-d input counts as 1-d (``Flatten(0)`` makes it shape (1,)).
    """

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self._config = dict(start_dim=check_int("Flatten", "start_dim", start_dim),
                            end_dim=check_int("Flatten", "end_dim", end_dim))
        self._shapes = None

    def _flat_shape(self, shape: tuple) -> tuple:
        """``shape`` with the flattened dims multiplied into one (sizes may be 0)."""
        given, shape = shape, shape or (1,)
        n = len(shape)
        dims = []
        for name in ("start_dim", "end_dim"):
            d = self._config[name]
            if not -n <= d < n:
                raise ValueError(f"Flatten: argument '{name}'={d} is out of range for an input "
                                 f"of shape {given} (expected a dim in [{-n}, {n - 1}])")
            dims.append(d % n)
        s, e = dims
        if s > e:
            raise ValueError(f"Flatten: argument 'start_dim'={self._config['start_dim']} comes "
                             f"after 'end_dim'={self._config['end_dim']} for an input of shape "
                             f"{given}")
        return shape[:s] + (math.prod(shape[s:e + 1]),) + shape[e + 1:]

    def forward(self, x):
        if not is_device_array(x):
            x = np.asarray(x)
        shape = tuple(x.shape)
        flat = self._flat_shape(shape)
        self._shapes = (shape, flat)
        return reshape(x, flat, "Flatten.forward", "x")

    def backward(self, dy):
        if self._shapes is None:
            raise _no_cache("Flatten")
        shape, flat = self._shapes
        if tuple(np.shape(dy)) != flat:
            raise ValueError(f"Flatten.backward: argument 'dy' has shape {tuple(np.shape(dy))} "
                             f"but the forward output had shape {flat}")
        return reshape(dy, shape, "Flatten.backward", "dy")


_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


class MaxPool2d(Module):
    """Max pooling as ``torch.nn.MaxPool2d`` (same arguments in the same order); backward
    routes to the recorded argmax.  With ``return_indices=True`` the forward pass returns
    ``(y, indices)`` (flat ``h * W + w`` per plane, as PyTorch's)."""

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False,
                 ceil_mode=False):
        super().__init__()
        _pool_hyper("MaxPool2d", kernel_size, stride, padding, dilation)
        self._config = dict(kernel_size=_plain(kernel_size), stride=_plain(stride),
                            padding=_plain(padding), dilation=_plain(dilation),
                            return_indices=check_bool("MaxPool2d", "return_indices",
                                                      return_indices),
                            ceil_mode=check_bool("MaxPool2d", "ceil_mode", ceil_mode))
        self._cache = None

    def _pool_args(self) -> dict:
        c = self._config
        return dict(kernel_size=c["kernel_size"], stride=c["stride"], padding=c["padding"],
                    dilation=c["dilation"], ceil_mode=c["ceil_mode"])

    def forward(self, x):
        indices = self._config["return_indices"]
        if not self._keep():  # inference: the argmax is not needed
            self._cache = None
            return F.max_pool2d(x, return_indices=indices, **self._pool_args())
        y, idx = F.max_pool2d(x, return_indices=True, **self._pool_args())
        self._cache = (idx, tuple(np.shape(x)), y)
        return (y, idx) if indices else y

    def backward(self, dy):
        if self._cache is None:
            raise _no_cache("MaxPool2d")
        idx, shape, _ = self._cache
        if self._host_grad(dy):
            # indices this layer made itself: no need to scan them for bad values again
            return _pool._max_pool2d_scatter(dy, idx, shape)
        return F.max_pool2d_backward(dy, idx, shape)

    def _host_grad(self, dy) -> bool:
        idx = self._cache[0]
        return (type(dy) is np.ndarray and type(idx) is np.ndarray and dy.shape == idx.shape
                and dy.dtype in _FLOATS and dy.flags.c_contiguous)

    def _backward_through(self, before, dy):
        """``before.backward(self.backward(dy))`` in one pass when ``before`` is a ReLU (the
        gradient reaches an argmax only where the pooled maximum is positive or NaN, which is
        where the ReLU's input was); None when the pair cannot be fused (``Sequential`` then
        runs the two backward passes).  Saves the ReLU's pass over the unpooled gradient."""
        if (type(before) is not ReLU or before._saved is None or self._cache is None
                or not self._host_grad(dy) or type(self).backward is not MaxPool2d.backward):
            return None
        idx, shape, y = self._cache
        if tuple(np.shape(before._saved)) != shape or type(y) is not np.ndarray:
            return None
        return _pool._max_pool2d_scatter(dy, idx, shape, relu_out=y)


class AvgPool2d(Module):
    """Average pooling as ``torch.nn.AvgPool2d``."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False,
                 count_include_pad=True):
        super().__init__()
        op = "AvgPool2d"
        _pool_hyper(op, kernel_size, stride, padding, 1)
        self._config = dict(kernel_size=_plain(kernel_size), stride=_plain(stride),
                            padding=_plain(padding),
                            ceil_mode=check_bool(op, "ceil_mode", ceil_mode),
                            count_include_pad=check_bool(op, "count_include_pad",
                                                         count_include_pad))
        self._shape = None

    def forward(self, x):
        y = F.avg_pool2d(x, **self._config)
        self._shape = tuple(np.shape(x)) if self._keep() else None
        return y

    def backward(self, dy):
        if self._shape is None:
            raise _no_cache("AvgPool2d")
        return F.avg_pool2d_backward(dy, self._shape, **self._config)


class AdaptiveAvgPool2d(Module):
    """Adaptive average pooling to ``output_size`` (int or pair), as PyTorch."""

    def __init__(self, output_size):
        super().__init__()
        adaptive_size("AdaptiveAvgPool2d", output_size, (1, 1))  # validate
        self._config = dict(output_size=_plain(output_size))
        self._shapes = None

    def forward(self, x):
        y = F.adaptive_avg_pool2d(x, self._config["output_size"])
        self._shapes = (tuple(np.shape(x)), tuple(np.shape(y))) if self._keep() else None
        return y

    def backward(self, dy):
        if self._shapes is None:
            raise _no_cache("AdaptiveAvgPool2d")
        x_shape, y_shape = self._shapes
        if tuple(np.shape(dy)) != y_shape:
            # any spatial size is a valid adaptive output: only the layer knows the right one
            raise ValueError(f"AdaptiveAvgPool2d.backward: argument 'dy' has shape "
                             f"{tuple(np.shape(dy))} but the forward output had shape {y_shape}")
        return F.adaptive_avg_pool2d_backward(dy, x_shape)


class GlobalAvgPool2d(Module):
    """Mean over H and W: (N, C, H, W) -> (N, C, 1, 1), or (N, C) with ``keepdims=False``."""

    def __init__(self, keepdims=True):
        super().__init__()
        self._config = dict(keepdims=check_bool("GlobalAvgPool2d", "keepdims", keepdims))
        self._shape = None

    def forward(self, x):
        y = F.global_avg_pool2d(x, keepdims=self._config["keepdims"])
        self._shape = tuple(np.shape(x)) if self._keep() else None
        return y

    def backward(self, dy):
        if self._shape is None:
            raise _no_cache("GlobalAvgPool2d")
        return F.global_avg_pool2d_backward(dy, self._shape)


class _Elementwise(Module):
    """Activation whose backward needs its input (``uses="x"``) or output (``uses="y"``)."""

    uses = "x"

    def __init__(self):
        super().__init__()
        self._saved = None

    def _fwd(self, x):
        raise NotImplementedError

    def _bwd(self, dy, saved):
        raise NotImplementedError

    def forward(self, x):
        y = self._fwd(x)
        self._saved = (x if self.uses == "x" else y) if self._keep() else None
        return y

    def backward(self, dy):
        if self._saved is None:
            raise _no_cache(type(self).__name__)
        return self._bwd(dy, self._saved)


class ReLU(_Elementwise):
    """max(x, 0)."""

    def _fwd(self, x):
        return F.relu(x)

    def _bwd(self, dy, x):
        return F.relu_backward(dy, x)


class LeakyReLU(_Elementwise):
    """x if x > 0 else negative_slope * x."""

    def __init__(self, negative_slope=0.01):
        super().__init__()
        self._config = dict(
            negative_slope=check_real("LeakyReLU", "negative_slope", negative_slope))

    def _fwd(self, x):
        return F.leaky_relu(x, self._config["negative_slope"])

    def _bwd(self, dy, x):
        return F.leaky_relu_backward(dy, x, self._config["negative_slope"])


class Sigmoid(_Elementwise):
    """1 / (1 + exp(-x)), overflow-free."""

    uses = "y"

    def _fwd(self, x):
        return F.sigmoid(x)

    def _bwd(self, dy, y):
        return F.sigmoid_backward(dy, y)


class Tanh(_Elementwise):
    """Hyperbolic tangent."""

    uses = "y"

    def _fwd(self, x):
        return F.tanh(x)

    def _bwd(self, dy, y):
        return F.tanh_backward(dy, y)


class Softmax(_Elementwise):
    """Softmax along ``dim`` (default the last axis)."""

    uses = "y"

    def __init__(self, dim=-1):
        super().__init__()
        self._config = dict(dim=check_int("Softmax", "dim", dim))

    def _fwd(self, x):
        return F.softmax(x, axis=self._config["dim"])

    def _bwd(self, dy, y):
        return F.softmax_backward(dy, y, axis=self._config["dim"])


class Dropout(Module):
    """Inverted dropout: zero with probability ``p``, scale the rest by 1/(1-p); identity in eval.

    Masks come from ``rng`` (a seed or Generator) or the library generator seeded by
    :func:`nbconv.manual_seed`, so seeded training is reproducible.
    """

    def __init__(self, p=0.5, rng=None):
        super().__init__()
        self._config = dict(p=check_real("Dropout", "p", p, 0.0, 1.0))
        self._rng = as_generator("Dropout", rng)
        self._mask = "identity"

    def forward(self, x):
        if not self.training or self._config["p"] == 0.0:
            self._mask = "identity"  # nothing dropped: backward passes dy on
            return copy(x, "Dropout.forward", "x")
        rng = self._rng if self._rng is not None else default_rng()
        y, mask = F.dropout(x, self._config["p"], training=True, rng=rng, return_mask=True)
        self._mask = mask if self._keep() else None
        return y

    def backward(self, dy):
        mask = self._mask
        if mask is None:
            raise _no_cache("Dropout")
        if type(mask) is str:
            return copy(dy, "Dropout.backward", "dy")
        return F.dropout_backward(dy, mask)


class _BatchNorm(Module):
    _ndims = (2, 3)

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True, dtype=np.float32):
        super().__init__()
        op = type(self).__name__
        if momentum is None:
            raise ValueError(f"{op}: argument 'momentum' is None (PyTorch's cumulative moving "
                             "average), which is not supported; pass a float in [0, 1]")
        self._config = dict(num_features=check_int(op, "num_features", num_features, 1),
                            eps=check_real(op, "eps", eps, 0.0),
                            momentum=check_real(op, "momentum", momentum, 0.0, 1.0),
                            affine=check_bool(op, "affine", affine),
                            track_running_stats=check_bool(op, "track_running_stats",
                                                           track_running_stats))
        c = self._config["num_features"]
        self.weight = self._param("weight", constant(c, 1, dtype)) if affine else None
        self.bias = self._param("bias", constant(c, 0, dtype)) if affine else None
        if track_running_stats:
            self._buffer("running_mean", constant(c, 0, dtype))
            self._buffer("running_var", constant(c, 1, dtype))
            self._buffer("num_batches_tracked", constant((), 0, np.int64))
        self._cache = None

    def forward(self, x):
        if not is_device_array(x):
            x = np.asarray(x)
        if x.ndim not in self._ndims:
            raise ValueError(
                f"{type(self).__name__}: expected a {' or '.join(map(str, self._ndims))}-D input, "
                f"got shape {tuple(x.shape)}"
            )
        cfg = self._config
        tracking = cfg["track_running_stats"]
        # PyTorch: batch statistics in training mode, and in eval mode when nothing is tracked.
        batch_stats = self.training or not tracking
        if self.training and tracking:
            increment(self._buffers["num_batches_tracked"])
        y, mean, invstd = F.batch_norm(
            x,
            self._buffers["running_mean"] if tracking else None,
            self._buffers["running_var"] if tracking else None,
            None if self.weight is None else self.weight.data,
            None if self.bias is None else self.bias.data,
            training=batch_stats, momentum=cfg["momentum"], eps=cfg["eps"], return_stats=True)
        self._cache = (x, mean, invstd, batch_stats) if self._keep() else None
        return y

    def _inference_affine(self, channels):
        """``(scale, shift)`` float64 (C,) with ``forward(v) == v * scale + shift`` per
        channel when this layer normalises with its running statistics (eval mode, tracked
        statistics) of ``channels`` channels, all on the host; None otherwise (then
        ``forward`` runs, and raises what it raises)."""
        cfg = self._config
        if self.training or not cfg["track_running_stats"] or channels != cfg["num_features"]:
            return None
        mean, var = self._buffers["running_mean"], self._buffers["running_var"]
        arrays = [mean, var] + ([self.weight.data, self.bias.data] if cfg["affine"] else [])
        if any(type(a) is not np.ndarray for a in arrays):
            return None
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = 1.0 / np.sqrt(var.astype(np.float64) + cfg["eps"])
            if cfg["affine"]:
                scale = scale * self.weight.data
            shift = -mean * scale
            if cfg["affine"]:
                shift = shift + self.bias.data
        return scale, shift

    def backward(self, dy):
        if self._cache is None:
            raise _no_cache(type(self).__name__)
        x, mean, invstd, batch_stats = self._cache
        dx, dw, db = F.batch_norm_backward(
            dy, x, mean, invstd, None if self.weight is None else self.weight.data,
            training=batch_stats)
        if self.weight is not None:
            self.weight.accumulate_grad(dw, "BatchNorm.backward", owned=True)
            self.bias.accumulate_grad(db, "BatchNorm.backward", owned=True)
        return dx


class BatchNorm1d(_BatchNorm):
    """Batch norm over (N, C) or (N, C, L) inputs, as ``torch.nn.BatchNorm1d``."""

    _ndims = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch norm over (N, C, H, W) inputs, as ``torch.nn.BatchNorm2d``."""

    _ndims = (4,)


class LocalResponseNorm(Module):
    """Local response normalisation across channels (AlexNet), as PyTorch's."""

    def __init__(self, size, alpha=1e-4, beta=0.75, k=1.0):
        super().__init__()
        op = "LocalResponseNorm"
        self._config = dict(size=check_int(op, "size", size, 1),
                            alpha=check_real(op, "alpha", alpha),
                            beta=check_real(op, "beta", beta), k=check_real(op, "k", k))
        self._x = None

    def forward(self, x):
        y = F.local_response_norm(x, **self._config)
        self._x = x if self._keep() else None
        return y

    def backward(self, dy):
        if self._x is None:
            raise _no_cache("LocalResponseNorm")
        return F.local_response_norm_backward(dy, self._x, **self._config)


def _host_grads(x, *params) -> bool:
    """Whether ``x`` and the gradients of ``params`` (None skipped) are host arrays of one
    float dtype, the gradients C-contiguous and writeable, so that a kernel may add into
    them in place."""
    if type(x) is not np.ndarray or x.dtype not in _FLOATS:
        return False
    return all(p is None or (p.requires_grad and type(p.grad) is np.ndarray
                             and p.grad.dtype == x.dtype and p.grad.flags.c_contiguous
                             and p.grad.flags.writeable)
               for p in params)


def _pool_hyper(op, kernel_size, stride, padding, dilation):
    """Window hyperparameters of a pooling layer, with PyTorch's padding <= kernel_size // 2."""
    kh, kw = _window_hyper(op, 2, kernel_size, stride, padding, dilation)
    ph, pw = pair(op, "padding", padding, 0)
    if ph > kh // 2 or pw > kw // 2:
        raise ValueError(f"{op}: argument 'padding' {(ph, pw)} must be at most half of the "
                         f"kernel size {(kh, kw)} (padding <= kernel_size // 2 on each axis)")


def _plain(v):
    """Constructor argument as JSON-friendly plain Python (tuples become lists)."""
    if isinstance(v, (tuple, list)):
        return [_plain(a) for a in v]
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    return v

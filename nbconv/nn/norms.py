"""Group, instance and layer normalisation layers, as PyTorch's ``nn.GroupNorm``,
``nn.InstanceNorm1d``/``2d`` and ``nn.LayerNorm``.

Each layer calls its functional op (:mod:`nbconv.functional.norms`) with ``return_stats=True``,
keeps the input and the statistics its backward pass needs (only while gradients are
enabled), and its ``backward`` returns the input gradient and adds the weight and bias
gradients to its parameters.  Batch norm and local response norm live in :mod:`.layers`.
"""

from __future__ import annotations

import warnings

import numpy as np

from .. import functional as F
from .._checks import check_bool, check_int
from .._checks.norms import check_eps, check_momentum
from .._checks.norms import normalized_shape as _normalized_shape
from ._arrays import is_device_array
from .init import constant
from .module import Module

__all__ = ["GroupNorm", "InstanceNorm1d", "InstanceNorm2d", "LayerNorm"]


def _no_cache(name: str):
    return RuntimeError(
        f"{name}.backward called without a cached forward pass (was forward run inside "
        "nbconv.no_grad(), or backward called twice?)")


def _param_data(p):
    return None if p is None else p.data


class GroupNorm(Module):
    """Group normalisation over (N, C, *) inputs, as ``torch.nn.GroupNorm``.

    The ``num_channels`` channels are split into ``num_groups`` groups of consecutive
    channels; every group of every sample is normalised by its own mean and biased variance
    (training and eval alike: there are no running statistics), then scaled and shifted per
    channel by ``weight`` (ones) and ``bias`` (zeros) when ``affine``.

    Parameters
    ----------
    num_groups : int
        Must divide ``num_channels``.
    num_channels : int
        ``C`` of the inputs.
    eps : float, default 1e-5
        Added to the variance.
    affine : bool, default True
        Learnable per-channel ``weight`` and ``bias``, shape (C,).
    dtype : numpy dtype, default float32
        Of the parameters.

    Shapes: input (N, C, *) -> output of the same shape.

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> gn = nc.nn.GroupNorm(2, 4)
    >>> y = gn(np.arange(24, dtype=np.float32).reshape(2, 4, 3))
    >>> y.shape, abs(float(y[0, :2].mean())) < 1e-6
    ((2, 4, 3), True)
    """

    def __init__(self, num_groups, num_channels, eps=1e-5, affine=True, dtype=np.float32):
        super().__init__()
        op = "GroupNorm"
        num_groups = check_int(op, "num_groups", num_groups, 1)
        num_channels = check_int(op, "num_channels", num_channels, 1)
        if num_channels % num_groups:
            raise ValueError(f"{op}: argument 'num_channels'={num_channels} must be divisible "
                             f"by argument 'num_groups'={num_groups}")
        self._config = dict(num_groups=num_groups, num_channels=num_channels,
                            eps=check_eps(op, eps), affine=check_bool(op, "affine", affine))
        self.weight = self._param("weight", constant(num_channels, 1, dtype)) if affine else None
        self.bias = self._param("bias", constant(num_channels, 0, dtype)) if affine else None
        self._cache = None

    def forward(self, x):
        cfg = self._config
        shape = tuple(np.shape(x))
        if len(shape) < 2 or shape[1] != cfg["num_channels"]:
            raise ValueError(f"GroupNorm: expected an input (N, {cfg['num_channels']}, *) "
                             f"(num_channels={cfg['num_channels']}, layout NC...), got shape "
                             f"{shape}")
        y, mean, rstd = F.group_norm(x, cfg["num_groups"], _param_data(self.weight),
                                     _param_data(self.bias), cfg["eps"], return_stats=True)
        self._cache = (x, mean, rstd) if self._keep() else None
        return y

    def backward(self, dy):
        if self._cache is None:
            raise _no_cache("GroupNorm")
        x, mean, rstd = self._cache
        dx, dw, db = F.group_norm_backward(dy, x, self._config["num_groups"], mean, rstd,
                                           _param_data(self.weight))
        if self.weight is not None:
            self.weight.accumulate_grad(dw, "GroupNorm.backward", owned=True)
            self.bias.accumulate_grad(db, "GroupNorm.backward", owned=True)
        return dx


class _InstanceNorm(Module):
    _ndim = 3  # of a batched input

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=False,
                 track_running_stats=False, dtype=np.float32):
        super().__init__()
        op = type(self).__name__
        self._config = dict(num_features=check_int(op, "num_features", num_features, 1),
                            eps=check_eps(op, eps),
                            # None is PyTorch's "no momentum": the running statistics stay put
                            momentum=None if momentum is None else check_momentum(op, momentum),
                            affine=check_bool(op, "affine", affine),
                            track_running_stats=check_bool(op, "track_running_stats",
                                                           track_running_stats))
        c = self._config["num_features"]
        self.weight = self._param("weight", constant(c, 1, dtype)) if affine else None
        self.bias = self._param("bias", constant(c, 0, dtype)) if affine else None
        if track_running_stats:
            self._buffer("running_mean", constant(c, 0, dtype))
            self._buffer("running_var", constant(c, 1, dtype))
            # in the state dict as in PyTorch, which never counts instance-norm batches
            self._buffer("num_batches_tracked", constant((), 0, np.int64))
        self._cache = None

    def forward(self, x):
        op = type(self).__name__
        if not is_device_array(x):
            x = np.asarray(x)
        nd = self._ndim
        if x.ndim not in (nd - 1, nd):
            raise ValueError(f"{op}: expected a {nd - 1}-D (unbatched) or {nd}-D input, got "
                             f"shape {tuple(x.shape)}")
        unbatched = x.ndim == nd - 1
        if unbatched:
            x = x[None]
        cfg = self._config
        tracking = cfg["track_running_stats"]
        C = x.shape[1]
        if C != cfg["num_features"]:
            if cfg["affine"] or tracking:
                raise ValueError(
                    f"{op}: expected {cfg['num_features']} channels (num_features) at dim "
                    f"{1 - unbatched}, got input of shape {tuple(x.shape[unbatched:])}")
            warnings.warn(f"{op}: the input's {C} channels do not match num_features="
                          f"{cfg['num_features']} (unused, since affine=False)", stacklevel=2)
        # PyTorch: own statistics in training mode, and in eval mode when nothing is tracked
        use_input_stats = self.training or not tracking
        y, mean, rstd = F.instance_norm(
            x, self._buffers["running_mean"] if tracking else None,
            self._buffers["running_var"] if tracking else None, _param_data(self.weight),
            _param_data(self.bias), use_input_stats,
            0.0 if cfg["momentum"] is None else cfg["momentum"], cfg["eps"], return_stats=True)
        self._cache = (x, mean, rstd, use_input_stats, unbatched) if self._keep() else None
        return y[0] if unbatched else y

    def backward(self, dy):
        if self._cache is None:
            raise _no_cache(type(self).__name__)
        x, mean, rstd, use_input_stats, unbatched = self._cache
        if unbatched:
            dy = np.asarray(dy)[None]
        dx, dw, db = F.instance_norm_backward(dy, x, mean, rstd, _param_data(self.weight),
                                              use_input_stats)
        if self.weight is not None:
            self.weight.accumulate_grad(dw, f"{type(self).__name__}.backward", owned=True)
            self.bias.accumulate_grad(db, f"{type(self).__name__}.backward", owned=True)
        return dx[0] if unbatched else dx


class InstanceNorm1d(_InstanceNorm):
    """Instance normalisation over (N, C, L) or unbatched (C, L) inputs, as
    ``torch.nn.InstanceNorm1d``.

    Every channel of every sample is normalised by its own mean and biased variance over
    ``L``.  With ``track_running_stats`` the running statistics (``running_mean`` zeros,
    ``running_var`` ones) are updated in training mode, ``running = (1 - momentum) * running +
    momentum * batch_mean(stat)`` with the unbiased variance, and used instead in eval mode;
    ``momentum=None`` keeps them as they are.  ``affine`` adds a learnable per-channel
    ``weight`` (ones) and ``bias`` (zeros).  With ``affine=False`` and no tracking,
    ``num_features`` is not used (a mismatch warns, as in PyTorch).

    Parameters
    ----------
    num_features : int
    eps : float, default 1e-5
    momentum : float or None, default 0.1
    affine : bool, default False
    track_running_stats : bool, default False
    dtype : numpy dtype, default float32

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> y = nc.nn.InstanceNorm1d(2)(np.array([[1.0, 3.0], [0.0, 4.0]]))   # unbatched (C, L)
    >>> np.asarray(y).round(3).tolist()
    [[-1.0, 1.0], [-1.0, 1.0]]
    """

    _ndim = 3


class InstanceNorm2d(_InstanceNorm):
    """Instance normalisation over (N, C, H, W) or unbatched (C, H, W) inputs, as
    ``torch.nn.InstanceNorm2d``; see :class:`InstanceNorm1d` for the statistics.

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> m = nc.nn.InstanceNorm2d(3, affine=True, track_running_stats=True)
    >>> y = m(np.random.default_rng(0).standard_normal((2, 3, 4, 5)).astype(np.float32))
    >>> y.shape, sorted(m.state_dict())
    ((2, 3, 4, 5), ['bias', 'num_batches_tracked', 'running_mean', 'running_var', 'weight'])
    """

    _ndim = 4


class LayerNorm(Module):
    """Layer normalisation over the trailing ``normalized_shape``, as ``torch.nn.LayerNorm``.

    Every sample (the values over the last ``len(normalized_shape)`` axes) is normalised by
    its own mean and biased variance, then scaled by ``weight`` (ones) and shifted by
    ``bias`` (zeros), elementwise, both of shape ``normalized_shape``.

    Parameters
    ----------
    normalized_shape : int or tuple of int
        The trailing shape of the inputs normalised over, e.g. ``(C, H, W)`` for images.
    eps : float, default 1e-5
    elementwise_affine : bool, default True
        Learnable ``weight`` (and ``bias`` unless ``bias=False``).
    bias : bool, default True
    dtype : numpy dtype, default float32

    Shapes: input (*, *normalized_shape) -> output of the same shape.

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> ln = nc.nn.LayerNorm((3, 4))
    >>> y = ln(np.arange(24, dtype=np.float32).reshape(2, 3, 4))
    >>> y.shape, [n for n, _ in ln.named_parameters()]
    ((2, 3, 4), ['weight', 'bias'])
    """

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True,
                 dtype=np.float32):
        super().__init__()
        op = "LayerNorm"
        shape = _normalized_shape(op, normalized_shape)
        elementwise_affine = check_bool(op, "elementwise_affine", elementwise_affine)
        bias = check_bool(op, "bias", bias)
        self._config = dict(normalized_shape=list(shape), eps=check_eps(op, eps),
                            elementwise_affine=elementwise_affine, bias=bias)
        self.normalized_shape = shape
        self.weight = (self._param("weight", constant(shape, 1, dtype)) if elementwise_affine
                       else None)
        self.bias = (self._param("bias", constant(shape, 0, dtype))
                     if elementwise_affine and bias else None)
        self._cache = None

    def forward(self, x):
        y, mean, rstd = F.layer_norm(x, self.normalized_shape, _param_data(self.weight),
                                     _param_data(self.bias), self._config["eps"],
                                     return_stats=True)
        self._cache = (x, mean, rstd) if self._keep() else None
        return y

    def backward(self, dy):
        if self._cache is None:
            raise _no_cache("LayerNorm")
        x, mean, rstd = self._cache
        dx, dw, db = F.layer_norm_backward(
            dy, x, self.normalized_shape, mean, rstd, _param_data(self.weight),
            affine=self.weight is not None or self.bias is not None)
        if self.weight is not None:
            self.weight.accumulate_grad(dw, "LayerNorm.backward", owned=True)
        if self.bias is not None:
            self.bias.accumulate_grad(db, "LayerNorm.backward", owned=True)
        return dx

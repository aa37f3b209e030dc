"""Weight initialisation: PyTorch's ``torch.nn.init`` functions, and the layers' defaults.

The public functions (``kaiming_uniform_``, ``xavier_normal_``, ``trunc_normal_``, ...) fill
a :class:`~nbconv.nn.Parameter` (its ``data``) or a writeable float32/float64 NumPy array in
place and return it.  They draw from the library generator that :func:`nbconv.manual_seed`
seeds, or from ``generator`` (a ``numpy.random.Generator``) when given; values are drawn in
float64 and rounded to the array's dtype.  Fan-in and fan-out are PyTorch's: for a weight of
shape ``(d0, d1, *k)`` (Linear ``(out, in)``, Conv ``(C_out, C_in/groups, kh, kw)``),
``fan_in = d1 * prod(k)`` and ``fan_out = d0 * prod(k)``.

The layers' own default initialisation is PyTorch's ``kaiming_uniform_(a=sqrt(5))`` on the
weight, which works out to U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and the same bound for the bias
(:func:`uniform_fan_in`).

>>> import numpy as np, nbconv as nc
>>> conv = nc.nn.Conv2d(3, 8, 3)
>>> nc.manual_seed(0)
>>> w = nc.nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
>>> w is conv.weight, conv.weight.data.dtype
(True, dtype('float32'))
>>> b = nc.nn.init.zeros_(conv.bias)
>>> float(np.abs(conv.bias.data).max())
0.0
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from .._checks import check_real
from .modes import bump_state_version
from .module import Parameter, building_placeholders, default_rng, placeholder

__all__ = ["calculate_gain", "uniform_", "normal_", "trunc_normal_", "constant_", "zeros_",
           "ones_", "xavier_uniform_", "xavier_normal_", "kaiming_uniform_",
           "kaiming_normal_"]

_LINEAR = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
           "conv_transpose3d")


def calculate_gain(nonlinearity: str, param=None) -> float:
    """The recommended gain for a nonlinearity (PyTorch's values).

    Parameters
    ----------
    nonlinearity : str
        ``"linear"``, ``"conv1d"``/``"conv2d"``/``"conv3d"``, ``"conv_transpose1d"``/``2d``/
        ``3d``, ``"sigmoid"`` (all 1), ``"tanh"`` (5/3), ``"relu"`` (sqrt(2)),
        ``"leaky_relu"`` (sqrt(2/(1 + slope**2))) or ``"selu"`` (3/4).
    param : float, optional
        The negative slope of ``"leaky_relu"`` (default 0.01); ignored otherwise.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        An unknown ``nonlinearity``, or a ``param`` that is not a number.

    Examples
    --------
    >>> import nbconv as nc
    >>> nc.nn.init.calculate_gain("tanh")
    1.6666666666666667
    >>> round(nc.nn.init.calculate_gain("leaky_relu", 0.2), 6)
    1.38675
    """
    if nonlinearity in _LINEAR or nonlinearity == "sigmoid":
        return 1
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif (not isinstance(param, (bool, np.bool_))
              and isinstance(param, (numbers.Real, np.integer, np.floating))):
            slope = float(param)
        else:
            raise ValueError(f"calculate_gain: argument 'param' (the negative slope) must be a "
                             f"number, got {param!r}")
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"calculate_gain: unsupported nonlinearity {nonlinearity!r} (expected one "
                     f"of {list(_LINEAR) + ['sigmoid', 'tanh', 'relu', 'leaky_relu', 'selu']})")


def _calculate_fan_in_and_fan_out(tensor) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a weight of shape ``(d0, d1, *k)``: ``(d1*prod(k),
    d0*prod(k))`` (PyTorch's rule); ValueError for fewer than two dimensions."""
    shape = tuple(np.shape(tensor.data if isinstance(tensor, Parameter) else tensor))
    if len(shape) < 2:
        raise ValueError(f"fan in and fan out cannot be computed for argument 'tensor' with "
                         f"fewer than 2 dimensions (shape {shape})")
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def _target(op: str, tensor) -> np.ndarray | None:
    """The array that ``op`` fills in place (None while layers are built as placeholders)."""
    arr = tensor.data if isinstance(tensor, Parameter) else tensor
    if building_placeholders():
        return None
    if type(arr) is not np.ndarray:
        if hasattr(arr, "__cuda_array_interface__"):
            raise TypeError(f"{op}: argument 'tensor' is a CUDA device array; initialise the "
                            "model on the host, then move it with nbconv.cuda.to_device")
        raise TypeError(f"{op}: argument 'tensor' must be a Parameter or a NumPy array, got "
                        f"{type(tensor).__name__}")
    if arr.dtype not in (np.float32, np.float64):
        raise TypeError(f"{op}: argument 'tensor' must be float32 or float64, got {arr.dtype}")
    if not arr.flags.writeable:
        raise ValueError(f"{op}: argument 'tensor' is read-only (shape {arr.shape}); it is "
                         "filled in place")
    bump_state_version()  # compiled models holding a copy of it must look again
    return arr


def _generator(op: str, generator) -> np.random.Generator:
    if generator is None:
        return default_rng()
    if not isinstance(generator, np.random.Generator):
        raise TypeError(f"{op}: argument 'generator' must be a numpy.random.Generator or None, "
                        f"got {type(generator).__name__}")
    return generator


def _fill(arr: np.ndarray, values) -> None:
    arr[...] = np.asarray(values, dtype=np.float64)


def uniform_(tensor, a: float = 0.0, b: float = 1.0, generator=None):
    """Fill ``tensor`` in place from U(a, b) and return it.

    Parameters
    ----------
    tensor : Parameter or ndarray (float32 or float64, writeable)
    a, b : float
        ``a <= b``.
    generator : numpy.random.Generator, optional
        Defaults to the generator seeded by :func:`nbconv.manual_seed`.

    Returns
    -------
    tensor
        The same object.

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> w = nc.nn.init.uniform_(np.empty((2, 3)), -1, 1, generator=np.random.default_rng(0))
    >>> bool((np.abs(w) <= 1).all())
    True
    """
    op = "uniform_"
    arr = _target(op, tensor)
    a, b = check_real(op, "a", a), check_real(op, "b", b)
    if a > b:
        raise ValueError(f"{op}: argument 'a' must be <= 'b', got a={a}, b={b}")
    rng = _generator(op, generator)
    if arr is not None:
        _fill(arr, rng.uniform(a, b, size=arr.shape))
    return tensor


def normal_(tensor, mean: float = 0.0, std: float = 1.0, generator=None):
    """Fill ``tensor`` in place from N(mean, std**2) and return it.

    Parameters
    ----------
    tensor : Parameter or ndarray (float32 or float64, writeable)
    mean : float, default 0
    std : float, default 1
        >= 0.
    generator : numpy.random.Generator, optional

    Returns
    -------
    tensor

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> w = nc.nn.init.normal_(np.empty(4, np.float32), std=0.02)
    >>> w.dtype
    dtype('float32')
    """
    op = "normal_"
    arr = _target(op, tensor)
    mean, std = check_real(op, "mean", mean), check_real(op, "std", std, 0.0)
    rng = _generator(op, generator)
    if arr is not None:
        _fill(arr, rng.normal(mean, std, size=arr.shape))
    return tensor


def trunc_normal_(tensor, mean: float = 0.0, std: float = 1.0, a: float = -2.0, b: float = 2.0,
                  generator=None):
    """Fill ``tensor`` in place from N(mean, std**2) truncated to [a, b] and return it.

    ``a`` and ``b`` are absolute bounds (not in units of ``std``), as in PyTorch.  Values are
    drawn by inverting the normal CDF on the interval (in log space, from the nearer tail), so
    intervals far in a tail are sampled exactly too.

    Parameters
    ----------
    tensor : Parameter or ndarray (float32 or float64, writeable)
    mean : float, default 0
    std : float, default 1
        >= 0 (0 fills with ``mean`` clipped to [a, b]).
    a, b : float, default -2, 2
        ``a <= b``; either may be infinite.
    generator : numpy.random.Generator, optional

    Returns
    -------
    tensor

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> w = nc.nn.init.trunc_normal_(np.empty(1000), std=0.02, a=-0.04, b=0.04)
    >>> bool((np.abs(w) <= 0.04).all())
    True
    """
    op = "trunc_normal_"
    arr = _target(op, tensor)
    mean, std = check_real(op, "mean", mean), check_real(op, "std", std, 0.0)
    a, b = check_real(op, "a", a, finite=False), check_real(op, "b", b, finite=False)
    if a > b:
        raise ValueError(f"{op}: argument 'a' must be <= 'b', got a={a}, b={b}")
    rng = _generator(op, generator)
    if arr is None:
        return tensor
    if std == 0 or a == b:
        _fill(arr, np.full(arr.shape, a if a == b else min(max(mean, a), b)))
        return tensor
    lo, hi = (a - mean) / std, (b - mean) / std
    _fill(arr, np.clip(mean + std * _standard_truncated(rng, lo, hi, arr.shape), a, b))
    return tensor


def _standard_truncated(rng, lo: float, hi: float, shape) -> np.ndarray:
    """Standard normal samples truncated to [lo, hi], by the inverse CDF in log space."""
    from scipy.special import log_ndtr, ndtri_exp

    flip = lo + hi > 0  # sample the mirror interval, whose lower tail holds the precision
    if flip:
        lo, hi = -hi, -lo
    log_lo, log_hi = log_ndtr(lo), log_ndtr(hi)
    ratio = np.exp(log_lo - log_hi)  # Phi(lo) / Phi(hi), in [0, 1]
    u = rng.random(size=shape)
    with np.errstate(divide="ignore"):  # u = 0 at ratio 0 maps to -inf, clipped to lo
        x = ndtri_exp(log_hi + np.log(ratio + u * (1.0 - ratio)))
    x = np.clip(x, lo, hi)
    return -x if flip else x


def constant_(tensor, val: float):
    """Fill ``tensor`` in place with ``val`` and return it.

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> nc.nn.init.constant_(np.empty(3), 0.5)
    array([0.5, 0.5, 0.5])
    """
    op = "constant_"
    arr = _target(op, tensor)
    if isinstance(val, (bool, np.bool_)) or not isinstance(val, (numbers.Real, np.integer,
                                                                  np.floating)):
        raise TypeError(f"{op}: argument 'val' must be a real number, got {val!r}")
    if arr is not None:
        arr[...] = val
    return tensor


def zeros_(tensor):
    """Fill ``tensor`` in place with zeros and return it (see :func:`constant_`)."""
    return constant_(tensor, 0.0)


def ones_(tensor):
    """Fill ``tensor`` in place with ones and return it (see :func:`constant_`)."""
    return constant_(tensor, 1.0)


def _xavier_std(op: str, tensor, gain) -> float:
    gain = check_real(op, "gain", gain)
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return gain * math.sqrt(2.0 / (fan_in + fan_out)) if fan_in + fan_out else 0.0


def xavier_uniform_(tensor, gain: float = 1.0, generator=None):
    """Glorot/Xavier uniform: U(-bound, bound), ``bound = gain*sqrt(6/(fan_in + fan_out))``.

    Parameters
    ----------
    tensor : Parameter or ndarray with at least 2 dimensions
    gain : float, default 1
    generator : numpy.random.Generator, optional

    Returns
    -------
    tensor

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> fc = nc.nn.Linear(20, 10)
    >>> _ = nc.nn.init.xavier_uniform_(fc.weight, gain=nc.nn.init.calculate_gain("tanh"))
    >>> bool(np.abs(fc.weight.data).max() <= 5 / 3 * np.sqrt(6 / 30))
    True
    """
    op = "xavier_uniform_"
    arr = _target(op, tensor)
    bound = math.sqrt(3.0) * _xavier_std(op, tensor, gain)
    rng = _generator(op, generator)
    if arr is not None and arr.size:
        _fill(arr, rng.uniform(-bound, bound, size=arr.shape))
    return tensor


def xavier_normal_(tensor, gain: float = 1.0, generator=None):
    """Glorot/Xavier normal: N(0, std**2), ``std = gain*sqrt(2/(fan_in + fan_out))``.

    Parameters
    ----------
    tensor : Parameter or ndarray with at least 2 dimensions
    gain : float, default 1
    generator : numpy.random.Generator, optional

    Returns
    -------
    tensor

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> w = nc.nn.init.xavier_normal_(np.empty((64, 32, 3, 3)))
    >>> w.shape
    (64, 32, 3, 3)
    """
    op = "xavier_normal_"
    arr = _target(op, tensor)
    std = _xavier_std(op, tensor, gain)
    rng = _generator(op, generator)
    if arr is not None and arr.size:
        _fill(arr, rng.normal(0.0, std, size=arr.shape))
    return tensor


def _kaiming_std(op: str, tensor, a, mode, nonlinearity) -> float:
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"{op}: argument 'mode' must be 'fan_in' or 'fan_out', got {mode!r}")
    a = check_real(op, "a", a)
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    fan = fan_in if mode == "fan_in" else fan_out
    gain = calculate_gain(nonlinearity, a)
    return gain / math.sqrt(fan) if fan else 0.0


def kaiming_uniform_(tensor, a: float = 0.0, mode: str = "fan_in",
                     nonlinearity: str = "leaky_relu", generator=None):
    """He/Kaiming uniform: U(-bound, bound), ``bound = gain*sqrt(3/fan)``.

    Parameters
    ----------
    tensor : Parameter or ndarray with at least 2 dimensions
    a : float, default 0
        The negative slope of the rectifier after this layer (``"leaky_relu"`` only).
    mode : {"fan_in", "fan_out"}, default "fan_in"
        ``"fan_in"`` keeps the forward pass's variance, ``"fan_out"`` the backward pass's.
    nonlinearity : str, default "leaky_relu"
        As :func:`calculate_gain` takes it (``"relu"``, ``"leaky_relu"``, ...).
    generator : numpy.random.Generator, optional

    Returns
    -------
    tensor

    Examples
    --------
    >>> import math, numpy as np, nbconv as nc
    >>> conv = nc.nn.Conv2d(4, 8, 3)
    >>> _ = nc.nn.init.kaiming_uniform_(conv.weight, nonlinearity="relu")
    >>> bool(np.abs(conv.weight.data).max() <= math.sqrt(6 / 36))
    True
    """
    op = "kaiming_uniform_"
    arr = _target(op, tensor)
    bound = math.sqrt(3.0) * _kaiming_std(op, tensor, a, mode, nonlinearity)
    rng = _generator(op, generator)
    if arr is not None and arr.size:  # PyTorch: a zero-element tensor is left as it is
        _fill(arr, rng.uniform(-bound, bound, size=arr.shape))
    return tensor


def kaiming_normal_(tensor, a: float = 0.0, mode: str = "fan_in",
                    nonlinearity: str = "leaky_relu", generator=None):
    """He/Kaiming normal: N(0, std**2), ``std = gain/sqrt(fan)``.

    Parameters
    ----------
    tensor : Parameter or ndarray with at least 2 dimensions
    a : float, default 0
        The negative slope of the rectifier after this layer (``"leaky_relu"`` only).
    mode : {"fan_in", "fan_out"}, default "fan_in"
    nonlinearity : str, default "leaky_relu"
    generator : numpy.random.Generator, optional

    Returns
    -------
    tensor

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> w = nc.nn.init.kaiming_normal_(np.empty((16, 8)), mode="fan_out", nonlinearity="relu",
    ...                                generator=np.random.default_rng(1))
    >>> w.shape
    (16, 8)
    """
    op = "kaiming_normal_"
    arr = _target(op, tensor)
    std = _kaiming_std(op, tensor, a, mode, nonlinearity)
    rng = _generator(op, generator)
    if arr is not None and arr.size:
        _fill(arr, rng.normal(0.0, std, size=arr.shape))
    return tensor


# -- the layers' defaults (used by nbconv.nn.layers; unchanged draws for seeded models) -----
def constant(shape, value, dtype) -> np.ndarray:
    """``numpy.full(shape, value, dtype)`` (a placeholder while building placeholders)."""
    if building_placeholders():
        return placeholder(shape, dtype)
    return np.full(shape, value, dtype)


def as_generator(op: str, rng) -> np.random.Generator | None:
    """A layer's ``rng`` argument as a Generator: None stays None (the library generator is
    used at draw time), an int is a seed, a Generator is used as is; anything else (a model
    file's stray JSON value, say) is a TypeError naming ``op`` and the argument."""
    if rng is None or isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (numbers.Integral, np.integer)) and not isinstance(rng, (bool, np.bool_)):
        if rng < 0:
            raise ValueError(f"{op}: argument 'rng' must be a non-negative seed, got {rng}")
        return np.random.default_rng(int(rng))
    raise TypeError(f"{op}: argument 'rng' must be None, an int seed or a "
                    f"numpy.random.Generator, got {rng!r:.60} ({type(rng).__name__})")


def uniform_fan_in(shape, fan_in: int, dtype, rng=None) -> np.ndarray:
    """Draw ``shape`` from U(-1/sqrt(fan_in), 1/sqrt(fan_in)) in ``dtype``.

    Parameters
    ----------
    shape : tuple of int
    fan_in : int
        Inputs feeding one output (``in_channels // groups * kh * kw`` or ``in_features``).
    dtype : numpy dtype
    rng : numpy.random.Generator, optional
        Defaults to the library generator seeded by :func:`nbconv.manual_seed`.
    """
    if rng is not None and not isinstance(rng, np.random.Generator):
        rng = as_generator("uniform_fan_in", rng)
    if building_placeholders():
        return placeholder(shape, dtype)
    rng = default_rng() if rng is None else rng
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    return rng.uniform(-bound, bound, size=shape).astype(dtype)

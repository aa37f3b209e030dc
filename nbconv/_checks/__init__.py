"""Pure-Python argument handling shared by every public op.

Nothing here touches numba.  Each helper takes the public op's name (``op``) so that every error
message says which call failed, which argument was wrong and the shapes involved, e.g.::

    ValueError: conv2d: argument 'weight' has 3 input channels per group but 'x' has 4
    (x shape (2, 4, 9, 9), weight shape (6, 3, 3, 3), groups=1)
"""

from __future__ import annotations

import math
import numbers

import numpy as np

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")

__all__ = [
    "PADDING_MODES",
    "as_float_array",
    "check_ndim",
    "conv_output_size",
    "conv_padding",
    "out_size",
    "pair",
    "single",
    "check_padding_mode",
    "check_bool",
    "check_int",
    "check_real",
    "MAX_INT",
]

#: The largest integer hyperparameter accepted (stride, padding, sizes, ...).  The kernels
#: index with int64; nothing larger can describe an array that fits in memory, and larger
#: values would overflow inside numba instead of failing here with the argument's name.
MAX_INT = 2**62


def _is_int(v) -> bool:
    return isinstance(v, (numbers.Integral, np.integer)) and not isinstance(v, (bool, np.bool_))


def check_int(op: str, name: str, v, minimum: int | None = None) -> int:
    """Return ``v`` as a Python int in ``[minimum, MAX_INT]``, or raise TypeError/ValueError
    naming ``name``.  Booleans and floats (even integral ones, e.g. ``2.0``) are refused."""
    if not _is_int(v):
        raise TypeError(f"{op}: argument '{name}' must be an int, got {v!r} ({type(v).__name__})")
    v = int(v)
    if minimum is not None and v < minimum:
        raise ValueError(f"{op}: argument '{name}' must be >= {minimum}, got {v}")
    if abs(v) > MAX_INT:
        raise ValueError(f"{op}: argument '{name}' must be at most 2**62 in magnitude, got {v}")
    return v


def check_bool(op: str, name: str, v) -> bool:
    """Return ``v`` as a Python bool; only ``bool`` and ``numpy.bool_`` are accepted (the
    string ``"False"`` is truthy, so reading it as a flag would silently do the opposite)."""
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    raise TypeError(
        f"{op}: argument '{name}' must be a bool (True or False), got {v!r} ({type(v).__name__})"
    )


def check_real(op: str, name: str, v, low: float | None = None, high: float | None = None, *,
               low_open: bool = False, high_open: bool = False, finite: bool = True) -> float:
    """Return ``v`` as a Python float in the interval from ``low`` to ``high`` (closed unless
    ``low_open``/``high_open``), or raise TypeError/ValueError naming ``name``.

    Ints, floats and numpy scalars are accepted; bools, strings, None and arrays are not.
    ``finite=False`` admits inf (NaN never passes a range check and is always refused)."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (numbers.Real, np.integer,
                                                             np.floating)):
        raise TypeError(
            f"{op}: argument '{name}' must be a real number, got {v!r} ({type(v).__name__})"
        )
    f = float(v)
    too_low = low is not None and not (f > low if low_open else f >= low)  # NaN: too low
    too_high = high is not None and not (f < high if high_open else f <= high)
    if too_low or too_high:
        if low is not None and high is not None:
            rule = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        elif low is not None:
            rule = f"{'>' if low_open else '>='} {low:g}"
        else:
            rule = f"{'<' if high_open else '<='} {high:g}"
        raise ValueError(f"{op}: argument '{name}' must be {rule}, got {v!r}")
    if math.isnan(f) or (finite and math.isinf(f)):
        raise ValueError(f"{op}: argument '{name}' must be a finite number, got {v!r}")
    return f


def pair(op: str, name: str, v, minimum: int | None = None) -> tuple[int, int]:
    """Normalise an int or a pair of ints to a tuple ``(vertical, horizontal)``."""
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(f"{op}: argument '{name}' must be an int or a pair, got {v!r}")
        return (check_int(op, name, v[0], minimum), check_int(op, name, v[1], minimum))
    v = check_int(op, name, v, minimum)
    return (v, v)


def single(op: str, name: str, v, minimum: int | None = None) -> int:
    """Normalise an int or a 1-tuple of ints (a 1-D hyperparameter) to an int."""
    if isinstance(v, (tuple, list)):
        if len(v) != 1:
            raise ValueError(f"{op}: argument '{name}' must be an int or a 1-tuple, got {v!r}")
        v = v[0]
    return check_int(op, name, v, minimum)


_NATIVE = (np.dtype(np.float32), np.dtype(np.float64))


def as_float_array(op: str, name: str, x, dtype=None) -> np.ndarray:
    """Return ``x`` as a C-contiguous float32/float64 array.

    Dtype policy (documented in the README): float32 and float64 are kept; integer and bool
    inputs are cast to float32 (pixels, labels-as-floats); float16 and complex raise TypeError.
    With ``dtype`` given (the dtype of the op's main input), ``x`` is cast to it.
    """
    if (type(x) is np.ndarray and x.dtype in _NATIVE and x.flags.c_contiguous
            and (dtype is None or x.dtype == dtype)):
        return x  # the common case, without np.require's overhead (~3 µs a call)
    if hasattr(x, "__cuda_array_interface__") and not isinstance(x, np.ndarray):
        raise TypeError(
            f"{op}: argument '{name}' is a CUDA device array but the other inputs are on the "
            "host; move them all with nbconv.cuda.to_device or nbconv.cuda.to_host"
        )
    a = np.asarray(x)
    kind = a.dtype.kind
    if kind == "c":
        raise TypeError(f"{op}: argument '{name}' is complex ({a.dtype}); nbconv ops are real")
    if kind == "f" and a.dtype.itemsize < 4:
        raise TypeError(
            f"{op}: argument '{name}' has dtype {a.dtype}; use float32 or float64 "
            "(float16 is not supported on the CPU)"
        )
    if kind not in "fiub":
        raise TypeError(f"{op}: argument '{name}' has unsupported dtype {a.dtype}")
    if dtype is None:
        dtype = a.dtype if kind == "f" and a.dtype.itemsize in (4, 8) else np.float32
        if kind == "f" and a.dtype.itemsize > 8:
            raise TypeError(f"{op}: argument '{name}' has dtype {a.dtype}; use float32/float64")
    # np.require, unlike np.ascontiguousarray, keeps 0-d arrays 0-d.
    return np.require(a, dtype=dtype, requirements="C")


def check_ndim(op: str, name: str, a: np.ndarray, ndim: int, layout: str) -> None:
    """Raise ValueError unless ``a.ndim == ndim``; ``layout`` is e.g. ``"(N, C, H, W)"``."""
    if a.ndim != ndim:
        raise ValueError(
            f"{op}: argument '{name}' must be {ndim}-D {layout}, got shape {tuple(a.shape)}"
        )


def check_padding_mode(op: str, padding_mode) -> str:
    if not isinstance(padding_mode, str):  # (an array would make `in` ambiguous)
        raise TypeError(
            f"{op}: argument 'padding_mode' must be a string, one of {PADDING_MODES}, got "
            f"{type(padding_mode).__name__}"
        )
    if padding_mode not in PADDING_MODES:
        raise ValueError(
            f"{op}: argument 'padding_mode' must be one of {PADDING_MODES}, got {padding_mode!r}"
        )
    return padding_mode


def out_size(n: int, k: int, s: int, p_before: int, p_after: int, d: int, ceil_mode: bool) -> int:
    """Output length of a window sweep (PyTorch's rule; may be < 1, callers check).

    ``floor((n + p_before + p_after - d*(k-1) - 1) / s) + 1``; with ``ceil_mode`` the ceiling,
    dropping the last window if it would start past the input and the left padding.
    """
    span = n + p_before + p_after - d * (k - 1) - 1
    if not ceil_mode:
        return max(span // s + 1, 0)
    # PyTorch rounds towards -inf, so a window that only partly covers the input (span < 0,
    # e.g. with dilation) still counts when it starts inside it
    o = (span + s - 1) // s + 1
    if (o - 1) * s >= n + p_before:
        o -= 1
    return max(o, 0)


def conv_output_size(size, kernel_size, stride=1, padding=0, dilation=1, ceil_mode=False) -> int:
    """Length of a convolution or pooling output along one axis.

    ``out = floor((size + 2*padding - dilation*(kernel_size-1) - 1) / stride) + 1``; with
    ``ceil_mode=True`` the ceiling, but the last window must start inside the input or the left
    padding (PyTorch's rule).

    Parameters
    ----------
    size, kernel_size : int
        Input length (>= 1) and kernel length (>= 1).
    stride, dilation : int
        >= 1.
    padding : int
        Zero padding on *each* side (>= 0).
    ceil_mode : bool
        Round up instead of down.

    Returns
    -------
    int
        The output length (>= 1).

    Raises
    ------
    ValueError
        If an argument is out of range or the output would be empty.

    Examples
    --------
    >>> from nbconv import conv_output_size
    >>> conv_output_size(28, 5), conv_output_size(224, 11, stride=4, padding=2)
    (24, 55)
    >>> conv_output_size(7, 2, stride=3, ceil_mode=True)
    3
    """
    op = "conv_output_size"
    size = check_int(op, "size", size, 1)
    kernel_size = check_int(op, "kernel_size", kernel_size, 1)
    stride = check_int(op, "stride", stride, 1)
    padding = check_int(op, "padding", padding, 0)
    dilation = check_int(op, "dilation", dilation, 1)
    o = out_size(size, kernel_size, stride, padding, padding, dilation,
                 check_bool(op, "ceil_mode", ceil_mode))
    if o < 1:
        raise ValueError(
            f"{op}: output size would be {o} < 1 for size={size}, kernel_size={kernel_size}, "
            f"padding={padding}, dilation={dilation} (effective kernel "
            f"{dilation * (kernel_size - 1) + 1} is larger than the padded input "
            f"{size + 2 * padding})"
        )
    return o


def conv_padding(op: str, padding, in_hw, k_hw, stride, dilation) -> tuple[int, int, int, int]:
    """Normalise ``padding`` to ``(top, bottom, left, right)``.

    ``"valid"`` is no padding.  ``"same"`` follows TensorFlow: output = ceil(input / stride) and
    the total padding ``max((out-1)*s + d*(k-1) + 1 - n, 0)`` is split with the odd pixel at the
    bottom/right.
    """
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0, 0, 0)
        if padding == "same":
            # the rule's one definition is in .conv (imported here: .conv imports this module)
            from .conv import same_padding

            return tuple(p for args in zip(in_hw, k_hw, stride, dilation)
                         for p in same_padding(*args))
        raise ValueError(
            f"{op}: argument 'padding' must be an int, a pair, 'same' or 'valid', got {padding!r}"
        )
    ph, pw = pair(op, "padding", padding, 0)
    return (ph, ph, pw, pw)

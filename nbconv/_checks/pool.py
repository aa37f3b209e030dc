"""Argument handling of the pooling ops, shared by the host ops (:mod:`nbconv.functional.pool`)
and their device twins (:mod:`nbconv.cuda.pool`): window hyperparameters, input shapes, divisors."""

from __future__ import annotations

import numbers

import numpy as np

from . import as_float_array, check_bool, check_int, out_size, pair


def window_args(op, shape, kernel_size, stride, padding, dilation, ceil_mode):
    """Validate the window hyperparameters against the input ``shape``; return the output
    spatial size and the normalised ``(kh, kw), (sy, sx), (ph, pw), (dh, dw)``."""
    kh, kw = pair(op, "kernel_size", kernel_size, 1)
    if stride is None:
        sy, sx = kh, kw
    else:
        sy, sx = pair(op, "stride", stride, 1)
    ph, pw = pair(op, "padding", padding, 0)
    dh, dw = pair(op, "dilation", dilation, 1)
    if ph > kh // 2 or pw > kw // 2:
        raise ValueError(
            f"{op}: argument 'padding' {(ph, pw)} must be at most half of the kernel size "
            f"{(kh, kw)} (padding <= kernel_size // 2 on each axis)"
        )
    H, W = shape[-2:]
    ceil_mode = check_bool(op, "ceil_mode", ceil_mode)
    oh = out_size(H, kh, sy, ph, ph, dh, ceil_mode)
    ow = out_size(W, kw, sx, pw, pw, dw, ceil_mode)
    if oh < 1 or ow < 1:
        raise ValueError(
            f"{op}: argument 'kernel_size' {(kh, kw)} (dilation {(dh, dw)}, effective "
            f"{((kh - 1) * dh + 1, (kw - 1) * dw + 1)}) is larger than the padded input "
            f"{(H + 2 * ph, W + 2 * pw)} (x shape {tuple(shape)}, padding {(ph, pw)}, "
            f"stride {(sy, sx)}): output size would be {(oh, ow)}"
        )
    return (oh, ow), (kh, kw), (sy, sx), (ph, pw), (dh, dw)


def shape_tuple(op: str, input_shape, ndims) -> tuple:
    """``input_shape`` as a tuple of ints with a length in ``ndims``, H and W >= 1."""
    try:
        shape = tuple(input_shape)
    except TypeError:
        raise TypeError(
            f"{op}: argument 'input_shape' must be a tuple of ints, got {input_shape!r}"
        ) from None
    if not all(
        isinstance(v, (numbers.Integral, np.integer)) and not isinstance(v, (bool, np.bool_))
        for v in shape
    ):
        raise TypeError(f"{op}: argument 'input_shape' must be a tuple of ints, got {shape!r}")
    shape = tuple(int(v) for v in shape)
    if len(shape) not in ndims:
        want = " or ".join(str(n) for n in ndims)
        raise ValueError(
            f"{op}: argument 'input_shape' must have {want} entries ((N, C, H, W) or (C, H, W)),"
            f" got {shape}"
        )
    if min(shape) < 0 or min(shape[-2:]) < 1:
        raise ValueError(
            f"{op}: argument 'input_shape' must have non-negative sizes and H, W >= 1, "
            f"got {shape}"
        )
    return shape


def check_input_shape(op: str, input_shape, dy: np.ndarray) -> tuple:
    """Validate ``input_shape`` against ``dy``: same ndim, same leading (N, C) / (C,) axes."""
    shape = shape_tuple(op, input_shape, (dy.ndim,))
    if shape[:-2] != tuple(dy.shape[:-2]):
        raise ValueError(
            f"{op}: argument 'input_shape' {shape} does not match dy shape {tuple(dy.shape)} "
            "in the batch/channel axes"
        )
    return shape


def check_divisor(op: str, divisor_override) -> int:
    if divisor_override is None:
        return 0
    d = check_int(op, "divisor_override", divisor_override)
    if d == 0:
        raise ValueError(f"{op}: argument 'divisor_override' must not be zero")
    return d


def avg_backward_args(op, dy, input_shape, kernel_size, stride, padding, ceil_mode,
                       divisor_override):
    """Validated ``(shape, divisor, (kh, kw), (sy, sx), (ph, pw))`` of an average-pooling
    backward pass for ``dy`` (host or device array); shared with the CUDA path."""
    shape = check_input_shape(op, input_shape, dy)
    div = check_divisor(op, divisor_override)
    (oh, ow), k, s, p, _ = window_args(op, shape, kernel_size, stride, padding, 1, ceil_mode)
    if tuple(dy.shape[-2:]) != (oh, ow):
        raise ValueError(
            f"{op}: argument 'dy' has spatial size {tuple(dy.shape[-2:])} but pooling "
            f"input_shape {shape} gives {(oh, ow)}"
        )
    return shape, div, k, s, p


def adaptive_size(op: str, output_size, hw) -> tuple[int, int]:
    if isinstance(output_size, (tuple, list)):
        if len(output_size) != 2:
            raise ValueError(
                f"{op}: argument 'output_size' must be an int or a pair, got {output_size!r}"
            )
        return tuple(
            n if v is None else check_int(op, "output_size", v, 1)
            for v, n in zip(output_size, hw)
        )
    v = check_int(op, "output_size", output_size, 1)
    return (v, v)


def pool_input(op: str, x, as_array=as_float_array):
    """``x`` as a float array of shape (N, C, H, W) or (C, H, W) with a non-empty plane;
    ``as_array`` converts it (the device ops pass their device-array counterpart)."""
    x = as_array(op, "x", x)
    if x.ndim not in (3, 4):
        raise ValueError(
            f"{op}: argument 'x' must be 4-D (N, C, H, W) or 3-D (C, H, W), "
            f"got shape {tuple(x.shape)}"
        )
    if 0 in x.shape[-2:]:
        raise ValueError(f"{op}: argument 'x' has an empty spatial size, shape {tuple(x.shape)}")
    return x


def pool_grad(op: str, dy, as_array=as_float_array):
    """``dy`` as a float array of shape (N, C, OH, OW) or (C, OH, OW)."""
    dy = as_array(op, "dy", dy)
    if dy.ndim not in (3, 4):
        raise ValueError(
            f"{op}: argument 'dy' must be 4-D (N, C, OH, OW) or 3-D (C, OH, OW), "
            f"got shape {tuple(dy.shape)}"
        )
    return dy

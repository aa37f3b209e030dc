"""Argument handling of the 1-D pooling ops, the adaptive/global max pools and channel dropout
(:mod:`nbconv.functional.pool1d`, :mod:`nbconv.functional.adaptive_pool`,
:mod:`nbconv.functional.channel_dropout`): 1-D windows, input shapes, argmax indices, masks."""

from __future__ import annotations

import numpy as np

from . import _is_int, as_float_array, check_bool, out_size, single

__all__ = ["window_args_1d", "pool1d_input", "pool1d_grad", "input_shape_1d",
           "adaptive_size_1d", "check_indices", "channel_mask_shape"]


def window_args_1d(op, shape, kernel_size, stride, padding, dilation, ceil_mode):
    """Validate 1-D window hyperparameters (ints or 1-tuples; ``stride=None`` is the kernel
    size) against the input ``shape`` (..., L); return ``(OL, k, s, p, d)``."""
    k = single(op, "kernel_size", kernel_size, 1)
    s = k if stride is None else single(op, "stride", stride, 1)
    p = single(op, "padding", padding, 0)
    d = single(op, "dilation", dilation, 1)
    if p > k // 2:
        raise ValueError(
            f"{op}: argument 'padding' {p} must be at most half of the kernel size {k} "
            "(padding <= kernel_size // 2)"
        )
    L = shape[-1]
    ol = out_size(L, k, s, p, p, d, check_bool(op, "ceil_mode", ceil_mode))
    if ol < 1:
        raise ValueError(
            f"{op}: argument 'kernel_size' {k} (dilation {d}, effective {(k - 1) * d + 1}) is "
            f"larger than the padded input {L + 2 * p} (x shape {tuple(shape)}, padding {p}, "
            f"stride {s}): output size would be {ol}"
        )
    return ol, k, s, p, d


def pool1d_input(op: str, x) -> np.ndarray:
    """``x`` as a float array of shape (N, C, L) or (C, L) with L >= 1."""
    x = as_float_array(op, "x", x)
    if x.ndim not in (2, 3):
        raise ValueError(
            f"{op}: argument 'x' must be 3-D (N, C, L) or 2-D (C, L), got shape {tuple(x.shape)}"
        )
    if x.shape[-1] == 0:
        raise ValueError(f"{op}: argument 'x' has an empty length L, shape {tuple(x.shape)}")
    return x


def pool1d_grad(op: str, dy) -> np.ndarray:
    """``dy`` as a float array of shape (N, C, OL) or (C, OL)."""
    dy = as_float_array(op, "dy", dy)
    if dy.ndim not in (2, 3):
        raise ValueError(
            f"{op}: argument 'dy' must be 3-D (N, C, OL) or 2-D (C, OL), "
            f"got shape {tuple(dy.shape)}"
        )
    return dy


def input_shape_1d(op: str, input_shape, dy: np.ndarray) -> tuple:
    """``input_shape`` (N, C, L) or (C, L) validated against ``dy``: same ndim, same leading
    axes, L >= 1."""
    try:
        shape = tuple(input_shape)
    except TypeError:
        shape = None
    if isinstance(input_shape, str) or shape is None or not all(_is_int(v) for v in shape):
        raise TypeError(
            f"{op}: argument 'input_shape' must be a tuple of ints, got {input_shape!r}"
        )
    shape = tuple(int(v) for v in shape)
    if len(shape) != dy.ndim:
        raise ValueError(
            f"{op}: argument 'input_shape' {shape} must have {dy.ndim} entries like dy shape "
            f"{tuple(dy.shape)} ((N, C, L) or (C, L))"
        )
    if min(shape) < 0 or shape[-1] < 1:
        raise ValueError(
            f"{op}: argument 'input_shape' must have non-negative sizes and L >= 1, got {shape}"
        )
    if shape[:-1] != tuple(dy.shape[:-1]):
        raise ValueError(
            f"{op}: argument 'input_shape' {shape} does not match dy shape {tuple(dy.shape)} "
            "in the batch/channel axes"
        )
    return shape


def adaptive_size_1d(op: str, output_size) -> int:
    """An adaptive 1-D output size: an int >= 1 or a 1-tuple of one."""
    return single(op, "output_size", output_size, 1)


def check_indices(op: str, indices, dy: np.ndarray, plane: int) -> np.ndarray:
    """Argmax ``indices`` as C-contiguous int64 of ``dy``'s shape with values in
    ``[-1, plane)`` (``plane``: the elements of one unpooled (n, c) plane)."""
    ind = np.asarray(indices)
    if ind.dtype.kind not in "iu":
        raise TypeError(
            f"{op}: argument 'indices' must be an integer array (int64 from the forward pass), "
            f"got dtype {ind.dtype}"
        )
    if ind.shape != dy.shape:
        raise ValueError(
            f"{op}: argument 'indices' shape {tuple(ind.shape)} does not match "
            f"dy shape {tuple(dy.shape)}"
        )
    ind = np.ascontiguousarray(ind, dtype=np.int64)
    if ind.size and (ind.min() < -1 or ind.max() >= plane):
        raise ValueError(
            f"{op}: argument 'indices' has values in [{ind.min()}, {ind.max()}], outside "
            f"[0, {plane})"
        )
    return ind


def channel_mask_shape(op: str, mask: np.ndarray, dy: np.ndarray) -> None:
    """Check that a channel-dropout ``mask`` fits ``dy``: ``dy``'s leading (batch, channel)
    axes followed by ones, ``(N, C, 1, 1)`` for ``(N, C, H, W)``, as the forward pass made it."""
    ok = mask.ndim == dy.ndim and mask.ndim >= 2
    if ok:
        lead = mask.ndim
        while lead > 0 and mask.shape[lead - 1] == 1:
            lead -= 1
        # a size-1 axis of dy may be on either side of the split: compare the leading part
        ok = mask.shape[:lead] == dy.shape[:lead]
    if not ok:
        raise ValueError(
            f"{op}: argument 'mask' shape {tuple(mask.shape)} does not fit dy shape "
            f"{tuple(dy.shape)}: it must be dy's leading (batch, channel) axes followed by "
            "ones, as the forward pass returned it"
        )

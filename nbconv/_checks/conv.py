"""Argument handling of the convolutions, shared by :mod:`nbconv.functional.conv` and
:mod:`nbconv.cuda.conv`: the geometry (strides, padding, dilation, groups and output size,
validated and normalised into a :class:`Geom`), bias and output-gradient shapes, unbatched
inputs, the ``algorithm`` argument."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import (
    as_float_array,
    check_int,
    check_ndim,
    check_padding_mode,
    conv_padding,
    out_size,
    pair,
    single,
)

ALGORITHMS = ("auto", "direct", "im2col", "winograd", "tapgemm")


#: numpy.pad mode of each non-zero padding mode (PyTorch semantics).
NP_PAD_MODE = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}


X_LAYOUT = "(N, C, H, W)"


X_LAYOUTS = "(N, C, H, W) or unbatched (C, H, W)"  # host arrays; the device path takes 4-D


W_LAYOUT = "(F, C // groups, kh, kw)"


#: padded inputs of up to this many values are always accepted (see geometry's size check)
PADDED_SLACK = 1 << 26


class Geom(NamedTuple):
    sy: int
    sx: int
    dh: int
    dw: int
    groups: int
    pt: int
    pb: int
    pl: int
    pr: int
    mode: str
    OH: int
    OW: int


def geometry(op, x_shape, w_shape, stride, padding, dilation, groups, padding_mode, desc,
              axes=("H", "W")) -> Geom:
    """Validate and normalise everything but the arrays' dtypes; ``desc`` lists user shapes."""
    try:
        groups = check_int(op, "groups", groups, 1)
        sy, sx = pair(op, "stride", stride, 1)
        dh, dw = pair(op, "dilation", dilation, 1)
    except ValueError as e:
        raise ValueError(f"{e} ({desc})") from None
    check_padding_mode(op, padding_mode)
    N, C, H, W = x_shape
    F, Cg, kh, kw = w_shape
    if C == 0 or H == 0 or W == 0:
        raise ValueError(f"{op}: argument 'x' has an empty channel or spatial dimension ({desc})")
    if 0 in w_shape:
        raise ValueError(f"{op}: argument 'weight' has an empty dimension ({desc})")
    if C % groups:
        raise ValueError(
            f"{op}: argument 'groups'={groups} does not divide the {C} input channels of 'x' "
            f"({desc})"
        )
    if F % groups:
        raise ValueError(
            f"{op}: argument 'groups'={groups} does not divide the {F} output channels of "
            f"'weight' ({desc})"
        )
    if Cg != C // groups:
        nhwc = ("; nbconv's layout is NCHW and 'x' looks like NHWC (channels last): pass "
                "x.transpose(0, 3, 1, 2)" if len(x_shape) == 4 and tuple(x_shape)[3] == Cg * groups
                else "")
        raise ValueError(
            f"{op}: argument 'weight' has {Cg} input channels per group but 'x' has "
            f"{C} channels / groups={groups} = {C // groups} ({desc}){nhwc}"
        )
    try:
        pt, pb, pl, pr = conv_padding(op, padding, (H, W), (kh, kw), (sy, sx), (dh, dw))
    except ValueError as e:
        raise ValueError(f"{e} ({desc})") from None
    if padding_mode != "zeros":
        for name, n, pads in ((axes[0], H, (pt, pb)), (axes[1], W, (pl, pr))):
            limit_ok = (
                max(pads) < n if padding_mode == "reflect"
                else max(pads) <= n if padding_mode == "circular" else True
            )
            if not limit_ok:
                rule = "< the input size" if padding_mode == "reflect" else "<= the input size"
                raise ValueError(
                    f"{op}: argument 'padding' {pads} along {name} is too large for "
                    f"padding_mode={padding_mode!r} (needs padding {rule} {n}; {desc})"
                )
    OH = out_size(H, kh, sy, pt, pb, dh, False)
    OW = out_size(W, kw, sx, pl, pr, dw, False)
    for name, n, k, d, p0, p1, o in ((axes[0], H, kh, dh, pt, pb, OH),
                                     (axes[1], W, kw, dw, pl, pr, OW)):
        if o < 1:
            raise ValueError(
                f"{op}: argument 'weight' is too large: along {name} the effective kernel "
                f"{d * (k - 1) + 1} (kernel {k}, dilation {d}) exceeds the padded input "
                f"{n + p0 + p1} (input {n}, padding {(p0, p1)}), output size would be {o} < 1 "
                f"({desc})"
            )
    padded = N * C * (H + pt + pb) * (W + pl + pr)
    if padded > 16 * (N * C * H * W + N * F * OH * OW) + PADDED_SLACK:
        # some drivers pad explicitly: refuse padding that would dwarf the input and output
        raise ValueError(
            f"{op}: argument 'padding' {(pt, pb, pl, pr)} (top, bottom, left, right) is too "
            f"large: the padded input ({N}, {C}, {H + pt + pb}, {W + pl + pr}) would hold "
            f"{padded} values, more than 16 times the input and output together ({desc})"
        )
    return Geom(sy, sx, dh, dw, groups, pt, pb, pl, pr, padding_mode, OH, OW)


def want_bias(bias) -> bool:
    if bias is None:
        return False
    if isinstance(bias, (bool, np.bool_)):
        return bool(bias)
    return True  # e.g. the bias array itself: "this layer has a bias"


def check_bias(op, bias, dtype, F, desc, as_array=as_float_array):
    """``bias`` as an array of ``dtype`` and shape ``(F,)``, or None; ``as_array`` converts it
    (the device ops pass their device-array counterpart of ``as_float_array``)."""
    if bias is None:
        return None
    bias = as_array(op, "bias", bias, dtype=dtype)
    if tuple(bias.shape) != (F,):
        raise ValueError(
            f"{op}: argument 'bias' must have shape ({F},) (one value per output channel), got "
            f"shape {tuple(bias.shape)} ({desc})"
        )
    return bias


def check_dy(op, dy, expected, desc):
    if tuple(dy.shape) != tuple(expected):
        raise ValueError(
            f"{op}: argument 'dy' has shape {tuple(dy.shape)} but the convolution output has "
            f"shape {tuple(expected)} ({desc})"
        )


def batched(op, x, ndim, layout):
    """``x`` with a batch axis (``(x, False)`` when it has one, ``(x[None], True)`` for the
    unbatched input PyTorch also takes); any other ndim raises ValueError naming ``x``."""
    if x.ndim == ndim - 1:
        return x[None], True
    check_ndim(op, "x", x, ndim, layout)
    return x, False


def batched_grad(op, dy, unbatched, ndim, layout, x_shape=None):
    """``dy`` with the batch axis that :func:`batched` gave ``x`` (dy must match x;
    ``x_shape``, x's shape as given, goes into the message)."""
    if unbatched:
        x_was = "" if x_shape is None else f" of shape {tuple(x_shape)}"
        check_ndim(op, "dy", dy, ndim - 1,
                   f"({layout[len('(N, '):]} like the unbatched argument 'x'{x_was}")
        return dy[None]
    check_ndim(op, "dy", dy, ndim, layout)
    return dy


def conv1d_args(op, stride, padding, dilation):
    s = single(op, "stride", stride, 1)
    d = single(op, "dilation", dilation, 1)
    if isinstance(padding, str):
        if padding not in ("same", "valid"):
            raise ValueError(
                f"{op}: argument 'padding' must be an int, 'same' or 'valid', got {padding!r}"
            )
        p = padding
    else:
        p = (0, single(op, "padding", padding, 0))
    return (1, s), p, (1, d)


def winograd_supports(kh, kw, sy, sx, dh, dw, groups) -> bool:
    """Whether the Winograd kernels cover this geometry."""
    return (sy, sx, dh, dw, groups) == (1, 1, 1, 1, 1) and 2 <= kh <= 9 and 2 <= kw <= 9


def check_algorithm(op, algorithm, kh, kw, g: Geom) -> None:
    """Refuse an unknown ``algorithm`` and ``"winograd"`` where its kernels do not apply."""
    if algorithm not in ALGORITHMS:
        raise ValueError(
            f"{op}: argument 'algorithm' must be one of {ALGORITHMS}, got {algorithm!r}"
        )
    if algorithm == "winograd" and not winograd_supports(kh, kw, g.sy, g.sx, g.dh, g.dw,
                                                         g.groups):
        raise ValueError(
            f"{op}: algorithm 'winograd' needs a kernel of 2 to 9 taps a side, stride 1, "
            f"dilation 1 and groups 1; got kernel {(kh, kw)}, stride {(g.sy, g.sx)}, dilation "
            f"{(g.dh, g.dw)}, groups {g.groups}"
        )
    if algorithm == "tapgemm" and g.groups != 1:
        raise ValueError(f"{op}: algorithm 'tapgemm' needs groups 1, got groups {g.groups}")

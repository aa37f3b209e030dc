"""Argument handling of the transposed convolutions: their hyperparameters validated as
PyTorch validates them, and turned into the :class:`~nbconv._checks.conv.Geom` of the
convolution whose data gradient the transposed convolution is.

``conv_transpose2d(x, W)`` maps ``(N, C_in, H, W)`` to ``(N, C_out, H_out, W_out)``; the
convolution with the same weight ``(C_in, C_out // groups, kh, kw)`` (``C_in`` filters) maps
``(N, C_out, H_out, W_out)`` back to ``(N, C_in, H, W)``.  ``output_padding`` adds rows and
columns at the bottom and right of the transposed convolution's output, which that
convolution does not read: its bottom/right padding is ``padding - output_padding``, or 0 when
that is negative (the convolution then leaves the last rows unread, as any convolution whose
stride does not divide its input).
"""

from __future__ import annotations

from typing import NamedTuple

from . import check_int, pair
from .conv import Geom


class TransposeHyper(NamedTuple):
    """A transposed convolution's hyperparameters, validated before the shapes are known
    (what its layer validates once)."""

    sy: int
    sx: int
    dh: int
    dw: int
    groups: int
    ph: int
    pw: int
    oph: int
    opw: int


def transpose_hyper(op, stride, padding, output_padding, groups, dilation,
                    desc=None) -> TransposeHyper:
    """Validate and normalise the hyperparameters of :func:`nbconv.conv_transpose2d`
    (``desc``, the user's shapes, goes into the messages when given)."""
    try:
        groups = check_int(op, "groups", groups, 1)
        sy, sx = pair(op, "stride", stride, 1)
        dh, dw = pair(op, "dilation", dilation, 1)
        ph, pw = pair(op, "padding", padding, 0)
        oph, opw = pair(op, "output_padding", output_padding, 0)
    except ValueError as e:
        raise ValueError(f"{e}" + ("" if desc is None else f" ({desc})")) from None
    return TransposeHyper(sy, sx, dh, dw, groups, ph, pw, oph, opw)


def transpose_geometry(op, x_shape, w_shape, stride, padding, output_padding, groups, dilation,
                       desc, axes=("H", "W")):
    """Validate a transposed convolution of ``x_shape`` ``(N, C_in, H, W)`` with ``w_shape``
    ``(C_in, C_out // groups, kh, kw)``; ``desc`` lists the user's shapes for messages.

    Returns
    -------
    g : Geom
        The geometry of the convolution from the output ``(N, C_out, H_out, W_out)`` to
        ``x``'s ``(H, W)``.
    y_shape : tuple of int
        ``(N, C_out, H_out, W_out)`` with ``H_out = (H - 1)*sy - 2*ph + dh*(kh - 1) + oph + 1``.

    Raises
    ------
    ValueError
        Non-positive stride/dilation/groups, negative padding/output_padding, an
        output_padding not smaller than the stride or the dilation, empty dimensions, channel
        counts that ``groups`` does not divide or that do not match, an output size < 1.
    TypeError
        Non-integer hyperparameters.
    """
    th = transpose_hyper(op, stride, padding, output_padding, groups, dilation, desc)
    return transpose_shaped(op, x_shape, w_shape, th, desc, axes)


def transpose_shaped(op, x_shape, w_shape, th: TransposeHyper, desc, axes=("H", "W")):
    """``(g, y_shape)`` of :func:`transpose_geometry` from validated hyperparameters ``th``:
    the checks that depend on the shapes."""
    sy, sx, dh, dw, groups, ph, pw, oph, opw = th
    N, C, H, W = x_shape
    Cw, Fg, kh, kw = w_shape
    if C == 0 or H == 0 or W == 0:
        raise ValueError(f"{op}: argument 'x' has an empty channel or spatial dimension ({desc})")
    if 0 in w_shape:
        raise ValueError(f"{op}: argument 'weight' has an empty dimension ({desc})")
    if Cw != C:
        raise ValueError(
            f"{op}: argument 'weight' has {Cw} input channels (its first axis, the layout is "
            f"(C_in, C_out // groups, kh, kw)) but 'x' has {C} channels ({desc})")
    if C % groups:
        raise ValueError(
            f"{op}: argument 'groups'={groups} does not divide the {C} input channels of 'x' "
            f"({desc})")
    for name, o, s, d in ((axes[0], oph, sy, dh), (axes[1], opw, sx, dw)):
        if o >= s and o >= d:
            raise ValueError(
                f"{op}: argument 'output_padding' {o} along {name} must be smaller than either "
                f"the stride {s} or the dilation {d} ({desc})")
    out = []
    for name, n, k, s, p, d, o in ((axes[0], H, kh, sy, ph, dh, oph),
                                   (axes[1], W, kw, sx, pw, dw, opw)):
        size = (n - 1) * s - 2 * p + d * (k - 1) + o + 1
        if size < 1:
            raise ValueError(
                f"{op}: the output size along {name} would be {size} < 1: (input {n} - 1) * "
                f"stride {s} - 2 * padding {p} + dilation {d} * (kernel {k} - 1) + "
                f"output_padding {o} + 1 ({desc})")
        out.append(size)
    g = Geom(sy, sx, dh, dw, groups, ph, max(ph - oph, 0), pw, max(pw - opw, 0), "zeros", H, W)
    return g, (N, Fg * groups, out[0], out[1])

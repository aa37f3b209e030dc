"""Argument handling of the convolutions, shared by :mod:`nbconv.functional.conv`,
:mod:`nbconv.cuda.conv` and the layers: the hyperparameters (strides, padding, dilation,
groups, padding mode: validated once into a :class:`Hyper`, which a layer keeps), the geometry
of a call (a :class:`Geom`, from a :class:`Hyper` and the shapes), bias and output-gradient
shapes, unbatched inputs, the ``algorithm`` argument."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from . import (
    as_float_array,
    check_int,
    check_ndim,
    check_padding_mode,
    pair,
    single,
)

ALGORITHMS = ("auto", "direct", "im2col", "winograd", "tapgemm")


#: numpy.pad mode of each non-zero padding mode (PyTorch semantics).
NP_PAD_MODE = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}


X_LAYOUT = "(N, C, H, W)"


X_LAYOUTS = "(N, C, H, W) or unbatched (C, H, W)"  # host arrays; the device path takes 4-D


W_LAYOUT = "(F, C // groups, kh, kw)"


X1_LAYOUTS = "(N, C, L) or unbatched (C, L)"


W1_LAYOUT = "(F, C // groups, k)"


#: the names of the spatial axes in messages: of images, of sequences (images of height 1)
AXES, AXES_1D = ("H", "W"), ("(height 1)", "L")


#: padded inputs of up to this many values are always accepted (see geometry's size check)
PADDED_SLACK = 1 << 26


class Geom(NamedTuple):
    """The geometry of one convolution call: what the engine, the plan and the drivers pass
    around, unpacked into ints only at the numba kernels' calls.

    ``sy, sx`` strides, ``dh, dw`` dilation, ``groups``, ``pt, pb, pl, pr`` the padding on the
    top, bottom, left and right (the drivers read only ``pt`` and ``pl``: the bottom and right
    padding follow from the output size), ``mode`` the padding mode (the drivers only see
    ``"zeros"``: the engine pads other modes), ``OH, OW`` the output size.
    """

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

    @classmethod
    def of(cls, x_shape, w_shape, stride=1, padding=0, dilation=1, groups=1,
           padding_mode="zeros") -> Geom:
        """The validated geometry of a convolution of ``x_shape`` (N, C, H, W) with
        ``w_shape`` (F, C // groups, kh, kw), arguments as :func:`nbconv.conv2d`'s.

        >>> from nbconv._checks.conv import Geom
        >>> Geom.of((1, 1, 5, 5), (1, 1, 3, 3), stride=2, padding=1)
        Geom(sy=2, sx=2, dh=1, dw=1, groups=1, pt=1, pb=1, pl=1, pr=1, mode='zeros', OH=3, OW=3)
        """
        desc = f"x shape {tuple(x_shape)}, weight shape {tuple(w_shape)}"
        return geometry("Geom.of", x_shape, w_shape, stride, padding, dilation, groups,
                        padding_mode, desc)

    def spread(self, kh, kw, H, W) -> Geom:
        """The stride-1 layer (kernel ``kh x kw`` on an ``H x W`` input) whose gradients are
        this one's when ``dy`` is spread to stride 1 (``sy - 1`` zero rows and ``sx - 1`` zero
        columns between its own); the rows and columns the stride left unread lose their
        bottom and right padding."""
        OH, OW = (self.OH - 1) * self.sy + 1, (self.OW - 1) * self.sx + 1
        return self._replace(sy=1, sx=1, OH=OH, OW=OW,
                             pb=OH - 1 + self.dh * (kh - 1) + 1 - H - self.pt,
                             pr=OW - 1 + self.dw * (kw - 1) + 1 - W - self.pl)

    def data_gradient(self, kh, kw, H, W) -> Geom:
        """The geometry of this stride-1 layer's data gradient seen as a forward convolution
        of ``dy`` with the flipped kernel (``kh x kw``) onto the ``H x W`` input: padding
        ``dh*(kh - 1) - pt`` on the top and ``dw*(kw - 1) - pl`` on the left (negative values
        crop)."""
        ekh, ekw = self.dh * (kh - 1), self.dw * (kw - 1)
        pt, pl = ekh - self.pt, ekw - self.pl
        return self._replace(pt=pt, pl=pl, pb=H + ekh - self.OH - pt, pr=W + ekw - self.OW - pl,
                             OH=H, OW=W)


class Hyper(NamedTuple):
    """A convolution's hyperparameters, validated before the shapes are known: what a layer
    validates once, in ``__init__``, and keeps; ``padding`` is ``(pt, pb, pl, pr)`` or
    ``"same"`` (its split depends on the input size)."""

    sy: int
    sx: int
    dh: int
    dw: int
    groups: int
    padding: tuple | str
    mode: str


def hyper(op, stride, padding, dilation, groups, padding_mode, desc=None) -> Hyper:
    """Validate and normalise the hyperparameters of :func:`nbconv.conv2d` (``desc``, the
    user's shapes, goes into the messages when given)."""
    suffix = "" if desc is None else f" ({desc})"
    try:
        groups = check_int(op, "groups", groups, 1)
        sy, sx = pair(op, "stride", stride, 1)
        dh, dw = pair(op, "dilation", dilation, 1)
    except ValueError as e:
        raise ValueError(f"{e}{suffix}") from None
    check_padding_mode(op, padding_mode)
    if isinstance(padding, str):
        if padding not in ("same", "valid"):
            raise ValueError(f"{op}: argument 'padding' must be an int, a pair, 'same' or "
                             f"'valid', got {padding!r}{suffix}")
        pads = padding if padding == "same" else (0, 0, 0, 0)
    else:
        try:
            ph, pw = pair(op, "padding", padding, 0)
        except ValueError as e:
            raise ValueError(f"{e}{suffix}") from None
        pads = (ph, ph, pw, pw)
    return Hyper(sy, sx, dh, dw, groups, pads, padding_mode)


def same_padding(n, k, s, d):
    """TensorFlow's "same" padding of one axis: output ``ceil(n / s)``, the total padding
    ``max((out - 1)*s + d*(k - 1) + 1 - n, 0)`` with the odd pixel after."""
    total = max((math.ceil(n / s) - 1) * s + d * (k - 1) + 1 - n, 0)
    return total // 2, total - total // 2


def geometry(op, x_shape, w_shape, stride, padding, dilation, groups, padding_mode, desc,
             axes=("H", "W")) -> Geom:
    """Validate and normalise everything but the arrays' dtypes; ``desc`` lists user shapes."""
    h = hyper(op, stride, padding, dilation, groups, padding_mode, desc)
    return shaped(op, x_shape, w_shape, h, desc, axes)


def shaped(op, x_shape, w_shape, h: Hyper, desc, axes=("H", "W")) -> Geom:
    """The :class:`Geom` of validated hyperparameters ``h`` on these shapes, with the checks
    that depend on the shapes (channels and groups, the output size, the padding a non-zero
    padding mode allows); ``desc`` lists the user's shapes.  Nothing here calls back into
    :mod:`nbconv._checks` (one file on a layer's way to its kernel)."""
    N, C, H, W = x_shape
    F, Cg, kh, kw = w_shape
    sy, sx, dh, dw, groups, pads, padding_mode = h
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
    if pads == "same":
        pads = (*same_padding(H, kh, sy, dh), *same_padding(W, kw, sx, dw))
    pt, pb, pl, pr = pads
    if padding_mode != "zeros":
        for name, n, p in ((axes[0], H, (pt, pb)), (axes[1], W, (pl, pr))):
            limit_ok = (
                max(p) < n if padding_mode == "reflect"
                else max(p) <= n if padding_mode == "circular" else True
            )
            if not limit_ok:
                rule = "< the input size" if padding_mode == "reflect" else "<= the input size"
                raise ValueError(
                    f"{op}: argument 'padding' {p} along {name} is too large for "
                    f"padding_mode={padding_mode!r} (needs padding {rule} {n}; {desc})"
                )
    # PyTorch's output size (out_size of nbconv._checks, inline: see the docstring)
    OH = max((H + pt + pb - dh * (kh - 1) - 1) // sy + 1, 0)
    OW = max((W + pl + pr - dw * (kw - 1) - 1) // sx + 1, 0)
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


_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def as_hyper(op, h, nd=2, desc=None) -> Hyper:
    """``h`` as a validated :class:`Hyper`: ``h`` itself when it is one, else the raw
    ``(stride, padding, dilation, groups, padding_mode)`` of a ``nd``-D convolution
    (1 or 2) validated by :func:`hyper`."""
    if isinstance(h, Hyper):
        return h
    stride, padding, dilation, groups, padding_mode = h
    if nd == 1:
        stride, padding, dilation = conv1d_args(op, stride, padding, dilation)
    return hyper(op, stride, padding, dilation, groups, padding_mode, desc)


def conv_call(op, x, weight, bias, h, nd=2, with_bias=True):
    """``(x, weight, bias, unbatched, g)``: the arrays as the engine takes them (4-D: a 1-D
    call (``nd=1``) as images of height 1; one float dtype, C-contiguous; ``bias`` (F,) or
    None), whether ``x`` came unbatched, and their :class:`Geom`.

    ``h`` is a :class:`Hyper` validated before (a layer's, in its ``__init__``), or the raw
    ``(stride, padding, dilation, groups, padding_mode)`` of a functional call, validated here
    after the arrays (the messages then list their shapes).  With ``with_bias`` False,
    ``bias`` passes unchecked (the folded batch norm's shift).  Arrays that need nothing (the
    layers' usual inputs) are checked without a call outside this module."""
    ndim = nd + 2
    if not (type(x) is np.ndarray and type(weight) is np.ndarray and x.ndim == ndim
            and weight.ndim == ndim and x.dtype in _FLOATS and weight.dtype == x.dtype
            and x.flags.c_contiguous and weight.flags.c_contiguous):
        x = as_float_array(op, "x", x)
        x, unbatched = batched(op, x, ndim, X_LAYOUTS if nd == 2 else X1_LAYOUTS)
        weight = as_float_array(op, "weight", weight, dtype=x.dtype)
        check_ndim(op, "weight", weight, ndim, W_LAYOUT if nd == 2 else W1_LAYOUT)
    else:
        unbatched = False
    desc = f"x shape {tuple(x.shape[unbatched:])}, weight shape {tuple(weight.shape)}"
    if nd == 1:
        x, weight = x[:, :, None, :], weight[:, :, None, :]
    h = as_hyper(op, h, nd, desc)
    g = shaped(op, x.shape, weight.shape, h, desc, AXES if nd == 2 else AXES_1D)
    F = weight.shape[0]
    if with_bias and bias is not None and not (
            type(bias) is np.ndarray and bias.dtype == x.dtype and bias.shape == (F,)
            and bias.flags.c_contiguous):
        bias = check_bias(op, bias, x.dtype, F, desc)
    return x, weight, bias, unbatched, g


def backward_call(op, dy, x, weight, h, nd=2):
    """``(dy, x, weight, unbatched, g)`` of a backward call, as :func:`conv_call` (``h`` a
    validated :class:`Hyper` or the raw hyperparameters), with ``dy`` checked against the
    output shape."""
    ndim = nd + 2
    x = as_float_array(op, "x", x)
    x_shape = x.shape
    x, unbatched = batched(op, x, ndim, X_LAYOUTS if nd == 2 else X1_LAYOUTS)
    weight = as_float_array(op, "weight", weight, dtype=x.dtype)
    check_ndim(op, "weight", weight, ndim, W_LAYOUT if nd == 2 else W1_LAYOUT)
    dy = as_float_array(op, "dy", dy, dtype=x.dtype)
    desc = (f"dy shape {tuple(dy.shape)}, x shape {tuple(x_shape)}, "
            f"weight shape {tuple(weight.shape)}")
    dy = batched_grad(op, dy, unbatched, ndim, "(N, F, OH, OW)" if nd == 2 else "(N, F, OL)",
                      x_shape)
    if nd == 1:
        dy, x, weight = dy[:, :, None, :], x[:, :, None, :], weight[:, :, None, :]
    h = as_hyper(op, h, nd, desc)
    g = shaped(op, x.shape, weight.shape, h, desc, AXES if nd == 2 else AXES_1D)
    out = (x.shape[0], weight.shape[0], g.OH, g.OW)
    check_dy(op, dy if nd == 2 else dy[:, :, 0, :], out if nd == 2 else (*out[:2], g.OW), desc)
    return dy, x, weight, unbatched, g


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

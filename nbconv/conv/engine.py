"""The convolution engine's entry points: :func:`forward` and :func:`backward` run a validated
convolution (see :func:`nbconv._checks.conv.geometry`) by its :class:`~.convplan.ConvPlan`
(made once per shape by :mod:`nbconv.conv.convplan` from the rules of :mod:`nbconv.conv.plan`).

Between the public op and the driver they apply what every algorithm shares, once:

* the plan's kept taps (those that read only zero padding are dropped from the kernel);
* non-zero padding modes pad ``x`` explicitly, and the backward pass folds the padded
  gradient back onto ``x`` (the adjoint of padding);
* an empty batch gives an empty output (and zero weight gradients) without a driver call;
* inf and NaN reach exactly the outputs the definition says (:mod:`nbconv.conv.exact`):
  results holding them are recomputed, and a driver that cannot follow non-finite inputs
  (Winograd's transforms mix neighbouring values) leaves NaN for that recomputation.

The drivers (:mod:`~nbconv.conv.direct`, :mod:`~nbconv.conv.im2col`,
:mod:`~nbconv.conv.winograd`, :mod:`~nbconv.conv.tapgemm`) share one interface: C-contiguous
arrays of one float dtype, implicit zero padding on the top/left only (the bottom/right padding
is implied by the output size), results written into preallocated outputs, and the plan's
kernel families.

CUDA device arrays take :func:`device_forward` and :func:`device_backward`: the same stages on
the device plan and the device's driver table (:mod:`nbconv.cuda.conv_drivers`).
"""

from __future__ import annotations

import numpy as np

from .._checks.conv import NP_PAD_MODE, Geom
from ..kernels.norm import _batch_norm_fwd
from . import direct, im2col, tapgemm, winograd
from .convplan import ConvPlan, backward_plan, forward_plan
from .exact import exact_backward, exact_forward, finite_array

__all__ = ["forward", "backward", "data_gradient", "DRIVERS", "device_forward",
           "device_backward"]


#: the driver module of each algorithm: conv2d_forward(x, w, b, y, sy, sx, pt, pl, dh, dw,
#: groups, kernels) and conv2d_backward(dy, x, w, dx, gw, gb, sy, sx, pt, pl, dh, dw, groups,
#: kernels, spread), where dx None skips the data gradient and gw None the weight (and bias)
#: gradient, x then None too
DRIVERS = {"direct": direct, "im2col": im2col, "winograd": winograd, "tapgemm": tapgemm}


def _pad_input(x, g: Geom):
    """Explicitly padded ``x`` and the driver's (pt, pl) for the padding mode."""
    if g.mode == "zeros":
        return x, g.pt, g.pl
    xp = np.pad(x, ((0, 0), (0, 0), (g.pt, g.pb), (g.pl, g.pr)), mode=NP_PAD_MODE[g.mode])
    return np.ascontiguousarray(xp), 0, 0


def _fold_padding(dxp, H, W, g: Geom):
    """Adjoint of ``np.pad(x, ..., mode)``: add each padded pixel's gradient to its source."""
    np_mode = NP_PAD_MODE[g.mode]
    # src[i] = index of the input pixel that padded position i copies (the pad of an arange).
    src_h = np.pad(np.arange(H), (g.pt, g.pb), mode=np_mode)
    src_w = np.pad(np.arange(W), (g.pl, g.pr), mode=np_mode)
    t = dxp[:, :, g.pt:g.pt + H, :].copy()
    for i in [*range(g.pt), *range(g.pt + H, g.pt + H + g.pb)]:
        t[:, :, src_h[i], :] += dxp[:, :, i, :]
    dx = t[:, :, :, g.pl:g.pl + W].copy()
    for j in [*range(g.pl), *range(g.pl + W, g.pl + W + g.pr)]:
        dx[:, :, :, src_w[j]] += t[:, :, :, j]
    return dx


def _kept(weight, p: ConvPlan):
    """The weights of the plan's kept taps, C-contiguous (``weight`` itself when all)."""
    if p.taps is None:
        return weight
    r0, r1, c0, c1 = p.taps
    return np.ascontiguousarray(weight[:, :, r0:r1, c0:c1])


def forward(op, x, weight, bias, g: Geom, algorithm="auto", relu=False, scale=None, out=None):
    """The convolution of validated 4-D arrays of one dtype (then ``y = relu(y)`` with
    ``relu``) by the plan of ``algorithm`` (``"auto"`` or a named one) for these shapes.  With
    ``scale`` (F,) float64, ``y = conv(x, weight) * scale[f] + bias[f]`` (an inference batch
    norm folded in; ``bias`` then float64 too, or None).

    An empty batch gives an empty output without calling a driver.  Non-finite values go
    through :func:`exact_forward`: inputs holding inf or NaN skip the fast drivers when the
    inputs are smaller to check than the output (LeNet's first layer: 4.4x fewer values), else
    a fast result holding inf or NaN is recomputed (ReLU keeps NaN, so the check may follow
    it).  Winograd always has its result checked: huge finite inputs can overflow in its
    transforms, and it leaves NaN where its inputs are not finite.  Tap-GEMM and the direct
    kernels apply the ReLU in the pass that writes ``y``, tap-GEMM the scale too; otherwise
    they are one more pass (:func:`_epilogue`).

    ``out``, a C-contiguous (N, F, OH, OW) array of ``x``'s dtype, receives the result in
    place of a fresh array (a planned network's buffer, :mod:`nbconv.inference`).
    """
    y = np.empty((x.shape[0], weight.shape[0], g.OH, g.OW), dtype=x.dtype) if out is None else out
    if y.size == 0:
        return y
    p = forward_plan(op, x.shape, weight.shape, g, x.dtype, algorithm)
    weight, g, algorithm = _kept(weight, p), p.geometry, p.algorithm
    driver = DRIVERS[algorithm]
    xp, pt, pl = _pad_input(x, g)
    args = (g.sy, g.sx, pt, pl, g.dh, g.dw, g.groups)
    check_inputs = algorithm != "winograd" and x.size + weight.size < y.size
    conv_bias = bias if scale is None else None  # with a scale the shift comes after it
    done = False  # whether the scale, shift and ReLU are applied
    if check_inputs and not all(finite_array(a) for a in (x, weight, bias) if a is not None):
        exact_forward(xp, weight, conv_bias, y, *args)
    elif algorithm == "tapgemm":
        driver.conv2d_forward(xp, weight, bias, y, *args, p.kernels, relu=relu, scale=scale)
        done = True
    elif algorithm == "direct" and scale is None:
        driver.conv2d_forward(xp, weight, bias, y, *args, p.kernels, relu=relu)
        done = True
    else:
        driver.conv2d_forward(xp, weight, conv_bias, y, *args, p.kernels)
    if not check_inputs and not finite_array(y):
        exact_forward(xp, weight, conv_bias, y, *args)
        done = False
    if not done:
        _epilogue(y, scale, None if scale is None else bias, relu)
    return y


def _epilogue(y, scale, shift, relu):
    """``y = y * scale[f] + shift[f]`` (when ``scale`` is given; in float64, rounded once, as
    tap-GEMM does: the batch norm's own kernel), then ``relu``, in place."""
    if scale is not None:
        zeros = np.zeros(y.shape[1])  # the mean it subtracts; the shift when none is given
        y3 = y.reshape(y.shape[0], y.shape[1], -1)
        _batch_norm_fwd(y3, zeros, np.ascontiguousarray(scale, np.float64),
                        zeros if shift is None else np.ascontiguousarray(shift, np.float64), y3)
    if relu:
        direct.relu_in_place(y)


def backward(op, dy, x, weight, g: Geom, want_bias, need_dx, algorithm="auto"):
    """``(dx, gw, gb)`` of validated arrays (``dx`` None unless ``need_dx``, ``gb`` None unless
    ``want_bias``) by the backward plan of ``algorithm`` for these shapes; an empty batch
    gives an empty ``dx`` and zero weight and bias gradients, non-finite results are
    recomputed by :func:`exact_backward`."""
    if x.shape[0] == 0:
        return (np.empty(x.shape, dtype=x.dtype) if need_dx else None,
                np.zeros(weight.shape, dtype=x.dtype),
                np.zeros(weight.shape[0], dtype=x.dtype) if want_bias else None)
    full_shape = weight.shape
    p = backward_plan(op, x.shape, weight.shape, g, x.dtype, algorithm)
    weight, g, kept = _kept(weight, p), p.geometry, p.taps
    xp, pt, pl = _pad_input(x, g)
    dxp = np.empty(xp.shape, dtype=x.dtype) if need_dx else None
    gw = np.empty(weight.shape, dtype=x.dtype)
    gb = np.empty(weight.shape[0], dtype=x.dtype) if want_bias else None
    args = (g.sy, g.sx, pt, pl, g.dh, g.dw, g.groups)
    DRIVERS[p.algorithm].conv2d_backward(dy, xp, weight, dxp, gw, gb, *args, p.kernels,
                                         p.spread)
    exact_backward(dy, xp, weight, dxp, gw, gb, *args)
    if kept is not None:  # the dropped taps never read the input: zero gradient
        r0, r1, c0, c1 = kept
        gw_full = np.zeros(full_shape, dtype=x.dtype)
        gw_full[:, :, r0:r1, c0:c1] = gw
        gw = gw_full
    dx = dxp
    if need_dx and g.mode != "zeros":
        dx = _fold_padding(dxp, x.shape[2], x.shape[3], g)
    return dx, gw, gb


def data_gradient(op, dy, weight, g: Geom, x_shape, algorithm="auto"):
    """``dx`` alone, of shape ``x_shape``, for validated ``dy`` and ``weight``: the backward
    plan's data gradient without the weight gradient (no ``x`` is needed), which is the
    forward pass of the transposed convolution.  An empty batch gives an empty ``dx``;
    non-finite results are recomputed by :func:`exact_backward`."""
    if x_shape[0] == 0:
        return np.empty(x_shape, dtype=dy.dtype)
    p = backward_plan(op, x_shape, weight.shape, g, dy.dtype, algorithm)
    weight, g = _kept(weight, p), p.geometry
    N, C, H, W = x_shape
    explicit = g.mode != "zeros"
    dxp = np.empty((N, C, H + g.pt + g.pb, W + g.pl + g.pr) if explicit else x_shape,
                   dtype=dy.dtype)
    args = (g.sy, g.sx, 0 if explicit else g.pt, 0 if explicit else g.pl, g.dh, g.dw, g.groups)
    DRIVERS[p.algorithm].conv2d_backward(dy, None, weight, dxp, None, None, *args, p.kernels,
                                         p.spread)
    exact_backward(dy, None, weight, dxp, None, None, *args)
    return _fold_padding(dxp, H, W, g) if explicit else dxp


# ------------------------------------------------------------------------- CUDA device arrays


def _device():
    """The device's driver table and stage mechanisms (:mod:`nbconv.cuda.conv_drivers`),
    imported on first use: ``import nbconv`` never imports numba's CUDA target."""
    from ..cuda import conv_drivers

    return conv_drivers


def device_forward(op, x, weight, bias, g: Geom, algorithm="auto"):
    """:func:`forward` for validated CUDA device arrays (``bias`` (F,) or None): the same
    stages on the device plan (``device="cuda"``) and the device's drivers, the result a
    device array.

    An empty batch gives an empty output without a driver call; the plan's kept taps are
    copied on the device; a non-zero padding mode pads ``x`` on the device first.  Non-finite
    values: the direct kernels read only the taps inside ``x``, so inf and NaN follow the
    definition as they are; the implicit-GEMM kernels multiply the zeros of the padding, so the
    direct kernel recomputes the outputs they left non-finite -- elementwise, on the device,
    without copying anything to the host.
    """
    dev = _device()
    y = dev.empty((x.shape[0], weight.shape[0], g.OH, g.OW), x.dtype)
    if y.size == 0:
        return y
    p = forward_plan(op, x.shape, weight.shape, g, x.dtype, algorithm, device="cuda")
    weight, g = dev.take_taps(weight, p.taps), p.geometry
    xp, pt, pl = dev.pad_input(x, g)
    args = (g.sy, g.sx, pt, pl, g.dh, g.dw, g.groups)
    driver = dev.DRIVERS[p.algorithm]
    driver.conv2d_forward(xp, weight, bias, y, *args)
    if not driver.EXACT:
        dev.exact_forward(xp, weight, bias, y, *args)
    return y


def device_backward(op, dy, x, weight, g: Geom, want_bias, need_dx, algorithm="auto"):
    """:func:`backward` for validated CUDA device arrays: ``(dx, gw, gb)`` as device arrays
    (``dx`` None unless ``need_dx``, ``gb`` None unless ``want_bias``) by the device plan, with
    the stages of :func:`device_forward`: an empty batch gives an empty ``dx`` and zero weight
    and bias gradients, the dropped taps a zero weight gradient, a non-zero padding mode folds
    the padded gradient back onto ``x``, and non-finite gradients of the implicit-GEMM kernels
    are recomputed by the direct ones."""
    dev = _device()
    F, dt = weight.shape[0], x.dtype
    if x.shape[0] == 0:
        return (dev.empty(x.shape, dt) if need_dx else None, dev.zeros(weight.shape, dt),
                dev.zeros((F,), dt) if want_bias else None)
    full_shape = weight.shape
    p = backward_plan(op, x.shape, weight.shape, g, dt, algorithm, device="cuda")
    weight, g = dev.take_taps(weight, p.taps), p.geometry
    xp, pt, pl = dev.pad_input(x, g)
    dxp = dev.empty(xp.shape, dt) if need_dx else None
    gw = dev.empty(weight.shape, dt)
    gb = dev.empty((F,), dt) if want_bias else None
    args = (g.sy, g.sx, pt, pl, g.dh, g.dw, g.groups)
    driver = dev.DRIVERS[p.algorithm]
    driver.conv2d_backward(dy, xp, weight, dxp, gw, gb, *args)
    if not driver.EXACT:
        dev.exact_backward(dy, xp, weight, dxp, gw, *args)
    gw = dev.put_taps(gw, full_shape, p.taps)
    dx = dxp
    if need_dx and g.mode != "zeros":
        dx = dev.fold_padding(dxp, x.shape, g)
    return dx, gw, gb

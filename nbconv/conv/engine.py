"""The convolution engine's entry points: :func:`forward` and :func:`backward` run a validated
convolution (see :func:`nbconv._checks.conv.geometry`) by its :class:`~.convplan.ConvPlan`
(made once per shape by :mod:`nbconv.conv.convplan` from the rules of :mod:`nbconv.conv.plan`).

Between the public op and the driver they apply what every algorithm shares, once:

* the plan's kept taps (those that read only zero padding are dropped from the kernel);
* the padding stage (:func:`_padded`, the one place for host and device arrays alike):
  non-zero padding modes pad ``x`` explicitly, and the backward pass folds the padded
  gradient back onto ``x`` (the adjoint of padding); the drivers see zero padding only;
* an empty batch gives an empty output (and zero weight gradients) without a driver call;
* inf and NaN reach exactly the outputs the definition says (:mod:`nbconv.conv.exact`):
  results holding them are recomputed, and a driver that cannot follow non-finite inputs
  (Winograd's transforms mix neighbouring values) leaves NaN for that recomputation.

The drivers (:mod:`~nbconv.conv.direct`, :mod:`~nbconv.conv.im2col`,
:mod:`~nbconv.conv.winograd`, :mod:`~nbconv.conv.tapgemm`) share one interface: C-contiguous
arrays of one float dtype, the geometry as one :class:`~nbconv._checks.conv.Geom` (implicit
zero padding, of which they read the top/left: the bottom/right is implied by the output
size; ints only where they call the numba kernels), results written into preallocated
outputs, and the plan's kernel families.

CUDA device arrays take :func:`device_forward` and :func:`device_backward`: the same stages on
the device plan and the device's driver table (:mod:`nbconv.cuda.conv_drivers`).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .._blas import single_threaded_blas
from .._checks.conv import NP_PAD_MODE, Geom
from ..kernels.norm import _batch_norm_fwd
from . import direct, im2col, tapgemm, winograd
from .convplan import ConvPlan, backward_plan, forward_plan
from .exact import exact_backward, exact_forward, finite, finite_array

__all__ = ["forward", "prepare_forward", "bind_forward", "Prepared", "rows_layouts",
           "forward_rows", "pixel_rows", "panels", "kept_shape", "backward",
           "data_gradient", "DRIVERS", "device_forward", "device_backward"]


#: the driver module of each algorithm: conv2d_forward(x, w, b, y, g, kernels) and
#: conv2d_backward(dy, x, w, dx, gw, gb, g, kernels, spread), ``g`` the plan's
#: :class:`~nbconv._checks.conv.Geom` after the padding stage, where dx None skips the data
#: gradient and gw None the weight (and bias) gradient, x then None too
DRIVERS = {"direct": direct, "im2col": im2col, "winograd": winograd, "tapgemm": tapgemm}


# ------------------------------------------------------------------------ the padding stage


def _padded(x, g: Geom, pad):
    """The padding stage, the one place a padding mode is applied (host and device, every
    pass): ``(x, g)`` as the drivers take them.  Zero padding stays implicit (``x`` and ``g``
    as they are); another mode pads ``x`` explicitly with ``pad(x, g)`` and leaves the
    drivers a geometry without padding."""
    if g.mode == "zeros":
        return x, g
    return pad(x, g), _driver_geometry(g)


def _driver_geometry(g: Geom) -> Geom:
    """The geometry the drivers run after :func:`_padded`: ``g`` for zero padding; for another
    mode the same layer on the explicitly padded input (no padding, the same output size)."""
    if g.mode == "zeros":
        return g
    return g._replace(pt=0, pb=0, pl=0, pr=0, mode="zeros")


def _padded_shape(x_shape, g: Geom):
    """The shape of ``x`` after :func:`_padded`."""
    if g.mode == "zeros":
        return tuple(x_shape)
    N, C, H, W = x_shape
    return N, C, H + g.pt + g.pb, W + g.pl + g.pr


def _unpadded(dxp, x_shape, g: Geom, fold):
    """The adjoint of :func:`_padded`: the gradient of the padded input folded back onto
    ``x`` of ``x_shape`` by ``fold(dxp, x_shape, g)`` (``dxp`` itself for zero padding)."""
    if dxp is None or g.mode == "zeros":
        return dxp
    return fold(dxp, x_shape, g)


def _np_pad(x, g: Geom):
    """``x`` padded explicitly on the host (numpy.pad in the mode's numpy name)."""
    xp = np.pad(x, ((0, 0), (0, 0), (g.pt, g.pb), (g.pl, g.pr)), mode=NP_PAD_MODE[g.mode])
    return np.ascontiguousarray(xp)


def _np_fold(dxp, x_shape, g: Geom):
    """Adjoint of :func:`_np_pad`: add each padded pixel's gradient to its source."""
    H, W = x_shape[2], x_shape[3]
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


# ------------------------------------------------------------------------------- host arrays


def _kept(weight, p: ConvPlan):
    """The weights of the plan's kept taps, C-contiguous (``weight`` itself when all)."""
    if p.taps is None:
        return weight
    r0, r1, c0, c1 = p.taps
    return np.ascontiguousarray(weight[:, :, r0:r1, c0:c1])


def kept_shape(weight_shape, p: ConvPlan) -> tuple:
    """The shape of :func:`_kept`'s weights."""
    if p.taps is None:
        return tuple(weight_shape)
    r0, r1, c0, c1 = p.taps
    return (*weight_shape[:2], r1 - r0, c1 - c0)


class Prepared(NamedTuple):
    """A forward convolution decided once for constant weights (:func:`prepare_forward`)."""

    #: the forward plan for the input shape it was made for
    plan: ConvPlan
    #: the weights of the plan's kept taps, C-contiguous
    weight: np.ndarray
    #: tap-GEMM's per-tap weight matrices (``tapgemm.pack_weights``), else None
    packed: np.ndarray | None
    #: the driver's forward with its per-call decisions made, on the padding stage's output:
    #: tap-GEMM's ``run(x, b, y, relu, scale)`` (BLAS held single-threaded by the caller),
    #: the direct register-block or pixel-vector family's ``run(x, b, y, relu)``; else None
    run: object = None
    #: whether the weights and the bias it was prepared with are all finite (checked once:
    #: the per-call check of the inputs then reads ``x`` alone)
    constants_finite: bool = True


def rows_layouts(op, x_shape, weight_shape, g: Geom, dtype, algorithm="auto"):
    """``(writes, reads)``: whether the prepared forward of this layer can write its result
    as rows of channels ``(OH, OW, N, F)`` and read its input as ``(H, W, N, C)`` (see
    :func:`forward_rows`): both where the plan is tap-GEMM with zero padding and a prepared
    closure; writing only for a first layer of large stride that the pixel-major im2col runs
    (:func:`nbconv.conv.im2col.pixel_rows_takes`) and for the direct register blocks."""
    p = forward_plan(op, tuple(x_shape), tuple(weight_shape), g, dtype, algorithm)
    if pixel_rows(p, x_shape, weight_shape, g, dtype):
        return True, False  # a first layer: reads the network's NCHW input
    if p.algorithm == "direct":  # the register blocks store rows as well as NCHW
        return (g.mode == "zeros" and x_shape[0] > 0
                and direct.writes_rows(p.geometry, p.kernels)), False
    ok = (p.algorithm == "tapgemm" and g.mode == "zeros" and x_shape[0] > 0
          and tapgemm.can_prepare(tuple(x_shape), weight_shape, p.geometry, dtype))
    return ok, ok


def pixel_rows(p, x_shape, weight_shape, g: Geom, dtype) -> bool:
    """Whether a layer writing rows of channels runs as pixel-major columns times the weights
    (:func:`nbconv.conv.im2col.prepare_pixel_rows`) instead of its plan's direct kernels."""
    return (p.algorithm == "direct" and g.mode == "zeros"
            and im2col.pixel_rows_takes(tuple(x_shape), weight_shape, p.geometry, dtype))


def panels(p: ConvPlan, x_shape, weight_shape) -> bool:
    """Whether the prepared forward of this plan runs tap-GEMM's products on weights packed
    once into panels (:func:`nbconv.conv.tapgemm.uses_panels`) rather than BLAS."""
    return (p.algorithm == "tapgemm" and p.geometry.mode == "zeros"
            and tapgemm.can_prepare(tuple(x_shape), kept_shape(weight_shape, p), p.geometry,
                                    np.dtype(p.dtype))
            and tapgemm.uses_panels(x_shape, weight_shape, p.geometry))


def forward_rows(x, bias, y, relu, prepared: Prepared, in_rows, out_rows, exact):
    """A prepared tap-GEMM forward whose input (``in_rows``) or output (``out_rows``) is rows
    of channels, then :func:`forward`'s policy for non-finite values: a result holding inf
    or NaN is recomputed by ``exact(x_nchw)`` (:func:`forward` on the NCHW input), so inf
    and NaN reach exactly the outputs the definition says."""
    with single_threaded_blas():
        prepared.run(x, bias, y, relu, None)
    if not finite(y):
        yn = exact(np.ascontiguousarray(x.transpose(2, 3, 0, 1)) if in_rows else x)
        y[...] = yn.transpose(2, 3, 0, 1) if out_rows else yn


def prepare_forward(op, x_shape, weight, g: Geom, algorithm="auto", in_rows=False,
                    out_rows=False, bias=None) -> Prepared:
    """The plan of :func:`forward` for inputs of ``x_shape`` and the weights it runs with
    (kept taps, tap-GEMM's packing, the direct families' weight layouts, and the driver's
    prepared closure), made once: a planned network's weights do not change between calls,
    and at batch 1 rearranging them each call took longer than the products.  Pass it to
    :func:`forward` as ``prepared`` with these same ``weight`` and ``bias`` values; with
    ``in_rows`` or ``out_rows`` (where :func:`rows_layouts` allows) to :func:`forward_rows`
    instead."""
    p = forward_plan(op, tuple(x_shape), weight.shape, g, weight.dtype, algorithm)
    kept = np.ascontiguousarray(_kept(weight, p))
    packed = run = None
    if out_rows and pixel_rows(p, x_shape, kept.shape, g, weight.dtype):
        run = im2col.prepare_pixel_rows(tuple(x_shape), kept, p.geometry)
    elif p.algorithm == "tapgemm":
        # (layers on packed panels keep those instead)
        packed = (None if tapgemm.uses_panels(x_shape, kept.shape, _driver_geometry(p.geometry))
                  else tapgemm.pack_weights(kept))
        run = tapgemm.prepare_forward(_padded_shape(x_shape, p.geometry), kept,
                                      _driver_geometry(p.geometry), packed, in_rows, out_rows)
    elif p.algorithm == "direct" and out_rows:
        rows_run = direct.prepare_forward(tuple(x_shape), kept, p.geometry, p.kernels, True)

        def run(x, b, y, relu, scale):  # forward_rows' signature
            if scale is not None:  # planned networks fold their batch norms into w and b
                raise AssertionError("the direct register blocks take no scale")
            rows_run(x, b, y, relu)
    elif p.algorithm == "direct":
        run = direct.prepare_forward(_padded_shape(x_shape, p.geometry), kept,
                                     _driver_geometry(p.geometry), p.kernels)
    return Prepared(p, kept, packed, run, finite(kept, bias))


def forward(op, x, weight, bias, g: Geom, algorithm="auto", relu=False, scale=None, out=None,
            prepared: Prepared | None = None):
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
    place of a fresh array (a planned network's buffer, :mod:`nbconv.inference`);
    ``prepared``, :func:`prepare_forward`'s value for ``x.shape``, ``weight`` and ``bias``,
    replaces the plan lookup, the per-call copies of the weights and their finiteness check.
    """
    y = np.empty((x.shape[0], weight.shape[0], g.OH, g.OW), dtype=x.dtype) if out is None else out
    if y.size == 0:
        return y
    if prepared is None:
        p = forward_plan(op, x.shape, weight.shape, g, x.dtype, algorithm)
        weight, packed, run = _kept(weight, p), None, None
    else:
        p, weight, packed, run, _ = prepared
    algorithm = p.algorithm
    driver = DRIVERS[algorithm]
    xp, g = _padded(x, p.geometry, _np_pad)
    check_inputs = algorithm != "winograd" and x.size + weight.size < y.size
    conv_bias = bias if scale is None else None  # with a scale the shift comes after it
    done = False  # whether the scale, shift and ReLU are applied
    if check_inputs and not (finite(x, weight, bias) if prepared is None
                             else prepared.constants_finite and finite(x)):
        exact_forward(xp, weight, conv_bias, y, g)
    elif algorithm == "tapgemm":
        if run is not None:
            with single_threaded_blas():
                run(xp, bias, y, relu, scale)
        else:
            driver.conv2d_forward(xp, weight, bias, y, g, p.kernels, relu=relu, scale=scale,
                                  packed=packed)
        done = True
    elif algorithm == "direct" and scale is None:
        if run is not None:
            run(xp, bias, y, relu)
        else:
            driver.conv2d_forward(xp, weight, bias, y, g, p.kernels, relu=relu)
        done = True
    else:
        driver.conv2d_forward(xp, weight, conv_bias, y, g, p.kernels)
    if not check_inputs and not finite(y):
        exact_forward(xp, weight, conv_bias, y, g)
        done = False
    if not done:
        _epilogue(y, scale, None if scale is None else bias, relu)
    return y


def bind_forward(op, x_shape, weight, bias, g: Geom, algorithm="auto", relu=False):
    """:func:`forward` for inputs of ``x_shape`` with constant ``weight`` and ``bias``, as a
    closure ``call(x, y)`` writing ``y`` (C-contiguous, the output's shape), with every
    decision that does not depend on the values made once: the prepared plan and weights
    (:func:`prepare_forward`), which finiteness check the call makes, and for the direct
    register-block and pixel-vector families the driver's closure called straight away (at
    batch 1 the generic call's Python took as long as the kernel).  The same results and
    the same inf/NaN policy as :func:`forward`."""
    prepared = prepare_forward(op, x_shape, weight, g, algorithm, bias=bias)
    p, kept, _, run, constants_finite = prepared
    N, _, H, W = x_shape
    y_size = N * kept.shape[0] * g.OH * g.OW
    if run is None or p.algorithm != "direct" or p.geometry.mode != "zeros" or y_size == 0:
        def call(x, y):
            forward(op, x, weight, bias, g, algorithm, relu, None, y, prepared)
        return call
    check_inputs = N * x_shape[1] * H * W + kept.size < y_size  # as forward decides
    pg = p.geometry

    def call(x, y):
        if check_inputs and not (constants_finite and finite_array(x)):
            exact_forward(x, kept, bias, y, pg)
        else:
            run(x, bias, y, relu)
            if check_inputs or finite_array(y):
                return
            exact_forward(x, kept, bias, y, pg)
        if relu:
            direct.relu_in_place(y)
    return call


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
    weight, kept = _kept(weight, p), p.taps
    xp, g = _padded(x, p.geometry, _np_pad)
    dxp = np.empty(xp.shape, dtype=x.dtype) if need_dx else None
    gw = np.empty(weight.shape, dtype=x.dtype)
    gb = np.empty(weight.shape[0], dtype=x.dtype) if want_bias else None
    DRIVERS[p.algorithm].conv2d_backward(dy, xp, weight, dxp, gw, gb, g, p.kernels, p.spread)
    exact_backward(dy, xp, weight, dxp, gw, gb, g)
    if kept is not None:  # the dropped taps never read the input: zero gradient
        r0, r1, c0, c1 = kept
        gw_full = np.zeros(full_shape, dtype=x.dtype)
        gw_full[:, :, r0:r1, c0:c1] = gw
        gw = gw_full
    return _unpadded(dxp, x.shape, p.geometry, _np_fold), gw, gb


def data_gradient(op, dy, weight, g: Geom, x_shape, algorithm="auto"):
    """``dx`` alone, of shape ``x_shape``, for validated ``dy`` and ``weight``: the backward
    plan's data gradient without the weight gradient (no ``x`` is needed), which is the
    forward pass of the transposed convolution.  An empty batch gives an empty ``dx``;
    non-finite results are recomputed by :func:`exact_backward`."""
    if x_shape[0] == 0:
        return np.empty(x_shape, dtype=dy.dtype)
    p = backward_plan(op, x_shape, weight.shape, g, dy.dtype, algorithm)
    weight = _kept(weight, p)
    dxp = np.empty(_padded_shape(x_shape, p.geometry), dtype=dy.dtype)
    g = _driver_geometry(p.geometry)
    DRIVERS[p.algorithm].conv2d_backward(dy, None, weight, dxp, None, None, g, p.kernels,
                                         p.spread)
    exact_backward(dy, None, weight, dxp, None, None, g)
    return _unpadded(dxp, x_shape, p.geometry, _np_fold)


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
    weight = dev.take_taps(weight, p.taps)
    xp, g = _padded(x, p.geometry, dev.pad_input)
    driver = dev.DRIVERS[p.algorithm]
    driver.conv2d_forward(xp, weight, bias, y, g)
    if not driver.EXACT:
        dev.exact_forward(xp, weight, bias, y, g)
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
    weight = dev.take_taps(weight, p.taps)
    xp, g = _padded(x, p.geometry, dev.pad_input)
    dxp = dev.empty(xp.shape, dt) if need_dx else None
    gw = dev.empty(weight.shape, dt)
    gb = dev.empty((F,), dt) if want_bias else None
    driver = dev.DRIVERS[p.algorithm]
    driver.conv2d_backward(dy, xp, weight, dxp, gw, gb, g)
    if not driver.EXACT:
        dev.exact_backward(dy, xp, weight, dxp, gw, g)
    gw = dev.put_taps(gw, full_shape, p.taps)
    return _unpadded(dxp, x.shape, p.geometry, dev.fold_padding), gw, gb

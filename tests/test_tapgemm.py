"""The tap-GEMM convolution driver (``nbconv.conv.tapgemm``) against independent
references.

Zero padding ``(top, bottom, left, right)`` is applied explicitly with ``np.pad`` and the
references run unpadded on the result, so asymmetric padding (the bottom/right padding the
driver only sees through the output size) is covered:

* forward: ``reference_conv.ref_conv2d`` (``scipy.signal.correlate2d`` per channel pair);
* weight gradient: ``reference_conv.ref_conv2d_weight_grad`` (one einsum per tap);
* data gradient: ``reference_conv.ref_conv2d_backward_exact`` (a loop over taps, cropped to
  the unpadded input) and the adjoint identity ``<dy, conv(v)> = <dx, v>`` with the
  scipy-based forward reference;
* bias gradient: ``dy.sum((0, 2, 3))``.

Outputs are prefilled with NaN: the driver must overwrite, never accumulate.
"""

from __future__ import annotations

import numpy as np
import pytest
from closeness import assert_scaled_close
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from reference_conv import ref_conv2d, ref_conv2d_backward_exact, ref_conv2d_weight_grad

import nbconv
from nbconv._checks.conv import Geom
from nbconv.conv import tapgemm as _tapgemm

RTOL = {np.float32: 1e-4, np.float64: 1e-10}


def _out(n, k, s, p0, p1, d):
    return (n + p0 + p1 - d * (k - 1) - 1) // s + 1


def _case(dtype, N, C, F, H, W, kh, kw, pads, stride, dilation, seed):
    """Arrays and references for one layer; None when the output would be empty."""
    pt, pb, pl, pr = pads
    (sy, sx), (dh, dw) = stride, dilation
    OH, OW = _out(H, kh, sy, pt, pb, dh), _out(W, kw, sx, pl, pr, dw)
    if OH < 1 or OW < 1:
        return None
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((F, C, kh, kw)).astype(dtype)
    b = rng.standard_normal(F).astype(dtype)
    dy = rng.standard_normal((N, F, OH, OW)).astype(dtype)
    return x, w, b, dy


def _xpad(x, pads):
    pt, pb, pl, pr = pads
    return np.pad(np.asarray(x, np.float64), ((0, 0), (0, 0), (pt, pb), (pl, pr)))


def _check(dtype, N, C, F, H, W, kh, kw, pads, stride, dilation, seed, with_bias=True,
           need_dx=True, want_bias=True):
    """Check the driver on one layer; False (nothing checked) when its output is empty."""
    case = _case(dtype, N, C, F, H, W, kh, kw, pads, stride, dilation, seed)
    if case is None:
        return False
    x, w, b, dy = case
    pt, _, pl, _ = pads
    (sy, sx), (dh, dw) = stride, dilation
    args = (Geom(sy, sx, dh, dw, 1, *pads, "zeros", *dy.shape[2:]),)
    xp = _xpad(x, pads)
    rtol = RTOL[dtype]

    y = np.full(dy.shape, np.nan, dtype=dtype)
    _tapgemm.conv2d_forward(x, w, b if with_bias else None, y, *args)
    want = ref_conv2d(xp, w, b if with_bias else None, stride=stride, dilation=dilation)
    assert y.dtype == dtype
    assert_scaled_close(y, want, rtol)

    dx = np.full(x.shape, np.nan, dtype=dtype) if need_dx else None
    gw = np.full(w.shape, np.nan, dtype=dtype)
    gb = np.full(F, np.nan, dtype=dtype) if want_bias else None
    _tapgemm.conv2d_backward(dy, x, w, dx, gw, gb, *args)
    assert gw.dtype == dtype
    assert_scaled_close(gw, ref_conv2d_weight_grad(dy, xp, kh, kw, stride, (0, 0), dilation),
                        rtol)
    if want_bias:
        assert gb.dtype == dtype
        assert_scaled_close(gb, np.asarray(dy, np.float64).sum((0, 2, 3)), rtol)
    if need_dx:
        assert dx.dtype == dtype
        dxp = ref_conv2d_backward_exact(dy, xp, w, stride=stride, dilation=dilation)[0]
        assert_scaled_close(dx, dxp[:, :, pt:pt + H, pl:pl + W], rtol)
        # adjoint identity with the scipy-based forward reference
        v = np.random.default_rng(seed + 1).standard_normal(x.shape)
        lhs = float(np.sum(np.asarray(dy, np.float64) * ref_conv2d(_xpad(v, pads), w,
                                                                   stride=stride,
                                                                   dilation=dilation)))
        rhs = float(np.sum(np.asarray(dx, np.float64) * v))
        scale = float(np.sum(np.abs(dx)) * np.max(np.abs(v))) + 1.0
        assert abs(lhs - rhs) <= 50 * rtol * scale
    return True


@st.composite
def layers(draw, strides=(1, 2), dilations=(1, 2)):
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    dh, dw = draw(st.sampled_from(dilations)), draw(st.sampled_from(dilations))
    # padding up to the (dilated) kernel's extent - 1 on each side, independently
    pads = tuple(draw(st.integers(0, (k - 1) * d)) for k, d in ((kh, dh), (kh, dh),
                                                                 (kw, dw), (kw, dw)))
    channels = st.one_of(st.integers(1, 6), st.sampled_from([17, 33, 40]))
    return dict(
        dtype=draw(st.sampled_from([np.float32, np.float64])),
        N=draw(st.integers(1, 3)), C=draw(channels), F=draw(channels),
        H=draw(st.integers(1, 9)), W=draw(st.integers(1, 9)), kh=kh, kw=kw, pads=pads,
        stride=(draw(st.sampled_from(strides)), draw(st.sampled_from(strides))),
        dilation=(dh, dw), seed=draw(st.integers(0, 2**16)),
        with_bias=draw(st.booleans()), need_dx=draw(st.booleans()),
        want_bias=draw(st.booleans()))


@given(case=layers(strides=(1,), dilations=(1,)))
@settings(max_examples=60, deadline=None)
def test_stride1_matches_references(case):
    assume(_check(**case))


@given(case=layers())
@settings(max_examples=60, deadline=None)
def test_strided_dilated_matches_references(case):
    assume(_check(**case))


@given(case=layers())
@settings(max_examples=15, deadline=None)
def test_numpy_fallback_matches_references(case):
    """Without a CBLAS gemm the same products run as ``np.matmul`` on strided views."""
    saved = _tapgemm.gemm_for
    _tapgemm.gemm_for = lambda dtype: None
    try:
        assume(_check(**case))
    finally:
        _tapgemm.gemm_for = saved


@pytest.mark.parametrize("slabs", ["rows", "columns"])
@given(case=layers())
@settings(max_examples=25, deadline=None)
def test_row_and_column_slabs_match_references(slabs, case):
    """Both ways of cutting the products into tasks: slabs of rows of pixels (3 of them, so
    some are uneven or empty, each with 2 column slabs; the weight gradient summing its row
    slabs' products apart) and slabs of columns alone."""
    saved = _tapgemm._split

    def forced(plane_rows, cols, by_rows):
        return (min(3, plane_rows), 2) if slabs == "rows" else saved(plane_rows, cols, False)

    _tapgemm._split = forced
    try:
        assume(_check(**case))
    finally:
        _tapgemm._split = saved


@pytest.mark.parametrize("name, layer", [
    # (N, C, F, H, W, kh, kw, pads, stride)
    ("3x3 on a 1x1 map: one valid tap", (2, 5, 4, 1, 1, 3, 3, (1, 1, 1, 1), (1, 1))),
    ("taps reading only padding", (1, 3, 2, 2, 1, 5, 4, (4, 0, 3, 3), (1, 1))),
    ("no padding: bands narrower than the map", (2, 3, 5, 7, 6, 3, 2, (0, 0, 0, 0), (1, 1))),
    ("kernel = input", (3, 4, 2, 5, 3, 5, 3, (0, 0, 0, 0), (1, 1))),
    ("stride not dividing the input", (2, 3, 4, 8, 7, 3, 3, (1, 0, 1, 1), (2, 3))),
    ("1x1 stride 2", (3, 6, 5, 8, 8, 1, 1, (0, 0, 0, 0), (2, 2))),
    ("several slabs per thread count", (4, 40, 48, 4, 4, 3, 3, (1, 1, 1, 1), (1, 1))),
    ("batch 1", (1, 33, 17, 3, 5, 3, 3, (1, 1, 1, 1), (1, 1))),
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_named_edge_cases(name, layer, dtype):
    N, C, F, H, W, kh, kw, pads, stride = layer
    assert _check(dtype, N, C, F, H, W, kh, kw, pads, stride, (1, 1), seed=7)
    assert _check(dtype, N, C, F, H, W, kh, kw, pads, stride, (1, 1), seed=8, with_bias=False,
                  need_dx=False, want_bias=False)


@pytest.mark.parametrize("threads", [1, 2])
def test_thread_counts_agree(threads):
    """Every thread count gives the references' result (the slabs split filters and
    channels differently)."""
    saved = nbconv.get_num_threads()
    nbconv.set_num_threads(min(threads, nbconv.max_num_threads()))
    try:
        assert _check(np.float32, 3, 64, 40, 2, 3, 3, 3, (1, 1, 1, 1), (1, 1), (1, 1), seed=3)
    finally:
        nbconv.set_num_threads(saved)


@pytest.mark.parametrize("rparts, fparts", [(2, 1), (3, 1), (5, 2), (7, 1)])
@pytest.mark.parametrize("layer", [
    # N, C, F, H, W, kh, kw, pads, stride
    (3, 5, 6, 3, 3, 1, 1, (0, 0, 0, 0), (1, 1)),    # one tap, one block of rows
    (2, 4, 5, 5, 4, 3, 3, (1, 1, 1, 1), (1, 1)),    # bands cut by the slabs
    (3, 3, 4, 7, 6, 3, 2, (2, 0, 1, 1), (2, 1)),    # strided, asymmetric padding
    (1, 2, 3, 2, 2, 3, 3, (1, 1, 1, 1), (1, 1)),    # fewer product rows than some slabs
])
def test_forward_kernel_any_row_slabs(rparts, fparts, layer):
    """The forward kernel with slabs of product rows that cut tap rectangles and bands at
    arbitrary rows (and more slabs than map rows) equals the reference."""
    from nbconv._blas import gemm_for
    from nbconv.kernels.conv.tapgemm import _conv2d_tapgemm_fwd, tap_table

    gemm = gemm_for(np.dtype(np.float64))
    if gemm is None:
        pytest.skip("no CBLAS gemm to call: the kernel is not used")
    N, C, F, H, W, kh, kw, pads, stride = layer
    x, w, _, _ = _case(np.float64, N, C, F, H, W, kh, kw, pads, stride, (1, 1), seed=11)
    want = ref_conv2d(_xpad(x, pads), np.asarray(w, np.float64), stride=stride)
    OH, OW = want.shape[2:]
    xt = _tapgemm._rows(x, *stride)
    yt = np.full((OH, OW, N, F), np.nan)
    wt = _tapgemm.pack_weights(w)
    taps, full, _ = tap_table(kh, kw, OH, OW, H, W, *stride, pads[0], pads[2], 1, 1)
    _conv2d_tapgemm_fwd(gemm[0], gemm[1], xt, w, wt, yt, taps, full, rparts, fparts, False)
    np.testing.assert_allclose(yt.transpose(2, 3, 0, 1), want, rtol=1e-10, atol=1e-10)


def test_supports():
    assert _tapgemm.supports(3, 3, 1, 1, 1, 1, 1)
    assert _tapgemm.supports(5, 1, 2, 3, 2, 1, 1)
    assert not _tapgemm.supports(3, 3, 1, 1, 1, 1, 2)


@pytest.mark.parametrize("images_fit", [1, 2])
def test_batches_beyond_the_buffer_bound_run_in_chunks_of_images(monkeypatch, images_fit):
    """Row-layout copies are bounded by IM2COL_MAX_BYTES: the batch then runs a few images at
    a time (the weight gradient summed over the chunks), with the same results."""
    from nbconv import _config

    N, C, F, H, W = 5, 3, 4, 6, 5
    per_image = max(C * H * W, F * H * W) * 8
    monkeypatch.setattr(_config, "IM2COL_MAX_BYTES", images_fit * per_image)
    assert _tapgemm._images_per_chunk(N, per_image // 8, 8) == images_fit
    assert _check(np.float64, N, C, F, H, W, 3, 3, (1, 1, 1, 1), (1, 1), (1, 1), seed=11)


@pytest.mark.parametrize("layer", [
    # (N, C, F, H, kh, stride, pad): auto picks tap-GEMM for the backward pass after tap
    # trimming, and runs it on the whole kernel; the dropped taps' weight gradient must be zero
    (3, 32, 24, 1, 3, 1, 1),   # resnet18's 512 -> 512 on a 1x1 map, one valid tap
    (2, 32, 40, 2, 3, 2, 1),   # 256 -> 512 stride 2 on 2x2: 2x2 valid taps of 3x3
    (2, 16, 8, 2, 5, 1, 2),    # 5x5 on 2x2 with padding 2: only kernel rows/columns 1-3
])
def test_auto_on_trimmed_small_maps_matches_references(layer):
    from nbconv._checks.conv import geometry
    from nbconv.conv import convplan, explain

    N, C, F, H, k, s, p = layer
    rng = np.random.default_rng(5)
    x = rng.standard_normal((N, C, H, H))
    w = rng.standard_normal((F, C, k, k))
    b = rng.standard_normal(F)
    g = geometry("conv2d", x.shape, w.shape, s, p, 1, 1, "zeros", "")
    trimmed = convplan.trim_taps(k, k, g, H, H)
    assert trimmed is not None and trimmed[0] != (0, k, 0, k)
    plans = explain(x.shape, w.shape, stride=s, padding=p, dtype=x.dtype)
    assert plans.backward.algorithm == "tapgemm"
    for plan in plans.forward, plans.backward:
        # tap-GEMM runs the whole kernel (no trimmed weight copy); the others the kept taps
        assert plan.taps == (None if plan.algorithm == "tapgemm" else trimmed[0])
    y = nbconv.conv2d(x, w, b, stride=s, padding=p)
    assert_scaled_close(y, ref_conv2d(x, w, b, stride=s, padding=p), rtol=1e-10)
    dy = rng.standard_normal(y.shape)
    dx, gw, gb = nbconv.conv2d_backward(dy, x, w, stride=s, padding=p)
    assert_scaled_close(gw, ref_conv2d_weight_grad(dy, x, k, k, (s, s), (p, p)), rtol=1e-10)
    assert_scaled_close(dx, ref_conv2d_backward_exact(dy, x, w, stride=s, padding=p)[0],
                        rtol=1e-10)
    assert_scaled_close(gb, dy.sum((0, 2, 3)), rtol=1e-10)


@pytest.mark.parametrize("stride", [(1, 1), (2, 2)])
def test_fused_relu_matches_the_reference_and_keeps_nan(stride):
    """``relu=True`` applies ``max(v, 0)`` in the pass that writes ``y``, keeping NaN (as
    ``nbconv.relu`` does); through ``nn.Conv2d`` + ``ReLU`` the engine fuses it."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((3, 20, 5, 6))
    w = rng.standard_normal((24, 20, 3, 3))
    b = rng.standard_normal(24)
    x[1, 3, 2, 2] = np.nan
    want = ref_conv2d(_xpad(x, (1, 1, 1, 1)), w, b, stride=stride)
    want = np.where(np.isnan(want), np.nan, np.maximum(want, 0))
    assert np.isnan(want).any() and (want == 0).any()
    y = np.full(want.shape, -7.0)
    _tapgemm.conv2d_forward(x, w, b, y, Geom.of(x.shape, w.shape, stride, 1), relu=True)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(want))
    assert_scaled_close(np.nan_to_num(y), np.nan_to_num(want), RTOL[np.float64])
    from nbconv.functional import conv as _conv
    y2 = _conv._conv2d_relu(x, w, b, stride=stride, padding=1, algorithm="tapgemm")
    np.testing.assert_array_equal(np.isnan(y2), np.isnan(want))
    assert_scaled_close(np.nan_to_num(y2), np.nan_to_num(want), RTOL[np.float64])


@pytest.mark.parametrize("C", [3, 8, 21])
@pytest.mark.parametrize("sy, sx", [(1, 1), (2, 2), (2, 3)])
@pytest.mark.parametrize("relu", [False, True])
def test_rows_by8_twins_match_the_plain_layout_kernels(C, sy, sx, relu):
    """The 8-channels-at-a-time twins (for planes a power of two apart) give exactly the
    layouts of the plain kernels (and of the definition), channel tails and stride phases
    included; the epilogue (scale, bias, NaN-keeping ReLU) too."""
    from nbconv.kernels.conv import tapgemm as k
    rng = np.random.default_rng(C * 10 + sy)
    N, H, W = 3, 16, 16
    x = rng.standard_normal((N, C, H, W)).astype(np.float32)
    x[1, C - 1, 3, 5] = np.nan
    shape = (sy, sx, -(-H // sy), -(-W // sx), N, C)
    plain = np.zeros(shape, np.float32)
    by8 = np.zeros(shape, np.float32)
    k._conv2d_tapgemm_to_rows(x, plain)
    k._conv2d_tapgemm_to_rows_by8(x, by8)
    np.testing.assert_array_equal(by8, plain)
    assert np.array_equal(by8[5 % sy, 5 % sx, 5 // sy, 5 // sx, 0], x[0, :, 5, 5])
    b = rng.standard_normal(C).astype(np.float32)
    scale = rng.standard_normal(C)
    back, back8 = np.empty_like(x), np.empty_like(x)
    k._conv2d_tapgemm_from_rows(plain, back, b, True, relu, scale)
    k._conv2d_tapgemm_from_rows_by8(plain, back8, b, True, relu, scale)
    np.testing.assert_array_equal(back8, back)
    want = (x.astype(np.float64) * scale[:, None, None] + b[:, None, None]).astype(np.float32)
    if relu:
        want = np.where(want <= 0, 0, want)
    np.testing.assert_allclose(back8, want, rtol=1e-6, atol=1e-6)


def test_aliasing_planes_rule():
    from nbconv.kernels.conv.tapgemm import aliasing_planes
    assert aliasing_planes(16, 16, 4) and aliasing_planes(32, 32, 4, 4096)
    assert not aliasing_planes(16, 16, 4, 4096) and aliasing_planes(16, 16, 8, 2048)
    assert not aliasing_planes(28, 28, 4) and not aliasing_planes(8, 8, 4)


@given(dtype=st.sampled_from([np.float32, np.float64]), N=st.integers(1, 3),
       C=st.integers(1, 20), F=st.integers(1, 100), H=st.integers(1, 7), W=st.integers(1, 7),
       k=st.integers(1, 3), stride=st.integers(1, 2), pad=st.integers(0, 2),
       dilation=st.integers(1, 2), in_rows=st.booleans(), out_rows=st.booleans(),
       bias=st.booleans(), relu=st.booleans(), panels=st.booleans(),
       seed=st.integers(0, 2**16))
@settings(max_examples=80, deadline=None)
def test_prepared_forward_on_panels_or_blas_matches_reference(dtype, N, C, F, H, W, k, stride,
                                                              pad, dilation, in_rows, out_rows,
                                                              bias, relu, panels, seed):
    """A planned network's prepared tap-GEMM layer, its products on packed panels (few output
    rows, at least two panels of filters) or on BLAS, NCHW or rows of channels in and out,
    every stride, padding and dilation that reaches the input, with and without bias and
    ReLU: the float64 SciPy reference."""
    from nbconv._blas import single_threaded_blas
    from nbconv.functional.linear import panels_apply

    assume(min(H, W) + 2 * pad >= dilation * (k - 1) + 1)  # a non-empty output
    g = Geom.of((N, C, H, W), (F, C, k, k), stride=stride, padding=pad, dilation=dilation)
    assume(not panels or panels_apply(N * g.OH * g.OW, F, k * k * C))
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((F, C, k, k)).astype(dtype)
    b = rng.standard_normal(F).astype(dtype) if bias else None
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_tapgemm, "USE_PANELS", panels)
        assert _tapgemm.uses_panels(x.shape, w.shape, g) == panels
        run = _tapgemm.prepare_forward(x.shape, w, g, _tapgemm.pack_weights(w), in_rows,
                                       out_rows)
    xin = np.ascontiguousarray(x.transpose(2, 3, 0, 1)) if in_rows else x
    y = np.full((g.OH, g.OW, N, F) if out_rows else (N, F, g.OH, g.OW), np.nan, dtype)
    with single_threaded_blas():
        run(xin, b, y, relu, None)
    want = ref_conv2d(x, w, b, stride=stride, padding=pad, dilation=dilation)
    if relu:
        want = np.maximum(want, 0)
    assert_scaled_close(y.transpose(2, 3, 0, 1) if out_rows else y, want, RTOL[dtype])


@settings(max_examples=300, deadline=None)
@given(k=st.tuples(st.integers(1, 5), st.integers(1, 5)),
       size=st.tuples(st.integers(1, 7), st.integers(1, 7)),
       stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       pad=st.tuples(st.integers(0, 4), st.integers(0, 4)),
       dilation=st.tuples(st.integers(1, 3), st.integers(1, 3)))
def test_tap_table_against_enumeration(k, size, stride, pad, dilation):
    """Every tap's rectangle, input cell and the full taps equal those found by visiting each
    output pixel and tap (padding on the top/left only, any amount past the bottom/right)."""
    from nbconv.kernels.conv.tapgemm import tap_table

    (kh, kw), (H, W), (sy, sx), (pt, pl), (dh, dw) = k, size, stride, pad, dilation
    OH = (H + 2 * pt - dh * (kh - 1) - 1) // sy + 1
    OW = (W + 2 * pl - dw * (kw - 1) - 1) // sx + 1
    assume(OH >= 1 and OW >= 1)
    taps, full_out, full_in = tap_table(kh, kw, OH, OW, H, W, sy, sx, pt, pl, dh, dw)
    assert taps.shape == (kh * kw, 6) and not taps.flags.writeable
    Hq, Wq = -(-H // sy), -(-W // sx)
    covering = []
    for p in range(kh):
        for q in range(kw):
            pixels = [(i, j) for i in range(OH) for j in range(OW)
                      if 0 <= i * sy + p * dh - pt < H and 0 <= j * sx + q * dw - pl < W]
            i0, j0, ni, nj, cell, first = taps[p * kw + q].tolist()
            if not pixels:
                assert ni == nj == 0
                continue
            rows = sorted({i for i, _ in pixels})
            cols = sorted({j for _, j in pixels})
            assert (i0, ni, j0, nj) == (rows[0], len(rows), cols[0], len(cols))
            assert len(pixels) == ni * nj  # a rectangle
            # the input pixel of the first output, as a cell of the stride-phased layout
            h, w_ = i0 * sy + p * dh - pt, j0 * sx + q * dw - pl
            assert cell == (((h % sy) * sx + w_ % sx) * Hq + h // sy) * Wq + w_ // sx
            assert first == h // sy
            if ni == OH and nj == OW:
                covering.append(p * kw + q)
    assert full_out == (covering[0] if covering else -1)
    assert full_in == (full_out if (sy, sx, OH, OW) == (1, 1, H, W) else -1)

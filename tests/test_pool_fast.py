"""The fast max-pooling paths against the explicit-loop references (reference_pool).

``max_pool2d`` without dilation runs, when the argmax is wanted, the separable kernel
(``nbconv.kernels.pool2d._max_pool2d_sep_fwd``: a row pass, then a column pass, over blocks
of whole planes; a plane maximum when every window covers the whole plane) at stride 1 and on
narrow planes; without the argmax (inference) the values-only kernel
``_max_pool2d_values_fwd`` (a tap at a time over whole output rows) or the plane maximum; and
the backward pass on planes of fewer than 16 elements the grouped scatter
``_max_pool2d_bwd_flat``; the separable kernel is also called directly on every case (so it
stays checked on the shapes the dispatch sends elsewhere).  These tests sweep the shapes those
kernels take -- N, C, H, W non-square and down to 1, kernel, stride, padding, ceil mode --
in float32 and float64, with ties, NaN and +-inf, on the serial and on the threaded
variant (the serial threshold lowered to 0), forward (values and argmax) and backward, against
``reference_pool.ref_max_pool2d`` / ``ref_max_pool2d_backward`` (loops; never call nbconv).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from reference_pool import ref_max_pool2d, ref_max_pool2d_backward, ref_pool_out_size

import nbconv as nc
from nbconv import _config

DTYPES = [np.float32, np.float64]


def _values(rng, shape, dtype, kind):
    if kind == "ties":  # few distinct values: many ties
        return rng.integers(-2, 3, size=shape).astype(dtype)
    x = rng.standard_normal(shape).astype(dtype)
    if kind == "nonfinite":  # NaN, +inf and -inf sprinkled in, sometimes several per window
        u = rng.random(shape)
        x[u < 0.08] = np.nan
        x[(u >= 0.08) & (u < 0.14)] = np.inf
        x[(u >= 0.14) & (u < 0.22)] = -np.inf
    if kind == "all_minus_inf":
        x[:] = -np.inf
    return x


@st.composite
def fast_cases(draw):
    """(x, k, s, p, ceil_mode): dilation 1, any valid window, small planes incl. 1 x W."""
    n, c = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    h, w = draw(st.integers(1, 11)), draw(st.integers(1, 11))
    k = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    p = (draw(st.integers(0, k[0] // 2)), draw(st.integers(0, k[1] // 2)))
    ceil_mode = draw(st.booleans())
    assume(ref_pool_out_size(h, k[0], s[0], p[0], 1, ceil_mode) >= 1)
    assume(ref_pool_out_size(w, k[1], s[1], p[1], 1, ceil_mode) >= 1)
    dtype = draw(st.sampled_from(DTYPES))
    kind = draw(st.sampled_from(["normal", "ties", "nonfinite", "all_minus_inf"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return _values(rng, (n, c, h, w), dtype, kind), k, s, p, ceil_mode


@pytest.fixture(params=["serial", "threads"])
def threads(request, monkeypatch):
    """Run each test on the serial kernels and, with the threshold at 0, the threaded ones."""
    if request.param == "threads":
        monkeypatch.setattr(_config, "SERIAL_BELOW", 0)
    return request.param


def _check(x, k, s, p, ceil_mode):
    y, idx = nc.max_pool2d(x, k, s, p, ceil_mode=ceil_mode, return_indices=True)
    want_y, want_idx = ref_max_pool2d(x, k, s, p, (1, 1), ceil_mode)
    assert y.dtype == x.dtype and idx.dtype == np.int64
    np.testing.assert_array_equal(y, want_y)  # max is exact; NaN positions must agree
    np.testing.assert_array_equal(idx, want_idx)
    # without indices: the same values
    np.testing.assert_array_equal(nc.max_pool2d(x, k, s, p, ceil_mode=ceil_mode), want_y)
    rng = np.random.default_rng(1)
    dy = rng.standard_normal(y.shape).astype(x.dtype)
    dx = nc.max_pool2d_backward(dy, idx, x.shape)
    assert dx.dtype == x.dtype
    want_dx = ref_max_pool2d_backward(dy, want_idx, x.shape)
    tol = 1e-6 if x.dtype == np.float32 else 1e-13
    np.testing.assert_allclose(dx, want_dx, rtol=tol, atol=tol)


@pytest.mark.parametrize("serial_below", [None, 0])
@given(case=fast_cases())
def test_separable_max_pool2d_matches_reference(serial_below, case):
    """The hypothesis sweep; ``serial_below=0`` forces the threaded kernels."""
    old = _config.SERIAL_BELOW
    if serial_below is not None:
        _config.SERIAL_BELOW = serial_below
    try:
        _check(*case)
    finally:
        _config.SERIAL_BELOW = old
    _check_kernel_directly(*case)


def _check_kernel_directly(x, k, s, p, ceil_mode):
    """Mode 0 (separable passes) of both variants on any dilation-free case, mode 1 (plane
    maximum) where every window covers the whole plane, with and without the argmax; the
    values-only kernel on every case."""
    from nbconv.functional.pool import _separable_mode
    from nbconv.kernels import pool2d as K

    want_y, want_idx = ref_max_pool2d(x, k, s, p, (1, 1), ceil_mode)
    xp = x.reshape((-1,) + x.shape[-2:])
    modes = {0, _separable_mode(x.shape, want_y.shape, *k, *s, *p)} - {None}
    for kernel in (K._max_pool2d_sep_fwd, K._max_pool2d_sep_fwd_serial):
        for mode in modes:
            for want in (True, False):
                y = np.full((xp.shape[0],) + want_y.shape[-2:], 7.0, x.dtype)
                idx = np.full(y.shape, -7, np.int64)
                kernel(xp, y, idx, want, min(xp.shape[0], 3), mode, *k, *s, *p)
                np.testing.assert_array_equal(y, want_y.reshape(y.shape))
                if want:
                    np.testing.assert_array_equal(idx, want_idx.reshape(y.shape))
                else:
                    assert (idx == -7).all()
    for kernel in (K._max_pool2d_values_fwd, K._max_pool2d_values_fwd_serial):
        y = np.full((xp.shape[0],) + want_y.shape[-2:], 7.0, x.dtype)
        kernel(xp, y, min(xp.shape[0], 3), *k, *s, *p)
        np.testing.assert_array_equal(y, want_y.reshape(y.shape))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["normal", "ties", "nonfinite"])
@pytest.mark.parametrize("shape, k, s, p, ceil_mode", [
    # the pooling layers of the CIFAR-sized models (batch and channels cut down)
    ((2, 5, 4, 4), 3, 1, 1, False),    # googlenet inception branch on 4x4
    ((2, 5, 2, 2), 3, 1, 1, False),    # ... on 2x2: every window is the whole plane
    ((2, 5, 1, 1), 3, 1, 1, False),    # ... on 1x1
    ((2, 3, 16, 16), 3, 2, 1, False),  # googlenet/resnet18/alexnet/nin stage pools
    ((2, 3, 3, 3), 3, 2, 1, False),
    ((2, 3, 2, 2), 3, 2, 1, False),
    ((2, 3, 7, 7), 2, 2, 0, True),     # vgg11 ceil-mode pools on odd maps
    ((2, 3, 3, 5), 2, 2, 0, True),
    # non-square, 1 x W and H x 1, ceil mode with partial windows
    ((1, 2, 1, 9), 3, 1, 1, False),
    ((1, 2, 9, 1), 3, 1, 1, True),
    ((3, 1, 5, 8), (3, 2), (1, 2), (1, 0), True),
    ((1, 1, 6, 13), (5, 3), (2, 3), (2, 1), True),
])
def test_model_and_edge_shapes(threads, dtype, kind, shape, k, s, p, ceil_mode):
    def pair(v):
        return (v, v) if isinstance(v, int) else v

    x = _values(np.random.default_rng(0), shape, dtype, kind)
    _check(x, pair(k), pair(s), pair(p), ceil_mode)


@pytest.mark.parametrize("dtype", DTYPES)
def test_many_planes_threaded_blocks(threads, dtype):
    """More planes than blocks (blocks of unequal size) on tiny and larger planes."""
    rng = np.random.default_rng(2)
    for shape in [(7, 29, 2, 2), (5, 31, 4, 4), (3, 67, 1, 1), (2, 70, 5, 6)]:
        x = _values(rng, shape, dtype, "nonfinite")
        _check(x, (3, 3), (1, 1), (1, 1), False)
        _check(x, (3, 3), (2, 2), (1, 1), True)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, k, s, p", [
    ((1, 130, 4, 4), 3, 1, 1),     # two full groups of lanes and a partial one
    ((2, 33, 3, 5), 3, 2, 1),      # fewer planes than lanes
    ((1, 64, 1, 1), 3, 1, 1),
    ((1, 3, 33, 35), 3, 2, 1),     # a plane above ACROSS_MAX_PLANE: row by row
    ((1, 2, 40, 40), (2, 3), (2, 1), (1, 1)),
])
def test_values_helpers_across_planes_and_rows(dtype, shape, k, s, p):
    """Both helpers of the values-only kernel and the across-planes helper with the argmax
    on any plane size (the entry kernels pick by the plane's size), against the reference,
    ranges that start inside a group."""
    from nbconv.kernels import pool2d as K

    def pair(v):
        return (v, v) if isinstance(v, int) else v

    k, s, p = pair(k), pair(s), pair(p)
    x = _values(np.random.default_rng(5), shape, dtype, "nonfinite")
    want = ref_max_pool2d(x, k, s, p, (1, 1), False)[0]
    xp = x.reshape((-1,) + x.shape[-2:])
    P = xp.shape[0]
    for helper in (K._max_pool2d_values_across, K._max_pool2d_values_planes):
        y = np.full((P,) + want.shape[-2:], 7.0, dtype)
        helper(xp, y, 0, P // 3, *k, *s, *p)
        helper(xp, y, P // 3, P, *k, *s, *p)
        np.testing.assert_array_equal(y, want.reshape(y.shape))
    # with the argmax (training), across planes
    want_idx = ref_max_pool2d(x, k, s, p, (1, 1), False)[1]
    y = np.full((P,) + want.shape[-2:], 7.0, dtype)
    idx = np.full(y.shape, -7, np.int64)
    K._max_pool2d_across_idx(xp, y, idx, 0, P // 3, *k, *s, *p)
    K._max_pool2d_across_idx(xp, y, idx, P // 3, P, *k, *s, *p)
    np.testing.assert_array_equal(y, want.reshape(y.shape))
    np.testing.assert_array_equal(idx, want_idx.reshape(idx.shape))
    # the cases cover both sides of the entry kernels' choice
    assert (shape[-2] * shape[-1] <= K.ACROSS_MAX_PLANE) == (shape[-1] < 33)


@pytest.mark.parametrize("dtype", DTYPES)
def test_layer_relu_fused_backward_matches_reference(threads, dtype):
    """``Sequential(ReLU, MaxPool2d)`` backward (one fused pass through the block scatter)
    equals the two references applied in turn, NaN and ties included."""
    rng = np.random.default_rng(3)
    x = _values(rng, (3, 4, 5, 6), dtype, "nonfinite")
    x[0, 0, :2, :2] = 0.0  # a window whose maximum is 0: the ReLU blocks it
    # (layer 0 is never fused: Sequential keeps it for need_dx, hence the Identity)
    net = nc.nn.Sequential(nc.nn.Identity(), nc.nn.ReLU(), nc.nn.MaxPool2d(3, 1, padding=1))
    y = net.forward(x)
    r = np.maximum(x, 0)
    r[np.isnan(x)] = np.nan
    want_y, want_idx = ref_max_pool2d(r, (3, 3), (1, 1), (1, 1))
    np.testing.assert_array_equal(y, want_y)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = net.backward(dy)
    dr = ref_max_pool2d_backward(dy, want_idx, x.shape)
    want_dx = np.where(x > 0, dr, 0) + np.where(np.isnan(x), dr, 0)
    tol = 1e-6 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(dx, want_dx, rtol=tol, atol=tol)


def test_eval_mode_layer_keeps_no_indices():
    layer = nc.nn.MaxPool2d(3, 1, padding=1)
    x = np.random.default_rng(4).standard_normal((2, 3, 4, 4)).astype(np.float32)
    with nc.no_grad():
        y = layer.forward(x)
    assert layer._cache is None
    np.testing.assert_array_equal(y, ref_max_pool2d(x, (3, 3), (1, 1), (1, 1))[0])

"""Winograd F(2x2, 3x3) convolution against independent references.

Forward: ``reference_conv.ref_conv2d`` (scipy.signal.correlate2d per channel pair).  Backward:
float64 finite differences (``gradcheck.directional_check``).  The filter transform: the
matrices of Lavin & Gray written out here with NumPy.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from closeness import assert_scaled_close
from gradcheck import directional_check
from hypothesis import given, settings
from hypothesis import strategies as st
from reference_conv import ref_conv2d

import nbconv as nc
from nbconv import _config
from nbconv._checks.conv import geometry as _geometry
from nbconv.conv import plan as _plan
from nbconv.conv import winograd as _winograd

RTOL = {np.float32: 2e-5, np.float64: 1e-11}


def _close(got, want, dtype):
    assert_scaled_close(got, want, RTOL[dtype])


@st.composite
def winograd_cases(draw):
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    N = draw(st.integers(1, 3))
    C = draw(st.integers(1, 5))
    F = draw(st.integers(1, 5))
    H = draw(st.integers(1, 11))
    W = draw(st.integers(1, 11))
    ph = draw(st.integers(0, 3))
    pw = draw(st.integers(0, 3))
    if H + 2 * ph < 3 or W + 2 * pw < 3:
        ph, pw = max(ph, 1), max(pw, 1)
        H, W = max(H, 1), max(W, 1)
    mode = draw(st.sampled_from(["zeros", "zeros", "reflect", "circular"]))
    if mode == "reflect" and (ph >= H or pw >= W):
        mode = "zeros"
    if mode == "circular" and (ph > H or pw > W):
        mode = "zeros"
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((F, C, 3, 3)).astype(dtype)
    b = rng.standard_normal(F).astype(dtype) if draw(st.booleans()) else None
    return x, w, b, dict(padding=(ph, pw), padding_mode=mode)


@given(case=winograd_cases())
@settings(max_examples=60, deadline=None)
def test_winograd_forward_matches_reference(case):
    x, w, b, kw = case
    y = nc.conv2d(x, w, b, algorithm="winograd", **kw)
    want = ref_conv2d(x, w, b, **kw)
    assert y.dtype == x.dtype and y.shape == want.shape
    _close(y, want, x.dtype.type)


@pytest.mark.parametrize("bound_tiles, mode", [
    (10**9, "images"),   # all images in one chunk
    (3 * 16, "images"),  # (1 image = 3x3 = 9 tiles) -> 5 images per chunk, a short last chunk
    (5, "rows"),         # 5 tiles: one tile row (3 tiles) per chunk
    (1, "rows"),         # less than a tile row: still one row per chunk
])
def test_winograd_chunks(monkeypatch, bound_tiles, mode):
    """Whole-image chunks and tile-row chunks give the reference result; the buffers stay
    within the bound whenever one tile row fits."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((7, 3, 5, 6))       # 5x6 output with padding 1: 3x3 tiles
    w = rng.standard_normal((4, 3, 3, 3))
    b = rng.standard_normal(4)
    tile_bytes = 16 * (3 + 4) * 8
    monkeypatch.setattr(_config, "IM2COL_MAX_BYTES", bound_tiles * tile_bytes)
    chunks = _winograd._chunks(7, 3, 3, tile_bytes)
    assert all((ni == 3) == (mode == "images") for _, _, _, ni in chunks)
    if bound_tiles >= 3:
        assert max(nb * ni * 3 for _, nb, _, ni in chunks) <= bound_tiles
    y = nc.conv2d(x, w, b, padding=1, algorithm="winograd")
    _close(y, ref_conv2d(x, w, b, padding=1), np.float64)


def test_winograd_filter_transform():
    rng = np.random.default_rng(2)
    w = rng.standard_normal((5, 7, 3, 3))
    G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
    want = np.einsum("ap,fcpq,bq->abfc", G, w, G).reshape(16, 5, 7)
    np.testing.assert_allclose(_winograd.filter_transform(w), want, rtol=1e-15, atol=1e-15)


@pytest.mark.parametrize("padding", [0, 1, 2, 3, (0, 2)])
@pytest.mark.parametrize("shape", [(2, 3, 6, 7), (1, 2, 5, 4)])
def test_winograd_backward_gradcheck(padding, shape):
    """Padding 3 makes the data gradient's own padding negative (a crop)."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal(shape)
    w = rng.standard_normal((4, shape[1], 3, 3))
    b = rng.standard_normal(4)
    y = nc.conv2d(x, w, b, padding=padding, algorithm="winograd")
    dy = rng.standard_normal(y.shape)
    dx, dw, db = nc.conv2d_backward(dy, x, w, padding=padding, algorithm="winograd")
    directional_check(lambda x_: nc.conv2d(x_, w, b, padding=padding, algorithm="winograd"),
                      [x], dy, [dx], seed=1)
    directional_check(lambda w_: nc.conv2d(x, w_, b, padding=padding, algorithm="winograd"),
                      [w], dy, [dw], seed=2)
    np.testing.assert_allclose(db, dy.sum(axis=(0, 2, 3)), rtol=1e-12)


def test_winograd_backward_large_arrays_and_float32():
    """Arrays above the serial threshold take the threaded padding kernel (also for the
    cropping data gradient); float32 stays within rounding of float64."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((4, 8, 40, 36))
    w = rng.standard_normal((8, 8, 3, 3))
    dy = rng.standard_normal((4, 8, 42, 38))   # padding 2
    got = nc.conv2d_backward(dy, x, w, padding=2, algorithm="winograd")
    want = nc.conv2d_backward(dy, x, w, padding=2, algorithm="im2col")  # consistency only
    for g, r in zip(got, want):
        np.testing.assert_allclose(g, r, rtol=1e-10, atol=1e-10)
    got32 = nc.conv2d_backward(dy.astype(np.float32), x.astype(np.float32),
                               w.astype(np.float32), padding=2, algorithm="winograd")
    for g, r in zip(got32, want):
        assert g.dtype == np.float32
        _close(g, r, np.float32)


@pytest.mark.parametrize("w_shape, kw, what", [
    ((2, 3, 11, 11), {}, "kernel (11, 11)"),
    ((2, 3, 1, 1), {}, "kernel (1, 1)"),
    ((2, 3, 3, 3), dict(stride=2), "stride (2, 2)"),
    ((2, 3, 3, 3), dict(dilation=(1, 2)), "dilation (1, 2)"),
    ((3, 1, 3, 3), dict(groups=3), "groups 3"),
])
def test_winograd_refuses_other_geometries(w_shape, kw, what):
    x = np.ones((1, 3, 13, 13))
    w = np.ones(w_shape)
    with pytest.raises(ValueError, match="winograd.*" + re.escape(what)):
        nc.conv2d(x, w, algorithm="winograd", **kw)
    dy = np.ones(nc.conv2d(x, w, algorithm="direct", **kw).shape)
    with pytest.raises(ValueError, match="winograd"):
        nc.conv2d_backward(dy, x, w, algorithm="winograd", **kw)


def test_winograd_refused_for_conv1d():
    with pytest.raises(ValueError, match="winograd"):
        nc.conv1d(np.ones((1, 2, 9)), np.ones((3, 2, 3)), algorithm="winograd")


@pytest.mark.parametrize("C, F, backward, expected", [
    (64, 64, False, "winograd"),
    (32, 32, False, "winograd"),
    (32, 32, True, "tapgemm"),    # backward on 14x14: tap-GEMM (16x16 and smaller)
    (48, 64, True, "tapgemm"),
    (16, 64, False, "direct"),
    (3, 64, False, "direct"),     # VGG's first layer
])
def test_auto_picks_winograd(C, F, backward, expected):
    g = _geometry("conv2d", (1, C, 14, 14), (F, C, 3, 3), 1, 1, 1, 1, "zeros", "test")
    assert _plan.choose_algorithm("conv2d", "auto", C, 3, 3, g, F, backward=backward) == expected


@pytest.mark.parametrize("C, F, expected", [
    (32, 32, "direct"),     # the backward pass needs 48 channels
    (48, 64, "winograd"),
])
def test_auto_picks_winograd_backward_on_larger_maps(C, F, expected):
    g = _geometry("conv2d", (1, C, 28, 28), (F, C, 3, 3), 1, 1, 1, 1, "zeros", "test")
    backward = True
    assert _plan.choose_algorithm("conv2d", "auto", C, 3, 3, g, F, backward=backward) == expected


@pytest.mark.parametrize("C, F, k, backward, expected", [
    (64, 192, 5, False, "winograd"),  # AlexNet c2 forward
    (64, 192, 5, True, "im2col"),     # its backward pass
    (16, 32, 5, False, "direct"),
    (64, 64, 7, False, "direct"),     # nine pieces do not pay
])
def test_auto_winograd_for_larger_kernels(C, F, k, backward, expected):
    g = _geometry("conv2d", (1, C, 27, 27), (F, C, k, k), 1, k // 2, 1, 1, "zeros", "t")
    assert _plan.choose_algorithm("conv2d", "auto", C, k, k, g, F, backward=backward) == expected


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k, padding", [(5, 2), (7, 3), ((2, 4), 1), ((9, 6), (4, 2)), (4, 0)])
def test_winograd_larger_kernels_in_pieces(k, padding, dtype):
    """Kernels up to 9x9 as 3x3 pieces: forward against the reference, gradients by finite
    differences (float64)."""
    kh, kw = (k, k) if isinstance(k, int) else k
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 11, 10)).astype(dtype)
    w = rng.standard_normal((4, 3, kh, kw)).astype(dtype)
    b = rng.standard_normal(4).astype(dtype)
    y = nc.conv2d(x, w, b, padding=padding, algorithm="winograd")
    _close(y, ref_conv2d(x, w, b, padding=padding), dtype)
    if dtype == np.float64:
        dy = rng.standard_normal(y.shape)
        dx, dw, db = nc.conv2d_backward(dy, x, w, padding=padding, algorithm="winograd")
        f = nc.conv2d
        directional_check(lambda x_: f(x_, w, b, padding=padding, algorithm="winograd"),
                          [x], dy, [dx], seed=3)
        directional_check(lambda w_: f(x, w_, b, padding=padding, algorithm="winograd"),
                          [w], dy, [dw], seed=4)


def test_winograd_filter_transform_in_pieces():
    rng = np.random.default_rng(6)
    w = rng.standard_normal((2, 3, 5, 4))
    U = _winograd.filter_transform(w)
    assert U.shape == (16, 2, 4 * 3)
    G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
    wp = np.zeros((2, 3, 6, 6))
    wp[:, :, :5, :4] = w
    for a in range(2):
        for b in range(2):
            piece = wp[:, :, 3 * a:3 * a + 3, 3 * b:3 * b + 3]
            want = np.einsum("ap,fcpq,bq->abfc", G, piece, G).reshape(16, 2, 3)
            blk = a * 2 + b
            np.testing.assert_allclose(U[:, :, blk * 3:(blk + 1) * 3], want, rtol=1e-15,
                                       atol=1e-15)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("where", ["x", "w", "dy"])
@pytest.mark.parametrize("k, padding", [(3, 1), (3, 0), (5, 2)])
def test_winograd_non_finite_values_as_direct(value, where, k, padding):
    """The transforms would spread an inf or NaN to other outputs than a direct convolution
    (and turn inf into NaN); such inputs fall back to the direct kernels, so the results
    (non-finite positions included) equal the direct algorithm's."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 3, 7, 8))
    w = rng.standard_normal((4, 3, k, k))
    b = rng.standard_normal(4)
    if where == "x":
        x[1, 2, 3, 5] = value
    elif where == "w":
        w[2, 1, 1, 0] = value
    kw = dict(padding=padding)
    y = nc.conv2d(x, w, b, algorithm="winograd", **kw)
    y_ref = nc.conv2d(x, w, b, algorithm="direct", **kw)
    np.testing.assert_allclose(y, y_ref, rtol=1e-11, atol=1e-11)  # NaN where NaN, inf where inf
    dy = rng.standard_normal(y.shape)
    if where == "dy":
        dy[0, 1, 2, 3] = value
    got = nc.conv2d_backward(dy, x, w, algorithm="winograd", **kw)
    want = nc.conv2d_backward(dy, x, w, algorithm="direct", **kw)
    for g, r in zip(got, want):
        np.testing.assert_allclose(g, r, rtol=1e-11, atol=1e-11)


def test_finite_check():
    from nbconv.kernels._finite import _finite

    for dtype in (np.float32, np.float64):
        a = np.ones((3, 5), dtype)
        assert _finite(a)
        for v in (np.nan, np.inf, -np.inf):
            a[2, 4] = v
            assert not _finite(a)

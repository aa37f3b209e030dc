"""Pooling ops (max, avg, adaptive, global) against explicit-loop references (reference_pool)."""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import directional_check
from hypothesis import assume, given
from hypothesis import strategies as st
from reference_pool import (
    ref_adaptive_avg_pool2d,
    ref_adaptive_avg_pool2d_backward,
    ref_avg_pool2d,
    ref_avg_pool2d_backward,
    ref_max_pool2d,
    ref_max_pool2d_backward,
    ref_pool_out_size,
)

import nbconv as nc

DTYPES = [np.float32, np.float64]


def _tol(dtype):
    return {"rtol": 1e-5, "atol": 1e-5} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-12}


def _layout(a, layout):
    """The same values as ``a`` in a non-C-contiguous memory layout."""
    if layout == "f":
        return np.asfortranarray(a)
    if layout == "neg":
        return np.ascontiguousarray(a[..., ::-1])[..., ::-1]
    if layout == "strided":
        big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
        big[..., ::2] = a
        return big[..., ::2]
    return a


@st.composite
def pool_cases(draw, dilation=True):
    """(x, k, s, p, d, ceil_mode, layout) with a valid, non-empty output."""
    n, c = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    k = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    p = (draw(st.integers(0, k[0] // 2)), draw(st.integers(0, k[1] // 2)))
    d = (draw(st.integers(1, 3)), draw(st.integers(1, 3))) if dilation else (1, 1)
    ceil_mode = draw(st.booleans())
    assume(ref_pool_out_size(h, k[0], s[0], p[0], d[0], ceil_mode) >= 1)
    assume(ref_pool_out_size(w, k[1], s[1], p[1], d[1], ceil_mode) >= 1)
    dtype = draw(st.sampled_from(DTYPES))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if draw(st.booleans()):  # few distinct values: many ties
        x = rng.integers(-2, 3, size=(n, c, h, w)).astype(dtype)
    else:
        x = rng.standard_normal((n, c, h, w)).astype(dtype)
    layout = draw(st.sampled_from(["c", "f", "neg", "strided"]))
    return x, k, s, p, d, ceil_mode, layout


# --------------------------------------------------------------------------- max pooling


@given(pool_cases(), st.booleans())
def test_max_pool2d_matches_reference(case, stride_none):
    x, k, s, p, d, ceil_mode, layout = case
    if stride_none:
        s = k
        assume(ref_pool_out_size(x.shape[2], k[0], s[0], p[0], d[0], ceil_mode) >= 1)
        assume(ref_pool_out_size(x.shape[3], k[1], s[1], p[1], d[1], ceil_mode) >= 1)
    y_ref, i_ref = ref_max_pool2d(x, k, s, p, d, ceil_mode)
    y, ind = nc.max_pool2d(_layout(x, layout), k, None if stride_none else s, p, d, ceil_mode,
                           return_indices=True)
    assert y.dtype == x.dtype and ind.dtype == np.int64
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(ind, i_ref)
    y2 = nc.max_pool2d(x, k, None if stride_none else s, p, d, ceil_mode)
    np.testing.assert_array_equal(y2, y_ref)


@given(pool_cases())
def test_max_pool2d_backward_matches_loop_scatter(case):
    x, k, s, p, d, ceil_mode, _ = case
    y, ind = nc.max_pool2d(x, k, s, p, d, ceil_mode, return_indices=True)
    dy = np.random.default_rng(1).standard_normal(y.shape).astype(x.dtype)
    dx = nc.max_pool2d_backward(dy, ind, x.shape)
    assert dx.dtype == x.dtype and dx.shape == x.shape
    np.testing.assert_allclose(dx, ref_max_pool2d_backward(dy, ind, x.shape), **_tol(x.dtype))


@pytest.mark.parametrize(
    "shape, k, s, p, d",
    [((2, 3, 7, 6), 2, 2, 0, 1), ((1, 2, 9, 8), 3, 2, 1, 1), ((1, 1, 8, 9), (3, 2), 1, (1, 1), 2)],
)
def test_max_pool2d_backward_finite_differences(shape, k, s, p, d):
    rng = np.random.default_rng(0)
    # distinct values, far apart compared with the finite-difference step: no argmax changes
    x = rng.permutation(np.prod(shape)).reshape(shape) * 0.01 + 0.001
    y = nc.max_pool2d(x, k, s, p, d)
    dy = rng.standard_normal(y.shape)
    _, ind = nc.max_pool2d(x, k, s, p, d, return_indices=True)
    dx = nc.max_pool2d_backward(dy, ind, shape)
    directional_check(lambda a: nc.max_pool2d(a, k, s, p, d), [x], dy, [dx])


@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool2d_ties_first_element(dtype):
    # constant input: every window's index is its first real element in row-major order
    x = np.full((1, 2, 7, 8), 3.0, dtype)
    k, s, p, d = (3, 2), (2, 3), (1, 1), (2, 1)
    y, ind = nc.max_pool2d(x, k, s, p, d, ceil_mode=True, return_indices=True)
    assert np.all(y == 3.0)
    for i in range(y.shape[2]):
        for j in range(y.shape[3]):
            h = i * s[0] - p[0]
            while h < 0:
                h += d[0]
            w = j * s[1] - p[1]
            while w < 0:
                w += d[1]
            assert np.all(ind[0, :, i, j] == h * 8 + w), (i, j)
    # gradient of ties goes to the first element only
    dx = nc.max_pool2d_backward(np.ones_like(y), ind, x.shape)
    assert dx.sum() == y.size


@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool2d_all_minus_inf_and_padding_never_wins(dtype):
    x = np.full((1, 1, 3, 3), -np.inf, dtype)
    y, ind = nc.max_pool2d(x, 2, 1, 1, return_indices=True)
    assert np.all(y == -np.inf)
    # first real element of each window, never a padded position
    expect = [[0, 0, 1, 2], [0, 0, 1, 2], [3, 3, 4, 5], [6, 6, 7, 8]]
    np.testing.assert_array_equal(ind[0, 0], expect)
    x = -np.arange(1, 10, dtype=dtype).reshape(1, 1, 3, 3)  # all negative; pads are -inf
    y = nc.max_pool2d(x, 3, 1, 1)
    np.testing.assert_array_equal(y[0, 0], [[-1, -1, -2], [-1, -1, -2], [-4, -4, -5]])


@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool2d_nan_propagates(dtype):
    x = np.arange(16, dtype=dtype).reshape(1, 1, 4, 4)
    x[0, 0, 0, 1] = np.nan
    y, ind = nc.max_pool2d(x, 2, return_indices=True)
    assert np.isnan(y[0, 0, 0, 0]) and ind[0, 0, 0, 0] == 1
    np.testing.assert_array_equal(y[0, 0].ravel()[1:], [7, 13, 15])
    # two NaNs in one window: PyTorch's CPU kernel records the last one
    x[0, 0, 1, 0] = np.nan
    y, ind = nc.max_pool2d(x, 2, return_indices=True)
    assert np.isnan(y[0, 0, 0, 0]) and ind[0, 0, 0, 0] == 4
    # NaN in the middle of overlapping windows
    x = np.zeros((1, 1, 5, 5), dtype)
    x[0, 0, 2, 2] = np.nan
    y = nc.max_pool2d(x, 3, 1, 1)
    assert np.isnan(y[0, 0, 1:4, 1:4]).all()
    assert np.isnan(y).sum() == 9


def test_max_pool2d_empty_window_with_dilation():
    # taps at rows -1 and 4 of a 4-row input: the window holds no element -> -inf, index -1
    x = np.ones((1, 1, 4, 4))
    y, ind = nc.max_pool2d(x, (2, 1), 1, (1, 0), (5, 1), return_indices=True)
    assert y.shape == (1, 1, 1, 4) and np.all(y == -np.inf) and np.all(ind == -1)
    dx = nc.max_pool2d_backward(np.ones_like(y), ind, x.shape)
    assert np.all(dx == 0)


# --------------------------------------------------------------------------- average pooling


@given(pool_cases(dilation=False), st.booleans(), st.sampled_from([None, 1, 3, -2]))
def test_avg_pool2d_matches_reference(case, count_include_pad, divisor_override):
    x, k, s, p, _, ceil_mode, layout = case
    y = nc.avg_pool2d(_layout(x, layout), k, s, p, ceil_mode, count_include_pad,
                      divisor_override=divisor_override)
    assert y.dtype == x.dtype
    y_ref = ref_avg_pool2d(x, k, s, p, ceil_mode, count_include_pad, divisor_override)
    np.testing.assert_allclose(y, y_ref, **_tol(x.dtype))


@given(pool_cases(dilation=False), st.booleans(), st.sampled_from([None, 1, 3]))
def test_avg_pool2d_backward_matches_reference(case, count_include_pad, divisor_override):
    x, k, s, p, _, ceil_mode, layout = case
    y = nc.avg_pool2d(x, k, s, p, ceil_mode, count_include_pad, divisor_override=divisor_override)
    dy = _layout(np.random.default_rng(2).standard_normal(y.shape).astype(x.dtype), layout)
    dx = nc.avg_pool2d_backward(dy, x.shape, k, s, p, ceil_mode, count_include_pad,
                                divisor_override=divisor_override)
    assert dx.dtype == x.dtype and dx.shape == x.shape
    ref = ref_avg_pool2d_backward(dy, x.shape, k, s, p, ceil_mode, count_include_pad,
                                  divisor_override)
    np.testing.assert_allclose(dx, ref, **_tol(x.dtype))


@pytest.mark.parametrize(
    "shape, k, s, p, ceil_mode, cip",
    [
        ((2, 3, 7, 6), 2, None, 0, False, True),
        ((1, 2, 7, 7), 2, 3, 0, True, True),
        ((1, 2, 8, 9), (3, 2), (2, 1), (1, 1), True, False),
        ((2, 1, 5, 9), 3, 2, 1, True, True),
    ],
)
def test_avg_pool2d_backward_finite_differences(shape, k, s, p, ceil_mode, cip):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape)
    y = nc.avg_pool2d(x, k, s, p, ceil_mode, cip)
    dy = rng.standard_normal(y.shape)
    dx = nc.avg_pool2d_backward(dy, shape, k, s, p, ceil_mode, cip)
    directional_check(lambda a: nc.avg_pool2d(a, k, s, p, ceil_mode, cip), [x], dy, [dx])


@pytest.mark.parametrize("dtype", DTYPES)
def test_avg_pool2d_spec_ceil_mode_example(dtype):
    x = np.arange(49, dtype=dtype).reshape(1, 1, 7, 7)
    y = nc.avg_pool2d(x, 2, stride=3, ceil_mode=True)
    assert y.shape == (1, 1, 3, 3) and y.dtype == dtype
    np.testing.assert_array_equal(y[0, 0, 0], [4, 7, 9.5])
    # last column window: only column 6 of rows 0-1 -> (6 + 13) / 2
    np.testing.assert_array_equal(y[0, 0, :, 2], [9.5, 30.5, 48])


def test_avg_pool2d_count_include_pad():
    x = np.ones((1, 1, 3, 3))
    y = nc.avg_pool2d(x, 3, 1, 1)  # corners see 4 real of 9 counted
    np.testing.assert_allclose(y[0, 0], [[4 / 9, 6 / 9, 4 / 9], [6 / 9, 1, 6 / 9],
                                         [4 / 9, 6 / 9, 4 / 9]])
    np.testing.assert_array_equal(nc.avg_pool2d(x, 3, 1, 1, count_include_pad=False), 1.0)
    np.testing.assert_array_equal(nc.avg_pool2d(x, 3, 1, 1, divisor_override=2)[0, 0, 1, 1], 4.5)


def test_avg_pool2d_nan_propagates():
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, 0, 0] = np.nan
    y = nc.avg_pool2d(x, 2)
    assert np.isnan(y[0, 0, 0, 0]) and np.isnan(y).sum() == 1


def test_ceil_mode_drops_window_starting_in_right_padding():
    # W=6, k=2, s=4, p=1: ceil((6+2-2)/4)+1 = 3 windows, but the third would start at padded
    # column 8 >= W + p = 7 (entirely in the right padding), so it is dropped.
    x = np.arange(6.0).reshape(1, 1, 1, 6)
    y = nc.max_pool2d(x, (1, 2), (1, 4), (0, 1), ceil_mode=True)
    assert y.shape == (1, 1, 1, 2)
    np.testing.assert_array_equal(y[0, 0, 0], [0, 4])
    y = nc.avg_pool2d(x, (1, 2), (1, 4), (0, 1), ceil_mode=True)
    np.testing.assert_array_equal(y[0, 0, 0], [0 / 2, (3 + 4) / 2])
    # while a last window that starts inside the input is kept: W=5, k=2, s=2 -> 3 windows
    y = nc.avg_pool2d(np.arange(5.0).reshape(1, 1, 1, 5), (1, 2), (1, 2), ceil_mode=True)
    np.testing.assert_array_equal(y[0, 0, 0], [0.5, 2.5, 4.0])
    assert nc.max_pool2d(np.zeros((1, 1, 1, 5)), (1, 2), (1, 2), ceil_mode=False).shape[-1] == 2


# --------------------------------------------------------------------------- adaptive / global


@st.composite
def adaptive_cases(draw):
    n, c = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    h, w = draw(st.integers(1, 10)), draw(st.integers(1, 10))
    out = (draw(st.one_of(st.none(), st.integers(1, 12))),
           draw(st.one_of(st.none(), st.integers(1, 12))))
    dtype = draw(st.sampled_from(DTYPES))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    return x, out, draw(st.sampled_from(["c", "f", "neg", "strided"]))


@given(adaptive_cases())
def test_adaptive_avg_pool2d_matches_reference(case):
    x, out, layout = case
    size = tuple(x.shape[2 + a] if v is None else v for a, v in enumerate(out))
    y = nc.adaptive_avg_pool2d(_layout(x, layout), out)
    assert y.shape == x.shape[:2] + size and y.dtype == x.dtype
    np.testing.assert_allclose(y, ref_adaptive_avg_pool2d(x, size), **_tol(x.dtype))
    dy = np.random.default_rng(3).standard_normal(y.shape).astype(x.dtype)
    dx = nc.adaptive_avg_pool2d_backward(_layout(dy, layout), x.shape)
    assert dx.shape == x.shape and dx.dtype == x.dtype
    np.testing.assert_allclose(dx, ref_adaptive_avg_pool2d_backward(dy, x.shape), **_tol(x.dtype))


@pytest.mark.parametrize("shape, out", [
    ((3, 45, 5, 5), (6, 6)),    # small planes across planes: two full groups and a partial one
    ((1, 7, 1, 1), (3, 2)),
    ((1, 3, 33, 35), (5, 4)),   # planes above ACROSS_MAX_PLANE: a task per output row
])
def test_adaptive_avg_pool2d_both_kernels(shape, out):
    from nbconv.kernels import pool2d as K

    x = np.random.default_rng(8).standard_normal(shape).astype(np.float32)
    np.testing.assert_allclose(nc.adaptive_avg_pool2d(x, out), ref_adaptive_avg_pool2d(x, out),
                               **_tol(x.dtype))
    # the cases cover both sides of the choice between the two kernels
    assert (shape[-2] * shape[-1] <= K.ACROSS_MAX_PLANE) == (shape[-1] < 33)


def test_adaptive_avg_pool2d_int_output_size_and_bins():
    x = np.arange(10.0).reshape(1, 1, 1, 10)
    # bins of 10 -> 4: [0,3) [2,5) [5,8) [7,10)
    y = nc.adaptive_avg_pool2d(x, (1, 4))
    np.testing.assert_allclose(y[0, 0, 0], [1, 3, 6, 8])
    assert nc.adaptive_avg_pool2d(np.zeros((2, 3, 5, 7)), 3).shape == (2, 3, 3, 3)


@pytest.mark.parametrize("shape, out", [((2, 3, 7, 10), (3, 4)), ((1, 2, 5, 5), (7, 2))])
def test_adaptive_avg_pool2d_backward_finite_differences(shape, out):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape)
    dy = rng.standard_normal(shape[:2] + out)
    dx = nc.adaptive_avg_pool2d_backward(dy, shape)
    directional_check(lambda a: nc.adaptive_avg_pool2d(a, out), [x], dy, [dx])


@pytest.mark.parametrize("dtype", DTYPES)
def test_global_avg_pool2d(dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 5, 4)).astype(dtype)
    y = nc.global_avg_pool2d(x)
    assert y.shape == (2, 3, 1, 1) and y.dtype == dtype
    np.testing.assert_allclose(y[:, :, 0, 0], x.astype(np.float64).mean(axis=(2, 3)),
                               **_tol(dtype))
    y2 = nc.global_avg_pool2d(x, keepdims=False)
    assert y2.shape == (2, 3)
    np.testing.assert_array_equal(y2, y[:, :, 0, 0])
    dy = rng.standard_normal((2, 3)).astype(dtype)
    for g in (dy, dy[:, :, None, None]):
        dx = nc.global_avg_pool2d_backward(g, x.shape)
        assert dx.shape == x.shape and dx.dtype == dtype
        np.testing.assert_allclose(dx, np.broadcast_to(dy[:, :, None, None] / 20, x.shape),
                                   **_tol(dtype))


def test_global_avg_pool2d_backward_finite_differences():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 6, 5))
    dy = rng.standard_normal((2, 3, 1, 1))
    dx = nc.global_avg_pool2d_backward(dy, x.shape)
    directional_check(nc.global_avg_pool2d, [x], dy, [dx])


# --------------------------------------------------------------------------- dtypes, 3-D, errors


@pytest.mark.parametrize("dtype", DTYPES)
def test_dtype_preserved(dtype):
    x = np.random.default_rng(0).standard_normal((1, 2, 6, 6)).astype(dtype)
    y, ind = nc.max_pool2d(x, 2, return_indices=True)
    assert y.dtype == dtype
    assert nc.max_pool2d_backward(y, ind, x.shape).dtype == dtype
    y = nc.avg_pool2d(x, 3, 1, 1)
    assert y.dtype == dtype and nc.avg_pool2d_backward(y, x.shape, 3, 1, 1).dtype == dtype
    y = nc.adaptive_avg_pool2d(x, 4)
    assert y.dtype == dtype and nc.adaptive_avg_pool2d_backward(y, x.shape).dtype == dtype
    y = nc.global_avg_pool2d(x)
    assert y.dtype == dtype and nc.global_avg_pool2d_backward(y, x.shape).dtype == dtype


def test_integer_input_cast_to_float32_and_float16_rejected():
    x = np.arange(16).reshape(1, 1, 4, 4)
    assert nc.max_pool2d(x, 2).dtype == np.float32
    np.testing.assert_array_equal(nc.avg_pool2d(x, 2)[0, 0], [[2.5, 4.5], [10.5, 12.5]])
    with pytest.raises(TypeError, match="max_pool2d: argument 'x'"):
        nc.max_pool2d(x.astype(np.float16), 2)


def test_three_dimensional_input():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 6, 5))
    y, ind = nc.max_pool2d(x, 2, 1, 1, return_indices=True)
    y4, ind4 = nc.max_pool2d(x[None], 2, 1, 1, return_indices=True)
    assert y.shape == y4.shape[1:]
    np.testing.assert_array_equal(y, y4[0])
    np.testing.assert_array_equal(ind, ind4[0])
    np.testing.assert_array_equal(nc.max_pool2d_backward(y, ind, x.shape),
                                  nc.max_pool2d_backward(y4, ind4, x[None].shape)[0])
    np.testing.assert_array_equal(nc.avg_pool2d(x, 3, 2, 1), nc.avg_pool2d(x[None], 3, 2, 1)[0])
    dy = rng.standard_normal((3, 3, 3))
    np.testing.assert_array_equal(nc.avg_pool2d_backward(dy, x.shape, 3, 2, 1),
                                  nc.avg_pool2d_backward(dy[None], (1,) + x.shape, 3, 2, 1)[0])
    assert nc.adaptive_avg_pool2d(x, 2).shape == (3, 2, 2)
    assert nc.global_avg_pool2d(x).shape == (3, 1, 1)
    assert nc.global_avg_pool2d_backward(np.ones(3), x.shape).shape == x.shape


X = np.zeros((1, 2, 5, 5))
DY = np.zeros((1, 2, 2, 2))
IND = np.zeros((1, 2, 2, 2), np.int64)


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda: nc.max_pool2d(np.zeros((5, 5)), 2), ValueError, "argument 'x'.*shape \\(5, 5\\)"),
        (lambda: nc.max_pool2d(X, 2, padding=2), ValueError, "argument 'padding'"),
        (lambda: nc.avg_pool2d(X, 3, padding=(0, 2)), ValueError, "argument 'padding'"),
        (lambda: nc.max_pool2d(X, 6), ValueError, "argument 'kernel_size'.*\\(1, 2, 5, 5\\)"),
        (lambda: nc.max_pool2d(X, 3, dilation=3), ValueError, "argument 'kernel_size'"),
        (lambda: nc.max_pool2d(X, 0), ValueError, "argument 'kernel_size'"),
        (lambda: nc.max_pool2d(X, 2, stride=0), ValueError, "argument 'stride'"),
        (lambda: nc.max_pool2d(X, 2, dilation=0), ValueError, "argument 'dilation'"),
        (lambda: nc.avg_pool2d(X, 2, padding=-1), ValueError, "argument 'padding'"),
        (lambda: nc.avg_pool2d(X, 2.0), TypeError, "argument 'kernel_size'"),
        (lambda: nc.avg_pool2d(X, (2, 2, 2)), ValueError, "argument 'kernel_size'"),
        (lambda: nc.avg_pool2d(X, 2, divisor_override=0), ValueError, "'divisor_override'"),
        (lambda: nc.max_pool2d_backward(DY, IND.astype(float), X.shape), TypeError, "'indices'"),
        (lambda: nc.max_pool2d_backward(DY, IND[:, :1], X.shape), ValueError, "'indices'"),
        (lambda: nc.max_pool2d_backward(DY, IND + 25, X.shape), ValueError, "'indices'"),
        (lambda: nc.max_pool2d_backward(DY, IND, (1, 3, 5, 5)), ValueError, "'input_shape'"),
        (lambda: nc.max_pool2d_backward(DY, IND, (1, 2, 5)), ValueError, "'input_shape'"),
        (lambda: nc.max_pool2d_backward(DY[0, 0], IND[0, 0], (5, 5)), ValueError, "'dy'"),
        (lambda: nc.avg_pool2d_backward(DY, X.shape, 3), ValueError, "'dy'.*\\(1, 1\\)"),
        (lambda: nc.avg_pool2d_backward(DY, (2, 2, 5, 5), 2), ValueError, "'input_shape'"),
        (lambda: nc.avg_pool2d_backward(DY, (1, 2, 5, 5.0), 2), TypeError, "'input_shape'"),
        (lambda: nc.adaptive_avg_pool2d(X, 0), ValueError, "'output_size'"),
        (lambda: nc.adaptive_avg_pool2d(X, (1, 2, 3)), ValueError, "'output_size'"),
        (lambda: nc.adaptive_avg_pool2d_backward(DY, (1, 3, 5, 5)), ValueError, "'input_shape'"),
        (lambda: nc.global_avg_pool2d(np.zeros(3)), ValueError, "argument 'x'"),
        (lambda: nc.global_avg_pool2d_backward(DY, X.shape), ValueError, "argument 'dy'"),
        (lambda: nc.global_avg_pool2d_backward(np.zeros(3), (2, 5, 5)), ValueError, "'dy'"),
        (lambda: nc.global_avg_pool2d_backward(np.zeros(2), None), TypeError, "'input_shape'"),
    ],
)
def test_validation_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


# --------------------------------------------------------------------------- PyTorch cross-check


@given(pool_cases(), st.booleans(), st.booleans())
def test_matches_torch(case, count_include_pad, nan):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x, k, s, p, d, ceil_mode, _ = case
    if nan:
        x = x.copy()
        x.ravel()[:: max(1, x.size // 3)] = np.nan
    t = torch.from_numpy(x)
    y_t, i_t = F.max_pool2d(t, k, s, p, d, ceil_mode, return_indices=True)
    y, ind = nc.max_pool2d(x, k, s, p, d, ceil_mode, return_indices=True)
    np.testing.assert_array_equal(y, y_t.numpy())
    # a window without input elements (dilation only): nbconv says -1 where PyTorch gives a
    # meaningless position; elsewhere the indices agree
    empty = ind == -1
    np.testing.assert_array_equal(ind[~empty], i_t.numpy()[~empty])
    assert np.all(y[empty] == -np.inf)
    y_t = F.avg_pool2d(t, k, s, p, ceil_mode, count_include_pad)
    y = nc.avg_pool2d(x, k, s, p, ceil_mode, count_include_pad)
    np.testing.assert_allclose(y, y_t.numpy(), **_tol(x.dtype))
    out = (max(1, x.shape[2] - 2), x.shape[3] + 1)
    np.testing.assert_allclose(nc.adaptive_avg_pool2d(x, out),
                               F.adaptive_avg_pool2d(t, out).numpy(), **_tol(x.dtype))


def test_matches_torch_backward():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(0)
    x = rng.integers(-2, 3, size=(2, 3, 9, 8)).astype(np.float64)  # ties
    dy_shape = F.max_pool2d(torch.from_numpy(x), 3, 2, 1, 1, True).shape
    dy = rng.standard_normal(tuple(dy_shape))
    t = torch.from_numpy(x).requires_grad_()
    F.max_pool2d(t, 3, 2, 1, 1, True).backward(torch.from_numpy(dy))
    _, ind = nc.max_pool2d(x, 3, 2, 1, 1, True, return_indices=True)
    np.testing.assert_allclose(nc.max_pool2d_backward(dy, ind, x.shape), t.grad.numpy(),
                               rtol=1e-12, atol=1e-12)
    t.grad = None
    F.avg_pool2d(t, 3, 2, 1, True, False).backward(torch.from_numpy(dy))
    np.testing.assert_allclose(nc.avg_pool2d_backward(dy, x.shape, 3, 2, 1, True, False),
                               t.grad.numpy(), rtol=1e-12, atol=1e-12)
    t.grad = None
    dy = rng.standard_normal((2, 3, 4, 5))
    F.adaptive_avg_pool2d(t, (4, 5)).backward(torch.from_numpy(dy))
    np.testing.assert_allclose(nc.adaptive_avg_pool2d_backward(dy, x.shape), t.grad.numpy(),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(2, 3, 6, 8), (1, 2, 7, 5), (1, 1, 2, 2)])
def test_max_pool2d_2x2_fast_path_matches_reference(dtype, shape):
    # The 2x2/2 unpadded case has its own branch-free kernel: check values, indices, the
    # first-maximum tie rule (small integers make ties frequent) and NaN windows.
    rng = np.random.default_rng(sum(shape))
    x = rng.integers(-2, 3, shape).astype(dtype)
    x.flat[rng.choice(x.size, size=max(1, x.size // 7), replace=False)] = np.nan
    x.flat[0] = np.nan
    if x.size > 3:
        x.flat[1] = np.nan  # two NaNs in one window: the last one's index is recorded
    y, idx = nc.max_pool2d(x, 2, return_indices=True)
    ry, ridx = ref_max_pool2d(x, (2, 2), (2, 2), (0, 0))
    np.testing.assert_array_equal(y, ry)
    np.testing.assert_array_equal(idx, ridx)

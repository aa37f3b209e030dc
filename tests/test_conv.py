"""conv2d / conv1d (forward and backward) against independent references.

References: ``reference_conv`` (scipy.signal.correlate2d per channel pair, explicit loops for
1-D; never imports nbconv) and float64 finite differences (``gradcheck.directional_check``).
Tests that compare two nbconv algorithms with each other prove consistency only and say so.
"""

from __future__ import annotations

import numpy as np
import pytest
from closeness import assert_scaled_close
from gradcheck import directional_check
from hypothesis import assume, given
from hypothesis import strategies as st
from reference_conv import ref_conv1d, ref_conv2d, ref_pads

import nbconv as nc
from nbconv._checks.conv import geometry as _geometry
from nbconv.conv import plan as _plan

MODES = ["zeros", "reflect", "replicate", "circular"]
RTOL = {np.float32: 1e-4, np.float64: 1e-10}


ALGOS = ["direct", "im2col"]


def _close(got, want, dtype):
    assert_scaled_close(got, want, RTOL[dtype])


def _relayout(a, how):
    """Same values as ``a`` in another memory layout."""
    if how == "C":
        return a
    if how == "F":
        return np.asfortranarray(a)
    if how == "neg":  # negative strides on the last axis
        return np.ascontiguousarray(a[..., ::-1])[..., ::-1]
    if how == "T":  # transposed spatial axes
        return np.ascontiguousarray(np.swapaxes(a, -1, -2)).swapaxes(-1, -2)
    if how == "step":  # every other element of a larger buffer
        big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
        big[..., ::2] = a
        return big[..., ::2]
    raise AssertionError(how)


def _valid(H, W, kh, kw, stride, padding, dilation, mode):
    """Whether the configuration is legal (computed independently of nbconv)."""
    pt, pb, pl, pr = ref_pads(padding, (H, W), (kh, kw), stride, dilation)
    for n, k, d, p0, p1 in ((H, kh, dilation[0], pt, pb), (W, kw, dilation[1], pl, pr)):
        if n + p0 + p1 < d * (k - 1) + 1:
            return False
        if mode == "reflect" and max(p0, p1) >= n:
            return False
        if mode == "circular" and max(p0, p1) > n:
            return False
    return True


@st.composite
def conv_cases(draw, dtypes=(np.float32, np.float64)):
    groups = draw(st.integers(1, 3))
    cg = draw(st.integers(1, 3))
    depthwise = draw(st.booleans())
    if depthwise:  # groups == C, F = multiplier * C
        groups, cg = draw(st.integers(1, 4)), 1
    fg = draw(st.integers(1, 2))
    C, F = groups * cg, groups * fg
    N = draw(st.integers(1, 2))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = draw(st.one_of(
        st.integers(0, 2),
        st.tuples(st.integers(0, 2), st.integers(0, 2)),
        st.sampled_from(["same", "valid"]),
    ))
    mode = draw(st.sampled_from(MODES))
    low = 1 if mode in ("zeros", "replicate") else 3  # reflect/circular: padding <= input
    H = max(low, dilation[0] * (kh - 1) - 1 + draw(st.integers(0, 5)))
    W = max(low, dilation[1] * (kw - 1) - 1 + draw(st.integers(0, 6)))
    assume(_valid(H, W, kh, kw, stride, padding, dilation, mode))
    dtype = draw(st.sampled_from(dtypes))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((F, cg, kh, kw)).astype(dtype)
    b = rng.standard_normal(F).astype(dtype) if draw(st.booleans()) else None
    layout = draw(st.sampled_from(["C", "F", "neg", "T", "step"]))
    kw_args = dict(stride=stride, padding=padding, dilation=dilation, groups=groups,
                   padding_mode=mode)
    return x, w, b, kw_args, layout


# --------------------------------------------------------------------------- forward


@pytest.mark.parametrize("algorithm", ALGOS)
@given(case=conv_cases())
def test_conv2d_matches_reference(algorithm, case):
    x, w, b, kw, layout = case
    algorithm = algorithm
    want = ref_conv2d(x, w, b, **kw)
    y = nc.conv2d(_relayout(x, layout), _relayout(w, layout), b, algorithm=algorithm, **kw)
    assert y.dtype == x.dtype
    assert y.shape == want.shape
    _close(y, want, x.dtype.type)


EDGE_CASES = {
    # name: (x shape, w shape, kwargs)
    "stride_not_dividing": ((1, 2, 7, 8), (3, 2, 2, 3), dict(stride=(3, 2))),
    "kernel_equals_input": ((2, 3, 4, 5), (2, 3, 4, 5), {}),
    "kernel_equals_padded_input": ((1, 1, 2, 3), (2, 1, 4, 5), dict(padding=1)),
    "one_by_one": ((2, 5, 3, 4), (4, 5, 1, 1), {}),
    "one_by_one_strided": ((1, 3, 5, 6), (2, 3, 1, 1), dict(stride=2)),
    "batch_1_wide": ((1, 4, 16, 16), (8, 4, 3, 3), dict(padding=1)),
    "same_stride2_odd": ((2, 2, 7, 9), (3, 2, 3, 4), dict(stride=2, padding="same")),
    "same_stride2_odd_reflect": ((1, 2, 7, 5), (3, 2, 3, 3),
                                 dict(stride=2, padding="same", padding_mode="reflect")),
    "same_dilated_even_kernel": ((1, 1, 6, 7), (1, 1, 2, 4),
                                 dict(padding="same", dilation=(2, 3))),
    "dilation_per_axis": ((1, 2, 9, 8), (2, 2, 3, 2), dict(dilation=(3, 1), stride=(1, 2))),
    "depthwise": ((2, 6, 5, 5), (6, 1, 3, 3), dict(groups=6, padding=1)),
    "depthwise_multiplier": ((1, 3, 5, 4), (9, 1, 3, 2), dict(groups=3, padding=(1, 0))),
    "circular_pad_equals_input": ((1, 2, 2, 3), (2, 2, 3, 3),
                                  dict(padding=(2, 3), padding_mode="circular")),
    "replicate_pad_larger_than_input": ((1, 1, 2, 2), (1, 1, 3, 3),
                                        dict(padding=4, padding_mode="replicate")),
    "reflect_max_pad": ((1, 1, 3, 4), (2, 1, 2, 2), dict(padding=(2, 3), padding_mode="reflect")),
    "height_1": ((2, 2, 1, 9), (3, 2, 1, 3), dict(stride=(1, 2))),
}


@pytest.mark.parametrize("algorithm", ALGOS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(EDGE_CASES))
def test_conv2d_edge_cases(name, dtype, algorithm):
    algorithm = algorithm
    xs, ws, kw = EDGE_CASES[name]
    rng = np.random.default_rng(1)
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    b = rng.standard_normal(ws[0]).astype(dtype)
    y = nc.conv2d(x, w, b, algorithm=algorithm, **kw)
    assert y.dtype == dtype
    _close(y, ref_conv2d(x, w, b, **kw), dtype)


def test_conv2d_batch1_both_algorithms_agree_and_match():
    """Batch 1 runs (the kernels parallelise inside the image) and matches the reference."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 3, 20, 17))
    w = rng.standard_normal((5, 3, 3, 3))
    y = nc.conv2d(x, w, stride=1, padding=1, algorithm="direct")
    _close(y, ref_conv2d(x, w, padding=1), np.float64)
    y_auto = nc.conv2d(x, w, padding=1)
    _close(y_auto, y, np.float64)


def test_conv2d_known_values():
    """A tiny hand-computed case: 2x2 box filter on arange, stride 2, padding 1."""
    x = np.arange(9.0).reshape(1, 1, 3, 3)
    y = nc.conv2d(x, np.ones((1, 1, 2, 2)), stride=2, padding=1, algorithm="direct")
    # windows (padded with zeros) start at -1 and 1: [[0, 1+2], [3+6, 4+5+7+8]]
    np.testing.assert_array_equal(y[0, 0], [[0.0, 3.0], [9.0, 24.0]])


def test_conv2d_nan_propagates():
    x = np.ones((1, 1, 6, 6))
    x[0, 0, 0, 0] = np.nan
    for algorithm in ["direct", "auto"]:
        y = nc.conv2d(x, np.ones((2, 1, 3, 3)), algorithm=algorithm)
        assert np.isnan(y[:, :, 0, 0]).all()
        assert np.isfinite(y[:, :, 1:, :]).all() and np.isfinite(y[:, :, :, 1:]).all()


@pytest.mark.parametrize("bad", ["x", "w"])
def test_strided_direct_backward_non_finite(bad):
    """The direct algorithm's strided gradients run as stride-1 ones with zeros spread into
    dy, except when x or w holds an inf (0 * inf would be NaN): an inf in x at a position
    in a row that a stride-3 layer skips leaves the weight gradient finite, as in the
    reference; an inf in w reaches only the input positions it touches."""
    from reference_conv import ref_conv2d_weight_grad

    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 3, 9, 9))
    w = rng.standard_normal((4, 3, 2, 2))
    dy = rng.standard_normal((2, 4, 3, 3))  # 2x2 kernel, stride 3: rows 3i + {0, 1}
    if bad == "x":
        x[1, 2, 2, 3] = np.inf
    else:
        w[0, 0, 1, 1] = np.inf
    dx, gw, gb = nc.conv2d_backward(dy, x, w, stride=3, algorithm="direct")
    want_dx, want_gw, _ = nc.conv2d_backward(dy, x, w, stride=3, algorithm="im2col")
    assert_scaled_close(gw, ref_conv2d_weight_grad(dy, x, 2, 2, stride=(3, 3)), 1e-12)
    np.testing.assert_array_equal(np.isfinite(dx), np.isfinite(want_dx))
    finite = np.isfinite(want_dx)
    assert finite.any() and (bad == "x" or not finite.all())
    assert_scaled_close(dx[finite], want_dx[finite], 1e-12)
    assert_scaled_close(gb, dy.sum(axis=(0, 2, 3)), 1e-12)


@pytest.mark.parametrize("groups, C, F", [(1, 3, 8), (2, 4, 6), (4, 4, 4)])
def test_strided_direct_backward_spread(groups, C, F):
    """Strided gradients through the stride-1 kernels (dy spread out with zeros): equal to
    im2col's on plain, grouped and depthwise layers, strides 2 and 3, with dilation."""
    rng = np.random.default_rng(groups)
    x = rng.standard_normal((2, C, 11, 10))
    w = rng.standard_normal((F, C // groups, 3, 2))
    kw = dict(stride=(2, 3), padding=(1, 2), dilation=(1, 2), groups=groups)
    y = nc.conv2d(x, w, **kw)
    dy = rng.standard_normal(y.shape)
    for got, want in zip(nc.conv2d_backward(dy, x, w, algorithm="direct", **kw),
                         nc.conv2d_backward(dy, x, w, algorithm="im2col", **kw)):
        assert_scaled_close(got, want, 1e-12)


def test_conv2d_empty_batch():
    y = nc.conv2d(np.zeros((0, 2, 5, 5)), np.ones((3, 2, 3, 3)))
    assert y.shape == (0, 3, 3, 3)
    dx, dw, db = nc.conv2d_backward(np.zeros((0, 3, 3, 3)), np.zeros((0, 2, 5, 5)),
                                    np.ones((3, 2, 3, 3)))
    assert dx.shape == (0, 2, 5, 5)
    np.testing.assert_array_equal(dw, 0.0)
    np.testing.assert_array_equal(db, 0.0)


# --------------------------------------------------------------------------- dtypes


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_preserved(dtype):
    x = np.ones((1, 2, 5, 5), dtype)
    w = np.ones((3, 2, 3, 3), np.float64)  # cast to x's dtype
    b = np.zeros(3, np.float32)
    y = nc.conv2d(x, w, b)
    assert y.dtype == dtype
    dx, dw, db = nc.conv2d_backward(np.ones(y.shape, np.float64), x, w)
    assert dx.dtype == dw.dtype == db.dtype == dtype
    y1 = nc.conv1d(x[:, :, 0], w[:, :, 0], b)
    assert y1.dtype == dtype
    dx1, dw1, db1 = nc.conv1d_backward(np.ones(y1.shape), x[:, :, 0], w[:, :, 0])
    assert dx1.dtype == dw1.dtype == db1.dtype == dtype


def test_integer_input_cast_to_float32():
    x = np.arange(25, dtype=np.int64).reshape(1, 1, 5, 5)
    y = nc.conv2d(x, np.ones((1, 1, 2, 2), np.int32))
    assert y.dtype == np.float32
    _close(y, ref_conv2d(x, np.ones((1, 1, 2, 2))), np.float32)


def test_float16_rejected():
    with pytest.raises(TypeError, match="'x'"):
        nc.conv2d(np.ones((1, 1, 3, 3), np.float16), np.ones((1, 1, 2, 2)))


# --------------------------------------------------------------------------- backward


def _check_grads(x, w, b, kw, algorithm, seed):
    f_out = nc.conv2d(x, w, b, algorithm=algorithm, **kw)
    dy = np.random.default_rng(seed).standard_normal(f_out.shape)
    dx, dw, db = nc.conv2d_backward(dy, x, w, bias=b is not None, algorithm=algorithm, **kw)
    assert dx.shape == x.shape and dw.shape == w.shape
    if b is None:
        assert db is None
        directional_check(lambda x_, w_: nc.conv2d(x_, w_, algorithm=algorithm, **kw),
                          [x, w], dy, [dx, dw], seed=seed)
    else:
        assert db.shape == b.shape
        directional_check(lambda x_, w_, b_: nc.conv2d(x_, w_, b_, algorithm=algorithm, **kw),
                          [x, w, b], dy, [dx, dw, db], seed=seed)
        # each gradient separately (a wrong one cannot hide behind the others)
        directional_check(lambda b_: nc.conv2d(x, w, b_, algorithm=algorithm, **kw),
                          [b], dy, [db], seed=seed + 1)
    directional_check(lambda x_: nc.conv2d(x_, w, b, algorithm=algorithm, **kw),
                      [x], dy, [dx], seed=seed + 2)
    directional_check(lambda w_: nc.conv2d(x, w_, b, algorithm=algorithm, **kw),
                      [w], dy, [dw], seed=seed + 3)
    return dy, dx, dw, db


@pytest.mark.parametrize("algorithm", ALGOS)
@given(case=conv_cases(dtypes=(np.float64,)))
def test_conv2d_backward_gradcheck(algorithm, case):
    x, w, b, kw, _ = case
    algorithm = algorithm
    _check_grads(x, w, b, kw, algorithm, seed=int(abs(x.flat[0]) * 1e6) % 1000)


GRAD_CASES = {
    "reflect_same_stride2": ((2, 2, 5, 6), (2, 2, 3, 3),
                             dict(stride=2, padding="same", padding_mode="reflect")),
    "replicate_dilated": ((1, 2, 6, 5), (4, 1, 2, 3),
                          dict(padding=(2, 1), dilation=(2, 1), groups=2,
                               padding_mode="replicate")),
    "circular_pad_equals_input": ((1, 1, 2, 3), (2, 1, 3, 3),
                                  dict(padding=(2, 3), padding_mode="circular")),
    "zeros_depthwise_strided": ((2, 3, 7, 6), (3, 1, 3, 2),
                                dict(stride=(2, 3), padding=1, groups=3)),
    "zeros_kernel_larger_than_input": ((1, 2, 2, 2), (3, 2, 3, 4), dict(padding=(1, 2))),
}


@pytest.mark.parametrize("algorithm", ALGOS)
@pytest.mark.parametrize("name", sorted(GRAD_CASES))
def test_conv2d_backward_named_cases(name, algorithm):
    algorithm = algorithm
    xs, ws, kw = GRAD_CASES[name]
    rng = np.random.default_rng(7)
    x, w, b = rng.standard_normal(xs), rng.standard_normal(ws), rng.standard_normal(ws[0])
    _check_grads(x, w, b, kw, algorithm, seed=5)


def test_conv2d_backward_flags():
    rng = np.random.default_rng(2)
    x, w = rng.standard_normal((2, 2, 5, 5)), rng.standard_normal((3, 2, 3, 3))
    dy = rng.standard_normal((2, 3, 5, 5))
    dx, dw, db = nc.conv2d_backward(dy, x, w, padding=1, padding_mode="circular")
    dx2, dw2, db2 = nc.conv2d_backward(dy, x, w, padding=1, padding_mode="circular",
                                       bias=False, need_dx=False)
    assert dx2 is None and db2 is None
    np.testing.assert_allclose(dw2, dw, rtol=1e-12)
    np.testing.assert_allclose(db, dy.sum(axis=(0, 2, 3)), rtol=1e-12)
    # non-contiguous dy/x give the same gradients
    dx3, dw3, _ = nc.conv2d_backward(_relayout(dy, "T"), _relayout(x, "neg"), _relayout(w, "F"),
                                     padding=1, padding_mode="circular")
    np.testing.assert_allclose(dx3, dx, rtol=1e-12)
    np.testing.assert_allclose(dw3, dw, rtol=1e-12)


def test_conv2d_backward_float32_close_to_float64():
    rng = np.random.default_rng(4)
    x, w = rng.standard_normal((2, 3, 6, 7)), rng.standard_normal((4, 3, 3, 2))
    dy = rng.standard_normal((2, 4, 3, 4))
    kw = dict(stride=2, padding=1, padding_mode="reflect")
    g64 = nc.conv2d_backward(dy, x, w, **kw)
    g32 = nc.conv2d_backward(dy.astype(np.float32), x.astype(np.float32),
                             w.astype(np.float32), **kw)
    for a, b in zip(g32, g64):
        assert a.dtype == np.float32
        _close(a, b, np.float32)


# --------------------------------------------------------------------------- conv1d


@st.composite
def conv1d_cases(draw):
    groups = draw(st.integers(1, 2))
    cg, fg = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    k, s, d = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 2))
    padding = draw(st.one_of(st.integers(0, 2), st.sampled_from(["same", "valid"])))
    mode = draw(st.sampled_from(MODES))
    L = max(1 if mode in ("zeros", "replicate") else 3, d * (k - 1) - 1 + draw(st.integers(0, 5)))
    assume(_valid(1, L, 1, k, (1, s), padding if isinstance(padding, str) else (0, padding),
                  (1, d), mode))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    N = draw(st.integers(1, 2))
    x = rng.standard_normal((N, groups * cg, L)).astype(dtype)
    w = rng.standard_normal((groups * fg, cg, k)).astype(dtype)
    b = rng.standard_normal(groups * fg).astype(dtype) if draw(st.booleans()) else None
    return x, w, b, dict(stride=s, padding=padding, dilation=d, groups=groups, padding_mode=mode)


@given(case=conv1d_cases())
def test_conv1d_matches_reference(case):
    x, w, b, kw = case
    y = nc.conv1d(x, w, b, **kw)
    want = ref_conv1d(x, w, b, **kw)
    assert y.dtype == x.dtype and y.shape == want.shape
    _close(y, want, x.dtype.type)


@given(case=conv1d_cases())
def test_conv1d_backward_gradcheck(case):
    x, w, b, kw = case
    x, w = x.astype(np.float64), w.astype(np.float64)
    b = None if b is None else b.astype(np.float64)
    y = nc.conv1d(x, w, b, **kw)
    dy = np.random.default_rng(0).standard_normal(y.shape)
    dx, dw, db = nc.conv1d_backward(dy, x, w, bias=b is not None, **kw)
    assert dx.shape == x.shape and dw.shape == w.shape
    if b is None:
        assert db is None
        directional_check(lambda x_, w_: nc.conv1d(x_, w_, **kw), [x, w], dy, [dx, dw])
    else:
        directional_check(lambda x_, w_, b_: nc.conv1d(x_, w_, b_, **kw), [x, w, b], dy,
                          [dx, dw, db])
    directional_check(lambda x_: nc.conv1d(x_, w, b, **kw), [x], dy, [dx], seed=1)


def test_conv1d_tuple_args_and_need_dx():
    x = np.random.default_rng(0).standard_normal((1, 2, 9))
    w = np.ones((2, 2, 3))
    y = nc.conv1d(x, w, stride=(2,), padding=(1,), dilation=(1,))
    _close(y, ref_conv1d(x, w, stride=2, padding=1), np.float64)
    dx, dw, db = nc.conv1d_backward(np.ones(y.shape), x, w, stride=2, padding=1, need_dx=False,
                                    bias=False)
    assert dx is None and db is None and dw.shape == w.shape


# --------------------------------------------------------------------------- validation

X = np.ones((2, 4, 6, 6))
WT = np.ones((6, 2, 3, 3))

BAD_CONV2D = [
    # (kwargs, exception, substring of the message)
    (dict(x=np.ones((4, 6, 6)), weight=WT), ValueError, "'x'"),
    (dict(x=X, weight=np.ones((6, 2, 3))), ValueError, "'weight'"),
    (dict(x=X, weight=WT, groups=2, bias=np.ones((6, 1))), ValueError, "'bias'"),
    (dict(x=X, weight=WT, groups=2, bias=np.ones(5)), ValueError, "'bias'"),
    (dict(x=X, weight=WT, groups=3), ValueError, "'groups'"),
    (dict(x=X, weight=np.ones((5, 2, 3, 3)), groups=2), ValueError, "'groups'"),
    (dict(x=X, weight=WT), ValueError, "'weight'"),  # 2 != 4 input channels per group
    (dict(x=X, weight=WT, groups=0), ValueError, "'groups'"),
    (dict(x=X, weight=WT, groups=2, stride=0), ValueError, "'stride'"),
    (dict(x=X, weight=WT, groups=2, stride=(1, -1)), ValueError, "'stride'"),
    (dict(x=X, weight=WT, groups=2, dilation=0), ValueError, "'dilation'"),
    (dict(x=X, weight=WT, groups=2, padding=-1), ValueError, "'padding'"),
    (dict(x=X, weight=WT, groups=2, padding="full"), ValueError, "'padding'"),
    (dict(x=X, weight=WT, groups=2, padding=(1, 2, 3)), ValueError, "'padding'"),
    (dict(x=X, weight=WT, groups=2, stride=1.5), TypeError, "'stride'"),
    (dict(x=X, weight=WT, groups=2, padding_mode="symmetric"), ValueError, "'padding_mode'"),
    (dict(x=X, weight=WT, groups=2, algorithm="fft9"), ValueError, "'algorithm'"),
    (dict(x=X, weight=np.ones((6, 2, 7, 3)), groups=2), ValueError, "'weight'"),
    (dict(x=X, weight=np.ones((6, 2, 3, 3)), groups=2, dilation=(1, 4)), ValueError,
     "'weight'"),
    (dict(x=X, weight=WT, groups=2, padding=6, padding_mode="reflect"), ValueError,
     "'padding'"),
    (dict(x=X, weight=WT, groups=2, padding=7, padding_mode="circular"), ValueError,
     "'padding'"),
    (dict(x=np.ones((2, 0, 6, 6)), weight=np.ones((6, 0, 3, 3))), ValueError, "'x'"),
    (dict(x=np.ones((2, 4, 0, 6)), weight=WT, groups=2), ValueError, "'x'"),
    (dict(x=X, weight=np.ones((0, 2, 3, 3)), groups=2), ValueError, "'weight'"),
    (dict(x=np.ones((2, 4, 6, 6), np.complex128), weight=WT, groups=2), TypeError, "'x'"),
]


@pytest.mark.parametrize("kwargs,exc,substring", BAD_CONV2D)
def test_conv2d_validation(kwargs, exc, substring):
    with pytest.raises(exc, match=substring) as info:
        nc.conv2d(**kwargs)
    msg = str(info.value)
    assert msg.startswith("conv2d: argument")
    if exc is ValueError and substring not in ("'padding_mode'", "'algorithm'"):
        assert "shape" in msg, msg


def test_conv2d_validation_messages_include_shapes():
    with pytest.raises(ValueError, match=r"\(2, 4, 6, 6\).*\(6, 2, 3, 3\)"):
        nc.conv2d(X, WT)
    with pytest.raises(ValueError, match=r"\(6, 2, 3, 3\)"):
        nc.conv2d(X, WT, groups=2, padding=7, padding_mode="circular")


GOOD_BACKWARD = dict(dy=np.ones((2, 6, 4, 4)), x=X, weight=WT, groups=2)
BAD_BACKWARD = [
    (dict(dy=np.ones((2, 6, 5, 4)), x=X, weight=WT, groups=2), "'dy'"),
    (dict(dy=np.ones((2, 5, 4, 4)), x=X, weight=WT, groups=2), "'dy'"),
    (dict(dy=np.ones((6, 4, 4)), x=X, weight=WT, groups=2), "'dy'"),
    (dict(dy=np.ones((2, 6, 4, 4)), x=X, weight=WT), "'weight'"),
    (dict(dy=np.ones((2, 6, 4, 4)), x=X, weight=WT, groups=2, padding_mode="wrap"),
     "'padding_mode'"),
]


@pytest.mark.parametrize("kwargs,substring", BAD_BACKWARD)
def test_conv2d_backward_validation(kwargs, substring):
    with pytest.raises(ValueError, match=substring) as info:
        nc.conv2d_backward(**kwargs)
    assert str(info.value).startswith("conv2d_backward: argument")


def test_conv2d_backward_accepts_matching_dy():
    dx, dw, db = nc.conv2d_backward(**GOOD_BACKWARD)
    assert dx.shape == X.shape and dw.shape == WT.shape and db.shape == (6,)


BAD_CONV1D = [
    (dict(x=np.ones((2, 4, 6, 6)), weight=np.ones((3, 4, 3))), ValueError, "'x'"),
    (dict(x=np.ones((2, 4, 6)), weight=np.ones((3, 4, 3, 3))), ValueError, "'weight'"),
    (dict(x=np.ones((2, 4, 6)), weight=np.ones((3, 4, 3)), stride=(1, 1)), ValueError,
     "'stride'"),
    (dict(x=np.ones((2, 4, 6)), weight=np.ones((3, 4, 3)), padding=(1, 1)), ValueError,
     "'padding'"),
    (dict(x=np.ones((2, 4, 6)), weight=np.ones((3, 4, 9))), ValueError, "'weight'"),
    (dict(x=np.ones((2, 4, 6)), weight=np.ones((3, 4, 3)), padding="full"), ValueError,
     "'padding'"),
    (dict(x=np.ones((2, 4, 6)), weight=np.ones((3, 4, 3)), padding=6, padding_mode="reflect"),
     ValueError, "'padding'"),
    (dict(x=np.ones((2, 4, 6)), weight=np.ones((3, 4, 3)), bias=np.ones(4)), ValueError,
     "'bias'"),
]


@pytest.mark.parametrize("kwargs,exc,substring", BAD_CONV1D)
def test_conv1d_validation(kwargs, exc, substring):
    with pytest.raises(exc, match=substring) as info:
        nc.conv1d(**kwargs)
    assert str(info.value).startswith("conv1d: argument")


def test_conv1d_backward_validation():
    with pytest.raises(ValueError, match="'dy'") as info:
        nc.conv1d_backward(np.ones((2, 3, 5)), np.ones((2, 4, 6)), np.ones((3, 4, 3)))
    assert str(info.value).startswith("conv1d_backward: argument")


# --------------------------------------------------------------------------- PyTorch


TORCH_CASES = [
    ((2, 4, 7, 9), (6, 2, 3, 2), dict(stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2)),
    ((1, 3, 6, 5), (3, 1, 3, 3), dict(padding=2, groups=3, padding_mode="reflect")),
    ((2, 2, 5, 6), (4, 2, 3, 3), dict(padding=(1, 2), stride=2, padding_mode="replicate")),
    ((1, 2, 4, 5), (2, 2, 2, 3), dict(padding=(3, 2), dilation=2, padding_mode="circular")),
]


@pytest.mark.parametrize("algorithm", ALGOS)
@pytest.mark.parametrize("case", range(len(TORCH_CASES)))
def test_against_torch(case, algorithm):
    """Forward and all gradients against PyTorch (F.pad + conv2d), float64."""
    torch = pytest.importorskip("torch")
    algorithm = algorithm
    xs, ws, kw = TORCH_CASES[case]
    rng = np.random.default_rng(case)
    x, w, b = rng.standard_normal(xs), rng.standard_normal(ws), rng.standard_normal(ws[0])
    mode = kw.get("padding_mode", "zeros")
    ph, pw = (kw["padding"],) * 2 if np.isscalar(kw["padding"]) else kw["padding"]
    tx = torch.tensor(x, requires_grad=True)
    tw = torch.tensor(w, requires_grad=True)
    tb = torch.tensor(b, requires_grad=True)
    if mode == "zeros":
        ty = torch.nn.functional.conv2d(tx, tw, tb, kw.get("stride", 1), (ph, pw),
                                        kw.get("dilation", 1), kw.get("groups", 1))
    else:
        txp = torch.nn.functional.pad(tx, (pw, pw, ph, ph), mode=mode)
        ty = torch.nn.functional.conv2d(txp, tw, tb, kw.get("stride", 1), 0,
                                        kw.get("dilation", 1), kw.get("groups", 1))
    dy = rng.standard_normal(tuple(ty.shape))
    (ty * torch.tensor(dy)).sum().backward()
    y = nc.conv2d(x, w, b, algorithm=algorithm, **kw)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-10, atol=1e-10)
    dx, dw, db = nc.conv2d_backward(dy, x, w, algorithm=algorithm, **kw)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(dw, tw.grad.numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(db, tb.grad.numpy(), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("shape_x, shape_w, stride, groups, expected", [
    ((1, 64, 14, 14), (64, 64, 3, 3), 1, 1, "winograd"),  # stride 1, 3x3, many channels
    ((1, 16, 14, 14), (16, 16, 3, 3), 1, 1, "direct"),    # 3x3, few channels: wide rows
    ((1, 64, 27, 27), (192, 64, 5, 5), 1, 1, "winograd"), # AlexNet c2: 5x5 as 3x3 pieces
    ((1, 16, 27, 27), (32, 16, 5, 5), 1, 1, "direct"),    # 5x5, few channels: wide rows
    ((1, 6, 12, 12), (16, 6, 5, 5), 1, 1, "direct"),      # LeNet c2
    ((1, 64, 14, 14), (64, 64, 1, 1), 1, 1, "im2col"),    # 1x1: a plain GEMM
    ((1, 3, 32, 32), (64, 3, 7, 7), 2, 1, "direct"),      # NNlib 7x7 stride 2: phases
    ((1, 3, 64, 64), (64, 3, 11, 11), 4, 1, "direct"),    # AlexNet c1: phases
    ((1, 64, 28, 28), (128, 64, 3, 3), 2, 1, "im2col"),   # strided, many channels
    ((1, 8, 16, 16), (8, 1, 3, 3), 2, 8, "direct"),       # strided depthwise: tiny GEMMs
    ((1, 4, 16, 16), (8, 2, 3, 3), 2, 2, "direct"),       # grouped, strided, 18 terms
    ((1, 64, 16, 16), (64, 16, 3, 3), 2, 4, "im2col"),    # grouped, strided, 144 terms
    ((1, 1, 16, 16), (32, 1, 3, 3), 2, 1, "im2col"),      # strided, 9 terms
    ((1, 1, 16, 16), (6, 1, 5, 5), 1, 1, "direct"),       # LeNet c1
    ((1, 4, 16, 16), (8, 4, 1, 1), 1, 1, "im2col"),       # 1x1, however small
    ((1, 4, 16, 16), (8, 4, 1, 1), 2, 1, "im2col"),       # 1x1, strided
    ((1, 4, 16, 16), (8, 2, 1, 1), 1, 2, "direct"),       # 1x1, grouped
])
def test_auto_rule(shape_x, shape_w, stride, groups, expected):
    g = _geometry("conv2d", shape_x, shape_w, stride, 0, 1, groups, "zeros", "test")
    assert _plan.choose_algorithm("conv2d", "auto", shape_x[1], shape_w[2], shape_w[3], g,
                                   shape_w[0]) == expected


@pytest.mark.parametrize("shape_x, shape_w, stride, groups, expected", [
    ((1, 64, 30, 30), (64, 64, 3, 3), 1, 1, "winograd"),  # 3x3, many channels
    ((1, 64, 14, 14), (64, 64, 3, 3), 1, 1, "tapgemm"),   # ... on small planes (12x12)
    ((1, 64, 9, 9), (64, 64, 3, 3), 1, 1, "tapgemm"),     # ... and smaller (7x7)
    ((1, 32, 30, 30), (32, 32, 3, 3), 1, 1, "direct"),    # fewer than 48 channels
    ((1, 64, 27, 27), (192, 64, 5, 5), 1, 1, "im2col"),   # AlexNet c2
    ((1, 3, 32, 32), (64, 3, 7, 7), 2, 1, "im2col"),      # strided: always im2col
    ((1, 3, 32, 32), (16, 3, 3, 3), 2, 1, "im2col"),      # however small
    ((1, 8, 16, 16), (8, 1, 3, 3), 2, 8, "direct"),       # but not depthwise
    ((1, 1, 16, 16), (8, 1, 3, 3), 2, 1, "im2col"),       # one channel, groups 1
    ((1, 64, 14, 14), (64, 64, 1, 1), 1, 1, "im2col"),    # 1x1: a plain GEMM
    ((1, 16, 14, 14), (32, 16, 1, 1), 1, 1, "direct"),    # 1x1, few channels
])
def test_auto_rule_backward(shape_x, shape_w, stride, groups, expected):
    g = _geometry("conv2d", shape_x, shape_w, stride, 0, 1, groups, "zeros", "test")
    assert _plan.choose_algorithm("conv2d_backward", "auto", shape_x[1], shape_w[2],
                                   shape_w[3], g, shape_w[0], backward=True) == expected

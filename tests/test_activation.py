"""Activations, softmax/log-softmax and dropout: forward, backward, stability, validation."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from gradcheck import directional_check
from hypothesis import given
from hypothesis import strategies as st
from reference_activation import (
    leaky_relu_backward_ref,
    leaky_relu_ref,
    log_softmax_backward_ref,
    log_softmax_ref,
    relu_backward_ref,
    relu_ref,
    sigmoid_backward_ref,
    sigmoid_ref,
    softmax_backward_ref,
    softmax_ref,
    tanh_backward_ref,
    tanh_ref,
)
from scipy import special

import nbconv as nc

DTYPES = [np.float32, np.float64]
LAYOUTS = ["c", "fortran", "strided", "negative"]


def _tol(dtype):
    return {"rtol": 2e-5, "atol": 2e-6} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-13}


def _make(rng, shape, dtype, layout, scale=3.0):
    """Random array of ``shape`` in ``dtype`` with the given memory layout."""
    if layout == "c":
        return (scale * rng.standard_normal(shape)).astype(dtype)
    if layout == "fortran":
        return np.asfortranarray((scale * rng.standard_normal(shape)).astype(dtype))
    if layout == "strided":
        big = (scale * rng.standard_normal(tuple(2 * s for s in shape))).astype(dtype)
        return big[tuple(slice(None, None, 2) for _ in shape)]
    big = (scale * rng.standard_normal(shape)).astype(dtype)
    return big[tuple(slice(None, None, -1) for _ in shape)]


shapes = st.lists(st.integers(1, 6), min_size=1, max_size=4).map(tuple)
seeds = st.integers(0, 2**32 - 1)

FORWARD = {
    "relu": (nc.relu, relu_ref),
    "leaky_relu": (lambda x: nc.leaky_relu(x, 0.2), lambda x: leaky_relu_ref(x, 0.2)),
    "leaky_relu_default": (nc.leaky_relu, leaky_relu_ref),
    "sigmoid": (nc.sigmoid, sigmoid_ref),
    "tanh": (nc.tanh, tanh_ref),
}

# name -> (backward, reference backward, function giving the second argument from x)
BACKWARD = {
    "relu": (nc.relu_backward, relu_backward_ref, lambda x: x),
    "leaky_relu": (
        lambda dy, x: nc.leaky_relu_backward(dy, x, 0.2),
        lambda dy, x: leaky_relu_backward_ref(dy, x, 0.2),
        lambda x: x,
    ),
    "sigmoid": (nc.sigmoid_backward, sigmoid_backward_ref, lambda x: sigmoid_ref(x)),
    "tanh": (nc.tanh_backward, tanh_backward_ref, lambda x: tanh_ref(x)),
}


# --------------------------------------------------------------------------- elementwise


@pytest.mark.parametrize("name", sorted(FORWARD))
@given(shape=shapes, dtype=st.sampled_from(DTYPES), layout=st.sampled_from(LAYOUTS), seed=seeds)
def test_elementwise_forward_matches_reference(name, shape, dtype, layout, seed):
    fn, ref = FORWARD[name]
    x = _make(np.random.default_rng(seed), shape, dtype, layout)
    y = fn(x)
    assert y.dtype == dtype and y.shape == x.shape
    np.testing.assert_allclose(y, ref(x), **_tol(dtype))


@pytest.mark.parametrize("name", sorted(BACKWARD))
@given(shape=shapes, dtype=st.sampled_from(DTYPES), layout=st.sampled_from(LAYOUTS), seed=seeds)
def test_elementwise_backward_matches_reference(name, shape, dtype, layout, seed):
    bwd, ref, aux_of = BACKWARD[name]
    rng = np.random.default_rng(seed)
    x = _make(rng, shape, dtype, layout)
    dy = _make(rng, shape, dtype, "strided" if layout == "c" else "c")
    aux = np.asarray(aux_of(x), dtype=dtype)
    dy_before = dy.copy()
    dx = bwd(dy, aux)
    assert dx.dtype == dtype and dx.shape == x.shape
    np.testing.assert_allclose(dx, ref(dy, aux), **_tol(dtype))
    np.testing.assert_array_equal(dy, dy_before)  # dy is never modified


def _away_from_zero(rng, shape):
    u = rng.standard_normal(shape)
    return np.sign(u) * (0.1 + np.abs(u))


@pytest.mark.parametrize(
    "fwd, bwd, uses_output",
    [
        (nc.relu, nc.relu_backward, False),
        (nc.leaky_relu, nc.leaky_relu_backward, False),
        (lambda x: nc.leaky_relu(x, 0.3), lambda dy, x: nc.leaky_relu_backward(dy, x, 0.3), False),
        (nc.sigmoid, nc.sigmoid_backward, True),
        (nc.tanh, nc.tanh_backward, True),
    ],
    ids=["relu", "leaky_relu", "leaky_relu_0.3", "sigmoid", "tanh"],
)
def test_elementwise_gradcheck(fwd, bwd, uses_output):
    rng = np.random.default_rng(1)
    x = _away_from_zero(rng, (3, 4, 5))
    dy = rng.standard_normal(x.shape)
    dx = bwd(dy, fwd(x) if uses_output else x)
    directional_check(fwd, [x], dy, [dx])


@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_kinks_and_special_values(dtype):
    x = np.array([-np.inf, -1.0, -0.0, 0.0, 2.0, np.inf, np.nan], dtype=dtype)
    y = nc.relu(x)
    np.testing.assert_array_equal(y, np.array([0, 0, 0, 0, 2, np.inf, np.nan], dtype=dtype))
    dx = nc.relu_backward(np.ones_like(x), x)
    # gradient 0 at x == 0 (PyTorch's convention)
    np.testing.assert_array_equal(dx[:6], np.array([0, 0, 0, 0, 1, 1], dtype=dtype))
    yl = nc.leaky_relu(x, 0.5)
    np.testing.assert_array_equal(yl, np.array([-np.inf, -0.5, 0, 0, 2, np.inf, np.nan], dtype))
    dxl = nc.leaky_relu_backward(np.ones_like(x), x, 0.5)
    np.testing.assert_array_equal(dxl[:6], np.array([0.5, 0.5, 0.5, 0.5, 1, 1], dtype=dtype))


@pytest.mark.parametrize("name", sorted(FORWARD))
@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_propagates(name, dtype):
    x = np.array([1.0, np.nan, -1.0], dtype=dtype)
    y = FORWARD[name][0](x)
    assert np.isnan(y[1]) and np.all(np.isfinite(y[[0, 2]]))


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_tanh_stable_for_large_inputs(dtype):
    x = np.array([-1000.0, -100.0, -30.0, 0.0, 30.0, 100.0, 1000.0], dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise"):
            s = nc.sigmoid(x)
            t = nc.tanh(x)
    assert s.dtype == dtype and t.dtype == dtype
    assert s[0] == 0.0 and s[-1] == 1.0 and s[3] == 0.5
    assert np.all(np.isfinite(s)) and np.all(np.diff(s) >= 0)
    # float32 sigmoid(-100) is a denormal: compare with an absolute floor
    np.testing.assert_allclose(s, sigmoid_ref(x), rtol=1e-6 if dtype == np.float32 else 1e-14,
                               atol=1e-37)
    assert t[0] == -1.0 and t[-1] == 1.0


@pytest.mark.parametrize("size", [5000, 300_000])  # the serial and the threaded kernel
@pytest.mark.parametrize("name, exact", [("sigmoid", special.expit), ("tanh", np.tanh)])
def test_float32_sigmoid_tanh_within_3_ulp(name, exact, size):
    """float32 sigmoid and tanh (a vectorised exponential) against float64 over a dense grid
    out to the tails, where sigmoid reaches subnormals, plus signed zeros and the limits."""
    rng = np.random.default_rng(3)
    x = np.concatenate([np.linspace(-110, 25, size // 2), rng.standard_normal(size // 2) * 8,
                        [-0.0, 0.0, -np.inf, np.inf, 1e-30, -1e-30]]).astype(np.float32)
    y = getattr(nc, name)(x)
    want = exact(x.astype(np.float64))
    ulps = np.abs(y - want) / np.spacing(np.abs(want).astype(np.float32))
    assert y.dtype == np.float32 and ulps.max() <= 3, (x[ulps.argmax()], ulps.max())
    if name == "tanh":  # odd: the sign of zero is kept
        assert np.signbit(y[x == 0]).tolist() == np.signbit(x[x == 0]).tolist()


@pytest.mark.parametrize("size", [3456, 300_000])  # the serial and the threaded kernel
@pytest.mark.parametrize("name", ["sigmoid", "tanh"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_tanh_in_place_equal_out_of_place(name, dtype, size):
    """A planned network writes sigmoid and tanh over their input (their kernels then take
    a loop of their own): the same values as into a fresh array."""
    from nbconv.functional.activation import _unary_into

    x = (np.random.default_rng(5).standard_normal(size) * 10).astype(dtype)
    x[:4] = [np.nan, np.inf, -np.inf, -0.0]
    want = getattr(nc, name)(x)
    y = x.copy()
    _unary_into(name, y, y)
    np.testing.assert_array_equal(y, want)
    assert np.signbit(y[3]) == np.signbit(want[3])


@pytest.mark.parametrize("classes", [10, 1000])
def test_float32_softmax_rows_against_float64(classes):
    """Softmax and log-softmax of float32 logits along the last axis (a vectorised float32
    exponential) against SciPy's in float64 on the same values: a few units of rounding."""
    x = (np.random.default_rng(7).standard_normal((33, classes)) * 20).astype(np.float32)
    x[0, :3] = [-np.inf, 80.0, 80.0]
    x64 = x.astype(np.float64)
    want, want_log = special.softmax(x64, axis=1), special.log_softmax(x64, axis=1)
    got, got_log = nc.softmax(x, axis=1), nc.log_softmax(x, axis=1)
    assert got.dtype == got_log.dtype == np.float32
    big = want > 1e-30  # (relative errors of subnormal results mean nothing)
    assert np.max(np.abs(got - want)[big] / want[big]) < 1e-6
    assert np.all(np.abs(got - want)[~big] < 1e-37)
    finite = np.isfinite(want_log)
    scale = np.maximum(1, np.abs(want_log[finite]))
    assert np.max(np.abs(got_log[finite] - want_log[finite]) / scale) < 1e-6
    assert got[0, 0] == 0 and np.isneginf(got_log[0, 0])
    # the gradients from these outputs against the same formulas in float64
    dy = np.random.default_rng(8).standard_normal(x.shape).astype(np.float32)
    y64, ly64, dy64 = got.astype(np.float64), got_log.astype(np.float64), dy.astype(np.float64)
    want_dx = y64 * (dy64 - (dy64 * y64).sum(axis=1, keepdims=True))
    want_ldx = dy64 - np.exp(ly64) * dy64.sum(axis=1, keepdims=True)
    dx, ldx = nc.softmax_backward(dy, got, axis=1), nc.log_softmax_backward(dy, got_log, axis=1)
    for g, w in ((dx, want_dx), (ldx, want_ldx)):
        assert g.dtype == np.float32
        np.testing.assert_allclose(g, w, rtol=2e-5, atol=2e-6 * np.abs(w).max())


@pytest.mark.parametrize("fn", [nc.relu, nc.sigmoid, nc.tanh, nc.leaky_relu, nc.softmax])
def test_integer_input_is_cast_to_float32(fn):
    y = fn(np.array([[-2, 0, 3]], dtype=np.int64))
    assert y.dtype == np.float32


@pytest.mark.parametrize("fn", [nc.relu, nc.sigmoid, nc.tanh, nc.softmax, nc.dropout])
def test_float16_and_complex_rejected(fn):
    with pytest.raises(TypeError, match=r"argument 'x'"):
        fn(np.ones(3, np.float16))
    with pytest.raises(TypeError, match=r"argument 'x'"):
        fn(np.ones(3, np.complex128))


def test_zero_dim_and_empty_inputs():
    assert nc.relu(np.float64(-3.0)).shape == ()
    assert float(nc.sigmoid(np.array(0.0))) == 0.5
    assert nc.tanh(np.zeros((0, 3))).shape == (0, 3)
    assert nc.softmax(np.zeros((0, 3))).shape == (0, 3)


@pytest.mark.parametrize(
    "fn, args",
    [
        (nc.relu_backward, (np.ones(3), np.ones(4))),
        (nc.leaky_relu_backward, (np.ones((2, 3)), np.ones((3, 2)))),
        (nc.sigmoid_backward, (np.ones(3), np.ones((1, 3)))),
        (nc.tanh_backward, (np.ones(2), np.ones(3))),
        (nc.softmax_backward, (np.ones((2, 3)), np.ones((2, 4)))),
        (nc.log_softmax_backward, (np.ones((2, 3)), np.ones((3,)))),
        (nc.dropout_backward, (np.ones(3), np.ones(2))),
    ],
)
def test_backward_shape_mismatch(fn, args):
    with pytest.raises(ValueError, match=r"argument 'dy' has shape .* but"):
        fn(*args)


def test_negative_slope_must_be_real():
    with pytest.raises(TypeError, match="leaky_relu: argument 'negative_slope'"):
        nc.leaky_relu(np.ones(2), negative_slope="0.1")


# --------------------------------------------------------------------------- softmax


@st.composite
def shape_and_axis(draw):
    shape = draw(st.lists(st.integers(1, 7), min_size=1, max_size=4).map(tuple))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    return shape, axis


@given(sa=shape_and_axis(), dtype=st.sampled_from(DTYPES), layout=st.sampled_from(LAYOUTS),
       seed=seeds)
def test_softmax_and_log_softmax_match_scipy(sa, dtype, layout, seed):
    shape, axis = sa
    x = _make(np.random.default_rng(seed), shape, dtype, layout, scale=5.0)
    y = nc.softmax(x, axis=axis)
    ly = nc.log_softmax(x, axis=axis)
    assert y.dtype == dtype and ly.dtype == dtype and y.shape == shape
    tol = _tol(dtype)
    np.testing.assert_allclose(y, softmax_ref(x, axis), **tol)
    np.testing.assert_allclose(ly, log_softmax_ref(x, axis), rtol=tol["rtol"],
                               atol=10 * tol["atol"])
    np.testing.assert_allclose(y.sum(axis=axis), 1.0, rtol=0, atol=1e-5 if dtype == np.float32
                               else 1e-12)


@given(sa=shape_and_axis(), dtype=st.sampled_from(DTYPES), seed=seeds)
def test_softmax_backward_matches_jacobian(sa, dtype, seed):
    shape, axis = sa
    rng = np.random.default_rng(seed)
    x = _make(rng, shape, np.float64, "c")
    dy = _make(rng, shape, dtype, "strided")
    y = softmax_ref(x, axis).astype(dtype)
    ly = log_softmax_ref(x, axis).astype(dtype)
    dx = nc.softmax_backward(dy, y, axis=axis)
    dlx = nc.log_softmax_backward(dy, ly, axis=axis)
    assert dx.dtype == dtype and dlx.dtype == dtype
    tol = {"rtol": 1e-4, "atol": 1e-5} if dtype == np.float32 else {"rtol": 1e-10, "atol": 1e-12}
    np.testing.assert_allclose(dx, softmax_backward_ref(dy, y, axis), **tol)
    np.testing.assert_allclose(dlx, log_softmax_backward_ref(dy, ly, axis), **tol)


@pytest.mark.parametrize("axis", [0, 1, 2, -1])
@pytest.mark.parametrize("log", [False, True])
def test_softmax_gradcheck(axis, log):
    rng = np.random.default_rng(abs(axis) + 10 * log)
    x = rng.standard_normal((3, 4, 5)) * 2
    dy = rng.standard_normal(x.shape)
    fwd = nc.log_softmax if log else nc.softmax
    bwd = nc.log_softmax_backward if log else nc.softmax_backward
    dx = bwd(dy, fwd(x, axis=axis), axis=axis)
    directional_check(lambda a: fwd(a, axis=axis), [x], dy, [dx])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("axis", [0, -1])
def test_softmax_stable_for_huge_logits(dtype, axis):
    x = np.array([[1e4, 1e4, -1e4], [-1e4, -1e4 + 1, -1e4], [0.0, 1e4, -1e4]], dtype=dtype)
    if axis == 0:
        x = np.ascontiguousarray(x.T)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = nc.softmax(x, axis=axis)
        ly = nc.log_softmax(x, axis=axis)
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(ly))
    np.testing.assert_allclose(y, softmax_ref(x, axis), rtol=1e-6, atol=1e-30)
    np.testing.assert_allclose(ly, log_softmax_ref(x, axis), rtol=1e-6)
    np.testing.assert_allclose(y.sum(axis=axis), 1.0, rtol=1e-6)


def test_softmax_nan_makes_its_slice_nan():
    x = np.array([[1.0, np.nan, 0.0], [1.0, 2.0, 3.0]])
    for fn in (nc.softmax, nc.log_softmax):
        y = fn(x)
        assert np.all(np.isnan(y[0])) and np.all(np.isfinite(y[1]))
        y0 = fn(np.ascontiguousarray(x.T), axis=0)
        assert np.all(np.isnan(y0[:, 0])) and np.all(np.isfinite(y0[:, 1]))


def test_softmax_axis_validation():
    with pytest.raises(ValueError, match=r"softmax: argument 'axis' is 2, out of range .*\(2, 3\)"):
        nc.softmax(np.ones((2, 3)), axis=2)
    with pytest.raises(ValueError, match="log_softmax: argument 'axis'"):
        nc.log_softmax(np.ones((2, 3)), axis=-3)
    with pytest.raises(TypeError, match="softmax: argument 'axis'"):
        nc.softmax(np.ones((2, 3)), axis=1.0)
    with pytest.raises(ValueError, match="softmax: argument 'x' must be at least 1-D"):
        nc.softmax(np.float64(1.0))
    with pytest.raises(ValueError, match="softmax_backward: argument 'axis'"):
        nc.softmax_backward(np.ones((2, 3)), np.ones((2, 3)), axis=5)


def test_log_softmax_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 5, 6)) * 10
    for axis in (0, 1, 2):
        np.testing.assert_allclose(
            nc.log_softmax(x, axis=axis),
            torch.log_softmax(torch.from_numpy(x), dim=axis).numpy(),
            rtol=1e-12, atol=1e-12,
        )
        np.testing.assert_allclose(
            nc.softmax(x, axis=axis), torch.softmax(torch.from_numpy(x), dim=axis).numpy(),
            rtol=1e-12, atol=1e-15,
        )


# --------------------------------------------------------------------------- dropout


@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_mask_values_and_output(dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 5, 6)).astype(dtype)
    p = 0.3
    y, mask = nc.dropout(x, p=p, rng=7, return_mask=True)
    assert y.dtype == dtype and mask.dtype == dtype and mask.shape == x.shape
    scale = dtype(1.0 / (1.0 - p))
    assert set(np.unique(mask).tolist()) <= {0.0, float(scale)}
    np.testing.assert_array_equal(y, x * mask)
    # kept elements are x / (1 - p), dropped ones exactly 0
    kept = mask != 0
    np.testing.assert_allclose(y[kept], x[kept] / (1 - p), rtol=1e-6)
    assert np.all(y[~kept] == 0)


def test_dropout_seeded_reproducibility():
    x = np.ones((50, 40))
    a = nc.dropout(x, 0.5, rng=123)
    b = nc.dropout(x, 0.5, rng=123)
    c = nc.dropout(x, 0.5, rng=124)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    g1, g2 = np.random.default_rng(5), np.random.default_rng(5)
    np.testing.assert_array_equal(nc.dropout(x, 0.5, rng=g1), nc.dropout(x, 0.5, rng=g2))
    # a Generator is advanced: two draws from it differ
    assert not np.array_equal(nc.dropout(x, 0.5, rng=g1), nc.dropout(x, 0.5, rng=g1))
    # documented mask rule: kept where Generator.random(shape) >= p
    keep = np.random.default_rng(9).random(x.shape) >= 0.25
    np.testing.assert_array_equal(nc.dropout(x, 0.25, rng=9) != 0, keep)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_dropout_keep_rate_and_expectation(p):
    x = np.ones(200_000, np.float32)
    y, mask = nc.dropout(x, p=p, rng=11, return_mask=True)
    keep = np.mean(mask != 0)
    # binomial std <= 0.0012 for n = 2e5; 5 sigma
    assert abs(keep - (1 - p)) < 0.006
    assert abs(float(np.mean(y, dtype=np.float64)) - 1.0) < 0.006 / (1 - p)


@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_edge_cases(dtype):
    x = np.arange(12, dtype=dtype).reshape(3, 4)
    for kwargs in ({"p": 0.0}, {"p": 0.7, "training": False}, {"p": 1.0, "training": False}):
        y, mask = nc.dropout(x, return_mask=True, **kwargs)
        np.testing.assert_array_equal(y, x)
        assert y is not x and not np.shares_memory(y, x)
        np.testing.assert_array_equal(mask, np.ones_like(x))
        assert y.dtype == dtype and mask.dtype == dtype
    y, mask = nc.dropout(x, p=1.0, return_mask=True, rng=0)
    assert np.all(y == 0) and np.all(mask == 0) and y.dtype == dtype
    # NaN input: stays NaN where kept
    xn = np.full(100, np.nan, dtype)
    yn, mn = nc.dropout(xn, 0.5, rng=1, return_mask=True)
    assert np.all(np.isnan(yn[mn != 0]))


def test_dropout_noncontiguous_and_int_input():
    x = np.arange(60.0).reshape(6, 10)[:, ::-2]
    y, mask = nc.dropout(x, 0.5, rng=3, return_mask=True)
    np.testing.assert_array_equal(y, x * mask)
    assert nc.dropout(np.ones(4, np.int32), 0.5, rng=0).dtype == np.float32


@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_backward(dtype):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 7)).astype(dtype)
    dy = rng.standard_normal((3, 7)).astype(dtype)
    _, mask = nc.dropout(x, 0.4, rng=5, return_mask=True)
    dx = nc.dropout_backward(dy, mask)
    assert dx.dtype == dtype
    np.testing.assert_array_equal(dx, dy * mask)


def test_dropout_gradcheck():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((5, 6))
    dy = rng.standard_normal((5, 6))
    _, mask = nc.dropout(x, 0.3, rng=21, return_mask=True)
    dx = nc.dropout_backward(dy, mask)
    directional_check(lambda a: nc.dropout(a, 0.3, rng=21), [x], dy, [dx])


@pytest.mark.parametrize("p", [-0.1, 1.5, float("nan")])
def test_dropout_p_out_of_range(p):
    with pytest.raises(ValueError, match=r"dropout: argument 'p' must be in \[0, 1\]"):
        nc.dropout(np.ones(3), p=p)


def test_dropout_argument_types():
    with pytest.raises(TypeError, match="dropout: argument 'p'"):
        nc.dropout(np.ones(3), p="0.5")
    with pytest.raises(TypeError, match="dropout: argument 'rng'"):
        nc.dropout(np.ones(3), p=0.5, rng="seed")
    with pytest.raises(TypeError, match="dropout: argument 'rng'"):
        nc.dropout(np.ones(3), p=0.5, rng=np.random.RandomState(0))

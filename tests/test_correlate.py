"""correlate2d / convolve2d against scipy.signal (and a slow loop transcription of SciPy's C)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from reference import (
    convolve2d_loop,
    correlate2d_loop,
    scipy_convolve2d,
    scipy_correlate2d,
)

import nbconv as nc

OPS = {
    "correlate2d": (nc.correlate2d, scipy_correlate2d, correlate2d_loop),
    "convolve2d": (nc.convolve2d, scipy_convolve2d, convolve2d_loop),
}
MODES = ["full", "same", "valid"]
BOUNDARIES = ["fill", "wrap", "symm", "pad", "circular", "symmetric"]


def _layout(a, layout):
    """The same values as ``a`` in a non-C-contiguous layout."""
    if layout == "F":
        return np.asfortranarray(a)
    if layout == "strided":
        big = np.zeros((a.shape[0] * 2, a.shape[1] * 3), a.dtype)
        big[::2, ::3] = a
        return big[::2, ::3]
    if layout == "negative":
        return a[::-1, ::-1].copy()[::-1, ::-1]
    return a


def _scale(a, b, fill):
    """Magnitude bound of an output element (for absolute tolerances)."""
    amax = max(float(np.max(np.abs(a), initial=0.0)), abs(float(fill)))
    return max(1.0, amax * float(np.sum(np.abs(b))))


def _both(op, a, b, *args, **kw):
    """(nbconv result, scipy result) or assert both raise ValueError."""
    ours, theirs, _ = OPS[op]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = theirs(a, b, *args, **kw)
    except ValueError:
        with pytest.raises(ValueError, match=rf"^{op}: argument"):
            ours(a, b, *args, **kw)
        return None, None
    return ours(a, b, *args, **kw), r


@given(
    op=st.sampled_from(list(OPS)),
    s1=st.tuples(st.integers(1, 9), st.integers(1, 9)),
    s2=st.tuples(st.integers(1, 11), st.integers(1, 11)),
    mode=st.sampled_from(MODES),
    boundary=st.sampled_from(BOUNDARIES),
    fill=st.sampled_from([0.0, 1.5, -3.0]),
    dtype=st.sampled_from([np.float32, np.float64]),
    layouts=st.tuples(*[st.sampled_from(["C", "F", "strided", "negative"])] * 2),
    seed=st.integers(0, 2**16),
)
def test_matches_scipy_float(op, s1, s2, mode, boundary, fill, dtype, layouts, seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(s1).astype(dtype)
    b = rng.standard_normal(s2).astype(dtype)
    a2, b2 = _layout(a, layouts[0]), _layout(b, layouts[1])
    got, want = _both(op, a2, b2, mode, boundary, fill)
    if want is None:  # 'valid' with incompatible shapes: both raised
        assert mode == "valid"
        return
    assert got.shape == want.shape and got.dtype == want.dtype == dtype
    rtol = 1e-12 if dtype == np.float64 else 2e-5
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * _scale(a, b, fill))


@given(
    op=st.sampled_from(list(OPS)),
    s1=st.tuples(st.integers(1, 12), st.integers(1, 12)),
    k=st.tuples(st.integers(1, 7), st.integers(1, 7)),
    mode=st.sampled_from(MODES),
    boundary=st.sampled_from(["fill", "wrap", "symm"]),
    dtypes=st.sampled_from([(np.float32, np.float64), (np.int32, np.float32),
                            (np.float64, np.int16), (np.float32, np.float32)]),
    seed=st.integers(0, 2**16),
)
def test_mixed_float_dtypes_follow_scipy(op, s1, k, mode, boundary, dtypes, seed):
    rng = np.random.default_rng(seed)
    a = (rng.standard_normal(s1) * 10).astype(dtypes[0])
    b = (rng.standard_normal(k) * 10).astype(dtypes[1])
    got, want = _both(op, a, b, mode, boundary, 2)
    if want is None:
        return
    assert got.dtype == want.dtype and got.shape == want.shape
    rtol = 1e-12 if want.dtype == np.float64 else 2e-5
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * _scale(a, b, 2))


INT_PAIRS = [
    (np.int8, np.int8), (np.uint8, np.uint8), (np.int16, np.uint16), (np.int32, np.int32),
    (np.int64, np.int64), (np.uint64, np.uint64), (np.uint32, np.int8), (np.bool_, np.int8),
    (np.uint8, np.bool_),
]


@given(
    op=st.sampled_from(list(OPS)),
    s1=st.tuples(st.integers(1, 8), st.integers(1, 8)),
    s2=st.tuples(st.integers(1, 6), st.integers(1, 6)),
    mode=st.sampled_from(MODES),
    boundary=st.sampled_from(["fill", "wrap", "symm"]),
    pair=st.sampled_from(INT_PAIRS),
    fill=st.integers(0, 100),
    seed=st.integers(0, 2**16),
)
def test_integers_exact_with_scipy_wraparound(op, s1, s2, mode, boundary, pair, fill, seed):
    """Integer outputs are exact and wrap around on overflow exactly like SciPy's C loops."""
    rng = np.random.default_rng(seed)

    def draw(shape, dt):
        if dt == np.bool_:
            return rng.integers(0, 2, shape).astype(bool)
        info = np.iinfo(dt)
        return rng.integers(info.min, info.max, shape, dtype=dt, endpoint=True)

    a, b = draw(s1, pair[0]), draw(s2, pair[1])
    got, want = _both(op, a, b, mode, boundary, fill)
    if want is None:
        return
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    "d1, d2",
    [(np.float32, np.float32), (np.float32, np.float64), (np.float64, np.float32),
     (np.int64, np.float32), (np.float16, np.float32), (np.int16, np.uint16),
     (np.uint64, np.int64), (np.uint8, np.uint8), (np.bool_, np.int16),
     (np.complex64, np.float32), (np.complex64, np.float64), (np.float32, np.complex128)],
)
@pytest.mark.parametrize("op", list(OPS))
def test_output_dtype_rule(op, d1, d2):
    a = (np.arange(20).reshape(4, 5) % 3).astype(d1)
    b = (np.arange(6).reshape(2, 3) % 2).astype(d2)
    ours, theirs, _ = OPS[op]
    want = theirs(a, b, "same")
    got = ours(a, b, "same")
    assert got.dtype == want.dtype == np.result_type(a, b)
    np.testing.assert_array_equal(got, want)  # small integers: exact in every dtype


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("boundary", ["fill", "wrap", "symm"])
@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize("s1, s2", [((5, 7), (3, 2)), ((3, 4), (6, 5)), ((2, 2), (2, 2))])
def test_complex_matches_scipy(op, s1, s2, mode, boundary, dtype):
    """Complex is supported; correlate2d conjugates in2 (also when 'valid' swaps the inputs)."""
    rng = np.random.default_rng(1)
    a = (rng.standard_normal(s1) + 1j * rng.standard_normal(s1)).astype(dtype)
    b = (rng.standard_normal(s2) + 1j * rng.standard_normal(s2)).astype(dtype)
    got, want = _both(op, a, b, mode, boundary, 0.5 - 2j)
    if want is None:
        return
    assert got.dtype == want.dtype == dtype
    rtol = 1e-12 if dtype == np.complex128 else 2e-5
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * _scale(a, b, 2.1))


def test_complex_in2_with_real_in1():
    a = np.arange(12.0).reshape(3, 4)
    b = np.array([[1j, 2.0], [0.5, -1j]])
    for op, (ours, theirs, _) in OPS.items():
        for mode in MODES:
            np.testing.assert_allclose(ours(a, b, mode), theirs(a, b, mode), rtol=1e-13,
                                       err_msg=f"{op} {mode}")


@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize(
    "s1, s2, mode, boundary",
    [((1, 1), (1, 1), "full", "fill"), ((1, 1), (3, 4), "same", "symm"),
     ((1, 1), (3, 4), "full", "wrap"), ((2, 3), (9, 11), "full", "symm"),
     ((2, 3), (9, 11), "same", "wrap"), ((3, 2), (8, 8), "valid", "fill"),
     ((1, 7), (1, 3), "valid", "wrap"), ((7, 1), (4, 1), "same", "symm"),
     ((4, 6), (4, 6), "valid", "fill"), ((6, 4), (2, 5), "full", "symm"),
     ((1, 30), (1, 30), "same", "wrap"), ((5, 5), (4, 4), "same", "fill")],
)
def test_named_edge_shapes(op, s1, s2, mode, boundary):
    """1-element, non-square, kernel = input, kernel much larger than the input."""
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal(s1), rng.standard_normal(s2)
    got, want = _both(op, a, b, mode, boundary, -0.75)
    assert want is not None
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12 * _scale(a, b, 0.75))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mode", MODES)
def test_large_multi_tile(dtype, mode):
    """Wider than one column tile (256) and taller than the thread count."""
    rng = np.random.default_rng(3)
    a = rng.standard_normal((37, 613)).astype(dtype)
    b = rng.standard_normal((5, 7)).astype(dtype)
    for op, (ours, theirs, _) in OPS.items():
        got, want = ours(a, b, mode, "symm"), theirs(a, b, mode, "symm")
        rtol = 1e-12 if dtype == np.float64 else 2e-5
        np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * _scale(a, b, 0),
                                   err_msg=op)


@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize(
    "s1, s2, mode, boundary",
    [((3, 4), (2, 2), "same", "symm"), ((4, 3), (5, 2), "full", "wrap"),
     ((5, 6), (3, 4), "valid", "fill"), ((2, 3), (4, 5), "valid", "fill"),
     ((3, 3), (2, 4), "same", "fill"), ((2, 2), (5, 5), "full", "symm")],
)
def test_against_loop_reference_exact_ints(op, s1, s2, mode, boundary):
    """Independent of SciPy: an explicit loop over SciPy's index rules, exact in int64."""
    rng = np.random.default_rng(4)
    a = rng.integers(-50, 50, s1)
    b = rng.integers(-50, 50, s2)
    ours, _, loop = OPS[op]
    got = ours(a, b, mode, boundary, fillvalue=7)
    want = loop(a, b, mode, boundary, 7)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, want.astype(np.int64))


@pytest.mark.parametrize("op", list(OPS))
def test_complex_against_loop_reference(op):
    rng = np.random.default_rng(5)
    a = rng.standard_normal((3, 4)) + 1j * rng.standard_normal((3, 4))
    b = rng.standard_normal((5, 2)) + 1j * rng.standard_normal((5, 2))
    ours, _, loop = OPS[op]
    for mode in ("full", "same"):
        np.testing.assert_allclose(ours(a, b, mode, "symm"),
                                   loop(a, b, mode, "symm").astype(complex), rtol=1e-12)
    a = rng.standard_normal((6, 6)) + 1j * rng.standard_normal((6, 6))
    np.testing.assert_allclose(ours(b, a, "valid"), loop(b, a, "valid").astype(complex),
                               rtol=1e-12)


@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize(
    "s1, s2, mode, boundary",
    [((0, 3), (2, 2), "full", "fill"), ((3, 4), (0, 2), "full", "fill"),
     ((3, 4), (0, 0), "valid", "fill"), ((3, 4), (0, 0), "same", "wrap"),
     ((0, 0), (0, 0), "valid", "fill"), ((0, 0), (0, 0), "same", "fill"),
     ((0, 3), (0, 2), "valid", "fill"), ((0, 3), (1, 2), "same", "wrap"),
     ((2, 3), (0, 2), "same", "wrap"), ((2, 3), (3, 0), "full", "symm"),
     ((0, 0), (0, 0), "full", "fill"), ((0, 3), (0, 2), "full", "wrap")],
)
def test_empty_inputs_like_scipy(op, s1, s2, mode, boundary):
    a, b = np.ones(s1), np.ones(s2)
    got, want = _both(op, a, b, mode, boundary, fillvalue=5)
    if want is not None:
        assert got.shape == want.shape and got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize("boundary", ["wrap", "symm", "circular", "symmetric"])
def test_empty_in1_with_wrap_or_symm_raises(op, boundary):
    """SciPy divides by zero (SIGFPE) here; nbconv raises ValueError.  Not calling SciPy."""
    ours, _, loop = OPS[op]
    a, b = np.ones((0, 3)), np.ones((2, 2))
    with pytest.raises(ZeroDivisionError):  # the reference has nothing to repeat either
        loop(a, b, "full", boundary)
    with pytest.raises(ValueError, match=rf"^{op}: argument 'in1' is empty"):
        ours(a, b, "full", boundary)
    with pytest.raises(ValueError, match=r"'in1' is empty"):
        ours(np.ones((3, 0)), b, "full", boundary)


@pytest.mark.parametrize("op", list(OPS))
def test_nan_and_inf_propagate_like_scipy(op):
    a = np.arange(30.0).reshape(5, 6)
    a[2, 3] = np.nan
    a[0, 0] = np.inf
    b = np.array([[1.0, 0.0, 2.0], [0.0, -1.0, 0.5]])
    ours, theirs, _ = OPS[op]
    for mode in MODES:
        for boundary in ("fill", "wrap", "symm"):
            got, want = ours(a, b, mode, boundary), theirs(a, b, mode, boundary)
            np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
            np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
            fin = np.isfinite(want)
            np.testing.assert_allclose(got[fin], want[fin], rtol=1e-12)
    got = ours(a[:2, :2], b, "full", fillvalue=np.nan)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(theirs(a[:2, :2], b, "full",
                                                                 fillvalue=np.nan)))


@pytest.mark.filterwarnings("ignore::numpy.exceptions.ComplexWarning")
@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize(
    "dtype, fillvalue",
    [(np.float64, [1.5]), (np.float64, np.array([[2.0]])), (np.float64, None),
     (np.float64, "1.25"), (np.float64, np.complex128(3.0)), (np.float32, 1e300),
     (np.uint8, np.float64(-1)), (np.uint8, np.int64(-1)), (np.uint8, 2.7), (np.int64, 2.5),
     (np.uint8, True), (np.complex128, 1j), (np.complex64, [2 - 1j])],
)
def test_accepted_fillvalues_like_scipy(op, dtype, fillvalue):
    """fillvalue is converted to the output dtype the way SciPy does (np.asarray semantics)."""
    a = np.arange(6).reshape(2, 3).astype(dtype)
    b = np.ones((2, 2), dtype)
    got, want = _both(op, a, b, "full", "fill", fillvalue)
    assert want is not None
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)


def _expect_both_raise(op, *args, **kw):
    ours, theirs, _ = OPS[op]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises((ValueError, TypeError)):
            theirs(*args, **kw)
    with pytest.raises(ValueError, match=rf"^{op}: argument") as info:
        ours(*args, **kw)
    return str(info.value)


E = np.ones((3, 4))
K = np.ones((2, 2))


@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize(
    "args, kw, names",
    [((np.ones(3), K), {}, ["'in1'", "2-D", "(3,)"]),
     ((E, np.ones((1, 2, 2))), {}, ["'in2'", "2-D", "(1, 2, 2)"]),
     ((3.0, 2.0), {}, ["'in1'", "2-D"]),
     ((E, K), {"mode": "VALID"}, ["'mode'", "'VALID'"]),
     ((E, K), {"mode": None}, ["'mode'"]),
     ((E, K), {"boundary": "reflect"}, ["'boundary'", "'reflect'"]),
     ((E, K), {"boundary": "FILL"}, ["'boundary'"]),
     ((np.ones((3, 2)), np.ones((2, 3))), {"mode": "valid"}, ["(3, 2)", "(2, 3)", "valid"]),
     ((E, K), {"fillvalue": [1, 2]}, ["'fillvalue'", "one number", "2 values"]),
     ((E, K), {"fillvalue": []}, ["'fillvalue'", "one number", "an empty array"]),
     ((E, K), {"mode": "valid", "fillvalue": [1, 2]}, ["'fillvalue'"]),
     ((E, K), {"fillvalue": 1j}, ["'fillvalue'", "float64"]),
     ((E, K), {"fillvalue": 1 + 0j}, ["'fillvalue'"]),
     ((E, K), {"fillvalue": "a"}, ["'fillvalue'"]),
     ((E, K), {"fillvalue": object()}, ["'fillvalue'"]),
     ((E.astype(np.uint8), K.astype(np.uint8)), {"fillvalue": -1}, ["'fillvalue'", "uint8"]),
     ((E.astype(np.uint8), K.astype(np.uint8)), {"fillvalue": 300}, ["'fillvalue'"]),
     ((E.astype(int), K.astype(int)), {"fillvalue": np.nan}, ["'fillvalue'", "int64"]),
     ((E.astype(bool), K.astype(bool)), {}, ["'in1' and 'in2'", "bool"]),
     ((E.astype(np.float16), K.astype(np.float16)), {}, ["float16"]),
     ((E.astype(np.float16), K.astype(np.int8)), {}, ["float16"]),
     ((E.astype(object), K), {}, ["'in1'", "object"]),
     ((E, K.astype(str)), {}, ["'in2'"]),
     ((np.ones((0, 3)), np.ones((0, 2))), {"mode": "full"}, ["negative", "(0, 3)"])],
)
def test_errors_where_scipy_raises(op, args, kw, names):
    msg = _expect_both_raise(op, *args, **kw)
    for n in names:
        assert n in msg, (n, msg)


@pytest.mark.parametrize("op", list(OPS))
def test_wrap_and_symm_ignore_fillvalue(op):
    """SciPy only validates fillvalue for boundary='fill'."""
    ours, theirs, _ = OPS[op]
    for fv in (1j, [1, 2], "a"):
        np.testing.assert_array_equal(ours(E, K, "same", "wrap", fv),
                                      theirs(E, K, "same", "wrap", fv))


@pytest.mark.parametrize("op", list(OPS))
def test_long_double_is_a_type_error(op):
    """SciPy accepts long double; nbconv refuses it (documented) rather than lose precision."""
    if np.finfo(np.longdouble).eps == np.finfo(np.float64).eps:
        pytest.skip("long double is float64 on this platform")
    ours = OPS[op][0]
    with pytest.raises(TypeError, match=rf"^{op}: argument 'in1' has dtype"):
        ours(E.astype(np.longdouble), K)
    with pytest.raises(TypeError, match=rf"^{op}: argument 'in2' has dtype"):
        ours(E, K.astype(np.clongdouble))


def test_lists_and_python_scalars_like_scipy():
    a, b = [[1, 2, 3], [4, 5, 6]], [[1, -1]]
    for ours, theirs, _ in OPS.values():
        got, want = ours(a, b), theirs(a, b)
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
        got, want = ours(a, [[0.5]], "same", "symm"), theirs(a, [[0.5]], "same", "symm")
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


def test_convolve_is_flipped_correlate():
    rng = np.random.default_rng(6)
    a, b = rng.standard_normal((6, 8)), rng.standard_normal((3, 3))
    np.testing.assert_allclose(nc.convolve2d(a, b, "valid"),
                               nc.correlate2d(a, b[::-1, ::-1], "valid"), rtol=1e-13)


def test_inputs_not_modified_and_output_contiguous():
    rng = np.random.default_rng(7)
    a, b = rng.standard_normal((4, 5)), rng.standard_normal((6, 7))
    a0, b0 = a.copy(), b.copy()
    for ours, _, _ in OPS.values():
        for mode in MODES:
            out = ours(a, b, mode, "symm")
            assert out.flags.c_contiguous
    np.testing.assert_array_equal(a, a0)
    np.testing.assert_array_equal(b, b0)


def test_functional_namespace_exports():
    import nbconv.functional as F

    assert F.correlate2d is nc.correlate2d and F.convolve2d is nc.convolve2d
    assert {"correlate2d", "convolve2d"} <= set(F.__all__)

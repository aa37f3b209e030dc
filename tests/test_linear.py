"""Fully connected layer: forward, backward, validation."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
from gradcheck import directional_check
from hypothesis import given
from hypothesis import strategies as st

import nbconv as nc

DTYPES = [np.float32, np.float64]


def linear_ref(x, w, b=None):
    """Explicit sum over input features in float64 (independent of BLAS layout tricks)."""
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    y = np.zeros(x.shape[:-1] + (w.shape[0],))
    for i in range(w.shape[1]):
        y += x[..., i : i + 1] * w[:, i]
    if b is not None:
        y += np.asarray(b, np.float64)
    return y


def linear_backward_ref(dy, x, w):
    dy = np.asarray(dy, np.float64)
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    dx = np.einsum("...o,oi->...i", dy, w)
    dw = np.einsum("mo,mi->oi", dy.reshape(-1, dy.shape[-1]), x.reshape(-1, x.shape[-1]))
    db = dy.reshape(-1, dy.shape[-1]).sum(axis=0)
    return dx, dw, db


def _tol(dtype):
    return {"rtol": 1e-4, "atol": 1e-4} if dtype == np.float32 else {"rtol": 1e-11, "atol": 1e-11}


def _layout(a, layout):
    if layout == "c":
        return a
    if layout == "fortran":
        return np.asfortranarray(a)
    if layout == "negative":
        return np.flip(a.copy(), axis=-1)[..., ::-1]  # same values, negative stride
    big = np.repeat(a, 2, axis=-1)
    return big[..., ::2]


@st.composite
def linear_case(draw):
    lead = tuple(draw(st.lists(st.integers(1, 4), min_size=0, max_size=3)))
    in_f = draw(st.integers(1, 9))
    out_f = draw(st.integers(1, 9))
    return lead, in_f, out_f


layouts = st.sampled_from(["c", "fortran", "negative", "strided"])


@given(case=linear_case(), dtype=st.sampled_from(DTYPES), has_bias=st.booleans(),
       lx=layouts, lw=layouts, seed=st.integers(0, 2**32 - 1))
def test_linear_forward_matches_reference(case, dtype, has_bias, lx, lw, seed):
    lead, in_f, out_f = case
    rng = np.random.default_rng(seed)
    x = _layout(rng.standard_normal(lead + (in_f,)).astype(dtype), lx)
    w = _layout(rng.standard_normal((out_f, in_f)).astype(dtype), lw)
    b = rng.standard_normal(out_f).astype(dtype) if has_bias else None
    y = nc.linear(x, w, b)
    assert y.dtype == dtype and y.shape == lead + (out_f,)
    np.testing.assert_allclose(y, linear_ref(x, w, b), **_tol(dtype))


@given(case=linear_case(), dtype=st.sampled_from(DTYPES), lx=layouts,
       seed=st.integers(0, 2**32 - 1))
def test_linear_backward_matches_reference(case, dtype, lx, seed):
    lead, in_f, out_f = case
    rng = np.random.default_rng(seed)
    x = _layout(rng.standard_normal(lead + (in_f,)).astype(dtype), lx)
    w = rng.standard_normal((out_f, in_f)).astype(dtype)
    dy = _layout(rng.standard_normal(lead + (out_f,)).astype(dtype), lx)
    dx, dw, db = nc.linear_backward(dy, x, w, bias=True)
    rdx, rdw, rdb = linear_backward_ref(dy, x, w)
    for got, want in ((dx, rdx), (dw, rdw), (db, rdb)):
        assert got.dtype == dtype and got.shape == want.shape
        np.testing.assert_allclose(got, want, **_tol(dtype))
    dx2, dw2, db2 = nc.linear_backward(dy, x, w, bias=False)
    assert db2 is None
    np.testing.assert_array_equal(dx2, dx)
    np.testing.assert_array_equal(dw2, dw)


@pytest.mark.parametrize("lead", [(), (5,), (2, 3), (2, 1, 3)])
def test_linear_gradcheck(lead):
    rng = np.random.default_rng(len(lead))
    x = rng.standard_normal(lead + (4,))
    w = rng.standard_normal((3, 4))
    b = rng.standard_normal(3)
    dy = rng.standard_normal(lead + (3,))
    dx, dw, db = nc.linear_backward(dy, x, w)
    directional_check(nc.linear, [x, w, b], dy, [dx, dw, db])


def test_linear_one_dim_input():
    x = np.array([1.0, 2.0, 3.0])
    w = np.array([[1.0, 0.0, -1.0], [0.5, 0.5, 0.5]])
    y = nc.linear(x, w, np.array([10.0, 0.0]))
    assert y.shape == (2,)
    np.testing.assert_allclose(y, [8.0, 3.0])
    dx, dw, db = nc.linear_backward(np.ones(2), x, w)
    assert dx.shape == (3,) and dw.shape == (2, 3) and db.shape == (2,)
    np.testing.assert_allclose(dx, w.sum(axis=0))


def test_linear_large_batch_bias_reduction():
    # many row chunks: the per-chunk partial sums must add up exactly like a float64 sum
    rng = np.random.default_rng(0)
    dy = rng.standard_normal((1000, 7)).astype(np.float32)
    x = rng.standard_normal((1000, 5)).astype(np.float32)
    w = rng.standard_normal((7, 5)).astype(np.float32)
    _, _, db = nc.linear_backward(dy, x, w)
    np.testing.assert_allclose(db, dy.astype(np.float64).sum(axis=0), rtol=1e-6, atol=1e-5)
    y = nc.linear(x, w, np.arange(7, dtype=np.float32))
    np.testing.assert_allclose(y, linear_ref(x, w, np.arange(7)), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("lead", [(4,), (2, 3)])
def test_linear_few_rows_many_outputs(lead):
    """Few rows and many outputs run as the transposed product; the result is laid out as
    usual (C-contiguous, rows first) and equals the explicit sum, bias and ReLU included."""
    F = importlib.import_module("nbconv.functional.linear")  # the module, not the function
    rng = np.random.default_rng(7)
    rows = int(np.prod(lead))
    out_f = F._FEW_ROWS * rows + 5
    in_f = F.SMALL_MACS // (rows * out_f) + 3  # just past the single-call size
    x = rng.standard_normal(lead + (in_f,)).astype(np.float32)
    w = (rng.standard_normal((out_f, in_f)) / np.sqrt(in_f)).astype(np.float32)
    b = rng.standard_normal(out_f).astype(np.float32)
    y = nc.linear(x, w, b)
    assert y.shape == lead + (out_f,) and y.flags.c_contiguous
    np.testing.assert_allclose(y, linear_ref(x, w, b), rtol=1e-4, atol=1e-4)
    y2 = F._linear_into(x.reshape(rows, in_f), w, b, np.empty((rows, out_f), np.float32), True)
    np.testing.assert_allclose(y2, np.maximum(linear_ref(x, w, b), 0).reshape(rows, out_f),
                               rtol=1e-4, atol=1e-4)


def test_linear_empty_batch():
    x = np.zeros((0, 4), np.float32)
    w = np.ones((3, 4), np.float32)
    y = nc.linear(x, w, np.ones(3, np.float32))
    assert y.shape == (0, 3) and y.dtype == np.float32
    dx, dw, db = nc.linear_backward(np.zeros((0, 3), np.float32), x, w)
    assert dx.shape == (0, 4) and np.all(dw == 0) and np.all(db == 0)


def test_linear_dtype_policy():
    x = np.ones((2, 3), np.int64)
    y = nc.linear(x, np.ones((4, 3)), np.ones(4))
    assert y.dtype == np.float32  # int x -> float32, weight cast to x's dtype
    y64 = nc.linear(np.ones((2, 3)), np.ones((4, 3), np.float32))
    assert y64.dtype == np.float64
    with pytest.raises(TypeError, match="linear: argument 'x'"):
        nc.linear(np.ones((2, 3), np.float16), np.ones((4, 3)))


def test_linear_nan_propagates():
    x = np.array([[1.0, np.nan], [1.0, 2.0]])
    y = nc.linear(x, np.ones((3, 2)), np.zeros(3))
    assert np.all(np.isnan(y[0])) and np.all(np.isfinite(y[1]))


def test_linear_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    x, w, b = rng.standard_normal((2, 3, 6)), rng.standard_normal((4, 6)), rng.standard_normal(4)
    want = torch.nn.functional.linear(*(torch.from_numpy(a) for a in (x, w, b))).numpy()
    np.testing.assert_allclose(nc.linear(x, w, b), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "args, pattern",
    [
        ((np.ones((2, 3)), np.ones((4, 5))),
         r"linear: argument 'weight' has in_features=5 but 'x' has 3 .*\(2, 3\).*\(4, 5\)"),
        ((np.ones((2, 3)), np.ones((4, 3)), np.ones(3)),
         r"linear: argument 'bias' must have shape \(4,\).*got \(3,\)"),
        ((np.ones((2, 3)), np.ones((4, 3)), np.ones((1, 4))), r"linear: argument 'bias'"),
        ((np.ones((2, 3)), np.ones(3)), r"linear: argument 'weight' must be 2-D"),
        ((np.float64(1.0), np.ones((4, 1))), r"linear: argument 'x' must be at least 1-D"),
    ],
)
def test_linear_validation(args, pattern):
    with pytest.raises(ValueError, match=pattern):
        nc.linear(*args)


def test_linear_backward_validation():
    x, w = np.ones((2, 3)), np.ones((4, 3))
    with pytest.raises(ValueError, match=r"linear_backward: argument 'dy' must have shape \(2, 4"):
        nc.linear_backward(np.ones((2, 3)), x, w)
    with pytest.raises(ValueError, match=r"linear_backward: argument 'dy'"):
        nc.linear_backward(np.ones((3, 4)), x, w)
    with pytest.raises(ValueError, match=r"linear_backward: argument 'weight' has in_features"):
        nc.linear_backward(np.ones((2, 4)), x, np.ones((4, 2)))


def test_zero_in_features():
    import nbconv as nc

    y = nc.linear(np.zeros((3, 0)), np.zeros((2, 0)), np.array([1.0, 2.0]))
    np.testing.assert_array_equal(y, [[1.0, 2.0]] * 3)
    dx, dw, db = nc.linear_backward(np.ones((3, 2)), np.zeros((3, 0)), np.zeros((2, 0)))
    assert dx.shape == (3, 0) and dw.shape == (2, 0)
    np.testing.assert_array_equal(db, [3.0, 3.0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("has_bias", [False, True])
@pytest.mark.parametrize("relu", [False, True])
def test_linear_tiny_kernel(dtype, has_bias, relu):
    """The serial kernel of tiny layers (a planned classifier at batch 1) against NumPy in
    float64, NaN kept by the ReLU."""
    from nbconv.kernels.linear import _linear_tiny
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 37)).astype(dtype)
    x[1, 4] = np.nan
    w = rng.standard_normal((11, 37)).astype(dtype)
    b = rng.standard_normal(11).astype(dtype) if has_bias else np.zeros(1, dtype)
    y = np.full((2, 11), -5.0, dtype)
    _linear_tiny(x, w, b, has_bias, relu, y)
    want = x.astype(np.float64) @ w.T.astype(np.float64) + (b if has_bias else 0)
    if relu:
        want = np.where(want <= 0, 0, want)
    assert np.isnan(y[1]).all() and not np.isnan(y[0]).any()
    np.testing.assert_allclose(y[0], want[0], rtol=1e-5 if dtype == np.float32 else 1e-12,
                               atol=1e-5 if dtype == np.float32 else 1e-12)


def test_compiled_lenet_batch_one_takes_the_tiny_paths():
    """At batch 1 a planned LeNet runs its classifier on the tiny-layer kernel and its 2x2
    pools on the bound kernel, and still equals the plain forward."""
    from nbconv.inference import steps
    model = nc.models.lenet5(activation="relu")
    model.eval()
    x = np.random.default_rng(0).standard_normal((1, 1, 28, 28)).astype(np.float32)
    with nc.no_grad():
        want = model(x)
    calls = []
    real = steps._linear_tiny

    def spy(*a):
        calls.append(a[1].shape)
        return real(*a)

    steps._linear_tiny = spy
    try:
        cm = nc.compile(model, x.shape)
        got = cm(x)
    finally:
        steps._linear_tiny = real
    assert calls == [(120, 256), (84, 120), (10, 84)]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)

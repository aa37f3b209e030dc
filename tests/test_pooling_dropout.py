"""1-D pooling, adaptive/global max pooling and channel dropout (issue 27): ops, layers,
recording, model files.

References: PyTorch (forward values, indices and autograd gradients, float64) where torch is
installed; without it, float64 central differences (``nbconv.testing.gradcheck``) and small
explicit-loop references written here (they never call nbconv).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import nbconv as nc
from nbconv import nn
from nbconv.testing import gradcheck

DTYPES = [np.float32, np.float64]
F64 = np.float64


def _rng(seed=0):
    return np.random.default_rng(seed)


def _tol(dtype):
    return dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)


def _out_len(n, k, s, p, d=1, ceil_mode=False):
    """PyTorch's pooling output length (may be < 1), computed here without nbconv."""
    num = n + 2 * p - (d * (k - 1) + 1)
    if num < 0:
        return 0
    o = (-(-num // s) if ceil_mode else num // s) + 1
    if ceil_mode and (o - 1) * s >= n + p:
        o -= 1
    return o


def _bins(n, out):
    """PyTorch's adaptive bins along one axis."""
    return [((i * n) // out, -(-((i + 1) * n) // out)) for i in range(out)]


def _ref_adaptive_max(x, out_h, out_w):
    """(y, idx) of adaptive max pooling of (P, H, W) planes: first maximum, last NaN."""
    P, H, W = x.shape
    y = np.empty((P, out_h, out_w), x.dtype)
    idx = np.empty((P, out_h, out_w), np.int64)
    for p in range(P):
        for i, (hs, he) in enumerate(_bins(H, out_h)):
            for j, (ws, we) in enumerate(_bins(W, out_w)):
                win = x[p, hs:he, ws:we]
                flat = [(h * W + w, x[p, h, w]) for h in range(hs, he) for w in range(ws, we)]
                nans = [t for t, v in flat if v != v]
                if nans:
                    y[p, i, j], idx[p, i, j] = np.nan, nans[-1]
                else:
                    a = int(np.argmax(win))  # first maximum in row-major order
                    y[p, i, j] = win.ravel()[a]
                    idx[p, i, j] = (hs + a // (we - ws)) * W + ws + a % (we - ws)
    return y, idx


def _sample(rng, shape, dtype, ties):
    if ties:  # few distinct values: many ties
        return rng.integers(-2, 3, size=shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def _layout(a, kind):
    """The same values as ``a`` in another memory layout."""
    if kind == "f":
        return np.asfortranarray(a)
    if kind == "neg":
        return np.ascontiguousarray(a[..., ::-1])[..., ::-1]
    return a


@st.composite
def pool1d_cases(draw, dilation=True):
    """(x, k, s, p, d, ceil_mode, layout) with an output of at least one element."""
    batched = draw(st.booleans())
    shape = ((draw(st.integers(1, 2)),) if batched else ()) + (draw(st.integers(1, 3)),
                                                               draw(st.integers(1, 13)))
    k = draw(st.integers(1, 5))
    s = draw(st.one_of(st.none(), st.integers(1, 3)))
    p = draw(st.integers(0, k // 2))
    d = draw(st.integers(1, 3)) if dilation else 1
    ceil_mode = draw(st.booleans())
    assume(_out_len(shape[-1], k, k if s is None else s, p, d, ceil_mode) >= 1)
    dtype = draw(st.sampled_from(DTYPES))
    x = _sample(_rng(draw(st.integers(0, 2**32 - 1))), shape, dtype, draw(st.booleans()))
    return x, k, s, p, d, ceil_mode, draw(st.sampled_from(["c", "f", "neg"]))


# =========================================================================== against PyTorch


@given(pool1d_cases(), st.booleans())
def test_max_pool1d_matches_torch(case, nan):
    torch = pytest.importorskip("torch")
    x, k, s, p, d, ceil_mode, layout = case
    if nan:
        x = x.copy()
        x.ravel()[:: max(1, x.size // 3)] = np.nan
    y_t, i_t = torch.nn.functional.max_pool1d(torch.from_numpy(x), k, s, p, d, ceil_mode,
                                              return_indices=True)
    y, ind = nc.max_pool1d(_layout(x, layout), k, s, p, d, ceil_mode, return_indices=True)
    assert y.dtype == x.dtype and ind.dtype == np.int64 and y.shape == tuple(y_t.shape)
    np.testing.assert_array_equal(y, y_t.numpy())
    # a window without input elements (dilation only): -1 where PyTorch's index means nothing
    empty = ind == -1
    np.testing.assert_array_equal(ind[~empty], i_t.numpy()[~empty])
    assert np.all(y[empty] == -np.inf)
    np.testing.assert_array_equal(nc.max_pool1d(x, k, s, p, d, ceil_mode), y)
    # PyTorch without indices runs another kernel: the values must still agree
    np.testing.assert_array_equal(
        y, torch.nn.functional.max_pool1d(torch.from_numpy(x), k, s, p, d, ceil_mode).numpy())


@given(pool1d_cases(dilation=False), st.booleans())
def test_avg_pool1d_matches_torch(case, count_include_pad):
    torch = pytest.importorskip("torch")
    x, k, s, p, _, ceil_mode, layout = case
    want = torch.nn.functional.avg_pool1d(torch.from_numpy(x), k, s, p, ceil_mode,
                                          count_include_pad).numpy()
    y = nc.avg_pool1d(_layout(x, layout), k, s, p, ceil_mode, count_include_pad)
    assert y.dtype == x.dtype and y.shape == want.shape
    np.testing.assert_allclose(y, want, **_tol(x.dtype))


@given(pool1d_cases(), st.booleans())
def test_pool1d_backward_matches_torch(case, count_include_pad):
    torch = pytest.importorskip("torch")
    tF = torch.nn.functional
    x, k, s, p, d, ceil_mode, _ = case
    x = x.astype(F64)
    y, ind = nc.max_pool1d(x, k, s, p, d, ceil_mode, return_indices=True)
    # a window without input (dilation): PyTorch's index for it can be L, and its backward
    # then writes past the end of the gradient (heap corruption, an abort): not run
    assume(np.all(ind >= 0))
    t = torch.from_numpy(x).requires_grad_()
    y_t = tF.max_pool1d(t, k, s, p, d, ceil_mode)
    dy = _rng(1).standard_normal(tuple(y_t.shape))
    y_t.backward(torch.from_numpy(dy))
    dx = nc.max_pool1d_backward(dy, ind, x.shape)
    assert dx.dtype == F64 and dx.shape == x.shape
    np.testing.assert_allclose(dx, t.grad.numpy(), rtol=1e-12, atol=1e-14)
    assume(_out_len(x.shape[-1], k, k if s is None else s, p, 1, ceil_mode) >= 1)
    t.grad = None
    y_t = tF.avg_pool1d(t, k, s, p, ceil_mode, count_include_pad)
    dy = _rng(2).standard_normal(tuple(y_t.shape))
    y_t.backward(torch.from_numpy(dy))
    dx = nc.avg_pool1d_backward(dy, x.shape, k, s, p, ceil_mode, count_include_pad)
    np.testing.assert_allclose(dx, t.grad.numpy(), rtol=1e-12, atol=1e-14)


@st.composite
def adaptive_cases(draw, ndim):
    """(x, output_size) for a 1-D (ndim 2/3) or 2-D (ndim 3/4) adaptive pooling."""
    batched = draw(st.booleans())
    lead = ((draw(st.integers(1, 2)),) if batched else ()) + (draw(st.integers(1, 3)),)
    spatial = tuple(draw(st.integers(1, 9)) for _ in range(ndim))
    out = tuple(draw(st.integers(1, 11)) for _ in range(ndim))
    x = _sample(_rng(draw(st.integers(0, 2**32 - 1))), lead + spatial,
                draw(st.sampled_from(DTYPES)), draw(st.booleans()))
    if ndim == 2 and draw(st.booleans()):  # None keeps that input size
        out = (None, out[1]) if draw(st.booleans()) else (out[0], None)
    return x, out


@given(adaptive_cases(1), st.booleans())
def test_adaptive_pool1d_matches_torch(case, nan):
    torch = pytest.importorskip("torch")
    tF = torch.nn.functional
    x, (o,) = case
    if nan:
        x = x.copy()
        x.ravel()[:: max(1, x.size // 2)] = np.nan
    t = torch.from_numpy(x)
    y_t, i_t = tF.adaptive_max_pool1d(t, o, return_indices=True)
    y, ind = nc.adaptive_max_pool1d(x, o, return_indices=True)
    assert y.dtype == x.dtype and ind.dtype == np.int64
    np.testing.assert_array_equal(y, y_t.numpy())
    np.testing.assert_array_equal(ind, i_t.numpy())
    np.testing.assert_array_equal(nc.adaptive_max_pool1d(x, (o,)), y)
    want = tF.adaptive_avg_pool1d(t, o).numpy()
    got = nc.adaptive_avg_pool1d(x, o)
    assert got.dtype == x.dtype
    np.testing.assert_allclose(got, want, **_tol(x.dtype))


@given(adaptive_cases(2), st.booleans())
def test_adaptive_max_pool2d_matches_torch(case, nan):
    torch = pytest.importorskip("torch")
    x, out = case
    if nan:
        x = x.copy()
        x.ravel()[:: max(1, x.size // 2)] = np.nan
    y_t, i_t = torch.nn.functional.adaptive_max_pool2d(torch.from_numpy(x), out,
                                                       return_indices=True)
    y, ind = nc.adaptive_max_pool2d(_layout(x, "f"), out, return_indices=True)
    assert y.dtype == x.dtype and ind.dtype == np.int64 and y.shape == tuple(y_t.shape)
    np.testing.assert_array_equal(y, y_t.numpy())
    np.testing.assert_array_equal(ind, i_t.numpy())
    np.testing.assert_array_equal(nc.adaptive_max_pool2d(x, out), y)


@given(adaptive_cases(1), adaptive_cases(2))
def test_adaptive_backward_matches_torch(case1, case2):
    torch = pytest.importorskip("torch")
    tF = torch.nn.functional
    for (x, out), fn, back, torch_fn in (
            (case1, nc.adaptive_max_pool1d, nc.adaptive_max_pool1d_backward,
             tF.adaptive_max_pool1d),
            (case2, nc.adaptive_max_pool2d, nc.adaptive_max_pool2d_backward,
             tF.adaptive_max_pool2d)):
        x = x.astype(F64)
        t = torch.from_numpy(x).requires_grad_()
        y_t = torch_fn(t, out)
        dy = _rng(3).standard_normal(tuple(y_t.shape))
        y_t.backward(torch.from_numpy(dy))
        _, ind = fn(x, out, return_indices=True)
        dx = back(dy, ind, x.shape)
        assert dx.dtype == F64 and dx.shape == x.shape
        np.testing.assert_allclose(dx, t.grad.numpy(), rtol=1e-12, atol=1e-14)
    x, (o,) = case1
    x = x.astype(F64)
    t = torch.from_numpy(x).requires_grad_()
    dy = _rng(4).standard_normal(x.shape[:-1] + (o,))
    tF.adaptive_avg_pool1d(t, o).backward(torch.from_numpy(dy))
    np.testing.assert_allclose(nc.adaptive_avg_pool1d_backward(dy, x.shape), t.grad.numpy(),
                               rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (3, 1, 4), (1, 2, 1, 1), (2, 2, 9, 2)])
def test_global_max_pool2d_matches_torch(dtype, shape):
    torch = pytest.importorskip("torch")
    x = _sample(_rng(5), shape, dtype, ties=True)
    x.ravel()[3 % x.size] = np.nan  # one plane with a NaN
    y_t, i_t = torch.nn.functional.adaptive_max_pool2d(torch.from_numpy(x), 1,
                                                       return_indices=True)
    y, ind = nc.global_max_pool2d(x, return_indices=True)
    assert y.dtype == x.dtype and y.shape == shape[:-2] + (1, 1)
    np.testing.assert_array_equal(y, y_t.numpy())
    np.testing.assert_array_equal(ind, i_t.numpy())
    flat, find = nc.global_max_pool2d(x, keepdims=False, return_indices=True)
    assert flat.shape == shape[:-2] and find.shape == shape[:-2]
    np.testing.assert_array_equal(flat, y.reshape(shape[:-2]))
    np.testing.assert_array_equal(nc.adaptive_max_pool2d(x, 1), y)
    # backward, float64, against autograd of amax's twin with PyTorch's indices
    x64 = x.astype(F64)
    t = torch.from_numpy(x64).requires_grad_()
    dy = _rng(6).standard_normal(shape[:-2])
    torch.nn.functional.adaptive_max_pool2d(t, 1).reshape(shape[:-2]).backward(
        torch.from_numpy(dy))
    _, ind = nc.global_max_pool2d(x64, keepdims=False, return_indices=True)
    np.testing.assert_allclose(nc.global_max_pool2d_backward(dy, ind, shape), t.grad.numpy(),
                               rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(
        nc.global_max_pool2d_backward(dy.reshape(shape[:-2] + (1, 1)),
                                      ind.reshape(shape[:-2] + (1, 1)), shape),
        t.grad.numpy(), rtol=1e-12, atol=1e-14)


def test_adaptive_max_pool_all_minus_inf_index_is_first_element():
    torch = pytest.importorskip("torch")
    x = np.full((1, 1, 3, 5), -np.inf)
    y_t, i_t = torch.nn.functional.adaptive_max_pool2d(torch.from_numpy(x), (2, 2),
                                                       return_indices=True)
    y, ind = nc.adaptive_max_pool2d(x, (2, 2), return_indices=True)
    np.testing.assert_array_equal(y, y_t.numpy())
    np.testing.assert_array_equal(ind, i_t.numpy())


# =========================================================================== without torch


@pytest.mark.parametrize("shape, out", [((2, 3, 5, 7), (2, 3)), ((1, 2, 4, 3), (6, 5)),
                                        ((3, 6, 1), (1, 4)), ((2, 1, 7, 7), (1, 1))])
def test_adaptive_max_pool2d_matches_loop_reference(shape, out):
    x = _sample(_rng(7), shape, np.float64, ties=True)
    x.ravel()[:: 5] = np.nan
    y, ind = nc.adaptive_max_pool2d(x, out, return_indices=True)
    planes = x.reshape((-1,) + shape[-2:])
    y_ref, i_ref = _ref_adaptive_max(planes, *out)
    np.testing.assert_array_equal(y, y_ref.reshape(y.shape))
    np.testing.assert_array_equal(ind, i_ref.reshape(y.shape))


def test_max_pool1d_ties_go_to_the_first_maximum_and_nan_to_the_last():
    x = np.array([[[2.0, 2.0, 1.0, 0.0, np.nan, 0.0, np.nan, 3.0]]])
    y, ind = nc.max_pool1d(x, 4, 2, return_indices=True)  # windows [0, 4), [2, 6), [4, 8)
    assert ind.tolist() == [[[0, 4, 6]]]
    assert np.isnan(y[0, 0, 1:]).all() and y[0, 0, 0] == 2.0
    y, ind = nc.adaptive_max_pool1d(x, 3, return_indices=True)  # [0, 3), [2, 6), [5, 8)
    assert ind.tolist() == [[[0, 4, 6]]]
    assert np.isnan(y[0, 0, 1:]).all() and y[0, 0, 0] == 2.0


def _distinct(shape, seed=0):
    """Distinct values far apart compared with a finite-difference step: no argmax changes."""
    return _rng(seed).permutation(math.prod(shape)).reshape(shape) * 0.01 + 0.001


@pytest.mark.parametrize("fn, back, shape, args", [
    (nc.max_pool1d, nc.max_pool1d_backward, (2, 3, 11), (3, 2, 1, 2, True)),
    (nc.max_pool1d, nc.max_pool1d_backward, (3, 8), (2,)),
    (nc.adaptive_max_pool1d, nc.adaptive_max_pool1d_backward, (2, 3, 7), (4,)),
    (nc.adaptive_max_pool1d, nc.adaptive_max_pool1d_backward, (2, 9), (11,)),
    (nc.adaptive_max_pool2d, nc.adaptive_max_pool2d_backward, (2, 3, 5, 7), ((3, None),)),
    (nc.adaptive_max_pool2d, nc.adaptive_max_pool2d_backward, (2, 6, 4), (5,)),
    (nc.global_max_pool2d, nc.global_max_pool2d_backward, (2, 3, 4, 5), ()),
])
def test_max_pool_gradients_by_finite_differences(fn, back, shape, args):
    x = _distinct(shape)
    assert gradcheck(lambda a: fn(a, *args), x,
                     lambda dy, a: back(dy, fn(a, *args, return_indices=True)[1], a.shape))


@pytest.mark.parametrize("shape, args", [((2, 3, 11), (3, 2, 1, True, False)),
                                         ((3, 8), (4, 3, 2, True, True)), ((1, 2, 5), (1,))])
def test_avg_pool1d_gradient_by_finite_differences(shape, args):
    x = _rng(8).standard_normal(shape)
    assert gradcheck(lambda a: nc.avg_pool1d(a, *args), x,
                     lambda dy, a: nc.avg_pool1d_backward(dy, a.shape, *args))


@pytest.mark.parametrize("shape, out", [((2, 3, 7), 3), ((2, 5), 8), ((1, 1, 4), 1)])
def test_adaptive_avg_pool1d_gradient_by_finite_differences(shape, out):
    x = _rng(9).standard_normal(shape)
    assert gradcheck(lambda a: nc.adaptive_avg_pool1d(a, out), x,
                     lambda dy, a: nc.adaptive_avg_pool1d_backward(dy, a.shape))


def test_avg_pool1d_ceil_mode_divisor():
    # the part of the last window past the padded input is not counted (PyTorch's rule)
    x = np.arange(7.0).reshape(1, 1, 7)
    assert nc.avg_pool1d(x, 2, stride=3, ceil_mode=True).tolist() == [[[0.5, 3.5, 6.0]]]
    assert nc.avg_pool1d(x, 3, 2, 1).tolist() == [[[1 / 3, 2.0, 4.0, 11 / 3]]]
    assert nc.avg_pool1d(x, 3, 2, 1, count_include_pad=False).tolist() == [[[0.5, 2.0, 4.0,
                                                                             5.5]]]


@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_and_inf_reach_their_windows(dtype):
    x = np.zeros((1, 2, 8), dtype)
    x[0, 0, 1], x[0, 1, 6] = np.nan, np.inf
    y = nc.avg_pool1d(x, 2)
    assert np.isnan(y[0, 0, 0]) and np.all(y[0, 0, 1:] == 0)
    assert y[0, 1, 3] == np.inf and np.all(y[0, 1, :3] == 0)
    y = nc.adaptive_avg_pool1d(x, 4)
    assert np.isnan(y[0, 0, 0]) and y[0, 1, 3] == np.inf and np.isfinite(y[0, 1, :3]).all()
    y = nc.max_pool1d(x, 3, 1, 1)
    assert np.isnan(y[0, 0, :3]).all() and np.all(y[0, 0, 3:] == 0)
    assert np.all(y[0, 1, 5:] == np.inf) and np.all(y[0, 1, :5] == 0)
    y = nc.global_max_pool2d(x.reshape(1, 2, 2, 4))
    assert np.isnan(y[0, 0, 0, 0]) and y[0, 1, 0, 0] == np.inf
    y = nc.adaptive_max_pool2d(x.reshape(1, 2, 2, 4), (1, 2))
    assert np.isnan(y[0, 0, 0, 0]) and y[0, 0, 0, 1] == 0 and y[0, 1, 0, 1] == np.inf


# =========================================================================== shapes and dtypes

_FORWARD = [
    ("max_pool1d", lambda x: nc.max_pool1d(x, 3, 2, 1), 1),
    ("avg_pool1d", lambda x: nc.avg_pool1d(x, 3, 2, 1), 1),
    ("adaptive_avg_pool1d", lambda x: nc.adaptive_avg_pool1d(x, 3), 1),
    ("adaptive_max_pool1d", lambda x: nc.adaptive_max_pool1d(x, 3), 1),
    ("adaptive_max_pool2d", lambda x: nc.adaptive_max_pool2d(x, (2, 3)), 2),
    ("global_max_pool2d", lambda x: nc.global_max_pool2d(x), 2),
    ("dropout1d", lambda x: nc.dropout1d(x, 0.5, rng=0), 1),
    ("dropout2d", lambda x: nc.dropout2d(x, 0.5, rng=0), 2),
]


@pytest.mark.parametrize("name, fn, nd", _FORWARD, ids=[f[0] for f in _FORWARD])
@pytest.mark.parametrize("dtype", DTYPES + [np.int32, np.bool_])
def test_dtype_kept_ints_cast_to_float32(name, fn, nd, dtype):
    shape = (2, 3, 7) if nd == 1 else (2, 3, 5, 6)
    x = _rng(10).integers(0, 3, size=shape).astype(dtype)
    y = fn(x)
    assert y.dtype == (dtype if dtype in DTYPES else np.float32), name


@pytest.mark.parametrize("name, fn, nd", _FORWARD, ids=[f[0] for f in _FORWARD])
def test_float16_and_complex_refused(name, fn, nd):
    shape = (1, 2, 6) if nd == 1 else (1, 2, 4, 4)
    for dtype in (np.float16, np.complex64):
        with pytest.raises(TypeError, match=rf"{name}: argument 'x'"):
            fn(np.ones(shape, dtype))


@pytest.mark.parametrize("name, fn, nd", _FORWARD, ids=[f[0] for f in _FORWARD])
def test_empty_batch(name, fn, nd):
    shape = (0, 3, 7) if nd == 1 else (0, 3, 5, 6)
    y = fn(np.zeros(shape, np.float32))
    assert y.shape[0] == 0 and y.shape[1] == 3 and y.dtype == np.float32, name


def test_empty_batch_backward():
    x = np.zeros((0, 2, 7))
    y, i = nc.max_pool1d(x, 2, return_indices=True)
    assert nc.max_pool1d_backward(y, i, x.shape).shape == x.shape
    assert nc.avg_pool1d_backward(nc.avg_pool1d(x, 2), x.shape, 2).shape == x.shape
    assert nc.adaptive_avg_pool1d_backward(np.zeros((0, 2, 3)), x.shape).shape == x.shape
    y, i = nc.adaptive_max_pool1d(x, 3, return_indices=True)
    assert nc.adaptive_max_pool1d_backward(y, i, x.shape).shape == x.shape
    x4 = np.zeros((0, 2, 3, 4))
    y, i = nc.adaptive_max_pool2d(x4, 2, return_indices=True)
    assert nc.adaptive_max_pool2d_backward(y, i, x4.shape).shape == x4.shape
    y, i = nc.global_max_pool2d(x4, return_indices=True)
    assert nc.global_max_pool2d_backward(y, i, x4.shape).shape == x4.shape
    y, m = nc.dropout2d(x4, rng=0, return_mask=True)
    assert m.shape == (0, 2, 1, 1) and nc.dropout2d_backward(y, m).shape == x4.shape


def test_unbatched_inputs_match_batched():
    x = _rng(11).standard_normal((3, 10))
    for fn in (lambda a, **k: nc.max_pool1d(a, 3, 2, 1, **k),
               lambda a, **k: nc.adaptive_max_pool1d(a, 4, **k)):
        y, i = fn(x, return_indices=True)
        y1, i1 = fn(x[None], return_indices=True)
        np.testing.assert_array_equal(y, y1[0])
        np.testing.assert_array_equal(i, i1[0])
        dy = _rng(12).standard_normal(y.shape)
    np.testing.assert_array_equal(nc.avg_pool1d(x, 3, 2, 1), nc.avg_pool1d(x[None], 3, 2, 1)[0])
    np.testing.assert_array_equal(nc.adaptive_avg_pool1d(x, 4), nc.adaptive_avg_pool1d(x[None],
                                                                                      4)[0])
    y, i = nc.max_pool1d(x, 3, 2, 1, return_indices=True)
    dy = _rng(12).standard_normal(y.shape)
    np.testing.assert_array_equal(nc.max_pool1d_backward(dy, i, x.shape),
                                  nc.max_pool1d_backward(dy[None], i[None], (1,) + x.shape)[0])
    np.testing.assert_array_equal(nc.avg_pool1d_backward(dy, x.shape, 3, 2, 1),
                                  nc.avg_pool1d_backward(dy[None], (1,) + x.shape, 3, 2, 1)[0])
    x3 = _rng(13).standard_normal((2, 5, 4))
    y, i = nc.adaptive_max_pool2d(x3, (3, 2), return_indices=True)
    y1, i1 = nc.adaptive_max_pool2d(x3[None], (3, 2), return_indices=True)
    np.testing.assert_array_equal(y, y1[0])
    np.testing.assert_array_equal(i, i1[0])
    assert nc.global_max_pool2d(x3, keepdims=False).shape == (2,)


def test_unbatched_matches_torch():
    torch = pytest.importorskip("torch")
    tF = torch.nn.functional
    x = _rng(14).standard_normal((3, 10))
    t = torch.from_numpy(x)
    np.testing.assert_array_equal(nc.max_pool1d(x, 3, 2, 1), tF.max_pool1d(t, 3, 2, 1).numpy())
    np.testing.assert_allclose(nc.avg_pool1d(x, 3, 2, 1), tF.avg_pool1d(t, 3, 2, 1).numpy(),
                               rtol=1e-12)
    np.testing.assert_array_equal(nc.adaptive_max_pool1d(x, 4),
                                  tF.adaptive_max_pool1d(t, 4).numpy())
    x3 = _rng(15).standard_normal((2, 5, 4))
    np.testing.assert_array_equal(nc.adaptive_max_pool2d(x3, (3, None)),
                                  tF.adaptive_max_pool2d(torch.from_numpy(x3), (3, None)).numpy())


# =========================================================================== bad arguments

_X1, _X2 = np.ones((1, 2, 6)), np.ones((1, 2, 4, 4))
_BAD = [
    (lambda: nc.max_pool1d(_X1, 0), ValueError, "max_pool1d: argument 'kernel_size'"),
    (lambda: nc.max_pool1d(_X1, (2, 2)), ValueError, "max_pool1d: argument 'kernel_size'"),
    (lambda: nc.max_pool1d(_X1, 2.0), TypeError, "max_pool1d: argument 'kernel_size'"),
    (lambda: nc.max_pool1d(_X1, 2, 0), ValueError, "max_pool1d: argument 'stride'"),
    (lambda: nc.max_pool1d(_X1, 3, 1, 2), ValueError, "max_pool1d: argument 'padding'"),
    (lambda: nc.max_pool1d(_X1, 2, 1, -1), ValueError, "max_pool1d: argument 'padding'"),
    (lambda: nc.max_pool1d(_X1, 2, 1, 0, 0), ValueError, "max_pool1d: argument 'dilation'"),
    (lambda: nc.max_pool1d(_X1, 7), ValueError, "max_pool1d: argument 'kernel_size'"),
    (lambda: nc.max_pool1d(_X1, 3, 1, 0, 3), ValueError, "max_pool1d: argument 'kernel_size'"),
    (lambda: nc.max_pool1d(_X1, 2, ceil_mode="False"), TypeError, "'ceil_mode'"),
    (lambda: nc.max_pool1d(_X1, 2, return_indices=1), TypeError, "'return_indices'"),
    (lambda: nc.max_pool1d(_X2, 2), ValueError, r"max_pool1d: argument 'x' must be 3-D"),
    (lambda: nc.max_pool1d(np.ones(5), 2), ValueError, "argument 'x'"),
    (lambda: nc.max_pool1d(np.ones((1, 2, 0)), 1), ValueError, "argument 'x' has an empty"),
    (lambda: nc.avg_pool1d(_X1, 2, count_include_pad=None), TypeError, "count_include_pad"),
    (lambda: nc.avg_pool1d(_X1, 3, padding=2), ValueError, "avg_pool1d: argument 'padding'"),
    (lambda: nc.avg_pool1d(_X1, 9), ValueError, "avg_pool1d: argument 'kernel_size'"),
    (lambda: nc.adaptive_avg_pool1d(_X1, 0), ValueError, "argument 'output_size'"),
    (lambda: nc.adaptive_avg_pool1d(_X1, None), TypeError, "argument 'output_size'"),
    (lambda: nc.adaptive_max_pool1d(_X1, (2, 2)), ValueError, "argument 'output_size'"),
    (lambda: nc.adaptive_max_pool1d(_X2, 2), ValueError, "adaptive_max_pool1d: argument 'x'"),
    (lambda: nc.adaptive_max_pool2d(_X2, (2, 2, 2)), ValueError, "argument 'output_size'"),
    (lambda: nc.adaptive_max_pool2d(_X2, -1), ValueError, "argument 'output_size'"),
    (lambda: nc.adaptive_max_pool2d(_X1[0], 2), ValueError, "adaptive_max_pool2d: argument 'x'"),
    (lambda: nc.global_max_pool2d(_X2, keepdims=1), TypeError, "argument 'keepdims'"),
    (lambda: nc.global_max_pool2d(np.ones((2, 2)),), ValueError, "argument 'x'"),
    (lambda: nc.max_pool1d_backward(np.ones((1, 2, 3)), np.zeros((1, 2, 3)), (1, 2, 6)),
     TypeError, "'indices'"),
    (lambda: nc.max_pool1d_backward(np.ones((1, 2, 3)), np.zeros((1, 2, 2), int), (1, 2, 6)),
     ValueError, "'indices' shape"),
    (lambda: nc.max_pool1d_backward(np.ones((1, 2, 3)), np.full((1, 2, 3), 6), (1, 2, 6)),
     ValueError, "'indices' has values"),
    (lambda: nc.max_pool1d_backward(np.ones((1, 2, 3)), np.zeros((1, 2, 3), int), (1, 3, 6)),
     ValueError, "'input_shape'"),
    (lambda: nc.max_pool1d_backward(np.ones((1, 2, 3)), np.zeros((1, 2, 3), int), (2, 6)),
     ValueError, "'input_shape'"),
    (lambda: nc.max_pool1d_backward(np.ones((1, 2, 3)), np.zeros((1, 2, 3), int), "abc"),
     TypeError, "'input_shape'"),
    (lambda: nc.max_pool1d_backward(np.ones((1, 2, 3)), np.zeros((1, 2, 3), int), (1, 2, 0)),
     ValueError, "'input_shape' must have non-negative sizes and L >= 1"),
    (lambda: nc.adaptive_max_pool1d_backward(np.ones((2, 3)), np.zeros((2, 3), int), (2, 2.5)),
     TypeError, "adaptive_max_pool1d_backward: argument 'input_shape'"),
    (lambda: nc.avg_pool1d_backward(np.ones((1, 2, 4)), (1, 2, 6), 2), ValueError,
     "avg_pool1d_backward: argument 'dy' has length 4"),
    (lambda: nc.adaptive_avg_pool1d_backward(np.ones((1, 2, 0)), (1, 2, 6)), ValueError,
     "argument 'dy'"),
    (lambda: nc.adaptive_max_pool2d_backward(np.ones((1, 2, 2, 2)), np.zeros((1, 2, 2, 2), int),
                                             (1, 3, 4, 4)), ValueError, "'input_shape'"),
    (lambda: nc.global_max_pool2d_backward(np.ones((1, 3)), np.zeros((1, 3), int),
                                           (1, 2, 4, 4)), ValueError, "argument 'dy'"),
    (lambda: nc.dropout1d(_X2), ValueError, "dropout1d: argument 'x'"),
    (lambda: nc.dropout2d(_X1[0]), ValueError, "dropout2d: argument 'x'"),
    (lambda: nc.dropout2d(_X2, p=1.5), ValueError, "dropout2d: argument 'p'"),
    (lambda: nc.dropout2d(_X2, p="0.5"), TypeError, "dropout2d: argument 'p'"),
    (lambda: nc.dropout1d(_X1, training="yes"), TypeError, "argument 'training'"),
    (lambda: nc.dropout1d(_X1, rng="seed"), TypeError, "dropout1d: argument 'rng'"),
    (lambda: nc.dropout1d(_X1, rng=-1), ValueError, "dropout1d: argument 'rng'"),
    (lambda: nc.dropout2d(_X2, p=1.0, rng=1.5), TypeError, "argument 'rng'"),
    (lambda: nc.dropout2d_backward(_X2, np.ones((1, 3, 1, 1))), ValueError, "argument 'mask'"),
    (lambda: nc.dropout2d_backward(_X2, np.ones((1, 2, 4))), ValueError, "argument 'mask'"),
    (lambda: nc.dropout1d_backward(_X1, np.ones((1, 2, 6), np.float16)), TypeError, "'mask'"),
]


@pytest.mark.parametrize("call, exc, match", _BAD)
def test_bad_arguments_name_themselves(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_torch_refuses_where_nbconv_refuses():
    """The output-size and padding rules: nbconv raises exactly where PyTorch does."""
    torch = pytest.importorskip("torch")
    x = np.ones((1, 1, 5))
    t = torch.from_numpy(x)
    for k in range(1, 8):
        for s in (1, 2, 3):
            for p in range(0, 4):
                for d in (1, 2, 3):
                    for ceil_mode in (False, True):
                        try:
                            torch.nn.functional.max_pool1d(t, k, s, p, d, ceil_mode)
                            ok = True
                        except (RuntimeError, ValueError):
                            ok = False
                        if ok:
                            nc.max_pool1d(x, k, s, p, d, ceil_mode)
                        else:
                            with pytest.raises(ValueError, match="max_pool1d: argument"):
                                nc.max_pool1d(x, k, s, p, d, ceil_mode)


# =========================================================================== channel dropout


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fn, shape, lead", [(nc.dropout2d, (4, 50, 3, 5), 2),
                                             (nc.dropout1d, (4, 50, 7), 2),
                                             (nc.dropout1d, (200, 7), 1)])
def test_channel_dropout_zeros_whole_channels(fn, shape, lead, dtype):
    x = _rng(16).standard_normal(shape).astype(dtype) + 3.0  # no zero by chance
    p = 0.3
    y, mask = fn(x, p, rng=7, return_mask=True)
    assert y.dtype == dtype and mask.dtype == dtype
    assert mask.shape == shape[:lead] + (1,) * (len(shape) - lead)
    # the generator's rule: u = rng.random(channels) (float64), kept where u >= p
    keep = np.random.default_rng(7).random(shape[:lead]) >= p
    np.testing.assert_array_equal(mask.reshape(shape[:lead]) != 0, keep)
    scale = dtype(1.0 / (1.0 - p))
    assert set(np.unique(mask).tolist()) <= {0.0, float(scale)}
    np.testing.assert_array_equal(y, x * mask)
    dropped = ~keep.reshape(mask.shape)
    assert np.all(y[np.broadcast_to(dropped, shape)] == 0)
    assert 0.2 < 1 - keep.mean() < 0.4
    dy = _rng(17).standard_normal(shape).astype(dtype)
    np.testing.assert_array_equal(
        (nc.dropout2d_backward if fn is nc.dropout2d else nc.dropout1d_backward)(dy, mask),
        dy * mask)


def test_channel_dropout_rng_rules():
    x = np.ones((3, 8, 4, 4))
    a = nc.dropout2d(x, 0.5, rng=3)
    np.testing.assert_array_equal(a, nc.dropout2d(x, 0.5, rng=3))  # a seed repeats
    gen = np.random.default_rng(3)
    np.testing.assert_array_equal(a, nc.dropout2d(x, 0.5, rng=gen))
    b = nc.dropout2d(x, 0.5, rng=gen)  # a Generator advances
    assert not np.array_equal(a, b)
    # eval mode and p == 0: a copy; p == 1: x * 0 (NaN stays NaN, as PyTorch)
    x[0, 0, 0, 0] = np.nan
    for y in (nc.dropout2d(x, 0.5, training=False), nc.dropout2d(x, 0.0)):
        np.testing.assert_array_equal(y, x)
        assert y is not x
    y, m = nc.dropout2d(x, 1.0, return_mask=True)
    assert np.isnan(y[0, 0, 0, 0]) and np.all(y.ravel()[1:] == 0) and not m.any()


def test_channel_dropout_p1_and_nan_match_torch():
    torch = pytest.importorskip("torch")
    x = _rng(18).standard_normal((2, 3, 4, 4))
    x[0, 1, 2, 2], x[1, 0, 0, 0] = np.nan, np.inf
    want = torch.nn.functional.dropout2d(torch.from_numpy(x), 1.0).numpy()
    np.testing.assert_array_equal(nc.dropout2d(x, 1.0), want)
    want = torch.nn.functional.dropout1d(torch.from_numpy(x[0]), 1.0).numpy()
    np.testing.assert_array_equal(nc.dropout1d(x[0], 1.0), want)
    # a dropped NaN stays NaN for 0 < p < 1 too (x * mask)
    y, m = nc.dropout2d(x, 0.5, rng=0, return_mask=True)
    assert np.isnan(y[0, 1, 2, 2])
    assert (m[1, 0, 0, 0] == 0) == np.isnan(y[1, 0, 0, 0])


def test_dropout2d_3d_input_is_read_as_n_c_l_with_a_warning():
    torch = pytest.importorskip("torch")
    x = np.ones((4, 30, 5))
    with pytest.warns(UserWarning, match="3-D input"):
        y, m = nc.dropout2d(x, 0.5, rng=1, return_mask=True)
    assert m.shape == (4, 30, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = torch.nn.functional.dropout2d(torch.ones(4, 30, 5), 0.5).numpy()
    # the same granularity as PyTorch: rows of L equal, dropped per (x[0], x[1]) pair
    for a in (y, t):
        assert np.all(a == a[..., :1])
        assert len(np.unique(a[..., 0])) == 2


def test_channel_dropout_gradient_by_finite_differences():
    x = _rng(19).standard_normal((2, 5, 3, 4))
    for fn, back, xx in ((nc.dropout2d, nc.dropout2d_backward, x),
                         (nc.dropout1d, nc.dropout1d_backward, x[0])):
        assert gradcheck(lambda a, f=fn: f(a, 0.4, rng=5), xx,
                         lambda dy, a, f=fn, b=back: b(dy, f(a, 0.4, rng=5,
                                                             return_mask=True)[1]))


# =========================================================================== layers

_LAYERS = [
    ("MaxPool1d", lambda: nn.MaxPool1d(3, 2, 1, ceil_mode=True), (3, 10)),
    ("MaxPool1d-dilated", lambda: nn.MaxPool1d(2, 1, 1, 2), (2, 7)),
    ("AvgPool1d", lambda: nn.AvgPool1d(3, 2, 1, True, False), (3, 10)),
    ("AdaptiveAvgPool1d", lambda: nn.AdaptiveAvgPool1d(4), (3, 7)),
    ("AdaptiveMaxPool1d", lambda: nn.AdaptiveMaxPool1d(4), (3, 9)),
    ("AdaptiveMaxPool2d", lambda: nn.AdaptiveMaxPool2d((3, None)), (2, 7, 5)),
    ("AdaptiveMaxPool2d-up", lambda: nn.AdaptiveMaxPool2d(6), (2, 4, 5)),
    ("GlobalMaxPool2d", lambda: nn.GlobalMaxPool2d(), (3, 4, 5)),
    ("GlobalMaxPool2d-flat", lambda: nn.GlobalMaxPool2d(keepdims=False), (3, 4, 5)),
    ("Dropout1d", lambda: nn.Dropout1d(0.3).eval(), (3, 6)),
    ("Dropout2d", lambda: nn.Dropout2d(0.3).eval(), (3, 4, 4)),
]


@pytest.mark.parametrize("name, make, shape", _LAYERS, ids=[c[0] for c in _LAYERS])
def test_layer_gradcheck(name, make, shape):
    assert gradcheck(make(), _distinct((2,) + shape))


@pytest.mark.parametrize("name, make, shape", _LAYERS, ids=[c[0] for c in _LAYERS])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_layer_empty_batch_and_unbatched(name, make, shape, mode):
    layer = getattr(make(), mode)()
    y = layer(np.zeros((0,) + shape, np.float32))
    assert y.shape[0] == 0 and y.dtype == np.float32
    assert layer.backward(np.zeros(y.shape, np.float32)).shape == (0,) + shape
    if name.startswith("Dropout2d"):
        return  # PyTorch reads a 3-D input to Dropout2d as (N, C, L): no unbatched form
    x = _distinct(shape)
    y1 = layer(x)
    dx1 = layer.backward(np.ones_like(y1))
    y2 = layer(x[None])
    dx2 = layer.backward(np.ones_like(y2))
    if mode == "eval" or not name.startswith("Dropout"):
        np.testing.assert_array_equal(y1, y2[0])
        np.testing.assert_array_equal(dx1, dx2[0])


@pytest.mark.parametrize("name, make, shape", _LAYERS, ids=[c[0] for c in _LAYERS])
def test_backward_without_forward_says_so(name, make, shape):
    with pytest.raises(RuntimeError, match="backward called without a cached forward pass"):
        make().backward(np.zeros((1,) + shape))


def test_layers_match_torch_modules_float64():
    torch = pytest.importorskip("torch")
    tnn = torch.nn
    pairs = [
        (nn.MaxPool1d(3, 2, 1, 2, ceil_mode=True), tnn.MaxPool1d(3, 2, 1, 2, ceil_mode=True),
         (2, 3, 11)),
        (nn.AvgPool1d(4, 3, 2, True, False), tnn.AvgPool1d(4, 3, 2, True, False), (2, 3, 11)),
        (nn.AdaptiveAvgPool1d(5), tnn.AdaptiveAvgPool1d(5), (2, 3, 7)),
        (nn.AdaptiveMaxPool1d(5), tnn.AdaptiveMaxPool1d(5), (2, 3, 7)),
        (nn.AdaptiveMaxPool2d((None, 3)), tnn.AdaptiveMaxPool2d((None, 3)), (2, 3, 5, 7)),
        (nn.AdaptiveMaxPool2d(4), tnn.AdaptiveMaxPool2d(4), (3, 5, 7)),
    ]
    for ours, theirs, shape in pairs:
        x = _sample(_rng(20), shape, F64, ties=True)
        t = torch.from_numpy(x).requires_grad_()
        y_t = theirs(t)
        dy = _rng(21).standard_normal(tuple(y_t.shape))
        y_t.backward(torch.from_numpy(dy))
        y = ours(x)
        np.testing.assert_allclose(y, y_t.detach().numpy(), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(ours.backward(dy), t.grad.numpy(), rtol=1e-12, atol=1e-14)


def test_layers_return_indices_as_torch():
    torch = pytest.importorskip("torch")
    tnn = torch.nn
    x = _sample(_rng(22), (2, 3, 9), F64, ties=True)
    for ours, theirs in ((nn.MaxPool1d(3, 2, 1, return_indices=True),
                          tnn.MaxPool1d(3, 2, 1, return_indices=True)),
                         (nn.AdaptiveMaxPool1d(4, True), tnn.AdaptiveMaxPool1d(4, True))):
        y, i = ours(x)
        y_t, i_t = theirs(torch.from_numpy(x))
        np.testing.assert_array_equal(y, y_t.numpy())
        np.testing.assert_array_equal(i, i_t.numpy())
        dx = ours.backward(np.ones_like(y))
        assert dx.shape == x.shape and dx.sum() == y.size
    x4 = x.reshape(2, 3, 3, 3)
    y, i = nn.AdaptiveMaxPool2d(2, return_indices=True)(x4)
    y_t, i_t = tnn.AdaptiveMaxPool2d(2, return_indices=True)(torch.from_numpy(x4))
    np.testing.assert_array_equal(i, i_t.numpy())


def test_layer_backward_checks_dy_shape():
    for layer, x in ((nn.AdaptiveMaxPool2d(2), np.zeros((1, 1, 4, 4))),
                     (nn.AdaptiveAvgPool1d(2), np.zeros((1, 1, 4))),
                     (nn.MaxPool1d(2), np.zeros((1, 1, 4)))):
        layer(x)
        with pytest.raises(ValueError, match=r"argument 'dy' has shape \(1, 1, 3"):
            layer.backward(np.zeros((1, 1, 3) + (3,) * (x.ndim - 3)))


def test_dropout_layers_train_eval_and_seed():
    x = _rng(23).standard_normal((4, 16, 3, 3))
    layer = nn.Dropout2d(0.5)
    nc.manual_seed(11)
    y1 = layer(x)
    dx1 = layer.backward(np.ones_like(x))
    nc.manual_seed(11)
    y2 = layer(x)
    np.testing.assert_array_equal(y1, y2)  # the library generator: seeded runs repeat
    mask = (y1 != 0) / 0.5
    np.testing.assert_array_equal(dx1, mask)
    assert np.all(y1 == x * mask)
    assert not np.array_equal(layer(x), y1)  # the next call draws a new mask
    layer.eval()
    np.testing.assert_array_equal(layer(x), x)
    np.testing.assert_array_equal(layer.backward(x), x)
    # a private generator
    a, b = nn.Dropout1d(0.5, rng=4), nn.Dropout1d(0.5, rng=4)
    np.testing.assert_array_equal(a(x[0]), b(x[0]))
    # nothing kept under no_grad in training mode: backward says so
    with nc.no_grad():
        layer.train()(x)
    with pytest.raises(RuntimeError, match="Dropout2d.backward called without"):
        layer.backward(x)
    with pytest.warns(UserWarning, match="3-D input"):
        assert nn.Dropout2d(0.5)(np.ones((2, 3, 4))).shape == (2, 3, 4)


_CTOR_BAD = [
    (nn.MaxPool1d, dict(kernel_size=0), ValueError, "kernel_size"),
    (nn.MaxPool1d, dict(kernel_size=(2, 2)), ValueError, "kernel_size"),
    (nn.MaxPool1d, dict(kernel_size=2, padding=2), ValueError, "padding"),
    (nn.MaxPool1d, dict(kernel_size=2, stride=-1), ValueError, "stride"),
    (nn.MaxPool1d, dict(kernel_size=2, return_indices="no"), TypeError, "return_indices"),
    (nn.AvgPool1d, dict(kernel_size=2.5), TypeError, "kernel_size"),
    (nn.AvgPool1d, dict(kernel_size=2, count_include_pad=0), TypeError, "count_include_pad"),
    (nn.AdaptiveAvgPool1d, dict(output_size=0), ValueError, "output_size"),
    (nn.AdaptiveMaxPool1d, dict(output_size=(2, 2)), ValueError, "output_size"),
    (nn.AdaptiveMaxPool2d, dict(output_size=(2, 2, 2)), ValueError, "output_size"),
    (nn.AdaptiveMaxPool2d, dict(output_size="2"), TypeError, "output_size"),
    (nn.GlobalMaxPool2d, dict(keepdims=None), TypeError, "keepdims"),
    (nn.Dropout2d, dict(p=1.5), ValueError, "p"),
    (nn.Dropout1d, dict(p="0.5"), TypeError, "p"),
    (nn.Dropout1d, dict(inplace=1), TypeError, "inplace"),
    (nn.Dropout2d, dict(rng="x"), TypeError, "rng"),
]


@pytest.mark.parametrize("cls, kwargs, exc, arg", _CTOR_BAD,
                         ids=[f"{c.__name__}-{a}" for c, _, _, a in _CTOR_BAD])
def test_layer_constructor_refuses_bad_values(cls, kwargs, exc, arg):
    with pytest.raises(exc) as info:
        cls(**kwargs)
    msg = str(info.value)
    assert msg.startswith(cls.__name__) and f"'{arg}'" in msg, msg


_JUNK = st.one_of(st.none(), st.text(max_size=3), st.floats(allow_nan=True),
                  st.integers(-3, 0), st.integers(2**62 + 1, 2**70), st.booleans(),
                  st.lists(st.integers(0, 3), max_size=3), st.just(np.zeros(2)))
_GOOD = [(nn.MaxPool1d, dict(kernel_size=2)), (nn.AvgPool1d, dict(kernel_size=2)),
         (nn.AdaptiveAvgPool1d, dict(output_size=2)), (nn.AdaptiveMaxPool1d, dict(output_size=2)),
         (nn.AdaptiveMaxPool2d, dict(output_size=2)), (nn.GlobalMaxPool2d, {}),
         (nn.Dropout1d, dict(p=0.5)), (nn.Dropout2d, dict(p=0.5))]


@given(st.sampled_from(_GOOD), st.data())
def test_layer_constructors_fuzz(good, data):
    """Junk for any argument is accepted or refused naming that argument, never a raw error."""
    import inspect

    cls, kwargs = good
    name = data.draw(st.sampled_from(list(inspect.signature(cls).parameters)))
    value = data.draw(_JUNK)
    try:
        cls(**{**kwargs, name: value})
    except (ValueError, TypeError) as e:
        assert str(e).startswith(cls.__name__) and f"'{name}'" in str(e), (name, value, str(e))


def test_model_file_round_trip(tmp_path):
    pytest.importorskip("h5py")
    nc.manual_seed(0)
    model = nn.Sequential(
        nn.Conv1d(2, 4, 3), nn.MaxPool1d(3, 2, 1, ceil_mode=True), nn.Dropout1d(0.2),
        nn.AvgPool1d(2, count_include_pad=False), nn.AdaptiveMaxPool1d(3),
        nn.AdaptiveAvgPool1d(2), nn.Flatten(), nn.Linear(8, 3))
    model2 = nn.Sequential(nn.Conv2d(1, 3, 3), nn.Dropout2d(0.1), nn.AdaptiveMaxPool2d((2, None)),
                           nn.GlobalMaxPool2d(keepdims=False), nn.Linear(3, 2))
    for m, shape in ((model, (2, 2, 20)), (model2, (2, 1, 7, 6))):
        path = tmp_path / "m.h5"
        nc.save(m, path)
        again = nc.load(path)
        assert nn.to_config(again) == nn.to_config(m)
        m.eval()
        again.eval()
        x = _rng(24).standard_normal(shape).astype(np.float32)
        np.testing.assert_array_equal(again(x), m(x))


# =========================================================================== recording


class _Net1d(nn.Module):
    """A PyTorch-style 1-D network without a backward: layers and functional ops."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(2, 4, 3, padding=1, dtype=F64)
        self.pool = nn.MaxPool1d(3, 2, 1)
        self.avg = nn.AvgPool1d(2, ceil_mode=True, count_include_pad=False)
        self.amax = nn.AdaptiveMaxPool1d(5)
        self.fc = nn.Linear(4 * 3, 3, dtype=F64)

    def forward(self, x):
        h = self.pool(nc.relu(self.conv(x)))            # a layer used twice
        h = self.pool(self.avg(h) + nc.max_pool1d(h, 2, 2, ceil_mode=True))
        h = nc.dropout1d(h, 0.5, rng=3)                 # the same mask in the torch twin
        h = self.amax(h) + nc.adaptive_max_pool1d(h, 5) * 0.5
        h = nc.adaptive_avg_pool1d(h, 3) + nc.avg_pool1d(h, 3, 2, 1)[..., :3]
        return self.fc(h.reshape(h.shape[0], -1))


class _Net2d(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, dtype=F64)
        self.amax = nn.AdaptiveMaxPool2d((3, None))
        self.gmax = nn.GlobalMaxPool2d(keepdims=False)
        self.drop = nn.Dropout2d(0.5)
        self.fc = nn.Linear(3, 2, dtype=F64)

    def forward(self, x):
        h = self.drop(nc.relu(self.conv(x)))
        h = self.amax(h) + nc.adaptive_max_pool2d(h, (3, 4))
        h = nc.dropout2d(h, 0.5, rng=2)
        return self.fc(self.gmax(h) + nc.global_max_pool2d(h, keepdims=False))


def _torch_twin_1d(torch, ours, x):
    tnn, tF = torch.nn, torch.nn.functional

    class Twin(tnn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.fc = tnn.Conv1d(2, 4, 3, padding=1), tnn.Linear(12, 3)
            self.pool = tnn.MaxPool1d(3, 2, 1)
            self.avg = tnn.AvgPool1d(2, ceil_mode=True, count_include_pad=False)
            self.amax = tnn.AdaptiveMaxPool1d(5)

        def forward(self, x):
            h = self.pool(tF.relu(self.conv(x)))
            h = self.pool(self.avg(h) + tF.max_pool1d(h, 2, 2, ceil_mode=True))
            _, mask = nc.dropout1d(h.detach().numpy(), 0.5, rng=3, return_mask=True)
            h = h * torch.from_numpy(mask)
            h = self.amax(h) + tF.adaptive_max_pool1d(h, 5) * 0.5
            h = tF.adaptive_avg_pool1d(h, 3) + tF.avg_pool1d(h, 3, 2, 1)[..., :3]
            return self.fc(h.reshape(h.shape[0], -1))

    return Twin().double()


def _torch_twin_2d(torch, ours):
    tnn, tF = torch.nn, torch.nn.functional

    class Twin(tnn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.fc = tnn.Conv2d(2, 3, 3), tnn.Linear(3, 2)
            self.amax = tnn.AdaptiveMaxPool2d((3, None))

        def forward(self, x, mask1):
            h = tF.relu(self.conv(x)) * mask1
            h = self.amax(h) + tF.adaptive_max_pool2d(h, (3, 4))
            _, mask = nc.dropout2d(h.detach().numpy(), 0.5, rng=2, return_mask=True)
            h = h * torch.from_numpy(mask)
            g = tF.adaptive_max_pool2d(h, 1).flatten(1)  # (amax would split ties)
            return self.fc(g + g)

    return Twin().double()


def _load_twin(torch, ours, twin):
    twin.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in ours.state_dict().items()})


def _rel(a, b, what):
    np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12 * max(1.0, np.abs(b).max()),
                               err_msg=what)


def test_recorded_forward_matches_torch_1d():
    torch = pytest.importorskip("torch")
    nc.manual_seed(1)
    model = _Net1d()
    x = _rng(25).standard_normal((3, 2, 23))
    y = np.array([0, 2, 1])
    twin = _torch_twin_1d(torch, model, x)
    _load_twin(torch, model, twin)
    xt = torch.tensor(x, requires_grad=True)
    out_t = twin(xt)
    torch.nn.functional.cross_entropy(out_t, torch.tensor(y)).backward()
    crit = nn.CrossEntropyLoss()
    out = model(x)
    loss = crit(out, y)
    loss.backward()
    _rel(out, out_t.detach().numpy(), "output")
    grads = dict(twin.named_parameters())
    for k, p in model.named_parameters():
        _rel(p.grad, grads[k].grad.numpy(), k)
    model.zero_grad()
    model(x)
    crit.forward(model(x), y)
    _rel(model.backward(crit.backward()), xt.grad.numpy(), "dx")


def test_recorded_forward_matches_torch_2d():
    torch = pytest.importorskip("torch")
    nc.manual_seed(2)
    model = _Net2d()
    x = _rng(26).standard_normal((4, 2, 9, 6))
    y = np.array([0, 1, 1, 0])
    twin = _torch_twin_2d(torch, model)
    _load_twin(torch, model, twin)
    nc.manual_seed(5)  # the Dropout2d layer draws from the library generator
    out = model(x)
    nn.CrossEntropyLoss()(out, y).backward()
    h = nc.relu(nc.conv2d(x, model.conv.weight.data, model.conv.bias.data))
    nc.manual_seed(5)
    mask1 = nc.dropout2d(h, 0.5, rng=nc.nn.default_rng(), return_mask=True)[1]
    xt = torch.tensor(x, requires_grad=True)
    out_t = twin(xt, torch.from_numpy(mask1))
    torch.nn.functional.cross_entropy(out_t, torch.tensor(y)).backward()
    _rel(out, out_t.detach().numpy(), "output")
    grads = dict(twin.named_parameters())
    for k, p in model.named_parameters():
        _rel(p.grad, grads[k].grad.numpy(), k)


def test_recorded_forward_by_finite_differences():
    nc.manual_seed(3)
    for model, shape in ((_Net1d(), (2, 2, 23)), (_Net2d(), (2, 2, 9, 6))):
        model.eval()  # the Dropout2d layer off: a deterministic forward pass
        assert gradcheck(model, _distinct(shape, seed=4), rtol=1e-5)


def test_functional_ops_record_inside_a_module():
    """Every new op records with its backward inside a forward (checked one op at a time)."""
    ops = [
        (lambda h: nc.max_pool1d(h, 3, 2, 1, 2, True), (2, 3, 9)),
        (lambda h: nc.max_pool1d(h, 2, return_indices=True)[0], (2, 3, 8)),
        (lambda h: nc.avg_pool1d(h, 3, 2, 1, True, False), (2, 3, 9)),
        (lambda h: nc.adaptive_avg_pool1d(h, 4), (2, 3, 9)),
        (lambda h: nc.adaptive_max_pool1d(h, 4, return_indices=True)[0], (2, 3, 9)),
        (lambda h: nc.adaptive_max_pool2d(h, (None, 2)), (2, 3, 4, 5)),
        (lambda h: nc.global_max_pool2d(h, keepdims=False), (2, 3, 4, 5)),
        (lambda h: nc.global_max_pool2d(h, return_indices=True)[0], (2, 3, 4, 5)),
        (lambda h: nc.dropout1d(h, 0.3, rng=1), (2, 3, 9)),
        (lambda h: nc.dropout2d(h, 0.3, rng=1, return_mask=True)[0], (2, 3, 4, 5)),
    ]
    for op, shape in ops:
        class Wrap(nn.Module):
            def __init__(self, shape):
                super().__init__()
                self.scale = nn.Parameter(np.full(shape[1:2] + (1,) * (len(shape) - 2), 1.5))

            def forward(self, x, op=op):
                return op(x * self.scale) * 2.0

        m = Wrap(shape)
        x = _distinct(shape, seed=5)
        out = m(x)
        assert getattr(out, "recorded_by", None) is not None
        assert gradcheck(m, x)


@given(pool1d_cases(), st.booleans())
def test_max_pool1d_kernel_equals_max_pool2d_on_the_image_view(case, nan):
    """The 1-D kernel against the 2-D op on (N, C, 1, L) (nbconv with itself: the 2-D op is
    checked against an explicit-loop reference in test_pool.py; this runs without torch)."""
    x, k, s, p, d, ceil_mode, layout = case
    if nan:
        x = x.copy()
        x.ravel()[:: max(1, x.size // 3)] = np.nan
    y, ind = nc.max_pool1d(_layout(x, layout), k, s, p, d, ceil_mode, return_indices=True)
    image = x.reshape(x.shape[:-1] + (1, x.shape[-1]))
    y2, i2 = nc.max_pool2d(image, (1, k), None if s is None else (1, s), (0, p), (1, d),
                           ceil_mode, return_indices=True)
    np.testing.assert_array_equal(y, y2.reshape(y.shape))
    np.testing.assert_array_equal(ind, i2.reshape(y.shape))
    np.testing.assert_array_equal(nc.max_pool1d(x, k, s, p, d, ceil_mode), y)


def test_indices_inside_a_recorded_forward():
    """The functional op with return_indices records; a layer returning (y, indices) cannot be
    followed by the recording (a module with several outputs) and says so."""

    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(8, 8, dtype=F64)

        def forward(self, x):
            y, _ = nc.max_pool1d(self.fc(x).reshape(2, 1, 8), 2, return_indices=True)
            return y.reshape(2, -1)

    class Layer(Functional):
        def __init__(self):
            super().__init__()
            self.pool = nn.MaxPool1d(2, return_indices=True)

        def forward(self, x):
            y, _ = self.pool(self.fc(x).reshape(2, 1, 8))
            return y.reshape(2, -1)

    x = _rng(27).standard_normal((2, 8))
    assert gradcheck(Functional(), x)
    with pytest.raises(TypeError, match="MaxPool1d, which returns several arrays"):
        nn.MSELoss()(Layer()(x), np.zeros((2, 4))).backward()

"""im2col + GEMM convolution drivers (nbconv.conv.im2col) against independent references.

The drivers are called directly with normalised arguments (the public ``conv2d`` validates and
calls them); references are in ``reference_im2col.py`` (never imports nbconv).
"""

import tracemalloc

import numpy as np
import pytest
from gradcheck import directional_check
from hypothesis import given
from hypothesis import strategies as st
from reference_im2col import (
    conv2d_backward_ref,
    conv2d_naive,
    conv2d_ref,
    im2col_ref,
    natural_out_size,
)
from spying import count_calls

import nbconv as nc
import nbconv._config as _config
from nbconv._blas import gemm_for
from nbconv._checks.conv import Geom
from nbconv.conv import im2col as _im2col
from nbconv.conv import plan as _plan
from nbconv.conv.im2col import col2im, conv2d_backward, conv2d_forward, im2col, plan_chunks

DTYPES = [np.float32, np.float64]


# ----------------------------------------------------------------------------- shape strategies
@st.composite
def geometries(draw, max_hw=9, max_n=3):
    """A random convolution geometry with per-axis kernel/stride/dilation/padding and an output
    size that may imply extra bottom/right padding (or cut the output short)."""
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sy, sx = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    pt, pl = draw(st.integers(0, 3)), draw(st.integers(0, 3))
    pb, pr = draw(st.integers(0, 3)), draw(st.integers(0, 3))
    # the input must be at least as large as the effective kernel minus the padding
    H = draw(st.integers(max(1, dh * (kh - 1) + 1 - pt - pb), max(1, dh * (kh - 1) + 1) + max_hw))
    W = draw(st.integers(max(1, dw * (kw - 1) + 1 - pl - pr), max(1, dw * (kw - 1) + 1) + max_hw))
    OH = natural_out_size(H, kh, sy, pt, pb, dh)
    OW = natural_out_size(W, kw, sx, pl, pr, dw)
    assert OH >= 1 and OW >= 1
    # sometimes ask for fewer outputs than the padding allows (the drivers compute a prefix)
    OH = draw(st.integers(max(1, OH - 1), OH))
    OW = draw(st.integers(max(1, OW - 1), OW))
    N = draw(st.integers(1, max_n))
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    Cg = draw(st.integers(1, 3))
    Fg = draw(st.integers(1, 3))
    depthwise = draw(st.booleans()) and groups > 1
    if depthwise:
        Cg = 1
    return dict(N=N, C=Cg * groups, F=Fg * groups, H=H, W=W, kh=kh, kw=kw, sy=sy, sx=sx, pt=pt,
                pl=pl, dh=dh, dw=dw, OH=OH, OW=OW, groups=groups)


def _geo_args(g):
    return (g["sy"], g["sx"], g["pt"], g["pl"], g["dh"], g["dw"])


def _geom(g):
    """The drivers' geometry object of a drawn layer (the bottom/right padding that gives its
    output size)."""
    pb = (g["OH"] - 1) * g["sy"] + g["dh"] * (g["kh"] - 1) + 1 - g["H"] - g["pt"]
    pr = (g["OW"] - 1) * g["sx"] + g["dw"] * (g["kw"] - 1) + 1 - g["W"] - g["pl"]
    return Geom(g["sy"], g["sx"], g["dh"], g["dw"], g["groups"], g["pt"], pb, g["pl"], pr,
                "zeros", g["OH"], g["OW"])


def _random_problem(g, dtype, seed, bias=True):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((g["N"], g["C"], g["H"], g["W"])).astype(dtype)
    w = rng.standard_normal((g["F"], g["C"] // g["groups"], g["kh"], g["kw"])).astype(dtype)
    b = rng.standard_normal(g["F"]).astype(dtype) if bias else None
    dy = rng.standard_normal((g["N"], g["F"], g["OH"], g["OW"])).astype(dtype)
    return x, w, b, dy


def _forward(x, w, b, g):
    """The driver on the path the rules give this layer (read now: tests patch them)."""
    y = np.full((x.shape[0], w.shape[0], g["OH"], g["OW"]), np.nan, x.dtype)
    N, C, H, W = x.shape
    path = _plan.im2col_forward_path(N, C, H, W, w.shape[0], g["kh"], g["kw"], g["OH"],
                                     g["OW"], g["sy"], g["sx"], g["pt"], g["pl"], g["groups"],
                                     x.itemsize, gemm_for(x.dtype) is not None)
    conv2d_forward(x, w, b, y, _geom(g), (path,))
    return y


def _backward(dy, x, w, g, want_dx=True, want_gb=True):
    dx = np.full(x.shape, np.nan, x.dtype) if want_dx else None
    gw = np.full(w.shape, np.nan, x.dtype)
    gb = np.full(w.shape[0], np.nan, x.dtype) if want_gb else None
    conv2d_backward(dy, x, w, dx, gw, gb, _geom(g))
    return dx, gw, gb


def _tol(dtype):
    return (2e-4, 2e-4) if dtype == np.float32 else (1e-11, 1e-11)


def _close(a, ref, dtype, what):
    rtol, atol = _tol(dtype)
    scale = max(1.0, float(np.max(np.abs(ref))) if ref.size else 1.0)
    np.testing.assert_allclose(a, ref, rtol=rtol, atol=atol * scale, err_msg=what)


# ------------------------------------------------------------------ (a) adjoint identity, (b) ref
@given(geometries(), st.integers(0, 2**31))
def test_adjoint_identity(g, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((g["N"], g["C"], g["H"], g["W"]))
    args = (g["kh"], g["kw"], *_geo_args(g), g["OH"], g["OW"])
    cols = im2col(x, *args)
    c = rng.standard_normal(cols.shape)
    back = col2im(c, x.shape, *args)
    assert back.shape == x.shape
    lhs = float(np.sum(cols * c))
    rhs = float(np.sum(x * back))
    assert abs(lhs - rhs) <= 1e-12 * max(1.0, np.abs(cols * c).sum())


@given(geometries(), st.sampled_from(DTYPES), st.integers(0, 2**31))
def test_im2col_matches_reference(g, dtype, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((g["N"], g["C"], g["H"], g["W"])).astype(dtype)
    args = (g["kh"], g["kw"], *_geo_args(g), g["OH"], g["OW"])
    cols = im2col(x, *args)
    assert cols.dtype == dtype
    np.testing.assert_array_equal(cols, im2col_ref(x, *args))


@given(geometries(max_hw=4, max_n=2), st.integers(0, 2**31))
def test_col2im_matches_reference_adjoint(g, seed):
    # col2im(c) == d/dx <im2col_ref(x), c>: the reference's transpose, built column by column
    rng = np.random.default_rng(seed)
    shape = (g["N"], g["C"], g["H"], g["W"])
    args = (g["kh"], g["kw"], *_geo_args(g), g["OH"], g["OW"])
    c = rng.standard_normal((g["N"], g["C"] * g["kh"] * g["kw"], g["OH"] * g["OW"]))
    expect = np.zeros(shape)
    e = np.zeros(shape)
    for idx in np.ndindex(*shape):
        e[idx] = 1.0
        expect[idx] = np.sum(im2col_ref(e, *args) * c)
        e[idx] = 0.0
    np.testing.assert_allclose(col2im(c, shape, *args), expect, rtol=1e-12, atol=1e-12)


def test_reference_agrees_with_naive_loops():
    # the sliced reference itself against the scalar definition
    rng = np.random.default_rng(1)
    for sy, sx, pt, pl, dh, dw, groups, OH, OW in [
        (1, 1, 0, 0, 1, 1, 1, 3, 4),
        (2, 1, 1, 2, 1, 2, 2, 3, 4),
        (1, 3, 2, 0, 2, 1, 2, 4, 2),
    ]:
        x = rng.standard_normal((2, 4, 5, 6))
        w = rng.standard_normal((4, 4 // groups, 2, 3))
        b = rng.standard_normal(4)
        np.testing.assert_allclose(
            conv2d_ref(x, w, b, sy, sx, pt, pl, dh, dw, groups, OH, OW),
            conv2d_naive(x, w, b, sy, sx, pt, pl, dh, dw, groups, OH, OW),
            rtol=1e-12, atol=1e-12,
        )


# ------------------------------------------------------------------------------ (c) the drivers
@given(geometries(), st.sampled_from(DTYPES), st.booleans(), st.integers(0, 2**31))
def test_forward_matches_reference(g, dtype, bias, seed):
    x, w, b, _ = _random_problem(g, dtype, seed, bias)
    y = _forward(x, w, b, g)
    assert y.dtype == dtype
    ref = conv2d_ref(x, w, b, *_geo_args(g), g["groups"], g["OH"], g["OW"])
    _close(y, ref, dtype, "forward")


@given(geometries(), st.sampled_from(DTYPES), st.integers(0, 2**31))
def test_backward_matches_reference(g, dtype, seed):
    x, w, _, dy = _random_problem(g, dtype, seed, bias=False)
    dx, gw, gb = _backward(dy, x, w, g)
    assert dx.dtype == gw.dtype == gb.dtype == dtype
    rdx, rgw, rgb = conv2d_backward_ref(dy, x, w, *_geo_args(g), g["groups"])
    _close(dx, rdx, dtype, "dx")
    _close(gw, rgw, dtype, "dweight")
    _close(gb, rgb, dtype, "dbias")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "name, geo",
    [
        ("1x1", dict(N=2, C=5, F=3, H=4, W=7, kh=1, kw=1, sy=1, sx=1, pt=0, pl=0, dh=1, dw=1,
                     groups=1)),
        ("kernel=input", dict(N=2, C=2, F=3, H=5, W=4, kh=5, kw=4, sy=1, sx=1, pt=0, pl=0,
                              dh=1, dw=1, groups=1)),
        ("stride not dividing", dict(N=1, C=3, F=2, H=10, W=11, kh=3, kw=2, sy=3, sx=4, pt=1,
                                     pl=0, dh=1, dw=2, groups=1)),
        ("depthwise", dict(N=3, C=4, F=8, H=7, W=6, kh=3, kw=3, sy=1, sx=2, pt=1, pl=1, dh=2,
                           dw=1, groups=4)),
        ("lenet c1", dict(N=2, C=1, F=6, H=28, W=28, kh=5, kw=5, sy=1, sx=1, pt=0, pl=0, dh=1,
                          dw=1, groups=1)),
        ("padding only taps", dict(N=1, C=2, F=2, H=2, W=3, kh=3, kw=3, sy=1, sx=1, pt=4, pl=3,
                                   dh=1, dw=1, groups=2)),
    ],
)
def test_named_cases(name, geo, dtype):
    g = dict(geo)
    pb = g["kh"] // 2 if name != "padding only taps" else 0
    pr = g["kw"] // 2 if name != "padding only taps" else 0
    g["OH"] = natural_out_size(g["H"], g["kh"], g["sy"], g["pt"], pb, g["dh"])
    g["OW"] = natural_out_size(g["W"], g["kw"], g["sx"], g["pl"], pr, g["dw"])
    x, w, b, dy = _random_problem(g, dtype, 7)
    ref = conv2d_ref(x, w, b, *_geo_args(g), g["groups"], g["OH"], g["OW"])
    _close(_forward(x, w, b, g), ref, dtype, name)
    dx, gw, gb = _backward(dy, x, w, g)
    rdx, rgw, rgb = conv2d_backward_ref(dy, x, w, *_geo_args(g), g["groups"])
    _close(dx, rdx, dtype, name + " dx")
    _close(gw, rgw, dtype, name + " dweight")
    _close(gb, rgb, dtype, name + " dbias")


def test_backward_skips_dx_and_dbias():
    g = dict(N=2, C=4, F=4, H=6, W=5, kh=3, kw=2, sy=2, sx=1, pt=1, pl=1, dh=1, dw=1, groups=2,
             OH=3, OW=6)
    x, w, _, dy = _random_problem(g, np.float64, 3, bias=False)
    dx, gw, gb = _backward(dy, x, w, g, want_dx=False, want_gb=False)
    assert dx is None and gb is None
    _, rgw, _ = conv2d_backward_ref(dy, x, w, *_geo_args(g), g["groups"])
    _close(gw, rgw, np.float64, "dweight without dx")


def test_nan_propagates_to_affected_outputs_only():
    g = dict(N=1, C=2, F=3, H=8, W=9, kh=3, kw=2, sy=2, sx=1, pt=1, pl=1, dh=1, dw=2, groups=1,
             OH=4, OW=8)
    x, w, b, _ = _random_problem(g, np.float64, 5)
    x[0, 1, 3, 4] = np.nan
    y = _forward(x, w, b, g)
    hit = np.zeros_like(x)
    hit[0, 1, 3, 4] = 1.0
    touched = conv2d_ref(hit, np.ones_like(w), None, *_geo_args(g), 1, g["OH"], g["OW"]) > 0
    assert touched.any() and (~touched).any()
    np.testing.assert_array_equal(np.isnan(y), touched)


def test_matches_torch():
    torch = pytest.importorskip("torch")
    g = dict(N=2, C=6, F=4, H=11, W=9, kh=3, kw=2, sy=2, sx=1, pt=2, pl=1, dh=2, dw=3, groups=2)
    g["OH"] = natural_out_size(g["H"], g["kh"], g["sy"], 2, 2, g["dh"])
    g["OW"] = natural_out_size(g["W"], g["kw"], g["sx"], 1, 1, g["dw"])
    x, w, b, dy = _random_problem(g, np.float64, 11)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ty = torch.nn.functional.conv2d(tx, tw, tb, stride=(2, 1), padding=(2, 1), dilation=(2, 3),
                                    groups=2)
    ty.backward(torch.tensor(dy))
    np.testing.assert_allclose(_forward(x, w, b, g), ty.detach().numpy(), rtol=1e-10, atol=1e-10)
    dx, gw, gb = _backward(dy, x, w, g)
    for ours, theirs in ((dx, tx.grad), (gw, tw.grad), (gb, tb.grad)):
        np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-10, atol=1e-10)


# ------------------------------------------------------------------------------- (d) chunking
class _AllocSpy:
    """Stands in for the ``np`` module inside ``_im2col``: records the size of every array it
    allocates (including matmul results without ``out=``)."""

    def __init__(self):
        self.sizes = []

    def __getattr__(self, name):
        return getattr(np, name)

    def _rec(self, a):
        self.sizes.append((a.nbytes, a.shape))
        return a

    def empty(self, *a, **k):
        return self._rec(np.empty(*a, **k))

    def zeros(self, *a, **k):
        return self._rec(np.zeros(*a, **k))

    def ones(self, *a, **k):
        return self._rec(np.ones(*a, **k))

    def full(self, *a, **k):
        return self._rec(np.full(*a, **k))

    def empty_like(self, *a, **k):
        return self._rec(np.empty_like(*a, **k))

    def zeros_like(self, *a, **k):
        return self._rec(np.zeros_like(*a, **k))

    def ascontiguousarray(self, a, *args, **k):
        r = np.ascontiguousarray(a, *args, **k)
        return self._rec(r) if not np.shares_memory(r, a) else r

    def matmul(self, *a, **k):
        r = np.matmul(*a, **k)
        return r if k.get("out") is not None else self._rec(r)

    def dot(self, *a, **k):
        r = np.dot(*a, **k)
        return r if k.get("out") is not None else self._rec(r)


CHUNK_GEO = dict(N=3, C=4, F=6, H=9, W=10, kh=3, kw=3, sy=1, sx=1, pt=1, pl=1, dh=1, dw=1,
                 groups=2, OH=9, OW=10)


def _bound_for(g, itemsize, n_cols):
    """The byte bound that lets ``n_cols`` output pixels' columns fit in one buffer."""
    rows = max(g["C"] * g["kh"] * g["kw"], g["F"])
    return rows * itemsize * n_cols


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "mode, n_cols",
    [("images", 2 * 90), ("images", 90), ("rows", 4 * 10), ("rows", 10), ("pixels", 3),
     ("pixels", 1)],
)
def test_chunking_bounded_and_same_result(monkeypatch, mode, n_cols, dtype):
    g = CHUNK_GEO
    x, w, b, dy = _random_problem(g, dtype, 21)
    y_full = _forward(x, w, b, g)
    grads_full = _backward(dy, x, w, g)

    itemsize = np.dtype(dtype).itemsize
    bound = _bound_for(g, itemsize, n_cols)
    monkeypatch.setattr(_config, "IM2COL_MAX_BYTES", bound)
    rows = max(g["C"] * g["kh"] * g["kw"], g["F"])
    got_mode, chunks, _ = plan_chunks(g["N"], g["OH"], g["OW"], rows, itemsize)
    assert got_mode == mode and len(chunks) > 1

    spy = _AllocSpy()
    monkeypatch.setattr(_im2col, "np", spy)
    y = _forward(x, w, b, g)
    dx, gw, gb = _backward(dy, x, w, g)
    assert spy.sizes, "the spy saw no allocation at all"
    # the weight-gradient partial sum (G, F // G, C // G * kh * kw) is not a column buffer
    gw_shape = (g["groups"], g["F"] // g["groups"], w[0].size)
    cols_sizes = [nbytes for nbytes, shape in spy.sizes if shape != gw_shape]
    assert cols_sizes and max(cols_sizes) <= bound, (spy.sizes, bound)

    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(y, y_full, rtol=rtol, atol=rtol)
    for a, ref in zip((dx, gw, gb), grads_full):
        np.testing.assert_allclose(a, ref, rtol=rtol, atol=rtol * 10)
    ref = conv2d_ref(x, w, b, *_geo_args(g), g["groups"], g["OH"], g["OW"])
    _close(y, ref, dtype, mode)
    rdx, rgw, _ = conv2d_backward_ref(dy, x, w, *_geo_args(g), g["groups"])
    _close(dx, rdx, dtype, mode + " dx")
    _close(gw, rgw, dtype, mode + " dweight")


def test_chunking_peak_memory_is_bounded(monkeypatch):
    # independent of how the driver allocates: tracemalloc sees every numpy data buffer
    g = dict(CHUNK_GEO, N=8, H=24, W=20, OH=24, OW=20)
    x, w, b, dy = _random_problem(g, np.float64, 2)
    dx, gw, gb = (np.empty_like(x), np.empty_like(w), np.empty_like(b))
    y = np.empty((g["N"], g["F"], g["OH"], g["OW"]))
    full_cols = g["N"] * g["C"] * g["kh"] * g["kw"] * g["OH"] * g["OW"] * 8
    bound = _bound_for(g, 8, 2 * g["OW"])  # row chunks of 2 rows
    assert bound * 50 < full_cols
    monkeypatch.setattr(_config, "IM2COL_MAX_BYTES", bound)
    conv2d_forward(x, w, b, y, _geom(g))  # compile outside the trace
    conv2d_backward(dy, x, w, dx, gw, gb, _geom(g))
    tracemalloc.start()
    try:
        conv2d_forward(x, w, b, y, _geom(g))
        conv2d_backward(dy, x, w, dx, gw, gb, _geom(g))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # at most three column-sized buffers plus the weight-sized partial sum and Python objects
    assert peak <= 3 * bound + w.nbytes + 64 * 1024 < full_cols / 4, (peak, bound, full_cols)


@given(geometries(max_hw=6), st.sampled_from(DTYPES), st.integers(1, 40), st.integers(0, 2**31))
def test_chunking_sweep(g, dtype, n_cols, seed):
    x, w, b, dy = _random_problem(g, dtype, seed)
    itemsize = np.dtype(dtype).itemsize
    old = _config.IM2COL_MAX_BYTES
    _config.IM2COL_MAX_BYTES = _bound_for(g, itemsize, n_cols)
    try:
        y = _forward(x, w, b, g)
        dx, gw, gb = _backward(dy, x, w, g)
    finally:
        _config.IM2COL_MAX_BYTES = old
    _close(y, conv2d_ref(x, w, b, *_geo_args(g), g["groups"], g["OH"], g["OW"]), dtype, "fwd")
    rdx, rgw, rgb = conv2d_backward_ref(dy, x, w, *_geo_args(g), g["groups"])
    _close(dx, rdx, dtype, "dx")
    _close(gw, rgw, dtype, "dweight")
    _close(gb, rgb, dtype, "dbias")


def test_plan_chunks_covers_output_once():
    for N, OH, OW, n_cols in [(5, 3, 4, 24), (5, 3, 4, 12), (2, 5, 4, 9), (2, 3, 7, 3)]:
        _, chunks, max_cols = plan_chunks(N, OH, OW, 1, 1, max_bytes=n_cols)
        seen = np.zeros((N, OH, OW), int)
        for n0, nb, r0, nr, j0, nj in chunks:
            assert nb * nr * nj <= max_cols <= n_cols
            seen[n0 : n0 + nb, r0 : r0 + nr, j0 : j0 + nj] += 1
        assert (seen == 1).all()


# ------------------------------------------------------------------- (e) finite differences
@pytest.mark.parametrize("n_cols", [None, 7, 25])
@pytest.mark.parametrize(
    "geo",
    [
        dict(N=2, C=4, F=6, H=7, W=6, kh=3, kw=2, sy=2, sx=1, pt=1, pl=2, dh=1, dw=2, groups=2),
        dict(N=1, C=3, F=3, H=6, W=8, kh=2, kw=3, sy=1, sx=3, pt=0, pl=1, dh=2, dw=1, groups=3),
    ],
)
def test_gradcheck(monkeypatch, geo, n_cols):
    g = dict(geo)
    g["OH"] = natural_out_size(g["H"], g["kh"], g["sy"], g["pt"], 1, g["dh"])
    g["OW"] = natural_out_size(g["W"], g["kw"], g["sx"], g["pl"], 2, g["dw"])
    if n_cols is not None:
        monkeypatch.setattr(_config, "IM2COL_MAX_BYTES", _bound_for(g, 8, n_cols))
    x, w, b, dy = _random_problem(g, np.float64, 4)
    dx, gw, gb = _backward(dy, x, w, g)
    directional_check(lambda x, w, b: _forward(x, w, b, g), [x, w, b], dy, [dx, gw, gb])


# ------------------------------------------------------------------------ (e) the fused forward
@pytest.mark.parametrize("band_bytes", [1, 10**9])  # one output row per task; all rows
@given(geometries(), st.sampled_from(DTYPES), st.booleans(), st.integers(0, 2**31))
def test_fused_forward_matches_reference_and_chunked_path(band_bytes, g, dtype, bias, seed):
    """Groups 1 with small weights take the fused pass (columns built and multiplied per
    task); forcing the chunked pass instead gives the same result."""
    x, w, b, _ = _random_problem(g, dtype, seed, bias)
    old = (_plan.FUSED_COLS_BYTES, _plan.FUSED_MAX_WEIGHT_BYTES)
    try:
        _plan.FUSED_COLS_BYTES = max(band_bytes, g["C"] // g["groups"] * g["kh"] * g["kw"]
                                        * g["OW"] * np.dtype(dtype).itemsize)
        y = _forward(x, w, b, g)
        _plan.FUSED_MAX_WEIGHT_BYTES = 0  # the chunked pass
        y_chunked = _forward(x, w, b, g)
    finally:
        _plan.FUSED_COLS_BYTES, _plan.FUSED_MAX_WEIGHT_BYTES = old
    ref = conv2d_ref(x, w, b, *_geo_args(g), g["groups"], g["OH"], g["OW"])
    _close(y, ref, dtype, "fused forward")
    _close(y_chunked, ref, dtype, "chunked forward")


def test_fused_band_respects_the_bounds(monkeypatch):
    assert _plan.fused_band(10, 7, 5, 4) == 7  # everything fits: one band per image
    monkeypatch.setattr(_plan, "FUSED_COLS_BYTES", 10 * 5 * 4 * 3)
    assert _plan.fused_band(10, 7, 5, 4) == 3
    monkeypatch.setattr(_config, "IM2COL_MAX_BYTES", 10 * 5 * 4 * 2)
    assert _plan.fused_band(10, 7, 5, 4) == 2
    monkeypatch.setattr(_config, "IM2COL_MAX_BYTES", 10 * 5 * 4 - 1)
    assert _plan.fused_band(10, 7, 5, 4) == 0  # one row does not fit: chunked pass


def test_fused_forward_is_planned_for_groups_1_only(monkeypatch):
    """The plan takes the fused path for groups 1 (and not for groups 2), and the engine runs
    the fused kernel exactly when the plan says so."""
    from nbconv.conv import explain

    calls = count_calls(monkeypatch, _im2col, "_conv2d_im2col_fused_fwd")
    for groups, path, expected in ((1, "fused", 1), (2, "columns", 1)):
        # 20 x 20 outputs: a band holds >= FUSED_MIN_COLS pixels
        g = dict(CHUNK_GEO, groups=groups, H=20, W=20, OH=20, OW=20)
        x, w, b, _ = _random_problem(g, np.float64, 3)
        plan = explain(x.shape, w.shape, padding=1, groups=groups, algorithm="im2col",
                       dtype=np.float64).forward
        assert plan.kernels == (path,)
        y = nc.conv2d(x, w, b, padding=1, groups=groups, algorithm="im2col")
        assert len(calls) == expected
        ref = conv2d_ref(x, w, b, 1, 1, 1, 1, 1, 1, groups, 20, 20)
        _close(y, ref, np.float64, f"{path} forward")


@pytest.mark.parametrize("stride, dilation", [(2, 1), (3, 1), (4, 2), ((2, 3), (1, 2))])
@pytest.mark.parametrize("W", [13, 16])
def test_fused_forward_strided_phases(stride, dilation, W):
    """Strided convolutions read the input split into stride phases (contiguous copies);
    widths that the stride does not divide leave a short last phase."""
    sy, sx = (stride, stride) if isinstance(stride, int) else stride
    dh, dw = (dilation, dilation) if isinstance(dilation, int) else dilation
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 3, 11, W))
    w = rng.standard_normal((5, 3, 3, 4))
    b = rng.standard_normal(5)
    pt, pl = 2, 3
    OH = (11 + 2 * pt - dh * 2 - 1) // sy + 1
    OW = (W + 2 * pl - dw * 3 - 1) // sx + 1
    y = np.empty((2, 5, OH, OW))
    geom = Geom(sy, sx, dh, dw, 1, pt, pt, pl, pl, "zeros", OH, OW)
    conv2d_forward(x, w, b, y, geom, ("fused",))
    ref = conv2d_ref(x, w, b, sy, sx, pt, pl, dh, dw, 1, OH, OW)
    _close(y, ref, np.float64, "strided fused forward")


def test_phase_split():
    from nbconv.kernels.conv.im2col import _conv2d_im2col_phases

    x = np.arange(2 * 7, dtype=np.float64).reshape(1, 1, 2, 7)
    xph = np.full((1, 1, 2, 3, 3), -1.0)
    _conv2d_im2col_phases(x, xph)
    np.testing.assert_array_equal(xph[0, 0, 0, 0], [0, 3, 6])
    np.testing.assert_array_equal(xph[0, 0, 1, 1], [8, 11, -1])  # past the row: untouched
    np.testing.assert_array_equal(xph[0, 0, 1, 2], [9, 12, -1])


@pytest.mark.parametrize("batched_below", [0, 10**9])  # per-image GEMMs; one GEMM per chunk
@given(geometries(), st.sampled_from(DTYPES), st.booleans(), st.integers(0, 2**31))
def test_chunked_forward_both_product_layouts(batched_below, g, dtype, bias, seed):
    """The chunked forward pass (fused pass off) with one GEMM per image written in place,
    and with one GEMM per chunk copied into place (small images), match the reference."""
    x, w, b, _ = _random_problem(g, dtype, seed, bias)
    old = (_plan.FUSED_MAX_WEIGHT_BYTES, _plan.BATCHED_BELOW)
    try:
        _plan.FUSED_MAX_WEIGHT_BYTES = 0
        _plan.BATCHED_BELOW = batched_below
        y = _forward(x, w, b, g)
    finally:
        _plan.FUSED_MAX_WEIGHT_BYTES, _plan.BATCHED_BELOW = old
    ref = conv2d_ref(x, w, b, *_geo_args(g), g["groups"], g["OH"], g["OW"])
    _close(y, ref, dtype, "chunked forward")


@pytest.mark.parametrize("narrow", [0, 10**9])  # row-parallel columns; per-image columns
def test_both_column_kernels_for_whole_images(monkeypatch, narrow):
    """Whole-image chunks build their columns with either kernel; same gradients."""
    monkeypatch.setattr(_plan, "NARROW_ROWS", narrow)
    g = dict(CHUNK_GEO, groups=1, sy=2, sx=2, OH=5, OW=5)
    x, w, b, dy = _random_problem(g, np.float64, 4)
    dx, gw, gb = _backward(dy, x, w, g)
    rdx, rgw, rgb = conv2d_backward_ref(dy, x, w, *_geo_args(g), g["groups"])
    _close(dx, rdx, np.float64, "dx")
    _close(gw, rgw, np.float64, "dweight")


@pytest.mark.parametrize("H, W", [(3, 5), (4, 4), (5, 2)])
def test_patch_layers_with_bottom_right_padding(H, W):
    """Kernel = stride with TensorFlow's "same" padding puts the padding at the bottom/right
    only: the windows past the edge read zeros, which the patch rearrangement must not be
    used for (it read past the input)."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 4, H, W))
    w = rng.standard_normal((5, 4, 2, 2))
    dy_shape = (3, 5, -(-H // 2), -(-W // 2))
    y = nc.conv2d(x, w, stride=2, padding="same", algorithm="im2col")
    pad = ((0, 0), (0, 0), (0, 2 * dy_shape[2] - H), (0, 2 * dy_shape[3] - W))
    want = conv2d_ref(np.pad(x, pad), w, None, 2, 2, 0, 0, 1, 1, 1, *dy_shape[2:])
    _close(y, want, np.float64, "patch forward with padding")
    dy = rng.standard_normal(dy_shape)
    dx, _, _ = nc.conv2d_backward(dy, x, w, stride=2, padding="same", algorithm="im2col")
    dx_ref, _, _ = nc.conv2d_backward(dy, x, w, stride=2, padding="same", algorithm="direct")
    _close(dx, dx_ref, np.float64, "patch backward with padding")

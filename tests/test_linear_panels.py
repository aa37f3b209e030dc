"""Products on weights packed into panels (``nbconv/kernels/panels.py``): the linear kernel
``_linear_panels`` (a planned network's classifier at small batches) against an explicit
float64 sum, the rule that picks panels, and compiled networks whose linear and tap-GEMM
layers run on them (the tap-GEMM kernel itself: ``test_tapgemm.py``)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_linear import linear_ref

import nbconv as nc
from nbconv.functional.linear import pack_panels, panels_apply
from nbconv.kernels import linear as _k
from nbconv.kernels import panels as _pk
from nbconv.kernels._ir import lanes

TOL = {np.float32: 1e-5, np.float64: 1e-12}


def _panels(x, w, b, relu=False):
    y = np.full((x.shape[0], w.shape[0]), np.nan, dtype=x.dtype)
    _k._linear_panels(x, pack_panels(w), np.zeros(1, x.dtype) if b is None else b,
                      b is not None, relu, y)
    return y


def _close(got, want, dtype):
    assert got.shape == want.shape
    if want.size:
        scale = max(1.0, float(np.abs(want).max()))
        assert np.abs(got - want).max() <= TOL[dtype] * scale * 10


@given(dtype=st.sampled_from([np.float32, np.float64]), M=st.integers(0, 3 * _pk.PANEL_ROWS + 1),
       K=st.sampled_from([0, 1, 7, _pk.PANEL_TERMS - 1, _pk.PANEL_TERMS + 5]),
       F=st.integers(1, 5 * 16 + 3), bias=st.booleans(), relu=st.booleans(),
       seed=st.integers(0, 2**16))
@settings(max_examples=60, deadline=None)
def test_panels_match_the_definition(dtype, M, K, F, bias, relu, seed):
    """Whole and partial blocks of rows, whole and partial panels, reductions shorter and
    longer than one pass over a panel (and none at all), with and without the bias and the
    ReLU, both dtypes."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((M, K)).astype(dtype)
    w = rng.standard_normal((F, K)).astype(dtype)
    b = rng.standard_normal(F).astype(dtype) if bias else None
    want = linear_ref(x, w, b)
    if relu:
        want = np.maximum(want, 0)
    _close(_panels(x, w, b, relu), want, dtype)


def test_panels_keep_nan_and_inf_where_they_belong():
    """A NaN in a row of ``x`` reaches exactly that row's outputs (and survives the ReLU); an
    infinite weight reaches its output feature in every row."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2 * _pk.PANEL_ROWS + 3, 300)).astype(np.float32)
    w = rng.standard_normal((100, 300)).astype(np.float32)
    x[5, 17] = np.nan
    w[40, 3] = np.inf
    x[:, 3] = np.abs(x[:, 3]) + 1  # a positive factor: +inf, not NaN, in column 40
    y = _panels(x, w, None, relu=True)
    want = np.maximum(linear_ref(x, w), 0)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(y), np.isinf(want))
    assert np.isnan(y[5]).all() and np.isinf(np.delete(y[:, 40], 5)).all()
    fin = np.isfinite(want)
    _close(y[fin], want[fin], np.float32)


def test_packed_layout():
    """Panel ``p`` holds filters ``p*FB ... p*FB + FB - 1`` as columns, zeros past ``F``."""
    w = np.arange(5 * 3, dtype=np.float64).reshape(5, 3)
    P = pack_panels(w)
    FB = _pk.PANEL_VECTORS * lanes(8)
    assert P.shape == (1, 3, FB) and P.flags.c_contiguous
    np.testing.assert_array_equal(P[0, :, :5], w.T)
    assert not P[0, :, 5:].any()


@pytest.mark.parametrize("vector_bytes, rows_limit, long_limit", [(64, 256, 1024), (32, 64, 64)])
def test_panel_rule_of_each_isa(vector_bytes, rows_limit, long_limit):
    """Few rows (a limit per vector width, raised for long reductions with AVX-512) and at
    least two panels of outputs."""
    two_panels = 2 * _pk.PANEL_VECTORS * vector_bytes // 4
    assert panels_apply(32, 4096, 100, vector_bytes)
    assert panels_apply(rows_limit, two_panels, 511, vector_bytes)
    assert not panels_apply(rows_limit + 1, 4096, 511, vector_bytes)
    assert panels_apply(long_limit, 4096, 512, vector_bytes)
    assert not panels_apply(long_limit + 1, 4096, 512, vector_bytes)
    assert not panels_apply(32, two_panels - 1, 4096, vector_bytes)
    assert not panels_apply(0, 4096, 4096, vector_bytes)
    assert _pk.panel_rows(vector_bytes) == (8 if vector_bytes == 64 else 4)


def test_compiled_classifier_runs_on_panels():
    """A classifier's wide layer runs on packed panels at batch 32 and 1 (``explain`` says
    so, and not for its 10 outputs: fewer than two panels) and gives the plain forward's
    result."""
    model = nc.nn.Sequential(nc.nn.Linear(300, 256), nc.nn.ReLU(), nc.nn.Linear(256, 10))
    model.eval()
    cm = nc.compile(model, (32, 300))
    x = np.random.default_rng(1).standard_normal((32, 300)).astype(np.float32)
    with nc.no_grad():
        want = model(x)
    for n in (32, 1):
        assert cm.explain(n).count("linear (packed panels)") == 1
        _close(cm(x[:n]), want[:n], np.float32)


@pytest.mark.parametrize("batch", [1, 2])
def test_compiled_tapgemm_layers_run_on_panels(batch):
    """NiN's tap-GEMM layers (1x1 and wider) run on packed panels at small batches
    (``explain`` says so) and give the plain forward's result; a NaN in the input ends where
    the plain forward puts it."""
    from nbconv import models
    model = models.nin(in_channels=3)
    model.eval()
    cm = nc.compile(model, (batch, 3, 32, 32))
    assert cm.explain().count("conv2d tapgemm (packed panels)") >= 4
    x = np.random.default_rng(2).standard_normal((batch, 3, 32, 32)).astype(np.float32)
    with nc.no_grad():
        want = model(x)
    _close(cm(x), want, np.float32)
    x[0, 1, 5, 7] = np.nan
    with nc.no_grad():
        want = model(x)
    got = cm(x)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    fin = np.isfinite(want)
    _close(got[fin], want[fin], np.float32)

"""The size-dependent code paths give the same results: serial twins of the memory-bound
kernels against their threaded versions, and single-threaded BLAS products against NumPy's."""

from __future__ import annotations

import numpy as np
import pytest

import nbconv as nc
from nbconv import _blas, _config


def _both_paths(monkeypatch, fn):
    """``fn()`` once with every kernel threaded and once with every kernel serial."""
    monkeypatch.setattr(_config, "SERIAL_BELOW", 0)
    threaded = fn()
    monkeypatch.setattr(_config, "SERIAL_BELOW", 1 << 62)
    serial = fn()
    return threaded, serial


@pytest.mark.parametrize("name", ["relu", "leaky_relu", "sigmoid", "tanh"])
def test_activation_paths_agree(monkeypatch, name):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 5, 7, 11)).astype(np.float32)
    x[0, 0, 0, :3] = [np.nan, np.inf, -np.inf]
    dy = rng.standard_normal(x.shape).astype(np.float32)
    fwd = getattr(nc, name)
    bwd = getattr(nc, name + "_backward")

    def run():
        y = fwd(x)
        return y, bwd(dy, x if name in ("relu", "leaky_relu") else y)

    (y1, dx1), (y2, dx2) = _both_paths(monkeypatch, run)
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_array_equal(dx1, dx2)
    ref = {"relu": np.where((x > 0) | np.isnan(x), x, 0),
           "leaky_relu": np.where(x > 0, x, 0.01 * x),
           "sigmoid": 1 / (1 + np.exp(-x.astype(np.float64))),
           "tanh": np.tanh(x.astype(np.float64))}[name]
    np.testing.assert_allclose(y1, ref, rtol=1e-6, atol=1e-7)


def test_dropout_paths_agree(monkeypatch):
    x = np.random.default_rng(1).standard_normal((4, 6, 5)).astype(np.float64)
    (y1, m1), (y2, m2) = _both_paths(
        monkeypatch, lambda: nc.dropout(x, 0.3, rng=np.random.default_rng(7), return_mask=True))
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_array_equal(y1, x * m1)


def test_max_pool_paths_agree(monkeypatch):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 8, 10))
    x[0, 1, 2, 3] = np.nan

    def run():
        y, idx = nc.max_pool2d(x, 2, return_indices=True)
        dx = nc.max_pool2d_backward(np.ones_like(y), idx, x.shape)
        return y, idx, dx

    (y1, i1, d1), (y2, i2, d2) = _both_paths(monkeypatch, run)
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_array_equal(d1, d2)
    # independent reference: explicit windows
    ref = x.reshape(2, 3, 4, 2, 5, 2).transpose(0, 1, 2, 4, 3, 5).reshape(2, 3, 4, 5, 4)
    nan = np.isnan(ref).any(-1)
    np.testing.assert_array_equal(np.isnan(y1), nan)
    np.testing.assert_array_equal(y1[~nan], ref.max(-1)[~nan])
    assert d1.sum() == y1.size


def test_linear_bias_paths_agree(monkeypatch):
    rng = np.random.default_rng(3)
    x, w, b = rng.standard_normal((5, 4, 7)), rng.standard_normal((3, 7)), rng.standard_normal(3)
    dy = rng.standard_normal((5, 4, 3))
    (y1, g1), (y2, g2) = _both_paths(
        monkeypatch, lambda: (nc.linear(x, w, b), nc.linear_backward(dy, x, w)))
    np.testing.assert_allclose(y1, y2, rtol=1e-14)
    np.testing.assert_allclose(y1, x @ w.T + b, rtol=1e-12)
    for a, c in zip(g1, g2):
        np.testing.assert_allclose(a, c, rtol=1e-12)
    np.testing.assert_allclose(g1[2], dy.sum(axis=(0, 1)), rtol=1e-12)


@pytest.mark.parametrize("small", [True, False])
def test_blas_matmul_restores_threads(monkeypatch, small):
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal((2, 17, 9)), rng.standard_normal((2, 9, 5))
    monkeypatch.setattr(_blas, "SMALL_MACS", 1 << 40 if small else 0)
    libs = _blas._blas_controllers()
    before = [lib.get_num_threads() for lib in libs]
    out = np.empty((2, 17, 5))
    assert _blas.matmul(a, b, out) is out
    np.testing.assert_allclose(out, np.einsum("nij,njk->nik", a, b), rtol=1e-12)
    assert [lib.get_num_threads() for lib in libs] == before


def test_blas_matmul_restores_threads_on_error():
    libs = _blas._blas_controllers()
    before = [lib.get_num_threads() for lib in libs]
    with pytest.raises(ValueError):
        _blas.matmul(np.ones((2, 3)), np.ones((3, 4)), np.empty((2, 5)))
    assert [lib.get_num_threads() for lib in libs] == before

"""nbconv's own matrix product (nbconv.kernels.gemm_vector) against numpy.matmul, the rule that
chooses it, and whole layers run through it."""

from __future__ import annotations

import functools
import itertools

import numpy as np
import pytest

import nbconv as nc
from nbconv import _blas
from nbconv.kernels import gemm_vector
from nbconv.kernels.gemm import VECTOR_ALWAYS, VECTOR_WHERE_FASTER
from nbconv.kernels.gemm_vector import _NO_TRANS, _TRANS, _vector_gemm
from nbconv.kernels.gemm_vector import orientation as _orientation

CODE = {False: _NO_TRANS, True: _TRANS}


def _product(ta, tb, m, n, k, dtype, alpha, beta, how, rng, c_fill=None, ld_pad=(0, 0, 3)):
    """Run ``_vector_gemm`` on random operands stored with the given transposes inside wider
    rows (row pitch larger than the matrix), return (C, the float64 reference, C before)."""
    a_rows, a_cols = (k, m) if ta else (m, k)
    b_rows, b_cols = (n, k) if tb else (k, n)
    a = rng.standard_normal((a_rows, a_cols + ld_pad[0])).astype(dtype)
    b = rng.standard_normal((b_rows, b_cols + ld_pad[1])).astype(dtype)
    c = rng.standard_normal((m, n + ld_pad[2])).astype(dtype)
    if c_fill is not None:
        c[...] = c_fill
    before = c.copy()
    _vector_gemm(CODE[ta], CODE[tb], m, n, k, dtype(alpha), a.ctypes.data, a.shape[1],
                 b.ctypes.data, b.shape[1], dtype(beta), c.ctypes.data, c.shape[1], how)
    op_a = (a[:, :a_cols].T if ta else a[:, :a_cols]).astype(np.float64)
    op_b = (b[:, :b_cols].T if tb else b[:, :b_cols]).astype(np.float64)
    want = alpha * (op_a @ op_b)
    if beta:
        want += beta * before[:, :n]
    return c, want, before


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("how", [0, 1, 2])
@pytest.mark.parametrize("ta, tb", list(itertools.product([False, True], repeat=2)))
@pytest.mark.parametrize("m, n, k", [(1, 1, 1), (7, 33, 5), (6, 32, 256), (13, 70, 300),
                                     (50, 3, 513), (3, 50, 17), (64, 10, 700)])
def test_matches_numpy(dtype, how, ta, tb, m, n, k):
    """Every transpose case, both orientations and the cost model's choice, row and column
    tails, reductions longer than one packed panel (256 terms), padded row pitches, alpha and
    beta; nothing is written past the n columns of C."""
    rng = np.random.default_rng(m * 1000 + n * 10 + k)
    for beta in (0.0, 1.0, -0.5):
        c, want, before = _product(ta, tb, m, n, k, dtype, 1.5, beta, how, rng)
        tol = 2e-5 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(c[:, :n], want, rtol=tol, atol=tol * np.sqrt(k))
        np.testing.assert_array_equal(c[:, n:], before[:, n:])


def test_beta_zero_does_not_read_c():
    """beta == 0 overwrites C as BLAS does: NaN already in C does not leak into the result."""
    rng = np.random.default_rng(1)
    for how in (1, 2):
        c, want, _ = _product(False, True, 20, 40, 30, np.float32, 1.0, 0.0, how, rng,
                              c_fill=np.nan)
        assert np.isfinite(c[:, :40]).all()
        np.testing.assert_allclose(c[:, :40], want, rtol=1e-5, atol=1e-5)


def test_non_finite_inputs_propagate_like_numpy():
    """NaN and inf in the operands reach exactly the outputs numpy.matmul puts them in."""
    rng = np.random.default_rng(2)
    m, n, k = 14, 40, 20
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    a[3, 5] = np.nan
    b[7, 11] = np.inf
    b[2, 30] = -np.inf
    for how in (1, 2):
        c = np.zeros((m, n), np.float32)
        _vector_gemm(_NO_TRANS, _NO_TRANS, m, n, k, np.float32(1), a.ctypes.data, k,
                     b.ctypes.data, n, np.float32(0), c.ctypes.data, n, how)
        want = a @ b
        np.testing.assert_array_equal(np.isnan(c), np.isnan(want))
        np.testing.assert_array_equal(np.isposinf(c), np.isposinf(want))
        finite = np.isfinite(want)
        np.testing.assert_allclose(c[finite], want[finite], rtol=1e-5, atol=1e-5)


def test_empty_reduction_scales_c():
    """k == 0: C = beta * C (an empty sum), and m or n == 0 writes nothing."""
    c = np.full((3, 4), 2.0, np.float32)
    dummy = np.zeros(1, np.float32)
    _vector_gemm(_NO_TRANS, _NO_TRANS, 3, 4, 0, np.float32(1), dummy.ctypes.data, 1,
                 dummy.ctypes.data, 4, np.float32(0.5), c.ctypes.data, 4, 0)
    np.testing.assert_array_equal(c, np.ones((3, 4), np.float32))
    _vector_gemm(_NO_TRANS, _NO_TRANS, 3, 4, 0, np.float32(1), dummy.ctypes.data, 1,
                 dummy.ctypes.data, 4, np.float32(0), c.ctypes.data, 4, 0)
    np.testing.assert_array_equal(c, np.zeros((3, 4), np.float32))
    c[...] = 7
    _vector_gemm(_NO_TRANS, _NO_TRANS, 0, 4, 5, np.float32(1), dummy.ctypes.data, 5,
                 dummy.ctypes.data, 4, np.float32(0), c.ctypes.data, 4, 0)
    np.testing.assert_array_equal(c, np.full((3, 4), 7, np.float32))


def test_orientation_rule():
    """Where the vector product is taken (the measured rule): a fully connected layer's
    forward product (few images x many weights, weights transposed) transposed; a large
    forward product as written; weight gradients (A transposed), short reductions, few rows
    and columns that leave lanes idle go to BLAS.  For AVX-512's 64-byte vectors, whatever
    this host has."""
    orientation = functools.partial(_orientation, vector_bytes=64)
    assert orientation(_NO_TRANS, _TRANS, 32, 4096, 25088, 4) == 2
    # at batch 128 the images (re-read per block of 32 weights) and the weights both
    # overflow the cache, as written or transposed: BLAS
    assert orientation(_NO_TRANS, _TRANS, 128, 2048, 9216, 4) == 0
    assert orientation(_NO_TRANS, _NO_TRANS, 128, 4608, 4096, 4) == 0
    assert orientation(_NO_TRANS, _NO_TRANS, 1152, 96, 363, 4) == 1
    assert orientation(_NO_TRANS, _TRANS, 1152, 256, 256, 4) == 1
    assert orientation(_TRANS, _NO_TRANS, 256, 256, 1152, 4) == 0   # A transposed
    assert orientation(_NO_TRANS, _NO_TRANS, 1152, 96, 64, 4) == 0   # short reduction
    assert orientation(_NO_TRANS, _NO_TRANS, 64, 256, 1152, 4) == 0  # few rows
    assert orientation(_NO_TRANS, _NO_TRANS, 1152, 40, 1152, 4) == 0  # 40 of 64 lanes
    assert orientation(_NO_TRANS, _NO_TRANS, 1152, 48, 1152, 4) == 1  # 48 of 64, many rows
    assert orientation(_NO_TRANS, _NO_TRANS, 160, 48, 1152, 4) == 0   # ... not enough rows
    assert orientation(_NO_TRANS, _NO_TRANS, 160, 46, 1152, 8) == 1   # 46 of 48 (float64)


def test_orientation_rule_counts_the_lanes_of_either_vector_width():
    """The rule for AVX2's 32-byte vectors too: a block of 2 vectors holds 16 float32 (8
    float64) columns, so 40 columns fill 40 of 48 lanes (83%: taken with many rows and a
    long reduction) where AVX-512's blocks of 32 fill 40 of 64 (62%: BLAS); 20 columns fill
    20 of 32 on either (BLAS)."""
    args = (_NO_TRANS, _NO_TRANS, 1152)
    assert _orientation(*args, 40, 1152, 4, vector_bytes=32) == 1
    assert _orientation(*args, 40, 1152, 4, vector_bytes=64) == 0
    assert _orientation(*args, 20, 1152, 4, vector_bytes=32) == 0
    assert _orientation(*args, 20, 1152, 4, vector_bytes=64) == 0
    assert _orientation(*args, 15, 256, 8, vector_bytes=32) == 1  # 15 of 16 (float64)
    assert _orientation(_TRANS, _NO_TRANS, 256, 256, 1152, 4, vector_bytes=32) == 0  # A^T


@pytest.mark.parametrize("core, vector_bytes, setting, want", [
    ("Haswell", 64, "auto", True),       # OPENBLAS_CORETYPE=Haswell on an AVX-512 CPU
    ("Zen", 64, "auto", True),
    ("SkylakeX", 64, "auto", False),     # OpenBLAS has AVX-512 kernels: it stays
    ("Cooperlake", 64, "auto", False),
    ("Haswell", 32, "auto", False),      # numba has no AVX-512 either
    (None, 64, "auto", False),           # not OpenBLAS (MKL, ...): kept
    ("SkylakeX", 64, "vector", True),    # NBCONV_GEMM forces either way
    ("Haswell", 64, "blas", False),
])
def test_when_the_vector_product_replaces_blas(core, vector_bytes, setting, want):
    assert _blas.use_vector_gemm(core, vector_bytes, setting) is want


def test_bad_gemm_setting_names_the_variable():
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-c", "import nbconv"], capture_output=True,
                         text=True, env={"NBCONV_GEMM": "fast", "PATH": ""})
    assert run.returncode != 0
    assert "NBCONV_GEMM" in run.stderr and "'fast'" in run.stderr


@pytest.fixture(params=["vector", "auto-vector"])
def vector_products(request, monkeypatch):
    """nbconv's products through the vector GEMM: for every product, or where the rule
    takes it (BLAS elsewhere), whatever this machine's BLAS would choose."""
    if not _blas._gemm_functions():
        pytest.skip("no CBLAS gemm found in NumPy's BLAS")
    mode = VECTOR_ALWAYS if request.param == "vector" else VECTOR_WHERE_FASTER
    monkeypatch.setattr(_blas, "_gemm", {k: _blas.vector_descriptor(f, k, mode)
                                         for k, f in _blas.blas_gemm.items()})
    monkeypatch.setattr(_blas, "SMALL_MACS", 0)


_SHAPES = [((4, 64, 8, 8), (96, 64, 3, 3), 1, 1), ((2, 3, 32, 32), (32, 3, 5, 5), 1, 2),
           ((8, 128, 4, 4), (128, 128, 1, 1), 1, 0)]


@pytest.mark.parametrize("algorithm, shape", [
    (algorithm, shape) for algorithm in ("im2col", "tapgemm", "winograd") for shape in _SHAPES
    if algorithm != "winograd" or shape[1][2] > 1])  # Winograd needs 2+ taps a side
def test_convolutions_through_the_vector_product(vector_products, algorithm, shape):
    """Forward and backward convolution of the algorithms built on products, against the
    direct kernels (which use no product)."""
    xs, ws, stride, padding = shape
    rng = np.random.default_rng(3)
    x = rng.standard_normal(xs).astype(np.float32)
    w = rng.standard_normal(ws).astype(np.float32)
    b = rng.standard_normal(ws[0]).astype(np.float32)
    args = dict(stride=stride, padding=padding)
    want = nc.conv2d(x, w, b, algorithm="direct", **args)
    got = nc.conv2d(x, w, b, algorithm=algorithm, **args)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)
    dy = rng.standard_normal(want.shape).astype(np.float32)
    ref = nc.conv2d_backward(dy, x, w, bias=True, algorithm="direct", **args)
    for g, r in zip(nc.conv2d_backward(dy, x, w, bias=True, algorithm=algorithm, **args), ref):
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-3)


def test_linear_through_the_vector_product(vector_products):
    """A fully connected layer's three products (forward transposed into the vector
    product's favourite orientation, input and weight gradients) against float64 NumPy."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((32, 1000)).astype(np.float32)
    w = rng.standard_normal((300, 1000)).astype(np.float32) / 30
    b = rng.standard_normal(300).astype(np.float32)
    y = nc.linear(x, w, b)
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    np.testing.assert_allclose(y, x64 @ w64.T + b, rtol=1e-4, atol=1e-4)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx, dw, db = nc.linear_backward(dy, x, w)
    np.testing.assert_allclose(dx, dy.astype(np.float64) @ w64, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dw, dy.astype(np.float64).T @ x64, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(db, dy.sum(0), rtol=1e-4, atol=1e-4)


def test_module_constants_fit_the_registers():
    """MR x NV accumulators leave room in AVX-512's 32 vector registers for the NV loads of
    op(B) and a broadcast; a packed panel stays within a 48 KiB L1 data cache."""
    assert gemm_vector.MR * gemm_vector.NV + gemm_vector.NV + 1 <= 32
    assert gemm_vector.KC * gemm_vector.NV * 64 <= 48 * 1024

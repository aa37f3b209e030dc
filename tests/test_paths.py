"""The size-dependent code paths give the same results: serial twins of the memory-bound
kernels against their threaded versions, and single-threaded BLAS products against NumPy's."""

from __future__ import annotations

import threading

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
        return y, idx, dx, nc.max_pool2d(x, 2)  # the last without indices: its own kernel

    (y1, i1, d1, v1), (y2, i2, d2, v2) = _both_paths(monkeypatch, run)
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_array_equal(v1, y1)
    np.testing.assert_array_equal(v2, y1)
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


@pytest.mark.parametrize("shape_a, shape_b, transpose_a", [
    ((37, 29), (29, 11), False),       # more rows than columns: row slabs
    ((5, 29), (29, 41), False),        # more columns: column slabs
    ((3, 7, 13), (3, 13, 19), False),  # per-group products (im2col with groups)
    ((3, 13, 7), (3, 13, 19), True),   # a transposed view, as im2col's dcols = W.T @ dy
    ((1, 4), (4, 1), False),           # fewer rows and columns than threads
    ((1, 29), (29, 41), False),        # a matrix-vector product (batch-1 Linear): GEMV
    ((37, 29), (29, 1), False),        # ... and its other side
    ((2, 1, 29), (2, 29, 41), False),  # a batch of them
])
@pytest.mark.parametrize("threads", [1, 2])
def test_blas_matmul_slabs(monkeypatch, shape_a, shape_b, transpose_a, threads):
    rng = np.random.default_rng(5)
    a = rng.standard_normal(shape_a)
    if transpose_a:
        a = a.swapaxes(-1, -2)
    b = rng.standard_normal(shape_b)
    out = np.full(a.shape[:-1] + b.shape[-1:], np.nan)
    monkeypatch.setattr(_blas, "SMALL_MACS", 0)  # every product takes the slab path
    old = nc.get_num_threads()
    nc.set_num_threads(min(threads, nc.max_num_threads()))
    try:
        _blas.matmul(a, b, out)
    finally:
        nc.set_num_threads(old)
    np.testing.assert_allclose(out, np.einsum("...ij,...jk->...ik", a, b), rtol=1e-12,
                               atol=1e-12)


def test_blas_matmul_slab_error_propagates(monkeypatch):
    monkeypatch.setattr(_blas, "SMALL_MACS", 0)
    libs = _blas._blas_controllers()
    before = [lib.get_num_threads() for lib in libs]
    with pytest.raises(ValueError):
        _blas.matmul(np.ones((8, 3)), np.ones((3, 4)), np.empty((8, 5)))
    assert [lib.get_num_threads() for lib in libs] == before


def test_im2col_conv_with_slabs_matches_direct(monkeypatch):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 4, 9, 8))
    w = rng.standard_normal((6, 2, 3, 3))
    dy = rng.standard_normal((2, 6, 9, 8))
    args = dict(padding=1, groups=2)
    ref_y = nc.conv2d(x, w, algorithm="direct", **args)
    ref_g = nc.conv2d_backward(dy, x, w, algorithm="direct", **args)
    monkeypatch.setattr(_blas, "SMALL_MACS", 0)
    y = nc.conv2d(x, w, algorithm="im2col", **args)
    g = nc.conv2d_backward(dy, x, w, algorithm="im2col", **args)
    np.testing.assert_allclose(y, ref_y, rtol=1e-11, atol=1e-12)
    for got, want in zip(g, ref_g):
        np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("slabs", [False, True])
def test_pointwise_im2col_is_a_plain_product(monkeypatch, slabs):
    """1x1, stride 1, unpadded: im2col skips its columns and multiplies x directly."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 5, 4, 6))
    w = rng.standard_normal((7, 5, 1, 1))
    b = rng.standard_normal(7)
    if slabs:
        monkeypatch.setattr(_blas, "SMALL_MACS", 0)
    y = nc.conv2d(x, w, b, algorithm="im2col")
    want = np.einsum("fc,nchw->nfhw", w[:, :, 0, 0], x) + b[:, None, None]
    np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(y, nc.conv2d(x, w, b, algorithm="direct"), rtol=1e-12,
                               atol=1e-12)


def test_blas_thread_count_survives_concurrent_products(monkeypatch):
    """Products running in several Python threads at once restore BLAS's own thread count
    when the last one ends (each saving and restoring on its own could leave it at 1)."""
    libs = _blas._blas_controllers()
    if not libs:
        pytest.skip("threadpoolctl finds no BLAS to drive")
    before = [lib.get_num_threads() for lib in libs]
    rng = np.random.default_rng(8)
    a, b = rng.standard_normal((40, 30)), rng.standard_normal((30, 20))
    want = a @ b
    errors = []

    def work(slabs):
        try:
            for _ in range(200):
                out = np.empty((40, 20))
                _blas.matmul(a, b, out)
                np.testing.assert_allclose(out, want, rtol=1e-12, atol=1e-12)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    monkeypatch.setattr(_blas, "SMALL_MACS", 10_000)  # 40*20*30 = 24,000: the slab path
    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert [lib.get_num_threads() for lib in libs] == before
    assert _blas._active == 0


def test_single_threaded_blas_nests_and_restores_on_errors():
    """Inside (nested too) BLAS runs one thread; the count comes back after the outermost
    block, also when the block raises."""
    libs = _blas._blas_controllers()
    if not libs:
        pytest.skip("threadpoolctl finds no BLAS to drive")
    before = [lib.get_num_threads() for lib in libs]
    with _blas.single_threaded_blas():
        with _blas.single_threaded_blas():
            assert [lib.get_num_threads() for lib in libs] == [1] * len(libs)
        assert [lib.get_num_threads() for lib in libs] == [1] * len(libs)
    assert [lib.get_num_threads() for lib in libs] == before
    with pytest.raises(KeyError):
        with _blas.single_threaded_blas():
            raise KeyError("inside")
    assert [lib.get_num_threads() for lib in libs] == before
    assert _blas._active == 0


def test_thread_switches_reach_the_library(monkeypatch):
    """The switches are OpenBLAS's own functions where threadpoolctl finds them: what they set
    is what threadpoolctl then reads.  A controller without that private lookup (another
    threadpoolctl, another BLAS) is switched through its public methods."""
    libs = _blas._blas_controllers()
    if not libs:
        pytest.skip("threadpoolctl finds no BLAS to drive")
    lib = libs[0]
    get, set_ = _blas._switch_functions(lib)
    before = lib.get_num_threads()
    try:
        for n in (1, 2, 1):
            set_(n)
            assert lib.get_num_threads() == n and get() == n
    finally:
        lib.set_num_threads(before)

    class Public:  # no _get_symbol: the public methods
        internal_api = "openblas"
        calls = []

        def get_num_threads(self):
            return 3

        def set_num_threads(self, n):
            self.calls.append(n)

    fake = Public()
    monkeypatch.setattr(_blas, "_controllers", [fake])
    with _blas.single_threaded_blas():
        assert fake.calls == [1]
    assert fake.calls == [1, 3] and _blas._active == 0


def test_blas_matmul_without_threadpoolctl(monkeypatch):
    """No BLAS controller (threadpoolctl missing or unable): a plain np.matmul."""
    monkeypatch.setattr(_blas, "_controllers", [])
    monkeypatch.setattr(_blas, "SMALL_MACS", 0)
    a, b = np.arange(12.0).reshape(3, 4), np.arange(8.0).reshape(4, 2)
    out = np.empty((3, 2))
    np.testing.assert_array_equal(_blas.matmul(a, b, out), a @ b)
    np.testing.assert_array_equal(_blas.matmul(a, b, out, accumulate=True), 2 * (a @ b))


def _count_threaded(monkeypatch):
    """Spy on the numba task kernel: a list that grows by the task count of every call."""
    calls = []
    real = _blas._gemm_tasks

    def spy(fn, width, geometry, addresses, parts, alpha, beta):
        calls.append(geometry[8] * parts)  # batch * slabs
        return real(fn, width, geometry, addresses, parts, alpha, beta)

    monkeypatch.setattr(_blas, "_gemm_tasks", spy)
    return calls


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("accumulate", [False, True])
@pytest.mark.parametrize("batch_a, batch_b, n_out", [
    ((), (), ()),          # plain 2-D product (linear layers)
    ((1,), (5,), (5,)),    # one weight matrix for a batch (pointwise convolution)
    ((3,), (3,), (3,)),    # per-group products, 3 tasks split into slabs for 2 threads
    ((4,), (4,), (4,)),    # batch divisible by 2 threads: one task per matrix
])
def test_blas_threaded_path_matches_numpy(monkeypatch, dtype, accumulate, batch_a, batch_b,
                                          n_out):
    """Large products run as BLAS tasks on numba's threads, reading strided views in place:
    transposed operands, a column slice of a wider matrix, and writing into a sliced output."""
    if not _blas._gemm_functions():
        pytest.skip("no CBLAS gemm found in NumPy's BLAS")
    rng = np.random.default_rng(9)
    a = rng.standard_normal(batch_a + (13, 9)).astype(dtype).swapaxes(-1, -2)  # (.., 9, 13)
    b = rng.standard_normal(batch_b + (13, 30)).astype(dtype)[..., 3:24]       # (.., 13, 21)
    big = rng.standard_normal(n_out + (12, 25)).astype(dtype)
    out = big[..., 2:11, 1:22]                                                   # (.., 9, 21)
    start = out.copy()
    before = big.copy()
    want = np.matmul(a.astype(np.float64), b.astype(np.float64))
    if accumulate:
        want += start
    calls = _count_threaded(monkeypatch)
    monkeypatch.setattr(_blas, "SMALL_MACS", 0)
    old = nc.get_num_threads()
    nc.set_num_threads(min(2, nc.max_num_threads()))
    try:
        assert _blas.matmul(a, b, out, accumulate=accumulate) is out
    finally:
        nc.set_num_threads(old)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out, want, rtol=tol, atol=tol)
    if nc.max_num_threads() > 1:
        assert calls, "the threaded path did not run"
    outside = np.ones(big.shape, bool)
    outside[..., 2:11, 1:22] = False
    np.testing.assert_array_equal(big[outside], before[outside])  # nothing written outside


def test_blas_unusable_layouts_fall_back(monkeypatch):
    """Operands whose strides no BLAS layout can express, mixed dtypes and read-only or
    column-major outputs are left to np.matmul (same result, no task kernel)."""
    rng = np.random.default_rng(10)
    a = rng.standard_normal((20, 18))[::2, ::2]           # no unit stride
    b = rng.standard_normal((9, 7))
    calls = _count_threaded(monkeypatch)
    monkeypatch.setattr(_blas, "SMALL_MACS", 0)
    out = np.empty((10, 7))
    np.testing.assert_allclose(_blas.matmul(a, b, out), a @ b, rtol=1e-12)
    out_f = np.empty((7, 10)).T                             # column-major output
    np.testing.assert_allclose(_blas.matmul(a, b, out_f), a @ b, rtol=1e-12)
    out32 = np.empty((10, 7), np.float32)
    np.testing.assert_allclose(_blas.matmul(a.astype(np.float32), b, out32), a @ b, rtol=1e-5)
    assert calls == []


def test_blas_without_cblas_symbols(monkeypatch):
    """A BLAS without a CBLAS gemm to call: every product is np.matmul."""
    monkeypatch.setattr(_blas, "_gemm", {})
    monkeypatch.setattr(_blas, "SMALL_MACS", 0)
    calls = _count_threaded(monkeypatch)
    a, b = np.arange(12.0).reshape(3, 4), np.arange(8.0).reshape(4, 2)
    out = np.ones((3, 2))
    np.testing.assert_array_equal(_blas.matmul(a, b, out, accumulate=True), a @ b + 1)
    assert calls == []


@pytest.mark.parametrize("shape_x, shape_w, padding, groups", [
    ((3, 1, 9, 8), (6, 1, 5, 5), 0, 1),    # one input channel (size-1 axes in the layouts)
    ((2, 4, 7, 9), (5, 4, 3, 3), 1, 1),    # padded: the threaded padding kernel
    ((2, 4, 6, 6), (4, 1, 3, 3), 2, 4),    # depthwise, padding wider than the kernel's reach
    ((2, 3, 8, 8), (6, 3, 3, 5), (1, 2), 1),
])
def test_direct_conv_padding_paths_agree(monkeypatch, shape_x, shape_w, padding, groups):
    rng = np.random.default_rng(9)
    x = rng.standard_normal(shape_x)
    w = rng.standard_normal(shape_w)
    args = dict(padding=padding, groups=groups, algorithm="direct")
    y_ref = nc.conv2d(x, w, **args)
    dy = rng.standard_normal(y_ref.shape)

    def run():
        return nc.conv2d(x, w, **args), *nc.conv2d_backward(dy, x, w, **args)

    threaded, serial = _both_paths(monkeypatch, run)
    for a, b in zip(threaded, serial):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    # and against the independent im2col path
    np.testing.assert_allclose(threaded[0], nc.conv2d(x, w, **{**args, "algorithm": "im2col"}),
                               rtol=1e-11, atol=1e-11)

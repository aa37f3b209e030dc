"""The implicit-GEMM CUDA convolutions (:mod:`nbconv.cuda.kernels.conv2d_im2col`) agree with the
CPU ops (consistency, see helpers.py), forward and backward.

conftest.py sets tiles of 8x8 in 4-deep slices, 2x2 per thread (16 threads a block), so the
tiny shapes below still span several tiles in every GEMM dimension, end in partial tiles and
pad the last slice of every tap.
"""

import numpy as np
import pytest
from helpers import nc, ncu, rng, run_both

from nbconv import _config
from nbconv.conv import explain
from nbconv.cuda import conv_drivers

TILED = "im2col"  # any algorithm but "direct" runs the tiled kernels on the device

CASES = [
    # (x shape, w shape, kwargs); GEMM sizes in the comments are (rows, columns, reduction)
    # fwd (10, 40, 9 taps x 3 slices), data grad (9, 40, 9 x 3), weight grad (10, 82, 40)
    ((2, 9, 4, 5), (10, 9, 3, 3), dict(padding=1)),
    # groups, stride, dilation: fwd per group (5, 32, 6 x 1), data grad (3, 42, 6 x 2)
    ((1, 6, 7, 6), (10, 3, 3, 2), dict(groups=2, stride=(2, 1), padding=(1, 2),
                                       dilation=(1, 2))),
    # "same" with an even kernel and stride 2: asymmetric padding (0, 1) on both axes
    ((2, 5, 5, 4), (9, 5, 2, 2), dict(stride=2, padding="same")),
    # 1x1, strided: the data gradient has pixels no output reads
    ((1, 9, 5, 6), (9, 9, 1, 1), dict(stride=2)),
    ((1, 5, 4, 5), (9, 5, 3, 3), dict(padding=1, padding_mode="reflect")),
    ((1, 5, 4, 5), (9, 5, 3, 2), dict(padding=(2, 1), padding_mode="circular")),
]


def _data(xs, ws, dtype, seed):
    r = rng(seed)
    return (r.standard_normal(xs).astype(dtype), r.standard_normal(ws).astype(dtype),
            r.standard_normal(ws[0]).astype(dtype))


@pytest.mark.parametrize("xs, ws, kw", CASES)
def test_forward_backward_match_cpu(xs, ws, kw):
    x, w, b = _data(xs, ws, np.float64, 1)
    (y,), _ = run_both("conv2d", x, w, b, algorithm=TILED, **kw)
    dy = rng(2).standard_normal(y.shape)
    run_both("conv2d_backward", dy, x, w, algorithm=TILED, **kw)


def test_float32_no_bias_no_dx():
    x, w, _ = _data((1, 9, 4, 5), (10, 9, 2, 3), np.float32, 3)
    (y,), _ = run_both("conv2d", x, w, padding=1, algorithm=TILED)
    dy = rng(4).standard_normal(y.shape).astype(np.float32)
    (dx, gw, db), _ = run_both("conv2d_backward", dy, x, w, padding=1, bias=False,
                               need_dx=False, algorithm=TILED)
    assert dx is None and db is None and gw.dtype == np.float32


def test_auto_runs_the_tiled_kernels_for_wide_layers(monkeypatch):
    """The device plan of a wide layer is the implicit GEMM, and the engine runs that plan's
    driver (the rule's thresholds: tests/test_device_plan.py)."""
    x, w, b = _data((1, 8, 4, 4), (8, 8, 2, 2), np.float32, 10)
    plans = explain(x.shape, w.shape, dtype=np.float32, device="cuda")
    assert {plans.forward.algorithm, plans.backward.algorithm} == {"implicit-gemm"}
    calls, real = [], conv_drivers.DRIVERS["implicit-gemm"]

    class Spy:
        EXACT = real.EXACT

        def __getattr__(self, name):
            calls.append(name)
            return getattr(real, name)

    monkeypatch.setitem(conv_drivers.DRIVERS, "implicit-gemm", Spy())
    (y,), _ = run_both("conv2d", x, w, b)
    run_both("conv2d_backward", rng(11).standard_normal(y.shape).astype(np.float32), x, w)
    assert calls == ["conv2d_forward", "conv2d_backward"]


def test_other_tile_shape(monkeypatch):
    """Non-square tiles (8x4, 2x1 per thread) compile and give the same results."""
    monkeypatch.setattr(_config, "CUDA_CONV_TILE", (8, 4, 4, 2, 1))
    x, w, b = _data((1, 9, 3, 5), (10, 9, 2, 2), np.float32, 5)
    (y,), _ = run_both("conv2d", x, w, b, algorithm=TILED)
    dy = rng(6).standard_normal(y.shape).astype(np.float32)
    run_both("conv2d_backward", dy, x, w, algorithm=TILED)


@pytest.fixture
def split_k(monkeypatch):
    """Make the weight gradient split its reduction into several chunks."""
    from nbconv.cuda.kernels import conv2d_im2col as k

    monkeypatch.setattr(k, "SPLIT_MIN_K", 8)
    monkeypatch.setattr(k, "SPLIT_TARGET_BLOCKS", 1 << 10)
    return k


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_weight_gradient_split_k_is_deterministic(split_k, dtype):
    # the data gradient is a gather in a fixed order: deterministic by construction
    xs, ws = (2, 6, 5, 6), (10, 3, 3, 3)
    kw = dict(padding=1, stride=(1, 2), groups=2, need_dx=False)
    K = 2 * 5 * 3
    assert split_k.wgrad_splits(K, 10, 3 * 9 + 1, 2) == 3  # chunks of 12, 12 and 6 terms
    x, w, _ = _data(xs, ws, dtype, 7)
    dy = rng(8).standard_normal((2, 10, 5, 3)).astype(dtype)
    _, first = run_both("conv2d_backward", dy, x, w, algorithm=TILED, **kw)
    d = [ncu.to_device(a) for a in (dy, x, w)]
    again = ncu.to_host(nc.conv2d_backward(*d, algorithm=TILED, **kw))
    for u, v in zip(first, again):
        np.testing.assert_array_equal(u, v)


def test_forward_nan_reaches_only_outputs_that_read_it():
    x = np.ones((1, 9, 6, 6))
    x[0, 4, 0, 0] = np.nan
    w = np.ones((9, 9, 2, 2))
    (_,), (yd,) = run_both("conv2d", x, w, algorithm=TILED)
    assert np.isnan(yd[:, :, 0, 0]).all()
    yd[:, :, 0, 0] = 0
    assert np.isfinite(yd).all()


def test_conv1d():
    r = rng(9)
    x, w = r.standard_normal((2, 9, 7)), r.standard_normal((10, 9, 3))
    (y,), _ = run_both("conv1d", x, w, padding=2, dilation=2, algorithm=TILED)
    run_both("conv1d_backward", r.standard_normal(y.shape), x, w, padding=2, dilation=2,
             algorithm=TILED)


def test_bad_tiles_raise(monkeypatch):
    from nbconv.cuda.kernels import conv2d_im2col as k

    monkeypatch.setattr(_config, "CUDA_CONV_TILE", (8, 8, 3, 2, 2))
    with pytest.raises(ValueError, match="NBCONV_CUDA_CONV_TILE"):
        k.tiles()

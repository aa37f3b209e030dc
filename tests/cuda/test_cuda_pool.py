"""Pooling on device arrays agrees with the CPU ops (indices exactly), forward and backward."""

import numpy as np
import pytest
from helpers import nc, ncu, rng, run_both

MAX_CASES = [
    ((2, 1, 5, 6), dict(kernel_size=2)),
    ((1, 2, 5, 5), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    ((1, 1, 6, 7), dict(kernel_size=(2, 3), stride=1, dilation=(2, 1))),
    ((2, 5, 5), dict(kernel_size=2, stride=1)),
]


@pytest.mark.parametrize("xs, kw", MAX_CASES)
def test_max_pool(xs, kw):
    r = rng(5)
    x = r.integers(0, 4, xs).astype(np.float64)  # many ties: first maximum wins
    (y, idx), _ = run_both("max_pool2d", x, return_indices=True, **kw)
    dy = r.standard_normal(y.shape)
    run_both("max_pool2d_backward", dy, idx, xs)


def test_max_pool_nan_and_float32():
    x = rng(6).standard_normal((1, 1, 4, 4)).astype(np.float32)
    x[0, 0, 1, 1] = np.nan
    (y, _), (yd, _) = run_both("max_pool2d", x, 2, return_indices=True)
    assert np.isnan(yd[0, 0, 0, 0])


AVG_CASES = [
    ((1, 1, 7, 7), dict(kernel_size=2, stride=3, ceil_mode=True)),
    ((2, 1, 5, 6), dict(kernel_size=3, stride=2, padding=1, count_include_pad=False)),
    ((1, 2, 4, 5), dict(kernel_size=(2, 3), padding=(1, 1), divisor_override=5)),
]


@pytest.mark.parametrize("xs, kw", AVG_CASES)
def test_avg_pool(xs, kw):
    r = rng(7)
    x = r.standard_normal(xs)
    (y,), (yd,) = run_both("avg_pool2d", x, **kw)
    if xs == (1, 1, 7, 7):
        x = np.arange(49.0).reshape(xs)
        _, (yd,) = run_both("avg_pool2d", x, **kw)
        assert yd[0, 0, 0].tolist() == [4.0, 7.0, 9.5]  # SPEC §2
    run_both("avg_pool2d_backward", r.standard_normal(y.shape), xs, **kw)


@pytest.mark.parametrize("xs, out", [((1, 2, 5, 7), (2, 3)), ((1, 1, 3, 2), (4, 5)),
                                     ((2, 4, 4), (None, 3))])
def test_adaptive_avg_pool(xs, out):
    r = rng(8)
    x = r.standard_normal(xs)
    (y,), _ = run_both("adaptive_avg_pool2d", x, out)
    run_both("adaptive_avg_pool2d_backward", r.standard_normal(y.shape), xs)


@pytest.mark.parametrize("keepdims", [True, False])
def test_global_avg_pool(keepdims):
    r = rng(9)
    x = r.standard_normal((2, 3, 3, 4)).astype(np.float32)
    (y,), _ = run_both("global_avg_pool2d", x, keepdims=keepdims)
    run_both("global_avg_pool2d_backward", r.standard_normal(y.shape).astype(np.float32),
             x.shape)


def test_pool_errors():
    x = ncu.to_device(np.ones((1, 1, 4, 4)))
    with pytest.raises(ValueError, match="max_pool2d: argument 'padding'"):
        nc.max_pool2d(x, 2, padding=2)
    with pytest.raises(TypeError, match="argument 'indices' is a host array"):
        nc.max_pool2d_backward(ncu.to_device(np.ones((1, 1, 2, 2))),
                               np.zeros((1, 1, 2, 2), np.int64), (1, 1, 4, 4))

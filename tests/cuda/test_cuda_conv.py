"""conv2d / conv1d on device arrays agree with the CPU ops, forward and backward."""

import numpy as np
import pytest
from helpers import nc, ncu, rng, run_both

CASES_2D = [
    # (x shape, w shape, kwargs)
    ((2, 2, 5, 6), (3, 2, 2, 3), {}),
    ((1, 2, 6, 5), (2, 2, 3, 2), dict(stride=(2, 1), padding=(1, 2), dilation=(1, 2))),
    ((1, 4, 5, 5), (2, 2, 2, 2), dict(groups=2, padding="same", stride=2)),
    ((1, 2, 4, 5), (2, 2, 3, 3), dict(padding=1, padding_mode="reflect")),
    ((1, 1, 4, 5), (2, 1, 3, 2), dict(padding=(2, 1), padding_mode="circular")),
    ((1, 2, 3, 4), (1, 2, 2, 2), dict(padding=2, padding_mode="replicate", stride=(1, 2))),
]


@pytest.mark.parametrize("xs, ws, kw", CASES_2D)
def test_conv2d_forward_backward(xs, ws, kw):
    r = rng(1)
    x, w, b = r.standard_normal(xs), r.standard_normal(ws), r.standard_normal(ws[0])
    (y,), _ = run_both("conv2d", x, w, b, **kw)
    dy = r.standard_normal(y.shape)
    run_both("conv2d_backward", dy, x, w, **kw)


def test_conv2d_float32_no_bias_no_dx():
    r = rng(2)
    x = r.standard_normal((2, 2, 4, 4)).astype(np.float32)
    w = r.standard_normal((2, 2, 3, 3)).astype(np.float32)
    (y,), _ = run_both("conv2d", x, w, padding=1)
    dy = r.standard_normal(y.shape).astype(np.float32)
    (dx, _, db), _ = run_both("conv2d_backward", dy, x, w, padding=1, bias=False,
                              need_dx=False)
    assert dx is None and db is None


def test_conv2d_nan_propagates():
    x = np.ones((1, 1, 4, 4))
    x[0, 0, 0, 0] = np.nan
    w = np.ones((1, 1, 2, 2))
    (y,), (yd,) = run_both("conv2d", x, w)
    assert np.isnan(yd[0, 0, 0, 0]) and np.isfinite(yd[0, 0, 2, 2])


def test_conv2d_backward_is_deterministic():
    r = rng(3)
    x, w = r.standard_normal((2, 2, 5, 5)), r.standard_normal((2, 2, 3, 3))
    dy = r.standard_normal((2, 2, 3, 3))
    d = [ncu.to_device(a) for a in (dy, x, w)]
    a = ncu.to_host(nc.conv2d_backward(*d))
    b = ncu.to_host(nc.conv2d_backward(*d))
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)


@pytest.mark.parametrize("kw", [{}, dict(stride=2, padding=1, dilation=2),
                                dict(groups=2, padding="same"),
                                dict(padding=1, padding_mode="reflect")])
def test_conv1d_forward_backward(kw):
    r = rng(4)
    x, w, b = r.standard_normal((2, 2, 7)), r.standard_normal((2, 2 // kw.get("groups", 1), 3)), \
        r.standard_normal(2)
    (y,), _ = run_both("conv1d", x, w, b, **kw)
    run_both("conv1d_backward", r.standard_normal(y.shape), x, w, **kw)


def test_conv2d_errors_match_host():
    x = ncu.to_device(np.ones((1, 3, 4, 4)))
    w = ncu.to_device(np.ones((2, 2, 3, 3)))
    with pytest.raises(ValueError, match="conv2d: argument 'weight' has 2 input channels"):
        nc.conv2d(x, w)
    with pytest.raises(ValueError, match="argument 'algorithm'"):
        nc.conv2d(x, ncu.to_device(np.ones((2, 3, 3, 3))), algorithm="fft")
    with pytest.raises(ValueError, match="argument 'dy' has shape"):
        nc.conv2d_backward(ncu.to_device(np.ones((1, 2, 3, 3))), x,
                           ncu.to_device(np.ones((2, 3, 3, 3))))


@pytest.mark.parametrize("algorithm", ["winograd", "im2col", "tapgemm", "direct"])
def test_conv2d_algorithms_on_device(algorithm):
    """Every host algorithm name is accepted on the GPU ("direct": the direct kernels, the
    others the implicit-GEMM ones) and gives the host's result; Winograd's geometry is checked
    as on the host."""
    r = rng(5)
    x, w, b = r.standard_normal((2, 3, 6, 5)), r.standard_normal((4, 3, 3, 3)), \
        r.standard_normal(4)
    (y,), _ = run_both("conv2d", x, w, b, padding=1, algorithm=algorithm)
    run_both("conv2d_backward", r.standard_normal(y.shape), x, w, padding=1,
             algorithm=algorithm)
    with pytest.raises(ValueError, match="algorithm 'winograd' needs"):
        nc.conv2d(ncu.to_device(x), ncu.to_device(w), stride=2, algorithm="winograd")
    with pytest.raises(ValueError, match="algorithm 'tapgemm' needs groups 1"):
        nc.conv2d(ncu.to_device(x), ncu.to_device(r.standard_normal((3, 1, 3, 3))), groups=3,
                  algorithm="tapgemm")

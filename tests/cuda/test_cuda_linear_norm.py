"""linear (tiled matmul), batch_norm and local_response_norm on device arrays."""

import numpy as np
import pytest
from helpers import nc, ncu, rng, run_both


@pytest.mark.parametrize("xs, out_f, bias", [((5, 6), 7, True), ((2, 3, 9), 5, False),
                                             ((9,), 4, True), ((3, 1), 2, True)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_linear(xs, out_f, bias, dtype):
    r = rng(20)
    x = r.standard_normal(xs).astype(dtype)
    w = r.standard_normal((out_f, xs[-1])).astype(dtype)
    b = r.standard_normal(out_f).astype(dtype) if bias else None
    (y,), _ = run_both("linear", x, w, b)
    run_both("linear_backward", r.standard_normal(y.shape).astype(dtype), x, w, bias=bias)


@pytest.mark.parametrize("xs", [(4, 3), (2, 3, 5), (2, 2, 3, 3)])
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_training(xs, affine):
    r = rng(21)
    x = r.standard_normal(xs) * 2 + 1
    C = xs[1]
    w, b = (r.standard_normal(C), r.standard_normal(C)) if affine else (None, None)
    rm_h, rv_h = r.standard_normal(C), r.random(C) + 0.5
    rm_d, rv_d = ncu.to_device(rm_h), ncu.to_device(rv_h)
    y, mean, invstd = nc.batch_norm(x, rm_h, rv_h, w, b, training=True, return_stats=True)
    dev = nc.batch_norm(ncu.to_device(x), rm_d, rv_d,
                        None if w is None else ncu.to_device(w),
                        None if b is None else ncu.to_device(b),
                        training=True, return_stats=True)
    for h, d in zip((y, mean, invstd, rm_h, rv_h), (*dev, rm_d, rv_d)):
        np.testing.assert_allclose(ncu.to_host(d), h, rtol=1e-12, atol=1e-12)
    dy = r.standard_normal(xs)
    run_both("batch_norm_backward", dy, x, mean, invstd, w, training=True)


def test_batch_norm_eval_float32():
    r = rng(22)
    x = r.standard_normal((2, 3, 4)).astype(np.float32)
    rm, rv = r.standard_normal(3).astype(np.float32), (r.random(3) + 0.5).astype(np.float32)
    w, b = r.standard_normal(3).astype(np.float32), r.standard_normal(3).astype(np.float32)
    (y, mean, invstd), _ = run_both("batch_norm", x, rm, rv, w, b, training=False,
                                    return_stats=True)
    run_both("batch_norm_backward", r.standard_normal(x.shape).astype(np.float32), x, mean,
             invstd, w, training=False)


def test_batch_norm_running_stats_must_be_on_device():
    x = ncu.to_device(np.ones((2, 3)))
    with pytest.raises(TypeError, match="'running_mean' must be a CUDA device array"):
        nc.batch_norm(x, np.zeros(3), None, training=True)


@pytest.mark.parametrize("size", [1, 2, 3])
def test_local_response_norm(size):
    r = rng(23)
    x = r.standard_normal((2, 4, 2, 3))
    kw = dict(size=size, alpha=0.3, beta=0.75, k=1.5)
    run_both("local_response_norm", x, **kw)
    run_both("local_response_norm_backward", r.standard_normal(x.shape), x, **kw)

"""Activations, softmax and dropout on device arrays agree with the CPU ops."""

import numpy as np
import pytest
from helpers import nc, ncu, rng, run_both

UNARY = [("relu", "relu_backward", "x", {}),
         ("leaky_relu", "leaky_relu_backward", "x", dict(negative_slope=0.2)),
         ("sigmoid", "sigmoid_backward", "y", {}),
         ("tanh", "tanh_backward", "y", {})]


@pytest.mark.parametrize("fwd, bwd, saved, kw", UNARY)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_elementwise(fwd, bwd, saved, kw, dtype):
    r = rng(10)
    x = (r.standard_normal((3, 7)) * 5).astype(dtype)
    x[0, 0] = np.nan
    x[1, 1] = 800.0
    x[1, 2] = -800.0
    (y,), (yd,) = run_both(fwd, x, **kw)
    assert np.isnan(yd[0, 0])
    dy = r.standard_normal(x.shape).astype(dtype)
    run_both(bwd, dy, x if saved == "x" else y, **kw)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_softmax(name, axis):
    r = rng(11)
    x = r.standard_normal((2, 3, 4)) * 3
    x[0, 0, 0] = 1e4
    (y,), _ = run_both(name, x, axis=axis)
    run_both(name + "_backward", r.standard_normal(x.shape), y, axis=axis)


def test_softmax_float32_1d():
    x = rng(12).standard_normal(9).astype(np.float32)
    run_both("softmax", x)


@pytest.mark.parametrize("p, training", [(0.5, True), (0.0, True), (1.0, True), (0.3, False)])
def test_dropout_same_mask_as_cpu(p, training):
    x = rng(13).standard_normal((2, 3, 4))
    (y, mask), _ = run_both("dropout", x, p=p, training=training, rng=7, return_mask=True)
    run_both("dropout_backward", rng(14).standard_normal(x.shape), mask)


def test_dropout_generator_advances():
    x = ncu.to_device(np.ones(50))
    g = np.random.default_rng(3)
    a = ncu.to_host(nc.dropout(x, 0.5, rng=g))
    b = ncu.to_host(nc.dropout(x, 0.5, rng=g))
    assert not np.array_equal(a, b)
    assert set(np.unique(a)) <= {0.0, 2.0}

"""nbconv.cuda: availability, transfers, dispatch rules, dtype/layout policy on the device."""

import numpy as np
import pytest
from helpers import nc, ncu, run_both


def test_available_and_roundtrip():
    assert ncu.is_available()
    x = np.arange(6.0).reshape(2, 3)
    d = ncu.to_device(x)
    assert ncu.is_device_array(d) and not ncu.is_device_array(x)
    np.testing.assert_array_equal(ncu.to_host(d), x)
    t = ncu.to_host(ncu.to_device((x, [x, None], {"a": x})))
    assert isinstance(t, tuple) and isinstance(t[1], list) and t[1][1] is None
    np.testing.assert_array_equal(t[2]["a"], x)
    assert ncu.to_device(d) is d


def test_host_path_unchanged():
    y = nc.relu(np.array([-1.0, 2.0]))
    assert type(y) is np.ndarray


@pytest.mark.parametrize("call", [
    lambda d, h: nc.conv2d(d, h),
    lambda d, h: nc.conv2d(h, d),
    lambda d, h: nc.linear(d.reshape(16), h.reshape(1, 16)),
    lambda d, h: nc.relu_backward(d, h),
    lambda d, h: nc.correlate2d(d.reshape(4, 4), h.reshape(4, 4)),
])
def test_mixed_host_device_raises(call):
    h = np.ones((1, 1, 4, 4))
    d = ncu.to_device(h)
    with pytest.raises(TypeError, match="host array but other inputs are CUDA device arrays"):
        call(d, h)


def test_integer_input_cast_to_float32_and_float16_rejected():
    x = np.arange(12).reshape(1, 1, 3, 4)
    (y,), _ = run_both("conv2d", x, np.ones((1, 1, 2, 2), np.int32))
    assert y.dtype == np.float32
    with pytest.raises(TypeError, match="float16"):
        nc.relu(ncu.to_device(np.ones(3, np.float16)))


def test_non_contiguous_device_inputs():
    r = np.random.default_rng(40)
    big = r.standard_normal((2, 3, 6, 8))
    x_host = big[:, ::2, :, 1::2]
    x_dev = ncu.to_device(big)[:, ::2, :, 1::2]
    assert not x_dev.is_c_contiguous()
    w = r.standard_normal((2, 2, 2, 2))
    got = ncu.to_host(nc.conv2d(x_dev, ncu.to_device(w)))
    np.testing.assert_allclose(got, nc.conv2d(x_host, w), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ncu.to_host(nc.tanh(x_dev)), np.tanh(x_host), rtol=1e-12)

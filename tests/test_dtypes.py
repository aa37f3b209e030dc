"""Output dtype equals input dtype for every functional op, forward and backward, and the
documented dtype policy (int/bool -> float32, float16/complex -> TypeError)."""

import numpy as np
import pytest

import nbconv as nc


def _ops(dt):
    r = np.random.default_rng(0)
    x = r.standard_normal((2, 4, 7, 6)).astype(dt)
    w = r.standard_normal((6, 2, 3, 3)).astype(dt)
    b = r.standard_normal(6).astype(dt)
    y = nc.conv2d(x, w, b, groups=2)
    x1 = r.standard_normal((2, 4, 9)).astype(dt)
    w1 = r.standard_normal((3, 4, 3)).astype(dt)
    y1 = nc.conv1d(x1, w1)
    xl = r.standard_normal((5, 4)).astype(dt)
    wl = r.standard_normal((3, 4)).astype(dt)
    mp, idx = nc.max_pool2d(x, 2, return_indices=True)
    ap = nc.avg_pool2d(x, 2)
    ad = nc.adaptive_avg_pool2d(x, (3, 2))
    gp = nc.global_avg_pool2d(x)
    rm, rv = np.zeros(4, dt), np.ones(4, dt)
    bn, mean, invstd = nc.batch_norm(x, rm, rv, training=True, return_stats=True)
    dr, mask = nc.dropout(x, 0.3, rng=0, return_mask=True)
    sig, th, sm, lsm = nc.sigmoid(x), nc.tanh(x), nc.softmax(xl), nc.log_softmax(xl)
    ops = {
        "conv2d": y,
        "conv2d_im2col": nc.conv2d(x, w, b, groups=2, algorithm="im2col"),
        "conv2d_direct": nc.conv2d(x, w, b, groups=2, algorithm="direct"),
        "conv2d_reflect": nc.conv2d(x, w, b, groups=2, padding=1, padding_mode="reflect"),
        "conv2d_backward": nc.conv2d_backward(y, x, w, groups=2),
        "conv1d": y1,
        "conv1d_backward": nc.conv1d_backward(y1, x1, w1),
        "max_pool2d": mp,
        "max_pool2d_backward": nc.max_pool2d_backward(mp, idx, x.shape),
        "avg_pool2d": ap,
        "avg_pool2d_backward": nc.avg_pool2d_backward(ap, x.shape, 2),
        "adaptive_avg_pool2d": ad,
        "adaptive_avg_pool2d_backward": nc.adaptive_avg_pool2d_backward(ad, x.shape),
        "global_avg_pool2d": gp,
        "global_avg_pool2d_backward": nc.global_avg_pool2d_backward(gp, x.shape),
        "linear": nc.linear(xl, wl),
        "linear_backward": nc.linear_backward(nc.linear(xl, wl), xl, wl),
        "relu": nc.relu(x),
        "relu_backward": nc.relu_backward(x, x),
        "leaky_relu": nc.leaky_relu(x),
        "leaky_relu_backward": nc.leaky_relu_backward(x, x),
        "sigmoid": sig,
        "sigmoid_backward": nc.sigmoid_backward(x, sig),
        "tanh": th,
        "tanh_backward": nc.tanh_backward(x, th),
        "softmax": sm,
        "softmax_backward": nc.softmax_backward(xl, sm),
        "log_softmax": lsm,
        "log_softmax_backward": nc.log_softmax_backward(xl, lsm),
        "batch_norm": bn,
        "batch_norm_backward": nc.batch_norm_backward(x, x, mean, invstd, training=True),
        "local_response_norm": nc.local_response_norm(x, 3),
        "local_response_norm_backward": nc.local_response_norm_backward(x, x, 3),
        "dropout": dr,
        "dropout_backward": nc.dropout_backward(x, mask),
        "correlate2d": nc.correlate2d(x[0, 0], w[0, 0]),
        "convolve2d": nc.convolve2d(x[0, 0], w[0, 0], mode="same", boundary="wrap"),
    }
    return ops


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_every_op_keeps_the_input_dtype(dt):
    for name, out in _ops(dt).items():
        outs = out if isinstance(out, tuple) else (out,)
        for o in outs:
            if o is not None:
                assert o.dtype == dt, f"{name} returned {o.dtype} for {np.dtype(dt)} input"


def test_integer_and_bool_inputs_become_float32():
    x = np.arange(2 * 1 * 5 * 5).reshape(2, 1, 5, 5)
    w = np.ones((1, 1, 2, 2), np.int32)
    y = nc.conv2d(x, w)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, nc.conv2d(x.astype(np.float32), w.astype(np.float32)))
    assert nc.relu(np.array([True, False])).dtype == np.float32
    assert nc.max_pool2d(x.astype(np.uint8), 2).dtype == np.float32


def test_weight_is_cast_to_the_input_dtype():
    x = np.ones((1, 1, 4, 4), np.float32)
    assert nc.conv2d(x, np.ones((1, 1, 2, 2), np.float64)).dtype == np.float32
    assert nc.linear(x[0, 0], np.ones((3, 4), np.float64)).dtype == np.float32


@pytest.mark.parametrize("bad", [np.float16, np.complex128])
def test_float16_and_complex_raise_type_error(bad):
    x = np.ones((1, 1, 4, 4), bad)
    for call in (lambda: nc.conv2d(x, np.ones((1, 1, 2, 2))), lambda: nc.relu(x),
                 lambda: nc.max_pool2d(x, 2), lambda: nc.batch_norm(x, np.zeros(1), np.ones(1))):
        with pytest.raises(TypeError, match="'x'"):
            call()

"""Depthwise convolution (``groups == C``, one input channel per filter): the plane-in-L1
kernels against independent references, stride 1 and strided.

Forward: ``reference_conv.ref_conv2d`` (scipy.signal.correlate2d per channel pair); backward:
float64 finite differences (``gradcheck.directional_check``) and the bias gradient as a sum.
"""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import directional_check
from reference_conv import ref_conv2d

import nbconv as nc

CASES = [
    # (N, C, multiplier, H, W, kernel, padding, dilation)
    (2, 3, 1, 7, 9, 3, 1, 1),        # the MobileNet case: 3x3, "same"
    (1, 2, 2, 6, 5, 3, 0, 1),        # channel multiplier 2 (data gradient: wide-row kernel)
    (2, 4, 1, 8, 8, 5, 2, 1),        # 5x5: one pass per tap
    (1, 3, 3, 9, 7, 3, (2, 1), 2),   # dilated, uneven padding
    (2, 2, 1, 5, 5, 3, 3, 1),        # padding 3 > kernel - 1: the data gradient crops
    (1, 2, 1, 4, 6, (1, 3), (0, 1), 1),  # a 1x3 kernel
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES)
def test_depthwise_forward_matches_reference(case, dtype):
    N, C, m, H, W, k, p, d = case
    kh, kw = (k, k) if isinstance(k, int) else k
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((C * m, 1, kh, kw)).astype(dtype)
    b = rng.standard_normal(C * m).astype(dtype)
    y = nc.conv2d(x, w, b, padding=p, dilation=d, groups=C, algorithm="direct")
    want = ref_conv2d(x, w, b, padding=p, dilation=d, groups=C)
    assert y.dtype == dtype
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(y, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("case", CASES)
def test_depthwise_backward_gradcheck(case):
    N, C, m, H, W, k, p, d = case
    kh, kw = (k, k) if isinstance(k, int) else k
    rng = np.random.default_rng(1)
    x = rng.standard_normal((N, C, H, W))
    w = rng.standard_normal((C * m, 1, kh, kw))
    b = rng.standard_normal(C * m)
    kw_ = dict(padding=p, dilation=d, groups=C, algorithm="direct")
    y = nc.conv2d(x, w, b, **kw_)
    dy = rng.standard_normal(y.shape)
    dx, dw, db = nc.conv2d_backward(dy, x, w, **kw_)
    directional_check(lambda x_: nc.conv2d(x_, w, b, **kw_), [x], dy, [dx], seed=1)
    directional_check(lambda w_: nc.conv2d(x, w_, b, **kw_), [w], dy, [dw], seed=2)
    np.testing.assert_allclose(db, dy.sum(axis=(0, 2, 3)), rtol=1e-12)
    dx2, dw2, db2 = nc.conv2d_backward(dy, x, w, bias=False, need_dx=False, **kw_)
    assert dx2 is None and db2 is None
    np.testing.assert_allclose(dw2, dw, rtol=1e-12)


STRIDED = [
    # (N, C, multiplier, H, W, kernel, stride, padding, dilation)
    (2, 3, 1, 9, 8, 3, 2, 1, 1),          # MobileNet's downsampling layer
    (1, 2, 2, 11, 10, 5, 2, 2, 1),        # 5x5, channel multiplier 2
    (2, 2, 1, 10, 11, 3, (3, 2), (0, 2), 1),  # strides and padding per axis
    (1, 3, 1, 12, 12, 3, 2, 2, 2),        # dilated
    (1, 2, 1, 9, 9, (1, 3), (1, 3), 0, 1),  # a 1x3 kernel, stride along one axis
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", STRIDED)
def test_strided_depthwise_matches_reference(case, dtype):
    """Strided planes split into their stride phases in L1, forward; the backward pass
    (stride-1 kernels on the spread-out dy) against finite differences."""
    N, C, m, H, W, k, s, p, d = case
    kh, kw = (k, k) if isinstance(k, int) else k
    rng = np.random.default_rng(3)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((C * m, 1, kh, kw)).astype(dtype)
    b = rng.standard_normal(C * m).astype(dtype)
    kw_ = dict(stride=s, padding=p, dilation=d, groups=C)
    y = nc.conv2d(x, w, b, algorithm="direct", **kw_)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(y, ref_conv2d(x, w, b, **kw_), rtol=tol, atol=tol)
    if dtype == np.float64:
        dy = rng.standard_normal(y.shape)
        dx, dw, _ = nc.conv2d_backward(dy, x, w, algorithm="direct", **kw_)
        f = dict(algorithm="direct", **kw_)
        directional_check(lambda x_: nc.conv2d(x_, w, b, **f), [x], dy, [dx], seed=1)
        directional_check(lambda w_: nc.conv2d(x, w_, b, **f), [w], dy, [dw], seed=2)


def test_depthwise_float32_backward_close_to_float64():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 5, 12, 10))
    w = rng.standard_normal((5, 1, 3, 3))
    dy = rng.standard_normal((3, 5, 12, 10))
    g64 = nc.conv2d_backward(dy, x, w, padding=1, groups=5)
    g32 = nc.conv2d_backward(dy.astype(np.float32), x.astype(np.float32),
                             w.astype(np.float32), padding=1, groups=5)
    for a, r in zip(g32, g64):
        assert a.dtype == np.float32
        scale = float(np.abs(r).max())
        np.testing.assert_allclose(a, r, rtol=1e-4, atol=1e-5 * scale)

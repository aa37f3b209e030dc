"""Non-finite values (inf, -inf, NaN) reach exactly the outputs that see them, whatever the
algorithm: hypothesis sweeps against float64 references that sum only the real terms of each
output (tests/reference_conv.py's ``*_exact``: zero padding adds no term, so ``0 * inf`` never
appears where the definition has no product).

Found by an independent fuzzer (issue 18, group A): the direct kernels multiplied explicit zero
padding by infinite weights (NaN in border pixels of ``dx``), a NaN weight poisoned all of
``dx``, and the weight gradient with reflect padding gave NaN where the definition gives -inf.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from reference_conv import ref_conv2d_backward_exact, ref_conv2d_exact
from reference_norm import local_response_norm_ref
from reference_pool import ref_adaptive_avg_pool2d, ref_avg_pool2d, ref_max_pool2d
from scipy import special

import nbconv as nc

SPECIALS = (np.inf, -np.inf, np.nan)


def assert_same_values(got, want, rtol, what=""):
    """NaN exactly where ``want`` is NaN, the same infinities, finite values close (relative
    to the largest finite magnitude of ``want``)."""
    got = np.asarray(got, np.float64)
    want = np.asarray(want, np.float64)
    assert got.shape == want.shape, what
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=f"NaN pattern {what}")
    inf = np.isinf(want)
    np.testing.assert_array_equal(got[inf], want[inf], err_msg=f"infinities {what}")
    fin = np.isfinite(want)
    assert np.isfinite(got[fin]).all(), f"non-finite where the reference is finite {what}"
    if fin.any():
        scale = max(1.0, float(np.abs(want[fin]).max()))
        assert np.abs(got[fin] - want[fin]).max() <= rtol * scale, what


def poison(a, rng, count):
    """A copy of ``a`` with ``count`` random entries set to inf, -inf or NaN."""
    a = a.copy()
    flat = a.reshape(-1)
    for _ in range(count):
        flat[rng.integers(flat.size)] = SPECIALS[rng.integers(3)]
    return a


@st.composite
def conv_cases(draw):
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    cg = draw(st.integers(1, 3))
    fg = draw(st.integers(1, 3))
    depthwise = draw(st.booleans()) and groups > 1
    if depthwise:
        cg = 1
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sy, sx = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    H = draw(st.integers(dh * (kh - 1) + 1, 9))
    W = draw(st.integers(dw * (kw - 1) + 1, 9))
    mode = draw(st.sampled_from(["zeros", "zeros", "reflect", "replicate", "circular"]))
    limit = min(H, W) - 1 if mode == "reflect" else min(H, W)
    padding = draw(st.sampled_from(["valid", "same", 0, 1, 2, (1, 2)]))
    if isinstance(padding, int) or isinstance(padding, tuple):
        pads = padding if isinstance(padding, tuple) else (padding, padding)
        if mode != "zeros" and max(pads) > limit:
            padding = 0
    if padding == "same" and mode != "zeros":
        padding = 0  # "same" may ask for more padding than reflect allows
    algorithm = draw(st.sampled_from(["direct", "im2col", "auto", "winograd", "tapgemm"]))
    winograd_ok = (sy, sx, dh, dw, groups) == (1, 1, 1, 1, 1) and 2 <= min(kh, kw)
    if (algorithm == "winograd" and not winograd_ok) or (algorithm == "tapgemm" and groups > 1):
        algorithm = "direct"
    return dict(N=draw(st.integers(1, 2)), C=cg * groups, F=fg * groups, H=H, W=W, kh=kh,
                kw=kw, stride=(sy, sx), dilation=(dh, dw), groups=groups, padding=padding,
                padding_mode=mode, algorithm=algorithm,
                dtype=draw(st.sampled_from([np.float64, np.float32])),
                where=draw(st.sampled_from(["x", "w", "dy", "x+w"])),
                count=draw(st.integers(1, 3)), seed=draw(st.integers(0, 2**16)))


@given(conv_cases())
def test_conv2d_nonfinite_matches_definition(case):
    rng = np.random.default_rng(case["seed"])
    dtype, where = case["dtype"], case["where"]
    x = rng.standard_normal((case["N"], case["C"], case["H"], case["W"])).astype(dtype)
    w = rng.standard_normal((case["F"], case["C"] // case["groups"], case["kh"],
                             case["kw"])).astype(dtype)
    b = rng.standard_normal(case["F"]).astype(dtype)
    if "x" in where:
        x = poison(x, rng, case["count"])
    if "w" in where:
        w = poison(w, rng, case["count"])
    geo = dict(stride=case["stride"], padding=case["padding"], dilation=case["dilation"],
               groups=case["groups"], padding_mode=case["padding_mode"])
    rtol = 1e-9 if dtype == np.float64 else 2e-4
    want = ref_conv2d_exact(x, w, b, **geo)
    got = nc.conv2d(x, w, b, algorithm=case["algorithm"], **geo)
    assert got.dtype == dtype
    assert_same_values(got, want, rtol, f"forward {case}")
    dy = rng.standard_normal(want.shape).astype(dtype)
    if where == "dy":
        dy = poison(dy, rng, case["count"])
    want_dx, want_dw, want_db = ref_conv2d_backward_exact(dy, x, w, **geo)
    dx, dw, db = nc.conv2d_backward(dy, x, w, algorithm=case["algorithm"], **geo)
    assert_same_values(dx, want_dx, rtol, f"dx {case}")
    assert_same_values(dw, want_dw, rtol, f"dweight {case}")
    assert_same_values(db, want_db, rtol, f"dbias {case}")


@pytest.mark.parametrize("algorithm", ["direct", "im2col", "auto"])
@pytest.mark.parametrize("C, F", [(2, 3), (16, 16), (32, 64)])
def test_conv2d_backward_infinite_weight_zero_padding(algorithm, C, F):
    """The fuzzer's case: an inf in the weights with zero padding; the data gradient is
    finite where the inf's tap never reads an input pixel (PyTorch agrees)."""
    rng = np.random.default_rng(C)
    x = rng.standard_normal((2, C, 6, 6))
    w = rng.standard_normal((F, C, 3, 3))
    w[0, 0, 0, 0] = np.inf
    dy = rng.standard_normal((2, F, 6, 6))
    dx, dw, _ = nc.conv2d_backward(dy, x, w, padding=1, algorithm=algorithm)
    want_dx, want_dw, _ = ref_conv2d_backward_exact(dy, x, w, padding=1)
    assert np.isfinite(want_dx[:, 0, 5, :]).all()  # the row the corner tap never reaches
    assert_same_values(dx, want_dx, 1e-9)
    assert_same_values(dw, want_dw, 1e-9)


@pytest.mark.parametrize("algorithm", ["direct", "im2col", "auto"])
def test_conv2d_backward_nan_weight_touches_only_its_pixels(algorithm):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 2, 5, 5))
    w = rng.standard_normal((3, 2, 3, 3))
    w[0, 0, 0, 0] = np.nan
    dy = rng.standard_normal((1, 3, 5, 5))
    dx = nc.conv2d_backward(dy, x, w, padding=1, algorithm=algorithm)[0]
    # tap (0, 0) with padding 1 reads input pixels (h, w) = (i - 1, j - 1): rows/cols 0..3
    assert np.isnan(dx[0, 0, :4, :4]).all()
    assert np.isfinite(dx[0, 0, 4, :]).all() and np.isfinite(dx[0, 0, :, 4]).all()
    assert np.isfinite(dx[0, 1]).all()


@pytest.mark.parametrize("algorithm", ["direct", "im2col"])
def test_conv2d_weight_grad_reflect_negative_infinity(algorithm):
    """Reflect padding copies a -inf into the padding; with dy > 0 every product is -inf or
    finite, so the weight gradient is -inf (not NaN) at the taps that read it."""
    x = np.ones((1, 1, 4, 4))
    x[0, 0, 1, 1] = -np.inf
    w = np.ones((1, 1, 3, 3))
    dy = np.full((1, 1, 4, 4), 0.5)
    dw = nc.conv2d_backward(dy, x, w, padding=1, padding_mode="reflect",
                            algorithm=algorithm)[1]
    want = ref_conv2d_backward_exact(dy, x, w, padding=1, padding_mode="reflect")[1]
    assert (want == -np.inf).all()
    assert_same_values(dw, want, 1e-12)


# --------------------------------------------------------------------------- other ops


@st.composite
def planes(draw, min_hw=1):
    N, C = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    H, W = draw(st.integers(min_hw, 8)), draw(st.integers(min_hw, 8))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    return poison(x, rng, draw(st.integers(1, 4)))


@given(planes(min_hw=2), st.integers(1, 2), st.integers(1, 2), st.booleans())
def test_pooling_nonfinite_matches_reference(x, k, s, ceil_mode):
    rtol = 1e-9 if x.dtype == np.float64 else 1e-5
    p = k // 2
    y, idx = nc.max_pool2d(x, k, s, p, ceil_mode=ceil_mode, return_indices=True)
    want_y, want_idx = ref_max_pool2d(x, (k, k), (s, s), (p, p), ceil_mode=ceil_mode)
    assert_same_values(y, want_y, rtol)
    np.testing.assert_array_equal(idx, want_idx)
    got = nc.avg_pool2d(x, k, s, p, ceil_mode=ceil_mode)
    assert_same_values(got, ref_avg_pool2d(x.astype(np.float64), (k, k), (s, s), (p, p),
                                           ceil_mode=ceil_mode), rtol)
    out = (max(1, x.shape[2] // 2), max(1, x.shape[3] - 1))
    assert_same_values(nc.adaptive_avg_pool2d(x, out),
                       ref_adaptive_avg_pool2d(x.astype(np.float64), out), rtol)


@given(planes())
def test_pointwise_and_norm_nonfinite_match_numpy(x):
    """Elementwise ops map NaN to NaN (ReLU too, as in PyTorch) and inf by their formula;
    softmax, log-softmax, global pooling, LRN, linear and batch norm spread a non-finite
    value over exactly the outputs that depend on it."""
    rtol = 1e-9 if x.dtype == np.float64 else 2e-5
    x64 = x.astype(np.float64)
    assert_same_values(nc.relu(x), np.maximum(x64, 0.0), rtol)  # np.maximum keeps NaN
    assert_same_values(nc.leaky_relu(x, 0.1), np.where(x64 < 0, 0.1 * x64, x64), rtol)
    assert_same_values(nc.tanh(x), np.tanh(x64), rtol)
    assert_same_values(nc.sigmoid(x), special.expit(x64), rtol)
    with np.errstate(invalid="ignore"):
        want_log = x64 - x64.max(axis=-1, keepdims=True)
        want_log = want_log - np.log(np.exp(want_log).sum(axis=-1, keepdims=True))
    assert_same_values(nc.log_softmax(x, axis=-1), want_log, rtol)
    with np.errstate(invalid="ignore"):
        assert_same_values(nc.global_avg_pool2d(x), x64.mean(axis=(2, 3), keepdims=True), rtol)
    assert_same_values(nc.softmax(x, axis=-1), _softmax_ref(x64), rtol)
    assert_same_values(nc.local_response_norm(x, 3), local_response_norm_ref(x64, 3), rtol)
    flat = x.reshape(x.shape[0], -1)
    w = np.random.default_rng(0).standard_normal((4, flat.shape[1])).astype(x.dtype)
    want = np.zeros((flat.shape[0], 4))
    for n in range(flat.shape[0]):  # a sum of products per output: no BLAS shortcuts
        for o in range(4):
            want[n, o] = np.sum(flat[n].astype(np.float64) * w[o])
    assert_same_values(nc.linear(flat, w), want, rtol)
    rm, rv = np.zeros(x.shape[1]), np.ones(x.shape[1])
    want_bn = x64 / np.sqrt(1.0 + 1e-5)
    assert_same_values(nc.batch_norm(x, rm, rv), want_bn, rtol)


def _softmax_ref(x):
    """Softmax along the last axis by its definition ``exp(x) / sum(exp(x))``, shifted by
    the largest value (inf - inf is NaN, as in PyTorch: a row holding +inf gives NaN where
    the shift turns it into NaN)."""
    with np.errstate(over="ignore", invalid="ignore"):
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize("p", [0.5, 1.0])
def test_dropout_keeps_nan_like_pytorch(p):
    """``y = x * mask`` for every p: a dropped NaN stays NaN, a dropped finite value is 0."""
    x = np.array([np.nan, np.inf, 1.0, -2.0] * 8)
    y, mask = nc.dropout(x, p, rng=0, return_mask=True)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(x * mask))
    fin = ~np.isnan(x * mask)
    np.testing.assert_array_equal(y[fin], (x * mask)[fin])
    assert np.isnan(y[0])


@pytest.mark.parametrize("algorithm", ["direct", "im2col", "winograd", "tapgemm", "auto"])
@pytest.mark.parametrize("x_shape, k, stride, padding", [
    ((3, 16, 1, 1), 3, 1, 1),    # resnet18's last stage on 32x32 input: only the centre tap
    ((2, 4, 2, 2), 3, 2, 1),     # strided onto 1x1: a 2x2 corner of the kernel
    ((2, 4, 1, 5), (3, 3), 1, 1),  # one row: the middle kernel row only
    ((2, 4, 2, 3), 5, 1, 2),     # 5x5 on 2x3 maps: rows 1..3 of the kernel, all columns
    ((1, 2, 1, 3), 3, 1, (1, 0)),  # 1x1 output: rows trimmed, columns all used
])
def test_taps_that_only_read_padding_are_dropped_exactly(algorithm, x_shape, k, stride,
                                                         padding):
    """Kernel rows/columns that read nothing but zero padding are skipped (9x less work for a
    3x3 layer on 1x1 maps); results, including non-finite ones and the zero weight gradient
    of the skipped taps, are those of the definition."""
    rng = np.random.default_rng(sum(x_shape))
    kh, kw = (k, k) if isinstance(k, int) else k
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal((6, x_shape[1], kh, kw))
    w[0, 0, 0, 0] = np.inf  # a corner tap: dropped wherever it only meets padding
    b = rng.standard_normal(6)
    geo = dict(stride=stride, padding=padding)
    if algorithm == "winograd" and stride != 1:
        algorithm = "direct"
    want = ref_conv2d_exact(x, w, b, **geo)
    assert_same_values(nc.conv2d(x, w, b, algorithm=algorithm, **geo), want, 1e-12)
    dy = rng.standard_normal(want.shape)
    for got, ref in zip(nc.conv2d_backward(dy, x, w, algorithm=algorithm, **geo),
                        ref_conv2d_backward_exact(dy, x, w, **geo)):
        assert_same_values(got, ref, 1e-12)


def test_trim_keeps_exactly_the_taps_that_read_the_input():
    from nbconv._checks.conv import geometry as _geometry
    from nbconv.conv.convplan import trim_taps as _trim_taps

    def kept(x_shape, w_shape, stride, padding):
        g = _geometry("t", x_shape, w_shape, stride, padding, 1, 1, "zeros", "")
        t = _trim_taps(w_shape[2], w_shape[3], g, x_shape[2], x_shape[3])
        return None if t is None else ((t[0][1] - t[0][0], t[0][3] - t[0][2]), t[0])

    assert kept((1, 1, 1, 1), (1, 1, 3, 3), 1, 1) == ((1, 1), (1, 2, 1, 2))
    assert kept((1, 1, 2, 2), (1, 1, 3, 3), 2, 1) == ((2, 2), (1, 3, 1, 3))
    assert kept((1, 1, 8, 8), (1, 1, 3, 3), 1, 1) is None  # every tap reads the input


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("x_shape, w_shape, padding", [
    ((1, 1, 28, 28), (6, 1, 5, 5), 0),    # LeNet c1: its inputs are checked (pixel vectors)
    ((1, 6, 12, 12), (16, 6, 5, 5), 0),   # LeNet c2: its output is checked (register blocks)
    ((2, 3, 9, 9), (16, 3, 3, 3), 1),     # zero padding read by the register blocks
    ((1, 16, 6, 6), (16, 16, 3, 3), 1),   # padding times an infinite weight: output checked
])
@pytest.mark.parametrize("where", ["finite", "x", "weight", "bias"])
@pytest.mark.parametrize("algorithm", ["direct", "auto"])
def test_bound_forward_follows_the_policy(x_shape, w_shape, padding, relu, where, algorithm):
    """``engine.bind_forward`` (a planned network's convolution, its checks decided once)
    puts inf and NaN where the definition does: in the input, in the constant weights, in
    the constant bias; ReLU keeps NaN.  The direct families' own path and the generic one
    (tap-GEMM for the last layer under "auto")."""
    from nbconv._checks.conv import geometry
    from nbconv.conv import engine

    rng = np.random.default_rng(11)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    b = rng.standard_normal(w_shape[0]).astype(np.float32)
    if where == "x":
        x[0, -1, 3, 4], x[-1, 0, 5, 2] = np.nan, np.inf
    elif where == "weight":
        w[1, 0, 2, 2] = -np.inf
    elif where == "bias":
        b[2] = np.nan
    g = geometry("conv2d", x.shape, w.shape, 1, padding, 1, 1, "zeros", "test")
    call = engine.bind_forward("conv2d", x.shape, w, b, g, algorithm, relu)
    y = np.full((x_shape[0], w_shape[0], g.OH, g.OW), 7.0, np.float32)
    for _ in range(2):  # a second call with the same buffer: nothing carried over
        call(x, y)
        want = ref_conv2d_exact(x.astype(np.float64), w.astype(np.float64),
                                b.astype(np.float64), padding=padding)
        if relu:
            want = np.where(want <= 0, 0.0, want)
        assert_same_values(y, want, 1e-4, where)

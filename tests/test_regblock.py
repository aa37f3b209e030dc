"""Register-blocked direct convolution (``nbconv/kernels/conv/register_blocks.py``) against the
independent reference ``reference_conv.ref_conv2d`` (scipy.signal.correlate2d per channel
pair), through the driver that the direct algorithm uses."""

from __future__ import annotations

import numpy as np
import pytest
from closeness import assert_scaled_close
from hypothesis import given, settings
from hypothesis import strategies as st
from reference_conv import random_layer, ref_conv2d, ref_conv2d_weight_grad
from spying import count_calls

import nbconv as nc
from nbconv._checks.conv import geometry as _geometry
from nbconv.conv import direct as _direct
from nbconv.conv import plan as _plan
from nbconv.kernels.conv import register_blocks as _regblock

RTOL = {np.float32: 2e-5, np.float64: 1e-12}


def _run(x, w, b, serial=None, **kw):
    """The register-block forward; ``serial`` True or False forces the serial twin or the
    parallel kernel (None: as :func:`nbconv.conv.plan.serial_forward` decides)."""
    g = _geometry("conv2d", x.shape, w.shape, kw.get("stride", 1), kw.get("padding", 0),
                        kw.get("dilation", 1), 1, "zeros", "test")
    y = np.full((x.shape[0], w.shape[0], g.OH, g.OW), np.nan, dtype=x.dtype)
    with pytest.MonkeyPatch.context() as mp:
        if serial is not None:
            mp.setattr(_plan, "serial_forward", lambda *shape: serial)
        _direct._regblock_forward(x, w, b, y, g)
    return y


def _close(got, want, dtype):
    assert_scaled_close(got, want, RTOL[dtype])


@given(
    dtype=st.sampled_from([np.float32, np.float64]),
    N=st.integers(1, 3), C=st.integers(1, 4), F=st.integers(1, 20),
    H=st.integers(1, 12), W=st.integers(1, 12), kh=st.integers(1, 4), kw=st.integers(1, 4),
    sy=st.integers(1, 3), sx=st.integers(1, 3), dh=st.integers(1, 2), dw=st.integers(1, 2),
    ph=st.integers(0, 2), pw=st.integers(0, 2), seed=st.integers(0, 2**16),
    serial=st.booleans(),
)
@settings(max_examples=80, deadline=None)
def test_regblock_matches_reference(dtype, N, C, F, H, W, kh, kw, sy, sx, dh, dw, ph, pw,
                                    seed, serial):
    """Any filter count (whole and partial vectors of 8 float32 / 4 float64 lanes, one or two
    vectors per block), any output width (blocks of 4 pixels and single-pixel tails),
    strides, dilations and padding; the parallel kernel and its serial twin."""
    if H + 2 * ph < dh * (kh - 1) + 1 or W + 2 * pw < dw * (kw - 1) + 1:
        return
    x, w, b = random_layer(seed, dtype, (N, C, H, W), (F, C, kh, kw))
    kw_ = dict(stride=(sy, sx), padding=(ph, pw), dilation=(dh, dw))
    y = _run(x, w, b, serial, **kw_)
    _close(y, ref_conv2d(x, w, b, **kw_), dtype)


@pytest.mark.parametrize("shape_x, shape_w, kw", [
    ((64, 6, 12, 12), (16, 6, 5, 5), {}),                       # LeNet c2
    ((2, 3, 40, 37), (64, 3, 7, 7), dict(stride=2, padding=3)),  # an NNlib-like first layer
])
def test_regblock_benchmark_shapes(shape_x, shape_w, kw):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape_x).astype(np.float32)
    w = rng.standard_normal(shape_w).astype(np.float32)
    b = rng.standard_normal(shape_w[0]).astype(np.float32)
    _close(_run(x, w, b, **kw), ref_conv2d(x, w, b, **kw), np.float32)


def test_regblock_non_finite_values_stay_in_their_outputs():
    """A NaN reaches exactly the outputs whose window holds it."""
    x = np.ones((1, 2, 6, 9))
    x[0, 1, 2, 4] = np.nan
    w = np.ones((3, 2, 3, 3))
    y = _run(x, w, np.zeros(3), padding=1)
    want = ref_conv2d(x, w, np.zeros(3), padding=1)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(want))


def test_direct_algorithm_uses_regblock(monkeypatch):
    """The direct algorithm's forward pass runs the register-blocked kernel for groups 1
    with at least 16 filters, and the other direct kernels for fewer filters or strided
    layers with long rows (stride phases)."""
    calls = count_calls(monkeypatch, _direct, "_regblock_forward")
    rng = np.random.default_rng(2)
    # 16 channels: 144 terms (first layers' shorter reductions take the pixel vectors)
    x, w = rng.standard_normal((2, 16, 9, 9)), rng.standard_normal((16, 16, 3, 3))
    y = nc.conv2d(x, w, padding=1, algorithm="direct")
    assert len(calls) == 1
    _close(y, ref_conv2d(x, w, padding=1), np.float64)
    y = nc.conv2d(x, w, padding=1, stride=2, algorithm="direct")  # short rows
    assert len(calls) == 2
    _close(y, ref_conv2d(x, w, padding=1, stride=2), np.float64)
    nc.conv2d(x, w[:4], padding=1, algorithm="direct")
    nc.conv2d(np.ones((1, 3, 40, 40)), w[:, :3], padding=1, stride=2, algorithm="direct")
    assert len(calls) == 2


@given(
    dtype=st.sampled_from([np.float32, np.float64]),
    N=st.integers(1, 3), C=st.integers(1, 4), F=st.integers(1, 20),
    H=st.integers(3, 10), W=st.integers(3, 10), kh=st.integers(1, 3), kw=st.integers(1, 6),
    sy=st.integers(1, 2), sx=st.integers(1, 2), dh=st.integers(1, 2), dw=st.integers(1, 2),
    ph=st.integers(0, 2), pw=st.integers(0, 2), seed=st.integers(0, 2**16),
)
@settings(max_examples=60, deadline=None)
def test_regblock_weight_gradient(dtype, N, C, F, H, W, kh, kw, sy, sx, dh, dw, ph, pw, seed):
    """The register-blocked weight gradient (taps in blocks of 4 and single-tap tails, one or
    two filter vectors) equals the reference sum over pixels of dy times the input window."""
    if H + 2 * ph < dh * (kh - 1) + 1 or W + 2 * pw < dw * (kw - 1) + 1:
        return
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((F, C, kh, kw)).astype(dtype)
    g = _geometry("conv2d", x.shape, w.shape, (sy, sx), (ph, pw), (dh, dw), 1, "zeros",
                        "test")
    dy = rng.standard_normal((N, F, g.OH, g.OW)).astype(dtype)
    gw = np.full(w.shape, np.nan, dtype=dtype)
    _direct._regblock_weight_grad(dy, x, gw, g)
    _close(gw, ref_conv2d_weight_grad(dy, x, kh, kw, (sy, sx), (ph, pw), (dh, dw)), dtype)


def test_lenet_like_backward_uses_regblock_weight_gradient(monkeypatch):
    """Stride-1 layers with >= 16 filters and a small dy take the register-blocked weight
    gradient (with the bias gradient beside it); the gradients match finite differences."""
    from gradcheck import directional_check

    calls = count_calls(monkeypatch, _direct, "_regblock_weight_grad")
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 6, 12, 12))
    w = rng.standard_normal((16, 6, 5, 5))
    b = rng.standard_normal(16)
    dy = rng.standard_normal((4, 16, 8, 8))
    dx, dw, db = nc.conv2d_backward(dy, x, w, algorithm="direct")
    assert calls
    directional_check(lambda w_: nc.conv2d(x, w_, b, algorithm="direct"), [w], dy, [dw], seed=4)
    np.testing.assert_allclose(db, dy.sum(axis=(0, 2, 3)), rtol=1e-12)


def test_regblock_dispatch_rules(monkeypatch):
    """Which layers take the register-blocked kernels (each rule from a measurement)."""
    assert _plan.regblock_fits(16, 6, 5, 5, 4)          # LeNet c2 forward
    assert _plan.regblock_fits(64, 3, 11, 11, 4)        # AlexNet c1 forward (93 KiB)
    assert not _plan.regblock_fits(6, 1, 5, 5, 4)       # LeNet c1: too few filters
    assert not _plan.regblock_fits(128, 128, 3, 3, 4)   # VGG: weights beyond L2
    assert not _plan.regblock_fits(64, 256, 1, 1, 4)    # 1x1: a plain GEMM
    assert _plan.regblock_dw_fits(64, 8, 8, 16, 6, 5, 4, 2)         # LeNet c2 weight gradient
    assert not _plan.regblock_dw_fits(64, 24, 24, 6, 1, 5, 4, 2)    # LeNet c1: 5 tasks
    assert not _plan.regblock_dw_fits(1, 28, 28, 128, 128, 3, 4, 2)  # NNlib3: dy traffic


@pytest.mark.parametrize("serial", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kw, sx", _regblock.ROW_TAPS)
@pytest.mark.parametrize("F", [5, 16, 40])
def test_row_taps_match_reference(monkeypatch, dtype, kw, sx, F, serial):
    """Every row-tap shape, one and two filter vectors (and a partial one), outputs wider than
    a block with a remainder, padding and a second kernel row, as plain NCHW and as rows of
    channels with the fused ReLU; a NaN stays in the outputs whose windows hold it; the
    parallel kernel and its serial twin."""
    monkeypatch.setattr(_plan, "serial_forward", lambda *shape: serial)
    assert _regblock.row_taps(kw, sx, 1) > 0
    N, C, kh = 2, 3, 2
    W = (2 * _regblock.NP + 3 - 1) * sx + kw - 2  # 2 full blocks and 3 pixels, padding 1
    x, w, b = random_layer(kw * 10 + sx, dtype, (N, C, 4, W), (F, C, kh, kw))
    x[1, 2, 1, W // 2] = np.nan
    kw_ = dict(stride=(1, sx), padding=(0, 1))
    want = ref_conv2d(x, w, b, **kw_)
    got = _run(x, w, b, **kw_)
    assert got.shape[3] == 2 * _regblock.NP + 3
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    ok = ~np.isnan(want)
    _close(np.where(ok, got, 0), np.where(ok, want, 0), dtype)
    g = _geometry("conv2d", x.shape, w.shape, (1, sx), (0, 1), 1, 1, "zeros", "test")
    rows = np.full((g.OH, g.OW, N, F), np.nan, dtype=dtype)
    _direct._prepared_regblock(N, w, g, rows=True)(x, b, rows, True)
    relu = np.where(want <= 0, 0, want).transpose(2, 3, 0, 1)
    np.testing.assert_array_equal(np.isnan(rows), np.isnan(relu))
    _close(np.where(np.isnan(relu), 0, rows), np.where(np.isnan(relu), 0, relu), dtype)


def test_row_taps_codes_and_block_pixels_of_each_isa():
    """Row taps only for the listed (width, stride) pairs at dilation 1; 8-pixel blocks need
    AVX-512's 32 registers, AVX2 keeps 4."""
    for code, (kw, sx) in enumerate(_regblock.ROW_TAPS, start=1):
        assert _regblock.row_taps(kw, sx, 1) == code
        assert _regblock.row_taps(kw, sx, 2) == 0
    assert _regblock.row_taps(4, 1, 1) == 0 and _regblock.row_taps(5, 2, 1) == 0
    assert _regblock.block_pixels(32) == 4 and _regblock.block_pixels(64) == 8


def test_explain_names_the_blocks():
    """explain() says how the direct families block a layer: register blocks' pixels, filter
    vectors and row taps; pixel vectors' lanes (native at stride 1, AVX2's on stride
    phases)."""
    from nbconv.kernels._ir import VECTOR_BYTES
    lenet_c2 = str(nc.conv.explain((32, 6, 12, 12), (16, 6, 5, 5)).forward)
    nvec = 1 if VECTOR_BYTES == 64 else 2
    assert (f"regblock ({_regblock.NP}-pixel blocks x {nvec} filter vector"
            f"{'s' if nvec > 1 else ''}, row taps") in lenet_c2
    no_taps = str(nc.conv.explain((2, 6, 12, 12), (16, 6, 4, 4)).forward)
    assert "regblock" in no_taps and "row taps" not in no_taps
    lenet_c1 = str(nc.conv.explain((32, 1, 28, 28), (6, 1, 5, 5)).forward)
    assert f"pixvec ({VECTOR_BYTES // 4}-lane pixel vectors" in lenet_c1
    phases = str(nc.conv.explain((32, 3, 32, 32), (8, 3, 3, 3), stride=2, padding=1).forward)
    assert "phases (8-lane pixel vectors on stride phases" in phases
    assert "(" not in str(nc.conv.explain((32, 64, 8, 8), (64, 64, 3, 3),
                                          padding=1).forward).split("kernels")[1].split("\n")[0]


def test_block_note_says_when_the_kernel_stays_on_the_calling_thread():
    """LeNet's layers at batch 1 on two threads: c1 (86,400 multiply-adds) on the calling
    thread, c2 (153,600) not; at batch 32 neither; on one thread both."""
    c1 = _geometry("conv2d", (1, 1, 28, 28), (6, 1, 5, 5), 1, 0, 1, 1, "zeros", "test")
    c2 = _geometry("conv2d", (1, 6, 12, 12), (16, 6, 5, 5), 1, 0, 1, 1, "zeros", "test")
    here = "on the calling thread"
    assert here in _direct.block_note("pixvec", (6, 1, 5, 5), c1, 4, N=1, threads=2)
    assert here not in _direct.block_note("regblock", (16, 6, 5, 5), c2, 4, N=1, threads=2)
    assert here not in _direct.block_note("pixvec", (6, 1, 5, 5), c1, 4, N=32, threads=2)
    assert here in _direct.block_note("regblock", (16, 6, 5, 5), c2, 4, N=32, threads=1)

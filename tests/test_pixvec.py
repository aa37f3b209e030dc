"""Pixel-vector register blocks (``nbconv/kernels/conv/pixel_vectors.py``) against the independent
reference ``reference_conv.ref_conv2d`` (scipy.signal.correlate2d per channel pair), through
the driver that the direct algorithm uses, and as the data gradient of layers with few input
channels (finite differences)."""

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
from nbconv.functional import conv as _conv
from nbconv.kernels.conv import pixel_vectors as _pixvec

RTOL = {np.float32: 2e-5, np.float64: 1e-12}


def _run(x, w, b, padding=0, dilation=1, serial=None):
    """The pixel-vector forward; ``serial`` True or False forces the serial twin or the
    parallel kernel (None: as :func:`nbconv.conv.plan.serial_forward` decides)."""
    g = _geometry("conv2d", x.shape, w.shape, 1, padding, dilation, 1, "zeros", "test")
    y = np.full((x.shape[0], w.shape[0], g.OH, g.OW), np.nan, dtype=x.dtype)
    with pytest.MonkeyPatch.context() as mp:
        if serial is not None:
            mp.setattr(_plan, "serial_forward", lambda *shape: serial)
        _direct._pixvec_forward(x, w, b, y, g)
    return y


def _close(got, want, dtype):
    assert_scaled_close(got, want, RTOL[dtype])


#: layers below 16 filters: every filter-group split, rows shorter and longer than a block,
#: padding up to the kernel's reach, dilation, both dtypes
_SMALL_LAYERS = dict(
    dtype=st.sampled_from([np.float32, np.float64]), C=st.integers(1, 4), F=st.integers(1, 15),
    H=st.integers(1, 14), kh=st.integers(1, 5), kw=st.integers(1, 5), dh=st.integers(1, 2),
    dw=st.integers(1, 2), ph=st.integers(0, 3), pw=st.integers(0, 3), seed=st.integers(0, 2**16),
)


@given(N=st.integers(1, 6), W=st.integers(1, 14), serial=st.booleans(), **_SMALL_LAYERS)
@settings(max_examples=100, deadline=None)
def test_pixvec_matches_reference(dtype, N, C, F, H, W, kh, kw, dh, dw, ph, pw, seed, serial):
    """Every filter count below 16 (one to three groups of 1-6 filters), output rows shorter
    and longer than a block, blocks straddling rows, shared and separate left/right padding,
    dilations; both dtypes; the parallel kernel and its serial twin."""
    if H + 2 * ph < dh * (kh - 1) + 1 or W + 2 * pw < dw * (kw - 1) + 1:
        return
    x, w, b = random_layer(seed, dtype, (N, C, H, W), (F, C, kh, kw))
    kw_ = dict(padding=(ph, pw), dilation=(dh, dw))
    _close(_run(x, w, b, serial=serial, **kw_), ref_conv2d(x, w, b, **kw_), dtype)


@given(N=st.integers(1, 3), C=st.integers(1, 3), H=st.integers(1, 12), W=st.integers(1, 12),
       sy=st.integers(1, 4), sx=st.integers(1, 4), pt=st.integers(0, 5), pl=st.integers(0, 5),
       Hq=st.integers(1, 8), Wq=st.integers(1, 8), seed=st.integers(0, 2**16))
@settings(max_examples=60, deadline=None)
def test_stride_phases_match_slicing(N, C, H, W, sy, sx, pt, pl, Hq, Wq, seed):
    """Phase ``(a, b)`` of a channel is ``x_padded[a::sy, b::sx]``, cropped or zero-extended
    to the planes asked for."""
    from nbconv.kernels.conv.pixel_vectors import _stride_phases

    x = np.random.default_rng(seed).standard_normal((N, C, H, W))
    big = np.zeros((N, C, pt + Hq * sy + H, pl + Wq * sx + W))
    big[:, :, pt:pt + H, pl:pl + W] = x
    want = np.stack([big[:, c, a::sy, b::sx][:, :Hq, :Wq] for c in range(C)
                     for a in range(sy) for b in range(sx)], axis=1)
    got = np.full((N, C * sy * sx, Hq, Wq), np.nan)
    _stride_phases(x, pt, pl, sy, sx, got)
    np.testing.assert_array_equal(got, want)


def _run_strided(x, w, b, stride, padding=0, dilation=1):
    g = _geometry("conv2d", x.shape, w.shape, stride, padding, dilation, 1, "zeros",
                        "test")
    y = np.full((x.shape[0], w.shape[0], g.OH, g.OW), np.nan, dtype=x.dtype)
    _direct._phase_forward(x, w, b, y, g)
    return y


@given(N=st.integers(1, 4), W=st.integers(1, 16), sy=st.integers(1, 4), sx=st.integers(1, 4),
       F=st.integers(1, 20), **{k: v for k, v in _SMALL_LAYERS.items() if k != "F"})
@settings(max_examples=100, deadline=None)
def test_stride_phase_forward_matches_reference(dtype, N, C, F, H, W, kh, kw, dh, dw, ph, pw,
                                                sy, sx, seed):
    """Strided layers on the stride phases: strides 1-4 per axis, dilation, padding, filter
    counts past one group of six; both dtypes."""
    if H + 2 * ph < dh * (kh - 1) + 1 or W + 2 * pw < dw * (kw - 1) + 1:
        return
    x, w, b = random_layer(seed, dtype, (N, C, H, W), (F, C, kh, kw))
    kw_ = dict(stride=(sy, sx), padding=(ph, pw), dilation=(dh, dw))
    _close(_run_strided(x, w, b, **kw_), ref_conv2d(x, w, b, **kw_), dtype)


@pytest.mark.parametrize("groups, C, F", [(2, 4, 6), (3, 6, 9), (4, 8, 16)])
@pytest.mark.parametrize("relu", [False, True])
def test_stride_phase_forward_grouped(groups, C, F, relu):
    """Grouped strided layers: the stride phases group by group, ReLU fused or not."""
    rng = np.random.default_rng(groups)
    x = rng.standard_normal((3, C, 13, 11))
    w = rng.standard_normal((F, C // groups, 3, 2))
    b = rng.standard_normal(F)
    kw = dict(stride=(2, 3), padding=(1, 2), dilation=(2, 1), groups=groups)
    g = _geometry("conv2d", x.shape, w.shape, (2, 3), (1, 2), (2, 1), groups, "zeros",
                        "test")
    y = np.full((3, F, g.OH, g.OW), np.nan)
    _direct._phase_forward(x, w, b, y, g, relu)
    want = ref_conv2d(x, w, b, **kw)
    _close(y, np.maximum(want, 0) if relu else want, np.float64)
    _close(nc.conv2d(x, w, b, algorithm="direct", **kw), want, np.float64)


def test_stride_phase_non_finite_values_stay_in_their_outputs():
    """A NaN and an inf reach exactly the outputs whose windows hold them (7x7, stride 2:
    NNlib's first layer in small)."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 20, 21))
    x[1, 2, 9, 4] = np.nan
    x[0, 0, 0, 20] = np.inf
    w = np.abs(rng.standard_normal((8, 3, 7, 7)))
    y = _run_strided(x, w, np.zeros(8), 2, padding=3)
    want = ref_conv2d(x, w, np.zeros(8), stride=2, padding=3)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(y), np.isinf(want))
    finite = np.isfinite(want)
    assert 0 < finite.sum() < finite.size
    np.testing.assert_allclose(y[finite], want[finite])


def test_direct_algorithm_uses_stride_phases(monkeypatch):
    """Strided groups-1 layers with kernels larger than 1x1 take the stride phases, with the
    ReLU in the store when fused; grouped and 1x1 ones do not, nor those that the
    register-blocked kernel takes."""
    calls = count_calls(monkeypatch, _direct, "_phase_forward")
    rng = np.random.default_rng(4)
    # 5x5: 75 terms, the stride phases' ground on either ISA
    x, w = rng.standard_normal((2, 3, 35, 36)), rng.standard_normal((64, 3, 5, 5))
    _close(nc.conv2d(x, w, stride=2, padding=3),
           ref_conv2d(x, w, stride=2, padding=3), np.float64)
    assert len(calls) == 1
    y = _conv._conv2d_relu(x, w, None, stride=2, padding=3)
    _close(y, np.maximum(ref_conv2d(x, w, stride=2, padding=3), 0), np.float64)
    assert len(calls) == 2
    nc.conv2d(x[:, :2], np.ones((4, 1, 3, 3)), stride=2, groups=2, algorithm="direct")
    nc.conv2d(x, np.ones((4, 3, 1, 1)), stride=2, algorithm="direct")
    nc.conv2d(x[:, :, :9, :9], w, stride=2, padding=3, algorithm="direct")  # short rows
    assert len(calls) == 2


@pytest.mark.parametrize("lanes", [8, 16])
def test_strided_regblock_rule_of_each_isa(lanes):
    """The rule as a function of (shape, ISA): float32 with AVX2's 8 lanes or AVX-512's 16."""
    def rule(F, C, k, OW):
        return _plan.strided_regblock(F, C, k, k, OW, 4, lanes=lanes)

    wide = lanes == 16  # 64-byte vectors: long reductions take the blocks at any filter count
    assert rule(64, 3, 7, 112) == wide      # NNlib's first layer (147 terms)
    assert rule(64, 3, 7, 16) == wide       # resnet18's CIFAR stem
    assert rule(64, 16, 3, 28) == wide      # 64 filters, long rows, 144 terms
    assert not rule(32, 3, 3, 16)           # 32 filters, 27 terms
    assert not rule(64, 3, 5, 16)           # 75 terms
    assert rule(32, 16, 3, 16)              # 32 filters, 144 terms
    assert rule(64, 32, 3, 8)               # short rows
    assert not rule(8, 32, 3, 8)            # too few filters for it


@pytest.mark.parametrize("stage_bytes", [0, 1 << 20])
@pytest.mark.parametrize("padding, dilation", [((2, 2), 1), ((0, 3), (1, 2)), ((4, 4), 1)])
def test_pixvec_padding_by_pass_or_by_task(monkeypatch, stage_bytes, padding, dilation):
    """The input padded in a pass of its own, or by each task into its scratch (a batch of
    two images per thread or more), including padding wider than the kernel reaches (the
    data gradient then crops dy's padding) and shared left/right padding."""
    monkeypatch.setattr(_plan, "PIXVEC_STAGE_BYTES", stage_bytes)
    rng = np.random.default_rng(6)
    x = rng.standard_normal((5, 3, 9, 10))
    w = rng.standard_normal((5, 3, 3, 3))
    b = rng.standard_normal(5)
    _close(_run(x, w, b, padding=padding, dilation=dilation),
           ref_conv2d(x, w, b, padding=padding, dilation=dilation), np.float64)


@pytest.mark.parametrize("serial", [False, True])
@pytest.mark.parametrize("blocks", [1, 3])
def test_pixvec_tasks_split_images(monkeypatch, blocks, serial):
    """Tasks of a few blocks each (a batch of one large image) cover every output once, in
    the parallel kernel and in its serial twin."""
    monkeypatch.setattr(_plan, "PIXVEC_TASK_BYTES", blocks * 6 * 16 * 4)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, 2, 23, 29)).astype(np.float32)
    w = rng.standard_normal((6, 2, 3, 3)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    _close(_run(x, w, b, padding=1, serial=serial), ref_conv2d(x, w, b, padding=1),
           np.float32)


def test_serial_forward_rule():
    """The direct forward stays on the calling thread for layers of at most SERIAL_MACS
    multiply-adds or a single thread: LeNet c1 at batch 1 (86,400), not c2 (153,600) on two
    threads; a pure function of the shape and the thread count."""
    assert _plan.serial_forward(1, (6, 1, 5, 5), 24, 24, 2)
    assert not _plan.serial_forward(1, (16, 6, 5, 5), 8, 8, 2)
    assert _plan.serial_forward(1, (16, 6, 5, 5), 8, 8, 1)
    assert not _plan.serial_forward(32, (6, 1, 5, 5), 24, 24, 4)
    limit = _plan.SERIAL_MACS
    assert _plan.serial_forward(1, (limit, 1, 1, 1), 1, 1, 2)
    assert not _plan.serial_forward(1, (limit + 1, 1, 1, 1), 1, 1, 2)


def test_pixvec_task_sizes_follow_the_work(monkeypatch):
    """Little work: one task per thread (LeNet c1 at batch 1: 14 blocks, 7 a task on two
    threads) rather than four a thread of one block; much work: four tasks a thread."""
    monkeypatch.setattr(_direct.numba, "get_num_threads", lambda: 2)
    w = np.zeros((6, 1, 5, 5), np.float32)
    B = _pixvec.block_positions(6, 4, True)
    nblk = -(-(23 * 28 + 24) // B)
    _, per = _direct._pixvec_layout(w, 25, 1, 24, 24, 28, wide=True)
    assert per == -(-nblk // 2)
    _, per = _direct._pixvec_layout(w, 25, 64, 24, 24, 28, wide=True)
    assert per == min(_plan.PIXVEC_TASK_BYTES // (6 * B * 4), -(-64 * nblk // 8))


def test_pixvec_non_finite_values_stay_in_their_outputs():
    """A NaN reaches exactly the outputs whose window holds it; the dropped columns and the
    slack past the last image (read, never kept) leave no trace."""
    x = np.ones((2, 2, 6, 9))
    x[1, 1, 2, 4] = np.nan
    w = np.ones((3, 2, 3, 3))
    y = _run(x, w, np.zeros(3), padding=(0, 1))
    want = ref_conv2d(x, w, np.zeros(3), padding=(0, 1))
    np.testing.assert_array_equal(np.isnan(y), np.isnan(want))
    np.testing.assert_allclose(y[~np.isnan(y)], want[~np.isnan(want)])


def test_direct_algorithm_uses_pixvec(monkeypatch):
    """Stride-1 layers of groups 1 with fewer than 16 filters, or with a reduction of at most
    PIXVEC_MAX_TERMS terms (first layers), take the pixel-vector blocks, forward and for the
    data gradient of fewer than 16 input channels (LeNet's layers)."""
    calls = count_calls(monkeypatch, _direct, "_pixvec_forward")
    rng = np.random.default_rng(2)
    x, w = rng.standard_normal((2, 1, 12, 12)), rng.standard_normal((6, 1, 5, 5))
    y = nc.conv2d(x, w, algorithm="direct")
    assert len(calls) == 1
    _close(y, ref_conv2d(x, w), np.float64)
    nc.conv2d(x, w, stride=2, algorithm="direct")           # strided: the stride phases
    x6 = rng.standard_normal((2, 6, 12, 12))
    nc.conv2d(x6, np.ones((16, 6, 5, 5)), algorithm="direct")  # 16 filters, 150 terms: regblock
    assert len(calls) == 1
    y = nc.conv2d(x, w[[0, 1, 2, 3, 4, 5] * 3], algorithm="direct")  # 18 filters, 25 terms
    assert len(calls) == 2
    _close(y, ref_conv2d(x, w[[0, 1, 2, 3, 4, 5] * 3]), np.float64)
    nc.conv2d_backward(np.ones((2, 16, 8, 8)), x6, np.ones((16, 6, 5, 5)), algorithm="direct")
    assert len(calls) == 3   # the data gradient has one "filter" per input channel


@pytest.mark.parametrize("C, F, padding", [(1, 6, 0), (6, 16, 0), (3, 4, 2)])
def test_data_gradient_through_pixvec(C, F, padding):
    """The data gradient (a convolution of dy with the flipped kernel) against finite
    differences, LeNet's two layers among them."""
    from gradcheck import directional_check

    rng = np.random.default_rng(C * F)
    x = rng.standard_normal((3, C, 12, 12))
    w = rng.standard_normal((F, C, 5, 5))
    y = nc.conv2d(x, w, padding=padding, algorithm="direct")
    dy = rng.standard_normal(y.shape)
    dx, _, _ = nc.conv2d_backward(dy, x, w, padding=padding, algorithm="direct")
    directional_check(lambda x_: nc.conv2d(x_, w, padding=padding, algorithm="direct"), [x],
                      dy, [dx], seed=7)


_GUARD_PAGE_SCRIPT = """
import ctypes, mmap, sys
import numpy as np
from nbconv.conv import direct as _direct
from nbconv._checks.conv import Geom
sys.path.insert(0, {tests!r})
from reference_conv import ref_conv2d, ref_conv2d_weight_grad

dtype = np.dtype({dtype!r})
shape = (2, 3, 9, 13)                     # no padding: the kernel reads x itself
n = int(np.prod(shape))
page = mmap.PAGESIZE
pages = -(-n * dtype.itemsize // page) + 1
buf = mmap.mmap(-1, pages * page)
base = ctypes.addressof(ctypes.c_char.from_buffer(buf))
libc = ctypes.CDLL(None, use_errno=True)
libc.mprotect.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
assert libc.mprotect(base + (pages - 1) * page, page, 0) == 0    # PROT_NONE
x = np.frombuffer(buf, dtype=dtype, count=n,
                  offset=(pages - 1) * page - n * dtype.itemsize).reshape(shape)
x[...] = np.random.default_rng(0).standard_normal(shape)
for F in (1, 4, 6):
    w = np.random.default_rng(F).standard_normal((F, 3, 3, 3)).astype(dtype)
    y = np.empty((2, F, 7, 11), dtype=dtype)
    _direct._pixvec_forward(x, w, np.zeros(F, dtype), y, Geom.of(x.shape, w.shape))
    np.testing.assert_allclose(y, ref_conv2d(x, w), rtol=1e-4, atol=1e-4)
print("ok")
"""


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_pixvec_reads_nothing_past_the_input(dtype):
    """The input ends right before an unreadable page: the last blocks of the last image,
    which would run past it, read a padded copy instead (a read past the end would crash the
    child process)."""
    import subprocess
    import sys
    from pathlib import Path

    script = _GUARD_PAGE_SCRIPT.format(tests=str(Path(__file__).parent), dtype=dtype)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-2000:]


@given(N=st.integers(1, 5), W=st.integers(1, 21), **_SMALL_LAYERS)
@settings(max_examples=100, deadline=None)
def test_pixvec_weight_gradient(dtype, N, C, F, H, W, kh, kw, dh, dw, ph, pw, seed):
    """Every filter count below 16 (groups of 1-4 filters by 8, 4, 3 or 2 terms, the last
    term group partial), rows of whole vectors plus leftover columns, more or fewer images
    than tasks, padding and dilation; both dtypes."""
    if H + 2 * ph < dh * (kh - 1) + 1 or W + 2 * pw < dw * (kw - 1) + 1:
        return
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    g = _geometry("conv2d", x.shape, (F, C, kh, kw), 1, (ph, pw), (dh, dw), 1, "zeros",
                        "test")
    dy = rng.standard_normal((N, F, g.OH, g.OW)).astype(dtype)
    gw = np.full((F, C, kh, kw), np.nan, dtype=dtype)
    _direct._pixvec_weight_grad(dy, x, gw, g)
    _close(gw, ref_conv2d_weight_grad(dy, x, kh, kw, padding=(ph, pw), dilation=(dh, dw)), dtype)


@pytest.mark.parametrize("W, column", [(10, 9), (10, 2), (13, 5), (13, 12), (7, 1)])
def test_weight_gradient_non_finite_input_reaches_only_its_taps(W, column):
    """An inf in the input reaches exactly the taps whose windows hold it: the other taps'
    gradients stay finite (no garbage column multiplies it by a zero; the masked lanes of a
    row's last, overlapping vector are zero in both operands; rows shorter than a vector)."""
    x = np.ones((2, 1, 10, W), np.float32)
    x[0, 0, 3, column] = np.inf
    dy = np.ones((2, 6, 8, W - 2), np.float32)
    _, gw, _ = nc.conv2d_backward(dy, x, np.ones((6, 1, 3, 3), np.float32),
                                  algorithm="direct")
    want = ref_conv2d_weight_grad(dy, x, 3, 3)
    np.testing.assert_array_equal(np.isinf(gw), np.isinf(want))
    assert not np.isnan(gw).any()
    np.testing.assert_allclose(gw[np.isfinite(want)], want[np.isfinite(want)])


@pytest.mark.parametrize("F, groups", [(4, 2), (16, 1)])
def test_wide_weight_gradient_non_finite_input(F, groups):
    """The other weight gradients of the direct algorithm (grouped layers, many filters on
    large inputs) keep an inf to the taps whose windows hold it too."""
    x = np.ones((2, 4, 10, 10), np.float32)
    x[0, 0, 3, 9] = np.inf
    w = np.ones((F, 4 // groups, 3, 3), np.float32)
    dy = np.ones((2, F, 8, 8), np.float32)
    _, gw, _ = nc.conv2d_backward(dy, x, w, groups=groups, algorithm="direct")
    Cg = 4 // groups
    want = np.stack([ref_conv2d_weight_grad(dy[:, f:f + 1],
                                            x[:, f // (F // groups) * Cg:][:, :Cg], 3, 3)[0]
                     for f in range(F)])
    assert not np.isnan(gw).any()
    np.testing.assert_array_equal(np.isinf(gw), np.isinf(want))
    np.testing.assert_allclose(gw[np.isfinite(want)], want[np.isfinite(want)])


def test_backward_uses_pixvec_weight_gradient(monkeypatch):
    """Stride-1, groups-1 layers with fewer than 16 filters take the pixel-vector weight
    gradient (bias gradient beside it); the gradients match finite differences."""
    from gradcheck import directional_check

    calls = count_calls(monkeypatch, _direct, "_pixvec_weight_grad")
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 2, 11, 13))
    w = rng.standard_normal((6, 2, 5, 5))
    b = rng.standard_normal(6)
    y = nc.conv2d(x, w, b, padding=1, algorithm="direct")
    dy = rng.standard_normal(y.shape)
    _, dw, db = nc.conv2d_backward(dy, x, w, padding=1, algorithm="direct")
    assert calls
    directional_check(lambda w_: nc.conv2d(x, w_, b, padding=1, algorithm="direct"), [w], dy,
                      [dw], seed=4)
    np.testing.assert_allclose(db, dy.sum(axis=(0, 2, 3)), rtol=1e-12)


def test_pixvec_dispatch_rules():
    """Which layers take the pixel-vector blocks (each bound from a measurement)."""
    fits = _plan.pixvec_fits
    assert fits(6, 1, 28, 28, 5, 5, 1, 4)                        # LeNet c1 forward
    assert fits(6, 16, 16, 16, 5, 5, 1, 4)                       # LeNet c2 data gradient
    assert fits(6, 1, 28, 28, 5, 5, 1, 4, weight_grad=True)      # LeNet c1 weight gradient
    assert not fits(16, 6, 12, 12, 5, 5, 1, 4)                   # 16 filters: filter vectors
    assert not fits(6, 1, 28, 28, 1, 1, 1, 4)                    # 1x1
    assert not fits(6, 4, 28, 28, 3, 3, 2, 4)                    # grouped
    assert not fits(3, 64, 226, 226, 3, 3, 1, 4)                 # image beyond L2
    assert not fits(12, 32, 32, 32, 5, 5, 1, 4, weight_grad=True)


@pytest.mark.parametrize("native", [32, 64])
def test_block_shape_of_each_isa(native):
    """Narrow blocks are AVX2 vectors on every machine; wide ones take the native vectors,
    which on an AVX2-only machine are the narrow ones."""
    from nbconv.kernels.conv.pixel_vectors import _block_shape
    for nf in range(1, _pixvec.MAX_FILTERS + 1):
        narrow = _block_shape(nf, False, native)
        assert narrow[0] == _pixvec.VECTOR_BYTES == 32
        nbytes, npv = _block_shape(nf, True, native)
        assert nbytes == native
        assert (nbytes, npv) == narrow if native == 32 else npv * (nf + 1) <= 32
    host = _pixvec.NATIVE_BYTES
    assert _pixvec.block_positions(6, 4, True) == np.prod(_block_shape(6, True, host)) // 4


@pytest.mark.parametrize("wide", [False, True])
@pytest.mark.parametrize("F", [1, 2, 3, 4, 5, 6])
def test_pixvec_kernel_widths_relu_into_a_channel_slice(wide, F):
    """Both block widths, the fused ReLU (NaN kept) and an output whose images and channels
    are strided (a slice of a wider map), against the SciPy reference."""
    rng = np.random.default_rng(F)
    N, C, H, W, k = 3, 2, 11, 23, 3
    x = rng.standard_normal((N, C, H, W)).astype(np.float32)
    x[1, 0, 4, 7] = np.nan
    w = rng.standard_normal((F, C, k, k)).astype(np.float32)
    b = rng.standard_normal(F).astype(np.float32)
    OH, OW = H - k + 1, W - k + 1
    off = _direct._term_offsets(C, k, k, 1, 1, H, W)
    wt, per = _direct._pixvec_layout(w, off.shape[0], N, OH, OW, W, wide)
    big = np.full((N, F + 3, OH, OW), -7.0, dtype=np.float32)
    y = big[:, 1:1 + F]
    _pixvec._conv2d_pixvec_fwd(x, 0, 0, H, W, wt, b, off, y, per, True, wide)
    want = ref_conv2d(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64))
    want = np.where(want <= 0, 0.0, want)  # NaN stays NaN
    np.testing.assert_array_equal(np.isnan(y), np.isnan(want))
    ok = ~np.isnan(want)
    np.testing.assert_allclose(y[ok], want[ok], rtol=2e-5, atol=2e-5)
    assert (big[:, 0] == -7).all() and (big[:, 1 + F:] == -7).all()

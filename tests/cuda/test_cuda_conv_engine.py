"""The convolution engine's stages on device arrays (nbconv.conv.engine.device_forward /
device_backward): padding modes, trimmed taps, empty batches and inf/NaN give the host's
results with both device algorithms (consistency with the CPU ops, see helpers.py; the CPU
ops are checked against independent references in tests/)."""

import numpy as np
import pytest
from helpers import nc, ncu, rng, run_both

from nbconv.conv import explain
from nbconv.cuda import conv_implicit_gemm

# "direct" runs the direct CUDA kernels, "im2col" the implicit-GEMM ones
ALGORITHMS = ["direct", "im2col"]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_padding_modes(mode, algorithm):
    r = rng(1)
    x, w, b = r.standard_normal((1, 2, 3, 4)), r.standard_normal((2, 2, 2, 3)), \
        r.standard_normal(2)
    kw = dict(padding=(1, 2), padding_mode=mode, algorithm=algorithm)
    assert explain(x.shape, w.shape, device="cuda", **kw).forward.padding.startswith(
        f"explicit {mode}")
    (y,), _ = run_both("conv2d", x, w, b, **kw)
    run_both("conv2d_backward", r.standard_normal(y.shape), x, w, **kw)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_trimmed_taps(algorithm):
    """A 3x3 kernel on one-pixel-high maps keeps its middle row: the trimmed weights are
    copied on the device, and the dropped taps get a zero gradient."""
    r = rng(2)
    x, w, b = r.standard_normal((2, 3, 1, 3)), r.standard_normal((4, 3, 3, 3)), \
        r.standard_normal(4)
    kw = dict(padding=1, stride=(1, 2), algorithm=algorithm)
    plans = explain(x.shape, w.shape, dtype=np.float64, device="cuda", **kw)
    assert plans.forward.taps == plans.backward.taps == (1, 2, 0, 3)
    (y,), _ = run_both("conv2d", x, w, b, **kw)
    _, (dx, gw, gb) = run_both("conv2d_backward", r.standard_normal(y.shape), x, w, **kw)
    assert not gw[:, :, [0, 2]].any() and gw[:, :, 1].all()


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_empty_batch(algorithm):
    r = rng(3)
    x, w, b = np.zeros((0, 2, 4, 4)), r.standard_normal((3, 2, 3, 3)), r.standard_normal(3)
    kw = dict(padding=1, algorithm=algorithm)
    (y,), _ = run_both("conv2d", x, w, b, **kw)
    assert y.shape == (0, 3, 4, 4)
    dy = np.zeros(y.shape)
    _, (dx, gw, gb) = run_both("conv2d_backward", dy, x, w, **kw)
    assert dx.shape == x.shape and not gw.any() and not gb.any()
    (dx, _, gb), _ = run_both("conv2d_backward", dy, x, w, need_dx=False, bias=False, **kw)
    assert dx is None and gb is None
    (y1,), _ = run_both("conv1d", x[:, :, 0], w[:, :, 0], b, **kw)
    run_both("conv1d_backward", np.zeros(y1.shape), x[:, :, 0], w[:, :, 0], **kw)


def _non_finite(seed):
    """Inputs whose inf meets the zeros of ``padding=1``: an inf weight on a corner tap (the
    border outputs read padding through it), an inf in ``dy``'s corner (the taps past the
    border read padding there), a NaN on the border of ``x``."""
    r = rng(seed)
    x, w = r.standard_normal((1, 2, 4, 4)), r.standard_normal((3, 2, 3, 3))
    x[0, 1, 0, 3] = np.nan
    w[1, 0, 0, 0] = np.inf
    dy = r.standard_normal((1, 3, 4, 4))
    dy[0, 0, 3, 3] = np.inf
    return x, w, dy


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_inf_and_nan_follow_the_definition(algorithm, dtype):
    """inf and NaN reach exactly the host's outputs (whose padded taps add no term), also
    after the implicit-GEMM kernels, whose non-finite results the engine recomputes."""
    x, w, dy = (a.astype(dtype) for a in _non_finite(4))
    kw = dict(padding=1, algorithm=algorithm)
    (y,), (yd,) = run_both("conv2d", x, w, **kw)
    assert np.isnan(y).any() and np.isfinite(y).any()
    assert np.array_equal(np.isnan(yd), np.isnan(y)) and np.array_equal(np.isinf(yd),
                                                                        np.isinf(y))
    host, dev = run_both("conv2d_backward", dy, x, w, **kw)
    for h, d in zip(host, dev):
        assert np.array_equal(np.isnan(d), np.isnan(h)) and np.isfinite(h).any()


def test_implicit_gemm_needs_the_engines_recomputation(monkeypatch):
    """Without the recomputation the implicit-GEMM kernels leave NaN where the definition has
    none (0 * inf from the padding's zeros): the policy is the engine's, not the kernels'."""
    x, w, dy = _non_finite(5)
    kw = dict(padding=1, algorithm="im2col")
    host_y = nc.conv2d(x, w, **kw)
    host_dx, host_gw, _ = nc.conv2d_backward(dy, x, w, **kw)
    monkeypatch.setattr(conv_implicit_gemm, "EXACT", True)
    d = [ncu.to_device(a) for a in (dy, x, w)]
    y = ncu.to_host(nc.conv2d(d[1], d[2], **kw))
    dx, gw, _ = (ncu.to_host(a) for a in nc.conv2d_backward(*d, **kw))
    for host, dev in ((host_y, y), (host_dx, dx), (host_gw, gw)):
        assert np.isnan(dev).sum() > np.isnan(host).sum()

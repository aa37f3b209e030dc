"""Inference batch norm folded into the convolution before it, and fusion inside ``nn.Graph``.

``Conv2d -> BatchNorm2d`` in eval mode under ``no_grad`` runs as one convolution whose store
applies ``scale = weight / sqrt(running_var + eps)`` and ``shift = bias - running_mean *
scale`` per filter.  References: the float64 convolution of ``reference_conv.ref_conv2d``
(SciPy) followed by ``reference_norm.batch_norm_ref``, and the same network run layer by
layer (no fusion).
"""

from __future__ import annotations

import numpy as np
import pytest
from closeness import assert_scaled_close
from reference_conv import ref_conv2d
from reference_norm import batch_norm_ref

import nbconv as nc
from nbconv import nn
from nbconv.functional import conv as _conv


def _bn(C, rng, affine=True, track=True):
    bn = nn.BatchNorm2d(C, affine=affine, track_running_stats=track)
    if track:
        bn._buffers["running_mean"][...] = rng.standard_normal(C)
        bn._buffers["running_var"][...] = rng.uniform(0.2, 3.0, C)
    if affine:
        bn.weight.data[...] = rng.uniform(-1.5, 1.5, C)
        bn.bias.data[...] = rng.standard_normal(C)
    return bn


def _want(x, conv, bn):
    """float64 reference of bn(conv(x)) with the running statistics."""
    b = None if conv.bias is None else conv.bias.data
    y = ref_conv2d(x, conv.weight.data, b, stride=conv.stride, padding=1)
    cfg = bn._config
    return batch_norm_ref(y, bn._buffers["running_mean"], bn._buffers["running_var"],
                          bn.weight.data if cfg["affine"] else None,
                          bn.bias.data if cfg["affine"] else None, training=False,
                          eps=cfg["eps"])[0]


def _count_scaled(monkeypatch):
    calls = []
    real = _conv._conv2d_scaled
    monkeypatch.setattr(_conv, "_conv2d_scaled", lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


@pytest.mark.parametrize("C, F, H, stride, bias, affine", [
    (3, 16, 12, 1, False, True),    # few channels: direct kernels, a separate scale pass
    (3, 64, 32, 2, False, True),    # resnet18's stem: stride phases
    (32, 32, 8, 1, True, True),     # tap-GEMM, the scale in its store; conv bias folded too
    (64, 48, 2, 2, False, False),   # tap-GEMM on a 2x2 map, no affine parameters
    (40, 64, 16, 1, True, True),    # Winograd
])
def test_sequential_folds_inference_batch_norm_into_the_convolution(C, F, H, stride, bias,
                                                                    affine, monkeypatch):
    rng = np.random.default_rng(C * F + H)
    conv = nn.Conv2d(C, F, 3, stride=stride, padding=1, bias=bias, rng=rng)
    net = nn.Sequential(conv, _bn(F, rng, affine=affine), nn.ReLU())
    net.eval()
    x = rng.standard_normal((3, C, H, H)).astype(np.float32)
    calls = _count_scaled(monkeypatch)
    with nc.no_grad():
        y = net.forward(x)
    assert calls == [1]
    want = np.maximum(_want(x, conv, net[1]), 0)
    assert y.dtype == np.float32 and y.shape == want.shape
    assert_scaled_close(y, want, 1e-5)
    # the same network layer by layer (grad mode: nothing folded) agrees to float32 rounding
    plain = net.forward(x)
    assert calls == [1]
    assert_scaled_close(y, plain, 1e-6)


@pytest.mark.parametrize("algorithm", ["direct", "im2col", "winograd", "tapgemm"])
def test_scaled_convolution_matches_the_reference_on_every_algorithm(algorithm):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 12, 7, 9))
    w = rng.standard_normal((10, 12, 3, 3))
    scale, shift = rng.standard_normal(10), rng.standard_normal(10)
    x[1, 2, 3, 4] = np.nan
    y = _conv._conv2d_scaled(x, w, scale, shift, padding=1, algorithm=algorithm)
    want = ref_conv2d(x, w, padding=1) * scale[:, None, None] + shift[:, None, None]
    np.testing.assert_array_equal(np.isnan(y), np.isnan(want))
    assert np.isnan(want).any()
    assert_scaled_close(np.nan_to_num(y), np.nan_to_num(want), 1e-10)


def test_no_folding_when_the_batch_norm_needs_batch_statistics_or_gradients(monkeypatch):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 3, 6, 6)).astype(np.float32)
    calls = _count_scaled(monkeypatch)
    for train, track, grad in [(True, True, False), (False, False, False), (False, True, True)]:
        net = nn.Sequential(nn.Conv2d(3, 5, 3, padding=1, rng=rng), _bn(5, rng, track=track))
        net.train(train)
        if grad:
            y = net.forward(x)
        else:
            with nc.no_grad():
                y = net.forward(x)
        assert y.shape == (4, 5, 6, 6)
    assert calls == []


def test_folding_keeps_the_batch_norms_errors():
    """A batch norm of the wrong width still says so (nothing is folded then)."""
    rng = np.random.default_rng(3)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, rng=rng), _bn(5, rng))
    net.eval()
    with nc.no_grad(), pytest.raises(ValueError):
        net.forward(np.ones((2, 3, 8, 8), np.float32))


def _block(rng, with_bn):
    g = nn.Graph()
    g.add("conv1", nn.Conv2d(4, 6, 3, padding=1, rng=rng), "input")
    if with_bn:
        g.add("bn1", _bn(6, rng), "conv1")
        g.add("relu1", nn.ReLU(), "bn1")
    else:
        g.add("relu1", nn.ReLU(), "conv1")
    g.add("conv2", nn.Conv2d(6, 4, 3, padding=1, rng=rng), "relu1")
    g.add("sum", nn.Add(), "input", "conv2")
    g.add("out", nn.ReLU(), "sum")
    return g


def test_graph_fuses_a_node_with_its_only_reader(monkeypatch):
    """In a Graph, Conv -> ReLU runs fused in training (the same output and gradients as node
    by node), Conv -> BatchNorm folded under no_grad in eval mode; a node read twice (the
    input) or the output is never fused away."""
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 4, 6, 6)).astype(np.float32)
    x[0, 1, 2, 2] = np.nan
    g = _block(rng, with_bn=False)
    relu_calls = []
    real = _conv._conv2d_relu
    monkeypatch.setattr(_conv, "_conv2d_relu",
                        lambda *a, **k: relu_calls.append(1) or real(*a, **k))
    y = g.forward(x)
    assert relu_calls == [1]
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = g.backward(dy)
    grads = [p.grad.copy() for p in g.parameters()]
    g.zero_grad()
    monkeypatch.setattr(g.nodes[0][1], "_forward_through", lambda after, v: None)
    y_plain = g.forward(x)
    dx_plain = g.backward(dy)
    np.testing.assert_array_equal(y, y_plain)
    np.testing.assert_array_equal(dx, dx_plain)
    for a, p in zip(grads, g.parameters()):
        np.testing.assert_array_equal(a, p.grad)

    gb = _block(rng, with_bn=True)
    gb.eval()
    calls = _count_scaled(monkeypatch)
    with nc.no_grad():
        y_fused = gb.forward(x)
    assert calls == [1]
    assert_scaled_close(np.nan_to_num(y_fused), np.nan_to_num(gb.forward(x)), 1e-6)
    np.testing.assert_array_equal(np.isnan(y_fused), np.isnan(gb.forward(x)))

"""The geometry object (``nbconv._checks.conv.Geom``) and the validation of the
hyperparameters once per call path (issue 26 item 7): the derived geometries the drivers run
agree with PyTorch's output-size rule, and a layer validates its hyperparameters when it is
built (again only after an attribute changed), not at every call."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import nbconv as nc
from nbconv._checks import conv as _checks_conv
from nbconv._checks.conv import Geom


def _out(n, k, s, p0, p1, d):
    """PyTorch's output size, written out here (independent of nbconv)."""
    return (n + p0 + p1 - d * (k - 1) - 1) // s + 1


@st.composite
def _layers(draw):
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sy, sx = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, 3)), draw(st.integers(0, 3))
    H = draw(st.integers(max(1, dh * (kh - 1) + 1 - 2 * ph), 12))
    W = draw(st.integers(max(1, dw * (kw - 1) + 1 - 2 * pw), 12))
    g = Geom.of((1, 1, H, W), (1, 1, kh, kw), (sy, sx), (ph, pw), (dh, dw))
    return g, kh, kw, H, W


@given(_layers())
def test_geometry_follows_the_output_size_rule(layer):
    g, kh, kw, H, W = layer
    assert (g.OH, g.OW) == (_out(H, kh, g.sy, g.pt, g.pb, g.dh),
                            _out(W, kw, g.sx, g.pl, g.pr, g.dw))


@given(_layers())
def test_spread_geometry_is_the_stride_1_layer_of_the_spread_gradient(layer):
    """``dy`` spread to stride 1 has ``(OH - 1)*sy + 1`` rows: the spread geometry's output,
    with its padding, by the output-size rule at stride 1."""
    g, kh, kw, H, W = layer
    t = g.spread(kh, kw, H, W)
    assert (t.sy, t.sx, t.pt, t.pl, t.dh, t.dw) == (1, 1, g.pt, g.pl, g.dh, g.dw)
    assert (t.OH, t.OW) == ((g.OH - 1) * g.sy + 1, (g.OW - 1) * g.sx + 1)
    assert (t.OH, t.OW) == (_out(H, kh, 1, t.pt, t.pb, t.dh), _out(W, kw, 1, t.pl, t.pr, t.dw))
    assert t.pb <= g.pb and t.pr <= g.pr  # the rows a stride leaves unread lose their padding


@given(_layers())
def test_data_gradient_geometry_maps_dy_back_to_the_input(layer):
    """The data gradient of a stride-1 layer as a forward convolution of ``dy`` (OH x OW)
    with the flipped kernel: its output is the input's H x W."""
    g, kh, kw, H, W = layer
    g = g.spread(kh, kw, H, W)
    t = g.data_gradient(kh, kw, H, W)
    assert (t.pt, t.pl) == (g.dh * (kh - 1) - g.pt, g.dw * (kw - 1) - g.pl)
    assert (t.OH, t.OW) == (H, W)
    assert (H, W) == (_out(g.OH, kh, 1, t.pt, t.pb, t.dh), _out(g.OW, kw, 1, t.pl, t.pr, t.dw))


def _count_validations(monkeypatch):
    calls = []
    real = _checks_conv.hyper
    monkeypatch.setattr(_checks_conv, "hyper", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    return calls


@pytest.mark.parametrize("cls, x_shape", [(nc.nn.Conv2d, (2, 4, 9, 9)),
                                          (nc.nn.Conv1d, (2, 4, 9))])
def test_layer_validates_its_hyperparameters_once(monkeypatch, cls, x_shape):
    calls = _count_validations(monkeypatch)  # (layers validate through _checks.conv.as_hyper)
    layer = cls(4, 6, 3, padding=1, padding_mode="reflect")
    assert calls == [cls.__name__]
    x = np.random.default_rng(0).standard_normal(x_shape).astype(np.float32)
    for _ in range(3):
        y = layer(x)
        layer.backward(np.ones_like(y))
    assert calls == [cls.__name__]
    # a changed attribute is validated again (once), and used
    layer.padding = 2
    y2 = layer(x)
    assert calls == [cls.__name__] * 2 and y2.shape[-1] == y.shape[-1] + 2
    want = (nc.conv2d if cls is nc.nn.Conv2d else nc.conv1d)(
        x, layer.weight.data, layer.bias.data, padding=2, padding_mode="reflect")
    np.testing.assert_array_equal(y2, want)  # consistency with the public op only
    # the public op validates at each call, naming itself
    n = len(calls)
    nc.conv2d(np.ones((1, 1, 3, 3)), np.ones((1, 1, 2, 2)))
    assert calls[n:] == ["conv2d"]


def test_layer_refuses_a_bad_attribute_set_after_construction():
    layer = nc.nn.Conv2d(2, 2, 3)
    layer.stride = 0
    with pytest.raises(ValueError, match=r"Conv2d: argument 'stride' must be >= 1"):
        layer(np.ones((1, 2, 5, 5), np.float32))

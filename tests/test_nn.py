"""Layers, containers and losses: float64 finite-difference checks of every backward pass."""

import re

import numpy as np
import pytest
from gradcheck import directional_check

import nbconv as nc
from nbconv import nn
from nbconv.losses import CrossEntropyLoss, L1Loss, MSELoss


def _gradcheck_module(make, x_shape, seed=0, distinct=False, train=True):
    """Check dx and every parameter gradient of a fresh float64 module against differences."""
    rng = np.random.default_rng(seed)
    m = make().astype(np.float64)
    m.train(train)
    x = rng.standard_normal(x_shape)
    if distinct:  # keep max-pool / relu away from ties and kinks
        x = rng.permutation(np.arange(x.size, dtype=np.float64)).reshape(x_shape) / x.size + 0.05
    params = m.parameters()
    y = m.forward(x)
    dy = rng.standard_normal(np.shape(y))
    m.zero_grad()
    dx = m.backward(dy)
    grads = [dx] + [p.grad.copy() for p in params]
    originals = [p.data.copy() for p in params]

    def f(xv, *pv):
        for p, v in zip(params, pv):
            p.data[...] = v
        out = m.forward(xv)
        return out

    directional_check(f, [x, *originals], dy, grads, seed=seed)
    for p, v in zip(params, originals):
        p.data[...] = v
    return m


LAYERS = {
    "conv2d": (lambda: nn.Conv2d(3, 4, 3, stride=2, padding=1), (2, 3, 7, 6), False),
    "conv2d_groups_reflect": (
        lambda: nn.Conv2d(4, 6, (3, 2), padding="same", groups=2, padding_mode="reflect",
                          dilation=(1, 2)), (2, 4, 6, 7), False),
    "conv2d_nobias": (lambda: nn.Conv2d(2, 3, 2, bias=False), (1, 2, 5, 5), False),
    "conv1d": (lambda: nn.Conv1d(3, 2, 3, padding=1, padding_mode="circular"), (2, 3, 8), False),
    "linear": (lambda: nn.Linear(5, 3), (4, 5), False),
    "linear_3d": (lambda: nn.Linear(5, 3), (2, 4, 5), False),
    "flatten": (lambda: nn.Flatten(), (2, 3, 2, 2), False),
    "maxpool": (lambda: nn.MaxPool2d(2, stride=2, padding=1), (2, 2, 5, 6), True),
    "maxpool_ceil": (lambda: nn.MaxPool2d(3, stride=2, ceil_mode=True), (1, 2, 6, 6), True),
    "avgpool": (lambda: nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True,
                                     count_include_pad=False), (2, 2, 6, 5), False),
    "adaptive": (lambda: nn.AdaptiveAvgPool2d((3, 2)), (2, 2, 7, 5), False),
    "global": (lambda: nn.GlobalAvgPool2d(), (2, 3, 4, 5), False),
    "relu": (lambda: nn.ReLU(), (3, 7), True),
    "leaky_relu": (lambda: nn.LeakyReLU(0.2), (3, 7), True),
    "sigmoid": (lambda: nn.Sigmoid(), (3, 7), False),
    "tanh": (lambda: nn.Tanh(), (3, 7), False),
    "softmax": (lambda: nn.Softmax(dim=1), (3, 7), False),
    "batchnorm1d": (lambda: nn.BatchNorm1d(4), (6, 4), False),
    "batchnorm1d_3d": (lambda: nn.BatchNorm1d(3), (4, 3, 5), False),
    "batchnorm2d": (lambda: nn.BatchNorm2d(3), (4, 3, 3, 2), False),
    "batchnorm2d_noaffine": (lambda: nn.BatchNorm2d(3, affine=False), (4, 3, 3, 2), False),
    "lrn": (lambda: nn.LocalResponseNorm(3, alpha=0.1, beta=0.75, k=2.0), (2, 5, 3, 3), False),
}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_gradients(name):
    make, shape, distinct = LAYERS[name]
    _gradcheck_module(make, shape, distinct=distinct)


@pytest.mark.parametrize("name", ["batchnorm1d", "batchnorm2d"])
def test_batchnorm_eval_mode_gradients(name):
    make, shape, _ = LAYERS[name]

    def trained():
        m = make()
        m.forward(np.random.default_rng(9).standard_normal(shape).astype(np.float32) * 3 + 1)
        return m

    _gradcheck_module(trained, shape, train=False)


def test_dropout_gradient_uses_the_forward_mask():
    d = nn.Dropout(0.4, rng=1)
    x = np.random.default_rng(0).standard_normal((50, 20))
    y = d.forward(x)
    dx = d.backward(np.ones_like(y))
    kept = y != 0
    np.testing.assert_allclose(dx[kept], 1 / 0.6)
    assert not dx[~kept].any()
    d.eval()
    np.testing.assert_array_equal(d.forward(x), x)


def _residual_block(c=3):
    g = nn.Graph()
    g.add("conv1", nn.Conv2d(c, c, 3, padding=1), "input")
    g.add("bn1", nn.BatchNorm2d(c), "conv1")
    g.add("relu1", nn.Tanh(), "bn1")
    g.add("conv2", nn.Conv2d(c, c, 3, padding=1), "relu1")
    g.add("sum", nn.Add(), "conv2", "input")
    g.add("out", nn.Sigmoid(), "sum")
    return g


def _inception_block():
    g = nn.Graph()
    g.add("b1", nn.Conv2d(3, 2, 1), "input")
    g.add("b2a", nn.Conv2d(3, 2, 1), "input")
    g.add("b2", nn.Conv2d(2, 3, 3, padding=1), "b2a")
    g.add("b3", nn.Conv2d(3, 1, 5, padding=2), "input")
    g.add("b4a", nn.MaxPool2d(3, stride=1, padding=1), "input")
    g.add("b4", nn.Conv2d(3, 2, 1), "b4a")
    g.add("cat", nn.Concat(axis=1), "b1", "b2", "b3", "b4")
    return g


def test_residual_block_gradients():
    _gradcheck_module(_residual_block, (2, 3, 5, 4))


def test_inception_block_gradients():
    _gradcheck_module(_inception_block, (2, 3, 6, 5), distinct=True)


def test_graph_fan_out_sums_gradients():
    # y = x + x + x through three identity-like paths: dx must be 3 * dy.
    g = nn.Graph()
    g.add("a", nn.Flatten(start_dim=0, end_dim=0), "input")
    g.add("b", nn.Flatten(start_dim=0, end_dim=0), "input")
    g.add("s", nn.Add(), "a", "b", "input")
    dy = np.random.default_rng(0).standard_normal((2, 3))
    g.forward(np.zeros((2, 3)))
    np.testing.assert_allclose(g.backward(dy), 3 * dy)
    assert dy.flags.writeable and np.isfinite(dy).all()


def test_graph_rejects_bad_edges():
    g = nn.Graph()
    with pytest.raises(ValueError, match="not defined"):
        g.add("a", nn.ReLU(), "missing")
    relu = nn.ReLU()
    g.add("a", relu, "input")
    with pytest.raises(ValueError, match="already exists"):
        g.add("a", nn.ReLU(), "input")
    with pytest.raises(ValueError, match="reuses"):
        g.add("b", relu, "a")


def test_sequential_state_dict_keys_and_round_trip():
    nc.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(),
                        nn.Linear(2 * 4 * 4, 3))
    keys = sorted(net.state_dict())
    assert keys == sorted(["0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean",
                           "1.running_var", "1.num_batches_tracked", "4.weight", "4.bias"])
    nc.manual_seed(1)
    other = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(),
                          nn.Linear(2 * 4 * 4, 3))
    other.load_state_dict(net.state_dict())
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(other.state_dict()[k], v)
    with pytest.raises(KeyError, match="missing"):
        other.load_state_dict({"0.weight": net.state_dict()["0.weight"]})
    bad = net.state_dict()
    bad["4.weight"] = np.zeros((3, 5))
    with pytest.raises(ValueError, match="4.weight"):
        other.load_state_dict(bad)


def test_default_init_matches_pytorch_bounds():
    nc.manual_seed(0)
    conv = nn.Conv2d(8, 16, 3, groups=2)
    fan_in = 8 // 2 * 9
    w = conv.weight.data
    assert np.abs(w).max() <= 1 / np.sqrt(fan_in)
    # U(-b, b) has variance b^2 / 3.
    np.testing.assert_allclose(w.var(), 1 / (3 * fan_in), rtol=0.15)
    lin = nn.Linear(300, 200)
    assert np.abs(lin.bias.data).max() <= 1 / np.sqrt(300)
    np.testing.assert_allclose(lin.weight.data.var(), 1 / 900, rtol=0.05)


def test_no_grad_skips_caching_and_modes():
    net = nn.Sequential(nn.Linear(3, 2), nn.Dropout(0.5))
    x = np.ones((4, 3), np.float32)
    with nc.no_grad():
        net.forward(x)
    with pytest.raises(RuntimeError, match="no_grad"):
        net[0].backward(np.ones((4, 2), np.float32))
    net.eval()
    assert not net[1].training
    np.testing.assert_array_equal(net.forward(x), net[0].forward(x))
    net.train()
    assert net[1].training


def test_layers_keep_float32():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2), nn.Sigmoid(), nn.Flatten(),
                        nn.Linear(2 * 3 * 3, 4), nn.Softmax())
    y = net.forward(np.ones((2, 1, 8, 8), np.float32))
    assert y.dtype == np.float32
    assert net.backward(np.ones_like(y)).dtype == np.float32


def test_cross_entropy_is_stable_and_correct():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((5, 4)) * 1e4
    t = np.array([0, 1, 2, 3, 0])
    crit = CrossEntropyLoss()
    value = crit.forward(logits, t)
    shifted = logits - logits.max(axis=1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    assert np.isfinite(value)
    np.testing.assert_allclose(value, -logp[np.arange(5), t].mean(), rtol=1e-12)
    small = rng.standard_normal((5, 4))
    crit.forward(small, t)
    directional_check(lambda z: CrossEntropyLoss().forward(z, t), [small], np.array(1.0),
                      [crit.backward()])
    with pytest.raises(ValueError, match="target"):
        crit.forward(small, np.array([0, 1, 2, 3, 4]))


@pytest.mark.parametrize("cls", [MSELoss, L1Loss])
def test_regression_losses(cls):
    rng = np.random.default_rng(1)
    p, t = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    crit = cls()
    value = crit.forward(p, t)
    ref = np.mean((p - t) ** 2) if cls is MSELoss else np.mean(np.abs(p - t))
    np.testing.assert_allclose(value, ref, rtol=1e-12)
    directional_check(lambda z: cls().forward(z, t), [p], np.array(1.0), [crit.backward()])
    with pytest.raises(ValueError, match="same shape"):
        crit.forward(p, t[:2])


def test_sequential_matches_torch():
    torch = pytest.importorskip("torch")
    nc.manual_seed(3)
    net = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Flatten(), nn.Linear(3 * 4 * 4, 5)).astype(np.float64)
    tnet = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.MaxPool2d(2), torch.nn.Flatten(),
                               torch.nn.Linear(48, 5)).double()
    tnet.load_state_dict({k: torch.tensor(v) for k, v in net.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((2, 1, 8, 8))
    t = np.array([1, 4])
    crit = CrossEntropyLoss()
    loss = crit.forward(net.forward(x), t)
    net.backward(crit.backward())
    tx = torch.tensor(x, requires_grad=True)
    tloss = torch.nn.functional.cross_entropy(tnet(tx), torch.tensor(t))
    tloss.backward()
    np.testing.assert_allclose(loss, tloss.item(), rtol=1e-10)
    for (k, p), tp in zip(net.named_parameters(), tnet.parameters()):
        np.testing.assert_allclose(p.grad, tp.grad.numpy(), rtol=1e-9, atol=1e-12, err_msg=k)


def test_sequential_need_dx_false_skips_only_the_input_gradient():
    nc.manual_seed(0)
    a = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 16, 3))
    b = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 16, 3))
    b.load_state_dict(a.state_dict())
    x = np.random.default_rng(0).standard_normal((2, 1, 6, 6)).astype(np.float32)
    dy = np.ones((2, 3), np.float32)
    a.forward(x)
    b.forward(x)
    assert a.backward(dy).shape == x.shape
    assert b.backward(dy, need_dx=False) is None
    for pa, pb in zip(a.parameters(), b.parameters()):
        np.testing.assert_array_equal(pa.grad, pb.grad)


def test_graph_need_dx_false_skips_only_the_input_gradient():
    """Nodes reading only the graph input skip their input gradient; a node that reads it
    with another value (the residual Add) still runs; parameter gradients are unchanged."""
    def build():
        g = nn.Graph()
        g.add("conv", nn.Conv2d(2, 2, 3, padding=1), "input")
        g.add("conv2", nn.Conv2d(2, 2, 1), "input")
        g.add("sum", nn.Add(), "input", "conv")
        g.add("cat", nn.Concat(), "sum", "conv2")
        return g

    nc.manual_seed(0)
    a, b = build(), build()
    b.load_state_dict(a.state_dict())
    x = np.random.default_rng(0).standard_normal((2, 2, 5, 5)).astype(np.float32)
    dy = np.random.default_rng(1).standard_normal((2, 4, 5, 5)).astype(np.float32)
    a.forward(x)
    b.forward(x)
    assert a.backward(dy).shape == x.shape
    calls = []
    for m in (b._children["conv"], b._children["conv2"]):
        m.backward = (lambda f: lambda g, need_dx=True: calls.append(need_dx) or f(g, need_dx))(
            m.backward)
    assert b.backward(dy, need_dx=False) is None
    assert calls == [False, False]
    for pa, pb in zip(a.parameters(), b.parameters()):
        np.testing.assert_array_equal(pa.grad, pb.grad)


def _unfused_backward(net, dy):
    """The layers' own backward passes one by one, last to first (no fusion)."""
    for m in reversed(list(net)):
        dy = m.backward(dy)
    return dy


@pytest.mark.parametrize("pool", [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1)])
def test_sequential_fuses_pool_backward_with_the_relu_before_it(pool, monkeypatch):
    """Conv -> ReLU -> MaxPool: Sequential runs the pool's and the ReLU's backward passes as
    one scatter; the gradients equal the layer-by-layer ones exactly, with zeros, negative
    windows, a NaN and overlapping windows in the input."""
    from nbconv.functional import pool as _pool

    rng = np.random.default_rng(8)
    net = nn.Sequential(nn.Conv2d(2, 3, 3, rng=rng), nn.ReLU(), nn.MaxPool2d(**pool),
                        nn.Flatten(), nn.Linear(3 * 16, 4, rng=rng))
    net[0].bias.data[1] = -50.0        # a channel whose windows are all negative
    x = rng.standard_normal((3, 2, 10, 10)).astype(np.float32)
    x[1, 0, 4, 4] = np.nan
    y = net.forward(x)                 # both poolings give 4x4 planes

    dy = rng.standard_normal(y.shape).astype(np.float32)
    fused_calls = []
    real = _pool._max_pool2d_scatter
    monkeypatch.setattr(_pool, "_max_pool2d_scatter",
                        lambda *a, **k: fused_calls.append(k) or real(*a, **k))
    dx_fused = net.backward(dy)
    assert any("relu_out" in k for k in fused_calls)
    grads_fused = [p.grad.copy() for p in net.parameters()]
    net.zero_grad()
    dx_plain = _unfused_backward(net, dy)
    np.testing.assert_array_equal(dx_fused, dx_plain)
    for g, p in zip(grads_fused, net.parameters()):
        np.testing.assert_array_equal(g, p.grad)


def test_fusion_needs_the_relu_cache():
    """A ReLU that cached nothing (forward under no_grad) is not fused away: the backward
    pass still reports the missing cache."""
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2))
    x = np.ones((1, 1, 6, 6), np.float32)
    y = net.forward(x)
    with nc.no_grad():
        net[1].forward(net[0].forward(x))
    with pytest.raises(RuntimeError, match="ReLU"):
        net.backward(np.ones_like(y))


def _unfused_forward(net, x):
    for m in net:
        x = m.forward(x)
    return x


@pytest.mark.parametrize("C, F, stride", [
    (1, 6, 1),      # "auto" takes the pixel-vector blocks (LeNet c1)
    (6, 16, 1),     # the filter-vector register blocks (LeNet c2)
    (3, 8, 2),      # pixel-vector blocks on stride phases
    (8, 32, 2),     # the filter-vector register blocks (short rows)
    (64, 128, 2),   # im2col + BLAS, then a ReLU pass
    (32, 32, 1),    # Winograd, then a ReLU pass
])
def test_sequential_fuses_conv_and_relu(C, F, stride, monkeypatch):
    """Conv -> ReLU: the ReLU is applied in the convolution's store (or right after it); the
    output, the gradients and the ReLU's backward pass equal the layer-by-layer ones exactly,
    with a NaN and negative values in play."""
    from nbconv.functional import conv as _conv

    rng = np.random.default_rng(C + F)
    net = nn.Sequential(nn.Conv2d(C, F, 3, stride=stride, padding=1, rng=rng), nn.ReLU(),
                        nn.MaxPool2d(2))
    x = rng.standard_normal((4, C, 8, 8)).astype(np.float32)
    x[2, 0, 3, 3] = np.nan
    calls = []
    real = _conv._conv2d_relu
    monkeypatch.setattr(_conv, "_conv2d_relu", lambda *a, **k: calls.append(1) or real(*a, **k))
    y_fused = net.forward(x)
    assert calls
    dy = rng.standard_normal(y_fused.shape).astype(np.float32)
    dx_fused = net.backward(dy)
    grads_fused = [p.grad.copy() for p in net.parameters()]
    net.zero_grad()
    y_plain = _unfused_forward(net, x)
    dx_plain = _unfused_backward(net, dy)
    np.testing.assert_array_equal(y_fused, y_plain)
    np.testing.assert_array_equal(dx_fused, dx_plain)
    for g, p in zip(grads_fused, net.parameters()):
        np.testing.assert_array_equal(g, p.grad)


def test_graph_repr_shows_the_wiring():
    """Each node is printed with the nodes it reads; parsing the printout gives back the
    graph's edges (also for a node spanning several lines and a graph nested in another)."""
    g = nn.Graph(output="cat")
    g.add("conv2", nn.Conv2d(2, 2, 3, padding=1), "input")
    g.add("skip", nn.Identity(), "input")
    g.add("add1", nn.Add(), "conv2", "skip")
    g.add("branch", nn.Sequential(nn.Conv2d(2, 3, 1), nn.ReLU()), "add1")
    g.add("cat", nn.Concat(axis=1), "add1", "branch")
    g.add("unused", nn.ReLU(), "cat")
    outer = nn.Sequential(g, nn.Flatten())
    for text, indent in ((repr(g), "  "), (repr(outer), "    ")):
        wiring = {}
        for line in text.splitlines():
            m = re.fullmatch(rf"{indent}\((\w+)\): (\w+)\(.*\) <- (.+)", line) or \
                re.fullmatch(rf"{indent}\((\w+)\): (\w+)\( <- (.+)", line)
            if m:
                wiring[m[1]] = (m[2], tuple(m[3].split(", ")))
        assert wiring == {n: (type(m).__name__, ins) for n, m, ins in g.nodes}, text
        assert f"{indent}output <- cat" in text.splitlines()
    assert "(add1): Add() <- conv2, skip" in repr(g)
    assert repr(nn.Graph()) == "Graph()"

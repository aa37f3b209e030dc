"""nn.init: distributions' statistics against the formulas with PyTorch's constants, gains and
fans against torch, in-place semantics, reproducibility, errors."""

import math

import numpy as np
import pytest

import nbconv as nc
from nbconv import nn
from nbconv.nn import Parameter, init

GAINS = [("linear", None, 1.0), ("conv1d", None, 1.0), ("conv2d", None, 1.0),
         ("conv3d", None, 1.0), ("conv_transpose1d", None, 1.0),
         ("conv_transpose2d", None, 1.0), ("conv_transpose3d", None, 1.0),
         ("sigmoid", None, 1.0), ("tanh", None, 5 / 3), ("relu", None, math.sqrt(2)),
         ("leaky_relu", None, math.sqrt(2 / (1 + 0.01**2))),
         ("leaky_relu", 0.2, math.sqrt(2 / 1.04)), ("leaky_relu", 3, math.sqrt(2 / 10)),
         ("selu", None, 0.75)]


@pytest.mark.parametrize("name, param, expect", GAINS)
def test_calculate_gain(name, param, expect):
    assert init.calculate_gain(name, param) == pytest.approx(expect, rel=1e-15)
    torch = pytest.importorskip("torch")
    assert init.calculate_gain(name, param) == torch.nn.init.calculate_gain(name, param)


@pytest.mark.parametrize("shape", [(7, 5), (8, 3, 3, 2), (6, 4, 5), (2, 3, 1, 4, 2), (0, 4),
                                   (4, 0, 3)])
def test_fans_match_torch(shape):
    torch = pytest.importorskip("torch")
    assert init._calculate_fan_in_and_fan_out(np.empty(shape)) == \
        torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))


def test_fans_of_layer_weights():
    # PyTorch's weight layouts: Linear (out, in), Conv (C_out, C_in/groups, kh, kw)
    assert init._calculate_fan_in_and_fan_out(nn.Linear(20, 10).weight) == (20, 10)
    assert init._calculate_fan_in_and_fan_out(nn.Conv2d(6, 8, (3, 2), groups=2).weight) == (
        3 * 3 * 2, 8 * 3 * 2)
    assert init._calculate_fan_in_and_fan_out(nn.Conv1d(4, 5, 3).weight) == (12, 15)


N = (400, 250)  # 100,000 draws: standard errors of ~0.3% on the std


def _check_uniform(w, lo, hi):
    n = w.size
    width = hi - lo
    assert w.min() >= lo and w.max() <= hi
    assert w.min() < lo + width * 1e-3 and w.max() > hi - width * 1e-3  # fills the range
    assert abs(w.mean() - (lo + hi) / 2) < 6 * width / math.sqrt(12 * n)
    assert w.std() == pytest.approx(width / math.sqrt(12), rel=0.02)


def _check_normal(w, mean, std):
    n = w.size
    assert abs(w.mean() - mean) < 6 * std / math.sqrt(n)
    assert w.std() == pytest.approx(std, rel=0.02)
    kurt = ((w - w.mean()) ** 4).mean() / w.var() ** 2
    assert kurt == pytest.approx(3.0, abs=0.1)  # normal, not uniform (1.8)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_uniform_and_normal_statistics(dtype):
    nc.manual_seed(0)
    _check_uniform(init.uniform_(np.empty(N, dtype), -0.5, 2.0), -0.5, 2.0)
    _check_uniform(init.uniform_(np.empty(N, dtype)), 0.0, 1.0)
    _check_normal(init.normal_(np.empty(N, dtype), 1.5, 0.3), 1.5, 0.3)
    _check_normal(init.normal_(np.empty(N, dtype)), 0.0, 1.0)


@pytest.mark.parametrize("shape", [N, (100, 50, 5, 4)])
@pytest.mark.parametrize("gain", [1.0, 5 / 3])
def test_xavier_statistics(shape, gain):
    nc.manual_seed(1)
    fan_in, fan_out = init._calculate_fan_in_and_fan_out(np.empty(shape))
    std = gain * math.sqrt(2.0 / (fan_in + fan_out))
    bound = math.sqrt(3.0) * std
    _check_uniform(init.xavier_uniform_(np.empty(shape), gain=gain), -bound, bound)
    _check_normal(init.xavier_normal_(np.empty(shape), gain=gain), 0.0, std)


@pytest.mark.parametrize("a, mode, nonlinearity", [
    (0, "fan_in", "leaky_relu"), (0, "fan_in", "relu"), (0.2, "fan_out", "leaky_relu"),
    (math.sqrt(5), "fan_in", "leaky_relu"), (0, "fan_out", "tanh"), (0, "fan_in", "linear"),
])
@pytest.mark.parametrize("shape", [N, (100, 50, 5, 4)])
def test_kaiming_statistics(a, mode, nonlinearity, shape):
    nc.manual_seed(2)
    fan_in, fan_out = init._calculate_fan_in_and_fan_out(np.empty(shape))
    fan = fan_in if mode == "fan_in" else fan_out
    gains = {"leaky_relu": math.sqrt(2 / (1 + a * a)), "relu": math.sqrt(2), "tanh": 5 / 3,
             "linear": 1.0}
    std = gains[nonlinearity] / math.sqrt(fan)
    _check_uniform(init.kaiming_uniform_(np.empty(shape), a, mode, nonlinearity),
                   -math.sqrt(3) * std, math.sqrt(3) * std)
    _check_normal(init.kaiming_normal_(np.empty(shape), a, mode, nonlinearity), 0.0, std)


def test_layers_default_is_kaiming_uniform_sqrt5():
    """The layers' default equals kaiming_uniform_(a=sqrt(5)) with the same generator state."""
    nc.manual_seed(3)
    conv = nn.Conv2d(3, 4, (3, 2), dtype=np.float64)
    nc.manual_seed(3)
    w = init.kaiming_uniform_(np.empty((4, 3, 3, 2)), a=math.sqrt(5))
    np.testing.assert_allclose(conv.weight.data, w, rtol=1e-15)


def _truncnorm_moments(mean, std, a, b):
    al, be = (a - mean) / std, (b - mean) / std
    pdf = lambda x: math.exp(-x * x / 2) / math.sqrt(2 * math.pi) if math.isfinite(x) else 0.0  # noqa: E731
    cdf = lambda x: 0.5 * math.erfc(-x / math.sqrt(2))  # noqa: E731
    z = cdf(be) - cdf(al)
    t = lambda x: x * pdf(x) if math.isfinite(x) else 0.0  # noqa: E731
    m = mean + std * (pdf(al) - pdf(be)) / z
    var = std**2 * (1 + (t(al) - t(be)) / z - ((pdf(al) - pdf(be)) / z) ** 2)
    return m, math.sqrt(var)


@pytest.mark.parametrize("mean, std, a, b", [
    (0.0, 1.0, -2.0, 2.0), (0.0, 0.02, -0.04, 0.04), (1.0, 2.0, 0.0, 10.0),
    (0.0, 1.0, 3.0, 4.0), (0.0, 1.0, -9.0, -8.0), (0.0, 1.0, 6.0, math.inf),
    (-1.0, 0.5, -math.inf, math.inf),
])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_trunc_normal_statistics(mean, std, a, b, dtype):
    w = init.trunc_normal_(np.empty(N, dtype), mean, std, a, b,
                           generator=np.random.default_rng(4))
    m, s = _truncnorm_moments(mean, std, a, b)
    assert w.dtype == dtype and w.min() >= dtype(a) and w.max() <= dtype(b)
    assert abs(w.mean() - m) < 6 * s / math.sqrt(w.size) + 1e-6 * abs(m)
    assert w.std() == pytest.approx(s, rel=0.02)


def test_trunc_normal_degenerate():
    assert (init.trunc_normal_(np.empty(5), mean=3.0, std=0.0) == 2.0).all()  # clipped mean
    assert (init.trunc_normal_(np.empty(5), a=0.5, b=0.5) == 0.5).all()


def test_constant_zeros_ones():
    p = nn.Linear(3, 2).weight
    assert init.constant_(p, 0.25) is p and (p.data == 0.25).all()
    assert (init.zeros_(np.ones(3)) == 0).all() and (init.ones_(np.zeros(3)) == 1).all()
    assert np.isinf(init.constant_(np.zeros(2), np.inf)).all()


@pytest.mark.parametrize("fn", [
    lambda t, **k: init.uniform_(t, **k), lambda t, **k: init.normal_(t, **k),
    lambda t, **k: init.trunc_normal_(t, **k), lambda t, **k: init.xavier_uniform_(t, **k),
    lambda t, **k: init.xavier_normal_(t, **k), lambda t, **k: init.kaiming_uniform_(t, **k),
    lambda t, **k: init.kaiming_normal_(t, **k),
])
def test_in_place_reproducible_and_dtype(fn):
    layer = nn.Conv2d(3, 5, 3)
    p = layer.weight
    data, grad = p.data, p.grad.copy()
    assert fn(p) is p and p.data is data and p.data.dtype == np.float32
    np.testing.assert_array_equal(p.grad, grad)  # the gradient is not touched
    nc.manual_seed(7)
    first = fn(np.empty((5, 3, 3, 3))).copy()
    nc.manual_seed(7)
    np.testing.assert_array_equal(fn(np.empty((5, 3, 3, 3))), first)
    g1 = fn(np.empty((5, 3, 3, 3)), generator=np.random.default_rng(9))
    g2 = fn(np.empty((5, 3, 3, 3)), generator=np.random.default_rng(9))
    np.testing.assert_array_equal(g1, g2)
    view = np.zeros((4, 5, 3, 3, 3))[1]  # a writeable view is filled in place
    fn(view)
    assert view.any()
    assert fn(np.empty((0, 3))).shape == (0, 3)  # N=0: nothing to draw


@pytest.mark.parametrize("call, exc, match", [
    (lambda: init.xavier_uniform_(np.empty(5)), ValueError, "fewer than 2 dimensions"),
    (lambda: init.kaiming_normal_(Parameter(np.empty(5), "b")), ValueError, "2 dimensions"),
    (lambda: init.kaiming_uniform_(np.empty((2, 2)), mode="fan_avg"), ValueError,
     "argument 'mode'"),
    (lambda: init.kaiming_uniform_(np.empty((2, 2)), nonlinearity="gelu"), ValueError,
     "unsupported nonlinearity"),
    (lambda: init.calculate_gain("leaky_relu", True), ValueError, "argument 'param'"),
    (lambda: init.calculate_gain("leaky_relu", "0.1"), ValueError, "argument 'param'"),
    (lambda: init.uniform_(np.empty(3), 1.0, 0.0), ValueError, "argument 'a'"),
    (lambda: init.normal_(np.empty(3), std=-1.0), ValueError, "argument 'std'"),
    (lambda: init.trunc_normal_(np.empty(3), a=1.0, b=-1.0), ValueError, "argument 'a'"),
    (lambda: init.trunc_normal_(np.empty(3), mean=float("nan")), ValueError,
     "argument 'mean'"),
    (lambda: init.xavier_normal_(np.empty((2, 2)), gain="1"), TypeError, "argument 'gain'"),
    (lambda: init.normal_(np.empty(3, np.int64)), TypeError, "float32 or float64"),
    (lambda: init.normal_(np.empty(3, np.float16)), TypeError, "float32 or float64"),
    (lambda: init.normal_([0.0, 1.0]), TypeError, "argument 'tensor'"),
    (lambda: init.zeros_(np.broadcast_to(np.ones(1), (3,))), ValueError, "read-only"),
    (lambda: init.normal_(np.empty(3), generator=0), TypeError, "argument 'generator'"),
    (lambda: init.constant_(np.empty(3), "1"), TypeError, "argument 'val'"),
])
def test_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_placeholder_models_draw_nothing():
    """Inside the placeholders a model file is checked with, init leaves the stand-ins alone
    and draws nothing from the library generator."""
    from nbconv.nn.modes import placeholders

    nc.manual_seed(11)
    state = nc.nn.default_rng().bit_generator.state
    with placeholders():
        layer = nn.Linear(3, 2)
        assert init.kaiming_normal_(layer.weight) is layer.weight
    assert nc.nn.default_rng().bit_generator.state == state


def test_custom_module_initialised_in_its_constructor_trains_like_torch_init_scheme():
    """A user's module that initialises its layers with nn.init (the common PyTorch idiom)."""
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3)
            self.fc = nn.Linear(16, 2)
            init.kaiming_normal_(self.conv.weight, mode="fan_out", nonlinearity="relu")
            init.zeros_(self.conv.bias)
            init.xavier_uniform_(self.fc.weight)
            init.constant_(self.fc.bias, 0.1)

        def forward(self, x):
            return self.fc(nc.relu(self.conv(x)).reshape(x.shape[0], -1))

    nc.manual_seed(0)
    net = Net()
    assert (net.conv.bias.data == 0).all() and (net.fc.bias.data == np.float32(0.1)).all()
    out = net(np.ones((2, 1, 4, 4), np.float32))
    assert out.shape == (2, 2)

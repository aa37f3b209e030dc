"""nbconv.compile: a planned network equals the plain eval forward under no_grad.

The compiled model is compared with the model's own forward pass (``model.eval()`` and
``nbconv.no_grad()``), which the layer tests check against PyTorch and loop references; that
part proves consistency only.  One residual block is also checked against PyTorch directly.
"""

from __future__ import annotations

import os
import tracemalloc
import warnings

import numpy as np
import pytest

import nbconv as nc
from nbconv import models, nn

RNG = np.random.default_rng(1234)


def _randomise_bn(model, rng=RNG):
    """Non-trivial running statistics and affine parameters (a fold of the defaults is
    nearly the identity)."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m._config["num_features"]
            m.running_mean[...] = rng.standard_normal(c) * 0.5
            m.running_var[...] = rng.uniform(0.3, 3.0, c)
            m.weight.data[...] = rng.uniform(0.5, 1.5, c)
            m.bias.data[...] = rng.standard_normal(c) * 0.3
    return model


def _plain(model, x):
    model.eval()
    with nc.no_grad():
        return model(x)


def _close(a, b, rtol=2e-4):
    assert a.shape == b.shape and a.dtype == b.dtype
    scale = max(float(np.nanmax(np.abs(b))) if b.size else 1.0, 1e-6)
    np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * scale)


ZOO = {
    "lenet5": lambda: models.lenet5(),
    "lenet5_relu_avg": lambda: models.lenet5(activation="relu", pool="avg", padding=2),
    "seed_net": lambda: models.seed_net(),
    "simple_convnet": lambda: models.simple_convnet(),
    "alexnet": lambda: models.alexnet(width_mult=0.0625),
    "zfnet": lambda: models.zfnet(width_mult=0.0625),
    "vgg11": lambda: models.vgg11(width_mult=0.0625),
    "nin": lambda: models.nin(width_mult=0.0625),
    "googlenet": lambda: models.googlenet(width_mult=0.0625),
    "resnet18": lambda: models.resnet18(width_mult=0.125),
}


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_model_equals_plain_forward(name):
    model = _randomise_bn(ZOO[name]())
    cm = nc.compile(model, (3, 1, 28, 28))
    for n in (3, 1, 5, 3, 0):  # planned, batch 1, another, planned again, empty
        x = RNG.standard_normal((n, 1, 28, 28), dtype=np.float32)
        _close(cm(x), _plain(model, x))


def test_float64_model():
    model = _randomise_bn(models.resnet18(width_mult=0.125).astype(np.float64))
    cm = nc.compile(model, (2, 1, 16, 16))
    x = RNG.standard_normal((2, 1, 16, 16))
    y = cm(x)
    assert y.dtype == np.float64
    _close(y, _plain(model, x), rtol=1e-10)


def test_fusions_and_buffers_are_planned():
    model = _randomise_bn(models.resnet18(width_mult=0.125))
    cm = nc.compile(model, (2, 1, 28, 28))
    text = cm.explain()
    assert "batchnorm 1.0.bn1, relu 1.0.relu1" in text  # conv + folded BN + ReLU: one step
    assert "relu 1.0.relu2" in text  # the residual sum and its ReLU: one step
    assert "view of buf" in text  # Flatten
    assert "BatchNorm2d" not in text and "opaque" not in text
    plan = cm._plan(2)
    assert plan.nslots <= 4 < len(plan.runs)  # buffers reused across layers
    assert repr(cm) == text


@pytest.mark.parametrize("algorithm", ["direct", "im2col"])
def test_named_algorithm(algorithm):
    model = models.lenet5(activation="relu")
    cm = nc.compile(model, (2, 1, 28, 28), algorithm=algorithm)
    assert f"conv2d {algorithm}" in cm.explain()
    x = RNG.standard_normal((2, 1, 28, 28), dtype=np.float32)
    _close(cm(x), _plain(model, x))


def test_result_is_owned_by_the_caller():
    model = models.lenet5(activation="relu")
    cm = nc.compile(model, (2, 1, 28, 28))
    x1, x2 = (RNG.standard_normal((2, 1, 28, 28), dtype=np.float32) for _ in range(2))
    y1 = cm(x1)
    kept = y1.copy()
    y2 = cm(x2)
    np.testing.assert_array_equal(y1, kept)
    assert not np.shares_memory(y1, y2)


def test_nonfinite_inputs_as_plain_forward():
    model = _randomise_bn(models.resnet18(width_mult=0.125))
    cm = nc.compile(model, (2, 1, 28, 28))
    x = RNG.standard_normal((2, 1, 28, 28), dtype=np.float32)
    x[0, 0, 3, 4] = np.nan
    x[1, 0, 10, 10] = np.inf
    y, ref = cm(x), _plain(model, x)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ref))
    np.testing.assert_array_equal(np.isinf(y), np.isinf(ref))
    lenet = models.lenet5(activation="relu")
    cm = nc.compile(lenet, (2, 1, 28, 28))
    x = RNG.standard_normal((2, 1, 28, 28), dtype=np.float32)
    x[1, 0, 5, 5] = -np.inf
    y, ref = cm(x), _plain(lenet, x)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ref))
    fin = np.isfinite(ref)
    _close(y[fin], ref[fin])


def test_onnx_imported_model():
    pytest.importorskip("onnx", reason="nbconv.onnx needs the onnx package")
    model = _randomise_bn(models.resnet18(width_mult=0.125))
    model.eval()
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "m.onnx")
        nc.onnx.export(model, path, (2, 1, 28, 28))
        graph = nc.onnx.load(path)
    cm = nc.compile(graph, (2, 1, 28, 28))
    assert "opaque" not in cm.explain()
    x = RNG.standard_normal((2, 1, 28, 28), dtype=np.float32)
    _close(cm(x), _plain(graph, x))
    _close(cm(x), _plain(model, x), rtol=1e-3)


# -- user modules: opaque steps ---------------------------------------------------------------
class Residual(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return nc.relu(self.conv(x)) + x


class FirstChannels(nn.Module):
    def forward(self, x):
        return x[:, :2]  # a view of its input: the planner must keep that buffer alive


def test_user_module_runs_opaque():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), Residual(4), FirstChannels(),
                          nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Conv2d(3, 3, 1), nn.Flatten(),
                          nn.Linear(3 * 6 * 6, 5))
    cm = nc.compile(model, (2, 1, 10, 10))
    text = cm.explain()
    assert "Residual.forward" in text and "FirstChannels.forward" in text
    assert "own array" in text
    for n in (2, 1, 4):
        x = RNG.standard_normal((n, 1, 10, 10), dtype=np.float32)
        _close(cm(x), _plain(model, x))


def test_user_model_subclass_as_a_whole():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU())
            self.fc = nn.Linear(4 * 6 * 6, 3)

        def forward(self, x):
            return self.fc(self.features(x).reshape(x.shape[0], -1))

    net = Net()
    cm = nc.compile(net, (2, 1, 8, 8))
    assert "Net.forward" in cm.explain()
    x = RNG.standard_normal((2, 1, 8, 8), dtype=np.float32)
    _close(cm(x), _plain(net, x))


def test_against_pytorch_residual_block():
    torch = pytest.importorskip("torch", reason="the PyTorch reference needs torch")
    block = _randomise_bn(models.basic_block(3, 4, stride=2))
    cm = nc.compile(block, (2, 3, 9, 9))
    x = RNG.standard_normal((2, 3, 9, 9), dtype=np.float32)
    sd = {k: torch.from_numpy(np.array(v)) for k, v in block.state_dict().items()}
    tf = torch.nn.functional

    def bn(t, p):
        return tf.batch_norm(t, sd[p + ".running_mean"], sd[p + ".running_var"],
                             sd[p + ".weight"], sd[p + ".bias"], False, 0.0, 1e-5)

    with torch.no_grad():
        t = torch.from_numpy(x)
        h = tf.relu(bn(tf.conv2d(t, sd["conv1.weight"], stride=2, padding=1), "bn1"))
        h = bn(tf.conv2d(h, sd["conv2.weight"], padding=1), "bn2")
        s = bn(tf.conv2d(t, sd["downsample.0.weight"], stride=2), "downsample.1")
        ref = tf.relu(h + s).numpy()
    _close(cm(x), ref, rtol=1e-4)


# -- following changes of the model -----------------------------------------------------------
def test_follows_optimizer_step_and_load_state_dict():
    model = _randomise_bn(models.resnet18(width_mult=0.125))
    cm = nc.compile(model, (2, 1, 28, 28))
    x = RNG.standard_normal((2, 1, 28, 28), dtype=np.float32)
    before = cm(x)
    state = model.state_dict()
    for p in model.parameters():
        p.grad = RNG.standard_normal(p.data.shape).astype(np.float32)
    nc.optim.SGD(model.parameters(), lr=0.1).step()
    after = cm(x)
    assert not np.allclose(after, before)
    _close(after, _plain(model, x))
    model.load_state_dict(state)
    _close(cm(x), before)


def test_follows_running_statistics_after_training():
    model = _randomise_bn(models.resnet18(width_mult=0.125))
    cm = nc.compile(model, (2, 1, 28, 28))
    x = RNG.standard_normal((2, 1, 28, 28), dtype=np.float32)
    before = cm(x)
    model.train()
    with pytest.raises(RuntimeError, match="training mode.*model.eval"):
        cm(x)
    model(RNG.standard_normal((4, 1, 28, 28), dtype=np.float32))  # moves the statistics
    model.eval()
    after = cm(x)
    assert not np.allclose(after, before)
    _close(after, _plain(model, x))


def test_follows_assignment_init_and_new_layers():
    model = models.lenet5(activation="relu")
    cm = nc.compile(model, (2, 1, 28, 28))
    x = RNG.standard_normal((2, 1, 28, 28), dtype=np.float32)
    model[0].weight.data = model[0].weight.data * 2  # a new array
    _close(cm(x), _plain(model, x))
    nn.init.constant_(model[3].bias, 0.5)  # in place, through nbconv
    _close(cm(x), _plain(model, x))
    model.append(nn.ReLU())
    y = cm(x)
    assert (y >= 0).all()
    _close(y, _plain(model, x))


def test_refresh_after_a_direct_write():
    model = _randomise_bn(models.resnet18(width_mult=0.125))
    cm = nc.compile(model, (2, 1, 28, 28))
    x = RNG.standard_normal((2, 1, 28, 28), dtype=np.float32)
    cm(x)
    model[0][0].weight.data[...] *= -1  # raw NumPy write: folded copies do not see it
    cm.refresh()
    _close(cm(x), _plain(model, x))


@pytest.mark.parametrize("algorithm", ["auto", "tapgemm", "im2col", "direct", "winograd"])
def test_prepared_weights_follow_refresh(algorithm):
    """Each algorithm's prepared weights (kept taps on a map smaller than the kernel, tap-GEMM's
    packed matrices) give the plain forward's result, and refresh() re-reads them."""
    nc.manual_seed(5)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 6, 3, padding=1))
    for shape in [(2, 3, 6, 5), (3, 3, 1, 1)]:
        x = RNG.standard_normal(shape, dtype=np.float32)
        cm = nc.compile(model, shape, algorithm=algorithm)
        with nc.no_grad():
            want = nc.conv2d(np.maximum(nc.conv2d(x, model[0].weight.data, model[0].bias.data,
                                                  padding=1), 0),
                             model[2].weight.data, model[2].bias.data, padding=1)
        _close(cm(x), want)
        model[2].weight.data[...] *= -1  # raw NumPy write: the prepared copies do not see it
        cm.refresh()
        _close(cm(x), _plain(model, x))


@pytest.mark.parametrize("x_shape, w_shape, stride, padding, family", [
    ((3, 6, 12, 12), (20, 6, 5, 5), 1, 0, "regblock"),
    ((2, 3, 20, 21), (24, 3, 3, 3), 2, 1, "regblock"),    # strided, short rows
    ((2, 3, 11, 13), (6, 3, 5, 5), 1, 2, "pixvec"),        # padded in a pass of its own
    ((8, 1, 10, 10), (6, 1, 5, 5), 1, 2, "pixvec"),        # padded by each task (8 images)
    ((5, 2, 9, 9), (4, 2, 3, 3), 1, 0, "pixvec"),          # no padding: read in place
    ((2, 3, 20, 21), (9, 3, 3, 3), 2, 1, "phases"),        # not prepared: the general path
])
@pytest.mark.parametrize("bias, relu", [(True, True), (False, False)])
def test_prepared_direct_families_equal_the_plain_forward(x_shape, w_shape, stride, padding,
                                                          family, bias, relu):
    """``engine.prepare_forward``'s closures of the direct families (weights laid out once)
    compute what the unprepared forward does, with and without bias and ReLU."""
    from nbconv._checks.conv import Geom
    from nbconv.conv import engine

    rng = np.random.default_rng(9)
    x = rng.standard_normal(x_shape, dtype=np.float32)
    w = rng.standard_normal(w_shape, dtype=np.float32)
    b = rng.standard_normal(w_shape[0], dtype=np.float32) if bias else None
    g = Geom.of(x_shape, w_shape, stride=stride, padding=padding)
    prepared = engine.prepare_forward("conv2d", x_shape, w, g, "direct")
    assert prepared.plan.kernels[0] == family
    assert (prepared.run is None) == (family == "phases")
    y = np.full((x_shape[0], w_shape[0], g.OH, g.OW), np.nan, np.float32)
    engine.forward("conv2d", x, w, b, g, "direct", relu, None, y, prepared)
    want = nc.conv2d(x, w, b, stride=stride, padding=padding)
    _close(y, np.maximum(want, 0) if relu else want)


# -- arguments ----------------------------------------------------------------------------------
def test_bad_arguments():
    model = models.lenet5()
    with pytest.raises(TypeError, match="'model'"):
        nc.compile(lambda x: x, (1, 1, 28, 28))
    with pytest.raises(TypeError, match="'input_shape'"):
        nc.compile(model, "1, 1, 28, 28")
    with pytest.raises(TypeError, match="'input_shape'"):
        nc.compile(model, 28)
    with pytest.raises(TypeError, match="'input_shape'"):
        nc.compile(model, (1, 1, 28.0, 28))
    with pytest.raises(TypeError, match="'input_shape'"):
        nc.compile(model, ())
    with pytest.raises(ValueError, match="'input_shape'"):
        nc.compile(model, (-1, 1, 28, 28))
    with pytest.raises(ValueError, match="'input_shape'"):
        nc.compile(model, (1, 0, 28, 28))
    with pytest.raises(ValueError, match="'algorithm'"):
        nc.compile(model, (1, 1, 28, 28), algorithm="fft")
    with pytest.raises(ValueError, match="in_features"):  # the model's own error for the shape
        nc.compile(model, (1, 1, 32, 32))


def test_bad_inputs():
    model = models.lenet5(activation="relu")
    cm = nc.compile(model, (2, 1, 28, 28))
    with pytest.raises(ValueError, match=r"\(2, 1, 27, 28\).*\(2, 1, 28, 28\)"):
        cm(np.zeros((2, 1, 27, 28), np.float32))
    with pytest.raises(ValueError, match=r"\(2, 3, 28, 28\)"):
        cm(np.zeros((2, 3, 28, 28), np.float32))
    with pytest.raises(ValueError, match=r"'x' has shape \(1, 28, 28\)"):
        cm(np.zeros((1, 28, 28), np.float32))
    with pytest.raises(TypeError, match="'x'"):
        cm(np.zeros((2, 1, 28, 28), np.complex64))


def test_float64_input_cast_with_the_plain_warning():
    model = models.lenet5(activation="relu")
    cm = nc.compile(model, (2, 1, 28, 28))
    x = RNG.standard_normal((2, 1, 28, 28))
    with pytest.warns(UserWarning, match="float64 but the model's parameters are float32"):
        y = cm(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = _plain(model, x)
    assert y.dtype == np.float32
    _close(y, ref)
    xs = np.asfortranarray(x.astype(np.float32))[:, :, ::-1]  # any layout
    _close(cm(xs), _plain(model, np.ascontiguousarray(xs)))


class _FakeDeviceArray:
    __cuda_array_interface__ = {"shape": (2,), "typestr": "<f4", "data": (0, False),
                                "version": 3}
    shape, dtype = (2,), np.dtype(np.float32)


def test_device_arrays_are_refused():
    model = models.lenet5()
    cm = nc.compile(model, (1, 1, 28, 28))
    with pytest.raises(TypeError, match="CPU only"):
        cm(_FakeDeviceArray())
    model[0].bias.data = _FakeDeviceArray()
    with pytest.raises(TypeError, match="CPU only"):
        nc.compile(model, (1, 1, 28, 28))


# -- memory -----------------------------------------------------------------------------------
def _peak(fn, x):
    fn(x)  # warm: plans, caches
    tracemalloc.start()
    try:
        fn(x)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_compiled_call_allocates_less_than_plain_forward():
    model = _randomise_bn(models.resnet18(width_mult=0.125))
    x = RNG.standard_normal((8, 1, 64, 64), dtype=np.float32)
    cm = nc.compile(model, x.shape)
    plain = _peak(lambda a: _plain(model, a), x)
    compiled = _peak(cm, x)
    assert compiled < plain / 2, (compiled, plain)


def test_input_is_never_written():
    model = nn.Sequential(nn.ReLU(), nn.Sigmoid(), nn.Flatten(), nn.Linear(12, 3), nn.Tanh())
    cm = nc.compile(model, (2, 3, 2, 2))
    x = RNG.standard_normal((2, 3, 2, 2), dtype=np.float32)
    kept = x.copy()
    _close(cm(x), _plain(model, x))
    np.testing.assert_array_equal(x, kept)
    assert "in place" in cm.explain()  # the sigmoid writes over the ReLU's buffer, not over x


def test_leaky_relu_tanh_avgpool_and_concat_graph():
    g = nn.Graph()
    g.add("a", nn.Conv2d(2, 3, 3, padding=1), "input")
    g.add("b", nn.LeakyReLU(0.2), "a")
    g.add("c", nn.AvgPool2d(3, 1, padding=1, count_include_pad=False), "input")
    g.add("d", nn.Concat(axis=1), "b", "c", "input")
    g.add("e", nn.Tanh(), "d")
    g.add("f", nn.GlobalAvgPool2d(keepdims=False), "e")
    cm = nc.compile(g, (3, 2, 5, 6))
    assert "opaque" not in cm.explain() and ".forward" not in cm.explain()
    for n in (3, 1):
        x = RNG.standard_normal((n, 2, 5, 6), dtype=np.float32)
        _close(cm(x), _plain(g, x))


def test_calls_do_not_move_the_state_counter():
    """Neither the plain forward nor a compiled call counts as a change of the model (else
    alternating them would trace the model again at every call)."""
    from nbconv.nn import modes

    model = nn.Sequential(_randomise_bn(models.resnet18(width_mult=0.125)), FirstChannels())
    cm = nc.compile(model, (2, 1, 28, 28))
    x = RNG.standard_normal((2, 1, 28, 28), dtype=np.float32)
    cm(x)
    v = modes.state_version()
    plan = cm._plan(2)
    for _ in range(2):
        model.eval()  # already in eval mode: no change
        with nc.no_grad():
            model(x)
        cm(x)
    assert modes.state_version() == v and cm._plan(2) is plan


def test_inputs_unlike_the_last_call_take_the_checked_path():
    """A call whose input matches the last one's (shape, dtype, C order) skips the checks;
    any other input is checked and planned as usual, whatever came before it."""
    model = models.lenet5(activation="relu")
    cm = nc.compile(model, (2, 1, 28, 28))
    x2 = RNG.standard_normal((2, 1, 28, 28), dtype=np.float32)
    x3 = RNG.standard_normal((3, 1, 28, 28), dtype=np.float32)
    for x in (x2, x2, x3, x2, x3, x3):  # batch sizes alternating: one plan each
        _close(cm(x), _plain(model, x))
    with pytest.raises(ValueError, match=r"\(3, 1, 27, 28\)"):
        cm(np.zeros((3, 1, 27, 28), np.float32))
    xf = np.asfortranarray(x3)
    _close(cm(xf), _plain(model, x3))
    with pytest.warns(UserWarning, match="float64"):
        y = cm(x3.astype(np.float64))
    assert y.dtype == np.float32
    _close(y, _plain(model, x3))
    model[0].weight.data[...] *= -1  # raw write, then refresh(): no plan of before is used
    cm.refresh()
    _close(cm(x3), _plain(model, x3))

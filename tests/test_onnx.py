"""nbconv.onnx: export to ONNX (checked by onnxruntime), load ONNX files (checked by PyTorch).

Independent references: onnxruntime runs what :func:`nbconv.onnx.export` writes; PyTorch
models exported by ``torch.onnx.export`` give the expected outputs and input gradients of what
:func:`nbconv.onnx.load` builds.  The export -> load -> nbconv round trips compare nbconv with
itself (the same layers before and after the file): they prove the file loses nothing, not
that the layers are right, which the other test files do.

Shapes are tiny (``width_mult`` 1/32..1/16, batch 2) so that the file runs in well under a
minute once the kernels are compiled.
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest
from closeness import assert_scaled_close

import nbconv
import nbconv.nn as nn
from nbconv import models
from nbconv.io import FormatError
from nbconv.onnx import UnsupportedOpError

onnx = pytest.importorskip("onnx", reason="onnx not installed: pip install 'nbconv[onnx]'")
ort = pytest.importorskip("onnxruntime",
                          reason="onnxruntime not installed: pip install 'nbconv[onnx]'")

REPO = pathlib.Path(nbconv.__file__).resolve().parent.parent
RTOL = 2e-5


def _rng(seed=0):
    return np.random.default_rng(seed)


def _perturb_stats(model, seed=1):
    """Batch-norm statistics and affine parameters away from their identity defaults."""
    rng = _rng(seed)
    for _, m in model.named_modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            c = m._config["num_features"]
            m._buffers["running_mean"][...] = rng.normal(0, 0.5, c)
            m._buffers["running_var"][...] = rng.uniform(0.5, 2.0, c)
            m.weight.data[...] = rng.uniform(0.5, 1.5, c)
            m.bias.data[...] = rng.normal(0, 0.2, c)
    return model


def _run_ort(path, x):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (name,) = [i.name for i in sess.get_inputs()]
    return sess.run(None, {name: x})[0]


def _forward_backward(model, x, dy):
    model.zero_grad()
    y = model.forward(x)
    dx = model.backward(dy)
    return y, dx, [p.grad.copy() for p in model.parameters()]


def _round_trip(model, shape, tmp_path, name="m.onnx", opset=None):
    """Export ``model``; onnxruntime must agree with it; load the file and compare the loaded
    graph's forward and backward passes with the original's (eval mode both)."""
    model.eval()
    x = _rng(2).standard_normal(shape).astype(np.float32)
    path = nbconv.onnx.export(model, tmp_path / name, shape, opset=opset)
    onnx.checker.check_model(onnx.load(path), full_check=True)
    with nbconv.no_grad():
        want = model(x)
    got = _run_ort(path, x)
    assert got.shape == want.shape and got.dtype == np.float32
    assert_scaled_close(got, want, RTOL)

    g = nbconv.onnx.load(path)
    assert isinstance(g, nn.Graph) and not g.training
    dy = _rng(3).standard_normal(want.shape).astype(np.float32)
    y0, dx0, grads0 = _forward_backward(model, x, dy)
    y1, dx1, grads1 = _forward_backward(g, x, dy)
    assert_scaled_close(y1, y0, 1e-6)
    assert dx1.shape == x.shape and dx1.dtype == np.float32
    assert_scaled_close(dx1, dx0, 1e-5)
    assert [a.shape for a in grads1] == [a.shape for a in grads0]
    for a, b in zip(grads1, grads0):
        assert_scaled_close(a, b, 1e-5)
    return path, g


# ---------------------------------------------------------------------------------------------
# export -> onnxruntime, export -> load: every nbconv.models builder
# ---------------------------------------------------------------------------------------------
BUILDERS = {
    "lenet5": (lambda: models.lenet5(), (2, 1, 28, 28)),
    "lenet5_tanh_avg_pad2": (lambda: models.lenet5(activation="tanh", pool="avg", padding=2),
                             (2, 1, 28, 28)),
    "seed_net": (lambda: models.seed_net(hidden_activation="relu"), (2, 1, 28, 28)),
    "simple_convnet": (lambda: models.simple_convnet(
        (1, 10, 10), {"filter_num": 4, "filter_size": 3}, hidden_size=8, rng=0), (2, 1, 10, 10)),
    "alexnet_lrn": (lambda: models.alexnet(width_mult=1 / 32, lrn=True), (2, 1, 28, 28)),
    "zfnet_lrn": (lambda: models.zfnet(width_mult=1 / 32, lrn=True), (2, 1, 28, 28)),
    "vgg11": (lambda: models.vgg11(width_mult=1 / 32), (2, 1, 28, 28)),
    "nin": (lambda: models.nin(width_mult=1 / 32), (2, 1, 28, 28)),
    "googlenet": (lambda: models.googlenet(width_mult=1 / 16), (2, 1, 28, 28)),
    "resnet18": (lambda: models.resnet18(width_mult=1 / 16, in_channels=3), (2, 3, 32, 32)),
}


def test_every_builder_is_covered():
    builders = {n for n in models.__all__ if not n.endswith("_block")}
    assert builders == {n.split("_lrn")[0].split("_tanh")[0] for n in BUILDERS}


@pytest.mark.parametrize("name", list(BUILDERS))
def test_builder_round_trip(name, tmp_path):
    nbconv.manual_seed(0)
    build, shape = BUILDERS[name]
    model = _perturb_stats(build())
    path, g = _round_trip(model, shape, tmp_path)
    # any batch size runs: the file's batch axis is symbolic
    x = _rng(4).standard_normal((3,) + shape[1:]).astype(np.float32)
    with nbconv.no_grad():
        want = g(x)
    assert_scaled_close(_run_ort(path, x), want, RTOL)
    # the loaded graph exports again (its layers came from ONNX nodes)
    again = nbconv.onnx.export(g, tmp_path / "again.onnx", shape)
    assert_scaled_close(_run_ort(again, x), want, RTOL)


# ---------------------------------------------------------------------------------------------
# every layer and option the exporter knows
# ---------------------------------------------------------------------------------------------
def _conv_zoo():
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, stride=2, padding="same", dilation=1, groups=2), nn.LeakyReLU(0.2),
        nn.Conv2d(4, 4, 3, padding=2, dilation=2, padding_mode="reflect"), nn.Sigmoid(),
        nn.Conv2d(4, 6, (3, 2), padding=(1, 0), padding_mode="replicate", bias=False),
        nn.BatchNorm2d(6), nn.Tanh(),
        nn.Conv2d(6, 4, 3, padding="same", padding_mode="circular"), nn.ReLU(),
        nn.Conv2d(4, 4, 2, padding="same"),  # even kernel: "same" pads bottom/right by one
        nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
        nn.MaxPool2d(2, stride=1, padding=1, dilation=2, ceil_mode=True),
        nn.AdaptiveAvgPool2d((3, 2)),          # windows overlap: two MatMul nodes
        nn.Flatten(), nn.Linear(24, 5), nn.Dropout(0.3), nn.Softmax(),
    )


def _graph_zoo():
    g = nn.Graph()
    g.add("conv", nn.Conv2d(3, 4, 1), "input")
    g.add("gap", nn.GlobalAvgPool2d(keepdims=False), "conv")
    g.add("bn", nn.BatchNorm1d(4), "gap")
    g.add("fc_a", nn.Linear(4, 3), "bn")
    g.add("fc_b", nn.Linear(4, 3, bias=False), "bn")
    g.add("fc_c", nn.Linear(4, 3), "gap")
    g.add("sum", nn.Add(), "fc_a", "fc_b", "fc_c")   # three inputs: ONNX Sum
    g.add("cat", nn.Concat(axis=1), "sum", "fc_a")
    g.add("pool", nn.AdaptiveAvgPool2d(2), "conv")   # tiles the input: an AveragePool
    g.add("flat", nn.Flatten(start_dim=2), "pool")   # a Reshape keeping the batch axis
    g.add("fc3", nn.Linear(4, 2), "flat")            # 3-D input: MatMul + Add
    g.add("flat2", nn.Flatten(), "fc3")
    g.add("out", nn.Concat(axis=1), "cat", "flat2")
    return g


def _conv1d_zoo():
    return nn.Sequential(
        nn.Conv1d(2, 3, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv1d(3, 3, 3, padding="same", padding_mode="reflect", dilation=2), nn.Tanh(),
        nn.BatchNorm1d(3), nn.Flatten(), nn.Linear(15, 2),
    )


@pytest.mark.parametrize("build, shape, ops", [
    (_conv_zoo, (2, 2, 13, 11), {"Pad", "Conv", "BatchNormalization", "AveragePool", "MaxPool",
                                 "MatMul", "Gemm", "Dropout", "Softmax", "LeakyRelu"}),
    (_graph_zoo, (2, 3, 4, 4), {"GlobalAveragePool", "Sum", "Concat", "AveragePool",
                                "Reshape", "MatMul", "Add", "Flatten"}),
    (_conv1d_zoo, (2, 2, 9), {"Pad", "Conv", "BatchNormalization"}),
], ids=["conv_zoo", "graph_zoo", "conv1d_zoo"])
def test_layer_round_trip(build, shape, ops, tmp_path):
    nbconv.manual_seed(1)
    model = _perturb_stats(build())
    path, _ = _round_trip(model, shape, tmp_path)
    assert ops <= {n.op_type for n in onnx.load(path).graph.node}


@pytest.mark.parametrize("pool", [nn.MaxPool2d, nn.AvgPool2d])
def test_ceil_mode_pool_dropping_a_window(pool, tmp_path):
    """PyTorch's rule: with ceil_mode, a last window that would start in the right padding is
    dropped (7 -> 4 here, not ONNX shape inference's 5); onnxruntime follows it."""
    model = nn.Sequential(nn.Conv2d(1, 2, 1), pool(2, stride=2, padding=1, ceil_mode=True))
    _round_trip(model, (2, 1, 7, 7), tmp_path)


def test_circular_padding_needs_opset_19(tmp_path):
    model = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1, padding_mode="circular"))
    path = nbconv.onnx.export(model, tmp_path / "c.onnx", (1, 1, 5, 5))
    assert onnx.load(path).opset_import[0].version == 19
    with pytest.raises(ValueError, match="opset >= 19"):
        nbconv.onnx.export(model, tmp_path / "c17.onnx", (1, 1, 5, 5), opset=17)


def test_unbatched_shape_and_opsets(tmp_path):
    nbconv.manual_seed(2)
    model = models.lenet5(activation="relu")
    for opset in (13, 19):
        path = nbconv.onnx.export(model, tmp_path / f"l{opset}.onnx", (1, 28, 28), opset=opset)
        proto = onnx.load(path)
        assert proto.opset_import[0].version == opset
        dims = proto.graph.input[0].type.tensor_type.shape.dim
        assert dims[0].dim_param == "N" and [d.dim_value for d in dims[1:]] == [1, 28, 28]
    with pytest.raises(ValueError, match="opset"):
        nbconv.onnx.export(model, tmp_path / "bad.onnx", (1, 28, 28), opset=7)


def test_loaded_layers_round_trip_and_save(tmp_path):
    """The onnx-only layers (Clip, Pad, Slice, Reshape, Squeeze, Unsqueeze, LogSoftmax) export
    again, and a loaded graph saves to and loads from an nbconv model file."""
    from nbconv.onnx import layers as ox

    g = nn.Graph()
    g.add("pad", ox.Pad([[0, 0], [0, 0], [1, 2], [0, 1]], mode="reflect"), "input")
    g.add("pad2", ox.Pad([[0, 0], [0, 0], [1, 0], [2, 1]], value=0.5), "pad")
    g.add("slice", ox.Slice([1, -1], [100, 0], axes=[2, 3], steps=[1, -2]), "pad2")
    g.add("clip", ox.Clip(-0.5, 0.6), "slice")
    g.add("gap", nn.GlobalAvgPool2d(), "clip")
    g.add("sq", ox.Squeeze([2, 3]), "gap")
    g.add("un", ox.Unsqueeze([1]), "sq")
    g.add("re", ox.Reshape([0, -1]), "un")
    g.add("logp", ox.LogSoftmax(dim=1), "re")
    g.add("scale", ox.Arithmetic("div", (1, 2), side="left"), "logp")
    g.nodes[-1][1]._buffers["constant"][...] = [[2.0, -3.0]]
    path, loaded = _round_trip(g, (2, 2, 4, 5), tmp_path)
    nbconv.save(loaded, tmp_path / "m.h5")
    again = nbconv.load(tmp_path / "m.h5")
    x = _rng(5).standard_normal((2, 2, 4, 5)).astype(np.float32)
    np.testing.assert_array_equal(again.eval()(x), loaded(x))


@pytest.mark.parametrize("layer", [
    *[("pad_" + m, lambda m=m: nbconv.onnx.layers.Pad(
        [[0, 0], [2, 1], [1, 3]], mode=m, value=0.25)) for m in ("constant", "reflect", "edge",
                                                                 "wrap")],
    ("clip", lambda: nbconv.onnx.layers.Clip(-0.3, 0.4)),
    ("slice", lambda: nbconv.onnx.layers.Slice([1, 4], [-1, 0], axes=[1, -1], steps=[2, -1])),
    *[(f"arithmetic_{op}_{side}", lambda op=op, side=side: _arithmetic_layer(op, side))
      for op in ("add", "sub", "mul", "div") for side in ("left", "right")],
    ("matmul_left", lambda: _matmul_layer("left")),
    ("matmul_right", lambda: _matmul_layer("right")),
], ids=lambda p: p[0])
def test_onnx_layers_backward_matches_finite_differences(layer):
    from gradcheck import directional_check

    module = layer[1]()
    x = _rng(6).standard_normal((2, 4, 5))
    y = module.forward(x)
    dy = _rng(7).standard_normal(y.shape)
    dx = module.backward(dy)
    assert dx.shape == x.shape
    directional_check(module.forward, [x], dy, [dx])


def _arithmetic_layer(op, side):
    m = nbconv.onnx.layers.Arithmetic(op, (4, 1), side=side, dtype=np.float64)
    m._buffers["constant"][...] = _rng(13).uniform(0.5, 2.0, (4, 1))
    return m


def _matmul_layer(side):
    shape = (3, 4) if side == "left" else (5, 3)
    m = nbconv.onnx.layers.MatMul(shape, side=side, dtype=np.float64)
    m._buffers["matrix"][...] = _rng(8).standard_normal(shape)
    return m


# ---------------------------------------------------------------------------------------------
# PyTorch models exported by torch.onnx.export load and agree with PyTorch
# ---------------------------------------------------------------------------------------------
def _torch():
    return pytest.importorskip("torch", reason="torch not installed: PyTorch twins skipped")


EXPORTERS = ["torchscript", "dynamo"]


def _torch_export(torch, model, x, path, exporter, static=False):
    import warnings

    if exporter == "dynamo" and importlib.util.find_spec("onnxscript") is None:
        pytest.skip("onnxscript not installed: torch.onnx.export(dynamo=True) needs it")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if static:  # the defaults: the example's batch size is written into the file
            torch.onnx.export(model, (x,), str(path), dynamo=exporter == "dynamo")
        elif exporter == "dynamo":
            torch.onnx.export(model, (x,), str(path), dynamo=True, verbose=False,
                              dynamic_shapes=({0: torch.export.Dim("N", min=1, max=64)},))
        else:  # the TorchScript exporter, with a dynamic batch axis
            torch.onnx.export(model, (x,), str(path), dynamo=False, input_names=["x"],
                              output_names=["y"], dynamic_axes={"x": {0: "N"}, "y": {0: "N"}})


def _twin(torch, kind):
    tnn = torch.nn

    class LeNet(tnn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.c2 = tnn.Conv2d(1, 6, 5, padding=2), tnn.Conv2d(6, 16, 5)
            self.f1, self.f2, self.f3 = tnn.Linear(400, 120), tnn.Linear(120, 84), \
                tnn.Linear(84, 10)

        def forward(self, x):
            x = torch.max_pool2d(torch.relu(self.c1(x)), 2)
            x = torch.nn.functional.avg_pool2d(torch.sigmoid(self.c2(x)), 2)
            x = x.view(x.size(0), -1)  # a Shape -> Gather -> Concat -> Reshape chain
            x = self.f3(torch.tanh(self.f2(tnn.functional.relu6(self.f1(x)))))
            return tnn.functional.log_softmax(x, dim=1)  # as PyTorch's MNIST example

    class BasicBlock(tnn.Module):  # torchvision's, with a strided projection shortcut
        def __init__(self, cin=4, cout=8, stride=2):
            super().__init__()
            self.conv1 = tnn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = tnn.BatchNorm2d(cout)
            self.conv2 = tnn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = tnn.BatchNorm2d(cout)
            self.downsample = tnn.Sequential(tnn.Conv2d(cin, cout, 1, stride, bias=False),
                                             tnn.BatchNorm2d(cout))

        def forward(self, x):
            y = torch.relu(self.bn1(self.conv1(x)))
            return torch.relu(self.bn2(self.conv2(y)) + self.downsample(x))

    class Inception(tnn.Module):  # d2l's Inception v1 block
        def __init__(self, cin=4, c1=2, c2=(3, 4), c3=(2, 3), c4=2):
            super().__init__()
            self.p1_1 = tnn.Conv2d(cin, c1, 1)
            self.p2_1, self.p2_2 = tnn.Conv2d(cin, c2[0], 1), tnn.Conv2d(c2[0], c2[1], 3,
                                                                           padding=1)
            self.p3_1, self.p3_2 = tnn.Conv2d(cin, c3[0], 1), tnn.Conv2d(c3[0], c3[1], 5,
                                                                           padding=2)
            self.p4_1, self.p4_2 = tnn.MaxPool2d(3, 1, padding=1), tnn.Conv2d(cin, c4, 1)

        def forward(self, x):
            r = torch.relu
            return torch.cat((r(self.p1_1(x)), r(self.p2_2(r(self.p2_1(x)))),
                              r(self.p3_2(r(self.p3_1(x)))), r(self.p4_2(self.p4_1(x)))), 1)

    class Layers(tnn.Module):  # the other layers and options both exporters write
        def __init__(self):
            super().__init__()
            self.c1 = tnn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect")
            self.c2 = tnn.Conv2d(4, 4, 3, padding=2, padding_mode="replicate", dilation=2,
                                 groups=2)
            self.c3 = tnn.Conv2d(4, 6, 4, padding="same", bias=False)
            self.c4 = tnn.Conv2d(6, 4, 3)
            self.c5 = tnn.Conv2d(4, 4, 3, padding=1, padding_mode="circular")  # Slice + Concat
            self.bn = tnn.BatchNorm2d(6)
            self.pool1 = tnn.MaxPool2d(3, 2, 1, ceil_mode=True)
            self.pool2 = tnn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False)
            self.gap = tnn.AdaptiveAvgPool2d(1)
            self.fc1, self.bn1 = tnn.Linear(8, 6), tnn.BatchNorm1d(6)
            self.fc2 = tnn.Linear(6, 5, bias=False)
            self.drop = tnn.Dropout(0.5)
            self.register_buffer("mean", torch.tensor([0.1, 0.2, 0.3]).reshape(1, 3, 1, 1))

        def forward(self, x):
            f = tnn.functional
            x = (x - self.mean) / 0.5 * 2.0 + 1.0  # Sub, Div, Mul, Add with constants
            y = f.leaky_relu(self.c2(torch.tanh(self.c1(x))), 0.1)
            y = f.relu6(self.bn(self.c3(y)))
            y = self.pool2(self.pool1(self.c5(self.c4(f.pad(y, (1, 2, 0, 1))))))
            a = self.gap(y).squeeze(-1).squeeze(-1)       # GlobalAveragePool or ReduceMean
            b = torch.sigmoid(y).mean((2, 3))              # ReduceMean
            z = self.drop(torch.relu(self.bn1(self.fc1(torch.cat((a, b), 1)))))
            return torch.softmax(self.fc2(z), dim=1)

    class Conv1d(tnn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = tnn.Conv1d(3, 4, 3, stride=2, padding=1)
            self.bn = tnn.BatchNorm1d(4)
            self.fc = tnn.Linear(16, 2)

        def forward(self, x):
            return self.fc(torch.flatten(self.bn(torch.relu(self.c1(x))), 1))

    def alexnet_lrn():  # torch writes LocalResponseNorm as ~10 elementwise nodes
        return tnn.Sequential(
            tnn.Conv2d(3, 6, 3), tnn.ReLU(), tnn.LocalResponseNorm(5, 1e-3, 0.75, 2.0),
            tnn.MaxPool2d(2), tnn.Conv2d(6, 6, 3), tnn.LocalResponseNorm(4),  # even size
            tnn.AdaptiveAvgPool2d(1), tnn.Flatten(), tnn.Linear(6, 3))

    torch.manual_seed(0)
    model, shape = {"lenet": (LeNet, (2, 1, 28, 28)),
                    "alexnet_lrn": (alexnet_lrn, (2, 3, 10, 10)),
                    "basic_block": (BasicBlock, (2, 4, 9, 9)),
                    "inception": (Inception, (2, 4, 7, 7)), "layers": (Layers, (2, 3, 11, 9)),
                    "conv1d": (Conv1d, (2, 3, 8))}[kind]
    model = model()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (tnn.BatchNorm1d, tnn.BatchNorm2d)):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return model.eval(), shape


@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("kind", ["lenet", "basic_block", "inception", "layers", "conv1d",
                                  "alexnet_lrn"])
def test_torch_twin_loads_and_agrees(kind, exporter, tmp_path):
    torch = _torch()
    model, shape = _twin(torch, kind)
    path = tmp_path / f"{kind}.onnx"
    _torch_export(torch, model, torch.zeros(shape), path, exporter)
    g = nbconv.onnx.load(path)
    for n in (shape[0], 3):  # the exported batch size and another one
        x = _rng(n).standard_normal((n,) + shape[1:]).astype(np.float32)
        tx = torch.from_numpy(x).requires_grad_(True)
        ty = model(tx)
        dy = _rng(9).standard_normal(tuple(ty.shape)).astype(np.float32)
        ty.backward(torch.from_numpy(dy))
        g.zero_grad()
        y = g.forward(x)
        assert y.dtype == np.float32
        assert_scaled_close(y, ty.detach().numpy(), 1e-5)
        assert_scaled_close(g.backward(dy), tx.grad.numpy(), 1e-5)


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_torch_static_batch_export_runs_any_batch(exporter, tmp_path):
    """Exported without a dynamic axis, the flatten becomes Reshape(x, [2, ...]) with the
    example's batch size 2; nbconv keeps the batch size of the input it is given."""
    torch = _torch()
    model, shape = _twin(torch, "lenet")
    path = tmp_path / "lenet_static.onnx"
    _torch_export(torch, model, torch.zeros(shape), path, exporter, static=True)
    g = nbconv.onnx.load(path)
    for n in (2, 5):
        x = _rng(n).standard_normal((n,) + shape[1:]).astype(np.float32)
        with torch.no_grad():
            assert_scaled_close(g(x), model(torch.from_numpy(x)).numpy(), 1e-5)


def test_torch_lenet_fine_tunes(tmp_path):
    """A loaded graph trains: a few SGD steps in train mode lower the loss."""
    torch = _torch()
    model, shape = _twin(torch, "lenet")
    path = tmp_path / "lenet.onnx"
    _torch_export(torch, model, torch.zeros(shape), path, "torchscript")
    g = nbconv.onnx.load(path).train()
    x = _rng(10).standard_normal((8,) + shape[1:]).astype(np.float32)
    t = _rng(11).integers(0, 10, 8)
    crit = nbconv.losses.CrossEntropyLoss()
    opt = nbconv.optim.SGD(g.parameters(), lr=0.1)
    losses = []
    for _ in range(5):
        opt.zero_grad()
        losses.append(crit.forward(g(x), t))
        g.backward(crit.backward())
        opt.step()
    assert losses[-1] < losses[0]


# ---------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------
def _tiny_model(op_type="Relu", **attrs):
    h = onnx.helper
    x = h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 2, 3, 3])
    y = h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 2, 3, 3])
    node = h.make_node(op_type, ["x"], ["y"], name="my_node", **attrs)
    return h.make_model(h.make_graph([node], "g", [x], [y]),
                        opset_imports=[h.make_opsetid("", 17)])


def test_unsupported_op_names_node_and_type(tmp_path):
    path = tmp_path / "erf.onnx"
    onnx.save(_tiny_model("Erf"), path)
    with pytest.raises(UnsupportedOpError, match=r"'my_node' \(op type 'Erf'\)") as info:
        nbconv.onnx.load(path)
    assert isinstance(info.value, ValueError) and isinstance(info.value, NotImplementedError)
    assert (info.value.node, info.value.op_type) == ("my_node", "Erf")
    onnx.save(_tiny_model("LRN", size=4), path)
    with pytest.raises(UnsupportedOpError, match="even size"):
        nbconv.onnx.load(path)


def test_malformed_files_raise_format_error(tmp_path):
    good = tmp_path / "good.onnx"
    onnx.save(_tiny_model(), good)
    nbconv.onnx.load(good)  # the untouched file loads
    data = good.read_bytes()
    bad = tmp_path / "bad.onnx"
    cases = {
        "garbage": b"\x00\xff\x13 this is not protobuf \x99" * 7,
        "truncated": data[: len(data) // 2],
        "empty": b"",
        "hdf5": b"\x89HDF\r\n\x1a\n" + bytes(64),
    }
    for why, payload in cases.items():
        bad.write_bytes(payload)
        with pytest.raises(FormatError) as info:
            nbconv.onnx.load(bad)
        assert str(bad) in str(info.value), why
    # a well-formed protobuf that fails onnx.checker: a node reading an undefined value
    m = _tiny_model()
    m.graph.node[0].input[0] = "nowhere"
    onnx.save(m, bad)
    with pytest.raises(FormatError, match="invalid ONNX model"):
        nbconv.onnx.load(bad)
    with pytest.raises(FileNotFoundError):
        nbconv.onnx.load(tmp_path / "missing.onnx")


def test_export_errors_keep_the_previous_file(tmp_path):
    class Custom(nn.Module):  # a hand-written backward: not traced, no ONNX form
        def forward(self, x):
            return x

        def backward(self, dy):
            return dy

    path = tmp_path / "m.onnx"
    nbconv.onnx.export(nn.Sequential(nn.ReLU()), path, (1, 3))
    before = path.read_bytes()
    with pytest.raises(ValueError, match=r"layer '1' of type Custom"):
        nbconv.onnx.export(nn.Sequential(nn.ReLU(), Custom()), path, (1, 3))
    with pytest.raises(ValueError, match="even size"):
        nbconv.onnx.export(nn.Sequential(nn.LocalResponseNorm(4)), path, (1, 6, 2, 2))
    with pytest.raises(ValueError, match="input_shape"):
        nbconv.onnx.export(nn.Sequential(nn.ReLU()), path, (0, 3))
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["m.onnx"]  # no temporary file left behind


def test_import_nbconv_does_not_import_onnx():
    code = ("import sys, nbconv, nbconv.onnx; "
            "assert not {'onnx', 'onnxruntime'} & set(sys.modules), 'onnx imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO,
                   env={**os.environ, "PYTHONPATH": str(REPO)})


def test_readme_onnx_sections_run(tmp_path):
    """The README's "Run a PyTorch model in nbconv" and "Export to ONNX" code runs."""
    _torch()
    text = (REPO / "README.md").read_text()
    blocks = []
    for title in ("Run a PyTorch model in nbconv", "Export to ONNX"):
        section = text.split(f"## {title}", 1)[1].split("\n## ", 1)[0]
        blocks += re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 2
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        for code in blocks:
            exec(compile(code, "README.md", "exec"), {})
    finally:
        os.chdir(cwd)


def test_float64_model_round_trip(tmp_path):
    """A float64 model exports DOUBLE tensors and loads back as float64 parameters."""
    nbconv.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 3))
    model.astype(np.float64).eval()
    x = _rng(12).standard_normal((2, 1, 4, 4))
    path = nbconv.onnx.export(model, tmp_path / "f64.onnx", x.shape)
    assert onnx.load(path).graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.DOUBLE
    g = nbconv.onnx.load(path)
    assert {p.data.dtype for p in g.parameters()} == {np.dtype(np.float64)}
    y = g(x)
    assert y.dtype == np.float64
    with nbconv.no_grad():
        np.testing.assert_allclose(y, model(x), rtol=1e-12, atol=1e-12)

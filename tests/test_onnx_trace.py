"""nbconv.onnx.export of PyTorch-style modules (a ``forward`` without ``backward``), traced.

Independent reference: onnxruntime runs the exported file, and its output is compared with
nbconv's eval forward pass of the subclassed module itself (not of the traced graph).
Shapes are tiny so that the file runs in seconds once the kernels are compiled.
"""

from __future__ import annotations

import numpy as np
import pytest
from closeness import assert_scaled_close

import nbconv
import nbconv as nc
import nbconv.nn as nn

onnx = pytest.importorskip("onnx", reason="onnx not installed: pip install 'nbconv[onnx]'")
ort = pytest.importorskip("onnxruntime",
                          reason="onnxruntime not installed: pip install 'nbconv[onnx]'")

RTOL = 1e-4


def _rng(seed=0):
    return np.random.default_rng(seed)


def _perturb(model, seed=1):
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


def _modes(model):
    return [(name, m.training) for name, m in model.named_modules()]


def _export_and_compare(model, shape, tmp_path, batches=(None, 3), dtype=np.float32):
    """Export ``model`` (left in training mode, as after training); onnxruntime must agree
    with nbconv's eval forward pass at the traced batch size and another one; the model's
    modes are left as they were."""
    model.train()
    before = _modes(model)
    path = nbconv.onnx.export(model, tmp_path / "m.onnx", shape)
    assert _modes(model) == before
    onnx.checker.check_model(onnx.load(path), full_check=True)
    model.eval()
    for n in batches:
        x = _rng(2).standard_normal((n or shape[0],) + tuple(shape[1:])).astype(dtype)
        with nbconv.no_grad():
            want = np.asarray(model(x))
        got = _run_ort(path, x)
        assert got.shape == want.shape and got.dtype == dtype
        assert_scaled_close(got, want, RTOL)
    return onnx.load(path)


def _ops(proto):
    return [n.op_type for n in proto.graph.node]


# ---------------------------------------------------------------------------------------------
# ResNet, Inception, the PyTorch tutorial net
# ---------------------------------------------------------------------------------------------
class BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock, as people write it."""

    def __init__(self, cin, cout, stride=1, functional_relu=False):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(cout))
        self.functional_relu = functional_relu

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return nc.relu(out) if self.functional_relu else self.relu(out)


@pytest.mark.parametrize("functional_relu", [False, True])
def test_basic_block_with_downsample(functional_relu, tmp_path):
    block = _perturb(BasicBlock(4, 8, stride=2, functional_relu=functional_relu))
    proto = _export_and_compare(block, (2, 4, 8, 8), tmp_path)
    assert _ops(proto) == ["Conv", "BatchNormalization", "Relu", "Conv", "BatchNormalization",
                           "Conv", "BatchNormalization", "Add", "Relu"]
    # initialisers are named by the state-dict keys
    names = {i.name for i in proto.graph.initializer}
    assert {"conv1.weight", "bn2.running_var", "downsample.0.weight",
            "downsample.1.bias"} <= names


class Inception(nn.Module):
    def __init__(self, cin, join):
        super().__init__()
        self.b1 = nn.Conv2d(cin, 4, 1)
        self.b2 = nn.Sequential(nn.Conv2d(cin, 3, 1), nn.ReLU(), nn.Conv2d(3, 5, 3, padding=1))
        self.b3_reduce = nn.Conv2d(cin, 2, 1)
        self.b3 = nn.Conv2d(2, 3, 5, padding=2)
        self.pool = nn.MaxPool2d(3, stride=1, padding=1)
        self.b4 = nn.Conv2d(cin, 2, 1)
        self.join = join

    def forward(self, x):
        branches = [nc.relu(self.b1(x)), nc.relu(self.b2(x)),
                    nc.relu(self.b3(nc.relu(self.b3_reduce(x)))), nc.relu(self.b4(self.pool(x)))]
        if self.join == "np.concatenate":
            return np.concatenate(branches, axis=1)
        return nc.cat(branches, 1)


@pytest.mark.parametrize("join", ["np.concatenate", "nc.cat"])
def test_inception_block(join, tmp_path):
    proto = _export_and_compare(Inception(3, join), (2, 3, 7, 7), tmp_path)
    assert _ops(proto)[-1] == "Concat"
    assert proto.graph.output[0].type.tensor_type.shape.dim[1].dim_value == 14


class TutorialNet(nn.Module):
    """The PyTorch CIFAR-10 tutorial network, one ReLU and one pool reused."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)
        self.relu = nn.ReLU()

    def forward(self, x):
        x = self.pool(self.relu(self.conv1(x)))
        x = self.pool(self.relu(self.conv2(x)))
        x = x.reshape(x.shape[0], -1)
        x = self.relu(self.fc1(x))
        x = self.relu(self.fc2(x))
        return self.fc3(x)


def test_tutorial_net_reusing_relu_and_pool(tmp_path):
    net = TutorialNet()
    proto = _export_and_compare(net, (2, 3, 32, 32), tmp_path)
    assert _ops(proto) == ["Conv", "Relu", "MaxPool", "Conv", "Relu", "MaxPool", "Flatten",
                           "Gemm", "Relu", "Gemm", "Relu", "Gemm"]
    # the reused modules are still the model's own, registered once
    assert [n for n, _ in net.named_children()] == ["conv1", "pool", "conv2", "fc1", "fc2",
                                                    "fc3", "relu"]


class Shared(nn.Module):
    """One Linear (with parameters) applied twice."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return self.fc(nc.tanh(self.fc(x)))


def test_module_with_parameters_called_twice(tmp_path):
    proto = _export_and_compare(Shared(), (2, 4), tmp_path)
    assert _ops(proto) == ["Gemm", "Tanh", "Gemm"]


class SmallResNet(nn.Module):
    """Subclassed blocks inside Sequential stages, a mean over H, W and a head."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.layer1 = nn.Sequential(BasicBlock(4, 4), BasicBlock(4, 4))
        self.layer2 = nn.Sequential(BasicBlock(4, 8, stride=2), BasicBlock(8, 8))
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        x = self.layer2(self.layer1(nc.relu(self.stem(x))))
        return self.fc(x.mean(axis=(2, 3)))


def test_subclassed_blocks_inside_sequential(tmp_path):
    model = _perturb(SmallResNet())
    proto = _export_and_compare(model, (2, 3, 8, 8), tmp_path)
    assert _ops(proto).count("Add") == 4 and "GlobalAveragePool" in _ops(proto)
    names = {i.name for i in proto.graph.initializer}
    assert {"layer1.0.conv1.weight", "layer2.0.downsample.1.running_mean",
            "fc.weight"} <= names


def test_sequential_of_subclassed_modules_is_traced_inside(tmp_path):
    """A Sequential holding a subclassed module: the existing path, the block traced."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), _perturb(BasicBlock(4, 4)),
                          nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    proto = _export_and_compare(model, (2, 3, 6, 6), tmp_path)
    assert "1.conv2.weight" in {i.name for i in proto.graph.initializer}


# ---------------------------------------------------------------------------------------------
# array operations and functional ops
# ---------------------------------------------------------------------------------------------
class ArrayOps(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.w = nn.Parameter(_rng(5).standard_normal((4, 6, 3, 3)).astype(np.float32) * 0.3)
        self.scale = nn.Parameter(np.full((1, 4, 1, 1), 1.5, np.float32))
        self.fc = nn.Linear(12, 7)

    def forward(self, x):
        h = self.conv(x)                                   # (N, 6, 10, 10)
        h = nc.conv2d(h, self.w, stride=2, padding=1)      # functional, parameter weight
        h = h * self.scale - 0.25                          # a parameter and a constant
        g = nc.sigmoid(h[:, 1:3])                          # a channel slice
        h = 2.0 / (1.0 + nc.relu(h)) + (-h)                # constants on the left, negation
        h = h[:, :2] * g + h[:, 2:] / (1.0 + g * g)        # products of two computed arrays
        h = nc.max_pool2d(h, 2)                            # (N, 2, 2, 2)
        t = np.transpose(h, (0, 2, 3, 1)).reshape(h.shape[0], 2, -1)   # (N, 2, 4)
        s = t.sum(axis=1, keepdims=True) + t.mean(axis=-1, keepdims=True)
        v = np.stack([s[:, 0], t[:, 1]], axis=1)           # (N, 2, 4)
        v = nc.flatten(v @ np.eye(4, dtype=np.float32) + v[..., ::-1], 1)   # (N, 8)
        v = nc.cat([v, nc.tanh(v[:, 4:])], dim=1)          # (N, 12)
        out = nc.linear(v, self.fc.weight, self.fc.bias)   # weight tying
        return nc.log_softmax(out, axis=-1) + nc.softmax(out, axis=1)


def test_array_ops_and_functional_ops(tmp_path):
    proto = _export_and_compare(ArrayOps(), (2, 3, 10, 10), tmp_path)
    ops = set(_ops(proto))
    assert {"Mul", "Sub", "Div", "Neg", "Slice", "Transpose", "ReduceSum", "MatMul",
            "Unsqueeze", "Concat", "Flatten", "Gemm", "LogSoftmax", "Softmax"} <= ops


class MeanOverBatch(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        h = self.fc(x)
        return h - h.mean(axis=0) + h.sum(axis=(0, 1), keepdims=True) * 0.1


def test_reductions_over_the_batch_axis_follow_the_batch(tmp_path):
    _export_and_compare(MeanOverBatch(), (3, 4), tmp_path, batches=(None, 5, 1))


class ScaledConv(nn.Conv2d):
    """A layer subclass that overrides only forward: its forward is recorded."""

    def forward(self, x):
        return super().forward(x) * 2.0


def test_layer_subclass_overriding_forward(tmp_path):
    proto = _export_and_compare(ScaledConv(2, 3, 3), (2, 2, 5, 5), tmp_path)
    assert _ops(proto) == ["Conv", "Mul"]
    # (not a ReLU or BatchNorm2d next: Sequential fuses Conv2d with those, skipping the
    # subclass's forward -- a separate bug of the fused path)
    seq = nn.Sequential(ScaledConv(2, 3, 3), nn.Sigmoid())
    proto = _export_and_compare(seq, (2, 2, 5, 5), tmp_path)
    assert _ops(proto) == ["Conv", "Mul", "Sigmoid"]


class Tiny(nn.Module):
    def __init__(self, dtype=np.float32):
        super().__init__()
        self.fc = nn.Linear(5, 4, dtype=dtype)
        self.bn = nn.BatchNorm1d(4, dtype=dtype)

    def forward(self, x):
        return nc.relu(self.bn(self.fc(x))) * 3 - x[:, :4]


def test_float64_traced_model(tmp_path):
    """DOUBLE tensors (a model onnxruntime's CPU kernels run in float64: no Conv)."""
    model = _perturb(Tiny(np.float64))
    proto = _export_and_compare(model, (2, 5), tmp_path, dtype=np.float64)
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.DOUBLE
    assert {i.data_type for i in proto.graph.initializer
            if i.name.endswith(("weight", "constant"))} == {onnx.TensorProto.DOUBLE}


class Identity(nn.Module):
    def forward(self, x):
        return x


def test_identity_forward(tmp_path):
    assert _ops(_export_and_compare(Identity(), (2, 3), tmp_path)) == ["Identity"]


# ---------------------------------------------------------------------------------------------
# what cannot be traced raises, names the record and writes nothing
# ---------------------------------------------------------------------------------------------
class Unsupported(nn.Module):
    def __init__(self, kind):
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3, padding=1)
        self.kind = kind
        self.w = np.ones((2, 2, 1, 1), np.float32)  # a plain array, not a Parameter

    def forward(self, x):
        y = self.conv(x)
        if self.kind == "dropout":
            return nc.dropout(y, 0.5)  # training=True: drops even in eval mode
        if self.kind == "astype":
            return y.astype(np.float64)
        if self.kind == "plain weight":
            return nc.conv2d(y, self.w)
        if self.kind == "branch":  # a path that depends on the values
            return y if float(np.asarray(x).max()) <= 0 else -y
        if self.kind == "two outputs":
            return y, nc.relu(y)
        return np.asarray(y)  # not recorded


@pytest.mark.parametrize("kind, message", [
    ("dropout", r"Unsupported.forward: dropout drops values even in eval mode.*training="),
    ("astype", r"astype\(float64\) casts to float64 in a float32 model"),
    ("plain weight", r"conv2d has a plain-array weight.*nn.Parameter"),
    ("branch", r"traced on zeros does not compute the same.*depends on the input's values"),
    ("two outputs", r"returns 2 values"),
    ("plain output", r"output of Unsupported.forward was not recorded"),
])
def test_unsupported_records_raise_clearly(kind, message, tmp_path):
    model = Unsupported(kind)
    before = _modes(model)
    with pytest.raises(ValueError, match=message):
        nbconv.onnx.export(model, tmp_path / "m.onnx", (1, 2, 4, 4))
    assert not (tmp_path / "m.onnx").exists()
    assert _modes(model) == before


def test_hand_written_backward_module_keeps_the_existing_error(tmp_path):
    class Custom(nn.Module):
        def forward(self, x):
            return x * 2

        def backward(self, dy):
            return dy * 2

    with pytest.raises(ValueError, match=r"layer '\(the model\)' of type Custom has no ONNX"):
        nbconv.onnx.export(Custom(), tmp_path / "m.onnx", (1, 3))


# ---------------------------------------------------------------------------------------------
# the model is left as it was
# ---------------------------------------------------------------------------------------------
def test_export_leaves_the_recorded_forward_and_modes_alone(tmp_path):
    net = _perturb(BasicBlock(2, 4, stride=2))
    x = _rng(4).standard_normal((2, 2, 6, 6)).astype(np.float32)
    dy = _rng(5).standard_normal((2, 4, 3, 3)).astype(np.float32)

    def grads():
        return [p.grad.copy() for p in net.parameters()]

    net.train()
    net.zero_grad()
    net(x)
    dx_plain = net.backward(dy)
    want = grads()

    net.zero_grad()
    net(x)  # recorded, then exported, then its backward
    nbconv.onnx.export(net, tmp_path / "m.onnx", (2, 2, 6, 6))
    assert net.training and all(m.training for m in net.modules())
    dx = net.backward(dy)
    assert_scaled_close(dx, dx_plain, 1e-6)
    for a, b in zip(grads(), want):
        assert_scaled_close(a, b, 1e-6)

    fresh = BasicBlock(2, 2)
    nbconv.onnx.export(fresh, tmp_path / "f.onnx", (1, 2, 4, 4))
    with pytest.raises(RuntimeError, match="no recorded forward pass"):
        fresh.backward(np.ones((1, 2, 4, 4), np.float32))

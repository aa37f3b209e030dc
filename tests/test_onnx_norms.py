"""ONNX export and import of GroupNorm, InstanceNorm1d/2d and LayerNorm.

Independent references: onnxruntime runs what :func:`nbconv.onnx.export` writes and the
hand-built ``GroupNormalization``/``LayerNormalization`` files; PyTorch models exported by
``torch.onnx.export`` (both exporters) give the outputs and input gradients of what
:func:`nbconv.onnx.load` builds.  The export -> load round trips compare nbconv with itself:
they prove the file loses nothing (and that the chains fold back into the layers).
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from closeness import assert_scaled_close

import nbconv
import nbconv.nn as nn

onnx = pytest.importorskip("onnx", reason="onnx not installed: pip install 'nbconv[onnx]'")
ort = pytest.importorskip("onnxruntime",
                          reason="onnxruntime not installed: pip install 'nbconv[onnx]'")


def _rng(seed=0):
    return np.random.default_rng(seed)


def _randomise(model, seed=1):
    """Affine parameters and running statistics away from their identity defaults."""
    rng = _rng(seed)
    for p in model.parameters():
        p.data[...] = rng.uniform(0.5, 1.5, p.data.shape)
    for _, m in model.named_modules():
        if "running_mean" in m._buffers:
            c = m._buffers["running_mean"].shape
            m._buffers["running_mean"][...] = rng.normal(0, 0.5, c)
            m._buffers["running_var"][...] = rng.uniform(0.5, 2.0, c)
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


def _layer_types(graph):
    return [type(m).__name__ for _, m, _ in graph.nodes]


def _round_trip(model, shape, tmp_path, opset=None, same_params=True):
    model.eval()
    x = _rng(2).standard_normal(shape).astype(np.float32)
    path = nbconv.onnx.export(model, tmp_path / "m.onnx", shape, opset=opset)
    onnx.checker.check_model(onnx.load(path), full_check=True)
    with nbconv.no_grad():
        want = model(x)
    for n in (shape[0], 3):  # the traced batch size and another one
        xn = _rng(n).standard_normal((n,) + shape[1:]).astype(np.float32)
        with nbconv.no_grad():
            assert_scaled_close(_run_ort(path, xn), model(xn), 2e-5)
    g = nbconv.onnx.load(path)
    dy = _rng(3).standard_normal(want.shape).astype(np.float32)
    y0, dx0, grads0 = _forward_backward(model, x, dy)
    y1, dx1, grads1 = _forward_backward(g, x, dy)
    assert_scaled_close(y1, y0, 1e-5)
    assert_scaled_close(dx1, dx0, 1e-5)
    if same_params:
        assert [a.shape for a in grads1] == [a.shape for a in grads0]
        for a, b in zip(grads1, grads0):
            assert_scaled_close(a, b, 1e-5)
    return path, g


def test_norm_layers_round_trip_2d(tmp_path):
    model = _randomise(nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.GroupNorm(4, 8), nn.ReLU(),
        nn.InstanceNorm2d(8, affine=True), nn.InstanceNorm2d(8),
        nn.GroupNorm(2, 8, affine=False, eps=1e-3),
        nn.LayerNorm([8, 5, 6]), nn.LayerNorm(6, bias=False, eps=1e-4),
        nn.Flatten(), nn.Linear(240, 4)))
    # (the InstanceNormalization of the InstanceNorm2d without affine holds a unit scale and
    # a zero bias, which come back as a trainable weight and bias)
    path, g = _round_trip(model, (2, 3, 5, 6), tmp_path, same_params=False)
    assert [p.data.shape for p in g.parameters()] == [
        p.data.shape for p in model.parameters()][:6] + [(8,), (8,)] + [
        p.data.shape for p in model.parameters()][6:]
    ops = [n.op_type for n in onnx.load(path).graph.node]
    assert ops.count("InstanceNormalization") == 4 and ops.count("LayerNormalization") == 2
    assert _layer_types(g) == ["Conv2d", "GroupNorm", "ReLU", "InstanceNorm2d",
                               "InstanceNorm2d", "GroupNorm", "LayerNorm", "LayerNorm",
                               "Flatten", "Linear"]


def test_norm_layers_round_trip_1d(tmp_path):
    model = _randomise(nn.Sequential(
        nn.Conv1d(2, 6, 3), nn.GroupNorm(3, 6), nn.InstanceNorm1d(6, affine=True),
        nn.LayerNorm(7), nn.Flatten(), nn.Linear(42, 3)))
    _, g = _round_trip(model, (2, 2, 9), tmp_path)
    assert "GroupNorm" in _layer_types(g) and "InstanceNorm1d" in _layer_types(g)


def test_tracked_instance_norm_exports_its_running_statistics(tmp_path):
    """In eval mode a tracked instance norm normalises with its running statistics: ONNX's
    BatchNormalization (imported as a BatchNorm2d, the same function)."""
    model = _randomise(nn.Sequential(
        nn.Conv2d(2, 4, 3), nn.InstanceNorm2d(4, affine=True, track_running_stats=True)))
    path, g = _round_trip(model, (2, 2, 6, 5), tmp_path)
    assert "BatchNormalization" in [n.op_type for n in onnx.load(path).graph.node]
    assert "BatchNorm2d" in _layer_types(g)


def test_layer_norm_needs_opset_17(tmp_path):
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.LayerNorm([4, 3, 3]))
    with pytest.raises(ValueError, match="opset >= 17.*LayerNormalization"):
        nbconv.onnx.export(model, tmp_path / "m.onnx", (1, 2, 5, 5), opset=16)
    nbconv.onnx.export(model, tmp_path / "m.onnx", (1, 2, 5, 5), opset=17)
    # GroupNorm and InstanceNorm need nothing newer than nbconv's oldest opset
    _round_trip(_randomise(nn.Sequential(nn.Conv2d(2, 4, 3), nn.GroupNorm(2, 4),
                                         nn.InstanceNorm2d(4, affine=True))),
                (2, 2, 5, 5), tmp_path, opset=13)


def _onnx_model(tmp_path, op, opset, inits, attrs, xshape, name="op.onnx"):
    helper, TP = onnx.helper, onnx.TensorProto
    x = helper.make_tensor_value_info("x", TP.FLOAT, ["N"] + list(xshape[1:]))
    y = helper.make_tensor_value_info("y", TP.FLOAT, ["N"] + list(xshape[1:]))
    node = helper.make_node(op, ["x"] + list(inits), ["y"], **attrs)
    graph = helper.make_graph([node], "g", [x], [y], [
        onnx.numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    path = tmp_path / name
    onnx.save(model, path)
    return path


def test_group_normalization_operator_loads(tmp_path):
    """Opset 21's operator (per-channel scale and bias) loads as a GroupNorm that agrees with
    onnxruntime."""
    rng = _rng(4)
    G, C = 3, 6
    path = _onnx_model(tmp_path, "GroupNormalization", 21,
                       {"s": rng.uniform(0.5, 2, C), "b": rng.normal(0, 1, C)},
                       dict(num_groups=G, epsilon=1e-3), (2, C, 4, 5))
    g = nbconv.onnx.load(path)
    assert _layer_types(g) == ["GroupNorm"]
    x = rng.standard_normal((3, C, 4, 5)).astype(np.float32)
    with nbconv.no_grad():
        assert_scaled_close(g(x), _run_ort(path, x), 2e-5)


@pytest.mark.parametrize("axis,scale_shape,bias", [(-1, (5,), True), (-2, (4, 5), False),
                                                   (1, (1, 3, 1, 5), True)])
def test_layer_normalization_operator_loads(axis, scale_shape, bias, tmp_path):
    rng = _rng(5)
    inits = {"s": rng.uniform(0.5, 2, scale_shape)}
    if bias:
        inits["b"] = rng.normal(0, 1, scale_shape)
    path = _onnx_model(tmp_path, "LayerNormalization", 17, inits, dict(axis=axis, epsilon=1e-4),
                       (2, 3, 4, 5))
    g = nbconv.onnx.load(path)
    assert _layer_types(g) == ["LayerNorm"]
    x = rng.standard_normal((3, 3, 4, 5)).astype(np.float32)
    with nbconv.no_grad():
        assert_scaled_close(g(x), _run_ort(path, x), 2e-5)


def test_layer_normalization_over_the_batch_axis(tmp_path):
    """axis 0 normalises the whole tensor: a LayerNorm over all its axes (the file's static
    batch size); an axis out of range is refused."""
    rng = _rng(7)
    path = _onnx_model(tmp_path, "LayerNormalization", 17,
                       {"s": rng.uniform(0.5, 2, (2, 3)), "b": rng.normal(0, 1, (2, 3))},
                       dict(axis=0), (2, 3))
    g = nbconv.onnx.load(path)
    assert _layer_types(g) == ["LayerNorm"]
    x = rng.standard_normal((2, 3)).astype(np.float32)
    with nbconv.no_grad():
        assert_scaled_close(g(x), _run_ort(path, x), 2e-5)
    path = _onnx_model(tmp_path, "LayerNormalization", 17, {"s": np.ones((2, 3))},
                       dict(axis=-3), (2, 3))
    with pytest.raises(nbconv.onnx.UnsupportedOpError, match="axis -3 is out of range"):
        nbconv.onnx.load(path)


def test_instance_normalization_of_other_ranks_loads_as_group_norm(tmp_path):
    rng = _rng(6)
    path = _onnx_model(tmp_path, "InstanceNormalization", 13,
                       {"s": rng.uniform(0.5, 2, 3), "b": rng.normal(0, 1, 3)},
                       dict(epsilon=1e-5), (2, 3, 2, 3, 4))
    g = nbconv.onnx.load(path)
    assert _layer_types(g) == ["GroupNorm"]
    x = rng.standard_normal((2, 3, 2, 3, 4)).astype(np.float32)
    with nbconv.no_grad():
        assert_scaled_close(g(x), _run_ort(path, x), 2e-5)


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_torch_exported_norm_layers_load_and_agree(exporter, tmp_path):
    torch = pytest.importorskip("torch", reason="torch not installed: PyTorch twin skipped")
    import warnings

    if exporter == "dynamo" and importlib.util.find_spec("onnxscript") is None:
        pytest.skip("onnxscript not installed: torch.onnx.export(dynamo=True) needs it")
    tnn = torch.nn
    torch.manual_seed(0)
    model = tnn.Sequential(tnn.Conv2d(3, 8, 3), tnn.GroupNorm(4, 8), tnn.ReLU(),
                           tnn.InstanceNorm2d(8, affine=True), tnn.InstanceNorm2d(8),
                           tnn.GroupNorm(2, 8, affine=False), tnn.LayerNorm([8, 4, 5]),
                           tnn.LayerNorm(5)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.uniform_(0.5, 1.5)
    shape = (2, 3, 6, 7)
    path = tmp_path / "t.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "dynamo":
            torch.onnx.export(model, (torch.zeros(shape),), str(path), dynamo=True,
                              verbose=False)
        else:
            torch.onnx.export(model, (torch.zeros(shape),), str(path), dynamo=False,
                              input_names=["x"], dynamic_axes={"x": {0: "N"}})
    g = nbconv.onnx.load(path)
    assert _layer_types(g).count("GroupNorm") == 2  # the chains fold into the layer
    x = _rng(7).standard_normal(shape).astype(np.float32)
    tx = torch.from_numpy(x).requires_grad_(True)
    ty = model(tx)
    dy = _rng(8).standard_normal(tuple(ty.shape)).astype(np.float32)
    ty.backward(torch.from_numpy(dy))
    g.zero_grad()
    assert_scaled_close(g.forward(x), ty.detach().numpy(), 1e-5)
    assert_scaled_close(g.backward(dy), tx.grad.numpy(), 1e-4)
    grads = {k: p.grad for k, p in g.named_parameters()}
    gn = next(k for k in grads if k.endswith("weight") and grads[k].shape == (8,))
    assert np.abs(grads[gn]).sum() > 0  # the group norm's weight is a trained parameter


def test_functional_norms_in_a_pytorch_style_forward_export(tmp_path):
    """``nc.group_norm``/``instance_norm``/``layer_norm`` called in a recorded forward are
    rebuilt as the layers (affine from parameters, running statistics from the call)."""

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 6, 3)
            self.gw = nn.Parameter(np.linspace(0.5, 1.5, 6, dtype=np.float32))
            self.gb = nn.Parameter(np.linspace(-1, 1, 6, dtype=np.float32))
            self.lw = nn.Parameter(np.linspace(0.5, 1.5, 4 * 5, dtype=np.float32).reshape(4, 5))
            self.rm = np.linspace(-0.5, 0.5, 6).astype(np.float32)
            self.rv = np.linspace(0.5, 2.0, 6).astype(np.float32)

        def forward(self, x):
            h = nbconv.group_norm(self.conv(x), 3, self.gw, self.gb)
            h = nbconv.instance_norm(nbconv.relu(h), bias=self.gb) + nbconv.instance_norm(
                h, self.rm, self.rv, self.gw, None, use_input_stats=False, eps=1e-3)
            return nbconv.layer_norm(h, (4, 5), self.lw, eps=1e-4)

    nbconv.manual_seed(0)
    model = Net().eval()
    shape = (2, 2, 6, 7)
    path = nbconv.onnx.export(model, tmp_path / "f.onnx", shape)
    x = _rng(9).standard_normal(shape).astype(np.float32)
    with nbconv.no_grad():
        want = model(x)
    assert_scaled_close(_run_ort(path, x), want, 2e-5)
    ops = [n.op_type for n in onnx.load(path).graph.node]
    assert {"InstanceNormalization", "BatchNormalization", "LayerNormalization"} <= set(ops)

"""The ONNX nodes that :func:`nbconv.onnx.load` once refused and now imports (issue 27), and
the ONNX-only layers of :mod:`nbconv.onnx.layers` that carry them.

Independent references: onnxruntime and ONNX's reference evaluator (``onnx.reference``) run
the same one-node models; backward passes are checked by float64 finite differences along a
random direction (``gradcheck.directional_check``).  ONNX's own node tests for these
operators run in ``test_onnx_node_conformance.py``.  The export -> load round trips compare
nbconv with itself (the same layer before and after the file; onnxruntime checks the file):
they show that the file loses nothing.
"""

from __future__ import annotations

import numpy as np
import pytest
from closeness import assert_scaled_close
from gradcheck import directional_check
from hypothesis import given
from hypothesis import strategies as st

import nbconv as nc
from nbconv import nn
from nbconv.onnx import layers as ox

onnx = pytest.importorskip("onnx", reason="onnx not installed: pip install 'nbconv[onnx]'")
ort = pytest.importorskip("onnxruntime",
                          reason="onnxruntime not installed: pip install 'nbconv[onnx]'")
from onnx import TensorProto, helper  # noqa: E402


def _rng(seed=0):
    return np.random.default_rng(seed)


def _model(nodes, x_shape, inits=(), opset=19, dtype=TensorProto.FLOAT):
    """A model with one computed input ``x`` and output ``y``; ``inits`` are (name, array)."""
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", dtype, x_shape)],
        [helper.make_tensor_value_info("y", dtype, None)],
        [onnx.numpy_helper.from_array(np.asarray(v), n) for n, v in inits])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    try:
        model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    except Exception:  # an invalid node (a test of a refusal): any shape of the right rank
        out = model.graph.output[0].type.tensor_type
        out.shape.dim.extend([onnx.TensorShapeProto.Dimension() for _ in x_shape])
    return model


def _ort(model, x):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def _load(model, tmp_path, name="m.onnx"):
    path = tmp_path / name
    onnx.save(model, path)
    return nc.onnx.load(path)


def _check_gradient(module, x, seed=1):
    """The module's input gradient against finite differences (float64)."""
    module.train()
    y = module.forward(x)
    dy = _rng(seed).standard_normal(np.shape(y))
    dx = module.backward(dy)
    assert np.shape(dx) == x.shape
    directional_check(module.forward, [x], dy, [dx])


def _round_trip(model, shape, tmp_path, ops, opset=None, dtype=np.float32):
    """Export ``model``; onnxruntime must agree with it and the loaded graph must compute the
    same forward and backward passes (nbconv against itself, through the file)."""
    model.eval()
    x = _rng(2).standard_normal(shape).astype(dtype)
    path = nc.onnx.export(model, tmp_path / "rt.onnx", shape, opset=opset)
    assert set(ops) <= {n.op_type for n in onnx.load(path).graph.node}
    with nc.no_grad():
        want = model(x)
    assert_scaled_close(_ort(onnx.load(path), x), want, 1e-5 if dtype == np.float32 else 1e-12)
    g = nc.onnx.load(path).train()
    model.train()
    dy = _rng(3).standard_normal(np.shape(want)).astype(dtype)
    np.testing.assert_array_equal(g.forward(x), model.forward(x))
    np.testing.assert_array_equal(g.backward(dy), model.backward(dy))
    nc.save(g, tmp_path / "rt.h5")  # the ONNX-only layers are registered: the graph saves
    again = nc.load(tmp_path / "rt.h5").eval()
    with nc.no_grad():
        np.testing.assert_array_equal(again(x), want)
    return g


# ---------------------------------------------------------------------------------------------
# a/g. pooling: auto_pad SAME_*, per-side and large pads, dilated averages
# ---------------------------------------------------------------------------------------------
@st.composite
def _pool_case(draw):
    nd = draw(st.sampled_from([1, 2]))
    k = [draw(st.integers(1, 4)) for _ in range(nd)]
    s = [draw(st.integers(1, 3)) for _ in range(nd)]
    auto = draw(st.sampled_from(["NOTSET", "NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"]))
    same = auto.startswith("SAME")
    d = [1] * nd if same else [draw(st.integers(1, 3)) for _ in range(nd)]
    pads = [draw(st.integers(0, k[i % nd] - 1)) for i in range(2 * nd)]
    ceil = False if same else draw(st.booleans())
    op = draw(st.sampled_from(["MaxPool", "AveragePool"]))
    include = draw(st.booleans())
    sizes = []
    for i in range(nd):  # at least one window fits
        ek = d[i] * (k[i] - 1) + 1
        need = ek - (pads[i] + pads[nd + i] if auto == "NOTSET" else 0)
        sizes.append(draw(st.integers(max(1, need), need + 7)))
    attrs = dict(kernel_shape=k, strides=s, dilations=d, ceil_mode=int(ceil), auto_pad=auto)
    if auto == "NOTSET":
        attrs["pads"] = pads
    if op == "AveragePool":
        attrs["count_include_pad"] = int(include)
    shape = [2, 3] + sizes
    return op, attrs, shape, draw(st.integers(0, 2**31))


def _onnx_pool_loops(op, x, kernel_shape, strides, dilations, ceil_mode, auto_pad, pads=None,
                     count_include_pad=0):
    """ONNX's MaxPool/AveragePool by explicit loops over outputs and taps, from the operator
    specification (ONNX's reference evaluator fails on some of these cases: a negative "same"
    padding when the stride exceeds the kernel, 1x1 max pools).  Returns the output and the
    mask of the windows that hold no input element (possible with dilation: ``-inf`` for a
    max, NaN for an average without the padding)."""
    import itertools
    import math

    nd = len(kernel_shape)
    sizes, begin, end, out = x.shape[2:], [], [], []
    for i in range(nd):
        n, k, s, d = sizes[i], kernel_shape[i], strides[i], dilations[i]
        if auto_pad.startswith("SAME"):
            o = math.ceil(n / s)
            total = max(0, (o - 1) * s + k - n)
            b = total // 2 if auto_pad == "SAME_UPPER" else total - total // 2
            e = total - b
        else:
            b, e = (0, 0) if auto_pad == "VALID" else (pads[i], pads[nd + i])
            span = (n + b + e - d * (k - 1) - 1) / s
            o = (math.ceil(span) if ceil_mode else math.floor(span)) + 1
            if ceil_mode and (o - 1) * s >= n + b:
                o -= 1
        begin.append(b)
        end.append(e)
        out.append(o)
    y = np.empty(x.shape[:2] + tuple(out))
    empty = np.zeros(tuple(out), bool)
    for idx in itertools.product(*[range(o) for o in out]):
        vals, extent = [], 0
        for taps in itertools.product(*[range(k) for k in kernel_shape]):
            pos = [idx[i] * strides[i] - begin[i] + taps[i] * dilations[i] for i in range(nd)]
            if all(p < sizes[i] + end[i] for i, p in enumerate(pos)):
                extent += 1
            if all(0 <= p < sizes[i] for i, p in enumerate(pos)):
                vals.append(x[(slice(None), slice(None), *pos)])
        empty[idx] = not vals
        if op == "MaxPool":
            y[(Ellipsis, *idx)] = np.max(vals, axis=0) if vals else -np.inf
        elif vals or count_include_pad:
            y[(Ellipsis, *idx)] = np.sum(vals, axis=0) / (extent if count_include_pad
                                                         else len(vals))
        else:
            y[(Ellipsis, *idx)] = np.nan
    return y, empty


@given(_pool_case())
def test_onnx_pooling_layers_agree_with_onnx(case):
    """Every attribute combination the layers accept: float64 against explicit loops written
    from ONNX's specification, float32 against onnxruntime."""
    op, attrs, shape, seed = case
    cls = ox.MaxPool if op == "MaxPool" else ox.AveragePool
    x = _rng(seed).standard_normal(shape)
    got = cls(**attrs)(x)
    want, empty = _onnx_pool_loops(op, x, **attrs)
    assert got.shape == want.shape and got.dtype == np.float64
    assert_scaled_close(got, want, 1e-12)
    x32 = x.astype(np.float32)
    got32 = cls(**attrs)(x32)
    assert got32.dtype == np.float32
    if attrs["auto_pad"].startswith("SAME") and any(
            (-(-n // s) - 1) * s + k < n for n, s, k in zip(
                shape[2:], attrs["strides"], attrs["kernel_shape"])):
        return  # a stride beyond the kernel: "same" pads < 0, which onnxruntime refuses
    node = helper.make_node(op, ["x"], ["y"], **attrs)
    # (onnxruntime fills a window without input elements with the lowest float, or 0)
    assert_scaled_close(got32[..., ~empty], _ort(_model([node], shape), x32)[..., ~empty], 1e-5)


@pytest.mark.parametrize("op, attrs, shape", [
    ("MaxPool", dict(kernel_shape=[3, 2], strides=[2, 1], auto_pad="SAME_LOWER"), (2, 2, 7, 6)),
    ("MaxPool", dict(kernel_shape=[3, 3], pads=[2, 0, 1, 2], dilations=[2, 1], ceil_mode=1,
                     strides=[2, 2]), (1, 2, 8, 7)),
    ("AveragePool", dict(kernel_shape=[3, 2], strides=[2, 2], auto_pad="SAME_UPPER"),
     (2, 2, 7, 6)),
    ("AveragePool", dict(kernel_shape=[3, 3], pads=[2, 1, 2, 2], dilations=[2, 1],
                         ceil_mode=1, strides=[2, 3], count_include_pad=1), (1, 2, 9, 7)),
    ("AveragePool", dict(kernel_shape=[4], pads=[3, 1], dilations=[2], strides=[3]), (2, 3, 11)),
])
def test_onnx_pooling_layers_backward_matches_finite_differences(op, attrs, shape):
    cls = ox.MaxPool if op == "MaxPool" else ox.AveragePool
    # distinct values: no ties, so the max pool's derivative exists everywhere it is taken
    x = _rng(4).permutation(np.prod(shape)).reshape(shape) / np.prod(shape) - 0.5
    _check_gradient(cls(**attrs), x)


@pytest.mark.parametrize("attrs, why", [
    (dict(kernel_shape=[2, 2], pads=[2, 0, 0, 0]), "smaller than the kernel"),
    (dict(kernel_shape=[3], auto_pad="SAME_UPPER", dilations=[2]), "dilation 1"),
    (dict(kernel_shape=[3], auto_pad="SAME_LOWER", ceil_mode=1), "floor mode"),
    (dict(kernel_shape=[2, 2, 2]), "1-D and 2-D"),
    (dict(kernel_shape=[2], auto_pad="SAME"), "auto_pad"),
    (dict(kernel_shape=[2], strides=[0]), "strides"),
])
def test_onnx_pooling_layers_refuse_what_they_cannot_compute(attrs, why):
    for cls in (ox.MaxPool, ox.AveragePool):
        with pytest.raises(ValueError, match=why):
            cls(**attrs)


def test_onnx_pooling_layer_names_a_bad_input():
    with pytest.raises(ValueError, match=r"AveragePool.forward: input x must have 4 axes"):
        ox.AveragePool([2, 2])(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="smaller than the window"):
        ox.MaxPool([3], pads=[1, 0])(np.zeros((1, 1, 1)))


@pytest.mark.parametrize("op, attrs, native", [
    ("MaxPool", dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER"), False),
    ("MaxPool", dict(kernel_shape=[3, 3], pads=[2, 1, 1, 2]), False),
    ("MaxPool", dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1], ceil_mode=1), True),
    ("AveragePool", dict(kernel_shape=[2, 2], auto_pad="SAME_LOWER"), False),
    ("AveragePool", dict(kernel_shape=[3, 3], pads=[2, 2, 2, 2], count_include_pad=1), False),
    ("AveragePool", dict(kernel_shape=[2, 2], dilations=[2, 2], ceil_mode=1), False),
    ("AveragePool", dict(kernel_shape=[3], pads=[1, 1]), True),
])
def test_pooling_imports_natively_where_pytorch_can(op, attrs, native, tmp_path):
    """A node that PyTorch's pools express becomes one (MaxPool2d, AvgPool1d, ...); the others
    the ONNX pooling layers; both compute ONNX's result (onnxruntime)."""
    shape = (2, 3, 9) if len(attrs["kernel_shape"]) == 1 else (2, 3, 9, 8)
    model = _model([helper.make_node(op, ["x"], ["y"], **attrs)], shape)
    g = _load(model, tmp_path)
    (layer,) = [m for _, m, _ in g.nodes]
    assert isinstance(layer, (ox.MaxPool, ox.AveragePool)) != native
    x = _rng(5).standard_normal(shape).astype(np.float32)
    assert_scaled_close(g(x), _ort(model, x), 1e-6)


def test_onnx_pooling_layers_round_trip(tmp_path):
    g = nn.Graph()
    g.add("same", ox.MaxPool([3, 2], strides=[2, 2], auto_pad="SAME_LOWER"), "input")
    g.add("pads", ox.AveragePool([3, 3], pads=[2, 0, 1, 2], ceil_mode=True, strides=[2, 1]),
          "same")
    g.add("dil", ox.AveragePool([2, 2], dilations=[2, 1], count_include_pad=True,
                                pads=[1, 1, 0, 1]), "pads")
    g.add("max", ox.MaxPool([2, 2], pads=[1, 0, 1, 1], dilations=[1, 2]), "dil")
    loaded = _round_trip(g, (2, 3, 13, 12), tmp_path, {"MaxPool", "AveragePool"})
    assert [type(m) for _, m, _ in loaded.nodes] == [type(m) for _, m, _ in g.nodes]
    with pytest.raises(ValueError, match="opset >= 19"):
        nc.onnx.export(g, tmp_path / "old.onnx", (2, 3, 13, 12), opset=18)


def test_onnx_pooling_layer_1d_round_trip(tmp_path):
    g = nn.Sequential(ox.MaxPool([3], auto_pad="SAME_UPPER", strides=[2]),
                      ox.AveragePool([3], pads=[2, 0], strides=[2], ceil_mode=True))
    _round_trip(g, (2, 3, 11), tmp_path, {"MaxPool", "AveragePool"})


# ---------------------------------------------------------------------------------------------
# b. Flatten on any axis; c. ReduceMean over any axes
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(5,), (2, 3), (2, 3, 4), (2, 3, 4, 5)])
def test_flatten_on_every_axis_loads_and_runs(shape, tmp_path):
    """ONNX Flatten is (prod(shape[:axis]), prod(shape[axis:])) for axis in [-r, r]: every one
    loads, runs forward and backward, and agrees with onnxruntime; an axis outside the range
    is refused at load, not at run."""
    r = len(shape)
    x = _rng(6).standard_normal(shape)
    for axis in range(-r, r + 1):
        model = _model([helper.make_node("Flatten", ["x"], ["y"], axis=axis)], shape,
                       dtype=TensorProto.DOUBLE, opset=13)
        g = _load(model, tmp_path, f"f{axis + r}.onnx").train()
        y = g.forward(x)
        a = axis + r if axis < 0 else axis
        np.testing.assert_array_equal(y, x.reshape(int(np.prod(shape[:a])), -1))
        np.testing.assert_array_equal(_ort(model, x), y)
        dy = _rng(7).standard_normal(y.shape)
        np.testing.assert_array_equal(g.backward(dy), dy.reshape(shape))
    for axis in (-r - 1, r + 1):
        model = helper.make_model(helper.make_graph(
            [helper.make_node("Flatten", ["x"], ["y"], axis=axis)], "g",
            [helper.make_tensor_value_info("x", TensorProto.DOUBLE, shape)],
            [helper.make_tensor_value_info("y", TensorProto.DOUBLE, [None, None])]),
            opset_imports=[helper.make_opsetid("", 13)])
        with pytest.raises(nc.onnx.UnsupportedOpError, match="out of range"):
            _load(model, tmp_path, "bad.onnx")


@pytest.mark.parametrize("axes, keepdims", [
    ([1], 0), ([0], 1), ([-1, 1], 1), ([0, 2, 3], 0), (None, 1), (None, 0), ([2, 3], 0),
])
@pytest.mark.parametrize("opset", [13, 18])
def test_reduce_mean_over_any_axes(axes, keepdims, opset, tmp_path):
    shape = (2, 3, 4, 5)
    x = _rng(8).standard_normal(shape)
    inits, ins, attrs = [], ["x"], dict(keepdims=keepdims)
    if axes is not None and opset >= 18:
        inits, ins = [("axes", np.array(axes, np.int64))], ["x", "axes"]
    elif axes is not None:
        attrs["axes"] = axes
    model = _model([helper.make_node("ReduceMean", ins, ["y"], **attrs)], shape, inits,
                   opset=opset, dtype=TensorProto.DOUBLE)
    g = _load(model, tmp_path)
    want = np.mean(x, axis=None if axes is None else tuple(axes), keepdims=bool(keepdims))
    assert_scaled_close(g(x), want, 1e-14)
    assert_scaled_close(_ort(model, x), want, 1e-14)
    if axes is not None and sorted(a % 4 for a in axes) == [2, 3]:
        assert isinstance(g.nodes[0][1], nn.GlobalAvgPool2d)  # a global pool stays one


def test_reduce_mean_noop_and_bad_axes(tmp_path):
    shape = (2, 3, 4)
    x = _rng(9).standard_normal(shape)
    empty = [("axes", np.zeros(0, np.int64))]
    node = helper.make_node("ReduceMean", ["x", "axes"], ["y"], noop_with_empty_axes=1)
    model = _model([node, helper.make_node("Relu", ["y"], ["z"])], shape, empty, opset=18,
                   dtype=TensorProto.DOUBLE)
    model.graph.output[0].name = "z"
    g = _load(model, tmp_path)
    np.testing.assert_array_equal(g(x), np.maximum(x, 0))
    for axes in ([3], [1, -2]):
        model = helper.make_model(helper.make_graph(
            [helper.make_node("ReduceMean", ["x"], ["y"], axes=axes)], "g",
            [helper.make_tensor_value_info("x", TensorProto.DOUBLE, shape)],
            [helper.make_tensor_value_info("y", TensorProto.DOUBLE, [None] * 3)]),
            opset_imports=[helper.make_opsetid("", 13)])
        with pytest.raises(nc.onnx.UnsupportedOpError, match=r"axes .* are invalid"):
            _load(model, tmp_path, "bad.onnx")


@pytest.mark.parametrize("layer", [
    ("flatten_axis0", lambda: ox.FlattenAxis(0)),
    ("flatten_axis2", lambda: ox.FlattenAxis(2)),
    ("flatten_axis-1", lambda: ox.FlattenAxis(-1)),
    ("transpose", lambda: ox.Transpose([2, 0, 1])),
    ("transpose_reverse", lambda: ox.Transpose()),
    ("reduce_mean_keep", lambda: ox.ReduceMean([0, -1])),
    ("reduce_mean_drop", lambda: ox.ReduceMean([1], keepdims=False)),
    ("reduce_mean_all", lambda: ox.ReduceMean(None, keepdims=False)),
], ids=lambda p: p[0])
def test_shape_and_reduce_layers_backward_matches_finite_differences(layer):
    _check_gradient(layer[1](), _rng(10).standard_normal((2, 4, 5)))


@pytest.mark.parametrize("opset", [17, 18])
def test_shape_and_reduce_layers_round_trip(opset, tmp_path):
    g = nn.Graph()
    g.add("t", ox.Transpose([0, 1, 3, 2]), "input")
    g.add("mean", ox.ReduceMean([1], keepdims=True), "t")
    g.add("mean2", ox.ReduceMean([-1], keepdims=False), "mean")
    g.add("flat", ox.FlattenAxis(2), "mean2")
    loaded = _round_trip(g, (2, 3, 4, 5), tmp_path, {"Transpose", "ReduceMean", "Flatten"},
                         opset=opset)
    assert [type(m) for _, m, _ in loaded.nodes] == [type(m) for _, m, _ in g.nodes]


# ---------------------------------------------------------------------------------------------
# d. constant operands of Concat, Add, Sum, Mul (broadcast)
# ---------------------------------------------------------------------------------------------
def _two_branch(tail, shape, inits, opset=13):
    """x -> Relu -> a, x -> Sigmoid -> b, then the ``tail`` nodes (reading a, b, constants)."""
    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Sigmoid", ["x"], ["b"])]
    return _model(nodes + tail, shape, inits, opset=opset, dtype=TensorProto.DOUBLE)


def _check_graph(model, x, tmp_path, rtol=1e-12):
    """The loaded graph against onnxruntime, and its input gradient against finite
    differences."""
    g = _load(model, tmp_path)
    assert_scaled_close(g(x), _ort(model, x), rtol)
    _check_gradient(g, x)
    return g


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_concat_with_constant_operands(axis, tmp_path):
    shape = (2, 3, 4)
    c_shape = list(shape)
    c_shape[axis] = 2
    c1, c2 = _rng(11).standard_normal(c_shape), _rng(12).standard_normal(c_shape)
    model = _two_branch([helper.make_node("Concat", ["c1", "a", "b", "c2"], ["y"], axis=axis)],
                        shape, [("c1", c1), ("c2", c2)])
    g = _check_graph(model, _rng(13).standard_normal(shape), tmp_path)
    assert any(isinstance(m, ox.ConcatConstant) for _, m, _ in g.nodes)
    # one computed operand: the layer's backward gives one array
    model = _model([helper.make_node("Concat", ["x", "c1"], ["y"], axis=axis)], shape,
                   [("c1", c1)], opset=13, dtype=TensorProto.DOUBLE)
    _check_graph(model, _rng(14).standard_normal(shape), tmp_path)


def test_concat_of_mismatched_constant_is_refused_at_load(tmp_path):
    model = _model([helper.make_node("Concat", ["x", "c"], ["y"], axis=1)], (2, 3, 4),
                   [("c", np.zeros((2, 2, 5)))], opset=13, dtype=TensorProto.DOUBLE)
    with pytest.raises(nc.onnx.UnsupportedOpError, match="do not concatenate"):
        _load(model, tmp_path)


def test_sum_and_add_with_broadcast_constants(tmp_path):
    shape = (2, 1, 4)
    c1, c2 = _rng(15).standard_normal((3, 1)), _rng(16).standard_normal((4,))
    # Sum of two computed tensors and two constants, one of which widens the result
    model = _two_branch([helper.make_node("Sum", ["a", "c1", "b", "c2"], ["y"])], shape,
                        [("c1", c1), ("c2", c2)])
    x = _rng(17).standard_normal(shape)
    _check_graph(model, x, tmp_path)
    assert _load(model, tmp_path)(x).shape == (2, 3, 4)
    for op in ("Add", "Mul", "Sub", "Div"):  # a constant that widens the input
        for ins in (["x", "c1"], ["c1", "x"]):
            model = _model([helper.make_node(op, ins, ["y"])], shape, [("c1", c1 + 3.0)],
                           opset=13, dtype=TensorProto.DOUBLE)
            _check_graph(model, x, tmp_path)


def test_constants_that_do_not_broadcast_are_refused_at_load(tmp_path):
    for op in ("Add", "Sum", "Mul"):
        model = _model([helper.make_node(op, ["x", "c"], ["y"])], (2, 3, 4),
                       [("c", np.ones((2, 5)))], opset=13, dtype=TensorProto.DOUBLE)
        with pytest.raises(nc.onnx.UnsupportedOpError, match="does not broadcast"):
            _load(model, tmp_path)
    model = _two_branch([helper.make_node("Sum", ["a", "c", "b"], ["y"])], (2, 3, 4),
                        [("c", np.ones((2, 5)))])
    with pytest.raises(nc.onnx.UnsupportedOpError, match="does not broadcast"):
        _load(model, tmp_path)


def test_concat_constant_and_wide_arithmetic_round_trip(tmp_path):
    g = nn.Graph()
    g.add("a", nn.ReLU(), "input")
    g.add("b", nn.Tanh(), "input")
    g.add("cat", ox.ConcatConstant(1, [[2, 2, 5], None, [2, 1, 5], None], dtype=np.float32),
          "a", "b")
    g.add("wide", ox.Arithmetic("mul", (4, 1, 1, 1), dtype=np.float32), "cat")
    cat, wide = g.nodes[2][1], g.nodes[3][1]
    cat._buffers["constant0"][...] = _rng(18).standard_normal((2, 2, 5))
    cat._buffers["constant1"][...] = _rng(19).standard_normal((2, 1, 5))
    wide._buffers["constant"][...] = _rng(20).standard_normal((4, 1, 1, 1))
    loaded = _round_trip(g, (2, 3, 5), tmp_path, {"Concat", "Mul"})
    assert [type(m) for _, m, _ in loaded.nodes] == [type(m) for _, m, _ in g.nodes]


# ---------------------------------------------------------------------------------------------
# e. Gemm with transA/transB/alpha/beta and any C; MatMul with a 1-D operand
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("c_shape", [None, (), (1,), (4,), (1, 4), (3, 1), (3, 4)])
@pytest.mark.parametrize("trans_a, trans_b", [(0, 0), (1, 0), (0, 1), (1, 1)])
@pytest.mark.parametrize("constant", ["B", "A"])
def test_gemm_attributes_and_bias_shapes(c_shape, trans_a, trans_b, constant, tmp_path):
    """Y = alpha A' B' + beta C for (M, K, N) = (3, 5, 4), with A or B the computed input."""
    M, K, N = 3, 5, 4
    a_shape = (K, M) if trans_a else (M, K)
    b_shape = (N, K) if trans_b else (K, N)
    rng = _rng(21)
    x_shape, const = (a_shape, ("B", rng.standard_normal(b_shape))) if constant == "B" else (
        b_shape, ("A", rng.standard_normal(a_shape)))
    inits = [const] + ([] if c_shape is None else [("C", rng.standard_normal(c_shape))])
    ins = ["x", "B"] if constant == "B" else ["A", "x"]
    node = helper.make_node("Gemm", ins + ([] if c_shape is None else ["C"]), ["y"],
                            transA=trans_a, transB=trans_b, alpha=0.75, beta=-1.5)
    model = _model([node], x_shape, inits, opset=13, dtype=TensorProto.DOUBLE)
    g = _check_graph(model, rng.standard_normal(x_shape), tmp_path)
    if constant == "B" and c_shape in (None, (), (1,), (4,), (1, 4)):
        assert [type(m) for _, m, _ in g.nodes][-1] is nn.Linear  # C is the Linear's bias


@pytest.mark.parametrize("beta", [1.0, 0.5])
def test_gemm_with_a_computed_bias(beta, tmp_path):
    """PyTorch's addmm export: C is computed (here another Gemm of the input)."""
    rng = _rng(22)
    nodes = [helper.make_node("Gemm", ["x", "W1", "b1"], ["c"]),
             helper.make_node("Gemm", ["x", "W2", "c"], ["y"], beta=beta, transB=1)]
    model = _model(nodes, (2, 3), [("W1", rng.standard_normal((3, 4))),
                                   ("b1", rng.standard_normal(4)),
                                   ("W2", rng.standard_normal((4, 3)))],
                   opset=13, dtype=TensorProto.DOUBLE)
    _check_graph(model, rng.standard_normal((2, 3)), tmp_path)


def test_gemm_refusals(tmp_path):
    model = _model([helper.make_node("Gemm", ["x", "x"], ["y"])], (3, 3), opset=13,
                   dtype=TensorProto.DOUBLE)
    with pytest.raises(nc.onnx.UnsupportedOpError, match="exactly one of A and B"):
        _load(model, tmp_path)


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("x_shape", [(3,), (2, 3), (2, 4, 3), (1, 2, 4, 3)])
def test_matmul_with_a_vector(side, x_shape, tmp_path):
    """numpy.matmul's rule for a 1-D operand: promoted to a matrix, that axis dropped."""
    rng = _rng(23)
    if side == "left":
        x_shape = x_shape[:-2] + (3, 2) if len(x_shape) >= 2 else x_shape
    v = rng.standard_normal(3)
    ins = ["x", "v"] if side == "right" else ["v", "x"]
    model = _model([helper.make_node("MatMul", ins, ["y"])], x_shape, [("v", v)], opset=13,
                   dtype=TensorProto.DOUBLE)
    x = rng.standard_normal(x_shape)
    g = _check_graph(model, x, tmp_path)
    assert_scaled_close(g(x), np.matmul(x, v) if side == "right" else np.matmul(v, x), 1e-14)


# ---------------------------------------------------------------------------------------------
# f. Pad with axes; Clip with min > max
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("axes, pads", [([2], [1, 2]), ([-1, 1], [0, 2, 3, 1]),
                                        ([3, 2], [2, 1, 0, 1])])
@pytest.mark.parametrize("mode", ["constant", "reflect", "edge"])
def test_pad_with_axes(axes, pads, mode, tmp_path):
    shape = (2, 3, 4, 5)
    inits = [("pads", np.array(pads, np.int64)), ("value", np.array(0.5)),
             ("axes", np.array(axes, np.int64))]
    node = helper.make_node("Pad", ["x", "pads", "value" if mode == "constant" else "", "axes"],
                            ["y"], mode=mode)
    model = _model([node], shape, inits, opset=18, dtype=TensorProto.DOUBLE)
    x = _rng(24).standard_normal(shape)
    g = _check_graph(model, x, tmp_path)
    full = [(0, 0)] * 4
    for i, a in enumerate(axes):
        full[a % 4] = (pads[i], pads[len(axes) + i])
    kw = {"constant_values": 0.5} if mode == "constant" else {}
    np.testing.assert_array_equal(g(x), np.pad(x, full, mode=mode, **kw))


def test_pad_refuses_pads_that_do_not_fit_at_load(tmp_path):
    inits = [("pads", np.array([1, 1, 1, 1], np.int64)), ("axes", np.array([0], np.int64))]
    model = _model([helper.make_node("Pad", ["x", "pads", "", "axes"], ["y"])], (2, 3), inits,
                   opset=18, dtype=TensorProto.DOUBLE)
    with pytest.raises(nc.onnx.UnsupportedOpError, match="invalid for an input of rank 2"):
        _load(model, tmp_path)
    model = _model([helper.make_node("Pad", ["x", "pads"], ["y"])], (2, 3, 4), inits[:1],
                   opset=13, dtype=TensorProto.DOUBLE)
    with pytest.raises(nc.onnx.UnsupportedOpError, match="each of the 3 axes"):
        _load(model, tmp_path)


def test_clip_with_min_above_max_is_max(tmp_path):
    """ONNX's min(max(x, min), max), torch.clamp's rule: every value is max, gradient 0."""
    x = np.array([[-3.0, 0.0, 1.2, 1.7, 5.0, np.nan]])
    model = _model([helper.make_node("Clip", ["x", "lo", "hi"], ["y"])], x.shape,
                   [("lo", np.array(2.0)), ("hi", np.array(1.0))], opset=13,
                   dtype=TensorProto.DOUBLE)
    g = _load(model, tmp_path).train()
    y = g.forward(x)
    np.testing.assert_array_equal(y, np.minimum(np.maximum(x, 2.0), 1.0))
    np.testing.assert_array_equal(y, _ort(model, x))
    np.testing.assert_array_equal(g.backward(np.ones_like(x)), np.zeros_like(x))
    torch = pytest.importorskip("torch", reason="torch not installed: the clamp twin skipped")
    np.testing.assert_array_equal(y, torch.clamp(torch.from_numpy(x), 2.0, 1.0).numpy())
    _check_gradient(ox.Clip(0.5, -0.5), _rng(25).standard_normal((3, 4)))


# ---------------------------------------------------------------------------------------------
# beyond the list: PRelu-6 per channel, LayerNormalization over the batch axis
# ---------------------------------------------------------------------------------------------
def test_prelu_6_has_a_slope_per_channel(tmp_path):
    """Before opset 7 a PRelu slope of C values is one per channel (PyTorch's exports of
    PReLU(C) at opset 6); from opset 7 it broadcasts from the last axis, which nbconv's PReLU
    cannot hold, and is refused."""
    x = _rng(26).standard_normal((2, 3, 3))
    slope = np.array([0.1, -0.2, 0.3])
    model = helper.make_model(helper.make_graph(
        [helper.make_node("PRelu", ["x", "s"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.DOUBLE, x.shape),
         helper.make_tensor_value_info("s", TensorProto.DOUBLE, slope.shape)],  # (IR 3)
        [helper.make_tensor_value_info("y", TensorProto.DOUBLE, x.shape)],
        [onnx.numpy_helper.from_array(slope, "s")]),
        opset_imports=[helper.make_opsetid("", 6)], ir_version=3)
    g = _load(model, tmp_path)
    assert type(g.nodes[0][1]) is nn.PReLU
    np.testing.assert_array_equal(g(x), np.where(x >= 0, x, slope[:, None] * x))
    model.opset_import[0].version = 16
    with pytest.raises(nc.onnx.UnsupportedOpError, match="one per channel"):
        _load(model, tmp_path, "m16.onnx")


@pytest.mark.parametrize("op, attrs", [
    ("HardSigmoid", {}), ("HardSigmoid", dict(alpha=0.5, beta=0.25)),
    ("HardSigmoid", dict(alpha=1.0 / 6.0)), ("Selu", dict(alpha=2.0, gamma=3.0)),
    ("Selu", {}),
])
def test_activations_with_other_constants(op, attrs, tmp_path):
    """HardSigmoid and Selu with other constants than PyTorch's compose Arithmetic, Clip and
    ELU layers; PyTorch's stay nn.Hardsigmoid and nn.SELU."""
    node = helper.make_node(op, ["x"], ["y"], **attrs)
    x = _rng(27).uniform(-4, 4, (2, 3, 4))
    model = _model([node], x.shape, opset=13)  # (onnxruntime runs these in float32 only)
    assert_scaled_close(_load(model, tmp_path)(x.astype(np.float32)),
                        _ort(model, x.astype(np.float32)), 1e-6)
    g = _load(_model([node], x.shape, opset=13, dtype=TensorProto.DOUBLE), tmp_path)
    _check_gradient(g, x)
    pytorch = (op == "HardSigmoid" and attrs.get("alpha") == 1.0 / 6.0) or (
        op == "Selu" and not attrs)
    assert (len(g.nodes) == 1) == pytorch

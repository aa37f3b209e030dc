"""ONNX export and import of ``nn.Upsample`` as ``Resize``.

Independent references: onnxruntime runs what :func:`nbconv.onnx.export` writes and
hand-built ``Resize`` files; PyTorch's ``interpolate`` gives the values of what
:func:`nbconv.onnx.load` builds from those files.  The export -> load round trips compare
nbconv with itself: they prove the file loses nothing.
"""

from __future__ import annotations

import numpy as np
import pytest

import nbconv
import nbconv.nn as nn

onnx = pytest.importorskip("onnx", reason="onnx not installed: pip install 'nbconv[onnx]'")
ort = pytest.importorskip("onnxruntime",
                          reason="onnxruntime not installed: pip install 'nbconv[onnx]'")
from onnx import TensorProto, helper  # noqa: E402


def _rng(seed=0):
    return np.random.default_rng(seed)


def _run_ort(path, x):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (name,) = [i.name for i in sess.get_inputs()]
    return sess.run(None, {name: x})[0]


LAYERS = [
    (lambda: nn.Upsample(scale_factor=2), (2, 3, 4, 5)),
    (lambda: nn.Upsample(scale_factor=(1.5, 0.5)), (2, 3, 4, 6)),
    (lambda: nn.Upsample(size=(7, 9)), (2, 3, 4, 5)),
    (lambda: nn.Upsample(scale_factor=1.1), (2, 3, 4, 5)),  # o == n: PyTorch copies
    (lambda: nn.Upsample(scale_factor=2.3, mode="nearest"), (2, 3, 3, 5)),  # 3 -> 6 halves
    (lambda: nn.Upsample(scale_factor=1.1, mode="bilinear"), (2, 3, 4, 12)),
    (lambda: nn.Upsample(size=(3, 8), mode="nearest-exact"), (2, 3, 5, 5)),
    (lambda: nn.Upsample(scale_factor=2, mode="bilinear"), (2, 3, 4, 5)),
    (lambda: nn.Upsample(scale_factor=0.5, mode="bilinear"), (2, 3, 8, 6)),
    (lambda: nn.Upsample(size=(9, 2), mode="bilinear"), (2, 3, 4, 5)),
    (lambda: nn.Upsample(size=(9, 7), mode="bilinear", align_corners=True), (2, 3, 4, 5)),
    (lambda: nn.UpsamplingBilinear2d(scale_factor=2), (2, 3, 4, 5)),
    (lambda: nn.UpsamplingNearest2d(size=(5, 5)), (2, 3, 4, 5)),
    (lambda: nn.Upsample(scale_factor=2, mode="linear"), (2, 3, 7)),
    (lambda: nn.Upsample(size=4, mode="linear", align_corners=True), (2, 3, 7)),
]


@pytest.mark.parametrize("make,shape", LAYERS)
def test_round_trip(make, shape, tmp_path):
    model = nn.Sequential(make())
    model.eval()
    path = nbconv.onnx.export(model, tmp_path / "m.onnx", shape)
    onnx.checker.check_model(onnx.load(path), full_check=True)
    assert [n.op_type for n in onnx.load(path).graph.node].count("Resize") == 1
    for n in (shape[0], 3):  # the traced batch size and another one
        x = _rng(n).standard_normal((n,) + shape[1:]).astype(np.float32)
        with nbconv.no_grad():
            want = model(x)
        np.testing.assert_allclose(_run_ort(path, x), want, rtol=1e-5, atol=1e-5)
    g = nbconv.onnx.load(path)
    ups = [m for _, m, _ in g.nodes if isinstance(m, nn.Upsample)]
    assert len(ups) == 1
    x = _rng(4).standard_normal(shape).astype(np.float32)
    y0 = model.forward(x)
    y1 = g.forward(x)
    np.testing.assert_array_equal(y1, y0)
    dy = _rng(5).standard_normal(y0.shape).astype(np.float32)
    np.testing.assert_allclose(g.backward(dy), model.backward(dy), rtol=1e-6, atol=1e-6)


def _resize_file(tmp_path, shape, attrs, scales=None, sizes=None, batch="N"):
    inits, ins = [], ["x", ""]
    if scales is not None:
        inits.append(helper.make_tensor("scales", TensorProto.FLOAT, [len(scales)], scales))
        ins.append("scales")
    else:
        ins.append("")
    if sizes is not None:
        inits.append(helper.make_tensor("sizes", TensorProto.INT64, [len(sizes)], sizes))
        ins.append("sizes")
    node = helper.make_node("Resize", ins, ["y"], name="resize", **attrs)
    dims = [batch] + list(shape[1:])
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["a", "b", "c", "d"])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    path = tmp_path / "resize.onnx"
    onnx.save(model, path)
    return path


NEAREST = dict(mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor")
EXACT = dict(mode="nearest", coordinate_transformation_mode="half_pixel",
             nearest_mode="round_prefer_ceil")
LINEAR = dict(mode="linear", coordinate_transformation_mode="half_pixel")
CORNERS = dict(mode="linear", coordinate_transformation_mode="align_corners")


@pytest.mark.parametrize("attrs,mode,ac", [(NEAREST, "nearest", None),
                                           (EXACT, "nearest-exact", None),
                                           (LINEAR, "bilinear", False),
                                           (CORNERS, "bilinear", True)])
@pytest.mark.parametrize("scales,sizes", [([1, 1, 2, 3], None), ([1, 1, 0.5, 1.5], None),
                                          (None, [2, 3, 7, 5])])
def test_import_hand_built_resize(attrs, mode, ac, scales, sizes, tmp_path):
    torch = pytest.importorskip("torch")
    shape = (2, 3, 4, 6)
    batch = 2 if sizes is not None else "N"
    path = _resize_file(tmp_path, shape, attrs, scales, sizes, batch)
    x = _rng(6).standard_normal(shape).astype(np.float32)
    g = nbconv.onnx.load(path)
    got = g(x)
    np.testing.assert_allclose(got, _run_ort(path, x), rtol=1e-5, atol=1e-6)
    kw = dict(size=tuple(sizes[2:])) if sizes else dict(scale_factor=tuple(scales[2:]))
    want = torch.nn.functional.interpolate(torch.from_numpy(x.astype(np.float64)), mode=mode,
                                           align_corners=ac, **kw).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("attrs,scales,sizes,match", [
    (dict(mode="cubic"), [1, 1, 2, 2], None, "not supported"),
    (dict(mode="linear", coordinate_transformation_mode="asymmetric"), [1, 1, 2, 2], None,
     "not supported"),
    (dict(NEAREST, antialias=1), [1, 1, 2, 2], None, "antialias"),
    (NEAREST, [1, 2, 2, 2], None, "batch or channel"),
    (NEAREST, [1, 1, 1.1, 2], None, "differs"),
    (NEAREST, None, [2, 5, 8, 8], "batch or channel"),
])
def test_import_refuses_what_it_cannot_run(attrs, scales, sizes, match, tmp_path):
    path = _resize_file(tmp_path, (2, 3, 4, 6), attrs, scales, sizes, 2)
    with pytest.raises(nbconv.onnx.UnsupportedOpError, match=match):
        nbconv.onnx.load(path)


def test_torch_exported_upsample_loads(tmp_path):
    """A PyTorch model with ``nn.Upsample`` exported by ``torch.onnx.export``."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnxscript")
    for up in (torch.nn.Upsample(scale_factor=2, mode="bilinear"),
               torch.nn.Upsample(scale_factor=2), torch.nn.UpsamplingBilinear2d(size=(7, 9))):
        model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), up).eval()
        x = torch.from_numpy(_rng(7).standard_normal((2, 3, 4, 5)).astype(np.float32))
        path = tmp_path / "t.onnx"
        try:
            torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=17)
        except Exception as e:  # pragma: no cover - exporter availability varies
            pytest.skip(f"torch.onnx.export failed: {e}")
        g = nbconv.onnx.load(path)
        with torch.no_grad():
            want = model(x).numpy()
        np.testing.assert_allclose(g(x.numpy()), want, rtol=1e-5, atol=1e-5)


def _resize_node_cases():
    """ONNX's own Resize node tests, generated from the installed onnx package (importing the
    generator module records its cases with inputs and outputs)."""
    import importlib
    import warnings

    from onnx.backend.test.case import node as cases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        importlib.import_module(f"{cases.__name__}.resize")
    return [c for c in cases._NodeTestCases if c.name.startswith("test_resize_")]


def test_onnx_resize_node_tests(tmp_path):
    """Every Resize node test either loads and agrees with ONNX's expected output, or is
    refused at load (never accepted and then wrong or failing at run)."""
    passed, refused = [], []
    for case in _resize_node_cases():
        path = tmp_path / f"{case.name}.onnx"
        ((inputs, outputs),) = case.data_sets
        # the cases feed roi/scales/sizes as graph inputs; nbconv imports one-input graphs,
        # so they become initializers holding the same data
        model = onnx.ModelProto()
        model.CopyFrom(case.model)
        g_in = list(model.graph.input)
        for v, data in zip(g_in[1:], inputs[1:]):
            model.graph.initializer.append(onnx.numpy_helper.from_array(data, v.name))
        del model.graph.input[1:]
        onnx.save(model, str(path))
        try:
            g = nbconv.onnx.load(path)
        except (nbconv.onnx.UnsupportedOpError, ValueError) as e:
            refused.append((case.name, str(e)[:80]))
            continue
        with nbconv.no_grad():
            got = g(inputs[0])
        assert got.shape == outputs[0].shape, case.name
        np.testing.assert_allclose(got, outputs[0], rtol=1e-5, atol=1e-5, err_msg=case.name)
        passed.append(case.name)
    # the linear ones that sample as PyTorch does; ONNX's default nearest (half_pixel,
    # round_prefer_floor), cubic, antialias, axes and tf_crop_and_resize are refused
    assert {"test_resize_upsample_scales_linear", "test_resize_downsample_scales_linear",
            "test_resize_upsample_scales_linear_align_corners"} <= set(passed), refused


def test_traced_functional_interpolate_exports(tmp_path):
    """``nc.interpolate`` inside a PyTorch-style forward is written as Resize."""

    class Decoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 3, 3, padding=1)

        def forward(self, x):
            h = nbconv.interpolate(self.conv(x), scale_factor=2, mode="bilinear")
            return nbconv.interpolate(h, size=(5, 7), mode="bilinear", align_corners=True)

    nbconv.manual_seed(0)
    model = Decoder()
    path = nbconv.onnx.export(model, tmp_path / "d.onnx", (2, 2, 4, 3))
    assert [n.op_type for n in onnx.load(path).graph.node].count("Resize") == 2
    x = _rng(8).standard_normal((3, 2, 4, 3)).astype(np.float32)
    with nbconv.no_grad():
        want = model(x)
    np.testing.assert_allclose(_run_ort(path, x), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(nbconv.onnx.load(path)(x), want, rtol=1e-5, atol=1e-6)

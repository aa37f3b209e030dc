"""ONNX's own backend node tests, run through :func:`nbconv.onnx.load`, for the CNN operators.

The ``onnx`` package ships the generators of its backend conformance tests
(``onnx.backend.test.case.node``): each builds a one-node model with inputs and the expected
outputs computed by ONNX's reference code.  Nothing is downloaded.  A case is in scope when its
node's operator is one nbconv's importer claims (its converter table) or one of the CNN
operators issue 27 names (so that their refusals are counted until they are supported).

Every case ends in exactly one of

* **pass** -- loads and computes ONNX's expected output (float32 to 1e-5, float64 to 1e-10,
  relative to the largest expected magnitude);
* **refused** -- ``load`` raises :class:`nbconv.onnx.UnsupportedOpError` naming the node and
  its op type (nbconv's documented behaviour for an operator or attribute it lacks);
* **wrong** -- loads, runs, and disagrees with ONNX;
* **error** -- anything else: another exception at load, or an exception at run (the importer
  must never accept at load what then fails at run).

The tests assert zero wrong and zero error, and that every case in
``onnx_node_passing.txt`` still passes (the pass count may grow, never shrink).  Regenerate
that file after lifting a refusal with ``python tests/test_onnx_node_conformance.py --update``
(it also prints the counts and the refusal reasons by op).

Adapting a node test to nbconv: nbconv imports graphs with one computed input (the rest are
weights), so the second and later graph inputs of a case become initializers holding the
case's values (counted as *multi-input*), and only the first output is kept and compared
(counted as *multi-output*: LayerNormalization's mean, Dropout's mask).

Float64: ONNX's node tests are all float32, so every case that passes is run again as a
*float64 twin* (FLOAT tensors of the model made DOUBLE) against ONNX's reference evaluator
(``onnx.reference``) run in float64, to 1e-10.  Where the reference itself holds a float32
constant (an attribute's float32 default, or a constant in the operator's ONNX function body)
it is only float32-accurate, and those operators (``F32_CONSTANT_OPS``) are compared to 1e-7.

A few generators write their expected values by hand, rounded to 4 decimals
(``averagepool_2d_ceil_last_window_starts_on_pad``); a result that misses the tight
tolerance passes only if it is within the case's own tolerance of ONNX's values *and* within
the tight tolerance of onnxruntime's, an independent implementation.

What is still refused (onnx 1.23: 425 cases in scope, 300 pass, 125 refused), by reason:

* **element types** (39): integer, float16/bfloat16 and sequence/optional inputs of Add, Sub,
  Mul, Div, Clip, Pad, MaxPool, Celu, Identity, Gather -- nbconv computes in float32 and
  float64 only;
* **3-D** (25): Conv, MaxPool, AveragePool on (N, C, D, H, W) and BatchNormalization of rank
  5 -- volumetric layers are outside nbconv's CNN subset;
* **ConvTranspose** (14): no converter yet (the transposed-convolution layers of issue 27);
* **Resize** (36): sampling rules PyTorch's ``interpolate`` does not have (cubic, the
  half_pixel nearest modes, tf_crop_and_resize, antialias, exclude_outside, ``axes``,
  keep_aspect_ratio_policy) or whose output sizes differ from PyTorch's;
* **training mode** (8): Dropout with training_mode=1 (random masks) and
  BatchNormalization with training_mode=1 (an inference graph holds neither);
* **PRelu** (2): slopes broadcast from the last axis, not one per channel (nbconv's PReLU
  has one slope or one per channel);
* **Conv** (1): auto_pad SAME_LOWER with a stride whose padding depends on the input size
  and falls at the beginning (PyTorch's and nbconv's "same" pads at the end).
"""

from __future__ import annotations

import collections
import functools
import os
import pathlib
import sys
import tempfile
import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="onnx not installed: pip install 'nbconv[onnx]'")
ort = pytest.importorskip("onnxruntime",
                          reason="onnxruntime not installed: pip install 'nbconv[onnx]'")

import nbconv  # noqa: E402
import nbconv.onnx  # noqa: E402
from nbconv.onnx import UnsupportedOpError  # noqa: E402

PASSING_FILE = pathlib.Path(__file__).with_name("onnx_node_passing.txt")

# The CNN operators issue 27 asks about; the importer's own table is added at run time, so an
# operator that gains a converter is in scope without editing this list.
CNN_OPS = frozenset({
    "Conv", "ConvTranspose", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool",
    "BatchNormalization", "InstanceNormalization", "LayerNormalization", "GroupNormalization",
    "Relu", "LeakyRelu", "PRelu", "Elu", "Selu", "Celu", "Gelu", "Sigmoid", "HardSigmoid",
    "HardSwish", "Tanh", "Softmax", "LogSoftmax", "Softplus", "Mish", "Clip", "Gemm", "MatMul",
    "Flatten", "Reshape", "Concat", "Add", "Sum", "Mul", "Dropout", "LRN", "Pad", "ReduceMean",
    "Identity",
})

# Known wrong results or loads-then-fails, as {case name: reason}; each is a strict xfail so
# that a fix shows up.  Empty: none are known.
KNOWN_BAD: dict[str, str] = {}


# Operators whose float64 reference (onnx.reference) is only float32-accurate: why, per op.
F32_CONSTANT_OPS = {
    "Gelu": "its ONNX function body's constants (sqrt(2/pi), 0.044715, 1/sqrt(2)) are float32",
    "GroupNormalization": "its ONNX function body casts the float32 epsilon",
    "HardSwish": "its ONNX function body's alpha 1/6 is a float32",
    "LeakyRelu": "the default alpha is float32(0.01); nbconv's is PyTorch's 0.01",
    "Selu": "the default alpha and gamma are float32; nbconv's are PyTorch's float64 constants",
}


def _scope_ops() -> frozenset:
    from nbconv.onnx import _import
    return CNN_OPS | frozenset(_import._CONVERTERS)


Case = collections.namedtuple(
    "Case", "name op ops model data_sets rtol atol multi_input multi_output")

# the folders of ``onnx/backend/test/data`` that ship model files with their data (the node
# tests' folder is generated, not shipped, in current onnx wheels)
SHIPPED = ("pytorch-operator", "pytorch-converted", "simple")


def _adapt(name, model, data_sets, rtol, atol) -> Case:
    """One computed input (the rest become initializers) and one output."""
    model_copy = onnx.ModelProto()
    model_copy.CopyFrom(model)
    model = model_copy
    inits = {t.name for t in model.graph.initializer}
    names = [v.name for v in model.graph.input if v.name not in inits]
    first = data_sets[0][0]
    for value_name, value in list(zip(names, first))[1:]:
        model.graph.initializer.append(onnx.numpy_helper.from_array(np.asarray(value),
                                                                    value_name))
    multi_output = len(model.graph.output) > 1
    del model.graph.output[1:]
    # the initializers hold the first data set's weights: later sets must share them
    sets = [(ins[0], outs[0]) for ins, outs in data_sets
            if all(np.array_equal(a, b) for a, b in zip(ins[1:], first[1:]))]
    ops = frozenset(n.op_type for n in model.graph.node)
    op = model.graph.node[0].op_type if len(model.graph.node) == 1 else "+".join(sorted(ops))
    return Case(name, op, ops, model.SerializeToString(), sets, rtol, atol, len(names) > 1,
                multi_output)


def _shipped_cases(ops) -> list:
    from onnx import numpy_helper

    root = pathlib.Path(onnx.__file__).parent / "backend" / "test" / "data"
    out = []
    for kind in SHIPPED:
        for folder in sorted((root / kind).glob("*/")):
            if not (folder / "model.onnx").exists():
                continue
            model = onnx.load(str(folder / "model.onnx"))
            if not {n.op_type for n in model.graph.node} <= ops:
                continue
            data_sets = []
            for d in sorted(folder.glob("test_data_set_*")):
                ins = [numpy_helper.to_array(onnx.load_tensor(str(f)))
                       for f in sorted(d.glob("input_*.pb"))]
                outs = [numpy_helper.to_array(onnx.load_tensor(str(f)))
                        for f in sorted(d.glob("output_*.pb"))]
                data_sets.append((ins, outs))
            if data_sets:
                out.append(_adapt(f"{kind}/{folder.name}", model, data_sets, 1e-3, 1e-7))
    return out


@functools.lru_cache(maxsize=1)
def node_cases() -> tuple:
    """The in-scope test cases, adapted to one computed input and one output: ONNX's node
    tests (generated), then the model files ONNX ships with their data."""
    from onnx.backend.test.case import node as generators

    from nbconv.onnx import _import

    # the generators draw from NumPy's global generator (a few reseed it): seeding it makes the
    # data the same in every run whatever ran before; its state is put back afterwards
    state = np.random.get_state()  # noqa: NPY002 -- the generators use the legacy one
    try:
        np.random.seed(0)  # noqa: NPY002
        with warnings.catch_warnings():  # some generators divide by zero on purpose
            warnings.simplefilter("ignore")
            cases = generators.collect_testcases()
    finally:
        np.random.set_state(state)  # noqa: NPY002
    ops, out = _scope_ops(), []
    for c in cases:
        if "_expanded" in c.name:  # the function-body twins test other operators
            continue
        g = c.model.graph
        if len(g.node) == 1 and g.node[0].op_type in ops:
            out.append(_adapt(c.name, c.model, c.data_sets, c.rtol, c.atol))
    # shipped models may also hold the importer's constant folds (Constant, Transpose, ...)
    out += _shipped_cases(ops | frozenset(_import._FOLDERS))
    return tuple(out)


def _close(got, want, rtol: float, atol: float) -> bool:
    return got.shape == want.shape and bool(np.allclose(got, want, rtol=rtol, atol=atol,
                                                        equal_nan=True))


def _tight(got, want) -> bool:
    rtol = 1e-10 if want.dtype == np.float64 else 1e-5
    scale = max(1.0, float(np.max(np.abs(want[np.isfinite(want)]), initial=0.0)))
    return _close(got, want, rtol, rtol * scale)


def outcome(case: Case, folder: str) -> tuple[str, str]:
    """(``"pass"`` / ``"refused"`` / ``"wrong"`` / ``"error"``, detail) for one case."""
    path = os.path.join(folder, case.name.replace("/", "__") + ".onnx")
    with open(path, "wb") as f:
        f.write(case.model)
    try:
        g = nbconv.onnx.load(path)
    except UnsupportedOpError as e:
        if e.op_type not in case.ops | {"-"} or not e.node:
            return "error", f"a refusal naming node {e.node!r}, op {e.op_type!r}: {e}"
        return "refused", e.reason
    except Exception as e:  # noqa: BLE001 -- any other exception is what this test reports
        return "error", f"load raised {type(e).__name__}: {e}"
    for x, want in case.data_sets:
        want = np.asarray(want)
        try:
            got = np.asarray(g(np.asarray(x)))
        except Exception as e:  # noqa: BLE001
            return "error", f"loaded, then the run raised {type(e).__name__}: {e}"
        if got.dtype != want.dtype:
            return "wrong", f"dtype {got.dtype}, expected {want.dtype}"
        if _tight(got, want):
            continue
        if _close(got, want, case.rtol, case.atol):
            session = ort.InferenceSession(case.model, providers=["CPUExecutionProvider"])
            ref = session.run(None, {session.get_inputs()[0].name: np.asarray(x)})[0]
            if _tight(got, ref):
                continue
        err = np.max(np.abs(got - want)) if got.shape == want.shape else "-"
        return "wrong", f"shape {got.shape} vs {want.shape}, max abs error {err}"
    return "pass", ""


@functools.lru_cache(maxsize=1)
def outcomes() -> dict:
    with tempfile.TemporaryDirectory() as folder:
        return {c.name: outcome(c, folder) for c in node_cases()}


def _float64_model(model_bytes: bytes):
    """The model with its FLOAT graph values and initializers made DOUBLE."""
    from onnx import TensorProto, numpy_helper

    model = onnx.ModelProto()
    model.ParseFromString(model_bytes)
    g = model.graph
    for v in list(g.input) + list(g.output) + list(g.value_info):
        if v.type.tensor_type.elem_type == TensorProto.FLOAT:
            v.type.tensor_type.elem_type = TensorProto.DOUBLE
    for t in g.initializer:
        if t.data_type == TensorProto.FLOAT:
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float64),
                                               t.name))
    return model


def twin_outcome(case: Case, folder: str) -> tuple[str, str]:
    """The float64 twin of a passing float32 case: ``"pass"``, ``"no reference"`` (ONNX's
    reference evaluator cannot run it in float64), ``"wrong"`` or ``"error"``."""
    from onnx.reference import ReferenceEvaluator

    model = _float64_model(case.model)
    sets = []
    for x, _ in case.data_sets:
        x = np.asarray(x, dtype=np.float64)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                want = ReferenceEvaluator(model).run(None, {model.graph.input[0].name: x})[0]
        except Exception as e:  # noqa: BLE001
            return "no reference", f"{type(e).__name__}: {e}"
        if np.asarray(want).dtype != np.float64:
            return "no reference", f"the reference computes {np.asarray(want).dtype}"
        sets.append((x, np.asarray(want)))
    path = os.path.join(folder, case.name.replace("/", "__") + ".f64.onnx")
    onnx.save(model, path)
    try:
        g = nbconv.onnx.load(path)
    except Exception as e:  # noqa: BLE001 -- the float32 model loads, so must this one
        return "error", f"load raised {type(e).__name__}: {e}"
    for x, want in sets:
        try:
            got = np.asarray(g(x))
        except Exception as e:  # noqa: BLE001
            return "error", f"loaded, then the run raised {type(e).__name__}: {e}"
        if got.dtype != np.float64:
            return "wrong", f"dtype {got.dtype}, expected float64"
        scale = max(1.0, float(np.max(np.abs(want), initial=0.0)))
        rtol = 1e-7 if case.ops & set(F32_CONSTANT_OPS) else 1e-10
        if not _close(got, want, rtol, rtol * scale):
            err = np.max(np.abs(got - want)) / scale if got.shape == want.shape else "-"
            return "wrong", f"shape {got.shape} vs {want.shape}, scaled error {err}"
    return "pass", ""


@functools.lru_cache(maxsize=1)
def twin_outcomes() -> dict:
    res = outcomes()
    with tempfile.TemporaryDirectory() as folder:
        return {c.name: twin_outcome(c, folder) for c in node_cases()
                if res[c.name][0] == "pass" and np.asarray(c.data_sets[0][0]).dtype == np.float32}


def report() -> str:
    res, cases = outcomes(), node_cases()
    counts = collections.Counter(kind for kind, _ in res.values())
    shipped = sum("/" in c.name for c in cases)
    lines = [f"ONNX backend tests in scope: {len(cases)} ({len(cases) - shipped} generated node "
             f"tests, {shipped} shipped models; {sum(c.multi_input for c in cases)} "
             f"multi-input, {sum(c.multi_output for c in cases)} multi-output); "
             + ", ".join(f"{k} {counts[k]}" for k in ("pass", "refused", "wrong", "error"))]
    for multi in (False, True):
        part = collections.Counter(res[c.name][0] for c in cases if c.multi_input == multi)
        lines.append(f"  {'multi' if multi else 'single'}-input graphs: "
                     + ", ".join(f"{k} {part[k]}" for k in ("pass", "refused", "wrong",
                                                             "error")))
    twins = collections.Counter(kind for kind, _ in twin_outcomes().values())
    lines.append(f"float64 twins of the passing float32 cases: {sum(twins.values())}; "
                 + ", ".join(f"{k} {twins[k]}" for k in ("pass", "no reference", "wrong",
                                                          "error")))
    by_op = collections.defaultdict(list)
    for c in cases:
        kind, detail = res[c.name]
        if kind != "pass":
            kind += " (shipped model)" if "/" in c.name else ""
            by_op[(kind, c.op)].append(f"{c.name}: {detail}")
    for name, (kind, detail) in twin_outcomes().items():
        if kind != "pass":
            by_op[(kind + " (float64 twin)", "")].append(f"{name}: {detail}")
    for (kind, op), items in sorted(by_op.items()):
        lines.append(f"  {kind} {op} ({len(items)})")
        lines += [f"    {s[:200]}" for s in items]
    return "\n".join(lines)


def _passing_names() -> list[str]:
    return [s.strip() for s in PASSING_FILE.read_text().splitlines()
            if s.strip() and not s.startswith("#")]


# -- the tests --------------------------------------------------------------------------------
def test_scope_is_found():
    names = [c.name for c in node_cases()]
    ops = {c.op for c in node_cases()}
    assert len(set(names)) == len(names)
    # a guard against a collector that silently finds nothing (renamed generators or folders)
    assert len(names) >= 250, len(names)
    assert sum("/" in n for n in names) >= 50
    assert {"Conv", "MaxPool", "AveragePool", "BatchNormalization", "Gemm", "Relu"} <= ops


def test_passing_cases_still_pass():
    res = outcomes()
    print("\n" + report())
    lost = {n: res.get(n, ("missing", "no longer generated")) for n in _passing_names()}
    lost = {n: r for n, r in lost.items() if r[0] != "pass"}
    assert not lost, f"{len(lost)} ONNX node tests no longer pass: {lost}"


@pytest.mark.parametrize("kind", ["wrong", "error"])
def test_no_wrong_results_or_crashes(kind):
    bad = {n: d for n, (k, d) in outcomes().items() if k == kind and n not in KNOWN_BAD}
    assert not bad, f"{len(bad)} ONNX node tests end in '{kind}': {bad}"


def test_float64_twins():
    twins = twin_outcomes()
    assert sum(k == "pass" for k, _ in twins.values()) >= 150
    bad = {n: r for n, r in twins.items() if r[0] in ("wrong", "error")}
    assert not bad, f"{len(bad)} float64 twins of passing ONNX node tests fail: {bad}"


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.xfail(reason=r, strict=True)) for n, r in KNOWN_BAD.items()
] or [pytest.param(None, marks=pytest.mark.skip(reason="no known wrong results"))])
def test_known_bad(name):
    # strict xfail: a known-bad case that now passes (or is refused) must leave KNOWN_BAD
    kind, detail = outcomes().get(name, ("missing", "no longer generated"))
    assert kind not in ("wrong", "error"), detail


def test_refusals_name_the_node_and_op(tmp_path):
    """A refusal is the documented error: UnsupportedOpError naming the node and op type."""
    refused = [c for c in node_cases() if outcomes()[c.name][0] == "refused"]
    assert refused
    for case in refused[:5]:
        path = tmp_path / (case.name.replace("/", "__") + ".onnx")
        path.write_bytes(case.model)
        with pytest.raises(UnsupportedOpError) as info:
            nbconv.onnx.load(path)
        e = info.value
        assert isinstance(e, ValueError) and isinstance(e, NotImplementedError)
        assert repr(e.node) in str(e) and repr(e.op_type) in str(e) and e.reason in str(e)


@pytest.mark.parametrize("shape", [(3,), (2, 3, 4)])
def test_flatten_of_a_vector_runs_forward_and_backward(tmp_path, shape):
    """ONNX's Flatten(axis=1) of a rank-1 input is (N, 1) (``test_operator_view``); the
    importer once built nbconv's Flatten for it, which raised at run time."""
    from onnx import TensorProto, helper

    want_shape = (shape[0], int(np.prod(shape[1:])))
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["x"], ["y"], axis=1)], "flatten",
        [helper.make_tensor_value_info("x", TensorProto.DOUBLE, shape)],
        [helper.make_tensor_value_info("y", TensorProto.DOUBLE, want_shape)])
    path = tmp_path / "flatten.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    g = nbconv.onnx.load(path).train()
    x = np.arange(np.prod(shape), dtype=np.float64).reshape(shape)
    y = g(x)
    np.testing.assert_array_equal(y, x.reshape(want_shape))
    dy = np.arange(y.size, dtype=np.float64).reshape(y.shape) - 1.5
    np.testing.assert_array_equal(g.backward(dy), dy.reshape(shape))


def _update() -> None:
    res = outcomes()
    names = sorted(n for n, (k, _) in res.items() if k == "pass")
    PASSING_FILE.write_text(
        "# ONNX backend node tests that nbconv.onnx.load passes (tests/"
        "test_onnx_node_conformance.py);\n# regenerate with python tests/"
        "test_onnx_node_conformance.py --update\n" + "\n".join(names) + "\n")
    print(report())
    print(f"wrote {len(names)} names to {PASSING_FILE}")


if __name__ == "__main__":
    if "--update" in sys.argv:
        _update()
    else:
        print(report())

"""nbconv.io: HDF5 model files (round trips, layout, validation, corruption, crash safety).

No forward passes are needed: models are built, their weights perturbed by hand, saved and
loaded.  Equality is exact (``np.array_equal`` plus dtype), because the file stores the bits.
"""

import ast
import hashlib
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import textwrap
import time

import h5py
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import nbconv
import nbconv.io as nio
import nbconv.nn as nn
from nbconv import optim

REPO = pathlib.Path(nbconv.__file__).resolve().parent.parent


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def _perturb(model, seed=0):
    """Give every parameter and buffer distinctive values (not the constructor's)."""
    rng = np.random.default_rng(seed)
    for _, m in model.named_modules():
        for p in m._params.values():
            p.data[...] = rng.standard_normal(p.data.shape)
        for b in m._buffers.values():
            if b.dtype.kind == "f":
                b[...] = rng.random(b.shape) + 0.5
            else:
                b[...] = rng.integers(1, 1000, size=b.shape)
    return model


def _seq(dtype=np.float32):
    m = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, stride=(1, 2)),
        nn.BatchNorm2d(4, eps=1e-3, momentum=0.2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(4 * 2 * 1, 5),
        nn.Dropout(0.25),
        nn.Linear(5, 2, bias=False),
    )
    return _perturb(m.astype(dtype))


def _graph(dtype=np.float32):
    g = nn.Graph()
    g.add("stem", nn.Conv2d(2, 4, 1), "input")
    g.add("b1", nn.Conv2d(4, 3, 3, padding=1), "stem")
    g.add("b2", nn.Sequential(nn.Conv2d(4, 5, 1), nn.BatchNorm2d(5)), "stem")
    g.add("cat", nn.Concat(axis=1), "b1", "b2")
    g.add("proj", nn.Conv2d(8, 4, 1, bias=False), "cat")
    g.add("res", nn.Add(), "stem", "proj")
    g.add("out", nn.ReLU(), "res")
    return _perturb(g.astype(dtype), seed=1)


def _assert_same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert sa[k].dtype == sb[k].dtype, k
        assert sa[k].shape == sb[k].shape, k
        assert np.array_equal(sa[k], sb[k]), k


def _assert_format_error(path, func=nio.load, match=None):
    with pytest.raises(nio.FormatError) as info:
        func(path)
    err = info.value
    assert err.path == os.fspath(path)
    assert os.fspath(path) in str(err) and err.reason in str(err) and err.reason
    if match is not None:
        assert match in err.reason, err.reason
    return err


def _s(value):
    """h5py returns fixed-length string attributes as bytes."""
    return value.decode() if isinstance(value, bytes) else value


def _set_json_attr(obj, name, text):
    obj.attrs[name] = text
    obj.attrs[f"{name}_sha256"] = hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture
def saved(tmp_path):
    model = _seq()
    path = tmp_path / "model.h5"
    nio.save(model, path)
    return model, path


# ---------------------------------------------------------------------------------------------
# round trips
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("build", [_seq, _graph], ids=["sequential", "graph"])
def test_round_trip(tmp_path, build, dtype):
    model = build(dtype)
    path = tmp_path / "m.h5"
    nio.save(model, str(path))
    loaded = nio.load(path)
    assert type(loaded) is type(model)
    assert nn.to_config(loaded) == nn.to_config(model)
    _assert_same_state(model, loaded)
    assert all(p.data.dtype == np.dtype(dtype) for p in loaded.parameters())
    assert all(p.grad.shape == p.data.shape for p in loaded.parameters())
    # the file is independent of the model object: changing the model does not change the file
    model.parameters()[0].data[...] = 0
    assert not np.array_equal(nio.load(path).parameters()[0].data, 0)


def test_round_trip_nested_and_graph_structure(tmp_path):
    inner = nn.Sequential({"conv": nn.Conv2d(2, 2, 1), "bn": nn.BatchNorm2d(2)})
    model = _perturb(nn.Sequential(nn.Sequential(inner, nn.ReLU()), nn.Flatten()))
    g = _graph()
    g.output = "res"
    for m, name in ((model, "nested.h5"), (g, "graph.h5")):
        nio.save(m, tmp_path / name)
        back = nio.load(tmp_path / name)
        assert nn.to_config(back) == nn.to_config(m)
        _assert_same_state(m, back)
    back = nio.load(tmp_path / "graph.h5")
    assert back.output == "res"
    assert [(n, ins) for n, _, ins in back.nodes] == [(n, ins) for n, _, ins in g.nodes]
    with h5py.File(tmp_path / "nested.h5") as f:
        assert "weights/0.0.conv/weight" in f and "weights/0.0.bn/num_batches_tracked" in f


def test_model_without_parameters(tmp_path):
    model = nn.Sequential(nn.ReLU(), nn.Flatten())
    nio.save(model, tmp_path / "m.h5")
    back = nio.load(tmp_path / "m.h5")
    assert nn.to_config(back) == nn.to_config(model) and back.state_dict() == {}


@given(sizes=st.lists(st.integers(1, 6), min_size=2, max_size=4),
       bias=st.booleans(), dtype=st.sampled_from(["float32", "float64"]),
       seed=st.integers(0, 2**31 - 1))
def test_round_trip_random_mlps(tmp_path_factory, sizes, bias, dtype, seed):
    layers = [nn.Linear(a, b, bias=bias) for a, b in zip(sizes, sizes[1:])]
    model = _perturb(nn.Sequential(*layers).astype(dtype), seed)
    path = tmp_path_factory.mktemp("mlp") / "m.h5"
    nio.save(model, path)
    back = nio.load(path)
    assert nn.to_config(back) == nn.to_config(model)
    _assert_same_state(model, back)


# ---------------------------------------------------------------------------------------------
# optimizer state and metadata
# ---------------------------------------------------------------------------------------------
def _fake_steps(model, opt, n, seed):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        opt.zero_grad()
        for p in model.parameters():
            p.grad[...] = rng.standard_normal(p.grad.shape)
        opt.step()


@pytest.mark.parametrize("make", [
    lambda ps: optim.SGD(ps, lr=0.05, momentum=0.9, weight_decay=1e-4, nesterov=True),
    lambda ps: optim.Adam(ps, lr=3e-3, betas=(0.8, 0.99), eps=1e-7, weight_decay=0.01),
], ids=["sgd", "adam"])
def test_optimizer_state_round_trip_and_resume(tmp_path, make):
    model = _seq()
    opt = make(model.parameters())
    _fake_steps(model, opt, 3, seed=5)
    path = tmp_path / "ckpt.h5"
    nio.save(model, path, optimizer=opt, metadata={"epoch": 3})

    loaded, state, meta = nio.load_state(path)
    ref = opt.state_dict()
    assert meta == {"epoch": 3}
    assert state["type"] == ref["type"] and state["step"] == ref["step"] == 3
    assert state["hyper"] == ref["hyper"]
    assert sorted(state["state"]) == sorted(ref["state"]) and ref["state"]
    for k, v in ref["state"].items():
        assert state["state"][k].dtype == v.dtype and np.array_equal(state["state"][k], v), k

    # resuming gives bit-identical parameters to continuing the original run
    opt2 = make(loaded.parameters())
    opt2.load_state_dict(state)
    _fake_steps(model, opt, 2, seed=9)
    _fake_steps(loaded, opt2, 2, seed=9)
    _assert_same_state(model, loaded)


def test_optimizer_state_dict_accepted_and_absent(tmp_path):
    model = _seq()
    opt = optim.SGD(model.parameters(), lr=0.1)  # no momentum: empty state
    _fake_steps(model, opt, 1, seed=0)
    nio.save(model, tmp_path / "a.h5", optimizer=opt.state_dict())
    _, state, meta = nio.load_state(tmp_path / "a.h5")
    assert state == {"type": "SGD", "hyper": opt.hyper, "step": 1, "state": {},
                     "param_groups": opt.state_dict()["param_groups"]}
    assert meta == {}
    nio.save(model, tmp_path / "b.h5")
    _, state, meta = nio.load_state(tmp_path / "b.h5")
    assert state is None and meta == {}
    with pytest.raises(TypeError, match="optimizer"):
        nio.save(model, tmp_path / "c.h5", optimizer=object())
    assert not (tmp_path / "c.h5").exists()


def test_metadata_round_trip(tmp_path):
    meta = {
        "epoch": 12,
        "lr": 0.1 + 0.2,  # not a short decimal: must survive exactly
        "tiny": 5e-324,
        "big": 2**100,
        "neg": -7,
        "name": "LeNet-5 \u00e9\u4e2d\U0001f600",
        "none": None,
        "flag": False,
        "history": {"loss": [2.3, 1.1, 0.51], "acc": [None, 0.5], "nested": {"a": [[1], []]}},
        "pair": (1, 2),
        "empty": {},
        "mean": np.array([0.4914, 0.4822, 0.4465], np.float32),
        "std": np.array([[0.247, 0.243]], np.float64),
        "classes": np.arange(10, dtype=np.int64),
        "mask": np.array([True, False, True]),
        "zero_d": np.array(3.5),
        "np_scalar": np.float32(1.25),
        "np_int": np.int16(-3),
        "no_rows": np.zeros((0, 3), np.float32),
        "nested_np": [np.float64(0.5), np.int64(2)],
        "nan": float("nan"),
        "inf": float("-inf"),
    }
    path = tmp_path / "m.h5"
    nio.save(_seq(), path, metadata=meta)
    _, _, back = nio.load_state(path)
    assert list(back) == list(meta)
    for k, v in meta.items():
        got = back[k]
        if isinstance(v, (np.ndarray, np.generic)):
            assert type(got) is type(v), k
            assert got.dtype == v.dtype and np.shape(got) == np.shape(v), k
            assert np.array_equal(got, v), k
        elif k == "pair":
            assert got == [1, 2]  # documented: tuples come back as lists
        elif k == "nested_np":
            assert got == [0.5, 2] and type(got[0]) is float and type(got[1]) is int
        elif k == "nan":
            assert isinstance(got, float) and np.isnan(got)
        else:
            assert type(got) is type(v) and got == v, k


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text()
    | st.floats(allow_nan=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@given(meta=st.dictionaries(st.text(min_size=1), json_values, max_size=5))
def test_metadata_round_trip_property(tmp_path_factory, meta):
    path = tmp_path_factory.mktemp("meta") / "m.h5"
    nio.save(nn.Sequential(nn.ReLU()), path, metadata=meta)
    _, _, back = nio.load_state(path)
    assert back == meta and list(back) == list(meta)


@pytest.mark.parametrize("bad, where", [
    ({"obj": object()}, "'obj'"),
    ({"s": {1, 2}}, "'s'"),
    ({"deep": {"x": [1, np.zeros(2)]}}, "'deep'"),
    ({"keys": {1: "a"}}, "'keys'"),
    ({"strings": np.array(["a", "b"])}, "'strings'"),
    ({"objs": np.array([None, 1], dtype=object)}, "'objs'"),
    ({3: "x"}, "3"),
])
def test_metadata_not_serialisable(tmp_path, bad, where):
    path = tmp_path / "m.h5"
    model = _seq()
    nio.save(model, path)
    before = path.read_bytes()
    with pytest.raises(TypeError) as info:
        nio.save(_seq(), path, metadata=bad)
    assert where in str(info.value)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["m.h5"]
    with pytest.raises(TypeError, match="metadata"):
        nio.save(model, tmp_path / "x.h5", metadata=[1, 2])


def test_save_rejects_bad_models(tmp_path):
    with pytest.raises(TypeError, match="Module"):
        nio.save({"w": np.zeros(3)}, tmp_path / "a.h5")

    class Custom(nn.Module):  # not registered
        pass

    with pytest.raises(TypeError, match="register"):
        nio.save(nn.Sequential(Custom()), tmp_path / "b.h5")
    with pytest.raises(ValueError, match="'/'"):
        nio.save(nn.Sequential({"a/b": nn.Linear(2, 2)}), tmp_path / "c.h5")
    mixed = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2).astype(np.float64))
    with pytest.raises(ValueError, match="dtype"):
        nio.save(mixed, tmp_path / "d.h5")
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------------------------------------
# weights-only files
# ---------------------------------------------------------------------------------------------
def test_save_and_load_weights(tmp_path):
    src, dst = _graph(), _perturb(_graph(), seed=99)
    path = tmp_path / "w.h5"
    src.save_weights(path)
    with h5py.File(path) as f:
        assert _s(f.attrs["kind"]) == "weights" and "architecture" not in f.attrs
        assert _s(f.attrs["format"]) == "nbconv-model" and _s(f.attrs["dtype"]) == "float32"
    dst.load_weights(path)
    _assert_same_state(src, dst)
    # a full model file also loads into an existing model
    nio.save(_graph(), tmp_path / "full.h5")
    nio.load_weights(dst, tmp_path / "full.h5")
    _assert_same_state(_graph(), dst)
    # load() needs an architecture
    _assert_format_error(path, match="weights-only")


def test_load_weights_casts_between_float_dtypes(tmp_path):
    src = _seq(np.float64)
    nio.save_weights(src, tmp_path / "w.h5")
    dst = _seq(np.float32)
    _perturb(dst, seed=3)
    nio.load_weights(dst, tmp_path / "w.h5")
    for k, v in src.state_dict().items():
        got = dst.state_dict()[k]
        assert got.dtype == (np.float32 if v.dtype.kind == "f" else v.dtype)
        assert np.array_equal(got, v.astype(got.dtype))


def test_load_weights_mismatch(tmp_path):
    path = tmp_path / "w.h5"
    nio.save_weights(nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2)), path)
    target = nn.Sequential(nn.Linear(3, 5), nn.Linear(5, 2))
    before = target.state_dict()
    err = _assert_format_error(path, lambda p: target.load_weights(p), match="'0.weight'")
    assert "(4, 3)" in err.reason and "(5, 3)" in err.reason
    _assert_same_state_dict(before, target.state_dict())  # untouched on failure
    err = _assert_format_error(path, lambda p: nio.load_weights(nn.Sequential(nn.Linear(3, 4)), p),
                               match="unexpected keys")
    assert "1.weight" in err.reason
    err = _assert_format_error(
        path, lambda p: nio.load_weights(_perturb(nn.Sequential(nn.Linear(3, 4), nn.ReLU(),
                                                                nn.Linear(4, 2))), p),
        match="missing keys")
    assert "2.weight" in err.reason


def _assert_same_state_dict(a, b):
    assert list(a) == list(b) and all(np.array_equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------------------------------------
# the file layout
# ---------------------------------------------------------------------------------------------
def test_layout(tmp_path):
    model = _seq()
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    _fake_steps(model, opt, 2, seed=1)
    path = tmp_path / "m.h5"
    nio.save(model, path, optimizer=opt, metadata={"epoch": 2, "mean": np.ones(3)})
    with h5py.File(path, "r") as f:
        a = {k: _s(v) for k, v in f.attrs.items()}
        assert a["format"] == "nbconv-model"
        assert isinstance(a["format_version"], np.integer) and a["format_version"] == 1
        assert a["nbconv_version"] == nbconv.__version__
        assert a["kind"] == "model" and a["dtype"] == "float32"
        assert json.loads(a["architecture"]) == nn.to_config(model)
        assert a["architecture_sha256"] == hashlib.sha256(a["architecture"].encode()).hexdigest()

        datasets = {}

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                datasets[name] = obj

        f.visititems(visit)
        expect = {f"weights/{k.rpartition('.')[0]}/{k.rpartition('.')[2]}"
                  for k in model.state_dict()}
        assert {n for n in datasets if n.startswith("weights/")} == expect
        assert "weights/0/weight" in expect and "weights/1/num_batches_tracked" in expect
        for name, ds in datasets.items():
            assert ds.fletcher32 and ds.chunks is not None, name
        for k, v in model.state_dict().items():
            ds = f["weights/" + "/".join(k.rsplit(".", 1))]
            if v.ndim == 0:
                assert ds.shape == (1,) and ds.attrs["scalar"]
                assert ds[0] == v
            else:
                assert ds.shape == v.shape and ds.dtype == v.dtype
                assert np.array_equal(ds[()], v)

        g = f["optimizer"]
        assert _s(g.attrs["type"]) == "SGD" and g.attrs["step"] == 2
        assert json.loads(g.attrs["hyper"]) == opt.hyper
        assert sorted(g["state"]) == sorted(opt.state_dict()["state"])
        m = f["metadata"]
        assert json.loads(m.attrs["keys"]) == ["epoch", "mean"]
        assert json.loads(m.attrs["values"]) == {"epoch": 2}
        assert np.array_equal(m["mean"][()], np.ones(3))

        # no variable-length strings anywhere (their global heap has no checksum)
        def attrs_of(obj):
            for name in obj.attrs:
                dt = obj.attrs.get_id(name).dtype
                info = h5py.check_string_dtype(dt)
                assert dt.kind != "O" and (info is None or info.length is not None), name

        attrs_of(f)
        f.visititems(lambda name, obj: attrs_of(obj))
    # a key without a dot lives directly under weights/
    lin = _perturb(nn.Linear(2, 3))
    nio.save(lin, tmp_path / "lin.h5")
    with h5py.File(tmp_path / "lin.h5") as f:
        assert sorted(f["weights"]) == ["bias", "weight"]
        assert isinstance(f["weights/weight"], h5py.Dataset)
    _assert_same_state(lin, nio.load(tmp_path / "lin.h5"))


def test_no_pickle_in_io_package():
    """Loading must never execute code from the file: no pickle-like module anywhere in io.

    Docstrings may *mention* pickle (to say it is not used); the code itself must not.
    """
    pkg = pathlib.Path(nio.__file__).parent
    files = sorted(pkg.glob("*.py"))
    assert len(files) >= 2
    forbidden = ("pickle", "dill", "marshal", "shelve", "joblib", "eval", "exec")
    for file in files:
        tree = ast.parse(file.read_text())
        for node in ast.walk(tree):
            body = getattr(node, "body", None)
            if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                    and isinstance(body[0].value, ast.Constant)
                    and isinstance(body[0].value.value, str)):
                body[0] = ast.Pass()  # drop docstrings
        code = ast.unparse(tree).lower()  # also drops comments
        for word in forbidden:
            assert not re.search(rf"\b{word}\b", code) and f"allow_{word}" not in code, (file,
                                                                                      word)


# ---------------------------------------------------------------------------------------------
# malformed files -> FormatError
# ---------------------------------------------------------------------------------------------
def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        nio.load(tmp_path / "nope.h5")
    with pytest.raises(FileNotFoundError):
        nio.load_weights(_seq(), tmp_path / "nope.h5")
    with pytest.raises(FileNotFoundError):
        nio.load_state(tmp_path / "nope.h5")


@pytest.mark.parametrize("content", [b"", b"hello, this is not HDF5\n" * 10,
                                     b"\x89HDF\r\n\x1a\n" + b"\x00" * 100],
                         ids=["empty", "text", "signature-only"])
def test_not_hdf5(tmp_path, content):
    path = tmp_path / "x.h5"
    path.write_bytes(content)
    for func in (nio.load, lambda p: nio.load_state(p), lambda p: nio.load_weights(_seq(), p)):
        _assert_format_error(path, func, match="HDF5")


@pytest.mark.parametrize("fraction", [0.0001, 0.1, 0.5, 0.9, -1])
def test_truncated(saved, fraction):
    model, path = saved
    data = path.read_bytes()
    cut = len(data) - 1 if fraction == -1 else max(1, int(len(data) * fraction))
    path.write_bytes(data[:cut])
    _assert_format_error(path)
    _assert_format_error(path, lambda p: nio.load_weights(_seq(), p))


def _flip_in_dataset(path, name, rel=0.5):
    with h5py.File(path, "r") as f:
        ds = f[name]
        off = ds.id.get_offset()  # contiguous storage; chunked (fletcher32) gives None
        if off is None:
            info = ds.id.get_chunk_info(0)
            off, size = info.byte_offset, info.size
        else:
            size = ds.id.get_storage_size()
        expected = ds[()]
    pos = off + int(size * rel)
    with open(path, "r+b") as fh:
        fh.seek(pos)
        b = fh.read(1)
        fh.seek(pos)
        fh.write(bytes([b[0] ^ 0x10]))
    return expected


@pytest.mark.parametrize("name, rel", [("weights/0/weight", 0.0), ("weights/0/weight", 0.5),
                                       ("weights/5/bias", 0.3),
                                       ("weights/1/num_batches_tracked", 0.0)])
def test_flipped_weight_bytes(saved, name, rel):
    model, path = saved
    _flip_in_dataset(path, name, rel)
    err = _assert_format_error(path)
    assert name in err.reason
    _assert_format_error(path, lambda p: nio.load_weights(_seq(), p))


def test_flipped_optimizer_and_metadata_bytes(tmp_path):
    model = _seq()
    opt = optim.Adam(model.parameters())
    _fake_steps(model, opt, 1, seed=0)
    path = tmp_path / "m.h5"
    nio.save(model, path, optimizer=opt, metadata={"mean": np.arange(50.0)})
    data = path.read_bytes()
    for name in ("optimizer/state/0.exp_avg", "metadata/mean"):
        path.write_bytes(data)
        _flip_in_dataset(path, name)
        nio.load(path)  # the weights themselves are intact
        err = _assert_format_error(path, nio.load_state)
        assert name in err.reason


def test_random_byte_flips_never_load_silently_wrong(tmp_path):
    """Flip single bytes all over the file: either FormatError or exactly the saved content."""
    model = _seq()
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    _fake_steps(model, opt, 1, seed=0)
    path = tmp_path / "m.h5"
    meta = {"epoch": 1, "mean": np.arange(3.0)}
    nio.save(model, path, optimizer=opt, metadata=meta)
    data = path.read_bytes()
    ref, ref_opt = model.state_dict(), opt.state_dict()
    rng = np.random.default_rng(1234)
    outcomes = {"error": 0, "same": 0}
    for pos in rng.choice(len(data), size=min(len(data), 300), replace=False):
        b = bytearray(data)
        b[pos] ^= 1 << int(rng.integers(8))
        path.write_bytes(bytes(b))
        try:
            m, o, md = nio.load_state(path)
        except nio.FormatError:
            outcomes["error"] += 1
            continue
        outcomes["same"] += 1
        assert nn.to_config(m) == nn.to_config(model), pos
        _assert_same_state_dict(ref, m.state_dict())
        assert o["hyper"] == ref_opt["hyper"] and o["step"] == 1 and o["type"] == "SGD", pos
        _assert_same_state_dict(ref_opt["state"], o["state"])
        assert md["epoch"] == 1 and np.array_equal(md["mean"], meta["mean"]), pos
    assert outcomes["error"] > 0


def test_foreign_hdf5(tmp_path):
    path = tmp_path / "foreign.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=np.arange(10))
    _assert_format_error(path, match="'format'")
    with h5py.File(path, "a") as f:
        f.attrs["format"] = "keras-model"
    _assert_format_error(path, match="keras-model")
    _assert_format_error(path, lambda p: nio.load_weights(_seq(), p), match="'format'")


@pytest.mark.parametrize("version, match", [(2, "format_version 2"), (0, "format_version 0"),
                                            ("1", "not an integer"), (None, "missing")])
def test_bad_format_version(saved, version, match):
    _, path = saved
    with h5py.File(path, "a") as f:
        if version is None:
            del f.attrs["format_version"]
        else:
            f.attrs["format_version"] = version
    _assert_format_error(path, match=match)


@pytest.mark.parametrize("text, match", [
    ("{not json", "not valid JSON"),
    ('{"type": "EvilLayer", "config": {}}', "EvilLayer"),
    ('{"type": "Conv2d", "config": {"in_channels": 1}}', "architecture"),
    ('{"type": "Sequential"}', "architecture"),
    ("[1, 2]", "architecture"),
    ('{"type": "Linear", "config": {"in_features": 3, "out_features": 2}}', "unexpected keys"),
])
def test_bad_architecture(saved, text, match):
    _, path = saved
    with h5py.File(path, "a") as f:
        _set_json_attr(f, "architecture", text)
    _assert_format_error(path, match=match)


def test_architecture_checksum(saved):
    model, path = saved
    with h5py.File(path, "a") as f:
        text = _s(f.attrs["architecture"])
        f.attrs["architecture"] = text.replace('"eps": 0.001', '"eps": 0.002')
    _assert_format_error(path, match="SHA-256")
    with h5py.File(path, "a") as f:  # without a checksum attribute the JSON is trusted as is
        del f.attrs["architecture_sha256"]
    assert nio.load(path)[1]._config["eps"] == 0.002


@pytest.mark.parametrize("edit, match", [
    (lambda f: _replace(f, "weights/5/weight", np.zeros((5, 9), np.float32)), "(5, 9)"),
    (lambda f: _replace(f, "weights/5/weight", np.zeros((5, 8), np.float64)), "dtype float64"),
    (lambda f: _replace(f, "weights/0/bias", np.array(["a"] * 4, dtype="S1")), "dtype"),
    (lambda f: f.__delitem__("weights/7/weight"), "missing keys ['7.weight']"),
    (lambda f: f.create_dataset("weights/7/bias", data=np.zeros(2, np.float32)),
     "unexpected keys ['7.bias']"),
    (lambda f: f.create_group("weights/9/deep/er"), "group"),
    (lambda f: f.__delitem__("weights"), "'weights' missing"),
    (lambda f: f.attrs.__setitem__("dtype", "float16"), "float16"),
    (lambda f: f.attrs.__setitem__("kind", "zip"), "kind"),
])
def test_weights_do_not_match_architecture(saved, edit, match):
    _, path = saved
    with h5py.File(path, "a") as f:
        edit(f)
    _assert_format_error(path, match=match)


def _replace(f, name, data):
    del f[name]
    f.create_dataset(name, data=data)


def test_format_error_attributes():
    err = nio.FormatError("/some/where.h5", "bad things")
    assert isinstance(err, Exception)
    assert err.path == "/some/where.h5" and err.reason == "bad things"
    assert "/some/where.h5" in str(err) and "bad things" in str(err)


# ---------------------------------------------------------------------------------------------
# crash safety
# ---------------------------------------------------------------------------------------------
def test_exception_during_write_leaves_previous_file(tmp_path, monkeypatch):
    from nbconv.io import hdf5

    path = tmp_path / "m.h5"
    first = _seq()
    nio.save(first, path)
    before = path.read_bytes()
    calls = []
    real = hdf5._write_array

    def failing(*args):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("disk on fire")
        return real(*args)

    monkeypatch.setattr(hdf5, "_write_array", failing)
    with pytest.raises(RuntimeError, match="disk on fire"):
        nio.save(_perturb(_seq(), seed=7), path)
    calls.clear()
    with pytest.raises(RuntimeError, match="disk on fire"):
        nio.save_weights(_seq(), tmp_path / "new.h5")
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["m.h5"]
    _assert_same_state(first, nio.load(path))


_CHILD = r"""
import os, sys
import numpy as np
import nbconv.io as nio, nbconv.nn as nn
path = sys.argv[1]
model = nn.Sequential(nn.Linear(700, 700), nn.Linear(700, 300))  # ~2.8 MB of float32
for k in range(10**6):
    for p in model.parameters():
        p.data[...] = k
    nio.save(model, path, metadata={"version": k})
    if k == 0:
        print("ready", flush=True)
"""


def test_sigkill_during_save_keeps_a_valid_file(tmp_path):
    path = tmp_path / "model.h5"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]))
    rng = np.random.default_rng(2024)
    seen = set()
    for i in range(4):
        proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(path)], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            assert proc.stdout.readline().strip() == b"ready", proc.stderr.read().decode()
            time.sleep(float(rng.uniform(0.02, 0.3)) + 0.15 * i)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        assert proc.returncode == -signal.SIGKILL
        model, _, meta = nio.load_state(path)
        k = meta["version"]
        seen.add(k)
        for p in model.parameters():
            assert np.all(p.data == k)  # the weights belong to the version named in metadata
        # leftovers of an interrupted write are only hidden temporary files
        for name in os.listdir(tmp_path):
            assert name == "model.h5" or (name.startswith(".model.h5.") and name.endswith(".tmp"))
    assert max(seen) > 0  # the child did overwrite the file while being killed


_STALE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ------------------------------------------------------------ stale temporaries (issue 15)
def _stale_child(code: str, **kw):
    env = dict(os.environ,
               PYTHONPATH=_STALE_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=env,
                            stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True, **kw)


_STALE_WRITER = """
    import os, signal, sys
    from nbconv.io import hdf5
    def write(f):
        f.create_dataset("x", data=list(range(1000)))
        f.flush()
        print("writing", flush=True)
        {action}
    hdf5._atomic_write(sys.argv[1] if len(sys.argv) > 1 else {path!r}, write)
"""


def _stale_temporaries(d, base):
    return sorted(n for n in os.listdir(d) if n.startswith(f".{base}.") and n.endswith(".tmp"))


@pytest.mark.skipif(os.name != "posix", reason="process ids and SIGKILL are POSIX")
def test_killed_save_leaves_a_temporary_that_the_next_save_removes(tmp_path):
    path = tmp_path / "model.h5"
    net = nn.Sequential(nn.Linear(3, 2))
    nbconv.save(net, path)
    before = path.read_bytes()
    # a writer killed (SIGKILL, no clean-up possible) in the middle of its save
    kill = "os.kill(os.getpid(), signal.SIGKILL)"
    dead = _stale_child(_STALE_WRITER.format(action=kill, path=str(path)))
    assert dead.stdout.readline().strip() == "writing"
    assert dead.wait(60) == -signal.SIGKILL
    stale = _stale_temporaries(tmp_path, "model.h5")
    assert len(stale) == 1 and f".{dead.pid}." in stale[0]
    assert path.read_bytes() == before  # the previous file is intact
    # a live writer of the same path, paused inside its save
    live = _stale_child(_STALE_WRITER.format(action="sys.stdin.readline()", path=str(path)))
    try:
        assert live.stdout.readline().strip() == "writing"
        live_tmp = [n for n in _stale_temporaries(tmp_path, "model.h5") if n not in stale]
        assert len(live_tmp) == 1
        # an unrelated file with a similar name is not ours to delete
        (tmp_path / ".other.h5.x.1.tmp").write_bytes(b"")
        nbconv.save(net, path)  # removes the dead writer's file, keeps the live one's
        assert _stale_temporaries(tmp_path, "model.h5") == live_tmp
        assert (tmp_path / ".other.h5.x.1.tmp").exists()
        assert nbconv.load(path).state_dict().keys() == net.state_dict().keys()
    finally:
        live.stdin.write("\n")
        live.stdin.flush()
        assert live.wait(60) == 0
    assert _stale_temporaries(tmp_path, "model.h5") == []  # the live writer renamed its own

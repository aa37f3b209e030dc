"""A model file may set only the constructor arguments a layer takes from a file, each checked.

Every registered layer class is built, saved in a one-layer model, and the file's architecture
JSON is edited by hand (with its SHA-256 companion, as a deliberate tamperer would): an argument
the layer does not take from a file (``rng``, ``dtype``, an invented name) and every argument
set to a value of the wrong type must make ``nbconv.load`` refuse the file, naming the layer and
the argument.  Outside ``load`` the same constructor calls raise the same checks.
"""

import hashlib
import inspect
import json

import h5py
import numpy as np
import pytest

import nbconv as nc
import nbconv.io as nio
import nbconv.nn as nn
from nbconv.nn.config import _REGISTRY, file_settable

# required constructor arguments by name: a new layer whose required arguments are named
# otherwise fails test_every_layer_is_covered until a sample is added here
_SAMPLES = dict(in_channels=2, out_channels=2, kernel_size=3, in_features=2, out_features=2,
                output_size=2, num_features=2, size=3, num_groups=1, num_channels=2,
                normalized_shape=[4], pads=[[0, 0], [0, 0], [1, 1], [1, 1]], starts=[0],
                ends=[1], shape=[2, 2], axes=[0], op="add", kernel_shape=[2, 2], axis=1,
                slots=[None, [1, 1, 2, 2]])
# layers that need more than their required arguments to be built
_EXTRA = {"Upsample": dict(scale_factor=2), "UpsamplingNearest2d": dict(scale_factor=2),
          "UpsamplingBilinear2d": dict(scale_factor=2)}

_BUILTIN = sorted(n for n, c in _REGISTRY.items() if c.__module__.startswith("nbconv."))
_NN = sorted(n for n in _BUILTIN if _REGISTRY[n].__module__.startswith("nbconv.nn"))


def _build(name):
    cls = _REGISTRY[name]
    sig = inspect.signature(cls.__init__)
    args = {}
    for p in list(sig.parameters.values())[1:]:
        if p.default is inspect.Parameter.empty and p.kind in (p.POSITIONAL_OR_KEYWORD,
                                                               p.KEYWORD_ONLY):
            assert p.name in _SAMPLES, f"add a sample value for {name}'s argument {p.name!r}"
            args[p.name] = _SAMPLES[p.name]
    return cls(**args, **_EXTRA.get(name, {}))


def _saved(tmp_path, name):
    path = tmp_path / f"{name}.h5"
    nc.save(nn.Sequential({"probe": _build(name)}), path)
    return path


def _tamper(path, edit):
    """Rewrite the file's architecture JSON (and its checksum) with ``edit(layer_config)``."""
    with h5py.File(path, "a") as f:
        arch = json.loads(f.attrs["architecture"])
        edit(arch["layers"][0].setdefault("config", {}))
        text = json.dumps(arch)
        f.attrs["architecture"] = text
        f.attrs["architecture_sha256"] = hashlib.sha256(text.encode()).hexdigest()


def test_every_layer_is_covered():
    nn_layers = {n for n in dir(nn) if isinstance(getattr(nn, n), type)
                 and issubclass(getattr(nn, n), nn.Module)
                 and getattr(nn, n).__module__.startswith("nbconv.nn")}
    nn_layers -= {"Module", "Sequential", "Graph", "ModuleList"}  # containers: own format
    assert nn_layers <= set(_NN), sorted(nn_layers - set(_NN))
    assert len(_NN) >= 40


@pytest.mark.parametrize("name", _BUILTIN)
def test_file_settable_are_the_recorded_arguments(name):
    """What save writes (the layer's ``_config``) is exactly what load lets a file set."""
    assert set(_build(name)._config) == file_settable(_REGISTRY[name])


@pytest.mark.parametrize("name", _NN)
def test_tampered_file_refused(tmp_path, name):
    path = _saved(tmp_path, name)
    model = nc.load(path)  # the untouched file loads
    assert type(dict(model.named_children())["probe"]).__name__ == name

    # arguments a file never sets: refused before the constructor sees them
    for stray, value in (("rng", {"x": 1}), ("dtype", "float16"), ("evil", 1)):
        p = tmp_path / f"{name}_{stray}.h5"
        p.write_bytes(path.read_bytes())
        _tamper(p, lambda c, k=stray, v=value: c.__setitem__(k, v))
        with pytest.raises(ValueError, match=rf"'probe' \({name}\).*'{stray}' cannot be set"):
            nc.load(p)

    # every argument it does set: a wrong type is refused by the constructor's own check
    for arg in sorted(file_settable(_REGISTRY[name])):
        for bad in ({"x": 1}, "nonsense"):
            p = tmp_path / f"{name}_{arg}.h5"
            p.write_bytes(path.read_bytes())
            _tamper(p, lambda c, k=arg, v=bad: c.__setitem__(k, v))
            with pytest.raises(ValueError, match=rf"'probe' \({name}\).*'{arg}'") as info:
                nc.load(p)
            assert isinstance(info.value, nio.FormatError)  # with the path, as every refusal


def test_conv_rng_from_a_file_the_reported_case(tmp_path):
    path = tmp_path / "net.h5"
    nc.save(nn.Sequential({"conv1": nn.Conv2d(1, 2, 3), "relu": nn.ReLU()}), path)
    _tamper(path, lambda c: c.__setitem__("rng", {"x": 1}))
    with pytest.raises(ValueError, match=r"layer 'conv1' \(Conv2d\): argument 'rng' cannot"):
        nc.load(path)


def test_nested_path_named():
    cfg = nn.to_config(nn.Sequential({"features": nn.Sequential(nn.Conv2d(1, 2, 3))}))
    cfg["layers"][0]["layers"][0]["config"]["stride"] = -1
    with pytest.raises(ValueError, match=r"layer 'features\.0' \(Conv2d\).*'stride'"):
        nn.from_config(cfg)
    g = nn.Graph()
    g.add("stem", nn.Conv2d(1, 2, 1), "input")
    cfg = nn.to_config(g)
    cfg["nodes"][0]["module"]["config"]["kernel_size"] = 1.5
    with pytest.raises(ValueError, match=r"layer 'stem' \(Conv2d\).*'kernel_size'"):
        nn.from_config(cfg)


@pytest.mark.parametrize("config", [[1, 2], "x", None])
def test_config_not_a_dict(config):
    with pytest.raises(ValueError, match=r"'config' must be a dict"):
        nn.from_config({"type": "ReLU", "config": config})


def test_rng_checked_outside_load():
    with pytest.raises(TypeError, match=r"Conv2d: argument 'rng'.*dict"):
        nn.Conv2d(1, 2, 3, rng={"x": 1})
    with pytest.raises(TypeError, match=r"Linear: argument 'rng'.*str"):
        nn.Linear(2, 3, rng="seed")
    with pytest.raises(TypeError, match=r"Dropout: argument 'rng'"):
        nn.Dropout(0.5, rng=1.5)
    with pytest.raises(ValueError, match=r"Conv1d: argument 'rng'.*non-negative"):
        nn.Conv1d(1, 2, 3, rng=-1)
    # an int seed is a seed: the same weights as a Generator seeded alike
    a, b = nn.Conv2d(2, 3, 3, rng=7), nn.Conv2d(2, 3, 3, rng=np.random.default_rng(7))
    assert np.array_equal(a.weight.data, b.weight.data)
    assert np.array_equal(a.bias.data, b.bias.data)


def test_users_class_keeps_its_arguments(tmp_path):
    """A registered class of the user's may be given every argument of its constructor, and
    any name when it takes ``**kwargs``."""

    @nn.register
    class FileArgsProbe(nn.Module):
        def __init__(self, width=2, rng=None):
            super().__init__()
            self.fc = nn.Linear(2, width)

    @nn.register
    class FileArgsKw(nn.Module):
        def __init__(self, **kw):
            super().__init__()
            self.kw = kw

    assert file_settable(FileArgsProbe) == {"width", "rng"}
    assert file_settable(FileArgsKw) is None
    m = nn.from_config(nn.to_config(FileArgsProbe(width=3)))
    assert m.fc.weight.shape == (3, 2)
    assert nn.from_config(nn.to_config(FileArgsKw(a=1, b="x"))).kw == {"a": 1, "b": "x"}
    with pytest.raises(ValueError, match=r"FileArgsProbe.*'depth' cannot be set"):
        nn.from_config({"type": "FileArgsProbe", "config": {"depth": 2}})

"""Architecture descriptions: a model as plain JSON-able data, and back.

Leaves are ``{"type": "Conv2d", "config": {...constructor arguments...}}``; ``Sequential`` lists
its named layers and ``Graph`` its nodes with their inputs.  The model file (``nbconv.io``)
stores this as JSON so that ``nbconv.load`` rebuilds a model from the file alone, without
executing any code from it: only classes registered here can be named.
"""

from __future__ import annotations

import inspect
import json

from . import activations, containers, conv_transpose, layers, norms, pooling, upsample
from .module import Module

_REGISTRY: dict[str, type] = {}


def register(cls: type) -> type:
    """Make a custom ``Module`` subclass nameable in model files (usable as a decorator).

    The file stores the class name and the arguments of the constructor call (recorded in
    ``self._config`` automatically for classes defined outside nbconv; they must be JSON
    data: numbers, strings, bools, None, lists, dicts); ``nbconv.load`` calls the class
    registered under that name with them, which must build the same sub-modules, and then
    loads the weights by key.  The class must be registered (its module imported) in the
    process that loads the file.  Registering a new class under a name again replaces the
    old one (e.g. a notebook cell run twice); built-in layer names are refused.

    Examples
    --------
    >>> import nbconv as nc
    >>> @nc.nn.register
    ... class Tiny(nc.nn.Module):
    ...     def __init__(self, width=3):
    ...         super().__init__()
    ...         self.fc = nc.nn.Linear(2, width)
    >>> nc.nn.to_config(Tiny(width=5))
    {'type': 'Tiny', 'config': {'width': 5}}
    """
    if not (isinstance(cls, type) and issubclass(cls, Module)):
        raise TypeError(f"register: expected a Module subclass, got {cls!r}")
    old = _REGISTRY.get(cls.__name__)
    if old is not None and old is not cls and old.__module__.startswith("nbconv."):
        raise ValueError(f"register: the name {cls.__name__!r} belongs to the built-in "
                         f"{old.__module__}.{old.__name__}; give the class another name")
    _REGISTRY[cls.__name__] = cls
    return cls


for _name in layers.__all__:
    register(getattr(layers, _name))
for _name in pooling.__all__:
    register(getattr(pooling, _name))
for _name in norms.__all__:
    register(getattr(norms, _name))
for _name in activations.__all__:
    register(getattr(activations, _name))
for _name in upsample.__all__:
    register(getattr(upsample, _name))
for _name in conv_transpose.__all__:
    register(getattr(conv_transpose, _name))
for _cls in (containers.Concat, containers.Add, containers.Identity):
    register(_cls)


def to_config(module: Module) -> dict:
    """Describe ``module`` (recursively) as JSON-able data."""
    if isinstance(module, containers.Sequential):
        return {"type": "Sequential",
                "layers": [{"name": n, **to_config(m)} for n, m in module._children.items()]}
    if isinstance(module, containers.Graph):
        return {"type": "Graph", "output": module.output,
                "nodes": [{"name": n, "inputs": list(ins), "module": to_config(m)}
                          for n, m, ins in module.nodes]}
    name = type(module).__name__
    if _REGISTRY.get(name) is not type(module):
        raise TypeError(
            f"to_config: layer class {name} is not registered; decorate it with "
            "nbconv.nn.register so model files can name it"
        )
    config = dict(module._config)
    try:
        json.dumps(config, allow_nan=True)
    except (TypeError, ValueError):
        bad = {k: v for k, v in config.items() if not _is_json(v)}
        raise TypeError(
            f"to_config: {name}'s constructor arguments {sorted(bad)} are not JSON data "
            f"({', '.join(f'{k}={v!r:.60}' for k, v in bad.items())}); a model file can "
            "record only numbers, strings, bools, None, lists and dicts: pass such values, or "
            "set self._config in the constructor to arguments that rebuild the layer") from None
    desc = {"type": name, "config": config}
    if type(module).__module__.split(".")[0] != "nbconv":
        desc["module"] = type(module).__module__  # where a loading process finds the class
    return desc


def _is_json(value) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


#: Constructor arguments a model file never sets on a built-in layer: the dtype is the file's
#: own (its ``dtype`` attribute), and ``rng`` only draws initial weights that the file replaces.
_NOT_FROM_FILE = frozenset({"dtype", "rng"})


def file_settable(cls: type) -> frozenset | None:
    """The constructor arguments a model file may set for the registered layer class ``cls``.

    For a built-in layer these are its constructor's named arguments except ``dtype`` and
    ``rng`` -- exactly the keys of the ``_config`` it records; for a class of the user's, every
    named argument of its constructor (its arguments are recorded automatically).  None means
    any name (a user's constructor taking ``**kwargs``).  Each value is then checked by the
    constructor itself, as for a call in code.
    """
    sig = inspect.signature(cls.__init__)
    params = list(sig.parameters.values())[1:]
    builtin = cls.__module__.split(".")[0] == "nbconv"
    if not builtin and any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    names = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return frozenset(names - _NOT_FROM_FILE if builtin else names)


def from_config(cfg: dict) -> Module:
    """Rebuild a module from :func:`to_config`'s description.

    A description read from a file is untrusted: a layer may be given only the arguments of
    :func:`file_settable`, and its constructor validates each of them.

    Raises
    ------
    ValueError
        On an unknown layer type, an argument the layer does not take from a file, a value its
        constructor refuses, or a malformed description; the message names the layer (its path
        in the model, e.g. ``'features.0'``, and its type) and the argument.
    """
    return _build(cfg, "")


def _build(cfg, where: str) -> Module:
    at = f"layer {where!r}" if where else "the model"
    if not isinstance(cfg, dict) or "type" not in cfg:
        raise ValueError(f"from_config: {at}: expected a dict with a 'type', got {cfg!r:.200}")
    kind = cfg["type"]
    try:
        if kind == "Sequential":
            return containers.Sequential({
                _name(d, at): _build(d, _join(where, d["name"])) for d in cfg["layers"]})
        if kind == "Graph":
            g = containers.Graph(output=cfg.get("output"))
            for node in cfg["nodes"]:
                name = _name(node, at)
                g.add(name, _build(node["module"], _join(where, name)), *node["inputs"])
            return g
        if not isinstance(kind, str) or kind not in _REGISTRY:
            _unknown(kind, cfg.get("module"))
        return _leaf(_REGISTRY[kind], cfg.get("config", {}), at)
    except (KeyError, TypeError) as e:
        raise ValueError(f"from_config: {at}: malformed description of {kind!r}: {e}") from e


def _name(desc, at: str) -> str:
    if not isinstance(desc, dict) or not isinstance(desc.get("name"), str):
        raise ValueError(f"from_config: {at}: a sub-layer's description needs a str 'name', "
                         f"got {desc!r:.200}")
    return desc["name"]


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _leaf(cls: type, config, at: str) -> Module:
    kind = cls.__name__
    if not isinstance(config, dict):
        raise ValueError(f"from_config: {at} ({kind}): 'config' must be a dict of constructor "
                         f"arguments, got {config!r:.200}")
    allowed = file_settable(cls)
    if allowed is not None:
        stray = sorted(k for k in config if k not in allowed)
        if stray:
            raise ValueError(
                f"from_config: {at} ({kind}): argument {stray[0]!r} cannot be set by a model "
                f"file (the arguments a file may set for {kind}: "
                f"{', '.join(sorted(allowed)) or 'none'})")
    try:
        return cls(**config)
    except (TypeError, ValueError) as e:
        # the constructor's own check names the argument; add where the layer sits
        raise ValueError(f"from_config: {at} ({kind}): {e}") from e


def _unknown(kind, where) -> None:
    if where == "__main__":
        raise ValueError(
            f"from_config: layer class {kind!r} is not registered in this process; "
            "it was defined in the script that saved the file (__main__): define it "
            "here too (decorated with @nbconv.nn.register), or move it to a module "
            "that both scripts import")
    if isinstance(where, str):
        raise ValueError(
            f"from_config: layer class {kind!r} is not registered in this process: "
            f"import the module that defines it ({where}) first, so that its "
            "@nbconv.nn.register runs, then load again")
    raise ValueError(f"from_config: unknown layer type {kind!r:.100}")

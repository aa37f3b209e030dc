"""Architecture descriptions: a model as plain JSON-able data, and back.

Leaves are ``{"type": "Conv2d", "config": {...constructor arguments...}}``; ``Sequential`` lists
its named layers and ``Graph`` its nodes with their inputs.  The model file (``nbconv.io``)
stores this as JSON so that ``nbconv.load`` rebuilds a model from the file alone, without
executing any code from it: only classes registered here can be named.
"""

from __future__ import annotations

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


def from_config(cfg: dict) -> Module:
    """Rebuild a module from :func:`to_config`'s description.

    Raises
    ------
    ValueError
        On an unknown layer type or a malformed description.
    """
    if not isinstance(cfg, dict) or "type" not in cfg:
        raise ValueError(f"from_config: expected a dict with a 'type', got {cfg!r:.200}")
    kind = cfg["type"]
    try:
        if kind == "Sequential":
            return containers.Sequential({d["name"]: from_config(d) for d in cfg["layers"]})
        if kind == "Graph":
            g = containers.Graph(output=cfg.get("output"))
            for node in cfg["nodes"]:
                g.add(node["name"], from_config(node["module"]), *node["inputs"])
            return g
        if kind not in _REGISTRY:
            where = cfg.get("module")
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
            raise ValueError(f"from_config: unknown layer type {kind!r}")
        return _REGISTRY[kind](**cfg.get("config", {}))
    except (KeyError, TypeError) as e:
        raise ValueError(f"from_config: malformed description of {kind!r}: {e}") from e

"""Architecture descriptions: a model as plain JSON-able data, and back.

Leaves are ``{"type": "Conv2d", "config": {...constructor arguments...}}``; ``Sequential`` lists
its named layers and ``Graph`` its nodes with their inputs.  The model file (``nbconv.io``)
stores this as JSON so that ``nbconv.load`` rebuilds a model from the file alone, without
executing any code from it: only classes registered here can be named.
"""

from __future__ import annotations

from . import containers, layers
from .module import Module

_REGISTRY: dict[str, type] = {}


def register(cls: type) -> type:
    """Make a custom ``Module`` subclass nameable in model files (usable as a decorator).

    Its constructor must accept the keyword arguments it records in ``self._config``.
    """
    if not (isinstance(cls, type) and issubclass(cls, Module)):
        raise TypeError(f"register: expected a Module subclass, got {cls!r}")
    _REGISTRY[cls.__name__] = cls
    return cls


for _name in layers.__all__:
    register(getattr(layers, _name))
for _cls in (containers.Concat, containers.Add):
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
    return {"type": name, "config": dict(module._config)}


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
            raise ValueError(f"from_config: unknown layer type {kind!r}")
        return _REGISTRY[kind](**cfg.get("config", {}))
    except (KeyError, TypeError) as e:
        raise ValueError(f"from_config: malformed description of {kind!r}: {e}") from e

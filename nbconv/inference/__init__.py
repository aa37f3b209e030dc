"""Planned networks for CPU inference: :func:`compile` (also ``nbconv.compile``).

One job per module: :mod:`.trace` turns a model into a list of steps, :mod:`.fuse` folds and
fuses them, :mod:`.memory` plans the buffers, :mod:`.layouts` picks the maps kept as rows of
channels, :mod:`.steps` builds each step's closure, :mod:`.plan` lays a network out for one
input shape, :mod:`.compiled` is the callable.
"""

from .compiled import CompiledModel, compile

__all__ = ["compile", "CompiledModel"]

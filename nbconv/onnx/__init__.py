"""ONNX in and out: run models trained elsewhere, ship models trained here.

:func:`export` writes an nbconv ``Sequential``/``Graph``, or a PyTorch-style module whose
forward pass it traces, as an ONNX file (checked with ``onnx.checker``; onnxruntime runs
it); :func:`load` imports an ONNX CNN -- for example one written by ``torch.onnx.export`` --
as a trainable :class:`nbconv.nn.Graph`.  Loading parses the file as data and runs nothing
from it; a malformed file raises :class:`nbconv.io.FormatError`, an operator nbconv lacks
:class:`UnsupportedOpError` naming the node and its op type.

onnx (and onnxruntime, for running exported files) is the optional extra ``onnx``
(``pip install 'nbconv[onnx]'``); it is imported only when :func:`export` or :func:`load` is
called, so ``import nbconv`` never imports it.  The extra layers an imported graph may hold
(``Clip``, ``Pad``, ``Reshape``, ...) live in :mod:`nbconv.onnx.layers` and need no onnx.
"""

from . import layers

__all__ = ["export", "load", "UnsupportedOpError", "layers", "DEFAULT_OPSET", "MIN_OPSET"]

# ``import nbconv`` imports this package (for the layers' registration); the converters load
# on first use, which keeps them off nbconv's start-up time.
_LAZY = {"export": "_export", "DEFAULT_OPSET": "_export", "MIN_OPSET": "_export",
         "load": "_import", "UnsupportedOpError": "_import"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))

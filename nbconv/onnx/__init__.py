"""ONNX in and out: run models trained elsewhere, ship models trained here.

:func:`export` writes an nbconv ``Sequential``/``Graph`` as an ONNX file (checked with
``onnx.checker``; onnxruntime runs it); :func:`load` imports an ONNX CNN -- for example one
written by ``torch.onnx.export`` -- as a trainable :class:`nbconv.nn.Graph`.  Loading parses
the file as data and runs nothing from it; a malformed file raises
:class:`nbconv.io.FormatError`, an operator nbconv lacks :class:`UnsupportedOpError` naming
the node and its op type.

onnx (and onnxruntime, for running exported files) is the optional extra ``onnx``
(``pip install 'nbconv[onnx]'``); it is imported only when :func:`export` or :func:`load` is
called, so ``import nbconv`` never imports it.  The extra layers an imported graph may hold
(``Clip``, ``Pad``, ``Reshape``, ...) live in :mod:`nbconv.onnx.layers` and need no onnx.
"""

from . import layers
from ._export import DEFAULT_OPSET, MIN_OPSET, export
from ._import import UnsupportedOpError, load

__all__ = ["export", "load", "UnsupportedOpError", "layers", "DEFAULT_OPSET", "MIN_OPSET"]

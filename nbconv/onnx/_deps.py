"""The one place that imports onnx and onnxruntime, with the install hint."""

from __future__ import annotations

_HINT = ("nbconv.onnx needs the optional packages onnx and onnxruntime: "
         "pip install 'nbconv[onnx]'  (or: pip install onnx onnxruntime)")


def onnx():
    """The ``onnx`` package, or ImportError with the install hint."""
    try:
        import onnx
    except ImportError as e:
        raise ImportError(_HINT) from e
    return onnx


def onnxruntime():
    """The ``onnxruntime`` package, or ImportError with the install hint."""
    try:
        import onnxruntime
    except ImportError as e:
        raise ImportError(_HINT) from e
    return onnxruntime

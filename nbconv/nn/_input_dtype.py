"""Inputs of another dtype than the model's: cast once where a model call is entered, warned.

A float64 (or integer, e.g. uint8 image) batch given to a float32 model would otherwise run
every layer in a mix of dtypes (and compile float64 kernels).  PyTorch refuses such a call
("mat1 and mat2 must have the same dtype"); nbconv casts the input to the model's dtype once, at
the outermost module call, and says so with a ``UserWarning``.
"""

from __future__ import annotations

import os
import sys
import warnings

import numpy as np

from .._dispatch import is_device_array
from ._arrays import astype

_HERE = os.path.dirname(os.path.abspath(__file__))

__all__ = ["model_dtype", "cast_inputs"]


def model_dtype(module):
    """The dtype of ``module``'s first floating parameter (else first floating buffer), depth
    first; None for a module without any (an activation, a loss)."""
    todo = [module]
    buffer_dtype = None
    while todo:
        m = todo.pop()
        d = m.__dict__
        for p in d.get("_params", {}).values():
            dt = getattr(p.data, "dtype", None)
            if dt is not None and dt.kind == "f":
                return dt
        if buffer_dtype is None:
            for b in d.get("_buffers", {}).values():
                dt = getattr(b, "dtype", None)
                if dt is not None and dt.kind == "f":
                    buffer_dtype = dt
                    break
        todo.extend(reversed(d.get("_children", {}).values()))
    return buffer_dtype


def cast_inputs(module, args: tuple) -> tuple:
    """``args`` with every array input (host or device) of another dtype than ``module``'s
    cast to it.

    Floating arrays (float16, float64) anywhere among the positional arguments are cast, and
    an integer or unsigned first argument (the data: uint8 images); later integer arguments
    (class indices, say) are left alone.  Each call warns once, naming both dtypes.
    """
    dtype = None
    out = None
    for i, a in enumerate(args):
        if type(a) is not np.ndarray and not is_device_array(a):
            continue
        kind = np.dtype(a.dtype).kind
        if not (kind == "f" or (i == 0 and kind in "iu")):
            continue
        if dtype is None:
            dtype = model_dtype(module)
            if dtype is None:
                return args
        if np.dtype(a.dtype) == dtype:
            continue
        if out is None:
            out = list(args)
            warnings.warn(
                f"{type(module).__name__}: input {i} is {np.dtype(a.dtype).name} but the model's "
                f"parameters are {dtype.name}; it is cast to {dtype.name} for this call (cast "
                f"it yourself, x.astype(np.{dtype.name}), to silence this warning)",
                UserWarning, stacklevel=_caller_level())
        out[i] = astype(a, dtype)
    return args if out is None else tuple(out)


def _caller_level() -> int:
    """The ``stacklevel`` of the first frame outside ``nbconv.nn`` (the user's ``model(x)`` or
    ``model.forward(x)``), so that the warning points at the call."""
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.dirname(os.path.abspath(frame.f_code.co_filename)) \
            == _HERE:
        frame, level = frame.f_back, level + 1
    return level

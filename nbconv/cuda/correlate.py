"""Device ``correlate2d``/``convolve2d`` (float32/float64 device arrays)."""

from __future__ import annotations

import numpy as np

from .._checks.correlate import (
    axis_plan,
    check_fillvalue,
    check_mode_boundary,
    gather_index,
    swap_needed,
)
from .._dispatch import implements
from ._plumbing import (
    _as_numba,
    _copy,
    _empty,
    _grid,
    _is_c_contiguous,
    _kernels,
    _to_dev,
    _zero,
    _zeros,
)


def _corr_inputs(op, in1, in2):
    a = _as_numba(op, "in1", in1)
    b = _as_numba(op, "in2", in2)
    if a.ndim != 2 or b.ndim != 2:
        bad = "in1" if a.ndim != 2 else "in2"
        raise ValueError(
            f"{op}: argument '{bad}' must be 2-D: in1 and in2 must both be 2-D arrays "
            f"(in1 shape {tuple(a.shape)}, in2 shape {tuple(b.shape)})"
        )
    rt = np.result_type(np.dtype(a.dtype), np.dtype(b.dtype))
    if rt not in (np.float32, np.float64):
        name = "in1" if np.dtype(a.dtype) == rt else "in2"
        raise TypeError(
            f"{op}: argument '{name}': on a CUDA device only float32/float64 inputs are "
            f"supported, got the common dtype {rt} (in1 {a.dtype}, in2 {b.dtype}); cast them "
            "or use host arrays"
        )
    return _astype_c(a, rt), _astype_c(b, rt), rt


def _astype_c(a, dtype):
    if np.dtype(a.dtype) == np.dtype(dtype) and _is_c_contiguous(a):
        return a
    return _copy(a, dtype)


def _index_vec(start, length, n, boundary):
    if boundary == "fill":
        j = np.arange(start, start + length, dtype=np.int64)
        return np.where((j >= 0) & (j < n), j, -1)
    return gather_index(start, length, n, boundary)


def _flip(a):
    out = _empty(a.shape, a.dtype)
    if a.size:
        _kernels("_copy")._flip2[_grid(a.size)](a, out)
    return out


def _corr_run(op, in1, in2, mode, boundary, fillvalue, conj):
    a, b, rt = _corr_inputs(op, in1, in2)
    swapped = swap_needed(op, mode, tuple(a.shape), tuple(b.shape))
    boundary = check_mode_boundary(op, mode, boundary)
    fv = check_fillvalue(op, fillvalue, rt) if boundary == "fill" else np.zeros((), rt)
    if swapped:
        a, b = b, a
    flip = not conj
    (n0, n1), (k0, k1) = tuple(a.shape), tuple(b.shape)
    o0, s0 = axis_plan(n0, k0, mode, flip)
    o1, s1 = axis_plan(n1, k1, mode, flip)
    if o0 < 0 or o1 < 0:
        raise ValueError(
            f"{op}: arguments 'in1' and 'in2' give a negative output size for mode={mode!r} "
            f"(in1 shape {tuple(a.shape)}, in2 shape {tuple(b.shape)})"
        )
    if o0 == 0 or o1 == 0 or b.size == 0:
        return _zeros((o0, o1), rt)
    if a.size == 0 and boundary != "fill":
        raise ValueError(
            f"{op}: argument 'in1' is empty (shape {tuple(a.shape)}); boundary={boundary!r} has "
            f"nothing to repeat (in2 shape {tuple(b.shape)}; SciPy crashes here)"
        )
    if flip:
        b = _flip(b)
    out = _empty((o0, o1), rt)
    k = _kernels("correlate")
    if mode == "valid":
        k._correlate2d_valid_fwd[_grid(out.size)](a, b, out, _zero(rt))
    else:
        rows = _to_dev(_index_vec(s0, o0 + k0 - 1, n0, boundary))
        cols = _to_dev(_index_vec(s1, o1 + k1 - 1, n1, boundary))
        if a.size == 0:  # all fill: any 1x1 array will do, it is never read
            a = _zeros((1, 1), rt)
        k._correlate2d_gather_fwd[_grid(out.size)](a, rows, cols, b, out, rt.type(fv),
                                                   _zero(rt))
    if swapped and conj:
        out = _flip(out)
    return out


@implements
def correlate2d(in1, in2, mode="full", boundary="fill", fillvalue=0):
    return _corr_run("correlate2d", in1, in2, mode, boundary, fillvalue, conj=True)


@implements
def convolve2d(in1, in2, mode="full", boundary="fill", fillvalue=0):
    return _corr_run("convolve2d", in1, in2, mode, boundary, fillvalue, conj=False)


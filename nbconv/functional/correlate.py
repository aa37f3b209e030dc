"""Drop-in replacements for ``scipy.signal.correlate2d`` and ``scipy.signal.convolve2d``.

Same signatures, modes, boundaries, fill values, output shapes and output dtypes as SciPy, computed
by a parallel numba kernel (:mod:`nbconv.kernels.correlate`).  Every mode and boundary is reduced
to one 'valid' correlation: the rows/columns of ``in1`` that the requested output reads are
gathered into a padded copy (``fillvalue`` outside for ``"fill"``, periodic indices for
``"wrap"``, mirrored indices with the edge repeated for ``"symm"``, i.e. NumPy's ``np.pad``
``"symmetric"``, repeated as often as needed when ``in2`` is larger than ``in1``), and the kernel
slides ``in2`` (flipped for ``convolve2d``) over it.

Dtypes (SciPy's rule): the output dtype is ``np.result_type(in1, in2)``.

* float32/float64 are computed in that dtype.
* Integer results are computed exactly in int64 and cast back, wrapping around on overflow
  exactly like SciPy's integer loops (e.g. uint8 200 * 3 + ... modulo 256).
* complex64/complex128 are supported (four real correlations); ``correlate2d`` conjugates
  ``in2`` like SciPy.
* bool, float16 (as the common type) and non-numeric dtypes raise ``ValueError`` (SciPy: "not
  available for this type"); long double / complex long double raise ``TypeError`` (SciPy
  supports them, nbconv does not).

Where SciPy itself crashes (``boundary="wrap"``/``"symm"`` with an empty ``in1``: a division by
zero in its C code) nbconv raises ``ValueError``.
"""

from __future__ import annotations

import numpy as np

from .. import _dispatch
from .._checks.correlate import (
    axis_plan,
    check_fillvalue,
    check_mode_boundary,
    gather_index,
    swap_needed,
)

__all__ = ["correlate2d", "convolve2d"]


def _check_inputs(op, in1, in2):
    for name, v in (("in1", in1), ("in2", in2)):
        if hasattr(v, "__cuda_array_interface__") and not isinstance(v, np.ndarray):
            raise TypeError(
                f"{op}: argument '{name}' is a CUDA device array; {op} runs on the host "
                "(move it with nbconv.cuda.to_host)"
            )
    a = np.asarray(in1)
    b = np.asarray(in2)
    if a.ndim != 2 or b.ndim != 2:
        bad = "in1" if a.ndim != 2 else "in2"
        raise ValueError(
            f"{op}: argument '{bad}' must be 2-D: in1 and in2 must both be 2-D arrays "
            f"(in1 shape {a.shape}, in2 shape {b.shape})"
        )
    for name, v in (("in1", a), ("in2", b)):
        if v.dtype.kind not in "biufc":
            raise ValueError(
                f"{op}: argument '{name}' has dtype {v.dtype}, not available for this type "
                f"(in1 {a.dtype}, in2 {b.dtype})"
            )
    rt = np.result_type(a, b)
    kind, size = rt.kind, rt.itemsize
    if kind == "b" or (kind == "f" and size < 4):
        raise ValueError(
            f"{op}: arguments 'in1' and 'in2' have the common dtype {rt}, which is not "
            f"available (as in SciPy); cast them to float32/float64 (in1 {a.dtype}, "
            f"in2 {b.dtype})"
        )
    if (kind == "f" and size > 8) or (kind == "c" and size > 16):
        name = "in1" if a.dtype == rt else "in2"
        raise TypeError(
            f"{op}: argument '{name}' has dtype {rt}; long double is not supported, use "
            f"float64/complex128 (in1 {a.dtype}, in2 {b.dtype})"
        )
    return a, b, rt


def _padded(a, starts, lengths, boundary, fv):
    """The (lengths[0], lengths[1]) block of ``a`` extended by ``boundary``, C-contiguous."""
    n0, n1 = a.shape
    (s0, s1), (l0, l1) = starts, lengths
    if s0 == 0 and s1 == 0 and (l0, l1) == (n0, n1):
        return np.ascontiguousarray(a)
    if boundary == "fill":
        r0, r1 = max(s0, 0), min(s0 + l0, n0)
        c0, c1 = max(s1, 0), min(s1 + l1, n1)
        if r1 <= r0 or c1 <= c0:
            return np.full((l0, l1), fv, dtype=a.dtype)
        # one pass over memory: the interior is copied, only the border is filled
        p = np.empty((l0, l1), dtype=a.dtype)
        t, b, lft, rgt = r0 - s0, r1 - s0, c0 - s1, c1 - s1
        p[:t] = fv
        p[b:] = fv
        p[t:b, :lft] = fv
        p[t:b, rgt:] = fv
        p[t:b, lft:rgt] = a[r0:r1, c0:c1]
        return p
    rows = gather_index(s0, l0, n0, boundary)
    cols = gather_index(s1, l1, n1, boundary)
    return np.ascontiguousarray(a[np.ix_(rows, cols)])  # only the needed elements


def _correlate_into(a, w, out, s0, s1, boundary, fv):
    """``out[:] = valid(pad(a), w)`` where ``pad(a)[r, c]`` is ``a[s0 + r, s1 + c]`` extended by
    ``boundary``; ``a``, ``w``, ``out`` real, C-contiguous, one dtype.

    The interior, whose windows lie inside ``a``, is correlated straight from ``a``; only the
    border strips (``kh-1``/``kw-1`` wide) are padded explicitly.  A full padded copy of a
    512x512 input cost more than the correlation itself (fresh memory, page faults).
    """
    from ..kernels.correlate import _correlate2d_valid_fwd

    (n0, n1), (k0, k1) = a.shape, w.shape
    o0, o1 = out.shape
    i_lo, i_hi = max(0, -s0), min(o0, n0 - k0 + 1 - s0)
    j_lo, j_hi = max(0, -s1), min(o1, n1 - k1 + 1 - s1)
    if i_hi > i_lo and j_hi > j_lo:
        _correlate2d_valid_fwd(a, w, out, s0 + i_lo, s1 + j_lo, i_lo, j_lo, i_hi - i_lo,
                               j_hi - j_lo)
        strips = [(0, i_lo, 0, o1), (i_hi, o0, 0, o1), (i_lo, i_hi, 0, j_lo),
                  (i_lo, i_hi, j_hi, o1)]
    else:
        strips = [(0, o0, 0, o1)]
    for r0, r1, c0, c1 in strips:
        if r1 > r0 and c1 > c0:
            piece = _padded(a, (s0 + r0, s1 + c0), (r1 - r0 + k0 - 1, c1 - c0 + k1 - 1),
                            boundary, fv)
            _correlate2d_valid_fwd(piece, w, out, 0, 0, r0, c0, r1 - r0, c1 - c0)


def _core(op, a, b, rt, flip, mode, boundary, fv):
    """SciPy's ``_convolve2d`` (no swap, no conjugation): ``a`` slid over by ``b``."""
    (n0, n1), (k0, k1) = a.shape, b.shape
    o0, s0 = axis_plan(n0, k0, mode, flip)
    o1, s1 = axis_plan(n1, k1, mode, flip)
    if o0 < 0 or o1 < 0:
        raise ValueError(
            f"{op}: arguments 'in1' and 'in2' give a negative output size for mode={mode!r} "
            f"(in1 shape {a.shape}, in2 shape {b.shape})"
        )
    if o0 == 0 or o1 == 0 or b.size == 0:
        return np.zeros((o0, o1), dtype=rt)
    if a.size == 0 and boundary != "fill":
        raise ValueError(
            f"{op}: argument 'in1' is empty (shape {a.shape}); boundary={boundary!r} has nothing "
            f"to repeat (in2 shape {b.shape}; SciPy crashes here)"
        )
    if flip:
        b = b[::-1, ::-1]
    kind = rt.kind
    wdt = np.int64 if kind in "iu" else rt
    a = np.asarray(a, dtype=wdt)
    b = np.asarray(b, dtype=wdt)
    fv = fv.astype(wdt)
    if kind == "c":
        ft = np.float32 if rt == np.complex64 else np.float64
        parts = []
        for x, v in ((a.real, fv.real), (a.imag, fv.imag)):
            x = np.ascontiguousarray(x, ft)
            row = []
            for k in (b.real, b.imag):
                o = np.empty((o0, o1), dtype=ft)
                _correlate_into(x, np.ascontiguousarray(k, ft), o, s0, s1, boundary, v)
                row.append(o)
            parts.append(row)
        (rr, ri), (ir, ii) = parts
        out = np.empty((o0, o1), dtype=rt)
        out.real = rr - ii
        out.imag = ri + ir
        return out
    out = np.empty((o0, o1), dtype=wdt)
    _correlate_into(np.ascontiguousarray(a), np.ascontiguousarray(b), out, s0, s1, boundary, fv)
    return out if out.dtype == rt else out.astype(rt)


def _run(op, in1, in2, mode, boundary, fillvalue, conj):
    a, b, rt = _check_inputs(op, in1, in2)
    swapped = swap_needed(op, mode, a.shape, b.shape)
    boundary = check_mode_boundary(op, mode, boundary)
    fv = check_fillvalue(op, fillvalue, rt) if boundary == "fill" else np.zeros((), rt)
    if swapped:
        a, b = b, a
    if conj:
        b = b.conj()
    out = _core(op, a, b, rt, not conj, mode, boundary, fv)
    if swapped and conj:
        out = np.ascontiguousarray(out[::-1, ::-1])
    return out


@_dispatch.dispatch
def correlate2d(in1, in2, mode="full", boundary="fill", fillvalue=0):
    """Cross-correlate two 2-D arrays (drop-in for ``scipy.signal.correlate2d``).

    ``out[i, j] = sum_{a, b} in1_ext[i + a - o0, j + b - o1] * conj(in2[a, b])`` where ``in1_ext``
    is ``in1`` extended by ``boundary`` and the offsets ``(o0, o1)`` depend on ``mode``.

    Parameters
    ----------
    in1 : array_like, shape (H, W)
        First input.
    in2 : array_like, shape (kh, kw)
        Second input (the template); may be larger than ``in1``.
    mode : {"full", "valid", "same"}
        Output size: ``"full"`` (H + kh - 1, W + kw - 1), the full discrete cross-correlation;
        ``"valid"`` (H - kh + 1, W - kw + 1), only outputs that do not depend on the boundary
        (one input must then be at least as large as the other in every dimension; if ``in2`` is
        the larger one the inputs are swapped and the result reversed, as SciPy does);
        ``"same"`` (H, W), centred with respect to the full output (SciPy's offset
        ``kh // 2`` on the full output for even kernels).
    boundary : {"fill", "wrap", "symm"}
        How ``in1`` is extended: by ``fillvalue``; periodically; or mirrored with the edge
        sample repeated (``np.pad`` "symmetric").  SciPy's aliases "pad", "circular" and
        "symmetric" are accepted.
    fillvalue : scalar
        Value outside ``in1`` for ``boundary="fill"``, converted to the output dtype.

    Returns
    -------
    ndarray, shape given by ``mode``
        dtype ``np.result_type(in1, in2)`` (SciPy's); integers are computed exactly and wrap
        around on overflow like SciPy; complex inputs are supported.

    Raises
    ------
    ValueError
        Inputs not 2-D, unknown ``mode``/``boundary``, incompatible shapes in "valid" mode, a
        non-scalar or unconvertible ``fillvalue``, bool/float16 common dtype.
    TypeError
        long double inputs.

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> x = np.arange(12.0).reshape(3, 4)
    >>> nc.correlate2d(x, np.ones((2, 2)), mode="valid")
    array([[10., 14., 18.],
           [26., 30., 34.]])
    >>> nc.correlate2d(x, np.ones((2, 2)), boundary="symm").shape
    (4, 5)
    """
    return _run("correlate2d", in1, in2, mode, boundary, fillvalue, conj=True)


@_dispatch.dispatch
def convolve2d(in1, in2, mode="full", boundary="fill", fillvalue=0):
    """Convolve two 2-D arrays (drop-in for ``scipy.signal.convolve2d``).

    ``out[i, j] = sum_{a, b} in1_ext[i - a + o0, j - b + o1] * in2[a, b]``: a correlation with
    ``in2`` flipped in both axes; ``in1_ext`` is ``in1`` extended by ``boundary``.

    Parameters
    ----------
    in1 : array_like, shape (H, W)
        First input.
    in2 : array_like, shape (kh, kw)
        Second input; may be larger than ``in1``.
    mode : {"full", "valid", "same"}
        Output size: ``"full"`` (H + kh - 1, W + kw - 1); ``"valid"`` (H - kh + 1, W - kw + 1)
        (one input must be at least as large as the other in every dimension; the inputs are
        swapped if ``in2`` is the larger); ``"same"`` (H, W), centred with respect to the full
        output (offset ``(kh - 1) // 2``).
    boundary : {"fill", "wrap", "symm"}
        How ``in1`` is extended (aliases "pad", "circular", "symmetric" accepted).
    fillvalue : scalar
        Value outside ``in1`` for ``boundary="fill"``, converted to the output dtype.

    Returns
    -------
    ndarray, shape given by ``mode``
        dtype ``np.result_type(in1, in2)`` (SciPy's); see :func:`correlate2d` for dtypes.

    Raises
    ------
    ValueError, TypeError
        As :func:`correlate2d`.

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> nc.convolve2d(np.eye(2), np.array([[1, 2], [3, 4]]))
    array([[1., 2., 0.],
           [3., 5., 2.],
           [0., 3., 4.]])
    >>> nc.convolve2d(np.ones((5, 6), np.float32), np.ones((3, 3)), mode="same").dtype
    dtype('float64')
    """
    return _run("convolve2d", in1, in2, mode, boundary, fillvalue, conj=False)

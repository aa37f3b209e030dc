"""Argument handling of ``correlate2d``/``convolve2d``, shared by :mod:`nbconv.functional.correlate`
and :mod:`nbconv.cuda.correlate`: modes, boundaries, the fill value and the output plan of
each axis (which input positions an output reads)."""

from __future__ import annotations

import numpy as np

MODES = ("full", "same", "valid")


#: every boundary name SciPy accepts, mapped to its canonical name.
BOUNDARIES = {
    "fill": "fill",
    "pad": "fill",
    "wrap": "wrap",
    "circular": "wrap",
    "symm": "symm",
    "symmetric": "symm",
}


def check_mode_boundary(op, mode, boundary):
    if not isinstance(mode, str) or mode not in MODES:
        raise ValueError(f"{op}: argument 'mode' must be one of {MODES}, got {mode!r}")
    if not isinstance(boundary, str) or boundary not in BOUNDARIES:
        raise ValueError(
            f"{op}: argument 'boundary' must be one of {tuple(BOUNDARIES)}, got {boundary!r}"
        )
    return BOUNDARIES[boundary]


def check_fillvalue(op, fillvalue, rt):
    """``fillvalue`` as a scalar of dtype ``rt`` (SciPy converts it to the output dtype)."""
    try:
        f = np.asarray(fillvalue, dtype=rt)
    except (TypeError, ValueError, OverflowError) as e:
        raise ValueError(
            f"{op}: argument 'fillvalue' ({fillvalue!r}) cannot be converted to the output "
            f"dtype {rt}: {e}"
        ) from None
    if f.size != 1:
        got = ("an empty array" if f.size == 0
               else f"{f.size} values (an array of shape {f.shape})")
        raise ValueError(
            f"{op}: argument 'fillvalue' must be one number, the value that pads in1 outside "
            f"its edges (e.g. fillvalue=0), but got {got}: {fillvalue!r:.60}"
        )
    return f.reshape(())


def swap_needed(op, mode, s1, s2):
    """SciPy's rule: in 'valid' mode the larger input goes first; one must contain the other."""
    if mode != "valid":
        return False
    ok1 = all(x >= y for x, y in zip(s1, s2))
    ok2 = all(y >= x for x, y in zip(s1, s2))
    if not (ok1 or ok2):
        raise ValueError(
            f"{op}: arguments 'in1' and 'in2': for 'valid' mode, one must be at least as large "
            f"as the other in every dimension (in1 shape {tuple(s1)}, in2 shape {tuple(s2)})"
        )
    return not ok1


def axis_plan(n, k, mode, flip):
    """Output length ``o`` and the index (in ``in1``) of the first input sample it reads.

    In 'full' coordinates output ``f`` reads ``in1[f - (k - 1) + a]`` for taps ``a < k`` (after
    flipping ``in2`` for a convolution); 'same' and 'valid' are windows of the full output
    starting at SciPy's offsets.
    """
    if mode == "full":
        o, off = n + k - 1, 0
    elif mode == "same":
        o, off = n, ((k - 1) >> 1) if flip else (k - 1) - ((k - 1) >> 1)
    else:
        o, off = n - k + 1, k - 1
    return o, off - (k - 1)


def gather_index(start, length, n, boundary):
    """Indices into an axis of length ``n`` for positions ``start .. start+length-1``."""
    j = np.arange(start, start + length, dtype=np.int64)
    if boundary == "wrap":
        return j % n
    # "symm": period 2n, mirrored with the edge repeated (np.pad "symmetric", SciPy's symm)
    k = np.where(j >= 0, j, -1 - j) % (2 * n)
    return np.where(k >= n, 2 * n - 1 - k, k)

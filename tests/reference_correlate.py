"""References for ``correlate2d``/``convolve2d``: SciPy itself and a slow explicit loop.

The loop transcribes SciPy's C routine (``pylab_convolve_2d`` in ``scipy/signal/_sigtools``)
in Python: per output element and kernel tap, the input index is moved by the mode's offset and
mapped into range by the boundary rule.  It never crashes where SciPy does (an empty ``in1``
with "wrap"/"symm" raises ZeroDivisionError here) and computes in Python objects (exact ints).
Never imports nbconv.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import convolve2d as scipy_convolve2d
from scipy.signal import correlate2d as scipy_correlate2d

__all__ = ["scipy_correlate2d", "scipy_convolve2d", "correlate2d_loop", "convolve2d_loop"]

_BOUNDARY = {"fill": "fill", "pad": "fill", "wrap": "wrap", "circular": "wrap", "symm": "symm",
             "symmetric": "symm"}


def _symm(j, m):
    k = j % (2 * m) if j >= 0 else (-1 - j) % (2 * m)
    return 2 * m - k - 1 if k >= m else k


def _loop(in1, in2, mode, boundary, fillvalue, convolve):
    """SciPy's ``_convolve2d`` (no swap, no conjugation), result as an object array."""
    boundary = _BOUNDARY[boundary]
    (n0, n1), (k0, k1) = in1.shape, in2.shape
    if mode == "full":
        o0, o1 = n0 + k0 - 1, n1 + k1 - 1
    elif mode == "same":
        o0, o1 = n0, n1
    else:
        o0, o1 = n0 - k0 + 1, n1 - k1 + 1
    out = np.zeros((o0, o1), dtype=object)
    for m in range(o0):
        for n in range(o1):
            if mode == "full":
                nm, nn = (m, n) if convolve else (m - k0 + 1, n - k1 + 1)
            elif mode == "same":
                if convolve:
                    nm, nn = m + ((k0 - 1) >> 1), n + ((k1 - 1) >> 1)
                else:
                    nm, nn = m - ((k0 - 1) >> 1), n - ((k1 - 1) >> 1)
            else:
                nm, nn = (m + k0 - 1, n + k1 - 1) if convolve else (m, n)
            s = 0
            for j in range(k0):
                for k in range(k1):
                    r = nm - j if convolve else nm + j
                    c = nn - k if convolve else nn + k
                    inside = 0 <= r < n0 and 0 <= c < n1
                    if not inside and boundary == "fill":
                        v = fillvalue
                    else:
                        if boundary == "wrap":
                            r, c = r % n0, c % n1
                        elif boundary == "symm":
                            r, c = _symm(r, n0), _symm(c, n1)
                        v = in1[r, c].item()
                    s += v * in2[j, k].item()
            out[m, n] = s
    return out


def _swap(mode, s1, s2):
    if mode != "valid":
        return False
    ok1 = all(a >= b for a, b in zip(s1, s2))
    ok2 = all(b >= a for a, b in zip(s1, s2))
    if not (ok1 or ok2):
        raise ValueError("For 'valid' mode, one must be at least as large as the other")
    return not ok1


def correlate2d_loop(in1, in2, mode="full", boundary="fill", fillvalue=0):
    """Slow ``scipy.signal.correlate2d`` (object array of Python numbers; exact for ints)."""
    in1, in2 = np.asarray(in1), np.asarray(in2)
    swapped = _swap(mode, in1.shape, in2.shape)
    if swapped:
        in1, in2 = in2, in1
    out = _loop(in1, np.conj(in2), mode, boundary, fillvalue, convolve=False)
    return out[::-1, ::-1] if swapped else out


def convolve2d_loop(in1, in2, mode="full", boundary="fill", fillvalue=0):
    """Slow ``scipy.signal.convolve2d`` (object array of Python numbers; exact for ints)."""
    in1, in2 = np.asarray(in1), np.asarray(in2)
    if _swap(mode, in1.shape, in2.shape):
        in1, in2 = in2, in1
    return _loop(in1, in2, mode, boundary, fillvalue, convolve=True)

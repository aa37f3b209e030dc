"""Activation, softmax and dropout kernels.

Elementwise kernels take the flattened C-contiguous arrays (``x.ravel()``), so that one compiled
signature per dtype serves every shape; the work is split into contiguous chunks with
``numba.prange`` (both cores work at batch size 1).  Softmax kernels see the input as a
C-contiguous ``(A, n, B)`` array reduced along the middle axis (``B == 1`` when the softmax axis is
the last one).  NaN propagates: a NaN input gives a NaN output (and, for softmax, a NaN row).
"""

from __future__ import annotations

import numba
import numpy as np

from .._config import JIT_OPTIONS
from . import _vmath as _vm

#: elements per parallel chunk of the elementwise kernels.
_CHUNK = 4096
#: positions of the trailing axis handled together by the strided softmax kernels.
_BLOCK = 256


# Each elementwise op is a serial loop over one chunk (``_<op>_chunk``) and a parallel kernel
# that hands it contiguous slices.  Written inline in the ``prange`` body the same loops were
# not vectorised (relu backward: 0.62 ms against 0.07 ms for 110k float32 elements).


@numba.njit(**JIT_OPTIONS)
def _relu_fwd_chunk(x, y):
    for i in range(x.size):
        v = x[i]
        # "not (v <= 0)" keeps NaN
        y[i] = v if not (v <= 0) else 0


@numba.njit(parallel=True, **JIT_OPTIONS)
def _relu_fwd(x, y):
    n = x.size
    for ch in numba.prange((n + _CHUNK - 1) // _CHUNK):
        lo, hi = ch * _CHUNK, min(n, (ch + 1) * _CHUNK)
        _relu_fwd_chunk(x[lo:hi], y[lo:hi])


@numba.njit(**JIT_OPTIONS)
def _relu_bwd_chunk(dy, x, dx):
    for i in range(x.size):
        # PyTorch's threshold_backward: zero where x <= 0, dy elsewhere (NaN x passes dy)
        dx[i] = dy[i] if not (x[i] <= 0) else 0


@numba.njit(parallel=True, **JIT_OPTIONS)
def _relu_bwd(dy, x, dx):
    n = x.size
    for ch in numba.prange((n + _CHUNK - 1) // _CHUNK):
        lo, hi = ch * _CHUNK, min(n, (ch + 1) * _CHUNK)
        _relu_bwd_chunk(dy[lo:hi], x[lo:hi], dx[lo:hi])


@numba.njit(**JIT_OPTIONS)
def _leaky_relu_fwd_chunk(x, y, slope):
    for i in range(x.size):
        v = x[i]
        y[i] = v if v > 0 else v * slope


@numba.njit(parallel=True, **JIT_OPTIONS)
def _leaky_relu_fwd(x, y, slope):
    n = x.size
    for ch in numba.prange((n + _CHUNK - 1) // _CHUNK):
        lo, hi = ch * _CHUNK, min(n, (ch + 1) * _CHUNK)
        _leaky_relu_fwd_chunk(x[lo:hi], y[lo:hi], slope)


@numba.njit(**JIT_OPTIONS)
def _leaky_relu_bwd_chunk(dy, x, dx, slope):
    for i in range(x.size):
        g = dy[i]
        dx[i] = g if x[i] > 0 else g * slope


@numba.njit(parallel=True, **JIT_OPTIONS)
def _leaky_relu_bwd(dy, x, dx, slope):
    n = x.size
    for ch in numba.prange((n + _CHUNK - 1) // _CHUNK):
        lo, hi = ch * _CHUNK, min(n, (ch + 1) * _CHUNK)
        _leaky_relu_bwd_chunk(dy[lo:hi], x[lo:hi], dx[lo:hi], slope)


@numba.njit(**_vm.JIT_OPTIONS)
def _sigmoid_fwd_chunk(x, y):
    if x.ctypes.data == y.ctypes.data:
        # in place (a planned network): a loop over one array, which LLVM vectorises; with
        # two, its overlap check sent the loop to its scalar version, 9x slower
        _sigmoid_in_place(y)
    else:
        _sigmoid_into(x, y)


@numba.njit(**_vm.JIT_OPTIONS)
def _sigmoid_into(x, y):
    # from e = exp(-|v|) in [0, 1]: no overflow, exact 0/1 limits, one division, and a
    # float32 exponential that LLVM vectorises (:mod:`._vmath`); NaN stays NaN
    one = y.dtype.type(1)
    for i in range(x.size):
        v = x[i]
        e = _vm.exp(-np.abs(v))
        y[i] = (one if v >= 0 else e) / (one + e)


@numba.njit(**_vm.JIT_OPTIONS)
def _sigmoid_in_place(y):
    one = y.dtype.type(1)  # (one use of _vm.exp per function: numba inlines it once)
    for i in range(y.size):
        v = y[i]
        e = _vm.exp(-np.abs(v))
        y[i] = (one if v >= 0 else e) / (one + e)


@numba.njit(parallel=True, **JIT_OPTIONS)
def _sigmoid_fwd(x, y):
    n = x.size
    for ch in numba.prange((n + _CHUNK - 1) // _CHUNK):
        lo, hi = ch * _CHUNK, min(n, (ch + 1) * _CHUNK)
        _sigmoid_fwd_chunk(x[lo:hi], y[lo:hi])


@numba.njit(**JIT_OPTIONS)
def _sigmoid_bwd_chunk(dy, y, dx):
    for i in range(y.size):
        s = y[i]
        dx[i] = dy[i] * s * (1.0 - s)


@numba.njit(parallel=True, **JIT_OPTIONS)
def _sigmoid_bwd(dy, y, dx):
    n = y.size
    for ch in numba.prange((n + _CHUNK - 1) // _CHUNK):
        lo, hi = ch * _CHUNK, min(n, (ch + 1) * _CHUNK)
        _sigmoid_bwd_chunk(dy[lo:hi], y[lo:hi], dx[lo:hi])


@numba.njit(**_vm.JIT_OPTIONS)
def _tanh_fwd_chunk(x, y):
    if x.ctypes.data == y.ctypes.data:  # in place: one array (see _sigmoid_fwd_chunk)
        _tanh_in_place(y)
    else:
        _tanh_into(x, y)


@numba.njit(**_vm.JIT_OPTIONS)
def _tanh_into(x, y):
    # vectorised for float32 (:mod:`._vmath`), which drops the sign of a zero: kept from v
    for i in range(x.size):
        v = x[i]
        t = _vm.tanh(v)
        y[i] = t if t != 0 else v


@numba.njit(**_vm.JIT_OPTIONS)
def _tanh_in_place(y):
    for i in range(y.size):
        v = y[i]
        t = _vm.tanh(v)
        y[i] = t if t != 0 else v


@numba.njit(parallel=True, **JIT_OPTIONS)
def _tanh_fwd(x, y):
    n = x.size
    for ch in numba.prange((n + _CHUNK - 1) // _CHUNK):
        lo, hi = ch * _CHUNK, min(n, (ch + 1) * _CHUNK)
        _tanh_fwd_chunk(x[lo:hi], y[lo:hi])


@numba.njit(**JIT_OPTIONS)
def _tanh_bwd_chunk(dy, y, dx):
    for i in range(y.size):
        t = y[i]
        dx[i] = dy[i] * (1.0 - t * t)


@numba.njit(parallel=True, **JIT_OPTIONS)
def _tanh_bwd(dy, y, dx):
    n = y.size
    for ch in numba.prange((n + _CHUNK - 1) // _CHUNK):
        lo, hi = ch * _CHUNK, min(n, (ch + 1) * _CHUNK)
        _tanh_bwd_chunk(dy[lo:hi], y[lo:hi], dx[lo:hi])


@numba.njit(**JIT_OPTIONS)
def _mul_chunk(a, b, out):
    for i in range(a.size):
        out[i] = a[i] * b[i]


@numba.njit(parallel=True, **JIT_OPTIONS)
def _mul_fwd(a, b, out):
    """``out = a * b`` elementwise (dropout forward and backward)."""
    n = a.size
    for ch in numba.prange((n + _CHUNK - 1) // _CHUNK):
        lo, hi = ch * _CHUNK, min(n, (ch + 1) * _CHUNK)
        _mul_chunk(a[lo:hi], b[lo:hi], out[lo:hi])


@numba.njit(**JIT_OPTIONS)
def _add_relu_chunk(a, b, y):
    for i in range(a.size):
        v = a[i] + b[i]
        y[i] = v if not (v <= 0) else 0


@numba.njit(parallel=True, **JIT_OPTIONS)
def _add_relu_fwd(a, b, y):
    """``y = relu(a + b)`` elementwise in one pass (a residual sum and its ReLU); ``y`` may be
    ``a`` or ``b``."""
    n = a.size
    for ch in numba.prange((n + _CHUNK - 1) // _CHUNK):
        lo, hi = ch * _CHUNK, min(n, (ch + 1) * _CHUNK)
        _add_relu_chunk(a[lo:hi], b[lo:hi], y[lo:hi])


#: the serial chunk function of each memory-bound elementwise kernel: below
#: ``_config.SERIAL_BELOW`` elements the caller runs it directly instead of waking the threads
#: (sigmoid and tanh, which compute an exponential per element, from fewer elements:
#: :func:`nbconv.functional.activation._sized`).
SERIAL_TWIN = {
    _relu_fwd: _relu_fwd_chunk,
    _relu_bwd: _relu_bwd_chunk,
    _leaky_relu_fwd: _leaky_relu_fwd_chunk,
    _leaky_relu_bwd: _leaky_relu_bwd_chunk,
    _sigmoid_bwd: _sigmoid_bwd_chunk,
    _tanh_bwd: _tanh_bwd_chunk,
    _mul_fwd: _mul_chunk,
    _add_relu_fwd: _add_relu_chunk,
}


# Softmax along the last axis (B == 1: a classifier's logits) and along an inner axis are two
# kernels, not two branches of one: each ``prange`` compiles as a function of its own, and a
# training step needs only the first.


@numba.njit(parallel=True, **JIT_OPTIONS)
def _softmax_fwd_rows(x, y, log):
    """Softmax (``log == 0``) or log-softmax (``log == 1``) of ``x`` (A, n, 1) along axis 1."""
    for a in numba.prange(x.shape[0]):
        _softmax_row(x, y, np.int64(a), log)


@numba.njit(**_vm.JIT_OPTIONS)
def _softmax_row(x, y, a, log):
    """Row ``a`` of :func:`_softmax_fwd_rows` (serial helper): the exponentials written to
    ``y`` first, in a loop of their own that LLVM vectorises (:mod:`._vmath`; with the sum
    in it, the loop would need reassociation, which the exponential must not have)."""
    n = x.shape[1]
    m = -np.inf
    for j in range(n):
        v = x[a, j, 0]
        if v > m:
            m = v
    if m == -np.inf:
        m = 0.0  # all -inf row: exp(-inf) = 0 below, 0/0 = NaN like NumPy/PyTorch
    mx = x.dtype.type(m)
    for j in range(n):
        y[a, j, 0] = _vm.exp_diff(x[a, j, 0], mx)
    s = _row_sum(y, a)
    if log:
        c = m + np.log(s)
        for j in range(n):
            y[a, j, 0] = x[a, j, 0] - c
    else:
        r = 1.0 / s
        for j in range(n):
            y[a, j, 0] *= r


@numba.njit(**JIT_OPTIONS)
def _row_sum(y, a):
    """``sum(y[a, :, 0])`` in float64 (serial helper, vectorised: reassociation allowed)."""
    s = 0.0
    for j in range(y.shape[1]):
        s += y[a, j, 0]
    return s


@numba.njit(parallel=True, **_vm.JIT_OPTIONS)
def _softmax_fwd_blocked(x, y, log):
    """:func:`_softmax_fwd_rows` of ``x`` (A, n, B) along axis 1, B > 1: blocks of
    ``_BLOCK`` columns vectorise the running maximum, the exponentials (:mod:`._vmath`) and the
    sums across columns."""
    A, n, B = x.shape
    nb = (B + _BLOCK - 1) // _BLOCK
    for t in numba.prange(A * nb):
        a = t // nb
        b0 = (t % nb) * _BLOCK
        b1 = min(B, b0 + _BLOCK)
        w = b1 - b0
        m = np.full(w, -np.inf, dtype=x.dtype)
        s = np.zeros(w)
        for j in range(n):
            for b in range(w):
                v = x[a, j, b0 + b]
                if v > m[b]:
                    m[b] = v
        for b in range(w):
            if m[b] == -np.inf:
                m[b] = 0.0
        for j in range(n):  # the exponentials once, kept in y (one use of _vm's inline)
            for b in range(w):
                e = _vm.exp_diff(x[a, j, b0 + b], m[b])
                y[a, j, b0 + b] = e
                s[b] += e
        if log:
            for b in range(w):
                s[b] = m[b] + np.log(s[b])
            for j in range(n):
                for b in range(w):
                    y[a, j, b0 + b] = x[a, j, b0 + b] - s[b]
        else:
            for b in range(w):
                s[b] = 1.0 / s[b]
            for j in range(n):
                for b in range(w):
                    y[a, j, b0 + b] *= s[b]


@numba.njit(parallel=True, **JIT_OPTIONS)
def _softmax_bwd_rows(dy, y, dx, log):
    """Gradient of softmax (``log == 0``: ``y * (dy - sum(dy*y))``) or log-softmax
    (``log == 1``: ``dy - exp(y) * sum(dy)``) along axis 1 of (A, n, 1) arrays."""
    for a in numba.prange(y.shape[0]):
        _softmax_bwd_row(dy, y, dx, np.int64(a), log)


@numba.njit(**_vm.JIT_OPTIONS)
def _softmax_bwd_row(dy, y, dx, a, log):
    """Row ``a`` of :func:`_softmax_bwd_rows` (serial helper; the log-softmax's exponentials
    vectorised, the sums in helpers that may reassociate)."""
    n = y.shape[1]
    if log:
        s = dx.dtype.type(_row_sum(dy, a))
        for j in range(n):
            dx[a, j, 0] = dy[a, j, 0] - _vm.exp(y[a, j, 0]) * s
    else:
        s = dx.dtype.type(_row_dot(dy, y, a))
        for j in range(n):
            dx[a, j, 0] = y[a, j, 0] * (dy[a, j, 0] - s)


@numba.njit(**JIT_OPTIONS)
def _row_dot(u, v, a):
    """``sum(u[a, :, 0] * v[a, :, 0])`` in float64 (serial helper, vectorised)."""
    s = 0.0
    for j in range(u.shape[1]):
        s += u[a, j, 0] * v[a, j, 0]
    return s


@numba.njit(parallel=True, **_vm.JIT_OPTIONS)
def _softmax_bwd_blocked(dy, y, dx, log):
    """:func:`_softmax_bwd_rows` of (A, n, B) arrays, B > 1, in blocks of ``_BLOCK``
    columns."""
    A, n, B = y.shape
    nb = (B + _BLOCK - 1) // _BLOCK
    for t in numba.prange(A * nb):
        a = t // nb
        b0 = (t % nb) * _BLOCK
        b1 = min(B, b0 + _BLOCK)
        w = b1 - b0
        s = np.zeros(w)
        if log:
            for j in range(n):
                for b in range(w):
                    s[b] += dy[a, j, b0 + b]
            for j in range(n):
                for b in range(w):
                    dx[a, j, b0 + b] = dy[a, j, b0 + b] - _vm.exp(y[a, j, b0 + b]) * s[b]
        else:
            for j in range(n):
                for b in range(w):
                    s[b] += dy[a, j, b0 + b] * y[a, j, b0 + b]
            for j in range(n):
                for b in range(w):
                    dx[a, j, b0 + b] = y[a, j, b0 + b] * (dy[a, j, b0 + b] - s[b])

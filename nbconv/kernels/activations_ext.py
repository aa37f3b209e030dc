"""Kernels of the modern activations: the ELU family (ELU, SELU, CELU), GELU (erf and tanh
forms), SiLU, Mish, Hardswish, Hardsigmoid, ReLU6, Softplus and PReLU, forward and backward.

As in :mod:`.activations`, the elementwise kernels take flattened C-contiguous arrays and are a
serial loop over one chunk (``_<op>_<pass>_chunk``, also the serial twin run below
``_config.SERIAL_BELOW`` elements) plus a parallel kernel handing it contiguous slices.  The
loops are branch-free (both sides of a kink are computed and one is selected) and call the
vectorisable functions of :mod:`._vmath`, so that LLVM turns each into SIMD code.  The scalar
hyperparameters arrive in the arrays' dtype (a float64 scalar would promote float32 arithmetic).

Where the gradient has a kink the rule of PyTorch's kernels is kept, comparison by comparison,
so that the value *at* the kink and for a NaN input is PyTorch's: ELU's ``x > 0`` branch,
Hardswish's ``x <= -3`` / ``x >= 3``, the open intervals of Hardsigmoid and ReLU6,
Softplus's ``x * beta > threshold``, PReLU's ``x > 0``.  For a NaN input PyTorch's vectorised
loops and its scalar remainder loop disagree (ELU's backward gives NaN in the first, ``dy`` in
the second; ReLU6's 0 and ``dy``); nbconv follows the vectorised loops, which compute all but
the last few elements of a tensor.
"""

from __future__ import annotations

import numba
import numpy as np

from .._config import JIT_OPTIONS as _REDUCE_OPTIONS
from . import _vmath as _vm
from ._vmath import JIT_OPTIONS

#: elements per parallel chunk of the elementwise kernels
_CHUNK = 4096

# Constants as float32: numba types a bare ``3`` as int64 and ``0.5`` as float64, either of
# which would promote float32 arithmetic to float64; these are exact in both dtypes.
#
# A zeroed gradient is written as ``copysign(0, g)`` rather than ``0``: LLVM turns
# ``dy[i] if c else 0`` into a masked load from memory, which AMD's Zen 4 runs slowly (ReLU6's
# backward pass over 4M float32 values: 1.2 ms against 0.9 with the copysign, PyTorch's 1.0);
# the sign of a zero is not kept anyway (``nsz``).
_ZERO, _HALF, _ONE, _TWO = np.float32(0.0), np.float32(0.5), np.float32(1.0), np.float32(2.0)
_THREE, _SIX = np.float32(3.0), np.float32(6.0)


# --------------------------------------------------------------------------- ELU, SELU, CELU
# y = x * scale for x > 0, alpha * scale * expm1(x * input_scale) otherwise (PyTorch's elu with
# negcoef = alpha * scale, poscoef = scale, negiptcoef = input_scale)


@numba.njit(**JIT_OPTIONS)
def _elu_fwd_chunk(x, y, negcoef, poscoef, negiptcoef):
    for i in range(x.size):
        v = x[i]
        neg = negcoef * _vm.expm1(v * negiptcoef)
        y[i] = neg if v <= _ZERO else v * poscoef


@numba.njit(parallel=True, **JIT_OPTIONS)
def _elu_fwd(x, y, negcoef, poscoef, negiptcoef):
    n = x.size
    for ch in numba.prange((n + _CHUNK - 1) // _CHUNK):
        lo, hi = ch * _CHUNK, min(n, (ch + 1) * _CHUNK)
        _elu_fwd_chunk(x[lo:hi], y[lo:hi], negcoef, poscoef, negiptcoef)


@numba.njit(**JIT_OPTIONS)
def _elu_bwd_chunk(dy, x, dx, negcoef, poscoef, negiptcoef):
    c = negcoef * negiptcoef
    for i in range(x.size):
        v = x[i]
        g = dy[i]
        neg = g * c * _vm.exp(v * negiptcoef)
        dx[i] = g * poscoef if v > _ZERO else neg


@numba.njit(parallel=True, **JIT_OPTIONS)
def _elu_bwd(dy, x, dx, negcoef, poscoef, negiptcoef):
    n = x.size
    for ch in numba.prange((n + _CHUNK - 1) // _CHUNK):
        lo, hi = ch * _CHUNK, min(n, (ch + 1) * _CHUNK)
        _elu_bwd_chunk(dy[lo:hi], x[lo:hi], dx[lo:hi], negcoef, poscoef, negiptcoef)


# --------------------------------------------------------------------------- GELU, erf form
# y = x Phi(x), dy/dx = Phi(x) + x phi(x) (Phi, phi: the standard normal CDF and density)


@numba.njit(**JIT_OPTIONS)
def _gelu_fwd_chunk(x, y):
    for i in range(x.size):
        v = x[i]
        y[i] = v * _vm.ndtr(v)


@numba.njit(parallel=True, **JIT_OPTIONS)
def _gelu_fwd(x, y):
    n = x.size
    for ch in numba.prange((n + _CHUNK - 1) // _CHUNK):
        lo, hi = ch * _CHUNK, min(n, (ch + 1) * _CHUNK)
        _gelu_fwd_chunk(x[lo:hi], y[lo:hi])


@numba.njit(**JIT_OPTIONS)
def _gelu_bwd_chunk(dy, x, dx):
    for i in range(x.size):
        v = x[i]
        cdf, pdf = _vm.ndtr_npdf(v)
        dx[i] = dy[i] * (cdf + v * pdf)


@numba.njit(parallel=True, **JIT_OPTIONS)
def _gelu_bwd(dy, x, dx):
    n = x.size
    for ch in numba.prange((n + _CHUNK - 1) // _CHUNK):
        lo, hi = ch * _CHUNK, min(n, (ch + 1) * _CHUNK)
        _gelu_bwd_chunk(dy[lo:hi], x[lo:hi], dx[lo:hi])


# --------------------------------------------------------------------------- GELU, tanh form
# y = x (1 + tanh(u)) / 2, u = k (x + 0.044715 x**3), k = sqrt(2 / pi) (``k`` and ``kappa`` in
# the arrays' dtype).  With d = 1 - |tanh(u)| (from the exponential, not by cancellation):
# 1 + tanh(u) = d for u < 0 and 2 - d otherwise, 1 - tanh(u)**2 = d (2 - d); PyTorch's
# ``1 + t`` and ``1 - t*t`` lose every digit in float32 once |t| rounds to 1.


@numba.njit(**JIT_OPTIONS)
def _gelu_tanh_fwd_chunk(x, y, k, kappa):
    for i in range(x.size):
        v = x[i]
        u = k * (v + kappa * (v * v * v))
        t, d = _vm.tanh_parts(u)
        y[i] = (v * _HALF) * (d if u < _ZERO else _TWO - d)


@numba.njit(parallel=True, **JIT_OPTIONS)
def _gelu_tanh_fwd(x, y, k, kappa):
    n = x.size
    for ch in numba.prange((n + _CHUNK - 1) // _CHUNK):
        lo, hi = ch * _CHUNK, min(n, (ch + 1) * _CHUNK)
        _gelu_tanh_fwd_chunk(x[lo:hi], y[lo:hi], k, kappa)


@numba.njit(**JIT_OPTIONS)
def _gelu_tanh_bwd_chunk(dy, x, dx, k, kappa):
    three_kappa = _THREE * kappa
    for i in range(x.size):
        v = x[i]
        v2 = v * v
        u = k * (v + kappa * (v2 * v))
        t, d = _vm.tanh_parts(u)
        one_plus_t = d if u < _ZERO else _TWO - d
        # PyTorch's (1 + t) / 2 + (x / 2) (1 - t**2) k (1 + 3 kappa x**2)
        right = (v * _HALF) * ((d * (_TWO - d)) * (k * (_ONE + three_kappa * v2)))
        dx[i] = dy[i] * (one_plus_t * _HALF + right)


@numba.njit(parallel=True, **JIT_OPTIONS)
def _gelu_tanh_bwd(dy, x, dx, k, kappa):
    n = x.size
    for ch in numba.prange((n + _CHUNK - 1) // _CHUNK):
        lo, hi = ch * _CHUNK, min(n, (ch + 1) * _CHUNK)
        _gelu_tanh_bwd_chunk(dy[lo:hi], x[lo:hi], dx[lo:hi], k, kappa)


# --------------------------------------------------------------------------- SiLU
# y = x sigmoid(x); sigmoid from e = exp(-|x|) in (0, 1], never an overflow


@numba.njit(**JIT_OPTIONS)
def _silu_fwd_chunk(x, y):
    for i in range(x.size):
        v = x[i]
        e = _vm.exp_neg(-np.abs(v))
        r = _ONE / (_ONE + e)
        s = r if v >= _ZERO else e * r
        y[i] = v * s


@numba.njit(parallel=True, **JIT_OPTIONS)
def _silu_fwd(x, y):
    n = x.size
    for ch in numba.prange((n + _CHUNK - 1) // _CHUNK):
        lo, hi = ch * _CHUNK, min(n, (ch + 1) * _CHUNK)
        _silu_fwd_chunk(x[lo:hi], y[lo:hi])


@numba.njit(**JIT_OPTIONS)
def _silu_bwd_chunk(dy, x, dx):
    for i in range(x.size):
        v = x[i]
        e = _vm.exp_neg(-np.abs(v))
        r = _ONE / (_ONE + e)
        s = r if v >= _ZERO else e * r  # sigmoid(x)
        c = e * r if v >= _ZERO else r  # 1 - sigmoid(x), without cancellation
        # PyTorch's dy * s * (1 + x (1 - s)): NaN at x = +-inf as there
        dx[i] = dy[i] * (s * (_ONE + v * c))


@numba.njit(parallel=True, **JIT_OPTIONS)
def _silu_bwd(dy, x, dx):
    n = x.size
    for ch in numba.prange((n + _CHUNK - 1) // _CHUNK):
        lo, hi = ch * _CHUNK, min(n, (ch + 1) * _CHUNK)
        _silu_bwd_chunk(dy[lo:hi], x[lo:hi], dx[lo:hi])


# --------------------------------------------------------------------------- Mish
# y = x tanh(softplus(x)).  With u = e**x: tanh(log(1 + u)) = n / (n + 2), n = u (u + 2), one
# exponential and no cancellation; 1 - tanh = 2 / (n + 2) (exactly 0 once n overflows).


@numba.njit(**JIT_OPTIONS)
def _mish_fwd_chunk(x, y):
    for i in range(x.size):
        v = x[i]
        u = _vm.exp(v)
        m = u * (u + _TWO)
        r = _ONE / (m + _TWO)
        t = _ONE - _TWO * r if v > _ZERO else m * r
        y[i] = v * t


@numba.njit(parallel=True, **JIT_OPTIONS)
def _mish_fwd(x, y):
    n = x.size
    for ch in numba.prange((n + _CHUNK - 1) // _CHUNK):
        lo, hi = ch * _CHUNK, min(n, (ch + 1) * _CHUNK)
        _mish_fwd_chunk(x[lo:hi], y[lo:hi])


@numba.njit(**JIT_OPTIONS)
def _mish_bwd_chunk(dy, x, dx):
    for i in range(x.size):
        v = x[i]
        u = _vm.exp(v)
        m = u * (u + _TWO)
        r = _ONE / (m + _TWO)
        omt = _TWO * r  # 1 - tanh(softplus(x))
        t = _ONE - omt if v > _ZERO else m * r
        w = _ONE / (_ONE + u)
        s = _ONE - w if v > _ZERO else u * w  # sigmoid(x)
        # PyTorch's dy * (t + x sigmoid(x) (1 - t**2)), 1 - t**2 = omt (2 - omt)
        dx[i] = dy[i] * (t + v * s * (omt * (_TWO - omt)))


@numba.njit(parallel=True, **JIT_OPTIONS)
def _mish_bwd(dy, x, dx):
    n = x.size
    for ch in numba.prange((n + _CHUNK - 1) // _CHUNK):
        lo, hi = ch * _CHUNK, min(n, (ch + 1) * _CHUNK)
        _mish_bwd_chunk(dy[lo:hi], x[lo:hi], dx[lo:hi])


# --------------------------------------------------------------------------- Hardswish
# y = x min(max(x + 3, 0), 6) / 6; gradient 0 for x <= -3, 1 for x >= 3, x / 3 + 1/2 between
# (and NaN for NaN)


@numba.njit(**JIT_OPTIONS)
def _hardswish_fwd_chunk(x, y):
    for i in range(x.size):
        v = x[i]
        c = v + _THREE
        c = _ZERO if c < _ZERO else c
        c = _SIX if c > _SIX else c
        y[i] = v * c / _SIX


@numba.njit(parallel=True, **JIT_OPTIONS)
def _hardswish_fwd(x, y):
    n = x.size
    for ch in numba.prange((n + _CHUNK - 1) // _CHUNK):
        lo, hi = ch * _CHUNK, min(n, (ch + 1) * _CHUNK)
        _hardswish_fwd_chunk(x[lo:hi], y[lo:hi])


@numba.njit(**JIT_OPTIONS)
def _hardswish_bwd_chunk(dy, x, dx):
    for i in range(x.size):
        v = x[i]
        g = dy[i]
        mid = g * (v / _THREE + _HALF)
        inner = g if v >= _THREE else mid
        dx[i] = _ZERO if v <= -_THREE else inner


@numba.njit(parallel=True, **JIT_OPTIONS)
def _hardswish_bwd(dy, x, dx):
    n = x.size
    for ch in numba.prange((n + _CHUNK - 1) // _CHUNK):
        lo, hi = ch * _CHUNK, min(n, (ch + 1) * _CHUNK)
        _hardswish_bwd_chunk(dy[lo:hi], x[lo:hi], dx[lo:hi])


# --------------------------------------------------------------------------- Hardsigmoid
# y = min(max(x + 3, 0), 6) / 6; gradient 1/6 on the open interval (-3, 3), 0 elsewhere and
# for NaN


@numba.njit(**JIT_OPTIONS)
def _hardsigmoid_fwd_chunk(x, y):
    for i in range(x.size):
        c = x[i] + _THREE
        c = _ZERO if c < _ZERO else c
        c = _SIX if c > _SIX else c
        y[i] = c / _SIX


@numba.njit(parallel=True, **JIT_OPTIONS)
def _hardsigmoid_fwd(x, y):
    n = x.size
    for ch in numba.prange((n + _CHUNK - 1) // _CHUNK):
        lo, hi = ch * _CHUNK, min(n, (ch + 1) * _CHUNK)
        _hardsigmoid_fwd_chunk(x[lo:hi], y[lo:hi])


@numba.njit(**JIT_OPTIONS)
def _hardsigmoid_bwd_chunk(dy, x, dx):
    for i in range(x.size):
        v = x[i]
        inside = dy[i] / _SIX
        dx[i] = inside if (v > -_THREE) & (v < _THREE) else np.copysign(_ZERO, inside)


@numba.njit(parallel=True, **JIT_OPTIONS)
def _hardsigmoid_bwd(dy, x, dx):
    n = x.size
    for ch in numba.prange((n + _CHUNK - 1) // _CHUNK):
        lo, hi = ch * _CHUNK, min(n, (ch + 1) * _CHUNK)
        _hardsigmoid_bwd_chunk(dy[lo:hi], x[lo:hi], dx[lo:hi])


# --------------------------------------------------------------------------- ReLU6
# y = min(max(x, 0), 6) keeping NaN; gradient dy strictly inside (0, 6), 0 elsewhere and for
# NaN


@numba.njit(**JIT_OPTIONS)
def _relu6_fwd_chunk(x, y):
    for i in range(x.size):
        v = x[i]
        v = _ZERO if v < _ZERO else v
        y[i] = _SIX if v > _SIX else v


@numba.njit(parallel=True, **JIT_OPTIONS)
def _relu6_fwd(x, y):
    n = x.size
    for ch in numba.prange((n + _CHUNK - 1) // _CHUNK):
        lo, hi = ch * _CHUNK, min(n, (ch + 1) * _CHUNK)
        _relu6_fwd_chunk(x[lo:hi], y[lo:hi])


@numba.njit(**JIT_OPTIONS)
def _relu6_bwd_chunk(dy, x, dx):
    for i in range(x.size):
        v = x[i]
        g = dy[i]
        dx[i] = g if (v > _ZERO) & (v < _SIX) else np.copysign(_ZERO, g)


@numba.njit(parallel=True, **JIT_OPTIONS)
def _relu6_bwd(dy, x, dx):
    n = x.size
    for ch in numba.prange((n + _CHUNK - 1) // _CHUNK):
        lo, hi = ch * _CHUNK, min(n, (ch + 1) * _CHUNK)
        _relu6_bwd_chunk(dy[lo:hi], x[lo:hi], dx[lo:hi])


# --------------------------------------------------------------------------- Softplus
# y = x where x * beta > threshold, else log(1 + exp(x * beta)) / beta, computed as
# (max(z, 0) + log1p(exp(-|z|))) / beta: no overflow for any threshold


@numba.njit(**JIT_OPTIONS)
def _softplus_fwd_chunk(x, y, beta, threshold):
    for i in range(x.size):
        v = x[i]
        z = v * beta
        pos = z if z > _ZERO else _ZERO
        soft = (pos + _vm.log1p_unit(_vm.exp_neg(-np.abs(z)))) / beta
        y[i] = v if z > threshold else soft


@numba.njit(parallel=True, **JIT_OPTIONS)
def _softplus_fwd(x, y, beta, threshold):
    n = x.size
    for ch in numba.prange((n + _CHUNK - 1) // _CHUNK):
        lo, hi = ch * _CHUNK, min(n, (ch + 1) * _CHUNK)
        _softplus_fwd_chunk(x[lo:hi], y[lo:hi], beta, threshold)


@numba.njit(**JIT_OPTIONS)
def _softplus_bwd_chunk(dy, x, dx, beta, threshold):
    for i in range(x.size):
        g = dy[i]
        z = x[i] * beta
        e = _vm.exp_neg(-np.abs(z))
        r = _ONE / (_ONE + e)
        s = r if z >= _ZERO else e * r  # sigmoid(z)
        dx[i] = g if z > threshold else g * s


@numba.njit(parallel=True, **JIT_OPTIONS)
def _softplus_bwd(dy, x, dx, beta, threshold):
    n = x.size
    for ch in numba.prange((n + _CHUNK - 1) // _CHUNK):
        lo, hi = ch * _CHUNK, min(n, (ch + 1) * _CHUNK)
        _softplus_bwd_chunk(dy[lo:hi], x[lo:hi], dx[lo:hi], beta, threshold)


#: the serial chunk function of each elementwise kernel (see ``activations.SERIAL_TWIN``)
SERIAL_TWIN = {
    _elu_fwd: _elu_fwd_chunk, _elu_bwd: _elu_bwd_chunk,
    _gelu_fwd: _gelu_fwd_chunk, _gelu_bwd: _gelu_bwd_chunk,
    _gelu_tanh_fwd: _gelu_tanh_fwd_chunk, _gelu_tanh_bwd: _gelu_tanh_bwd_chunk,
    _silu_fwd: _silu_fwd_chunk, _silu_bwd: _silu_bwd_chunk,
    _mish_fwd: _mish_fwd_chunk, _mish_bwd: _mish_bwd_chunk,
    _hardswish_fwd: _hardswish_fwd_chunk, _hardswish_bwd: _hardswish_bwd_chunk,
    _hardsigmoid_fwd: _hardsigmoid_fwd_chunk, _hardsigmoid_bwd: _hardsigmoid_bwd_chunk,
    _relu6_fwd: _relu6_fwd_chunk, _relu6_bwd: _relu6_bwd_chunk,
    _softplus_fwd: _softplus_fwd_chunk, _softplus_bwd: _softplus_bwd_chunk,
}


# --------------------------------------------------------------------------- PReLU
# x seen as (A, C, S): C slopes along the middle axis (C == 1: one slope for everything).
# y = x for x > 0, w[c] x otherwise; dx = dy or w[c] dy; dw[c] = sum of x dy where x <= 0 (and
# where x is NaN: PyTorch's x > 0 test).  The backward writes one partial sum of dw per row
# (a, c), float64, which the caller adds up: no two iterations write the same element.


@numba.njit(**_REDUCE_OPTIONS)
def _prelu_fwd_rows(x, w, y, r0, r1):
    C, S = x.shape[1], x.shape[2]
    for r in range(r0, r1):
        a, c = r // C, r % C
        slope = w[c]
        for s in range(S):
            v = x[a, c, s]
            y[a, c, s] = v if v > 0 else v * slope


@numba.njit(parallel=True, **_REDUCE_OPTIONS)
def _prelu_fwd(x, w, y):
    rows = x.shape[0] * x.shape[1]
    step = max(1, _CHUNK // max(1, x.shape[2]))
    for b in numba.prange((rows + step - 1) // step):
        _prelu_fwd_rows(x, w, y, b * step, min(rows, (b + 1) * step))


def _prelu_fwd_serial(x, w, y):
    _prelu_fwd_rows(x, w, y, 0, x.shape[0] * x.shape[1])


@numba.njit(**_REDUCE_OPTIONS)
def _prelu_bwd_rows(dy, x, w, dx, partial, r0, r1):
    C, S = x.shape[1], x.shape[2]
    for r in range(r0, r1):
        a, c = r // C, r % C
        slope = w[c]
        acc = 0.0
        for s in range(S):
            v = x[a, c, s]
            g = dy[a, c, s]
            pos = v > 0
            dx[a, c, s] = g if pos else g * slope
            acc += 0.0 if pos else v * g
        partial[r] = acc


@numba.njit(parallel=True, **_REDUCE_OPTIONS)
def _prelu_bwd(dy, x, w, dx, partial):
    rows = x.shape[0] * x.shape[1]
    step = max(1, _CHUNK // max(1, x.shape[2]))
    for b in numba.prange((rows + step - 1) // step):
        _prelu_bwd_rows(dy, x, w, dx, partial, b * step, min(rows, (b + 1) * step))


def _prelu_bwd_serial(dy, x, w, dx, partial):
    _prelu_bwd_rows(dy, x, w, dx, partial, 0, x.shape[0] * x.shape[1])


SERIAL_TWIN.update({_prelu_fwd: _prelu_fwd_serial, _prelu_bwd: _prelu_bwd_serial})

"""Elementary functions that LLVM vectorises, for numba's elementwise loops.

numba calls the C library for ``np.exp``, ``math.erf`` and the like, one element at a time:
without Intel's SVML (which numba uses only where ``icc_rt`` is installed) a loop holding one of
them is never vectorised, and runs several times slower than PyTorch's vectorised kernels.  The
float32 versions here are plain arithmetic (a range reduction, a polynomial, an exponent built
from integer bits), so a loop calling them becomes SIMD code; the float64 versions call the C
library (exact to an ulp: float64 is the precision of the gradient checks, and PyTorch's
float64 kernels agree with it to rounding).

Each function below is called from ``@njit`` code with a float32 or float64 scalar and returns
the same type.  Accuracy of the float32 versions against float64 over dense grids (checked by
``tests/test_activations_ext.py``): ``exp`` and ``expm1`` within 2 ulp, ``tanh`` and ``npdf``
within 3, ``log1p_unit`` within 4, ``ndtr`` within 7 ulp over the whole line (its lower tail
comes from the Mills ratio, where PyTorch's float32 ``1 + erf(x)`` has no correct digit left
below x = -6).  NaN propagates; ``exp(-inf) == 0``, ``exp(inf) == inf``, overflow gives inf and
underflow 0 (or a subnormal), as in the C library; the sign of a zero result is not kept
(``nsz``).

The polynomial coefficients were fitted here by least squares on Chebyshev nodes (in float64,
then rounded to float32) to the functions named in each comment.

The functions are compiled with :data:`FASTMATH` (``_config.FASTMATH`` without ``reassoc``):
reassociation would fold the two-constant range reduction ``(x - n*hi) - n*lo`` into one
product and lose the low bits it exists to keep.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic, overload

from .._config import CACHE
from .._config import FASTMATH as _FASTMATH

__all__ = ["FASTMATH", "JIT_OPTIONS", "exp", "exp_diff", "exp_neg", "expm1", "tanh",
           "tanh_parts", "log1p_unit", "ndtr", "npdf", "ndtr_npdf"]

#: fast-math flags of the functions here and of the kernels that call them
FASTMATH: frozenset = frozenset(_FASTMATH - {"reassoc"})
#: ``@njit`` keyword arguments for elementwise kernels built on these functions: numba's default
#: error model checks every division for a zero divisor, a branch that stops vectorisation (a
#: division by zero gives inf or NaN here, as in NumPy)
JIT_OPTIONS: dict = {"cache": CACHE, "fastmath": set(FASTMATH), "nogil": True,
                     "error_model": "numpy"}

_f32 = np.float32
#: the typed implementations (LLVM inlines them into the loops that call them)
_inner = numba.njit(fastmath=set(FASTMATH), error_model="numpy", inline="always")


# --------------------------------------------------------------------------- bit helpers


@intrinsic
def _ldexp(typingctx, p, nf):
    """``p * 2**nf`` for an integral float ``nf`` in [-252, 254], as two exact power-of-two
    factors (each half of ``nf`` is a normal exponent), so that subnormal results and overflow
    to inf come out of the multiplications as the C library's do."""
    if p not in (types.float32, types.float64) or nf != p:
        return None
    sig = p(p, nf)

    def codegen(context, builder, signature, args):
        pv, nv = args
        single = signature.args[0] == types.float32
        ity = ir.IntType(32 if single else 64)
        bias, shift = (127, 23) if single else (1023, 52)
        n = builder.fptosi(nv, ity)
        n1 = builder.ashr(n, ir.Constant(ity, 1))
        n2 = builder.sub(n, n1)

        def power(k):
            bits = builder.shl(builder.add(k, ir.Constant(ity, bias)), ir.Constant(ity, shift))
            return builder.bitcast(bits, pv.type)

        return builder.fmul(builder.fmul(pv, power(n1)), power(n2))

    return sig, codegen


@intrinsic
def _scale2(typingctx, p, nf):
    """``p * 2**nf`` for an integral float ``nf`` that is a normal exponent (one product)."""
    if p not in (types.float32, types.float64) or nf != p:
        return None
    sig = p(p, nf)

    def codegen(context, builder, signature, args):
        pv, nv = args
        single = signature.args[0] == types.float32
        ity = ir.IntType(32 if single else 64)
        bias, shift = (127, 23) if single else (1023, 52)
        bits = builder.shl(builder.add(builder.fptosi(nv, ity), ir.Constant(ity, bias)),
                           ir.Constant(ity, shift))
        return builder.fmul(pv, builder.bitcast(bits, pv.type))

    return sig, codegen


@intrinsic
def _head12(typingctx, a):
    """float32 ``a`` with the low 12 of its 24 significand bits cleared: its square is exact."""
    if a != types.float32:
        return None
    sig = a(a)

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        bits = builder.and_(builder.bitcast(args[0], i32), ir.Constant(i32, 0xFFFFF000))
        return builder.bitcast(bits, args[0].type)

    return sig, codegen


# --------------------------------------------------------------------------- float32 kernels

_LOG2E = _f32(1.4426950408889634)
#: ln 2 split in two: ``n * _LN2_HI`` is exact for |n| < 2**8 (the high part has 16 bits)
_LN2_HI = _f32(0.693145751953125)
_LN2_LO = _f32(1.4286068203094173e-06)
_HALF = _f32(0.5)
_ONE = _f32(1.0)
_TWO = _f32(2.0)
#: below it exp underflows to 0 in float32 (2**-150 rounds to 0), above it overflows to inf
_EXP_LO = _f32(-104.0)
_EXP_HI = _f32(89.0)

# exp(r) on [-ln2/2, ln2/2], degree 7 (relative error < 1e-7 in float32 arithmetic)
_E0, _E1, _E2, _E3 = _f32(1.0), _f32(1.0), _f32(0.5), _f32(0.16666666)
_E4, _E5, _E6, _E7 = _f32(0.041666225), _f32(0.008333579), _f32(0.0013948134), _f32(0.00019766919)

# (expm1(r) - r) / r**2 on [-ln2/2, ln2/2], degree 5
_M0, _M1, _M2 = _f32(0.5), _f32(0.16666667), _f32(0.041666467)
_M3, _M4, _M5 = _f32(0.008333298), _f32(0.0013933644), _f32(0.00019899276)

# (atanh(sqrt(v)) / sqrt(v) - 1) / v on v in [0, 1/9], degree 4
_L0, _L1, _L2 = _f32(0.33333334), _f32(0.19999851), _f32(0.14296292)
_L3, _L4 = _f32(0.1085166), _f32(0.11619515)

# The Mills ratio m(u) = Phi(-u) / phi(u) (Phi, phi: the standard normal CDF and density) as
# t P(t - tm), t = 1 / (1 + 0.35 u), on u in [0, 17], P of degree 8 (relative error 3e-7 in
# float32 arithmetic): then Phi(-u) = phi(u) m(u), and the density is had along the way
_MILLS_P, _MILLS_TM = _f32(0.35), _f32(0.5719424486160278)
_Q0, _Q1, _Q2 = _f32(0.7004022598266602), _f32(0.9651880860328674), _f32(0.7503259181976318)
_Q3, _Q4, _Q5 = _f32(0.13985784351825714), _f32(-0.24613599479198456), _f32(-0.08702144026756287)
_Q6, _Q7, _Q8 = _f32(0.13450893759727478), _f32(0.026700496673583984), _f32(-0.07259713113307953)
#: Phi(-x) and the density are 0 in float32 beyond it (a clamp that keeps inf away from the
#: bit tricks)
_NDTR_TOP = _f32(17.0)
#: the smallest normal float32 is exp(-87.34); the density's exponential stops there
_EXP_NORMAL = _f32(-87.33)
_INV_SQRT_2PI = _f32(0.3989422804014327)


@_inner
def _exp2_f32(hi, lo):
    """``exp(hi + lo)`` for a float32 pair with ``|lo|`` at most a few units (the second part
    joins after the range reduction, so the sum is never rounded)."""
    x = hi + lo
    xc = _EXP_LO if x < _EXP_LO else x
    xc = _EXP_HI if xc > _EXP_HI else xc
    xc = xc if xc == xc else _EXP_LO  # a NaN must not reach the float->int conversion
    nf = np.floor(xc * _LOG2E + _HALF)
    r = ((hi - nf * _LN2_HI) + lo) - nf * _LN2_LO
    r = r if x > _EXP_LO else _f32(0.0)  # far below: exactly 0 (and no inf - inf for -inf)
    p = ((((((_E7 * r + _E6) * r + _E5) * r + _E4) * r + _E3) * r + _E2) * r + _E1) * r + _E0
    y = _ldexp(p, nf)
    return y if x == x else x


@_inner
def _exp_f32(x):
    return _exp2_f32(x, _f32(0.0))


@_inner
def _expm1_exp_f32(x):
    """``(expm1(x), exp(x))`` from one range reduction."""
    xc = _EXP_LO if x < _EXP_LO else x
    xc = _EXP_HI if xc > _EXP_HI else xc
    xc = xc if xc == xc else _f32(0.0)
    nf = np.floor(xc * _LOG2E + _HALF)
    r = (xc - nf * _LN2_HI) - nf * _LN2_LO
    em = r + r * r * (((((_M5 * r + _M4) * r + _M3) * r + _M2) * r + _M1) * r + _M0)
    # 2**n * (em + 1) - 1: for small n as s*em + (s - 1), exact around 0 (n == 0 gives em);
    # for large n without forming 2**n alone (2**128 overflows where the result does not)
    s = _ldexp(_ONE, nf)
    e = _ldexp(em + _ONE, nf)
    small = s * em + (s - _ONE)
    y = small if nf < _f32(100.0) else e - _ONE
    return (y if x == x else x), (e if x == x else x)


@_inner
def _expm1_f32(x):
    return _expm1_exp_f32(x)[0]


@_inner
def _tanh_parts_f32(x):
    a = np.abs(x)
    # from e**(-2|x|) in (0, 1]: no overflow for any x, and 1 - |tanh| without cancellation
    em1, e = _expm1_exp_f32(-_TWO * a)
    r = _ONE / (_ONE + e)
    t = -em1 * r
    return (t if x >= _f32(0.0) else -t), _TWO * e * r  # (NaN takes -t and stays NaN)


@_inner
def _tanh_f32(x):
    return _tanh_parts_f32(x)[0]


@_inner
def _log1p_unit_f32(w):
    s = w / (_TWO + w)  # log1p(w) = 2 atanh(s), s in [0, 1/3]
    v = s * s
    return _TWO * s * (_ONE + v * ((((_L4 * v + _L3) * v + _L2) * v + _L1) * v + _L0))


@_inner
def _exp_neg2_f32(hi, lo):
    """``exp(hi + lo)`` for a sum in [-inf, 0] (NaN gives 0: the callers propagate it by other
    means), 0 below the smallest normal number: a lighter :func:`_exp2_f32` for the normal
    density."""
    x = hi + lo
    inside = x > _EXP_NORMAL
    xc = x if inside else _EXP_NORMAL
    nf = np.floor(xc * _LOG2E + _HALF)
    r = ((hi - nf * _LN2_HI) + lo) - nf * _LN2_LO
    p = ((((((_E7 * r + _E6) * r + _E5) * r + _E4) * r + _E3) * r + _E2) * r + _E1) * r + _E0
    y = _scale2(p, nf)
    return y if inside else _f32(0.0)


@_inner
def _exp_neg_f32(x):
    y = _exp_neg2_f32(x, _f32(0.0))
    return y if x == x else x


@_inner
def _normal_f32(x):
    """``(Phi(-|x|), phi(x))``: the density from ``exp(-x**2 / 2)``, with ``x**2`` split into
    an exact square and a small rest so that the exponent is never rounded, and the tail
    through the Mills ratio.  NaN gives NaN for the first and 0 for the second."""
    u = np.abs(x)
    u = _NDTR_TOP if u > _NDTR_TOP else u
    t = _ONE / (_ONE + _MILLS_P * u)
    s = t - _MILLS_TM
    q = (((((((_Q8 * s + _Q7) * s + _Q6) * s + _Q5) * s + _Q4) * s + _Q3) * s + _Q2) * s
         + _Q1) * s + _Q0
    uh = _head12(u)
    e = _exp_neg2_f32(-_HALF * (uh * uh), -_HALF * ((u - uh) * (u + uh)))
    pdf = _INV_SQRT_2PI * e
    return pdf * (t * q), pdf


@_inner
def _ndtr_f32(x):
    lower, _ = _normal_f32(x)
    return lower if x < _f32(0.0) else _ONE - lower


@_inner
def _npdf_f32(x):
    _, pdf = _normal_f32(x)
    return pdf if x == x else x


@_inner
def _ndtr_npdf_f32(x):
    lower, pdf = _normal_f32(x)
    return (lower if x < _f32(0.0) else _ONE - lower), pdf


@_inner
def _exp_diff_f32(x, m):
    """``exp(x - m)`` with the difference kept exact as a pair (Knuth's two-sum): rounding
    ``x - m`` to float32 first would cost ``|x - m|`` units of relative accuracy."""
    hi = x - m
    back = hi - x
    lo = (x - (hi - back)) + (-m - back)
    # an infinite or NaN difference has no rounding error (and inf - inf would make one NaN)
    return _exp2_f32(hi, lo if hi - hi == _f32(0.0) else _f32(0.0))


# --------------------------------------------------------------------------- float64 kernels

_SQRT1_2_64 = 0.7071067811865476
_INV_SQRT_2PI_64 = 0.3989422804014327


@_inner
def _exp_f64(x):
    return math.exp(x)


@_inner
def _exp_neg_f64(x):
    return math.exp(x)


@_inner
def _expm1_f64(x):
    return math.expm1(x)


@_inner
def _tanh_f64(x):
    return math.tanh(x)


@_inner
def _tanh_parts_f64(x):
    e = math.exp(-2.0 * abs(x))
    return math.tanh(x), 2.0 * e / (1.0 + e)


@_inner
def _log1p_unit_f64(w):
    return math.log1p(w)


@_inner
def _ndtr_f64(x):
    return 0.5 * math.erfc(-x * _SQRT1_2_64)


@_inner
def _npdf_f64(x):
    return _INV_SQRT_2PI_64 * math.exp(-0.5 * x * x)


@_inner
def _ndtr_npdf_f64(x):
    return _ndtr_f64(x), _npdf_f64(x)


# --------------------------------------------------------------------------- the public names


def exp(x):
    """``e**x``."""
    return math.exp(x)


def exp_neg(x):
    """``e**x`` for ``x <= 0`` (positive ``x`` gives garbage), lighter than :func:`exp`: 0
    where the result would be subnormal (``x < -87.3`` in float32)."""
    return math.exp(x)


def expm1(x):
    """``e**x - 1``, exact near 0."""
    return math.expm1(x)


def tanh(x):
    """Hyperbolic tangent."""
    return math.tanh(x)


def tanh_parts(x):
    """``(tanh(x), 1 - |tanh(x)|)``, the second accurate where ``tanh`` rounds to +-1 (the
    derivative ``1 - tanh**2`` is ``d (2 - d)`` with ``d`` the second)."""
    t = math.tanh(x)
    return t, 1.0 - abs(t)


def log1p_unit(w):
    """``log(1 + w)`` for ``w`` in [0, 1] (NaN propagates)."""
    return math.log1p(w)


def ndtr(x):
    """The standard normal CDF ``Phi(x) = (1 + erf(x / sqrt 2)) / 2``, computed as
    ``Phi(-|x|)`` directly (relative accuracy in the lower tail, where ``1 + erf`` cancels)."""
    return 0.5 * math.erfc(-x * _SQRT1_2_64)


def npdf(x):
    """The standard normal density ``exp(-x**2 / 2) / sqrt(2 pi)``."""
    return _INV_SQRT_2PI_64 * math.exp(-0.5 * x * x)


def ndtr_npdf(x):
    """``(ndtr(x), npdf(x))``, sharing the exponential (GELU's gradient needs both)."""
    return ndtr(x), npdf(x)


def exp_diff(x, m):
    """``e**(x - m)`` without rounding ``x - m`` first (float32: as an exact pair; a softmax's
    ``exp(x - max)``); both arguments of one float type."""
    return math.exp(x - m)


@overload(exp_diff, jit_options={"fastmath": set(FASTMATH), "error_model": "numpy"},
          inline="always")
def _exp_diff_typed(x, m):
    if x == m == types.float32:
        return lambda x, m: _exp_diff_f32(x, m)
    if x == m == types.float64:
        return lambda x, m: math.exp(x - m)
    return None


def _register(public, f32, f64):
    @overload(public, jit_options={"fastmath": set(FASTMATH), "error_model": "numpy"},
              inline="always")
    def _typed(x):
        impl = {types.float32: f32, types.float64: f64}.get(x)
        if impl is None:
            return None
        return lambda x: impl(x)


for _public, _single, _double in (
    (exp, _exp_f32, _exp_f64),
    (exp_neg, _exp_neg_f32, _exp_neg_f64),
    (expm1, _expm1_f32, _expm1_f64),
    (tanh, _tanh_f32, _tanh_f64),
    (tanh_parts, _tanh_parts_f32, _tanh_parts_f64),
    (log1p_unit, _log1p_unit_f32, _log1p_unit_f64),
    (ndtr, _ndtr_f32, _ndtr_f64),
    (npdf, _npdf_f32, _npdf_f64),
    (ndtr_npdf, _ndtr_npdf_f32, _ndtr_npdf_f64),
):
    _register(_public, _single, _double)

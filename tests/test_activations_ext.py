"""Issue 27's activations: PReLU, ELU, SELU, CELU, GELU (erf and tanh), SiLU, Mish, Hardswish,
Hardsigmoid, ReLU6, Softplus -- functional ops, their backward passes, the layers, recording,
model files, ONNX.

Checked against the independent references of ``reference_activation_ext.py`` (NumPy/SciPy),
against float64 finite differences (``nbconv.testing.gradcheck``) and, where PyTorch is
installed, against PyTorch's autograd (float64 to 1e-10 relative, float32 to float32 rounding).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import reference_activation_ext as R
from hypothesis import given
from hypothesis import strategies as st

import nbconv as nc
from nbconv import nn
from nbconv.testing import gradcheck

#: case -> (op name, hyperparameters); nc.<op>, nc.<op>_backward, R.<op>_ref, R.<op>_grad_ref
#: and torch.nn.functional.<op> take the same keyword arguments
CASES = {
    "elu": ("elu", {}),
    "elu_alpha": ("elu", {"alpha": 0.3}),
    "elu_negative_alpha": ("elu", {"alpha": -1.5}),
    "selu": ("selu", {}),
    "celu": ("celu", {}),
    "celu_alpha": ("celu", {"alpha": 2.5}),
    # (x / alpha must stay below 88 on the tested range: PyTorch's expm1 overflows float32 there
    # before the product with alpha, and so does nbconv's)
    "celu_negative_alpha": ("celu", {"alpha": -2.0}),
    "gelu": ("gelu", {}),
    "gelu_tanh": ("gelu", {"approximate": "tanh"}),
    "silu": ("silu", {}),
    "mish": ("mish", {}),
    "hardswish": ("hardswish", {}),
    "hardsigmoid": ("hardsigmoid", {}),
    "relu6": ("relu6", {}),
    "softplus": ("softplus", {}),
    "softplus_beta": ("softplus", {"beta": 2.0, "threshold": 5.0}),
    "softplus_negative_beta": ("softplus", {"beta": -0.7, "threshold": 3.0}),
    "softplus_no_threshold": ("softplus", {"beta": 0.5, "threshold": math.inf}),
}
#: the points where a gradient has a kink or a branch changes
KINKS = np.array([-3.0, -0.0, 0.0, 3.0, 6.0, 5.0 / 2.0, 20.0, -20.0, 10.0, -6.0])

LAYERS = {
    "ELU": (lambda: nn.ELU(alpha=0.7), "elu", {"alpha": 0.7}),
    "SELU": (lambda: nn.SELU(), "selu", {}),
    # an alpha exact in float32: PyTorch's CELU gradient divides by alpha rounded to float32
    # (1.0 / alpha.toFloat() in its derivatives.yaml), 4e-8 relative off for alpha = 1.3
    "CELU": (lambda: nn.CELU(alpha=1.25), "celu", {"alpha": 1.25}),
    "GELU": (lambda: nn.GELU(), "gelu", {}),
    "GELU_tanh": (lambda: nn.GELU(approximate="tanh"), "gelu", {"approximate": "tanh"}),
    "SiLU": (lambda: nn.SiLU(), "silu", {}),
    "Mish": (lambda: nn.Mish(), "mish", {}),
    "Hardswish": (lambda: nn.Hardswish(), "hardswish", {}),
    "Hardsigmoid": (lambda: nn.Hardsigmoid(), "hardsigmoid", {}),
    "ReLU6": (lambda: nn.ReLU6(), "relu6", {}),
    "Softplus": (lambda: nn.Softplus(beta=1.5, threshold=4.0), "softplus",
                 {"beta": 1.5, "threshold": 4.0}),
}


def _ops(case):
    name, kw = CASES[case]
    return (getattr(nc, name), getattr(nc, f"{name}_backward"), getattr(R, f"{name}_ref"),
            getattr(R, f"{name}_grad_ref"), name, kw)


def _tol(dtype):
    # float32: the transcendental functions are within ~7 float32 ulp (nbconv.kernels._vmath)
    return dict(rtol=1e-10, atol=1e-12) if dtype == np.float64 else dict(rtol=2e-6, atol=1e-6)


def _sample(rng, shape, dtype, scale=4.0):
    """Normal values, a third of them rounded to integers and halves (so -3, 0, 3, 6 occur)."""
    x = scale * rng.standard_normal(shape)
    snap = rng.random(shape) < 0.35
    x = np.where(snap, np.round(2 * x) / 2, x)
    return x.astype(dtype)


def _assert_close(actual, expected, dtype, what):
    # the exact value rounded to the output's dtype (float32 overflows to inf where float64
    # does not)
    with np.errstate(over="ignore"):
        expected = np.asarray(expected, dtype).astype(np.float64)
    assert actual.dtype == dtype, f"{what}: dtype {actual.dtype}, expected {dtype}"
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    np.testing.assert_allclose(actual.astype(np.float64), expected, err_msg=what,
                               **_tol(dtype))


# --------------------------------------------------------------------------- vs references


@pytest.mark.parametrize("case", sorted(CASES))
@given(shape=st.lists(st.integers(0, 6), min_size=0, max_size=4).map(tuple),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**32 - 1))
def test_forward_and_gradient_match_the_references(case, shape, dtype, seed):
    fwd, bwd, ref, grad_ref, _, kw = _ops(case)
    rng = np.random.default_rng(seed)
    x = _sample(rng, shape, dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    dy_before = dy.copy()
    _assert_close(fwd(x, **kw), ref(x, **kw), dtype, f"{case} forward")
    _assert_close(bwd(dy, x, **kw), grad_ref(dy, x, **kw), dtype, f"{case} backward")
    np.testing.assert_array_equal(dy, dy_before)  # dy is never modified


@given(op=st.sampled_from(["elu", "celu", "softplus", "gelu"]),
       a=st.floats(-3, 3).filter(lambda v: abs(v) > 0.05), t=st.floats(-5, 30),
       approx=st.sampled_from(["none", "tanh"]), seed=st.integers(0, 2**32 - 1),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_hyperparameter_sweep_matches_the_references(op, a, t, approx, seed, dtype):
    kw = {"elu": {"alpha": a}, "celu": {"alpha": a}, "softplus": {"beta": a, "threshold": t},
          "gelu": {"approximate": approx}}[op]
    rng = np.random.default_rng(seed)
    x = _sample(rng, (3, 17), dtype)
    if op == "softplus":  # off the linear region's edge, where float32 rounding decides
        x = np.where(np.abs(x * a - t) < 1e-3 * max(1.0, abs(t)), x + 0.01, x).astype(dtype)
        kw["threshold"] = float(dtype(t))  # (PyTorch and nbconv compare in the input's dtype)
    if op == "celu" and a < 0:
        # exp(x / alpha) grows without bound for x < 0: its float32 argument's rounding
        # (|x / alpha| float32 ulps, PyTorch's too) must stay within the tolerance
        x = np.maximum(x, -10 * abs(a)).astype(dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    fwd, bwd = getattr(nc, op), getattr(nc, f"{op}_backward")
    _assert_close(fwd(x, **kw), getattr(R, f"{op}_ref")(x, **kw), dtype, f"{op} {kw}")
    _assert_close(bwd(dy, x, **kw), getattr(R, f"{op}_grad_ref")(dy, x, **kw), dtype,
                  f"{op}_backward {kw}")


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kinks_and_wide_ranges_match_the_references(case, dtype):
    """Every kink exactly, and arguments out to +-60 (the tails of the exponentials)."""
    fwd, bwd, ref, grad_ref, _, kw = _ops(case)
    x = np.concatenate([KINKS, np.linspace(-60, 60, 2401), np.linspace(-4, 4, 801)])
    x = x.astype(dtype)
    dy = np.linspace(-2, 2, x.size).astype(dtype)
    _assert_close(fwd(x, **kw), ref(x, **kw), dtype, f"{case} forward")
    _assert_close(bwd(dy, x, **kw), grad_ref(dy, x, **kw), dtype, f"{case} backward")


@pytest.mark.parametrize("case", sorted(CASES))
def test_parallel_kernels_match_the_references(case, monkeypatch):
    """Arrays above the serial threshold run the parallel kernels (several chunks, one
    partial chunk at the end)."""
    monkeypatch.setattr(nc._config, "SERIAL_BELOW", 0)
    fwd, bwd, ref, grad_ref, _, kw = _ops(case)
    rng = np.random.default_rng(3)
    for dtype in (np.float32, np.float64):
        x = _sample(rng, (3, 5, 4099), dtype)
        dy = rng.standard_normal(x.shape).astype(dtype)
        _assert_close(fwd(x, **kw), ref(x, **kw), dtype, f"{case} forward")
        _assert_close(bwd(dy, x, **kw), grad_ref(dy, x, **kw), dtype, f"{case} backward")


@pytest.mark.parametrize("case", sorted(CASES))
def test_gradcheck_against_finite_differences(case):
    fwd, bwd, _, _, name, kw = _ops(case)
    rng = np.random.default_rng(11)
    x = 3 * rng.standard_normal((2, 3, 5, 4))
    # keep the finite differences off the kinks (+-3, 0, 6, the softplus threshold)
    kinks = [-3.0, 0.0, 3.0, 6.0]
    if name == "softplus":
        kinks.append(kw.get("threshold", 20.0) / kw.get("beta", 1.0))
    for k in kinks:
        x = np.where(np.abs(x - k) < 1e-3, x + 0.01, x)
    assert gradcheck(lambda a: fwd(a, **kw), x, lambda dy, a: bwd(dy, a, **kw))


def test_layout_and_integer_inputs():
    rng = np.random.default_rng(5)
    x = _sample(rng, (4, 6, 5), np.float64)
    for case in ("gelu", "mish", "softplus_beta", "hardswish"):
        fwd, bwd, ref, grad_ref, _, kw = _ops(case)
        for view in (np.asfortranarray(x), x[::-1, ::2], x.transpose(2, 0, 1)):
            np.testing.assert_allclose(fwd(view, **kw), ref(view, **kw), rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(bwd(view, view, **kw), grad_ref(view, view, **kw),
                                       rtol=1e-10, atol=1e-12)
        ro = x.copy()
        ro.flags.writeable = False  # read-only input (issue 27's papercut)
        np.testing.assert_allclose(fwd(ro, **kw), ref(ro, **kw), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(bwd(ro, ro, **kw), grad_ref(ro, ro, **kw), rtol=1e-10,
                                   atol=1e-12)
        ints = np.arange(-5, 6)
        y = fwd(ints, **kw)
        assert y.dtype == np.float32
        np.testing.assert_allclose(y, ref(ints, **kw), rtol=2e-6, atol=1e-6)
        # dy is cast to x's dtype
        assert bwd(np.ones(11, np.float64), ints.astype(np.float32), **kw).dtype == np.float32
        with pytest.raises(TypeError, match="float16"):
            fwd(x.astype(np.float16), **kw)
        with pytest.raises(TypeError, match="complex"):
            fwd(x.astype(np.complex64), **kw)


@pytest.mark.parametrize("case", sorted(CASES))
def test_empty_and_zero_dimensional_inputs(case):
    fwd, bwd, ref, grad_ref, _, kw = _ops(case)
    for shape in ((0, 3, 4, 4), (2, 0), ()):
        x = np.full(shape, -0.5)
        assert fwd(x, **kw).shape == shape and bwd(x, x, **kw).shape == shape
    np.testing.assert_allclose(fwd(np.float64(-0.5), **kw), ref(-0.5, **kw), rtol=1e-12)


# --------------------------------------------------------------------------- kinks, inf, NaN


def test_gradients_at_the_kinks_are_pytorchs():
    """PyTorch's values where the derivative jumps (its documented kernels' comparisons)."""
    g = np.full(4, 2.0)
    np.testing.assert_array_equal(nc.relu6_backward(g, np.array([0.0, 6.0, -0.0, 3.0])),
                                  [0, 0, 0, 2])
    np.testing.assert_array_equal(nc.hardswish_backward(g, np.array([-3.0, 3.0, 0.0, -4.0])),
                                  [0, 2, 1, 0])
    np.testing.assert_allclose(nc.hardsigmoid_backward(g, np.array([-3.0, 3.0, 0.0, 4.0])),
                               [0, 0, 1 / 3, 0], rtol=1e-15)
    # ELU family: the x <= 0 branch at 0 (alpha * scale * dy; CELU's is dy)
    np.testing.assert_allclose(nc.elu_backward(g, np.zeros(4), alpha=0.5), np.ones(4))
    np.testing.assert_allclose(nc.selu_backward(g, np.zeros(4)),
                               np.full(4, 2 * R.SELU_ALPHA * R.SELU_SCALE), rtol=1e-15)
    np.testing.assert_allclose(nc.celu_backward(g, np.zeros(4), alpha=3.0), g)
    # Softplus: linear only strictly above the threshold
    x = np.array([20.0, 20.5, 10.0, 10.5])
    np.testing.assert_allclose(nc.softplus_backward(g[:2], x[:2]), [2 / (1 + math.exp(-20)), 2])
    np.testing.assert_allclose(nc.softplus(x[2:], beta=2.0, threshold=20.0),
                               [math.log1p(math.exp(20)) / 2, 10.5])
    # PReLU: the slope at 0 and for NaN, no weight gradient from x == 0
    dx, dw = nc.prelu_backward(g, np.array([0.0, 0.0, 1.0, -1.0]), np.array([0.5]))
    np.testing.assert_array_equal(dx, [1, 1, 2, 1])
    np.testing.assert_array_equal(dw, [-2])


def test_infinities_and_nan_follow_pytorch():
    """inf and NaN through each op and its gradient: PyTorch's float64 results (NaN where its
    formula multiplies inf by 0), written out from its definitions."""
    x = np.array([-np.inf, np.inf, np.nan])
    g = np.ones(3)
    nan = np.nan
    expected = {
        # op: (forward at -inf, inf, nan), (gradient at -inf, inf, nan)
        "elu": ([-1, np.inf, nan], [0, 1, nan]),
        "selu": ([-R.SELU_ALPHA * R.SELU_SCALE, np.inf, nan], [0, R.SELU_SCALE, nan]),
        "celu": ([-1, np.inf, nan], [0, 1, nan]),
        "gelu": ([nan, np.inf, nan], [nan, nan, nan]),
        "silu": ([nan, np.inf, nan], [nan, nan, nan]),
        "mish": ([nan, np.inf, nan], [nan, nan, nan]),
        "hardswish": ([nan, np.inf, nan], [0, 1, nan]),
        "hardsigmoid": ([0, 1, nan], [0, 0, 0]),
        "relu6": ([0, 6, nan], [0, 0, 0]),
        "softplus": ([0, np.inf, nan], [0, 1, nan]),
    }
    for name, (fwd_expected, grad_expected) in expected.items():
        for dtype in (np.float32, np.float64):
            xs = x.astype(dtype)
            np.testing.assert_allclose(getattr(nc, name)(xs), fwd_expected, rtol=1e-6,
                                       err_msg=f"{name} {dtype.__name__}")
            np.testing.assert_allclose(getattr(nc, f"{name}_backward")(g.astype(dtype), xs),
                                       grad_expected, rtol=1e-6,
                                       err_msg=f"{name}_backward {dtype.__name__}")
    np.testing.assert_array_equal(nc.gelu(x, approximate="tanh"), [nan, np.inf, nan])
    np.testing.assert_array_equal(nc.gelu_backward(g, x, approximate="tanh"), [nan, nan, nan])
    y = nc.prelu(x, np.array(0.25))
    np.testing.assert_array_equal(y, [-np.inf, np.inf, nan])
    dx, dw = nc.prelu_backward(g, x, np.array(0.25))
    np.testing.assert_array_equal(dx, [0.25, 1, 0.25])
    assert np.isnan(dw)  # NaN * dy (and -inf * dy + ...) as in PyTorch


def test_no_overflow_where_the_textbook_formula_overflows():
    big = np.array([-1000.0, -100.0, 100.0, 1000.0], np.float32)
    with np.errstate(all="raise"):
        np.testing.assert_allclose(nc.silu(big), [0, -100 * math.exp(-100), 100, 1000],
                                   rtol=1e-6, atol=1e-30)
        np.testing.assert_allclose(nc.mish(big), [0, -100 * math.exp(-100), 100, 1000],
                                   rtol=1e-6, atol=1e-30)
        # PyTorch's float32 log1p(exp(x)) is inf here; the value is finite
        np.testing.assert_allclose(nc.softplus(big, threshold=np.inf), [0, 0, 100, 1000],
                                   atol=1e-30, rtol=1e-6)
        np.testing.assert_allclose(nc.softplus_backward(np.ones(4, np.float32), big,
                                                        threshold=np.inf), [0, 0, 1, 1],
                                   atol=1e-30)


# --------------------------------------------------------------------------- PReLU


@pytest.mark.parametrize("shape, num", [((2, 3, 4, 5), 3), ((2, 3, 4, 5), 1), ((4, 7), 7),
                                        ((3, 2, 9), 2), ((5,), 1), ((), 1), ((0, 4, 3), 4),
                                        ((2, 1, 3), 1), ((1, 5, 1, 1), 5)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_prelu_matches_the_reference(shape, num, dtype):
    rng = np.random.default_rng(7)
    x = _sample(rng, shape, dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    w = rng.uniform(-0.5, 0.9, num).astype(dtype)
    for weight in ([w] if num > 1 else [w, w.reshape(())]):
        _assert_close(nc.prelu(x, weight), R.prelu_ref(x, weight), dtype, "prelu")
        dx, dw = nc.prelu_backward(dy, x, weight)
        rdx, rdw = R.prelu_grad_ref(dy, x, weight)
        _assert_close(dx, rdx, dtype, "prelu dx")
        assert dw.shape == np.shape(weight)
        tol = dict(rtol=1e-12, atol=1e-12) if dtype == np.float64 else dict(rtol=1e-5,
                                                                            atol=1e-4)
        np.testing.assert_allclose(dw, rdw, **tol)


def test_prelu_parallel_and_gradcheck(monkeypatch):
    rng = np.random.default_rng(8)
    x = 2 * rng.standard_normal((3, 4, 6, 5))
    w = np.array([0.1, -0.3, 0.7, 1.5])
    assert gradcheck(nc.prelu, (x, w), lambda dy, a, b: nc.prelu_backward(dy, a, b))
    assert gradcheck(nc.prelu, (x, w[:1]), lambda dy, a, b: nc.prelu_backward(dy, a, b))
    monkeypatch.setattr(nc._config, "SERIAL_BELOW", 0)
    for shape, weight in (((3, 4, 2000), w), ((2, 3, 5000), w[:1]), ((9000, 4), w)):
        x = rng.standard_normal(shape)
        dy = rng.standard_normal(shape)
        np.testing.assert_allclose(nc.prelu(x, weight), R.prelu_ref(x, weight), rtol=1e-14)
        dx, dw = nc.prelu_backward(dy, x, weight)
        rdx, rdw = R.prelu_grad_ref(dy, x, weight)
        np.testing.assert_allclose(dx, rdx, rtol=1e-14)
        np.testing.assert_allclose(dw, rdw, rtol=1e-10)


def test_prelu_refuses_mismatched_weights():
    x = np.ones((2, 3, 4))
    with pytest.raises(ValueError, match=r"'weight' has 4 slopes.*3 channels"):
        nc.prelu(x, np.ones(4))
    with pytest.raises(ValueError, match=r"'weight' has 3 slopes.*1 channels"):
        nc.prelu(np.ones(3), np.ones(3))  # a 1-D input has one channel, as in PyTorch
    with pytest.raises(ValueError, match="'weight' must be a scalar or 1-D"):
        nc.prelu(x, np.ones((1, 3)))
    with pytest.raises(ValueError, match="'dy' has shape"):
        nc.prelu_backward(np.ones((2, 3)), x, np.ones(3))
    with pytest.raises(TypeError, match="'weight'"):
        nc.prelu(x, np.ones(3, np.complex128))


# --------------------------------------------------------------------------- arguments


@pytest.mark.parametrize("call, error, match", [
    (lambda: nc.elu(np.ones(2), alpha="1"), TypeError, "alpha"),
    (lambda: nc.elu(np.ones(2), alpha=math.nan), ValueError, "alpha"),
    (lambda: nc.elu_backward(np.ones(2), np.ones(2), alpha=math.inf), ValueError, "alpha"),
    (lambda: nc.celu(np.ones(2), alpha=0.0), ValueError, "alpha"),
    (lambda: nc.celu_backward(np.ones(2), np.ones(2), alpha=0), ValueError, "alpha"),
    (lambda: nc.gelu(np.ones(2), approximate="erf"), ValueError, "approximate"),
    (lambda: nc.gelu(np.ones(2), approximate=None), TypeError, "approximate"),
    (lambda: nc.gelu_backward(np.ones(2), np.ones(2), approximate=1), TypeError, "approximate"),
    (lambda: nc.softplus(np.ones(2), beta=None), TypeError, "beta"),
    (lambda: nc.softplus(np.ones(2), beta=math.inf), ValueError, "beta"),
    (lambda: nc.softplus(np.ones(2), threshold=math.nan), ValueError, "threshold"),
    (lambda: nc.softplus_backward(np.ones(2), np.ones(2), threshold="20"), TypeError,
     "threshold"),
    (lambda: nc.silu_backward(np.ones(3), np.ones(2)), ValueError, r"'dy' has shape \(3,\)"),
    (lambda: nc.mish("x"), TypeError, "'x'"),
])
def test_bad_arguments_raise_naming_them(call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.mark.parametrize("make, error, match", [
    (lambda: nn.PReLU(0), ValueError, "num_parameters"),
    (lambda: nn.PReLU(2.0), TypeError, "num_parameters"),
    (lambda: nn.PReLU(init="a"), TypeError, "init"),
    (lambda: nn.ELU(alpha=None), TypeError, "alpha"),
    (lambda: nn.ELU(inplace=1), TypeError, "inplace"),
    (lambda: nn.CELU(alpha=0.0), ValueError, "alpha"),
    (lambda: nn.GELU(approximate="exact"), ValueError, "approximate"),
    (lambda: nn.Softplus(beta=math.nan), ValueError, "beta"),
    (lambda: nn.Softplus(threshold=[20]), TypeError, "threshold"),
    (lambda: nn.SiLU(inplace="yes"), TypeError, "inplace"),
    (lambda: nn.ReLU6(inplace=None), TypeError, "inplace"),
])
def test_layer_arguments_are_checked_in_the_constructor(make, error, match):
    with pytest.raises(error, match=match):
        make()


# --------------------------------------------------------------------------- layers


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layers_forward_backward_and_gradcheck(name):
    make, op, kw = LAYERS[name]
    layer = make()
    rng = np.random.default_rng(12)
    x = _sample(rng, (3, 4, 5), np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    y = layer(x)
    _assert_close(y, getattr(R, f"{op}_ref")(x, **kw), np.float32, name)
    _assert_close(layer.backward(dy), getattr(R, f"{op}_grad_ref")(dy, x, **kw), np.float32,
                  f"{name} backward")
    assert layer.parameters() == [] and layer.state_dict() == {}
    with nc.no_grad():
        layer(x)
    with pytest.raises(RuntimeError, match="without a cached forward"):
        layer.backward(dy)
    xs = 3 * rng.standard_normal((2, 3, 4))
    xs = np.where(np.abs(np.abs(xs) - 3) < 1e-2, xs + 0.05, xs)
    assert gradcheck(make(), xs)
    if "inplace" in layer._config:  # accepted, recorded, and the input is left alone
        x0 = x.copy()
        np.testing.assert_array_equal(type(layer)(**{**layer._config, "inplace": True})(x), y)
        np.testing.assert_array_equal(x, x0)


def test_prelu_layer():
    layer = nn.PReLU(num_parameters=3, init=0.1)
    assert layer.weight.shape == (3,) and layer.weight.dtype == np.float32
    np.testing.assert_array_equal(layer.weight.data, np.full(3, 0.1, np.float32))
    assert list(layer.state_dict()) == ["weight"]
    assert nn.PReLU().weight.shape == (1,)
    assert nn.PReLU(2, dtype=np.float64).weight.dtype == np.float64
    rng = np.random.default_rng(13)
    x = rng.standard_normal((4, 3, 5, 2)).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    layer.weight.data[:] = [0.1, -0.2, 0.3]
    y = layer(x)
    _assert_close(y, R.prelu_ref(x, layer.weight.data), np.float32, "PReLU")
    dx = layer.backward(dy)
    rdx, rdw = R.prelu_grad_ref(dy, x, layer.weight.data)
    _assert_close(dx, rdx, np.float32, "PReLU dx")
    np.testing.assert_allclose(layer.weight.grad, rdw, rtol=1e-5, atol=1e-5)
    layer(x)
    layer.backward(dy)  # gradients accumulate
    np.testing.assert_allclose(layer.weight.grad, 2 * rdw, rtol=1e-5, atol=1e-5)
    layer.weight.requires_grad = False  # frozen: nothing accumulated
    layer.zero_grad()
    layer(x)
    layer.backward(dy)
    np.testing.assert_array_equal(layer.weight.grad, np.zeros(3))
    assert gradcheck(nn.PReLU(3, init=-0.4), 2 * rng.standard_normal((2, 3, 4)))
    assert gradcheck(nn.PReLU(1), 2 * rng.standard_normal((5,)))  # one channel, 1-D input


def test_model_file_round_trip(tmp_path):
    model = nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1), nn.PReLU(3, init=0.2), nn.ELU(alpha=0.5),
        nn.SELU(inplace=True), nn.CELU(alpha=2.0), nn.GELU(approximate="tanh"), nn.GELU(),
        nn.SiLU(), nn.Mish(), nn.Hardswish(), nn.Hardsigmoid(), nn.ReLU6(),
        nn.Softplus(beta=2.0, threshold=math.inf), nn.Flatten(), nn.Linear(3 * 4 * 4, 2))
    model[1].weight.data[:] = [0.1, 0.2, -0.3]
    path = tmp_path / "acts.h5"
    nc.save(model, path)
    loaded = nc.load(path)
    assert repr(loaded) == repr(model)
    x = np.random.default_rng(0).standard_normal((2, 2, 4, 4)).astype(np.float32)
    np.testing.assert_array_equal(loaded(x), model(x))
    np.testing.assert_array_equal(loaded[1].weight.data, model[1].weight.data)
    assert loaded[3]._config == {"inplace": True}
    assert loaded[12]._config["threshold"] == math.inf


# --------------------------------------------------------------------------- vmath accuracy


def test_float32_vector_math_is_within_its_stated_ulps():
    """nbconv.kernels._vmath's float32 functions against float64 over dense grids."""
    from scipy import special

    numba = pytest.importorskip("numba")
    from nbconv.kernels import _vmath as vm

    def run(f):
        @numba.njit(**(vm.JIT_OPTIONS | {"cache": False}))
        def k(x, y):
            for i in range(x.size):
                y[i] = f(x[i])
        return k

    def pdf(v):
        return np.exp(-v * v / 2) / math.sqrt(2 * math.pi)

    cases = [(vm.exp, np.exp, (-100, 88), 2), (vm.expm1, np.expm1, (-100, 88), 2),
             (vm.tanh, np.tanh, (-12, 12), 3), (vm.log1p_unit, np.log1p, (0, 1), 4),
             (vm.ndtr, special.ndtr, (-13, 13), 7), (vm.npdf, pdf, (-13, 13), 3)]
    for f, ref, (lo, hi), ulps in cases:
        x = np.concatenate([np.linspace(lo, hi, 300001),
                            np.linspace(max(lo, -1e-3), min(hi, 1e-3), 20001)]).astype(np.float32)
        y = np.empty_like(x)
        run(f)(x, y)
        r = ref(x.astype(np.float64))
        normal = np.abs(r) > np.finfo(np.float32).tiny
        err = np.abs(y[normal] - r[normal]) / np.spacing(np.abs(r[normal]).astype(np.float32))
        assert err.max() <= ulps, (f.__name__, float(err.max()))


# --------------------------------------------------------------------------- PyTorch


def _torch():
    return pytest.importorskip("torch")


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_matches_pytorch_autograd(case, dtype):
    torch = _torch()
    fwd, bwd, _, _, name, kw = _ops(case)
    rng = np.random.default_rng(21)
    x = np.concatenate([_sample(rng, 600, dtype).ravel(), KINKS, np.linspace(-70, 70, 141),
                        [-np.inf, np.inf, np.nan]]).astype(dtype)
    # the special values sit in the middle, where PyTorch's vectorised loops run (its scalar
    # remainder loop gives other gradients for NaN, e.g. ELU's dy)
    x = np.concatenate([x[:300], x[-3:], x[300:-3]]).reshape(2, -1)
    dy = rng.standard_normal(x.shape).astype(dtype)
    tx = torch.tensor(x, requires_grad=True)
    ty = getattr(torch.nn.functional, name)(tx, **kw)
    ty.backward(torch.tensor(dy))
    ty, tdx = ty.detach().numpy(), tx.grad.numpy()
    y, dx = fwd(x, **kw), bwd(dy, x, **kw)
    assert y.dtype == dtype and dx.dtype == dtype
    ok = np.isfinite(x)
    special = ~ok
    if dtype == np.float32 and name == "gelu" and kw.get("approximate", "none") == "none":
        special &= x != np.inf  # PyTorch's float32 erf gives gelu(inf) = NaN; its float64 inf
        assert y[x == np.inf] == np.inf
    if name == "softplus" and kw.get("threshold") == math.inf:
        special &= x != np.inf  # PyTorch's exp(z) / (exp(z) + 1) is inf / inf; sigmoid is 1
        assert dx[x == np.inf] == dy[x == np.inf]
    tol = (dict(rtol=1e-10, atol=1e-12) if dtype == np.float64
           else dict(rtol=2e-5, atol=2e-6))
    if name == "hardsigmoid" and dtype == np.float64:
        tol = dict(rtol=1e-7, atol=1e-12)  # PyTorch multiplies by 1/6 rounded to float32
    np.testing.assert_allclose(y[ok], ty[ok], **tol, err_msg=f"{case} forward")
    np.testing.assert_allclose(dx[ok], tdx[ok], **tol, err_msg=f"{case} backward")
    np.testing.assert_array_equal(np.isnan(y[special]), np.isnan(ty[special]))
    np.testing.assert_array_equal(np.isnan(dx[special]), np.isnan(tdx[special]))
    finite = special & ~np.isnan(ty)
    np.testing.assert_array_equal(y[finite], ty[finite])


@pytest.mark.parametrize("shape, num", [((2, 3, 4, 5), 3), ((2, 3, 4, 5), 1), ((6, 5), 5),
                                        ((7,), 1), ((0, 2, 3), 2), ((2, 4, 3), 1)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_prelu_matches_pytorch(shape, num, dtype):
    torch = _torch()
    rng = np.random.default_rng(22)
    x = _sample(rng, shape, dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    w = rng.uniform(-0.5, 0.9, num).astype(dtype)
    tx = torch.tensor(x, requires_grad=True)
    tw = torch.tensor(w, requires_grad=True)
    torch.nn.functional.prelu(tx, tw).backward(torch.tensor(dy))
    layer = nn.PReLU(num, dtype=dtype)
    layer.weight.data[:] = w
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == np.float64 else dict(rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(layer(x), torch.nn.functional.prelu(
        torch.tensor(x), torch.tensor(w)).numpy(), **tol)
    np.testing.assert_allclose(layer.backward(dy), tx.grad.numpy(), **tol)
    np.testing.assert_allclose(layer.weight.grad, tw.grad.numpy(), **tol)


def test_pytorch_refuses_what_nbconv_refuses():
    torch = _torch()
    for x, w in ((np.ones(3), np.ones(3)), (np.ones((2, 3, 4)), np.ones(4))):
        with pytest.raises(RuntimeError):
            torch.nn.functional.prelu(torch.tensor(x), torch.tensor(w))
        with pytest.raises(ValueError):
            nc.prelu(x, w)
    with pytest.raises(RuntimeError, match="alpha"):
        torch.nn.functional.celu(torch.ones(2, dtype=torch.float64), alpha=0.0)
    with pytest.raises(RuntimeError, match="approximate"):
        torch.nn.functional.gelu(torch.ones(2), approximate="erf")


def test_recorded_forward_matches_pytorch():
    """A PyTorch-style module without backward: layers and functional ops recorded, then
    crit(model(x), y).backward(), against the same module in PyTorch."""
    torch = _torch()
    tF = torch.nn.functional

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 4, 3, padding=1, dtype=np.float64)
            self.act = nn.PReLU(4, dtype=np.float64)
            self.gelu = nn.GELU(approximate="tanh")
            self.fc = nn.Linear(4 * 5 * 6, 3, dtype=np.float64)
            self.slope = nn.Parameter(np.array([0.3, -0.2, 0.5]))

        def forward(self, x):
            h = self.gelu(self.act(self.conv(x)))
            h = nc.mish(h) + nc.hardswish(h) + nc.elu(h, alpha=0.5) + nc.relu6(h)
            h = nc.softplus(h, beta=2.0, threshold=1.0) - nc.selu(h) + nc.celu(h, 2.0)
            h = nc.silu(h) * nc.gelu(h)
            out = self.fc(h.reshape(h.shape[0], -1))
            return nc.prelu(out, self.slope)

    class TNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(2, 4, 3, padding=1).double()
            self.act = torch.nn.PReLU(4).double()
            self.gelu = torch.nn.GELU(approximate="tanh")
            self.fc = torch.nn.Linear(4 * 5 * 6, 3).double()
            self.slope = torch.nn.Parameter(torch.tensor([0.3, -0.2, 0.5], dtype=torch.float64))

        def forward(self, x):
            h = self.gelu(self.act(self.conv(x)))
            h = tF.mish(h) + tF.hardswish(h) + tF.elu(h, alpha=0.5) + tF.relu6(h)
            h = tF.softplus(h, beta=2.0, threshold=1.0) - tF.selu(h) + tF.celu(h, 2.0)
            h = tF.silu(h) * tF.gelu(h)
            out = self.fc(h.reshape(h.shape[0], -1))
            return tF.prelu(out, self.slope)

    model, twin = Net(), TNet()
    model.act.weight.data[:] = [0.1, -0.4, 0.25, 0.7]
    with torch.no_grad():
        for k, p in twin.named_parameters():
            p.copy_(torch.tensor(dict(model.named_parameters())[k].data))
    rng = np.random.default_rng(23)
    x = 1.5 * rng.standard_normal((2, 2, 5, 6))
    y = np.array([0, 2])
    crit = nn.CrossEntropyLoss()
    loss = crit(model(x), y)
    loss.backward()
    tloss = tF.cross_entropy(twin(torch.tensor(x)), torch.tensor(y))
    tloss.backward()
    assert abs(float(loss) - tloss.item()) <= 1e-10 * abs(tloss.item())
    ours = dict(model.named_parameters())
    for k, p in twin.named_parameters():
        np.testing.assert_allclose(ours[k].grad, p.grad.numpy(), rtol=1e-9, atol=1e-12,
                                   err_msg=k)


def test_recorded_hardsigmoid_matches_pytorch():
    """Hardsigmoid in a recorded forward (kept apart: PyTorch's float64 gradient multiplies by
    1/6 rounded to float32, 3e-8 relative, which would blur the 1e-10 check above)."""
    torch = _torch()

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(5, 3, dtype=np.float64)

        def forward(self, x):
            return self.fc(x) * nc.hardsigmoid(self.fc(x))

    model = Net()
    twin = torch.nn.Linear(5, 3).double()
    with torch.no_grad():
        twin.weight.copy_(torch.tensor(model.fc.weight.data))
        twin.bias.copy_(torch.tensor(model.fc.bias.data))
    x = 4 * np.random.default_rng(25).standard_normal((6, 5))
    dy = np.random.default_rng(26).standard_normal((6, 3))
    out = model(x)
    dx = model.backward(dy)
    tx = torch.tensor(x, requires_grad=True)
    h = twin(tx)
    (h * torch.nn.functional.hardsigmoid(h)).backward(torch.tensor(dy))
    np.testing.assert_allclose(out, (h * torch.nn.functional.hardsigmoid(h)).detach().numpy(),
                               rtol=1e-12)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-7, atol=1e-7 * np.abs(dx).max())
    np.testing.assert_allclose(model.fc.weight.grad, twin.weight.grad.numpy(), rtol=1e-7,
                               atol=1e-7 * np.abs(model.fc.weight.grad).max())
    # and exactly against the reference: d/dh (h * hs(h)) = hs(h) + h * hs'(h)
    hv = x @ model.fc.weight.data.T + model.fc.bias.data
    g = dy * (R.hardsigmoid_ref(hv) + R.hardsigmoid_grad_ref(hv, hv))
    np.testing.assert_allclose(dx, g @ model.fc.weight.data, rtol=1e-12, atol=1e-14)


def test_layers_match_pytorch_modules():
    torch = _torch()
    rng = np.random.default_rng(24)
    x = _sample(rng, (3, 4, 6, 5), np.float64)
    dy = rng.standard_normal(x.shape)
    twins = {"ELU": torch.nn.ELU(alpha=0.7), "SELU": torch.nn.SELU(),
             "CELU": torch.nn.CELU(alpha=1.25), "GELU": torch.nn.GELU(),
             "GELU_tanh": torch.nn.GELU(approximate="tanh"), "SiLU": torch.nn.SiLU(),
             "Mish": torch.nn.Mish(), "Hardswish": torch.nn.Hardswish(),
             "Hardsigmoid": torch.nn.Hardsigmoid(), "ReLU6": torch.nn.ReLU6(),
             "Softplus": torch.nn.Softplus(beta=1.5, threshold=4.0)}
    for name, twin in twins.items():
        layer = LAYERS[name][0]()
        tx = torch.tensor(x, requires_grad=True)
        ty = twin(tx)
        ty.backward(torch.tensor(dy))
        rtol = 1e-7 if name == "Hardsigmoid" else 1e-10  # see test_matches_pytorch_autograd
        np.testing.assert_allclose(layer(x), ty.detach().numpy(), rtol=1e-10, atol=1e-12,
                                   err_msg=name)
        np.testing.assert_allclose(layer.backward(dy), tx.grad.numpy(), rtol=rtol,
                                   atol=1e-12, err_msg=name)
        assert repr(layer).split("(")[0] == repr(twin).split("(")[0]


# --------------------------------------------------------------------------- benchmark


def test_bench_activations_quick(tmp_path):
    js = tmp_path / "act.json"
    bench = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_activations.py"
    proc = subprocess.run([sys.executable, str(bench), "--quick", "--threads", "1",
                           "--ops", "gelu,prelu", "--json", str(js)],
                          capture_output=True, text=True, timeout=600, cwd=bench.parent.parent)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "load average" in proc.stdout
    data = json.loads(js.read_text())
    assert data["shape"] == [2, 4, 8, 8] and [r["op"] for r in data["results"]] == ["gelu",
                                                                                     "prelu"]
    for r in data["results"]:
        assert r["nbconv_ms"] > 0
        if data["machine"]["torch"]:
            assert r["check_ok"] and r["ratio"] > 0


# --------------------------------------------------------------------------- ONNX


def _onnx():
    onnx = pytest.importorskip("onnx", reason="onnx not installed: pip install 'nbconv[onnx]'")
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime not installed")
    return onnx, ort


def _ort_run(ort, path, x):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def _all_activations():
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.PReLU(4, init=0.2), nn.ELU(alpha=0.5), nn.SELU(),
        nn.CELU(alpha=1.5), nn.GELU(), nn.GELU(approximate="tanh"), nn.SiLU(), nn.Mish(),
        nn.Hardswish(), nn.Hardsigmoid(), nn.ReLU6(), nn.Softplus(), nn.Softplus(beta=2.0),
        nn.Flatten(), nn.Linear(4 * 5 * 5, 3), nn.PReLU())


def _scaled_close(a, b, rtol):
    np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * max(1.0, float(np.abs(b).max())))


def test_onnx_export_runs_in_onnxruntime_and_loads_back(tmp_path):
    onnx, ort = _onnx()
    nc.manual_seed(3)
    model = _all_activations().eval()
    model[1].weight.data[:] = [0.1, -0.3, 0.25, 0.6]
    model[16].weight.data[:] = [-0.2]
    rng = np.random.default_rng(30)
    x = 2 * rng.standard_normal((2, 2, 5, 5)).astype(np.float32)
    path = nc.onnx.export(model, tmp_path / "acts.onnx", x.shape)
    proto = onnx.load(path)
    onnx.checker.check_model(proto, full_check=True)
    ops = [n.op_type for n in proto.graph.node]
    assert {"PRelu", "Elu", "Selu", "Celu", "Gelu", "Sigmoid", "Mish", "HardSwish",
            "HardSigmoid", "Clip", "Softplus"} <= set(ops)
    assert proto.opset_import[0].version == 20  # Gelu
    with nc.no_grad():
        want = model(x)
    _scaled_close(_run := _ort_run(ort, path, x), want, 2e-5)
    assert _run.shape == want.shape

    g = nc.onnx.load(path)
    kinds = [type(m).__name__ for _, m, _ in g.nodes]
    for name in ("PReLU", "ELU", "SELU", "CELU", "GELU", "SiLU", "Mish", "Hardswish",
                 "Hardsigmoid", "ReLU6", "Softplus"):
        assert name in kinds, (name, kinds)
    assert kinds.count("PReLU") == 2 and kinds.count("GELU") == 2
    dy = rng.standard_normal(want.shape).astype(np.float32)
    for m in (model, g):
        m.zero_grad()
    y0, y1 = model.forward(x), g.forward(x)
    _scaled_close(y1, y0, 1e-6)
    dx0, dx1 = model.backward(dy), g.backward(dy)
    _scaled_close(dx1, dx0, 1e-5)
    for p in g.parameters():  # its twin: the parameter holding the same values
        (q,) = [q for q in model.parameters()
                if q.data.shape == p.data.shape and np.array_equal(q.data, p.data)]
        _scaled_close(p.grad, q.grad, 1e-5)


def test_onnx_opsets_and_refusals(tmp_path):
    onnx, _ = _onnx()
    model = nn.Sequential(nn.Conv2d(1, 2, 1), nn.GELU())
    with pytest.raises(ValueError, match="opset >= 20"):
        nc.onnx.export(model, tmp_path / "g.onnx", (1, 1, 3, 3), opset=17)
    path = nc.onnx.export(nn.Sequential(nn.Conv2d(1, 2, 1), nn.Mish()), tmp_path / "m.onnx",
                          (1, 1, 3, 3))
    assert onnx.load(path).opset_import[0].version == 18 or \
        onnx.load(path).opset_import[0].version >= nc.onnx.DEFAULT_OPSET

    h = onnx.helper

    def one(op, shape=(1, 3, 2, 2), inits=(), **attrs):
        x = h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, list(shape))
        y = h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, list(shape))
        node = h.make_node(op, ["x"] + [i.name for i in inits], ["y"], name="n", **attrs)
        p = tmp_path / f"{op}.onnx"
        onnx.save(h.make_model(h.make_graph([node], "g", [x], [y], initializer=list(inits)),
                               opset_imports=[h.make_opsetid("", 20)]), p)
        return p

    slope = onnx.numpy_helper.from_array(np.ones(2, np.float32), "slope")  # along the last axis
    with pytest.raises(nc.onnx.UnsupportedOpError, match="one per channel"):
        nc.onnx.load(one("PRelu", inits=[slope]))
    # other constants than PyTorch's (ONNX's default slope 0.2, not 1/6): composed layers
    x = np.linspace(-4, 4, 12, dtype=np.float32).reshape(1, 3, 2, 2)
    np.testing.assert_allclose(nc.onnx.load(one("HardSigmoid"))(x),
                               np.clip(np.float32(0.2) * x + 0.5, 0, 1), rtol=1e-6)
    np.testing.assert_allclose(nc.onnx.load(one("Selu", gamma=3.0))(x), 3.0 * np.where(
        x > 0, x, np.float32(1.67326319217681884765625) * np.expm1(x)), rtol=1e-6)
    g = nc.onnx.load(one("Elu", alpha=0.3))
    assert [type(m).__name__ for _, m, _ in g.nodes] == ["ELU"]
    assert g.nodes[0][1]._config["alpha"] == pytest.approx(0.3)


def test_onnx_export_of_a_pytorch_style_module(tmp_path):
    _, ort = _onnx()

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 3, 3, padding=1)

        def forward(self, x):
            h = nc.gelu(self.conv(x), approximate="tanh")
            h = nc.elu(h, alpha=0.4) + nc.silu(h) + nc.mish(h) + nc.celu(h, 2.0)
            h = nc.hardswish(h) + nc.hardsigmoid(h) + nc.relu6(h) + nc.selu(h)
            return nc.softplus(h) + nc.gelu(h)

    nc.manual_seed(4)
    model = Net()
    x = np.random.default_rng(31).standard_normal((2, 2, 4, 4)).astype(np.float32)
    path = nc.onnx.export(model, tmp_path / "py.onnx", x.shape)
    with nc.no_grad():
        want = model(x)
    _scaled_close(_ort_run(ort, path, x), want, 2e-5)


def test_onnx_files_from_pytorch_load_and_agree(tmp_path):
    onnx, _ = _onnx()
    torch = _torch()
    import warnings

    tnn = torch.nn
    torch.manual_seed(5)
    twin = tnn.Sequential(
        tnn.Conv2d(2, 4, 3, padding=1), tnn.PReLU(4), tnn.ELU(0.5), tnn.SELU(), tnn.CELU(1.5),
        tnn.GELU(), tnn.GELU(approximate="tanh"), tnn.SiLU(), tnn.Mish(), tnn.Hardswish(),
        tnn.Hardsigmoid(), tnn.ReLU6(), tnn.Softplus(), tnn.Softplus(beta=2.0), tnn.Flatten(),
        tnn.Linear(4 * 5 * 5, 3), tnn.PReLU()).eval()
    x = 2 * np.random.default_rng(32).standard_normal((2, 2, 5, 5)).astype(np.float32)
    path = tmp_path / "torch.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(twin, (torch.tensor(x),), str(path), dynamo=False, opset_version=20,
                          input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "N"}, "y": {0: "N"}})
    g = nc.onnx.load(path)
    kinds = [type(m).__name__ for _, m, _ in g.nodes]
    for name in ("PReLU", "ELU", "SELU", "CELU", "GELU", "SiLU", "Mish", "Hardswish",
                 "Hardsigmoid", "ReLU6", "Softplus"):
        assert name in kinds, (name, kinds)
    tx = torch.tensor(x, requires_grad=True)
    ty = twin(tx)
    dy = np.random.default_rng(33).standard_normal(ty.shape).astype(np.float32)
    ty.backward(torch.tensor(dy))
    g.train()
    y = g.forward(x)
    _scaled_close(y, ty.detach().numpy(), 2e-5)
    _scaled_close(g.backward(dy), tx.grad.numpy(), 2e-5)

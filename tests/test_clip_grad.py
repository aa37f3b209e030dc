"""nn.utils.clip_grad_norm_ / clip_grad_value_ / get_total_norm against torch and the formulas;
frozen parameters left out; NaN/inf; errors.  Parameter.numel."""

import math

import numpy as np
import pytest

from nbconv import nn
from nbconv.nn import Parameter
from nbconv.nn import utils as U

SHAPES = [(4, 3), (3,), (2, 2, 3, 3), (0, 5)]


def _params(seed, dtype=np.float64, scale=1.0):
    rng = np.random.default_rng(seed)
    ps = [Parameter(rng.standard_normal(s).astype(dtype), f"p{i}") for i, s in enumerate(SHAPES)]
    for p in ps:
        p.grad[...] = scale * rng.standard_normal(p.shape)
    return ps


def _torch_twins(torch, ps):
    ts = [torch.tensor(p.data.copy(), requires_grad=True) for p in ps]
    for t, p in zip(ts, ps):
        t.grad = torch.tensor(p.grad.copy())
    return ts


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, 0.5, math.inf, "inf", 0.0])
@pytest.mark.parametrize("max_norm", [0.5, 1e3])
def test_clip_grad_norm_matches_torch(dtype, norm_type, max_norm):
    torch = pytest.importorskip("torch")
    ps = _params(0, dtype)
    if norm_type in (math.inf, "inf"):
        ps = ps[:-1]  # torch cannot take the max-norm of an empty gradient (nbconv: 0)
    ts = _torch_twins(torch, ps)
    total = U.clip_grad_norm_(ps, max_norm, norm_type=norm_type)
    ref = torch.nn.utils.clip_grad_norm_(ts, max_norm, norm_type=norm_type)
    tol = 1e-12 if dtype == np.float64 else 2e-6
    assert total.dtype == dtype
    np.testing.assert_allclose(total, ref.item(), rtol=tol)
    for p, t in zip(ps, ts):
        assert p.grad.dtype == dtype
        np.testing.assert_allclose(p.grad, t.grad.numpy(), rtol=tol, atol=tol * 1e-3)


def test_clip_grad_norm_against_the_formula_without_torch():
    ps = _params(1, scale=3.0)
    flat = np.concatenate([p.grad.ravel() for p in ps])
    before = [p.grad.copy() for p in ps]
    total = U.clip_grad_norm_(ps, 2.0)
    assert total == pytest.approx(np.linalg.norm(flat), rel=1e-14)
    coef = 2.0 / (np.linalg.norm(flat) + 1e-6)
    for p, b in zip(ps, before):
        np.testing.assert_allclose(p.grad, b * coef, rtol=1e-14)
    after = np.concatenate([p.grad.ravel() for p in ps])
    assert np.linalg.norm(after) == pytest.approx(2.0, rel=1e-6)


def test_frozen_parameters_are_left_out_and_untouched():
    ps = _params(2, scale=10.0)
    ps[0].requires_grad = False
    frozen = ps[0].grad.copy()
    total = U.clip_grad_norm_(ps, 1.0)
    expect = np.linalg.norm(np.concatenate([p.grad.ravel() for p in ps[1:]]) / 1.0)
    np.testing.assert_array_equal(ps[0].grad, frozen)
    assert np.linalg.norm(np.concatenate([p.grad.ravel() for p in ps[1:]])) == \
        pytest.approx(1.0, rel=1e-6)
    assert total > expect  # the norm before clipping
    U.clip_grad_value_(ps, 0.1)
    np.testing.assert_array_equal(ps[0].grad, frozen)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nonfinite_norm_scales_like_torch_or_raises(bad):
    torch = pytest.importorskip("torch")
    ps = _params(3)
    ps[1].grad[0] = bad
    ts = _torch_twins(torch, ps)
    total = U.clip_grad_norm_(ps, 1.0)
    ref = torch.nn.utils.clip_grad_norm_(ts, 1.0)
    assert np.isnan(total) == math.isnan(ref.item()) and np.isinf(total) == math.isinf(ref)
    for p, t in zip(ps, ts):
        np.testing.assert_array_equal(np.isnan(p.grad), np.isnan(t.grad.numpy()))
        np.testing.assert_allclose(np.nan_to_num(p.grad), np.nan_to_num(t.grad.numpy()))
    with pytest.raises(RuntimeError, match="non-finite"):
        U.clip_grad_norm_(_params(3) + [_nan_param()], 1.0, error_if_nonfinite=True)


def _nan_param():
    p = Parameter(np.zeros(2), "n")
    p.grad[...] = np.nan
    return p


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("clip", [0.0, 0.3, 2.0, math.inf])
def test_clip_grad_value_matches_torch(dtype, clip):
    torch = pytest.importorskip("torch")
    ps = _params(4, dtype, scale=2.0)
    ps[0].grad[0, 0] = np.nan
    ts = _torch_twins(torch, ps)
    assert U.clip_grad_value_(ps, clip) is None
    torch.nn.utils.clip_grad_value_(ts, clip)
    for p, t in zip(ps, ts):
        assert p.grad.dtype == dtype
        np.testing.assert_array_equal(p.grad, t.grad.numpy())


def test_get_total_norm_and_clip_grads_with_norm_match_torch():
    torch = pytest.importorskip("torch")
    ps = _params(5)
    ts = _torch_twins(torch, ps)
    total = U.get_total_norm([p.grad for p in ps], 3.0)
    ref = torch.nn.utils.get_total_norm([t.grad for t in ts], 3.0)
    assert total == pytest.approx(ref.item(), rel=1e-13)
    U.clip_grads_with_norm_(ps, 0.7, total)
    torch.nn.utils.clip_grads_with_norm_(ts, 0.7, ref)
    for p, t in zip(ps, ts):
        np.testing.assert_allclose(p.grad, t.grad.numpy(), rtol=1e-13)
    assert U.get_total_norm([]) == 0.0 and U.get_total_norm([]).dtype == np.float32


def test_single_parameter_generator_and_empty():
    p = Parameter(np.ones(4), "w")
    p.grad[...] = [3.0, 4.0, 0.0, 0.0]
    assert U.clip_grad_norm_(p, 10.0) == pytest.approx(5.0)
    layer = nn.Linear(2, 2)
    assert U.clip_grad_norm_(layer.parameters(), 1.0) == 0.0  # fresh gradients are zero
    assert U.clip_grad_norm_([], 1.0) == 0.0


@pytest.mark.parametrize("call, exc, match", [
    (lambda p: U.clip_grad_norm_(p, -1.0), ValueError, "argument 'max_norm'"),
    (lambda p: U.clip_grad_norm_(p, "1"), TypeError, "argument 'max_norm'"),
    (lambda p: U.clip_grad_norm_(p, 1.0, norm_type="two"), ValueError, "argument 'norm_type'"),
    (lambda p: U.clip_grad_norm_(p, 1.0, norm_type=float("nan")), ValueError,
     "argument 'norm_type'"),
    (lambda p: U.clip_grad_norm_(nn.Linear(2, 2), 1.0), TypeError, "module"),
    (lambda p: U.clip_grad_norm_([np.zeros(3)], 1.0), TypeError, "argument 'parameters'"),
    (lambda p: U.clip_grad_norm_(np.zeros(3), 1.0), TypeError, "argument 'parameters'"),
    (lambda p: U.clip_grad_value_(p, -0.5), ValueError, "argument 'clip_value'"),
    (lambda p: U.clip_grad_value_(p, None), TypeError, "argument 'clip_value'"),
    (lambda p: U.vector_to_parameters(np.zeros(3), p), ValueError, "argument 'vec'"),
])
def test_bad_arguments_name_themselves(call, exc, match):
    with pytest.raises(exc, match=match):
        call(_params(6))


def test_numel_and_vector_round_trip():
    torch = pytest.importorskip("torch")
    ps = _params(7)
    assert [p.numel() for p in ps] == [torch.zeros(s).numel() for s in SHAPES]
    assert all(type(p.numel()) is int for p in ps)
    vec = U.parameters_to_vector(ps)
    ref = torch.nn.utils.parameters_to_vector([torch.tensor(p.data) for p in ps])
    np.testing.assert_array_equal(vec, ref.numpy())
    U.vector_to_parameters(vec * 2, ps)
    np.testing.assert_array_equal(U.parameters_to_vector(ps), vec * 2)

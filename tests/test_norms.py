"""Group, instance and layer normalisation: functional ops, their backward passes, the layers
(nn.GroupNorm, nn.InstanceNorm1d/2d, nn.LayerNorm) and their recording.

* against PyTorch in float64 (forward, input gradient, weight and bias gradients, running
  statistics) to ~1e-10 relative, for every schedule of the kernels (serial, one row per
  iteration, rows split into blocks);
* against float64 central finite differences without torch (``nbconv.testing.gradcheck``);
* edge cases: empty batches, NaN/inf, bad arguments, read-only and non-contiguous inputs,
  unbatched inputs, model files.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import nbconv as nc
from nbconv import _config, nn
from nbconv.functional import norms as _norms
from nbconv.testing import gradcheck

DTYPES = [np.float32, np.float64]


def _close(a, ref, rtol=1e-10, floor=0.0):
    """``a`` equals ``ref`` to ``rtol`` relative to ``ref``'s largest magnitude (or to an
    absolute ``floor``, where that is larger)."""
    a = np.asarray(a, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    assert a.shape == ref.shape
    scale = max(np.abs(ref).max(initial=0.0), 1e-300)
    np.testing.assert_allclose(a, ref, rtol=rtol, atol=max(rtol * scale, floor))


def _cancellation_floor(x, eps):
    """The absolute error both libraries may have in ``(x - mean) / sqrt(var + eps)`` when a
    group's values agree to ~1e-12: ``x - mean`` then holds only the rounding of ``x``
    (each library rounds differently), divided by at most ``sqrt(eps)``."""
    return 64 * np.finfo(np.float64).eps * float(np.abs(x).max()) / np.sqrt(eps)


def _gradient_floor(w, dy, rstd):
    """The absolute rounding of an input gradient ``w * rstd * (dy - mean(dy) - xhat *
    mean(dy * xhat))``: its terms have the size ``|w| |dy| rstd`` and may cancel (two values
    per group give xhat = +-1, and dx ~ 0 up to that rounding)."""
    w = 1.0 if w is None else float(np.abs(w).max())
    return 64 * np.finfo(np.float64).eps * w * float(np.abs(dy).max()) * float(
        np.max(rstd))


@pytest.fixture(params=["serial", "rows", "split"])
def schedule(request, monkeypatch):
    """Every kernel schedule: all on the calling thread, one chunk of whole rows per parallel
    iteration, and rows cut into blocks (partial statistics merged afterwards)."""
    if request.param == "serial":
        monkeypatch.setattr(_config, "SERIAL_BELOW", 1 << 62)
    else:
        monkeypatch.setattr(_config, "SERIAL_BELOW", 0)
        monkeypatch.setattr(_norms, "_ROWS_PER_THREAD", 0 if request.param == "rows" else 1 << 40)
    if request.param == "split":  # tiny blocks: several per row even for small inputs
        monkeypatch.setattr(_norms._k, "BLOCK", 7)
        monkeypatch.setattr(_norms._k, "COL_BLOCK", 3)
    return request.param


def _t(torch, a, grad=False):
    return None if a is None else torch.tensor(np.asarray(a), requires_grad=grad)


def _torch_grads(torch, fn, x, w, b, dy):
    """``fn(xt, wt, bt)`` and the gradients of ``sum(out * dy)`` for x, w, b (None stays)."""
    xt, wt, bt = _t(torch, x, True), _t(torch, w, w is not None), _t(torch, b, b is not None)
    yt = fn(xt, wt, bt)
    yt.backward(torch.tensor(dy))
    return (yt.detach().numpy(), xt.grad.numpy(), None if wt is None else wt.grad.numpy(),
            None if bt is None else bt.grad.numpy())


# --------------------------------------------------------------------------- group norm vs torch

# (rows of more than 1024 values are reduced in chunks merged pairwise)
GN_CASES = [((2, 6, 5, 3), 3), ((3, 4, 7), 2), ((2, 6, 3, 4), 1), ((2, 6, 3, 4), 6),
            ((4, 6), 2), ((1, 8, 40, 30), 2), ((2, 4, 2, 3, 2), 2)]


@pytest.mark.parametrize("shape,groups", GN_CASES)
@pytest.mark.parametrize("affine", ["both", "none", "weight", "bias"])
def test_group_norm_matches_pytorch(schedule, shape, groups, affine):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    C = shape[1]
    x = rng.standard_normal(shape) * 3 + 5
    w = rng.standard_normal(C) if affine in ("both", "weight") else None
    b = rng.standard_normal(C) if affine in ("both", "bias") else None
    dy = rng.standard_normal(shape)
    # (PyTorch's backward fails for a bias without a weight: a constant weight of ones there)
    ones = torch.ones(C, dtype=torch.float64)
    ry, rdx, rdw, rdb = _torch_grads(
        torch, lambda xt, wt, bt: torch.nn.functional.group_norm(
            xt, groups, ones if wt is None and bt is not None else wt, bt, 1e-5), x, w, b, dy)
    y, mean, rstd = nc.group_norm(x, groups, w, b, return_stats=True)
    assert mean.shape == rstd.shape == (shape[0], groups)
    _close(y, ry)
    dx, dw, db = nc.group_norm_backward(dy, x, groups, mean, rstd, w,
                                        affine=w is not None or b is not None)
    _close(dx, rdx)
    if rdw is not None:
        _close(dw, rdw)
    if rdb is not None:
        _close(db, rdb)
    if affine == "none":
        assert dw is None and db is None


def test_group_norm_statistics_are_the_groups_mean_and_rstd():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 6, 4, 5)) * 2 - 7
    _, mean, rstd = nc.group_norm(x, 3, eps=1e-3, return_stats=True)
    g = x.reshape(3, 3, -1)
    _close(mean, g.mean(axis=2))
    _close(rstd, 1 / np.sqrt(g.var(axis=2) + 1e-3))


# --------------------------------------------------------------------------- instance norm vs torch

IN_SHAPES = [(2, 3, 5, 4), (3, 4, 7), (1, 2, 3, 40), (2, 3, 2, 3, 2)]


@pytest.mark.parametrize("shape", IN_SHAPES)
@pytest.mark.parametrize("mode", ["plain", "track", "running"])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("momentum", [0.1, 1.0, -1.2, 1.5])
def test_instance_norm_matches_pytorch(schedule, shape, mode, affine, momentum):
    """``plain``: own statistics, nothing tracked; ``track``: own statistics, running ones
    updated in place; ``running``: the running statistics normalise (use_input_stats=False).
    Momentum outside [0, 1] computes as in PyTorch."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    C = shape[1]
    x = rng.standard_normal(shape) * 2 + 3
    w, b = (rng.standard_normal(C), rng.standard_normal(C)) if affine else (None, None)
    dy = rng.standard_normal(shape)
    rm0, rv0 = rng.standard_normal(C), rng.uniform(0.5, 2, C)
    rm, rv = (rm0.copy(), rv0.copy()) if mode != "plain" else (None, None)
    rmt, rvt = (torch.tensor(rm0), torch.tensor(rv0)) if mode != "plain" else (None, None)
    use = mode != "running"
    ry, rdx, rdw, rdb = _torch_grads(
        torch, lambda xt, wt, bt: torch.nn.functional.instance_norm(
            xt, rmt, rvt, wt, bt, use, momentum, 1e-5), x, w, b, dy)
    y, mean, rstd = nc.instance_norm(x, rm, rv, w, b, use, momentum, return_stats=True)
    assert mean.shape == rstd.shape == shape[:2]
    _close(y, ry)
    dx, dw, db = nc.instance_norm_backward(dy, x, mean, rstd, w, use)
    _close(dx, rdx)
    if affine:
        _close(dw, rdw)
        _close(db, rdb)
    else:
        assert dw is None and db is None
    if mode != "plain":
        _close(rm, rmt.numpy())
        _close(rv, rvt.numpy())
    if mode == "running":  # eval mode leaves the running statistics alone
        np.testing.assert_array_equal(rm, rm0)
        np.testing.assert_array_equal(rv, rv0)


def test_instance_norm_running_statistics_published_formula():
    """PyTorch's documentation: running = (1 - momentum) * running + momentum * stat, the
    statistics averaged over the batch, the unbiased variance for running_var."""
    rng = np.random.default_rng(4)
    rm, rv = np.zeros(3), np.ones(3)
    erm, erv = np.zeros(3), np.ones(3)
    for step in range(3):
        x = rng.standard_normal((4, 3, 5)) * (step + 1) + step
        nc.instance_norm(x, rm, rv, momentum=0.2)
        erm = 0.8 * erm + 0.2 * x.mean(axis=2).mean(axis=0)
        erv = 0.8 * erv + 0.2 * x.var(axis=2, ddof=1).mean(axis=0)
        _close(rm, erm, 1e-12)
        _close(rv, erv, 1e-12)


# --------------------------------------------------------------------------- layer norm vs torch

LN_CASES = [((2, 6, 5, 3), (6, 5, 3)), ((2, 6, 5, 3), (5, 3)), ((2, 6, 5, 3), 3),
            ((3, 7), (7,)), ((7,), 7), ((2, 3, 4), (2, 3, 4)), ((5, 3, 100), (100,)),
            ((2, 1, 3000), (1, 3000)), ((3, 2, 2500), (2, 2500))]  # (rows over one tile)


@pytest.mark.parametrize("shape,ns", LN_CASES)
@pytest.mark.parametrize("affine", ["both", "none", "weight", "bias"])
def test_layer_norm_matches_pytorch(schedule, shape, ns, affine):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    nshape = (ns,) if isinstance(ns, int) else ns
    x = rng.standard_normal(shape) * 4 - 2
    w = rng.standard_normal(nshape) if affine in ("both", "weight") else None
    b = rng.standard_normal(nshape) if affine in ("both", "bias") else None
    dy = rng.standard_normal(shape)
    ry, rdx, rdw, rdb = _torch_grads(
        torch, lambda xt, wt, bt: torch.nn.functional.layer_norm(xt, nshape, wt, bt, 1e-5),
        x, w, b, dy)
    y, mean, rstd = nc.layer_norm(x, ns, w, b, return_stats=True)
    assert mean.shape == rstd.shape == shape[:len(shape) - len(nshape)]
    _close(y, ry)
    dx, dw, db = nc.layer_norm_backward(dy, x, ns, mean, rstd, w,
                                        affine=w is not None or b is not None)
    _close(dx, rdx)
    if rdw is not None:
        _close(dw, rdw)
    if rdb is not None:
        _close(db, rdb)


# --------------------------------------------------------------------------- sweeps


@st.composite
def nc_shape(draw, min_spatial=0):
    n = draw(st.integers(1, 4))
    c = draw(st.integers(1, 6))
    spatial = tuple(draw(st.lists(st.integers(1, 6), min_size=min_spatial, max_size=3)))
    return (n, c) + spatial


@given(shape=nc_shape(), data=st.data(), seed=st.integers(0, 2**32 - 1),
       eps=st.sampled_from([1e-5, 1e-3, 0.5]))
def test_group_norm_sweep_matches_pytorch(shape, data, seed, eps):
    torch = pytest.importorskip("torch")
    C = shape[1]
    G = data.draw(st.sampled_from([g for g in range(1, C + 1) if C % g == 0]))
    S = int(np.prod(shape[2:]))
    if shape[0] * (C // G) * S == 1:
        shape = (2,) + shape[1:]
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * rng.uniform(0.1, 10) + rng.uniform(-10, 10)
    w, b, dy = rng.standard_normal(C), rng.standard_normal(C), rng.standard_normal(shape)
    ry, rdx, rdw, rdb = _torch_grads(
        torch, lambda xt, wt, bt: torch.nn.functional.group_norm(xt, G, wt, bt, eps),
        x, w, b, dy)
    y, mean, rstd = nc.group_norm(x, G, w, b, eps, return_stats=True)
    dx, dw, db = nc.group_norm_backward(dy, x, G, mean, rstd, w)
    tol = 1e-9 if (C // G) * S > 1 else None  # one value per group: gradients are rounding
    # a group whose values nearly agree leaves x - mean to rounding (see _cancellation_floor)
    spread = np.ptp(x.reshape(shape[0], G, -1), axis=2).min()
    floor = _cancellation_floor(x, eps) if spread < 1e-9 * np.abs(x).max() else 0.0
    _close(y, ry, 1e-9, floor)
    if tol:
        _close(dx, rdx, tol, max(floor * float(np.abs(w).max()) * float(np.abs(dy).max())
                                 / np.sqrt(eps), _gradient_floor(w, dy, rstd)))
        _close(dw, rdw, tol)
    _close(db, rdb, 1e-9)


@given(shape=nc_shape(min_spatial=1), seed=st.integers(0, 2**32 - 1),
       use=st.booleans(), momentum=st.floats(-2, 2))
def test_instance_norm_sweep_matches_pytorch(shape, seed, use, momentum):
    torch = pytest.importorskip("torch")
    if int(np.prod(shape[2:])) == 1:
        shape = shape + (2,)
    C = shape[1]
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * rng.uniform(0.1, 10) + rng.uniform(-10, 10)
    w, b, dy = rng.standard_normal(C), rng.standard_normal(C), rng.standard_normal(shape)
    rm, rv = rng.standard_normal(C), rng.uniform(0.5, 2, C)
    rmt, rvt = torch.tensor(rm), torch.tensor(rv)
    ry, rdx, rdw, rdb = _torch_grads(
        torch, lambda xt, wt, bt: torch.nn.functional.instance_norm(
            xt, rmt, rvt, wt, bt, use, momentum, 1e-5), x, w, b, dy)
    y, mean, rstd = nc.instance_norm(x, rm, rv, w, b, use, momentum, return_stats=True)
    dx, dw, db = nc.instance_norm_backward(dy, x, mean, rstd, w, use)
    for a, ref in ((y, ry), (dw, rdw), (db, rdb), (rm, rmt.numpy()), (rv, rvt.numpy())):
        _close(a, ref, 1e-9)
    _close(dx, rdx, 1e-9, _gradient_floor(w, dy, rstd) if use else 0.0)


@given(shape=st.lists(st.integers(1, 6), min_size=1, max_size=4), data=st.data(),
       seed=st.integers(0, 2**32 - 1))
def test_layer_norm_sweep_matches_pytorch(shape, data, seed):
    torch = pytest.importorskip("torch")
    shape = tuple(shape)
    k = data.draw(st.integers(1, len(shape)))
    ns = shape[len(shape) - k:]
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * rng.uniform(0.1, 10) + rng.uniform(-10, 10)
    w, b, dy = rng.standard_normal(ns), rng.standard_normal(ns), rng.standard_normal(shape)
    ry, rdx, rdw, rdb = _torch_grads(
        torch, lambda xt, wt, bt: torch.nn.functional.layer_norm(xt, ns, wt, bt, 1e-5),
        x, w, b, dy)
    y, mean, rstd = nc.layer_norm(x, ns, w, b, return_stats=True)
    dx, dw, db = nc.layer_norm_backward(dy, x, ns, mean, rstd, w)
    # a sample whose values nearly agree leaves x - mean to rounding (see _cancellation_floor)
    spread = np.ptp(x.reshape(-1, int(np.prod(ns))), axis=1).min()
    floor = _cancellation_floor(x, 1e-5) if spread < 1e-9 * np.abs(x).max() else 0.0
    _close(y, ry, 1e-9, floor)
    if int(np.prod(ns)) > 1:  # one value per sample: dx and dweight are rounding noise
        _close(dx, rdx, 1e-9, max(floor * float(np.abs(w).max()) * float(np.abs(dy).max())
                                  / np.sqrt(1e-5), _gradient_floor(w, dy, rstd)))
        _close(dw, rdw, 1e-9)
    _close(db, rdb, 1e-9)


# --------------------------------------------------------------------------- finite differences


def test_functional_ops_pass_gradcheck(schedule):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((3, 4, 5, 2)) * 2 + 1
    w, b = rng.standard_normal(4), rng.standard_normal(4)
    assert gradcheck(
        lambda x, w, b: nc.group_norm(x, 2, w, b), (x, w, b),
        lambda dy, x, w, b: nc.group_norm_backward(dy, x, 2, *nc.group_norm(
            x, 2, w, b, return_stats=True)[1:], w))
    assert gradcheck(
        lambda x, w, b: nc.instance_norm(x, None, None, w, b), (x, w, b),
        lambda dy, x, w, b: nc.instance_norm_backward(dy, x, *nc.instance_norm(
            x, None, None, w, b, return_stats=True)[1:], w))
    rm, rv = rng.standard_normal(4), rng.uniform(0.5, 2, 4)
    assert gradcheck(
        lambda x, w, b: nc.instance_norm(x, rm, rv, w, b, use_input_stats=False), (x, w, b),
        lambda dy, x, w, b: nc.instance_norm_backward(dy, x, *nc.instance_norm(
            x, rm, rv, w, b, use_input_stats=False, return_stats=True)[1:], w,
            use_input_stats=False))
    wl, bl = rng.standard_normal((5, 2)), rng.standard_normal((5, 2))
    assert gradcheck(
        lambda x, w, b: nc.layer_norm(x, (5, 2), w, b), (x, wl, bl),
        lambda dy, x, w, b: nc.layer_norm_backward(dy, x, (5, 2), *nc.layer_norm(
            x, (5, 2), w, b, return_stats=True)[1:], w))


@pytest.mark.parametrize("make,shape", [
    (lambda: nn.GroupNorm(3, 6), (2, 6, 4, 3)),
    (lambda: nn.GroupNorm(1, 4, affine=False), (3, 4, 5)),
    (lambda: nn.InstanceNorm1d(3, affine=True), (2, 3, 7)),
    (lambda: nn.InstanceNorm1d(3, affine=True), (3, 7)),
    (lambda: nn.InstanceNorm2d(3, affine=True, track_running_stats=True), (2, 3, 4, 5)),
    (lambda: nn.InstanceNorm2d(3), (3, 4, 5)),
    (lambda: nn.LayerNorm((4, 5)), (2, 3, 4, 5)),
    (lambda: nn.LayerNorm(5, bias=False), (3, 5)),
    (lambda: nn.LayerNorm([3, 5], elementwise_affine=False), (2, 3, 5)),
])
@pytest.mark.parametrize("training", [True, False])
def test_layers_pass_gradcheck(make, shape, training):
    rng = np.random.default_rng(8)
    layer = make().astype(np.float64)
    for p in layer.parameters():  # away from the ones/zeros initialisation
        p.data[...] = rng.standard_normal(p.data.shape)
    layer.train(training)
    assert gradcheck(layer, rng.standard_normal(shape) * 2 + 1)


# --------------------------------------------------------------------------- layers vs torch


def _copy_params(ours, theirs, torch):
    with torch.no_grad():
        for name, p in ours.named_parameters():
            getattr(theirs, name).copy_(torch.tensor(p.data))


@pytest.mark.parametrize("dtype", DTYPES)
def test_group_norm_layer_matches_pytorch(dtype):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(9)
    ours = nn.GroupNorm(4, 8, eps=1e-4).astype(dtype)
    theirs = torch.nn.GroupNorm(4, 8, eps=1e-4).to(torch.float64)
    for p in ours.parameters():
        p.data[...] = rng.standard_normal(p.data.shape)
    _copy_params(ours, theirs, torch)
    x = rng.standard_normal((3, 8, 5, 7)).astype(dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    xt = torch.tensor(x.astype(np.float64), requires_grad=True)
    theirs(xt).backward(torch.tensor(dy.astype(np.float64)))
    y = ours(x)
    dx = ours.backward(dy)
    assert y.dtype == dx.dtype == ours.weight.grad.dtype == dtype
    rtol = 1e-10 if dtype == np.float64 else 1e-5
    _close(y, theirs(xt).detach().numpy(), rtol)
    _close(dx, xt.grad.numpy(), rtol)
    _close(ours.weight.grad, theirs.weight.grad.numpy(), rtol)
    _close(ours.bias.grad, theirs.bias.grad.numpy(), rtol)
    assert sorted(ours.state_dict()) == sorted(theirs.state_dict())


@pytest.mark.parametrize("cls,shape", [("InstanceNorm1d", (3, 4, 9)), ("InstanceNorm1d", (4, 9)),
                                       ("InstanceNorm2d", (3, 4, 5, 6)),
                                       ("InstanceNorm2d", (4, 5, 6))])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("track", [True, False])
def test_instance_norm_layer_matches_pytorch_over_train_and_eval_steps(cls, shape, affine,
                                                                       track):
    """Three training steps (running statistics updated when tracked), then eval (running
    statistics used when tracked); unbatched inputs as PyTorch takes them."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(10)
    ours = getattr(nn, cls)(4, momentum=0.3, affine=affine, track_running_stats=track)
    ours = ours.astype(np.float64)
    theirs = getattr(torch.nn, cls)(4, momentum=0.3, affine=affine,
                                    track_running_stats=track).to(torch.float64)
    for p in ours.parameters():
        p.data[...] = rng.standard_normal(p.data.shape)
    _copy_params(ours, theirs, torch)
    assert sorted(ours.state_dict()) == sorted(theirs.state_dict())
    for step, training in enumerate([True, True, True, False]):
        ours.train(training)
        theirs.train(training)
        ours.zero_grad()
        theirs.zero_grad()
        x = rng.standard_normal(shape) * (step + 1) + step
        dy = rng.standard_normal(shape)
        xt = torch.tensor(x, requires_grad=True)
        yt = theirs(xt)
        yt.backward(torch.tensor(dy))
        y = ours(x)
        dx = ours.backward(dy)
        _close(y, yt.detach().numpy())
        _close(dx, xt.grad.numpy())
        for name, p in ours.named_parameters():
            _close(p.grad, getattr(theirs, name).grad.numpy())
        for name, buf in ours.named_buffers():
            _close(buf, theirs.state_dict()[name].numpy())


@pytest.mark.parametrize("ns,shape", [((6, 5, 4), (2, 6, 5, 4)), (4, (3, 2, 4)), ([5], (5,))])
@pytest.mark.parametrize("affine,bias", [(True, True), (True, False), (False, True)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_layer_norm_layer_matches_pytorch(ns, shape, affine, bias, dtype):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(11)
    ours = nn.LayerNorm(ns, eps=1e-3, elementwise_affine=affine, bias=bias).astype(dtype)
    theirs = torch.nn.LayerNorm(ns, eps=1e-3, elementwise_affine=affine,
                                bias=bias).to(torch.float64)
    for p in ours.parameters():
        p.data[...] = rng.standard_normal(p.data.shape)
    _copy_params(ours, theirs, torch)
    assert sorted(ours.state_dict()) == sorted(theirs.state_dict())
    x = rng.standard_normal(shape).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    xt = torch.tensor(x.astype(np.float64), requires_grad=True)
    yt = theirs(xt)
    yt.backward(torch.tensor(dy.astype(np.float64)))
    y = ours(x)
    dx = ours.backward(dy)
    assert y.dtype == dx.dtype == dtype
    rtol = 1e-10 if dtype == np.float64 else 1e-5
    _close(y, yt.detach().numpy(), rtol)
    _close(dx, xt.grad.numpy(), rtol)
    for name, p in ours.named_parameters():
        assert p.grad.dtype == dtype
        _close(p.grad, getattr(theirs, name).grad.numpy(), rtol)


# --------------------------------------------------------------------------- recording


def _recorded_models(torch):
    class Ours(nn.Module):  # no backward: recorded as it runs
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)
            self.gn = nn.GroupNorm(4, 8)
            self.inorm = nn.InstanceNorm2d(8, affine=True, track_running_stats=True)
            self.ln = nn.LayerNorm([8, 5, 6])
            self.scale = nn.Parameter(np.ones(8))
            self.shift = nn.Parameter(np.zeros((5, 6)))
            self.fc = nn.Linear(8 * 5 * 6, 3)

        def forward(self, x):
            h = nc.relu(self.gn(self.conv(x)))  # (ReLUs keep every bias's gradient non-zero)
            h = nc.relu(self.inorm(h)) + nc.group_norm(h, 2, self.scale)
            h = nc.relu(nc.instance_norm(h, weight=self.scale, bias=self.scale))
            h = nc.layer_norm(self.ln(h), (5, 6), None, self.shift)
            return self.fc(h.reshape(h.shape[0], -1))

    tnn, tF = torch.nn, torch.nn.functional

    class Theirs(tnn.Module):
        def __init__(self):
            super().__init__()
            self.conv = tnn.Conv2d(3, 8, 3, padding=1)
            self.gn = tnn.GroupNorm(4, 8)
            self.inorm = tnn.InstanceNorm2d(8, affine=True, track_running_stats=True)
            self.ln = tnn.LayerNorm([8, 5, 6])
            self.scale = tnn.Parameter(torch.ones(8))
            self.shift = tnn.Parameter(torch.zeros(5, 6))
            self.fc = tnn.Linear(8 * 5 * 6, 3)

        def forward(self, x):
            h = tF.relu(self.gn(self.conv(x)))
            h = tF.relu(self.inorm(h)) + tF.group_norm(h, 2, self.scale)
            h = tF.relu(tF.instance_norm(h, weight=self.scale, bias=self.scale))
            h = tF.layer_norm(self.ln(h), (5, 6), None, self.shift)
            return self.fc(h.reshape(h.shape[0], -1))

    return Ours, Theirs


def test_recorded_forward_matches_pytorch():
    torch = pytest.importorskip("torch")
    Ours, Theirs = _recorded_models(torch)
    nc.manual_seed(0)
    ours = Ours().astype(np.float64)
    theirs = Theirs().to(torch.float64)
    rng = np.random.default_rng(12)
    for p in ours.parameters():
        p.data[...] = rng.standard_normal(p.data.shape) * 0.5
    theirs.load_state_dict({k: torch.tensor(v) for k, v in ours.state_dict().items()})
    x = rng.standard_normal((4, 3, 5, 6))
    y = rng.integers(0, 3, 4)
    for _ in range(2):  # the running statistics move on between the steps
        ours.zero_grad()
        theirs.zero_grad()
        loss = nn.CrossEntropyLoss()(ours(x), y)
        loss.backward()
        tloss = torch.nn.functional.cross_entropy(theirs(torch.tensor(x)), torch.tensor(y))
        tloss.backward()
        assert abs(loss.item() - tloss.item()) <= 1e-10 * abs(tloss.item())
        for name, p in ours.named_parameters():
            _close(p.grad, theirs.get_parameter(name).grad.numpy())
        for name, buf in ours.named_buffers():
            _close(buf, theirs.get_buffer(name).numpy())


def test_recorded_ops_are_named_in_the_graph():
    x = nc.nn.Parameter(np.random.default_rng(13).standard_normal((2, 4, 3)))
    for fn, name in ((lambda: nc.group_norm(x, 2), "group_norm"),
                     (lambda: nc.instance_norm(x), "instance_norm"),
                     (lambda: nc.layer_norm(x, 3), "layer_norm")):
        out = fn()
        assert out.recorded_by == name
        out.backward(np.ones(out.shape))


# --------------------------------------------------------------------------- dtypes and layouts


@pytest.mark.parametrize("dtype", DTYPES + [np.int32, np.bool_])
def test_output_dtype_follows_the_input(dtype):
    x = (np.arange(48).reshape(2, 4, 6) % 5).astype(dtype)
    out = np.float32 if dtype in (np.int32, np.bool_) else dtype
    w64 = np.ones(4)  # the other arrays are cast to the input's dtype
    for y in (nc.group_norm(x, 2, w64, w64), nc.instance_norm(x, weight=w64),
              nc.layer_norm(x, 6, np.ones(6))):
        assert y.dtype == out
    y, m, r = nc.group_norm(x, 2, return_stats=True)
    assert m.dtype == r.dtype == out
    assert nc.group_norm_backward(x, x, 2, m, r, w64)[0].dtype == out


@pytest.mark.parametrize("dtype", [np.float16, np.complex64])
def test_float16_and_complex_are_refused(dtype):
    x = np.ones((2, 4, 3), dtype)
    for fn in (lambda: nc.group_norm(x, 2), lambda: nc.instance_norm(x),
               lambda: nc.layer_norm(x, 3)):
        with pytest.raises(TypeError, match="'x'"):
            fn()


def test_float32_is_close_to_float64():
    rng = np.random.default_rng(14)
    x = rng.standard_normal((4, 8, 9, 7)) * 3 + 100  # a large mean: the float64 sums matter
    for fn in (lambda a: nc.group_norm(a, 4), lambda a: nc.instance_norm(a),
               lambda a: nc.layer_norm(a, (8, 9, 7))):
        np.testing.assert_allclose(fn(x.astype(np.float32)), fn(x), atol=2e-4)


def test_float32_gradients_of_long_rows_are_close_to_float64(schedule):
    """Rows longer than ``_LONG_ROW`` accumulate layer norm's weight gradients per chunk of
    rows in float32."""
    rng = np.random.default_rng(22)
    M = _norms._LONG_ROW + 5
    x = rng.standard_normal((3, M)) * 2 + 50
    dy, w = rng.standard_normal((3, M)), rng.standard_normal(M)
    ref = nc.layer_norm_backward(dy, x, M, *nc.layer_norm(x, M, w, return_stats=True)[1:], w)
    x32, dy32, w32 = x.astype(np.float32), dy.astype(np.float32), w.astype(np.float32)
    got = nc.layer_norm_backward(dy32, x32, M, *nc.layer_norm(x32, M, w32,
                                                              return_stats=True)[1:], w32)
    for a, b in zip(got, ref):
        assert a.dtype == np.float32
        _close(a, b, 1e-4)


def test_non_contiguous_and_read_only_inputs_give_the_same_result():
    rng = np.random.default_rng(15)
    x = rng.standard_normal((3, 4, 5, 6))
    w = rng.standard_normal(4)
    ref = nc.group_norm(x, 2, w)
    xf = np.asfortranarray(x)
    xneg = np.flip(np.flip(x, 0).copy(), 0)
    xro = x.copy()
    xro.flags.writeable = False
    wro = np.broadcast_to(w, (4,))
    for a in (xf, xneg):  # copied to C order
        np.testing.assert_array_equal(nc.group_norm(a, 2, w), ref)
    # read-only arrays are used in place (numba compiles them apart, and may sum them in
    # another order: equal to rounding)
    _close(nc.group_norm(xro, 2, wro), ref, 1e-14)
    y, m, r = nc.layer_norm(xro, (5, 6), return_stats=True)
    dy = rng.standard_normal(x.shape)
    dro = dy.copy()
    dro.flags.writeable = False
    _close(nc.layer_norm_backward(dro, xro, (5, 6), m, r)[0],
           nc.layer_norm_backward(dy, x, (5, 6), m, r)[0], 1e-14)
    _close(nc.instance_norm(xro), nc.instance_norm(x), 1e-14)


def test_backward_leaves_dy_alone():
    rng = np.random.default_rng(16)
    x, dy = rng.standard_normal((2, 4, 5)), rng.standard_normal((2, 4, 5))
    keep = dy.copy()
    _, m, r = nc.group_norm(x, 2, return_stats=True)
    nc.group_norm_backward(dy, x, 2, m, r, np.ones(4))
    _, m, r = nc.layer_norm(x, 5, return_stats=True)
    nc.layer_norm_backward(dy, x, 5, m, r, np.ones(5))
    np.testing.assert_array_equal(dy, keep)


# --------------------------------------------------------------------------- empty and non-finite


def test_empty_batch_maps_to_empty_and_leaves_running_statistics():
    x = np.zeros((0, 4, 3, 2), np.float32)
    w = np.ones(4, np.float32)
    y, m, r = nc.group_norm(x, 2, w, w, return_stats=True)
    assert y.shape == x.shape and m.shape == (0, 2)
    dx, dw, db = nc.group_norm_backward(x, x, 2, m, r, w)
    assert dx.shape == x.shape and not dw.any() and not db.any() and dw.dtype == np.float32
    rm, rv = np.full(4, 0.5), np.full(4, 2.0)
    y, m, r = nc.instance_norm(x, rm, rv, w, w, return_stats=True)
    assert y.shape == x.shape and m.shape == (0, 4)
    np.testing.assert_array_equal(rm, 0.5)  # PyTorch makes them NaN; left alone here
    np.testing.assert_array_equal(rv, 2.0)
    assert not nc.instance_norm_backward(x, x, m, r, w)[1].any()
    y, m, r = nc.layer_norm(x, (3, 2), return_stats=True)
    assert y.shape == x.shape and m.shape == (0, 4)
    dx, dw, db = nc.layer_norm_backward(x, x, (3, 2), m, r, np.ones((3, 2)))
    assert dx.shape == x.shape and dw.shape == (3, 2) and not dw.any()
    for layer in (nn.GroupNorm(2, 4), nn.InstanceNorm2d(4, affine=True,
                                                        track_running_stats=True),
                  nn.LayerNorm((3, 2))):
        assert layer(x).shape == x.shape and layer.backward(x).shape == x.shape


def test_empty_rows_give_empty_outputs():
    for x in (np.zeros((2, 4, 0)), np.zeros((2, 0, 3))):
        assert nc.group_norm(x, 2 if x.shape[1] else 1).shape == x.shape
        assert nc.instance_norm(x).shape == x.shape
    assert nc.layer_norm(np.zeros((3, 0)), 0).shape == (3, 0)


def test_nan_and_inf_spread_over_their_own_statistics_only_as_pytorch():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(17).standard_normal((3, 4, 5))
    x[0, 1, 2] = np.nan
    x[1, 3, 0] = np.inf
    x[2, 0, 4] = -np.inf
    xt = torch.tensor(x)
    F = torch.nn.functional
    for ours, theirs in ((nc.group_norm(x, 2), F.group_norm(xt, 2)),
                         (nc.instance_norm(x), F.instance_norm(xt)),
                         (nc.layer_norm(x, 5), F.layer_norm(xt, (5,))),
                         (nc.layer_norm(x, (4, 5)), F.layer_norm(xt, (4, 5)))):
        theirs = theirs.numpy()
        np.testing.assert_array_equal(np.isnan(ours), np.isnan(theirs))
        assert np.isfinite(ours[~np.isnan(theirs)]).all()
        _close(ours[~np.isnan(theirs)], theirs[~np.isnan(theirs)])


# --------------------------------------------------------------------------- bad arguments


@pytest.mark.parametrize("call,exc,match", [
    (lambda x: nc.group_norm(x, 3), ValueError, "num_groups"),
    (lambda x: nc.group_norm(x, 0), ValueError, "num_groups"),
    (lambda x: nc.group_norm(x, 2.0), TypeError, "num_groups"),
    (lambda x: nc.group_norm(x, 2, np.ones(3)), ValueError, "weight"),
    (lambda x: nc.group_norm(x, 2, None, np.ones((4, 1))), ValueError, "bias"),
    (lambda x: nc.group_norm(x, 2, eps=-1.0), ValueError, "eps"),
    (lambda x: nc.group_norm(x, 2, eps="1"), TypeError, "eps"),
    (lambda x: nc.group_norm(x[0, 0], 1), ValueError, "'x'"),
    (lambda x: nc.group_norm(x[:1, :1, :1], 1), ValueError, "more than 1 value"),
    (lambda x: nc.group_norm(x, 2, return_stats="yes"), TypeError, "return_stats"),
    (lambda x: nc.instance_norm(x, momentum=np.nan), ValueError, "momentum"),
    (lambda x: nc.instance_norm(x, momentum=None), TypeError, "momentum"),
    (lambda x: nc.instance_norm(x, use_input_stats=False), ValueError, "running_mean"),
    (lambda x: nc.instance_norm(x, [0.0] * 4, np.ones(4)), TypeError, "running_mean"),
    (lambda x: nc.instance_norm(x, np.zeros(3), np.ones(3)), ValueError, "running_mean"),
    (lambda x: nc.instance_norm(x, np.zeros(4, np.int64), np.ones(4)), TypeError,
     "running_mean"),
    (lambda x: nc.instance_norm(x[:, :, :1]), ValueError, "spatial"),
    (lambda x: nc.instance_norm(x, use_input_stats=1), TypeError, "use_input_stats"),
    (lambda x: nc.layer_norm(x, 4), ValueError, "normalized_shape"),
    (lambda x: nc.layer_norm(x, ()), ValueError, "normalized_shape"),
    (lambda x: nc.layer_norm(x, (4, 5.0)), TypeError, "normalized_shape"),
    (lambda x: nc.layer_norm(x, -5), ValueError, "normalized_shape"),
    (lambda x: nc.layer_norm(x, 5, np.ones(4)), ValueError, "weight"),
    (lambda x: nc.layer_norm(x, (4, 5), None, np.ones(5)), ValueError, "bias"),
    (lambda x: nc.group_norm_backward(x[:1], x, 2, np.zeros((2, 2)), np.ones((2, 2))),
     ValueError, "dy"),
    (lambda x: nc.group_norm_backward(x, x, 2, np.zeros((2, 4)), np.ones((2, 2))),
     ValueError, "mean"),
    (lambda x: nc.instance_norm_backward(x, x, np.zeros((2, 4)), np.ones(4)), ValueError,
     "rstd"),
    (lambda x: nc.layer_norm_backward(x, x, 5, np.zeros(2), np.ones((2, 4))), ValueError,
     "mean"),
    (lambda x: nc.layer_norm_backward(x, x, 5, np.zeros((2, 4)), np.ones((2, 4)),
                                      affine="no"), TypeError, "affine"),
])
def test_bad_arguments_raise_naming_them(call, exc, match):
    x = np.random.default_rng(18).standard_normal((2, 4, 5))
    with pytest.raises(exc, match=match):
        call(x)


def test_read_only_running_statistics_are_refused_when_updated():
    x = np.random.default_rng(19).standard_normal((2, 4, 5))
    rm = np.zeros(4)
    rm.flags.writeable = False
    with pytest.raises(ValueError, match="running_mean"):
        nc.instance_norm(x, rm, np.ones(4))
    nc.instance_norm(x, rm, np.ones(4), use_input_stats=False)  # only read


@pytest.mark.parametrize("make,match", [
    (lambda: nn.GroupNorm(3, 4), "num_channels"),
    (lambda: nn.GroupNorm(0, 4), "num_groups"),
    (lambda: nn.GroupNorm(2, 4, eps=-1), "eps"),
    (lambda: nn.GroupNorm(2, 4, affine=1), "affine"),
    (lambda: nn.InstanceNorm2d(0), "num_features"),
    (lambda: nn.InstanceNorm2d(4, momentum="0.1"), "momentum"),
    (lambda: nn.InstanceNorm1d(4, track_running_stats="yes"), "track_running_stats"),
    (lambda: nn.LayerNorm(()), "normalized_shape"),
    (lambda: nn.LayerNorm((3, -1)), "normalized_shape"),
    (lambda: nn.LayerNorm(3, elementwise_affine=None), "elementwise_affine"),
    (lambda: nn.LayerNorm(3, bias="no"), "bias"),
])
def test_bad_constructor_arguments_raise_in_the_constructor(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


def test_layers_refuse_inputs_of_the_wrong_layout():
    with pytest.raises(ValueError, match="GroupNorm.*channels"):
        nn.GroupNorm(2, 4)(np.ones((2, 6, 3)))
    with pytest.raises(ValueError, match="InstanceNorm2d.*4-D"):
        nn.InstanceNorm2d(4)(np.ones((2, 4, 3, 3, 3)))
    with pytest.raises(ValueError, match="InstanceNorm1d.*3-D"):
        nn.InstanceNorm1d(4)(np.ones((2, 4, 3, 3)))
    with pytest.raises(ValueError, match="num_features"):
        nn.InstanceNorm2d(4, affine=True)(np.ones((2, 5, 3, 3)))
    with pytest.warns(UserWarning, match="num_features"):  # unused without affine: PyTorch warns
        nn.InstanceNorm2d(4)(np.random.default_rng(0).standard_normal((2, 5, 3, 3)))
    with pytest.raises(ValueError, match="normalized_shape"):
        nn.LayerNorm((3, 4))(np.ones((2, 4, 3)))


def test_backward_without_forward_raises():
    for layer in (nn.GroupNorm(2, 4), nn.InstanceNorm1d(4), nn.LayerNorm(3)):
        with pytest.raises(RuntimeError, match="without a cached forward"):
            layer.backward(np.ones((2, 4, 3)))
        with nc.no_grad():
            layer(np.random.default_rng(0).standard_normal((2, 4, 3)))
        with pytest.raises(RuntimeError, match="without a cached forward"):
            layer.backward(np.ones((2, 4, 3)))


# --------------------------------------------------------------------------- model files


def test_models_with_the_new_layers_round_trip_through_model_files():
    rng = np.random.default_rng(20)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.GroupNorm(4, 8, eps=1e-3), nn.ReLU(),
        nn.InstanceNorm2d(8, momentum=None, affine=True, track_running_stats=True),
        nn.LayerNorm([8, 5, 6], elementwise_affine=True, bias=False),
        nn.Flatten(), nn.Linear(240, 4))
    for p in model.parameters():
        p.data[...] = rng.standard_normal(p.data.shape).astype(np.float32)
    x = rng.standard_normal((2, 3, 5, 6)).astype(np.float32)
    model(x)
    model[3]._buffers["running_mean"][...] = rng.standard_normal(8)
    model.eval()
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "norms.h5")
        nc.save(model, path)
        again = nc.load(path)
    again.eval()
    assert [type(m).__name__ for m in again] == [type(m).__name__ for m in model]
    assert again[3]._config["momentum"] is None and again[4].bias is None
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(again.state_dict()[k], v)
    np.testing.assert_array_equal(again(x), model(x))


def test_instance_norm_with_momentum_none_keeps_its_running_statistics():
    layer = nn.InstanceNorm2d(3, momentum=None, track_running_stats=True)
    layer(np.random.default_rng(21).standard_normal((2, 3, 4, 4)))
    np.testing.assert_array_equal(layer.running_mean, 0.0)
    np.testing.assert_array_equal(layer.running_var, 1.0)

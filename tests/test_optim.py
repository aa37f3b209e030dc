"""Optimizers step by step against the published update rules (written out independently)."""

import numpy as np
import pytest

from nbconv.nn import Parameter
from nbconv.optim import SGD, Adam


def _params(rng, dtype=np.float64):
    return [Parameter(rng.standard_normal((3, 4)).astype(dtype), "w"),
            Parameter(rng.standard_normal(5).astype(dtype), "b")]


def _grads(rng, steps):
    return [[rng.standard_normal((3, 4)), rng.standard_normal(5)] for _ in range(steps)]


@pytest.mark.parametrize("momentum,nesterov,wd,dampening", [
    (0.0, False, 0.0, 0.0), (0.9, False, 0.0, 0.0), (0.9, True, 1e-2, 0.0),
    (0.5, False, 1e-3, 0.3),
])
def test_sgd_matches_published_rule(momentum, nesterov, wd, dampening):
    rng = np.random.default_rng(0)
    params = _params(rng)
    ref = [p.data.copy() for p in params]
    bufs = [None, None]
    opt = SGD(params, lr=0.1, momentum=momentum, weight_decay=wd, nesterov=nesterov,
              dampening=dampening)
    for step_grads in _grads(rng, 6):
        for p, g in zip(params, step_grads):
            p.grad[...] = g
        opt.step()
        for i, g in enumerate(step_grads):
            d = g + wd * ref[i]
            if momentum:
                bufs[i] = d.copy() if bufs[i] is None else momentum * bufs[i] + (1 - dampening) * d
                d = d + momentum * bufs[i] if nesterov else bufs[i]
            ref[i] = ref[i] - 0.1 * d
        for p, r in zip(params, ref):
            np.testing.assert_allclose(p.data, r, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("wd", [0.0, 1e-2])
def test_adam_matches_published_rule(wd):
    rng = np.random.default_rng(1)
    params = _params(rng)
    ref = [p.data.copy() for p in params]
    m = [np.zeros_like(r) for r in ref]
    v = [np.zeros_like(r) for r in ref]
    lr, b1, b2, eps = 1e-2, 0.8, 0.99, 1e-8
    opt = Adam(params, lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd)
    for t, step_grads in enumerate(_grads(rng, 6), start=1):
        for p, g in zip(params, step_grads):
            p.grad[...] = g
        opt.step()
        for i, g in enumerate(step_grads):
            g = g + wd * ref[i]
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            mhat, vhat = m[i] / (1 - b1**t), v[i] / (1 - b2**t)
            ref[i] = ref[i] - lr * mhat / (np.sqrt(vhat) + eps)
        for p, r in zip(params, ref):
            np.testing.assert_allclose(p.data, r, rtol=1e-10, atol=1e-12)


def test_state_dict_resumes_identically():
    rng = np.random.default_rng(2)
    grads = _grads(rng, 6)
    for make in (lambda ps: SGD(ps, lr=0.1, momentum=0.9, nesterov=True),
                 lambda ps: Adam(ps, lr=1e-2)):
        a = _params(np.random.default_rng(3))
        b = _params(np.random.default_rng(3))
        opt_a = make(a)
        for g in grads:
            for p, gi in zip(a, g):
                p.grad[...] = gi
            opt_a.step()
        opt_b = make(b)
        for g in grads[:3]:
            for p, gi in zip(b, g):
                p.grad[...] = gi
            opt_b.step()
        state = opt_b.state_dict()
        opt_c = make(b)
        opt_c.load_state_dict(state)
        for g in grads[3:]:
            for p, gi in zip(b, g):
                p.grad[...] = gi
            opt_c.step()
        for pa, pb in zip(a, b):
            np.testing.assert_array_equal(pa.data, pb.data)


def test_float32_parameters_stay_float32():
    p = [Parameter(np.ones(3, np.float32), "w")]
    p[0].grad[...] = 0.5
    for opt in (SGD(p, lr=0.1, momentum=0.9), Adam(p)):
        opt.step()
        assert p[0].data.dtype == np.float32


def test_zero_grad_and_errors():
    p = [Parameter(np.ones(3), "w")]
    p[0].grad[...] = 2
    SGD(p, lr=0.1).zero_grad()
    assert not p[0].grad.any()
    with pytest.raises(ValueError, match="params"):
        SGD([], lr=0.1)
    with pytest.raises(ValueError, match="lr"):
        SGD(p, lr=-1)
    with pytest.raises(ValueError, match="nesterov"):
        SGD(p, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="betas"):
        Adam(p, betas=(1.0, 0.9))


def test_matches_torch_optimizers():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    grads = _grads(rng, 5)
    cases = [
        (lambda ps: SGD(ps, lr=0.05, momentum=0.9, weight_decay=1e-3, nesterov=True),
         lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, weight_decay=1e-3, nesterov=True)),
        (lambda ps: Adam(ps, lr=1e-2, weight_decay=1e-3),
         lambda ps: torch.optim.Adam(ps, lr=1e-2, weight_decay=1e-3)),
    ]
    for ours, theirs in cases:
        ps = _params(np.random.default_rng(5))
        ts = [torch.tensor(p.data.copy(), requires_grad=True) for p in ps]
        o, t = ours(ps), theirs(ts)
        for g in grads:
            for p, tp, gi in zip(ps, ts, g):
                p.grad[...] = gi
                tp.grad = torch.tensor(gi)
            o.step()
            t.step()
        for p, tp in zip(ps, ts):
            np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=1e-10, atol=1e-12)

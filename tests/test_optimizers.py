"""SGD, Adam, AdamW and RMSprop against torch.optim (float64 trajectories), parameter groups,
state dicts and model files (old files included), frozen parameters."""

import itertools
import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import nbconv as nc
from nbconv import nn, optim
from nbconv.nn import Parameter

SHAPES = [(3, 4), (5,), (2, 3, 2, 2)]
STEPS = 20


def _params(seed=0, dtype=np.float64, shapes=SHAPES):
    rng = np.random.default_rng(seed)
    return [Parameter(rng.standard_normal(s).astype(dtype), f"p{i}")
            for i, s in enumerate(shapes)]


def _grads(seed, steps=STEPS, shapes=SHAPES):
    rng = np.random.default_rng(seed)
    return [[rng.standard_normal(s) for s in shapes] for _ in range(steps)]


def _set_grads(params, grads):
    for p, g in zip(params, grads):
        p.grad[...] = g


def _torch_params(torch, params):
    return [torch.tensor(p.data.copy(), requires_grad=True) for p in params]


def _run_both(torch, ours, theirs, steps=STEPS, seed=1, dtype=np.float64, between=None):
    """Step nbconv's and torch's optimizer side by side on the same random gradients."""
    ps = _params(0, dtype)
    ts = _torch_params(torch, ps)
    o, t = ours(ps), theirs(ts)
    for k, step_grads in enumerate(_grads(seed, steps)):
        _set_grads(ps, step_grads)
        for tp, g in zip(ts, step_grads):
            tp.grad = torch.tensor(g.astype(dtype))
        o.step()
        t.step()
        if between is not None:
            between(k, o, t)
    return ps, ts, o, t


SGD_CASES = [dict(momentum=m, nesterov=n, weight_decay=wd, dampening=d)
             for m, n, wd, d in itertools.product([0.0, 0.9], [False, True], [0.0, 1e-2],
                                                  [0.0, 0.3])
             if not (n and (m == 0 or d != 0))]
ADAM_CASES = [dict(weight_decay=wd, amsgrad=a, betas=b)
              for wd, a, b in itertools.product([0.0, 0.05], [False, True],
                                                [(0.9, 0.999), (0.8, 0.99)])]
RMSPROP_CASES = [dict(weight_decay=wd, momentum=m, centered=c, alpha=a)
                 for wd, m, c, a in itertools.product([0.0, 1e-2], [0.0, 0.9], [False, True],
                                                      [0.99, 0.3])]
CASES = ([("SGD", dict(lr=0.05, **kw)) for kw in SGD_CASES]
         + [("Adam", dict(lr=1e-2, **kw)) for kw in ADAM_CASES]
         + [("AdamW", dict(lr=1e-2, **kw)) for kw in ADAM_CASES]
         + [("RMSprop", dict(lr=1e-2, **kw)) for kw in RMSPROP_CASES]
         + [("AdamW", {}), ("RMSprop", {}), ("Adam", {}), ("SGD", {})])  # the defaults


def _ids(case):
    name, kw = case
    return name + "-" + "-".join(f"{k}={v}" for k, v in kw.items())


@pytest.mark.parametrize("case", CASES, ids=[_ids(c) for c in CASES])
def test_trajectory_matches_torch_float64(case):
    torch = pytest.importorskip("torch")
    name, kw = case
    ps, ts, _, _ = _run_both(torch, lambda p: getattr(optim, name)(p, **kw),
                             lambda p: getattr(torch.optim, name)(p, **kw))
    for p, tp in zip(ps, ts):
        np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name, kw", [("SGD", dict(lr=0.05, momentum=0.9, nesterov=True)),
                                      ("AdamW", dict(lr=1e-2, amsgrad=True)),
                                      ("RMSprop", dict(momentum=0.5, centered=True))])
def test_float32_stays_float32_and_follows_torch(name, kw):
    torch = pytest.importorskip("torch")
    ps, ts, o, _ = _run_both(torch, lambda p: getattr(optim, name)(p, **kw),
                             lambda p: getattr(torch.optim, name)(p, **kw), dtype=np.float32)
    for p, tp, state in zip(ps, ts, o.state):
        assert p.data.dtype == np.float32 and all(v.dtype == np.float32 for v in state.values())
        np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=2e-5, atol=2e-6)


def _groups(params, *extra):
    return [{"params": params[:2], **extra[0]}, {"params": params[2:], **extra[1]}]


@pytest.mark.parametrize("name, defaults, g0, g1", [
    ("SGD", dict(lr=0.1, momentum=0.9), {"lr": 0.01}, {"weight_decay": 0.1, "nesterov": True}),
    ("Adam", dict(lr=1e-2), {"betas": (0.5, 0.9)}, {"weight_decay": 0.1, "amsgrad": True}),
    ("AdamW", dict(lr=1e-2), {"weight_decay": 0.0}, {"lr": 0.05}),
    ("RMSprop", dict(lr=1e-2), {"centered": True}, {"momentum": 0.9, "alpha": 0.5}),
])
def test_parameter_groups_match_torch_with_lr_changes(name, defaults, g0, g1):
    """Per-group hyperparameters, and learning rates changed between steps (a scheduler)."""
    torch = pytest.importorskip("torch")

    def between(k, o, t):
        for go, gt in zip(o.param_groups, t.param_groups):
            go["lr"] = gt["lr"] = gt["lr"] * 0.9
    ps, ts, o, t = _run_both(torch,
                             lambda p: getattr(optim, name)(_groups(p, g0, g1), **defaults),
                             lambda p: getattr(torch.optim, name)(_groups(p, g0, g1),
                                                                  **defaults),
                             between=between)
    for p, tp in zip(ps, ts):
        np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=1e-12, atol=1e-14)
    for go, gt in zip(o.param_groups, t.param_groups):
        for k in o.defaults:
            assert go[k] == pytest.approx(gt[k]), k


def test_param_groups_layout_and_defaults():
    net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    opt = optim.SGD([{"params": net[0].parameters()},
                     {"params": net[2].parameters(), "lr": 0.01, "name": "head"}],
                    lr=0.1, momentum=0.9)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.01]
    assert opt.param_groups[1]["name"] == "head"  # extra keys are kept, as in PyTorch
    assert opt.param_groups[0]["params"] == list(net[0].parameters())
    assert opt.defaults == opt.hyper and opt.defaults["lr"] == 0.1
    assert opt.params == list(net.parameters()) and len(opt.state) == 4
    opt.lr = 0.5  # nbconv's shorthand: every group
    assert [g["lr"] for g in opt.param_groups] == [0.5, 0.5] and opt.lr == 0.5
    assert opt.param_groups[0]["params"][0].numel() == 12


def test_add_param_group_matches_torch_adam_steps():
    """A group added later starts its own bias correction (per-parameter step counts)."""
    torch = pytest.importorskip("torch")
    ps = _params(0)
    ts = _torch_params(torch, ps)
    o = optim.Adam(ps[:1], lr=1e-2)
    t = torch.optim.Adam(ts[:1], lr=1e-2)
    for k, step_grads in enumerate(_grads(3, 12)):
        if k == 5:
            o.add_param_group({"params": ps[1:], "lr": 3e-2})
            t.add_param_group({"params": ts[1:], "lr": 3e-2})
        n = len(o.params)
        _set_grads(ps[:n], step_grads)
        for tp, g in zip(ts[:n], step_grads):
            tp.grad = torch.tensor(g)
        o.step()
        t.step()
    for p, tp in zip(ps, ts):
        np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=1e-12, atol=1e-14)
    assert o.state_dict()["state"]["1.step"] == 7 and o.state_dict()["state"]["0.step"] == 12


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "RMSprop"])
def test_frozen_parameter_is_skipped_like_torch_without_grad(name):
    torch = pytest.importorskip("torch")
    kw = {"lr": 0.05, "momentum": 0.9} if name in ("SGD", "RMSprop") else {"lr": 1e-2}
    ps = _params(0)
    ts = _torch_params(torch, ps)
    o, t = getattr(optim, name)(ps, **kw), getattr(torch.optim, name)(ts, **kw)
    before = ps[1].data.copy()
    for k, step_grads in enumerate(_grads(4, 8)):
        ps[1].requires_grad = k >= 4  # frozen for four steps, then trained
        _set_grads(ps, step_grads)
        for i, (tp, g) in enumerate(zip(ts, step_grads)):
            tp.grad = None if (i == 1 and k < 4) else torch.tensor(g)
        o.step()
        t.step()
        if k < 4:
            np.testing.assert_array_equal(ps[1].data, before)
    for p, tp in zip(ps, ts):
        np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=1e-12, atol=1e-14)


MAKERS = {
    "SGD": lambda p: optim.SGD(_groups(p, {"lr": 0.01}, {}), lr=0.05, momentum=0.9,
                               nesterov=True),
    "Adam": lambda p: optim.Adam(_groups(p, {"amsgrad": True}, {}), lr=1e-2),
    "AdamW": lambda p: optim.AdamW(_groups(p, {}, {"weight_decay": 0.2}), lr=1e-2),
    "RMSprop": lambda p: optim.RMSprop(_groups(p, {"centered": True}, {"momentum": 0.5})),
}


def _steps(params, opt, grads):
    for g in grads:
        _set_grads(params, g)
        opt.step()


@pytest.mark.parametrize("name", list(MAKERS))
def test_state_dict_resume_is_bit_identical(name):
    grads = _grads(5, 10)

    def first_half(params):
        opt = MAKERS[name](params)
        _steps(params, opt, grads[:4])
        for g in opt.param_groups:  # as a scheduler would
            g["lr"] *= 0.5
        return opt

    a = _params(0)
    opt_a = first_half(a)
    _steps(a, opt_a, grads[4:])

    b = _params(0)
    saved = first_half(b).state_dict()
    state = json.loads(json.dumps({k: v for k, v in saved.items() if k != "state"}))
    state["state"] = saved["state"]  # all but the arrays is JSON data
    opt_c = MAKERS[name](b)
    opt_c.load_state_dict(state)
    assert [g["lr"] for g in opt_c.param_groups] == [g["lr"] for g in opt_a.param_groups]
    _steps(b, opt_c, grads[4:])
    for pa, pb in zip(a, b):
        np.testing.assert_array_equal(pa.data, pb.data)


@pytest.mark.parametrize("name", list(MAKERS))
def test_model_file_keeps_groups_and_resumes(tmp_path, name):
    def model():
        nc.manual_seed(0)
        return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))

    grads = _grads(6, 6, shapes=[(4, 3), (4,), (2, 4), (2,)])
    m1 = model()
    o1 = MAKERS[name](m1.parameters())
    _steps(list(m1.parameters()), o1, grads[:3])
    o1.param_groups[1]["lr"] = 0.123
    nc.save(m1, tmp_path / "m.h5", optimizer=o1)
    m2, opt_state, _ = nc.load_state(tmp_path / "m.h5")
    assert opt_state["param_groups"] == o1.state_dict()["param_groups"]
    o2 = MAKERS[name](m2.parameters())
    o2.load_state_dict(opt_state)
    assert o2.param_groups[1]["lr"] == 0.123
    _steps(list(m1.parameters()), o1, grads[3:])
    _steps(list(m2.parameters()), o2, grads[3:])
    for (k, v), w in zip(m1.state_dict().items(), m2.state_dict().values()):
        np.testing.assert_array_equal(v, w, err_msg=k)


@pytest.mark.parametrize("name", ["SGD", "Adam"])
def test_old_state_without_groups_or_steps_still_loads(tmp_path, name):
    """A file written before parameter groups: no 'param_groups', Adam without 'amsgrad' and
    without per-parameter steps (all parameters moved with the global step)."""
    make = (lambda p: optim.SGD(p, lr=0.05, momentum=0.9)) if name == "SGD" else \
        (lambda p: optim.Adam(p, lr=1e-2))
    grads = _grads(7, 8)
    ref = _params(0)
    opt_ref = make(ref)
    _steps(ref, opt_ref, grads)

    ps = _params(0)
    opt = make(ps)
    _steps(ps, opt, grads[:3])
    old = opt.state_dict()
    del old["param_groups"]
    old["hyper"].pop("amsgrad", None)
    old["state"] = {k: v for k, v in old["state"].items() if not k.endswith(".step")}
    m = nn.Sequential(nn.Linear(2, 2))
    nc.save(m, tmp_path / "old.h5", optimizer=old)
    _, loaded, _ = nc.load_state(tmp_path / "old.h5")
    assert "param_groups" not in loaded
    opt2 = make(ps)
    opt2.load_state_dict(loaded)
    _steps(ps, opt2, grads[3:])
    for p, r in zip(ps, ref):
        np.testing.assert_array_equal(p.data, r.data)


def test_hdf5_layout_has_param_groups(tmp_path):
    h5py = pytest.importorskip("h5py")
    m = nn.Sequential(nn.Linear(2, 2))
    opt = optim.AdamW([{"params": [m[0].weight]}, {"params": [m[0].bias], "lr": 0.5}])
    _set_grads(opt.params, [np.ones((2, 2)), np.ones(2)])
    opt.step()
    nc.save(m, tmp_path / "m.h5", optimizer=opt)
    with h5py.File(tmp_path / "m.h5") as f:
        g = f["optimizer"]
        groups = json.loads(g.attrs["param_groups"])
        assert [x["lr"] for x in groups] == [1e-3, 0.5] and groups[1]["params"] == [1]
        assert g["state"]["0.step"].attrs["scalar"]


@pytest.mark.parametrize("make, exc, match", [
    (lambda p: optim.AdamW(p, lr=-1), ValueError, "argument 'lr'"),
    (lambda p: optim.AdamW(p, weight_decay=-0.1), ValueError, "argument 'weight_decay'"),
    (lambda p: optim.AdamW(p, amsgrad="yes"), TypeError, "argument 'amsgrad'"),
    (lambda p: optim.Adam(p, betas=(0.9,)), TypeError, "argument 'betas'"),
    (lambda p: optim.RMSprop(p, alpha=-0.1), ValueError, "argument 'alpha'"),
    (lambda p: optim.RMSprop(p, momentum=-1), ValueError, "argument 'momentum'"),
    (lambda p: optim.RMSprop(p, eps=float("nan")), ValueError, "argument 'eps'"),
    (lambda p: optim.RMSprop(p, centered=1.5), TypeError, "argument 'centered'"),
    (lambda p: optim.SGD([{"params": p[:1]}, {"params": p[1:], "lr": -2}]), ValueError,
     r"param group 1\): argument 'lr'"),
    (lambda p: optim.SGD([{"params": p[:1]}, p[1]]), TypeError, "mixes dicts"),
    (lambda p: optim.SGD([{"params": p[:2]}, {"params": p[1:]}]), ValueError,
     "more than one parameter group"),
    (lambda p: optim.SGD([{"params": {"w": p[0]}}]), TypeError, "argument 'params'"),
    (lambda p: optim.SGD([{"lr": 0.1}]), ValueError, "'params'"),
    (lambda p: optim.SGD([{"params": [p[0], p[0]]}]), ValueError, "twice"),
    (lambda p: optim.SGD([{"params": p, "nesterov": True}]), ValueError, "nesterov"),
])
def test_bad_arguments_name_themselves(make, exc, match):
    with pytest.raises(exc, match=match):
        make(_params(0))


def test_add_param_group_errors_leave_the_optimizer_unchanged():
    ps = _params(0)
    opt = optim.SGD(ps[:1], lr=0.1)
    with pytest.raises(TypeError, match="dict"):
        opt.add_param_group(ps[1:])
    with pytest.raises(ValueError, match="argument 'momentum'"):
        opt.add_param_group({"params": ps[1:], "momentum": -1})
    assert len(opt.param_groups) == 1 and len(opt.params) == 1
    opt.add_param_group({"params": ps[1]})  # a single Parameter is a group of one
    assert opt.param_groups[1]["params"] == [ps[1]] and opt.param_groups[1]["lr"] == 0.1


@pytest.mark.parametrize("mutate, match", [
    (lambda d: d["param_groups"].pop(), "groups"),
    (lambda d: d["param_groups"][0].update(params=[0]), "indices"),
    (lambda d: d["param_groups"][1].update(lr=-1.0), r"param_groups\[1\].*argument 'lr'"),
    (lambda d: d["param_groups"][1].pop("betas"), "keys"),
    (lambda d: d["hyper"].update(bogus=1), "keys"),
    (lambda d: d["state"].update({"0.step": np.array(-1)}), "0.step"),
    (lambda d: d["state"].update({"0.step": np.zeros(2)}), "0.step"),
    (lambda d: d.update(param_groups="x"), "groups"),
])
def test_load_state_dict_refuses_malformed_groups(mutate, match):
    ps = _params(0)
    opt = optim.Adam(_groups(ps, {}, {"lr": 0.5}))
    _steps(ps, opt, _grads(0, 2))
    good = opt.state_dict()
    bad = opt.state_dict()
    mutate(bad)
    with pytest.raises((ValueError, TypeError), match=match):
        opt.load_state_dict(bad)
    after = opt.state_dict()
    assert after["param_groups"] == good["param_groups"] and after["step"] == good["step"]
    for k, v in good["state"].items():
        np.testing.assert_array_equal(after["state"][k], v)


def test_state_dict_names_and_types():
    ps = _params(0)
    opt = optim.RMSprop(ps, momentum=0.9, centered=True)
    _steps(ps, opt, _grads(0, 1))
    d = opt.state_dict()
    assert d["type"] == "RMSprop" and d["step"] == 1
    assert sorted(k for k in d["state"] if k.startswith("0.")) == [
        "0.grad_avg", "0.momentum_buffer", "0.square_avg"]
    assert d["param_groups"] == [{**d["hyper"], "params": [0, 1, 2]}]
    adam = optim.Adam(ps)
    assert adam.state_dict()["param_groups"][0]["betas"] == [0.9, 0.999]  # JSON: a list
    assert adam.param_groups[0]["betas"] == (0.9, 0.999)  # PyTorch's tuple


def test_nonfinite_gradients_propagate():
    for make in (lambda p: optim.AdamW(p, amsgrad=True), lambda p: optim.RMSprop(p,
                                                                                  momentum=0.9)):
        p = [Parameter(np.ones(3), "w")]
        p[0].grad[...] = [np.nan, np.inf, 1.0]
        make(p).step()
        assert np.isnan(p[0].data[0]) and np.isfinite(p[0].data[2])


# --------------------------------------------------------------------------- hypothesis sweep


@given(name=st.sampled_from(["SGD", "Adam", "AdamW", "RMSprop"]),
       lr=st.floats(1e-4, 0.5), momentum=st.floats(0.0, 0.99), wd=st.floats(0.0, 0.3),
       flag=st.booleans(), beta1=st.floats(0.0, 0.99), alpha=st.floats(0.5, 0.999),
       steps=st.integers(1, 12), seed=st.integers(0, 2**16))
def test_random_hyperparameters_match_torch(name, lr, momentum, wd, flag, beta1, alpha, steps,
                                            seed):
    # (centred RMSprop with alpha near 0 subtracts two nearly equal numbers, sq - avg**2,
    # and amplifies any rounding difference: the fixed cases above cover alpha = 0.3)
    torch = pytest.importorskip("torch")
    if name == "SGD":
        kw = dict(lr=lr, momentum=momentum, weight_decay=wd, nesterov=flag and momentum > 0)
    elif name == "RMSprop":
        kw = dict(lr=lr, momentum=momentum, weight_decay=wd, centered=flag, alpha=alpha)
    else:
        kw = dict(lr=lr, betas=(beta1, 0.999), weight_decay=wd, amsgrad=flag)
    ps, ts, _, _ = _run_both(torch, lambda p: getattr(optim, name)(p, **kw),
                             lambda p: getattr(torch.optim, name)(p, **kw), steps=steps,
                             seed=seed)
    for p, tp in zip(ps, ts):
        np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "RMSprop"])
def test_zero_d_parameter_matches_torch(name):
    """A learnable scalar (a 0-d Parameter, as PyTorch's)."""
    torch = pytest.importorskip("torch")
    p = Parameter(np.array(0.7), "scale")
    assert p.shape == () and p.numel() == 1
    tp = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    kw = {"lr": 0.05, "momentum": 0.9} if name in ("SGD", "RMSprop") else {"lr": 0.05}
    o, t = getattr(optim, name)([p], **kw), getattr(torch.optim, name)([tp], **kw)
    for g in np.random.default_rng(0).standard_normal(10):
        p.grad[...] = g
        tp.grad = torch.tensor(g)
        o.step()
        t.step()
    assert p.data.shape == () and all(v.shape == () for v in o.state[0].values())
    np.testing.assert_allclose(p.data, tp.item(), rtol=1e-12)

"""Learning-rate schedulers: sequences against torch.optim.lr_scheduler (two parameter groups,
past restarts and milestones), momentum cycling, state dicts, errors."""

import json
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nbconv import optim
from nbconv.nn import Parameter
from nbconv.optim import lr_scheduler as ls


def _ours(name="SGD", **kw):
    ps = [Parameter(np.zeros(2), "a"), Parameter(np.zeros(3), "b")]
    return getattr(optim, name)([{"params": ps[:1]}, {"params": ps[1:], "lr": 0.3}], **kw)


def _theirs(torch, name="SGD", **kw):
    ps = [torch.zeros(2, requires_grad=True), torch.zeros(3, requires_grad=True)]
    return getattr(torch.optim, name)([{"params": ps[:1]}, {"params": ps[1:], "lr": 0.3}],
                                      **kw)


def _make(mod, opt, spec):
    """Build scheduler ``spec`` = (name, kwargs, sub-specs) from module ``mod``."""
    name, kw, subs = spec
    if subs:
        kw = dict(kw, schedulers=[_make(mod, opt, s) for s in subs])
    return getattr(mod, name)(opt, **kw)


SPECS = {
    "step": ("StepLR", dict(step_size=3, gamma=0.5), None),
    "step1": ("StepLR", dict(step_size=1), None),
    "multistep": ("MultiStepLR", dict(milestones=[2, 5, 5, 9], gamma=0.3), None),
    "exponential": ("ExponentialLR", dict(gamma=0.9), None),
    "cosine": ("CosineAnnealingLR", dict(T_max=5, eta_min=0.01), None),
    "cosine1": ("CosineAnnealingLR", dict(T_max=1), None),
    "cosine_long": ("CosineAnnealingLR", dict(T_max=7), None),
    "linear": ("LinearLR", dict(start_factor=0.2, end_factor=0.9, total_iters=4), None),
    "linear_default": ("LinearLR", {}, None),
    "linear_decay": ("LinearLR", dict(start_factor=1.0, end_factor=0.0, total_iters=6), None),
    "onecycle": ("OneCycleLR", dict(max_lr=[1.0, 0.5], total_steps=25), None),
    "onecycle_linear": ("OneCycleLR", dict(max_lr=0.8, epochs=5, steps_per_epoch=5,
                                           anneal_strategy="linear", pct_start=0.4), None),
    "onecycle_3phase": ("OneCycleLR", dict(max_lr=1.0, total_steps=25, three_phase=True,
                                           div_factor=10.0, final_div_factor=100.0), None),
    "onecycle_nomom": ("OneCycleLR", dict(max_lr=1.0, total_steps=25, cycle_momentum=False),
                       None),
    "constant": ("ConstantLR", dict(factor=0.25, total_iters=4), None),
    "constant_default": ("ConstantLR", {}, None),
    "poly": ("PolynomialLR", dict(total_iters=7, power=2.0), None),
    "poly_default": ("PolynomialLR", {}, None),
    "restarts": ("CosineAnnealingWarmRestarts", dict(T_0=4, eta_min=0.01), None),
    "restarts_mult": ("CosineAnnealingWarmRestarts", dict(T_0=2, T_mult=2), None),
    "warmup_restarts": ("SequentialLR", dict(milestones=[2]),
                        [("ConstantLR", dict(factor=0.1, total_iters=2), None),
                         ("CosineAnnealingWarmRestarts", dict(T_0=3, T_mult=2), None)]),
    "warmup_cosine": ("SequentialLR", dict(milestones=[3]),
                      [("LinearLR", dict(start_factor=0.1, total_iters=3), None),
                       ("CosineAnnealingLR", dict(T_max=8, eta_min=0.001), None)]),
    "three_stages": ("SequentialLR", dict(milestones=[4, 9]),
                     [("ExponentialLR", dict(gamma=0.8), None),
                      ("StepLR", dict(step_size=2, gamma=0.5), None),
                      ("MultiStepLR", dict(milestones=[3, 6]), None)]),
}
STEPS = {"onecycle": 25, "onecycle_linear": 25, "onecycle_3phase": 25, "onecycle_nomom": 25}


@pytest.mark.parametrize("key", list(SPECS))
@pytest.mark.parametrize("opt_name, opt_kw", [("SGD", dict(lr=0.1, momentum=0.9)),
                                              ("Adam", dict(lr=0.1))])
def test_sequence_matches_torch(key, opt_name, opt_kw):
    torch = pytest.importorskip("torch")
    o, t = _ours(opt_name, **opt_kw), _theirs(torch, opt_name, **opt_kw)
    so, st = _make(ls, o, SPECS[key]), _make(torch.optim.lr_scheduler, t, SPECS[key])
    mom = "betas" if opt_name == "Adam" else "momentum"
    for _ in range(STEPS.get(key, 30)):
        np.testing.assert_allclose(so.get_last_lr(), st.get_last_lr(), rtol=1e-13, atol=1e-16)
        np.testing.assert_allclose([g["lr"] for g in o.param_groups],
                                   [g["lr"] for g in t.param_groups], rtol=1e-13, atol=1e-16)
        np.testing.assert_allclose([g[mom] for g in o.param_groups],
                                   [g[mom] for g in t.param_groups], rtol=1e-13)
        o.step()
        t.step()
        so.step()
        st.step()


def test_two_schedulers_chain_like_torch():
    torch = pytest.importorskip("torch")
    o, t = _ours(lr=0.1), _theirs(torch, lr=0.1)
    ours = [ls.StepLR(o, 4, 0.5), ls.ExponentialLR(o, 0.95)]
    theirs = [torch.optim.lr_scheduler.StepLR(t, 4, 0.5),
              torch.optim.lr_scheduler.ExponentialLR(t, 0.95)]
    for _ in range(15):
        o.step()
        t.step()
        for s in ours + theirs:
            s.step()
        np.testing.assert_allclose(ours[1].get_last_lr(), theirs[1].get_last_lr(), rtol=1e-13)


PLATEAU = [
    dict(),
    dict(mode="max", factor=0.5, patience=2, threshold=0.1, threshold_mode="abs"),
    dict(factor=0.5, patience=1, cooldown=2, min_lr=[0.01, 0.05]),
    dict(mode="max", factor=0.2, patience=0, threshold=0.01, min_lr=0.004, eps=1e-3),
]


@pytest.mark.parametrize("kw", PLATEAU)
def test_reduce_on_plateau_matches_torch(kw):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    metrics = np.concatenate([np.linspace(1, 0.5, 6), 0.5 + 0.01 * rng.standard_normal(40)])
    metrics[20] = np.nan  # counts as a bad epoch in both
    o, t = _ours(lr=0.1), _theirs(torch, lr=0.1)
    so = ls.ReduceLROnPlateau(o, **kw)
    st = torch.optim.lr_scheduler.ReduceLROnPlateau(t, **kw)
    reduced = 0
    for m in metrics:
        before = so.get_last_lr()
        so.step(m)
        st.step(float(m))
        reduced += so.get_last_lr() != before
        np.testing.assert_allclose(so.get_last_lr(), st.get_last_lr(), rtol=1e-13)
        assert so.num_bad_epochs == st.num_bad_epochs and so.best == pytest.approx(st.best,
                                                                                   nan_ok=True)
    assert reduced > 0  # the sequence exercised a reduction


@pytest.mark.parametrize("key", ["step", "multistep", "cosine", "onecycle", "warmup_cosine",
                                 "three_stages", "linear", "restarts_mult", "poly",
                                 "warmup_restarts"])
def test_state_dict_resume_matches_uninterrupted(key):
    def run(steps, o, s):
        out = []
        for _ in range(steps):
            out.append(s.get_last_lr())
            o.step()
            s.step()
        return out

    o = _ours(lr=0.1, momentum=0.9)
    full = run(20, o, _make(ls, o, SPECS[key]))

    o1 = _ours(lr=0.1, momentum=0.9)
    s1 = _make(ls, o1, SPECS[key])
    first = run(8, o1, s1)
    opt_state = o1.state_dict()
    sched_state = json.loads(json.dumps(s1.state_dict()))  # plain JSON data
    o2 = _ours(lr=0.1, momentum=0.9)
    s2 = _make(ls, o2, SPECS[key])  # a fresh run, as after a restart
    o2.load_state_dict(opt_state)
    s2.load_state_dict(sched_state)
    assert first + run(12, o2, s2) == full


def test_plateau_state_round_trip_keeps_infinity():
    o = _ours(lr=0.1)
    s = ls.ReduceLROnPlateau(o, patience=0)
    d = json.loads(json.dumps(s.state_dict()))
    assert d["best"] == math.inf
    s.step(1.0)
    s.step(2.0)
    s2 = ls.ReduceLROnPlateau(_ours(lr=0.1), patience=5)
    s2.load_state_dict(json.loads(json.dumps(s.state_dict())))
    assert s2.patience == 0 and s2.best == 1.0 and s2.get_last_lr() == s.get_last_lr()


def test_initial_lr_recorded_and_last_epoch_resume():
    torch = pytest.importorskip("torch")
    o, t = _ours(lr=0.1), _theirs(torch, lr=0.1)
    ls.StepLR(o, 2)
    torch.optim.lr_scheduler.StepLR(t, 2)
    assert [g["initial_lr"] for g in o.param_groups] == [0.1, 0.3]
    for g in o.param_groups:
        g["lr"] = g["initial_lr"] * 0.1**2
    for g in t.param_groups:
        g["lr"] = g["initial_lr"] * 0.1**2
    so = ls.CosineAnnealingLR(o, T_max=10, last_epoch=4)
    st = torch.optim.lr_scheduler.CosineAnnealingLR(t, T_max=10, last_epoch=4)
    for _ in range(6):
        o.step()
        t.step()
        so.step()
        st.step()
        np.testing.assert_allclose(so.get_last_lr(), st.get_last_lr(), rtol=1e-13)


@pytest.mark.parametrize("T_mult", [1, 2, 3])
def test_warm_restarts_with_fractional_epochs_match_torch(T_mult):
    torch = pytest.importorskip("torch")
    o, t = _ours(lr=0.1), _theirs(torch, lr=0.1)
    so = ls.CosineAnnealingWarmRestarts(o, T_0=3, T_mult=T_mult, eta_min=1e-3)
    st = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(t, T_0=3, T_mult=T_mult,
                                                              eta_min=1e-3)
    for epoch in range(12):
        for i in range(5):
            o.step()
            t.step()
            so.step(epoch + i / 5)
            st.step(epoch + i / 5)
            np.testing.assert_allclose(so.get_last_lr(), st.get_last_lr(), rtol=1e-12)
            assert so.T_i == st.T_i


def test_onecycle_refuses_steps_past_total():
    o = _ours(lr=0.1, momentum=0.9)
    s = ls.OneCycleLR(o, max_lr=1.0, total_steps=3)
    s.step()
    s.step()
    s.step()
    with pytest.raises(ValueError, match="total_steps"):
        s.step()


@pytest.mark.parametrize("make, exc, match", [
    (lambda o: ls.StepLR(o, 0), ValueError, "argument 'step_size'"),
    (lambda o: ls.StepLR(o, 2.5), TypeError, "argument 'step_size'"),
    (lambda o: ls.StepLR(o, 2, gamma=-1), ValueError, "argument 'gamma'"),
    (lambda o: ls.StepLR(object(), 2), TypeError, "argument 'optimizer'"),
    (lambda o: ls.MultiStepLR(o, 3), TypeError, "argument 'milestones'"),
    (lambda o: ls.MultiStepLR(o, [1, -2]), ValueError, "argument 'milestones'"),
    (lambda o: ls.ExponentialLR(o, float("nan")), ValueError, "argument 'gamma'"),
    (lambda o: ls.CosineAnnealingLR(o, 0), ValueError, "argument 'T_max'"),
    (lambda o: ls.LinearLR(o, start_factor=0), ValueError, "argument 'start_factor'"),
    (lambda o: ls.LinearLR(o, end_factor=1.5), ValueError, "argument 'end_factor'"),
    (lambda o: ls.LinearLR(o, total_iters=0), ValueError, "argument 'total_iters'"),
    (lambda o: ls.StepLR(o, 2, last_epoch=3), ValueError, "initial_lr"),
    (lambda o: ls.OneCycleLR(o, max_lr=1.0), ValueError, "total_steps"),
    (lambda o: ls.OneCycleLR(o, max_lr=[1.0], total_steps=5), ValueError, "argument 'max_lr'"),
    (lambda o: ls.OneCycleLR(o, max_lr=1.0, total_steps=5, pct_start=1.5), ValueError,
     "argument 'pct_start'"),
    (lambda o: ls.OneCycleLR(o, max_lr=1.0, total_steps=5, anneal_strategy="exp"),
     ValueError, "argument 'anneal_strategy'"),
    (lambda o: ls.SequentialLR(o, [ls.StepLR(o, 2), ls.StepLR(o, 3)], milestones=[]),
     ValueError, "argument 'milestones'"),
    (lambda o: ls.SequentialLR(o, [ls.StepLR(o, 2), ls.ReduceLROnPlateau(o)], [2]),
     ValueError, "ReduceLROnPlateau"),
    (lambda o: ls.SequentialLR(o, [ls.StepLR(_ours(lr=0.1), 2)], []), ValueError,
     "another optimizer"),
    (lambda o: ls.SequentialLR(o, [], []), ValueError, "argument 'schedulers'"),
    (lambda o: ls.ReduceLROnPlateau(o, mode="lowest"), ValueError, "argument 'mode'"),
    (lambda o: ls.ReduceLROnPlateau(o, factor=1.0), ValueError, "argument 'factor'"),
    (lambda o: ls.ReduceLROnPlateau(o, threshold_mode="x"), ValueError,
     "argument 'threshold_mode'"),
    (lambda o: ls.ReduceLROnPlateau(o, min_lr=[0.1]), ValueError, "argument 'min_lr'"),
    (lambda o: ls.ReduceLROnPlateau(o, patience=-1), ValueError, "argument 'patience'"),
    (lambda o: ls.ReduceLROnPlateau(o).step("low"), TypeError, "argument 'metrics'"),
    (lambda o: ls.ConstantLR(o, factor=0), ValueError, "argument 'factor'"),
    (lambda o: ls.PolynomialLR(o, total_iters=0), ValueError, "argument 'total_iters'"),
    (lambda o: ls.CosineAnnealingWarmRestarts(o, T_0=0), ValueError, "argument 'T_0'"),
    (lambda o: ls.CosineAnnealingWarmRestarts(o, T_0=2, T_mult=1.5), TypeError,
     "argument 'T_mult'"),
    (lambda o: ls.CosineAnnealingWarmRestarts(o, T_0=2).step(-1), ValueError,
     "argument 'epoch'"),
])
def test_bad_arguments_name_themselves(make, exc, match):
    with pytest.raises(exc, match=match):
        make(_ours(lr=0.1))


def test_onecycle_needs_momentum_or_betas():
    class Plain(optim.Optimizer):
        def __init__(self, params):
            super().__init__(params, {"lr": 0.1})

        @staticmethod
        def _check_hyper(op, h):
            return h

    o = Plain([Parameter(np.zeros(2), "w")])
    with pytest.raises(ValueError, match="cycle_momentum"):
        ls.OneCycleLR(o, max_lr=1.0, total_steps=5)
    ls.OneCycleLR(o, max_lr=1.0, total_steps=5, cycle_momentum=False)


@pytest.mark.parametrize("mutate, match", [
    (lambda d: d.pop("gamma"), "keys"),
    (lambda d: d.update(step_size=0), "step_size"),
    (lambda d: d.update(last_epoch="3"), "last_epoch"),
    (lambda d: d.update(base_lrs=[0.1]), "base_lrs"),
])
def test_scheduler_load_state_dict_refuses_malformed(mutate, match):
    o = _ours(lr=0.1)
    s = ls.StepLR(o, 3)
    s.step()
    good = s.state_dict()
    bad = s.state_dict()
    mutate(bad)
    with pytest.raises((ValueError, TypeError), match=match):
        s.load_state_dict(bad)
    assert s.state_dict() == good


def test_sequential_state_dict_refuses_malformed_and_keeps_state():
    o = _ours(lr=0.1)
    s = _make(ls, o, SPECS["warmup_cosine"])
    s.step()
    good = s.state_dict()
    bad = json.loads(json.dumps(good))
    bad["_schedulers"][1]["T_max"] = 0
    with pytest.raises(ValueError, match="T_max"):
        s.load_state_dict(bad)
    assert s.state_dict() == good


# --------------------------------------------------------------------------- hypothesis sweep

_SPEC = st.one_of(
    st.builds(lambda n, g: ("StepLR", dict(step_size=n, gamma=g), None),
              st.integers(1, 6), st.floats(0.05, 1.0)),
    st.builds(lambda ms, g: ("MultiStepLR", dict(milestones=ms, gamma=g), None),
              st.lists(st.integers(0, 25), max_size=5), st.floats(0.05, 1.0)),
    st.builds(lambda g: ("ExponentialLR", dict(gamma=g), None), st.floats(0.5, 1.0)),
    st.builds(lambda t, lo: ("CosineAnnealingLR", dict(T_max=t, eta_min=lo), None),
              st.integers(1, 9), st.floats(0.0, 0.05)),
    st.builds(lambda s, e, n: ("LinearLR", dict(start_factor=s, end_factor=e, total_iters=n),
                               None),
              st.floats(0.01, 1.0), st.floats(0.0, 1.0), st.integers(1, 8)),
    st.builds(lambda f, n: ("ConstantLR", dict(factor=f, total_iters=n), None),
              st.floats(0.01, 1.0), st.integers(0, 8)),
    st.builds(lambda n, p: ("PolynomialLR", dict(total_iters=n, power=p), None),
              st.integers(1, 10), st.floats(0.1, 3.0)),
    st.builds(lambda t, m, lo: ("CosineAnnealingWarmRestarts", dict(T_0=t, T_mult=m,
                                                                    eta_min=lo), None),
              st.integers(1, 6), st.integers(1, 3), st.floats(0.0, 0.05)),
)


@given(first=_SPEC, second=_SPEC, milestone=st.integers(0, 12),
       sequential=st.booleans(), steps=st.integers(1, 25))
def test_random_schedules_match_torch(first, second, milestone, sequential, steps):
    torch = pytest.importorskip("torch")
    spec = (("SequentialLR", dict(milestones=[milestone]), [first, second]) if sequential
            else first)
    o, t = _ours(lr=0.1, momentum=0.9), _theirs(torch, lr=0.1, momentum=0.9)
    so, s_t = _make(ls, o, spec), _make(torch.optim.lr_scheduler, t, spec)
    for _ in range(steps):
        np.testing.assert_allclose(so.get_last_lr(), s_t.get_last_lr(), rtol=1e-12,
                                   atol=1e-15)
        o.step()
        t.step()
        so.step()
        s_t.step()


@given(max_lr=st.floats(1e-3, 1.0), total=st.integers(2, 40), pct=st.floats(0.05, 0.95),
       strategy=st.sampled_from(["cos", "linear"]), three=st.booleans(),
       div=st.floats(1.5, 50.0), final=st.floats(1.0, 1e4))
def test_random_onecycle_matches_torch(max_lr, total, pct, strategy, three, div, final):
    torch = pytest.importorskip("torch")
    kw = dict(max_lr=max_lr, total_steps=total, pct_start=pct, anneal_strategy=strategy,
              three_phase=three, div_factor=div, final_div_factor=final)
    o, t = _ours(lr=0.1, momentum=0.9), _theirs(torch, lr=0.1, momentum=0.9)
    try:
        s_t = torch.optim.lr_scheduler.OneCycleLR(t, **kw)
    except ZeroDivisionError:  # torch divides by a phase of no steps; nbconv starts it at 0
        return
    so = ls.OneCycleLR(o, **kw)
    for _ in range(total):
        np.testing.assert_allclose(so.get_last_lr(), s_t.get_last_lr(), rtol=1e-12,
                                   atol=1e-15)
        np.testing.assert_allclose([g["momentum"] for g in o.param_groups],
                                   [g["momentum"] for g in t.param_groups], rtol=1e-12)
        o.step()
        t.step()
        so.step()
        try:
            s_t.step()
        except ZeroDivisionError:
            return

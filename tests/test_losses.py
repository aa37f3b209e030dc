"""The losses of issue 27 (nbconv.losses, re-exported by nbconv.nn), against PyTorch.

Each loss and option is checked in float64 against ``torch.nn`` (value, d pred and, where
PyTorch has one, d target) to float64 rounding, over hypothesis sweeps of shapes and
arguments; in both forms (``crit.forward``/``crit.backward()`` and the recorded
``crit(pred, target).backward()``, also inside a PyTorch-style model and with a target made
by a second model); against float64 finite differences and a slow loop reference without
torch; and at the edges (empty batch, NaN, unbatched input, float32, bad arguments).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import nbconv as nc
from nbconv import losses, nn
from nbconv.testing import gradcheck

# PyTorch's notice that KLDivLoss's reduction="mean" is not the mathematical KL divergence
pytestmark = pytest.mark.filterwarnings("ignore:reduction. 'mean' divides:UserWarning")

F64 = np.float64
RTOL, ATOL = 1e-12, 1e-13

ALL = ["CrossEntropyLoss", "NLLLoss", "BCELoss", "BCEWithLogitsLoss", "MSELoss", "L1Loss",
       "SmoothL1Loss", "HuberLoss", "KLDivLoss"]


def _close(actual, expected, what=""):
    np.testing.assert_allclose(np.asarray(actual, F64), np.asarray(expected, F64),
                               rtol=RTOL, atol=ATOL, err_msg=what)


# --------------------------------------------------------------------------- cases

@st.composite
def _class_case(draw, loss):
    """(kwargs, pred, target, upstream) for CrossEntropyLoss / NLLLoss."""
    unbatched = draw(st.booleans()) and draw(st.booleans())
    C = draw(st.integers(1, 5))
    n = draw(st.integers(0, 4))
    extra = () if unbatched else tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    shape = (C,) if unbatched else (n, C, *extra)
    label_shape = () if unbatched else (n, *extra)
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    kw = {"reduction": draw(st.sampled_from(["mean", "sum", "none"]))}
    if draw(st.booleans()):
        kw["weight"] = rng.uniform(0.1, 2.0, C)
    ignore = draw(st.sampled_from([None, -100, -1, 0, C - 1]))
    if ignore is not None:
        kw["ignore_index"] = ignore
    probs = loss == "CrossEntropyLoss" and draw(st.booleans())
    if probs:
        kw.pop("ignore_index", None)  # PyTorch refuses it with probabilities
    if loss == "CrossEntropyLoss":
        e = draw(st.sampled_from([0.0, 0.0, 0.1, 0.37, 1.0]))
        if e:
            kw["label_smoothing"] = e
    scale = draw(st.sampled_from([1.0, 3.0, 30.0]))
    pred = rng.standard_normal(shape) * scale
    if probs:
        target = rng.uniform(0, 1, shape)
    else:
        target = rng.integers(0, C, label_shape)
        if ignore is not None and target.size:
            drop = rng.random(label_shape) < 0.3
            target = np.where(drop, ignore, target)  # some labels ignored
    g = rng.standard_normal(label_shape) if kw["reduction"] == "none" else rng.standard_normal()
    return kw, pred, target, g


@st.composite
def _pointwise_case(draw, loss):
    nd = draw(st.integers(0, 3))
    shape = tuple(draw(st.integers(0 if i == 0 else 1, 4)) for i in range(nd))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    reductions = ["mean", "sum", "none"] + (["batchmean"] if loss == "KLDivLoss" else [])
    kw = {"reduction": draw(st.sampled_from(reductions))}
    scale = draw(st.sampled_from([0.5, 1.0, 4.0]))
    pred = rng.standard_normal(shape) * scale
    target = rng.standard_normal(shape) * scale

    def bcast():
        """A weight shape that broadcasts to ``shape``: (), trailing dims, some set to 1."""
        k = draw(st.integers(0, len(shape)))
        tail = shape[len(shape) - k:]
        return tuple(s if draw(st.booleans()) else 1 for s in tail)

    if loss == "BCELoss":
        pred = rng.uniform(0, 1, shape)
        if pred.size and draw(st.booleans()):  # the clamped logs at exactly 0 and 1
            pred.flat[0] = draw(st.sampled_from([0.0, 1.0]))
        target = rng.uniform(0, 1, shape)
        if draw(st.booleans()):
            kw["weight"] = rng.uniform(0.1, 2, bcast())
    elif loss == "BCEWithLogitsLoss":
        pred = rng.standard_normal(shape) * draw(st.sampled_from([1.0, 10.0, 60.0]))
        target = rng.uniform(0, 1, shape)
        if draw(st.booleans()):
            kw["weight"] = rng.uniform(0.1, 2, bcast())
        if draw(st.booleans()):
            kw["pos_weight"] = rng.uniform(0.1, 3, bcast())
    elif loss == "SmoothL1Loss":
        kw["beta"] = draw(st.sampled_from([0.0, 0.5, 1.0, 2.5]))
    elif loss == "HuberLoss":
        kw["delta"] = draw(st.sampled_from([0.3, 1.0, 2.5]))
    elif loss == "KLDivLoss":
        kw["log_target"] = draw(st.booleans())
        pred = -np.abs(pred)  # log-probabilities
        target = -np.abs(target) if kw["log_target"] else rng.uniform(0.01, 1, shape)
    if loss in ("L1Loss", "SmoothL1Loss", "HuberLoss") and pred.size and draw(st.booleans()):
        target.flat[0] = pred.flat[0]  # a zero difference: the gradient there is 0
    g = rng.standard_normal(shape) if kw["reduction"] == "none" else rng.standard_normal()
    return kw, pred, target, g


def _case(loss):
    if loss in ("CrossEntropyLoss", "NLLLoss"):
        return _class_case(loss)
    return _pointwise_case(loss)


def _torch_crit(torch, loss, kw):
    kw = dict(kw)
    for k in ("weight", "pos_weight"):
        if kw.get(k) is not None:
            kw[k] = torch.tensor(kw[k])
    return getattr(torch.nn, loss)(**kw)


def _torch_run(loss, kw, pred, target, g):
    """PyTorch's value, d pred and d target (None where it has none) for upstream ``g``."""
    torch = pytest.importorskip("torch")
    tp = torch.tensor(pred, requires_grad=True)
    float_target = np.asarray(target).dtype.kind == "f"
    tt = torch.tensor(target, requires_grad=float_target)
    out = _torch_crit(torch, loss, kw)(tp, tt)
    out.backward(torch.tensor(g, dtype=out.dtype))
    dt = tt.grad.numpy() if float_target and tt.grad is not None else None
    return out.detach().numpy(), tp.grad.numpy(), dt


def _leaf(a):
    """``(parameter, recorded view of it shaped like a)``: the parameter collects the
    gradient (through a recorded reshape, since a Parameter is at least 1-D)."""
    p = nn.Parameter(np.array(a, F64).reshape(-1))
    return p, (p * 1.0).reshape(np.shape(a))


def _check_against_torch(loss, kw, pred, target, g):
    value, dp, dt = _torch_run(loss, kw, pred, target, g)
    crit = getattr(losses, loss)(**kw)
    # the explicit form
    mine = crit.forward(pred, target)
    if kw["reduction"] == "none":
        assert isinstance(mine, np.ndarray) and mine.shape == value.shape
        assert mine.dtype == F64
    else:
        assert type(mine) is float
    _close(mine, value, f"{loss} value")
    d = crit.backward(g)
    assert d.shape == pred.shape and d.dtype == F64
    _close(d, dp, f"{loss} d pred")
    # the recorded form: pred and target as parameters (leaves that collect gradients)
    pp, pv = _leaf(pred)
    float_target = np.asarray(target).dtype.kind == "f"
    pt, tv = _leaf(target) if float_target else (None, target)
    out = crit(pv, tv)
    _close(out, value, f"{loss} recorded value")
    if kw["reduction"] == "none":
        assert isinstance(out, nc.recording.TrackedArray)
        out.backward(g)
    else:
        assert isinstance(out, nc.recording.LossValue) and out.recorded
        out.backward(float(g))
    _close(pp.grad.reshape(dp.shape), dp, f"{loss} recorded d pred")
    if float_target:
        assert dt is not None, "PyTorch has a target gradient for every float target"
        _close(pt.grad.reshape(dt.shape), dt, f"{loss} recorded d target")


@pytest.mark.parametrize("loss", ALL)
@given(data=st.data())
def test_every_loss_and_option_matches_torch(loss, data):
    kw, pred, target, g = data.draw(_case(loss))
    _check_against_torch(loss, kw, pred, target, g)


# named edge cases of the sweeps above, each run every time
EDGES = [
    ("CrossEntropyLoss", {}, (3, 4), "labels"),
    ("CrossEntropyLoss", {"weight": [0.3, 1, 2, 0.5], "label_smoothing": 0.2,
                          "ignore_index": 1}, (5, 4, 2, 3), "labels"),
    ("CrossEntropyLoss", {"weight": [0.3, 1, 2], "label_smoothing": 0.25,
                          "reduction": "none"}, (3,), "labels"),
    ("CrossEntropyLoss", {"weight": [0.3, 1, 2], "label_smoothing": 0.1}, (4, 3, 2), "probs"),
    ("CrossEntropyLoss", {"reduction": "sum"}, (3,), "probs"),
    ("NLLLoss", {"weight": [0.3, 1, 2], "ignore_index": 2}, (6, 3, 2), "labels"),
    ("NLLLoss", {"reduction": "none"}, (3,), "labels"),
    ("KLDivLoss", {"reduction": "batchmean"}, (4, 5), None),
    ("KLDivLoss", {"reduction": "batchmean", "log_target": True}, (), None),
    ("BCEWithLogitsLoss", {"pos_weight": [1, 2, 3], "weight": [[2.0], [1.0]]}, (2, 3), None),
]


@pytest.mark.parametrize("loss, kw, shape, kind", EDGES)
def test_named_cases_match_torch(loss, kw, shape, kind):
    rng = np.random.default_rng(len(shape) + len(kw))
    kw = {"reduction": "mean", **{k: np.array(v, F64) if isinstance(v, list) else v
                                  for k, v in kw.items()}}
    pred = rng.standard_normal(shape)
    if kind == "labels":
        C = shape[0] if len(shape) == 1 else shape[1]
        target = rng.integers(0, C, shape[:1] + shape[2:] if len(shape) > 1 else ())
        if "ignore_index" in kw and target.ndim:
            target.flat[0] = kw["ignore_index"]
        if loss == "NLLLoss":
            pred = nc.log_softmax(pred, axis=0 if len(shape) == 1 else 1)
    elif kind == "probs":
        target = rng.uniform(0, 1, shape)
    elif loss == "KLDivLoss":
        pred = -np.abs(pred)
        target = -np.abs(rng.standard_normal(shape)) if kw.get("log_target") \
            else rng.uniform(0, 1, shape)
    else:
        pred = pred * 20
        target = rng.uniform(0, 1, shape)
    g = rng.standard_normal(np.shape(_torch_run(loss, kw, pred, target, 1.0)[0]) if
                            kw["reduction"] == "none" else ())
    _check_against_torch(loss, kw, pred, target, g)


def test_cross_entropy_ignored_and_zero_weight_edges_match_torch():
    # every label ignored: NaN for "mean" and a zero gradient (PyTorch's), also smoothed
    for e in (0.0, 0.3):
        z = np.random.default_rng(0).standard_normal((3, 4))
        _check_against_torch("CrossEntropyLoss", {"reduction": "mean", "label_smoothing": e},
                             z, np.full(3, -100), 1.0)
    # an ignored row of NaN logits adds nothing to the loss (its terms are masked, not
    # multiplied by 0), but its gradient is NaN (log-softmax's backward), as PyTorch's
    z[1] = np.nan
    crit = losses.CrossEntropyLoss(reduction="sum", label_smoothing=0.1)
    assert np.isfinite(crit.forward(z, np.array([0, -100, 2])))
    for e in (0.0, 0.1):
        for w in (None, np.array([1.0, 0.0, 2.0, 3.0])):
            kw = {"reduction": "sum", "label_smoothing": e, "weight": w}
            _check_against_torch("CrossEntropyLoss", kw, z, np.array([0, -100, 2]), 0.5)
    # weights summing to 0 over the kept labels: NaN mean and NaN gradient rows (0 * inf)
    _check_against_torch("CrossEntropyLoss", {"reduction": "mean",
                                              "weight": np.array([0.0, 0.0, 2.0, 3.0])},
                         np.ones((3, 4)), np.array([0, -100, 1]), 1.0)


def test_extreme_logits_are_stable():
    torch = pytest.importorskip("torch")
    z = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 5.0]])
    for kw in ({}, {"label_smoothing": 0.1}):
        _check_against_torch("CrossEntropyLoss", {"reduction": "mean", **kw}, z,
                             np.array([1, 1]), 1.0)
    x = np.array([1e4, -1e4, 50.0, -50.0, 0.0])
    t = np.array([0.0, 1.0, 0.3, 0.7, 1.0])
    _check_against_torch("BCEWithLogitsLoss", {"reduction": "none",
                                               "pos_weight": np.full(5, 2.5)}, x, t,
                         np.ones(5))
    assert torch is not None


# --------------------------------------------------------------------------- recorded models

class _Net(nn.Module):
    """A PyTorch-style model without backward: linear, tanh, linear."""

    def __init__(self, n_in, n_out):
        super().__init__()
        self.fc1 = nn.Linear(n_in, 5, dtype=F64)
        self.fc2 = nn.Linear(5, n_out, dtype=F64)

    def forward(self, x):
        return self.fc2(nc.tanh(self.fc1(x)))


def _twin(torch, net):
    t = torch.nn.Sequential(torch.nn.Linear(net.fc1.weight.data.shape[1], 5), torch.nn.Tanh(),
                            torch.nn.Linear(5, net.fc2.weight.data.shape[0])).double()
    t.load_state_dict({k.replace("fc1", "0").replace("fc2", "2"): torch.tensor(v)
                       for k, v in net.state_dict().items()})
    return t


def _grads(net):
    return {k: np.array(p.grad) for k, p in net.named_parameters()}


def _twin_grads(twin):
    return {k.replace("0.", "fc1.").replace("2.", "fc2."): p.grad.numpy()
            for k, p in twin.named_parameters()}


MODEL_CASES = [
    ("CrossEntropyLoss", {"weight": [0.5, 1.0, 2.0], "label_smoothing": 0.1,
                          "ignore_index": 1}, "labels"),
    ("CrossEntropyLoss", {"label_smoothing": 0.2}, "probs"),
    ("NLLLoss", {"weight": [0.5, 1.0, 2.0]}, "labels"),
    ("BCEWithLogitsLoss", {"pos_weight": [1.0, 2.0, 0.5]}, "unit"),
    ("MSELoss", {}, "real"),
    ("L1Loss", {}, "real"),
    ("SmoothL1Loss", {"beta": 0.5}, "real"),
    ("HuberLoss", {"delta": 0.7}, "real"),
    ("KLDivLoss", {"log_target": True}, "logp"),
]
MODEL_RUNS = [(*case, r) for case in MODEL_CASES
              for r in ("mean", "sum", "none") + (("batchmean",) if case[0] == "KLDivLoss" else ())]


def _model_target(kind, rng, n):
    if kind == "labels":
        return rng.integers(0, 3, n)
    if kind in ("probs", "unit"):
        return rng.uniform(0, 1, (n, 3))
    if kind == "logp":
        return -np.abs(rng.standard_normal((n, 3)))
    return rng.standard_normal((n, 3))


@pytest.mark.parametrize("loss, kw, kind, reduction", MODEL_RUNS)
def test_loss_backward_through_a_recorded_model_matches_torch(loss, kw, kind, reduction):
    torch = pytest.importorskip("torch")
    kw = {"reduction": reduction, **{k: np.array(v) if isinstance(v, list) else v
                                     for k, v in kw.items()}}
    nc.manual_seed(4)
    net = _Net(4, 3)
    twin = _twin(torch, net)
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((6, 4)), _model_target(kind, rng, 6)
    post = (lambda o: nc.log_softmax(o, axis=1)) if loss == "NLLLoss" else (lambda o: o)
    tpost = (lambda o: torch.log_softmax(o, 1)) if loss == "NLLLoss" else (lambda o: o)
    tx = torch.tensor(x, requires_grad=True)
    tout = _torch_crit(torch, loss, kw)(tpost(twin(tx)), torch.tensor(y))
    out = losses.__dict__[loss](**kw)(post(net(x)), y)
    if reduction == "none":
        g = rng.standard_normal(out.shape)
        tout.backward(torch.tensor(g))
        out.backward(g)
    else:
        tout.backward()
        out.backward()
    _close(np.asarray(out), tout.detach().numpy(), "loss")
    mine, ref = _grads(net), _twin_grads(twin)
    for k in ref:
        _close(mine[k], ref[k], k)


@pytest.mark.parametrize("how", ["sum", "mean", "weighted"])
def test_reduction_none_is_a_recorded_array(how):
    torch = pytest.importorskip("torch")
    nc.manual_seed(6)
    net = _Net(4, 3)
    twin = _twin(torch, net)
    rng = np.random.default_rng(6)
    x, y = rng.standard_normal((5, 4)), rng.integers(0, 3, 5)
    per = losses.CrossEntropyLoss(reduction="none", label_smoothing=0.1)(net(x), y)
    tper = torch.nn.CrossEntropyLoss(reduction="none", label_smoothing=0.1)(
        twin(torch.tensor(x)), torch.tensor(y))
    assert isinstance(per, nc.recording.TrackedArray) and per.shape == (5,)
    assert per.recorded_by == "CrossEntropyLoss"
    w = rng.uniform(0, 1, 5)
    if how == "sum":
        per.sum().backward()
        tper.sum().backward()
    elif how == "mean":
        per.mean().backward()
        tper.mean().backward()
    else:  # a per-sample weighting written by the user, then a sum: all recorded
        total = (per * w).sum()
        assert isinstance(total, nc.recording.TrackedArray)
        total.backward()
        (tper * torch.tensor(w)).sum().backward()
    mine, ref = _grads(net), _twin_grads(twin)
    for k in ref:
        _close(mine[k], ref[k], k)


@pytest.mark.parametrize("loss, kw", [
    ("KLDivLoss", {"reduction": "batchmean"}),
    ("KLDivLoss", {"reduction": "sum", "log_target": True}),
    ("CrossEntropyLoss", {"label_smoothing": 0.1}),
    ("BCELoss", {}),
    ("BCEWithLogitsLoss", {"pos_weight": [2.0, 1.0, 0.5]}),
    ("MSELoss", {}),
    ("SmoothL1Loss", {"reduction": "none"}),
    ("HuberLoss", {}),
])
def test_a_target_made_by_a_second_model_gets_its_gradient(loss, kw):
    """Distillation-style: the target is the (recorded) output of a teacher model."""
    torch = pytest.importorskip("torch")
    kw = {k: np.array(v) if isinstance(v, list) else v for k, v in kw.items()}
    nc.manual_seed(7)
    student, teacher = _Net(4, 3), _Net(4, 3)
    ts, tt = _twin(torch, student), _twin(torch, teacher)
    x = np.random.default_rng(7).standard_normal((5, 4))
    # the teacher's output mapped where the loss expects its target
    to_target = {"KLDivLoss": (lambda o: nc.softmax(o, axis=1),
                               lambda o: torch.softmax(o, 1)),
                 "CrossEntropyLoss": (lambda o: nc.softmax(o, axis=1),
                                      lambda o: torch.softmax(o, 1)),
                 "BCELoss": (nc.sigmoid, torch.sigmoid),
                 "BCEWithLogitsLoss": (nc.sigmoid, torch.sigmoid)}
    if kw.get("log_target"):
        to_target[loss] = (lambda o: nc.log_softmax(o, axis=1),
                           lambda o: torch.log_softmax(o, 1))
    to_pred = {"KLDivLoss": (lambda o: nc.log_softmax(o, axis=1),
                             lambda o: torch.log_softmax(o, 1)),
               "BCELoss": (nc.sigmoid, torch.sigmoid)}
    mt, rt = to_target.get(loss, (lambda o: o, lambda o: o))
    mp, rp = to_pred.get(loss, (lambda o: o, lambda o: o))
    out = getattr(losses, loss)(**kw)(mp(student(x)), mt(teacher(x)))
    tx = torch.tensor(x)
    tout = _torch_crit(torch, loss, kw)(rp(ts(tx)), rt(tt(tx)))
    if kw.get("reduction") == "none":
        out.sum().backward()
        tout.sum().backward()
    else:
        out.backward()
        tout.backward()
    for net, twin in ((student, ts), (teacher, tt)):
        mine, ref = _grads(net), _twin_grads(twin)
        for k in ref:
            assert np.any(ref[k] != 0)
            _close(mine[k], ref[k], k)


def test_losses_add_up_and_reuse_a_criterion():
    """Two calls of one criterion keep their own contexts; sums of losses are recorded."""
    torch = pytest.importorskip("torch")
    nc.manual_seed(8)
    net = _Net(4, 3)
    twin = _twin(torch, net)
    rng = np.random.default_rng(8)
    x1, x2 = rng.standard_normal((3, 4)), rng.standard_normal((5, 4))
    y1, y2 = rng.integers(0, 3, 3), rng.integers(0, 3, 5)
    crit = losses.CrossEntropyLoss(weight=np.array([1.0, 2.0, 3.0]))
    bce = losses.BCEWithLogitsLoss()
    t2 = rng.uniform(0, 1, (5, 3))
    total = crit(net(x1), y1) + 0.5 * crit(net(x2), y2) + bce(net(x2), t2)
    total.backward()
    tcrit = torch.nn.CrossEntropyLoss(weight=torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
    tt = (tcrit(twin(torch.tensor(x1)), torch.tensor(y1))
          + 0.5 * tcrit(twin(torch.tensor(x2)), torch.tensor(y2))
          + torch.nn.BCEWithLogitsLoss()(twin(torch.tensor(x2)), torch.tensor(t2)))
    tt.backward()
    _close(float(total), tt.item())
    mine, ref = _grads(net), _twin_grads(twin)
    for k in ref:
        _close(mine[k], ref[k], k)


# --------------------------------------------------------------------------- without torch

def _ce_reference(z, y, weight, ignore_index, e, reduction):
    """CrossEntropyLoss with integer labels by loops, from the definition in PyTorch's
    documentation (log-softmax with a max shift; smoothing and weights; weighted mean)."""
    N, C = z.shape
    w = np.ones(C) if weight is None else weight
    per, den = np.zeros(N), 0.0
    for n in range(N):
        if y[n] == ignore_index:
            continue
        m = max(z[n])
        lse = m + math.log(sum(math.exp(v - m) for v in z[n]))
        logp = [v - lse for v in z[n]]
        per[n] = (1 - e) * -w[y[n]] * logp[y[n]] + e / C * sum(-w[c] * logp[c]
                                                                 for c in range(C))
        den += w[y[n]]
    if reduction == "none":
        return per
    return per.sum() / den if reduction == "mean" else per.sum()


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weight, ignore_index, e", [
    (None, -100, 0.0), ([0.2, 1.0, 3.0, 0.7], -100, 0.0), (None, 2, 0.3),
    ([0.2, 1.0, 3.0, 0.7], 0, 0.15), ([0.2, 1.0, 3.0, 0.7], -100, 1.0),
])
def test_cross_entropy_matches_a_loop_reference_and_finite_differences(weight, ignore_index, e,
                                                                       reduction):
    rng = np.random.default_rng(11)
    z = rng.standard_normal((6, 4)) * 2
    y = rng.integers(0, 4, 6)
    y[1] = ignore_index if ignore_index >= 0 else y[1]
    y[4] = ignore_index
    weight = None if weight is None else np.array(weight)
    crit = losses.CrossEntropyLoss(weight=weight, ignore_index=ignore_index,
                                   label_smoothing=e, reduction=reduction)
    _close(crit.forward(z, y), _ce_reference(z, y, weight, ignore_index, e, reduction))

    def fn(z):
        return np.asarray(crit.forward(z, y), F64)

    def bwd(dy, z):
        crit.forward(z, y)
        return crit.backward(dy if reduction == "none" else float(dy))

    assert gradcheck(fn, (z,), bwd)


def _finite_difference_case(loss):
    rng = np.random.default_rng(ALL.index(loss))
    shape = (3, 4, 2)
    kw = {"reduction": "none"}
    pred, target = rng.standard_normal(shape), rng.standard_normal(shape)
    if loss == "CrossEntropyLoss":
        target = rng.uniform(0, 1, shape)
        kw.update(weight=rng.uniform(0.5, 2, 4), label_smoothing=0.2)
    elif loss == "NLLLoss":
        return None
    elif loss == "BCELoss":
        pred, target = rng.uniform(0.05, 0.95, shape), rng.uniform(0, 1, shape)
        kw["weight"] = rng.uniform(0.5, 2, (4, 1))
    elif loss == "BCEWithLogitsLoss":
        target = rng.uniform(0, 1, shape)
        kw.update(weight=rng.uniform(0.5, 2, 2), pos_weight=rng.uniform(0.5, 2, (4, 2)))
    elif loss == "SmoothL1Loss":
        kw["beta"] = 0.8
    elif loss == "HuberLoss":
        kw["delta"] = 0.6
    elif loss == "KLDivLoss":
        pred, target = -np.abs(pred), rng.uniform(0.1, 1, shape)
    return kw, pred, target


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("loss", [name for name in ALL if name != "NLLLoss"])
def test_pred_and_target_gradients_match_finite_differences(loss, reduction):
    """The recorded form's d pred and d target (as parameters) against central differences;
    L1/SmoothL1/Huber kinks are away from the random points."""
    kw, pred, target = _finite_difference_case(loss)
    kw["reduction"] = reduction
    crit = getattr(losses, loss)(**kw)

    def fn(p, t):
        return np.asarray(crit.forward(p, t), F64)

    def bwd(dy, p, t):
        pp, pt = nn.Parameter(p.copy()), nn.Parameter(t.copy())
        out = crit(pp, pt)
        out.backward(dy if reduction == "none" else float(dy))
        return pp.grad, pt.grad

    assert gradcheck(fn, (pred, target), bwd)


def test_nll_gradient_matches_finite_differences():
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((4, 3, 2)), rng.integers(0, 3, (4, 2))
    y[0, 0] = -100
    crit = losses.NLLLoss(weight=np.array([0.5, 2.0, 1.0]))

    def bwd(dy, x):
        crit.forward(x, y)
        return crit.backward(float(dy))

    assert gradcheck(lambda x: np.asarray(crit.forward(x, y)), (x,), bwd)
    # NLL of log_softmax is cross-entropy
    z = rng.standard_normal((4, 3, 2))
    _close(losses.NLLLoss(reduction="none")(nc.log_softmax(z, axis=1), y),
           losses.CrossEntropyLoss(reduction="none")(z, y))


def test_closed_form_values():
    """Small cases worked out by hand from the definitions."""
    # BCE clamps log(0) at -100: p = 0 with t = 1 costs 100
    assert losses.BCELoss(reduction="sum").forward(np.array([0.0, 1.0]),
                                                   np.array([1.0, 1.0])) == 100.0
    # BCEWithLogits at x = 0 is log 2 whatever the target; pos_weight scales the positive part
    _close(losses.BCEWithLogitsLoss(pos_weight=np.array([3.0])).forward(
        np.zeros(2), np.array([1.0, 0.0])), (3 * math.log(2) + math.log(2)) / 2)
    # SmoothL1 with beta 2: |d| = 1 -> 0.5 * 1 / 2; |d| = 3 -> 3 - 1
    _close(losses.SmoothL1Loss(reduction="none", beta=2.0).forward(np.array([1.0, -3.0]),
                                                                   np.zeros(2)), [0.25, 2.0])
    # Huber = delta * SmoothL1(beta=delta)
    d = np.linspace(-3, 3, 13)
    _close(losses.HuberLoss(reduction="none", delta=1.5).forward(d, np.zeros(13)),
           1.5 * losses.SmoothL1Loss(reduction="none", beta=1.5).forward(d, np.zeros(13)))
    # KL(p || q) of two distributions, batchmean
    p, q = np.array([[0.2, 0.8], [0.5, 0.5]]), np.array([[0.4, 0.6], [0.9, 0.1]])
    kl = np.sum(p * np.log(p / q)) / 2
    _close(losses.KLDivLoss(reduction="batchmean").forward(np.log(q), p), kl)
    _close(losses.KLDivLoss(reduction="batchmean", log_target=True).forward(np.log(q),
                                                                            np.log(p)), kl)
    # label smoothing 1 on uniform logits: every class gets -log(1/C)
    _close(losses.CrossEntropyLoss(label_smoothing=1.0).forward(np.zeros((2, 5)),
                                                                np.array([0, 3])), math.log(5))
    # zero-probability targets add nothing to KL (0 log 0 = 0)
    _close(losses.KLDivLoss(reduction="sum").forward(np.array([-1.0, -2.0]),
                                                     np.array([0.0, 1.0])), 2.0)


# --------------------------------------------------------------------------- edges

EMPTY = [
    (losses.CrossEntropyLoss(), (0, 3), np.zeros(0, np.int64), (0,)),
    (losses.CrossEntropyLoss(weight=np.ones(3), label_smoothing=0.1), (0, 3, 2),
     np.zeros((0, 2), np.int64), (0, 2)),
    (losses.CrossEntropyLoss(), (0, 3), np.zeros((0, 3)), (0,)),
    (losses.NLLLoss(), (0, 3), np.zeros(0, np.int64), (0,)),
    (losses.BCELoss(), (0, 3), np.zeros((0, 3)), (0, 3)),
    (losses.BCEWithLogitsLoss(pos_weight=np.ones(3)), (0, 3), np.zeros((0, 3)), (0, 3)),
    (losses.MSELoss(), (0, 3), np.zeros((0, 3)), (0, 3)),
    (losses.L1Loss(), (0, 3), np.zeros((0, 3)), (0, 3)),
    (losses.SmoothL1Loss(), (0, 3), np.zeros((0, 3)), (0, 3)),
    (losses.HuberLoss(), (0, 3), np.zeros((0, 3)), (0, 3)),
    (losses.KLDivLoss(), (0, 3), np.zeros((0, 3)), (0, 3)),
    (losses.KLDivLoss(reduction="batchmean"), (0, 3), np.zeros((0, 3)), (0, 3)),
]


@pytest.mark.parametrize("crit, shape, target, none_shape", EMPTY,
                         ids=[f"{type(c).__name__}{i}" for i, (c, *_) in enumerate(EMPTY)])
def test_an_empty_batch(crit, shape, target, none_shape):
    """PyTorch: the mean over nothing is NaN (batchmean too), the sum 0; "none" keeps shapes."""
    x = np.zeros(shape)
    assert np.isnan(crit.forward(x, target))
    assert crit.backward().shape == shape
    reduction = crit.reduction
    try:
        crit.reduction = "sum"
        assert crit.forward(x, target) == 0.0
        crit.reduction = "none"
        per = crit.forward(x, target)
        assert per.shape == none_shape and per.dtype == F64
        assert crit.backward().shape == shape
    finally:
        crit.reduction = reduction


@pytest.mark.parametrize("loss", ALL)
def test_float32_in_float32_out(loss):
    if loss == "NLLLoss":
        kw, pred, target = {}, np.random.default_rng(0).standard_normal((3, 4)), np.array([0, 3, 1])
    else:
        kw, pred, target = _finite_difference_case(loss)
    kw = {**kw, "reduction": "none"}
    crit = getattr(losses, loss)(**kw)
    p32 = pred.astype(np.float32)
    t32 = target.astype(np.float32) if target.dtype.kind == "f" else target
    per = crit.forward(p32, t32)
    assert per.dtype == np.float32
    d = crit.backward()
    assert d.dtype == np.float32 and d.shape == pred.shape
    np.testing.assert_allclose(per, crit.forward(pred, target), rtol=1e-5, atol=1e-5)
    pp = nn.Parameter(p32.copy())
    out = crit(pp, t32)
    assert out.dtype == np.float32
    out.sum().backward()
    assert pp.grad.dtype == np.float32


def test_unbatched_input():
    torch = pytest.importorskip("torch")
    z = np.array([0.3, -1.2, 2.0, 0.1])
    for kw in ({}, {"weight": np.array([1.0, 2, 3, 4]), "label_smoothing": 0.2},
               {"reduction": "none"}):
        _check_against_torch("CrossEntropyLoss", {"reduction": "mean", **kw}, z, np.array(2),
                             np.float64(0.7))
        _check_against_torch("NLLLoss", {"reduction": "mean", **{k: v for k, v in kw.items()
                                                                  if k != "label_smoothing"}},
                             z, np.array(1), np.float64(0.7))
    per = losses.CrossEntropyLoss(reduction="none").forward(z, np.array(2))
    assert per.shape == () and torch is not None


def test_nan_propagates_as_in_torch():
    z = np.array([[np.nan, 0.0, 1.0], [0.0, 1.0, 2.0]])
    for crit in (losses.CrossEntropyLoss(reduction="none"), losses.NLLLoss(reduction="none")):
        per = crit.forward(z, np.array([1, 0]))
        assert np.isnan(per[0]) == isinstance(crit, losses.CrossEntropyLoss)
        assert np.isfinite(per[1])
    for cls in (losses.MSELoss, losses.L1Loss, losses.SmoothL1Loss, losses.HuberLoss,
                losses.BCEWithLogitsLoss):
        per = cls(reduction="none").forward(np.array([np.nan, 0.5, np.inf]),
                                            np.array([0.0, 0.5, 0.0]))
        assert np.isnan(per[0]) and np.isfinite(per[1]), cls.__name__
        assert np.isnan(cls().forward(np.array([np.nan, 0.5]), np.zeros(2)))


def test_the_losses_are_in_nn_and_print_their_arguments():
    for name in ALL:
        assert getattr(nn, name) is getattr(losses, name) and name in nn.__all__
        assert name in losses.__all__
    assert repr(nn.CrossEntropyLoss()) == "CrossEntropyLoss()"
    assert repr(nn.HuberLoss(reduction="sum", delta=2.0)) == \
        "HuberLoss(reduction='sum', delta=2.0)"


def test_explicit_backward_checks_its_gradient():
    crit = losses.MSELoss(reduction="none")
    with pytest.raises(RuntimeError, match="before forward"):
        crit.backward()
    crit.forward(np.zeros((2, 3)), np.ones((2, 3)))
    np.testing.assert_array_equal(crit.backward(), np.full((2, 3), -2.0))  # d sum
    with pytest.raises(ValueError, match="'gradient' has shape"):
        crit.backward(np.ones(3))
    crit = losses.MSELoss()
    crit.forward(np.zeros(2), np.ones(2))
    with pytest.raises(ValueError, match="'gradient' must be a number"):
        crit.backward(np.ones(2))


BAD = [
    (lambda: losses.CrossEntropyLoss(reduction="avg"), ValueError, "reduction"),
    (lambda: losses.MSELoss(reduction="batchmean"), ValueError, "reduction"),
    (lambda: losses.L1Loss(reduction=None), ValueError, "reduction"),
    (lambda: losses.CrossEntropyLoss(label_smoothing=1.5), ValueError, "label_smoothing"),
    (lambda: losses.CrossEntropyLoss(label_smoothing="0.1"), TypeError, "label_smoothing"),
    (lambda: losses.CrossEntropyLoss(ignore_index=1.0), TypeError, "ignore_index"),
    (lambda: losses.CrossEntropyLoss(weight=np.ones((2, 2))), ValueError, "weight"),
    (lambda: losses.NLLLoss(weight=["a", "b"]), TypeError, "weight"),
    (lambda: losses.SmoothL1Loss(beta=-1.0), ValueError, "beta"),
    (lambda: losses.HuberLoss(delta=0.0), ValueError, "delta"),
    (lambda: losses.HuberLoss(delta=float("nan")), ValueError, "delta"),
    (lambda: losses.KLDivLoss(log_target="yes"), TypeError, "log_target"),
    (lambda: losses.BCEWithLogitsLoss(pos_weight=np.array([1 + 1j])), TypeError, "pos_weight"),
]


@pytest.mark.parametrize("make, exc, match", BAD)
def test_bad_constructor_arguments(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_bad_call_arguments_name_the_argument_and_shapes():
    z = np.zeros((3, 4))
    ce = losses.CrossEntropyLoss()
    for labels in (np.array([0, 1, 4]), np.array([0, -1, 2])):
        with pytest.raises(ValueError, match=r"'target' has labels outside \[0, 4\)"):
            ce.forward(z, labels)
        with pytest.raises(IndexError):  # PyTorch's exception type for it
            ce.forward(z, labels)
    with pytest.raises(ValueError, match=r"'target' must be integer labels of shape \(3,\) or "
                                         r"float class probabilities of shape \(3, 4\)"):
        ce.forward(z, np.zeros(3))  # float labels
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        ce.forward(z, np.array([0, 1]))
    with pytest.raises(ValueError, match=r"shape \(3, 3\)"):
        ce.forward(z, np.zeros((3, 3)))
    with pytest.raises(ValueError, match="'logits'"):
        ce.forward(np.float64(1.0), np.array(0))
    with pytest.raises(ValueError, match=r"'weight' must have one entry per class \(4"):
        losses.CrossEntropyLoss(weight=np.ones(3)).forward(z, np.array([0, 1, 2]))
    with pytest.raises(ValueError, match=r"'weight' must have one entry per class \(4"):
        losses.NLLLoss(weight=np.ones(5)).forward(z, np.array([0, 1, 2]))
    with pytest.raises(ValueError, match=r"'target' must be integer labels of shape \(3, 5\)"):
        losses.NLLLoss().forward(np.zeros((3, 4, 5)), np.zeros((3, 4), np.int64))
    with pytest.raises(IndexError, match="labels outside"):
        losses.NLLLoss(ignore_index=4).forward(z, np.array([0, 5, 4]))
    losses.NLLLoss(ignore_index=4).forward(z, np.array([0, 3, 4]))  # 4 is ignored: fine
    with pytest.raises(ValueError, match=r"'pred' must hold probabilities in \[0, 1\]"):
        losses.BCELoss().forward(np.array([0.5, 1.5]), np.ones(2))
    with pytest.raises(ValueError, match=r"probabilities in \[0, 1\]"):  # NaN: PyTorch refuses
        losses.BCELoss().forward(np.array([0.5, np.nan]), np.ones(2))
    with pytest.raises(ValueError, match=r"'weight' of shape \(3,\) does not broadcast"):
        losses.BCELoss(weight=np.ones(3)).forward(np.full((3, 4), 0.5), np.ones((3, 4)))
    with pytest.raises(ValueError, match=r"'pos_weight' of shape \(2, 3, 4\) would enlarge"):
        losses.BCEWithLogitsLoss(pos_weight=np.ones((2, 3, 4))).forward(z, z)
    for cls in (losses.MSELoss, losses.L1Loss, losses.SmoothL1Loss, losses.HuberLoss,
                losses.BCEWithLogitsLoss, losses.KLDivLoss):
        with pytest.raises(ValueError, match=r"'pred' \(3, 4\) and 'target' \(3,\) must have "
                                             "the same shape"):
            cls().forward(z, np.zeros(3))
    with pytest.raises(TypeError, match="'target' is complex"):
        losses.MSELoss().forward(z, z + 0j)
    with pytest.raises(TypeError, match="float16"):
        losses.MSELoss().forward(z.astype(np.float16), z)


def test_a_constant_argument_is_copied():
    w = np.ones(3)
    crit = losses.CrossEntropyLoss(weight=w)
    w[0] = 100.0
    _close(crit.forward(np.zeros((1, 3)), np.array([0])), math.log(3))


def test_fit_trains_with_the_new_cross_entropy_options():
    from nbconv import data, optim
    from nbconv.train import fit

    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0)
    nc.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    crit = losses.CrossEntropyLoss(weight=np.array([1.0, 0.5, 1.0]), label_smoothing=0.05)
    hist = fit(model, crit, optim.SGD(model.parameters(), lr=0.5),
               data.DataLoader(x, y, 8, seed=0), epochs=6, progress=False)
    assert hist["loss"][-1] < hist["loss"][0] and hist["accuracy"][-1] > 0.7

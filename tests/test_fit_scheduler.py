"""fit(scheduler=, scheduler_interval=): stepping per epoch or per batch, ReduceLROnPlateau's
metric, the scheduler in checkpoints and a bit-identical resume, errors."""

import numpy as np
import pytest

import nbconv as nc
from nbconv import data, losses, nn, optim
from nbconv.optim import lr_scheduler as ls
from nbconv.train import fit


def _problem(seed=0, n=64):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.standard_normal((n, 1, 6, 6)).astype(np.float32) * 0.5
    for k in range(3):
        x[y == k, 0, 2 * k:2 * k + 2, 1:5] += 2.0
    return x, y


def _model(seed=0):
    nc.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Dropout(0.2), nn.Flatten(),
                         nn.Linear(48, 3))


SETUPS = {
    "warmup_cosine": (lambda m: optim.SGD([{"params": m[0].parameters()},
                                           {"params": m[4].parameters(), "lr": 0.02}],
                                          lr=0.05, momentum=0.9),
                      lambda o, per_epoch: ls.SequentialLR(
                          o, [ls.LinearLR(o, 0.25, total_iters=2),
                              ls.CosineAnnealingLR(o, T_max=3)], milestones=[2]),
                      "epoch"),
    "onecycle_adam": (lambda m: optim.AdamW(m.parameters(), lr=1e-3),
                      lambda o, per_epoch: ls.OneCycleLR(o, max_lr=1e-2, epochs=5,
                                                         steps_per_epoch=per_epoch),
                      "batch"),
    "plateau": (lambda m: optim.RMSprop(m.parameters(), lr=1e-2, momentum=0.5),
                lambda o, per_epoch: ls.ReduceLROnPlateau(o, factor=0.5, patience=0,
                                                          threshold=0.5),
                "epoch"),
}


def _run(key, epochs, checkpoint=None, resume=None, val=True):
    make_opt, make_sched, interval = SETUPS[key]
    x, y = _problem()
    model = _model()
    loader = data.DataLoader(x, y, 16, shuffle=True, seed=0)
    opt = make_opt(model)
    sched = make_sched(opt, len(loader))
    hist = fit(model, losses.CrossEntropyLoss(), opt, loader, epochs,
               val_loader=data.DataLoader(x, y, 32, shuffle=False) if val else None,
               checkpoint=checkpoint, resume=resume, progress=False, scheduler=sched,
               scheduler_interval=interval)
    return model, opt, sched, hist


@pytest.mark.parametrize("key", list(SETUPS))
def test_interrupted_and_resumed_equals_uninterrupted(tmp_path, key):
    full, full_opt, full_sched, full_hist = _run(key, 5)
    ckpt = tmp_path / "ckpt.h5"
    _run(key, 2, checkpoint=ckpt)
    nc.manual_seed(999)  # another process state
    resumed, opt, sched, hist = _run(key, 5, resume=ckpt)
    for k, v in full.state_dict().items():
        np.testing.assert_array_equal(v, resumed.state_dict()[k], err_msg=k)
    assert hist["lr"] == full_hist["lr"] and hist["loss"][:2] == full_hist["loss"][:2]
    assert len(set(hist["lr"])) >= 3  # the schedule moved across the interruption
    assert sched.state_dict() == full_sched.state_dict()
    assert [g["lr"] for g in opt.param_groups] == [g["lr"] for g in full_opt.param_groups]
    mine, ref = opt.state_dict()["state"], full_opt.state_dict()["state"]
    assert sorted(mine) == sorted(ref)
    for k, v in ref.items():
        np.testing.assert_array_equal(mine[k], v, err_msg=k)


def test_epoch_schedule_sequence_in_history():
    torch = pytest.importorskip("torch")
    _, _, _, hist = _run("warmup_cosine", 5)
    t = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.05, momentum=0.9)
    s = torch.optim.lr_scheduler.SequentialLR(
        t, [torch.optim.lr_scheduler.LinearLR(t, 0.25, total_iters=2),
            torch.optim.lr_scheduler.CosineAnnealingLR(t, T_max=3)], milestones=[2])
    expect = []
    for _ in range(5):
        expect.append(s.get_last_lr()[0])
        t.step()
        s.step()
    np.testing.assert_allclose(hist["lr"], expect, rtol=1e-13)


def test_batch_schedule_steps_after_every_optimizer_step():
    torch = pytest.importorskip("torch")
    _, opt, sched, hist = _run("onecycle_adam", 5)
    assert sched.last_epoch == 5 * 4 == opt.step_count  # 64 samples in batches of 16
    t = torch.optim.AdamW([torch.zeros(1, requires_grad=True)], lr=1e-3)
    s = torch.optim.lr_scheduler.OneCycleLR(t, max_lr=1e-2, epochs=5, steps_per_epoch=4)
    lrs = []
    for _ in range(20):
        lrs.append(s.get_last_lr()[0])
        t.step()
        s.step()
    np.testing.assert_allclose(hist["lr"], lrs[::4], rtol=1e-13)
    assert opt.param_groups[0]["betas"][0] == pytest.approx(t.param_groups[0]["betas"][0])


@pytest.mark.parametrize("val", [True, False])
def test_plateau_gets_the_validation_loss(val):
    seen = []

    class Spy(ls.ReduceLROnPlateau):
        def step(self, metrics):
            seen.append(metrics)
            super().step(metrics)

    SETUPS["spy"] = (SETUPS["plateau"][0], lambda o, n: Spy(o, factor=0.5, patience=0),
                     "epoch")
    try:
        _, _, sched, hist = _run("spy", 3, val=val)
    finally:
        del SETUPS["spy"]
    assert seen == (hist["val_loss"] if val else hist["loss"])
    assert min(seen) <= sched.best <= min(seen) / (1 - 1e-4)  # rel threshold 1e-4


def _fit(model, opt, sched, interval="epoch", **kw):
    x, y = _problem(n=16)
    return fit(model, losses.CrossEntropyLoss(), opt, data.DataLoader(x, y, 8), 1,
               progress=False, scheduler=sched, scheduler_interval=interval, **kw)


def test_errors():
    m = _model()
    opt = optim.SGD(m.parameters(), lr=0.1)
    other = optim.SGD(m.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="another optimizer"):
        _fit(m, opt, ls.StepLR(other, 1))
    with pytest.raises(ValueError, match="argument 'scheduler_interval'"):
        _fit(m, opt, ls.StepLR(opt, 1), interval="step")
    with pytest.raises(ValueError, match="ReduceLROnPlateau"):
        _fit(m, opt, ls.ReduceLROnPlateau(opt), interval="batch")
    with pytest.raises(TypeError, match="argument 'scheduler'"):
        _fit(m, opt, object())


def test_resume_needs_matching_scheduler_state(tmp_path):
    m = _model()
    opt = optim.SGD(m.parameters(), lr=0.1)
    _fit(m, opt, None, checkpoint=tmp_path / "plain.h5")
    with pytest.raises(ValueError, match="without scheduler state"):
        _fit(m, opt, ls.StepLR(opt, 1), resume=tmp_path / "plain.h5")
    _fit(m, opt, ls.StepLR(opt, 1), checkpoint=tmp_path / "step.h5")
    opt2 = optim.SGD(m.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="StepLR"):
        _fit(m, opt2, ls.ExponentialLR(opt2, 0.5), resume=tmp_path / "step.h5")
    _, _, meta = nc.load_state(tmp_path / "step.h5")
    assert meta["scheduler"]["type"] == "StepLR" and meta["scheduler"]["state"]["last_epoch"] == 1
    # resuming without a scheduler is fine: the groups' learning rates come with the optimizer
    opt3 = optim.SGD(m.parameters(), lr=0.1)
    hist = _fit(m, opt3, None, resume=tmp_path / "step.h5")
    assert opt3.param_groups[0]["lr"] == pytest.approx(0.01) and hist["lr"] == [0.1]

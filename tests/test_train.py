"""fit(): history, checkpoints, bit-identical resume, the training-curve PNG; evaluate()."""

import re
import sys

import numpy as np
import pytest

import nbconv as nc
from nbconv import data, losses, nn, optim
from nbconv.train import evaluate, fit


def _problem(seed=0, n=96):
    """A small separable 3-class image problem."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.standard_normal((n, 1, 8, 8)).astype(np.float32) * 0.5
    for k in range(3):
        x[y == k, 0, 2 * k:2 * k + 3, 2:6] += 2.0
    return x, y


def _model(seed):
    nc.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(0.2),
                         nn.Flatten(), nn.Linear(36, 3))


def _run(epochs, tmp_path, resume=None, checkpoint=None, seed=0):
    x, y = _problem()
    model = _model(seed)
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loader = data.DataLoader(x, y, 16, shuffle=True, seed=seed)
    hist = fit(model, losses.CrossEntropyLoss(), opt, loader, epochs,
               val_loader=data.DataLoader(x, y, 32, shuffle=False), checkpoint=checkpoint,
               resume=resume, progress=False)
    return model, hist


def test_fit_learns_and_records_history(tmp_path):
    model, hist = _run(6, tmp_path)
    assert hist.epochs == 6
    assert hist["loss"][-1] < hist["loss"][0]
    assert hist["val_accuracy"][-1] >= 0.9
    assert all(s > 0 for s in hist["seconds"]) and all(r > 0 for r in hist["images_per_s"])
    x, y = _problem()
    _, acc = evaluate(model, data.DataLoader(x, y, 50, shuffle=False))
    assert acc == pytest.approx(hist["val_accuracy"][-1])
    assert model.training  # evaluate restores the mode


def test_same_seed_gives_bit_identical_weights(tmp_path):
    a, _ = _run(2, tmp_path)
    b, _ = _run(2, tmp_path)
    for k, v in a.state_dict().items():
        np.testing.assert_array_equal(v, b.state_dict()[k])


def test_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path):
    full, full_hist = _run(4, tmp_path)
    ckpt = tmp_path / "ckpt.h5"
    _run(2, tmp_path, checkpoint=ckpt)
    # A fresh process state: other seeds everywhere, then resume from the checkpoint.
    nc.manual_seed(12345)
    resumed, hist = _run(4, tmp_path, resume=ckpt, seed=0)
    assert hist.epochs == 4
    np.testing.assert_allclose(hist["loss"][:2], full_hist["loss"][:2])
    for k, v in full.state_dict().items():
        np.testing.assert_array_equal(v, resumed.state_dict()[k], err_msg=k)


def test_checkpoint_file_reloads_model_and_metadata(tmp_path):
    ckpt = tmp_path / "ckpt.h5"
    model, _ = _run(1, tmp_path, checkpoint=ckpt)
    loaded, opt_state, meta = nc.load_state(ckpt)
    assert meta["epoch"] == 1 and opt_state["type"] == "SGD"
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, loaded.state_dict()[k])


def test_plot_and_callbacks(tmp_path):
    x, y = _problem()
    model = _model(0)
    seen = []

    def stop_after_two(epoch, hist):
        seen.append(epoch)
        return epoch < 2

    png = tmp_path / "curve.png"
    hist = fit(model, losses.CrossEntropyLoss(), optim.Adam(model.parameters(), lr=1e-2),
               data.DataLoader(x, y, 32, seed=0), 5, callbacks=[stop_after_two], plot=png,
               progress=True)
    assert seen == [1, 2] and hist.epochs == 2
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_fit_rejects_negative_epochs():
    x, y = _problem()
    m = _model(0)
    with pytest.raises(ValueError, match="epochs"):
        fit(m, losses.CrossEntropyLoss(), optim.SGD(m.parameters(), lr=0.1),
            data.DataLoader(x, y, 8), -1)


def test_host_fit_never_loads_the_cuda_target():
    # fit/evaluate only ask whether the parameters are device arrays; on the host that must
    # not import numba's CUDA target (importing nbconv and training on the CPU need no GPU).
    already = "nbconv.cuda._target" in sys.modules
    x, y = _problem(n=32)
    m = _model(0)
    hist = fit(m, losses.CrossEntropyLoss(), optim.SGD(m.parameters(), lr=0.1),
               data.DataLoader(x, y, 16, seed=0), 1, progress=False,
               val_loader=data.DataLoader(x, y, 32, shuffle=False))
    assert type(hist["loss"][0]) is float and hist["val_accuracy"][0] is not None
    if not already:
        assert "nbconv.cuda._target" not in sys.modules


def test_fit_refuses_a_loss_without_reduction():
    from nbconv import models

    model = models.lenet5()
    loader = data.DataLoader(np.zeros((4, 1, 28, 28), np.float32), np.zeros(4, np.int64), 2)
    with pytest.raises(ValueError, match=r"reduction='none'"):
        nc.train.fit(model, nc.losses.CrossEntropyLoss(reduction="none"),
                     optim.SGD(model.parameters(), lr=0.1), loader, 1, progress=False)


def _fit_printing(capsys, progress, val=True, loss=None, epochs=3):
    x, y = _problem()
    model = _model(0)
    loss = loss or losses.CrossEntropyLoss()
    hist = fit(model, loss, optim.SGD(model.parameters(), lr=0.05),
               data.DataLoader(x, y, 16, seed=0), epochs,
               val_loader=data.DataLoader(x, y, 32, shuffle=False) if val else None,
               progress=progress)
    return hist, capsys.readouterr()


def test_progress_leaves_one_line_per_epoch(capsys):
    """The bars are cleared (leave=False), but every epoch's figures stay on stdout."""
    hist, out = _fit_printing(capsys, True)
    lines = out.out.splitlines()
    assert len(lines) == 3, out.out
    pattern = (r"epoch (\d)/3  loss (\S+)  acc (\S+)  val_loss (\S+)  val_acc (\S+)  "
               r"(\S+) s  (\d+) img/s")
    for e, line in enumerate(lines):
        m = re.fullmatch(pattern, line)
        assert m, line
        assert int(m[1]) == e + 1
        for i, key in enumerate(("loss", "accuracy", "val_loss", "val_accuracy"), start=2):
            assert float(m[i]) == pytest.approx(hist[key][e], abs=5e-5)
        assert float(m[6]) == pytest.approx(hist["seconds"][e], abs=0.05)
    assert "epoch 1/3" in out.err  # the bar's description, on stderr


def test_progress_line_without_validation_or_accuracy(capsys):
    _, out = _fit_printing(capsys, True, val=False, epochs=1)
    assert re.fullmatch(r"epoch 1/1  loss \S+  acc \S+  \S+ s  \d+ img/s\n",
                                      out.out), out.out
    x, y = _problem()
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 1))
    fit(model, losses.MSELoss(), optim.SGD(model.parameters(), lr=0.01),
        data.DataLoader(x, y[:, None].astype(np.float32), 32, seed=0), 1, progress=True)
    line = capsys.readouterr().out
    assert "acc" not in line and line.startswith("epoch 1/1  loss "), line


def test_no_progress_prints_nothing(capsys):
    _, out = _fit_printing(capsys, False, epochs=2)
    assert out.out == "" and "epoch" not in out.err  # no bar (a compile notice may show)

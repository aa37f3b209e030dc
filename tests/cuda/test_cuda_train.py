"""nbconv.train.fit and evaluate on a model that lives on the device.

The same tiny model is trained from one seed on the host and on the device; the histories and
final weights must agree to float rounding, and a checkpoint written on the device must resume
(onto the device) bit-identically to an uninterrupted device run.  Shapes are tiny: the
simulator runs one Python thread per CUDA thread.
"""

import shutil

import numpy as np
import pytest
from helpers import nc, ncu, rng

from nbconv.train import evaluate, fit

nn = nc.nn
RTOL, ATOL = 2e-5, 2e-6  # float32, a few SGD steps


def problem():
    """16 separable 6x6 images of 3 classes (int64 labels, as DataLoader yields them)."""
    r = rng(60)
    y = r.integers(0, 3, 16)
    x = r.standard_normal((16, 1, 6, 6)).astype(np.float32) * 0.5
    for k in range(3):
        x[y == k, 0, 2 * k:2 * k + 2, 1:5] += 2.0
    return x, y


def tiny(seed=0):
    nc.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Dropout(0.25), nn.Flatten(),
                         nn.Linear(2 * 4 * 4, 3))


def run(model, epochs, **kwargs):
    """fit ``model`` on :func:`problem` (SGD with momentum, batches of 8, validation on 8)."""
    x, y = problem()
    opt = nc.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    val = nc.data.DataLoader(x[:8], y[:8], 8, shuffle=False)
    hist = fit(model, nc.losses.CrossEntropyLoss(), opt, nc.data.DataLoader(x, y, 8, seed=3),
               epochs, val_loader=val, progress=False, **kwargs)
    return hist, opt


def on_device(model, opt):
    return (all(ncu.is_device_array(p.data) and ncu.is_device_array(p.grad)
                for p in model.parameters())
            and all(ncu.is_device_array(v) for st in opt.state for v in st.values()))


def test_fit_on_device_matches_host_and_resumes(tmp_path):
    # One device run serves both checks (the simulator is slow): compared with a host run
    # from the same seeds, and its epoch-1 checkpoint resumed into a fresh device model.
    host, dev = tiny(), ncu.to_device(tiny())
    nc.manual_seed(7)  # dropout masks: the same draws on host and device
    hh, _ = run(host, 2)
    ckpt, ckpt1 = tmp_path / "ckpt.h5", tmp_path / "epoch1.h5"

    def keep_epoch_1(epoch, hist):
        if epoch == 1:
            shutil.copyfile(ckpt, ckpt1)

    nc.manual_seed(7)
    hd, opt = run(dev, 2, checkpoint=ckpt, callbacks=[keep_epoch_1])
    assert on_device(dev, opt)
    assert hd.epochs == hh.epochs == 2
    for key in ("loss", "val_loss"):
        assert all(type(v) is float for v in hd[key]), (key, hd[key])
        np.testing.assert_allclose(hd[key], hh[key], rtol=RTOL, err_msg=key)
    for key in ("accuracy", "val_accuracy"):
        assert hd[key] == hh[key], key
    assert hd["loss"][-1] < hd["loss"][0]
    for k, v in host.state_dict().items():
        np.testing.assert_allclose(dev.state_dict()[k], v, rtol=RTOL, atol=ATOL, err_msg=k)

    # the checkpoint is an ordinary host file with the device model's state
    loaded, opt_state, meta = nc.load_state(ckpt)
    assert meta["epoch"] == 2 and opt_state["type"] == "SGD"
    for k, v in dev.state_dict().items():
        np.testing.assert_array_equal(loaded.state_dict()[k], v, err_msg=k)

    # resume epoch 2 into a device model built from another seed, generator disturbed:
    # bit-identical to the uninterrupted device run
    resumed = ncu.to_device(tiny(seed=99))
    nc.manual_seed(12345)
    hr, opt_r = run(resumed, 2, resume=ckpt1)
    assert on_device(resumed, opt_r)
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert hr[key] == hd[key], key
    for k, v in dev.state_dict().items():
        np.testing.assert_array_equal(resumed.state_dict()[k], v, err_msg=k)


def test_evaluate_device_model_with_device_batches():
    host, dev = tiny(), ncu.to_device(tiny())
    x, y = problem()
    x, y = x[:8], y[:8]
    crit = nc.losses.CrossEntropyLoss()
    dl, da = evaluate(dev, [ncu.to_device((x, y))], crit)  # a loader already on the device
    hl, ha = evaluate(host, [(x, y)], crit)
    assert type(dl) is float and da == ha and dev.training
    np.testing.assert_allclose(dl, hl, rtol=RTOL)


def test_model_half_on_the_device_is_rejected():
    model = tiny()
    ncu.to_device(model[0])
    x, y = problem()
    opt = nc.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="fit: argument 'model' has parameters both"):
        fit(model, nc.losses.CrossEntropyLoss(), opt, nc.data.DataLoader(x, y, 8), 1,
            progress=False)
    with pytest.raises(ValueError, match="evaluate: argument 'model'"):
        evaluate(model, [(x, y)])

"""Whole models on the device: nbconv.cuda.to_device(model), layers, losses and optimizers.

Each test builds the same model twice from one seed, moves one copy to the device and trains
both side by side; the device run must match the CPU run to float rounding (a consistency
check: the CPU layers themselves are checked against references and finite differences in
tests/).  Shapes are tiny: the simulator runs one Python thread per CUDA thread.
"""

import numpy as np
import pytest
from helpers import nc, ncu, rng

nn = nc.nn

#: (rtol, atol) of device against host results after a few training steps, by dtype.
STEP_TOL = {np.dtype(np.float32): (2e-5, 2e-6), np.dtype(np.float64): (1e-10, 1e-12)}


def close(dev, host, what=""):
    """Assert ``dev`` is a device array equal to the host array ``host`` to float rounding."""
    assert ncu.is_device_array(dev), f"{what}: {type(dev).__name__} is not on the device"
    got = ncu.to_host(dev)
    assert got.shape == host.shape and got.dtype == host.dtype, (what, got.shape, host.shape)
    rtol, atol = STEP_TOL.get(host.dtype, (0, 0))
    np.testing.assert_allclose(got, host, rtol=rtol, atol=atol, err_msg=what)


def twins(build, dtype):
    """Two identical models from one seed; the second moved to the device."""
    host, dev = build().astype(dtype), build().astype(dtype)
    dev.load_state_dict(host.state_dict())
    assert ncu.to_device(dev) is dev
    return host, dev


def check_params(host, dev, grads=True):
    hp, dp = dict(host.named_parameters()), dict(dev.named_parameters())
    assert hp.keys() == dp.keys()
    for k in hp:
        close(dp[k].data, hp[k].data, k)
        if grads:
            close(dp[k].grad, hp[k].grad, k + ".grad")


def make_optimizers(kind, host, dev):
    if kind == "sgd":
        mk = lambda m: nc.optim.SGD(m.parameters(), lr=0.1, momentum=0.9, nesterov=True,  # noqa: E731
                                    weight_decay=1e-2)
    else:
        mk = lambda m: nc.optim.Adam(m.parameters(), lr=1e-2, weight_decay=1e-2)  # noqa: E731
    return mk(host), mk(dev)


def train_both(host, dev, x, target, loss_cls, kind, steps=2):
    """Train both copies ``steps`` steps, comparing outputs, losses, grads and parameters."""
    oh, od = make_optimizers(kind, host, dev)
    ch, cd = loss_cls(), loss_cls()
    xd, td = ncu.to_device(x), ncu.to_device(target)
    for s in range(steps):
        oh.zero_grad()
        od.zero_grad()
        yh, yd = host(x), dev(xd)
        close(yd, yh, f"step {s} output")
        lh, ld = ch(yh, target), cd(yd, td)
        assert isinstance(ld, float)
        np.testing.assert_allclose(ld, lh, rtol=STEP_TOL[yh.dtype][0])
        dyh, dyd = ch.backward(), cd.backward()
        close(dyd, dyh, f"step {s} loss gradient")
        dxh, dxd = host.backward(dyh), dev.backward(dyd)
        close(dxd, dxh, f"step {s} input gradient")
        check_params(host, dev)
        oh.step()
        od.step()
        check_params(host, dev, grads=False)
    sh, sd = oh.state_dict(), od.state_dict()
    assert sh["state"].keys() == sd["state"].keys() and sh["state"]
    for k, v in sd["state"].items():
        assert type(v) is np.ndarray
        np.testing.assert_allclose(v, sh["state"][k], rtol=1e-4, atol=1e-6)
    return oh, od


def lenet_like():
    nc.manual_seed(1)
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(2 * 3 * 3, 3))


@pytest.mark.parametrize("dtype, kind", [(np.float32, "sgd"), (np.float64, "adam"),
                                         (np.float32, "adam")])
def test_lenet_like_trains_like_cpu(dtype, kind):
    host, dev = twins(lenet_like, dtype)
    x = rng(50).standard_normal((2, 1, 8, 8)).astype(dtype)
    train_both(host, dev, x, np.array([0, 2]), nc.losses.CrossEntropyLoss, kind)


def norm_model():
    nc.manual_seed(2)
    return nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.Tanh(), nn.LocalResponseNorm(2),
        nn.AvgPool2d(2), nn.Dropout(0.3, rng=7), nn.Flatten(), nn.Linear(3 * 2 * 2, 4),
        nn.BatchNorm1d(4), nn.Sigmoid(), nn.Linear(4, 2), nn.LeakyReLU(0.1), nn.Softmax())


@pytest.mark.parametrize("loss_cls, kind", [(nc.losses.MSELoss, "adam"),
                                            (nc.losses.L1Loss, "sgd")])
def test_norm_dropout_model_trains_like_cpu(loss_cls, kind):
    host, dev = twins(norm_model, np.float64)
    r = rng(51)
    x = r.standard_normal((3, 2, 4, 4))
    train_both(host, dev, x, r.random((3, 2)), loss_cls, kind)
    for key, buf in dev.state_dict().items():  # running statistics, num_batches_tracked
        np.testing.assert_allclose(buf, host.state_dict()[key], rtol=1e-10, atol=1e-12)
    assert int(dev.state_dict()["1.num_batches_tracked"]) == 2
    bn = dev[1]
    assert all(ncu.is_device_array(b) for b in bn._buffers.values())
    host.eval()
    dev.eval()
    with nc.no_grad():
        close(dev(ncu.to_device(x)), host(x), "eval output")


def graph_model():
    nc.manual_seed(3)
    g = nn.Graph()
    g.add("a", nn.Conv2d(2, 2, 3, padding=1), "input")
    g.add("b", nn.Conv2d(2, 1, 1), "input")
    g.add("cat", nn.Concat(), "a", "b")
    g.add("c", nn.Conv2d(3, 2, 3, padding=1, bias=False), "cat")
    g.add("sum", nn.Add(), "input", "c")
    g.add("act", nn.ReLU(), "sum")
    g.add("pool", nn.GlobalAvgPool2d(keepdims=False), "act")
    g.add("fc", nn.Linear(2, 3), "pool")
    return g


def test_graph_with_add_and_concat_trains_like_cpu():
    host, dev = twins(graph_model, np.float32)
    x = rng(52).standard_normal((2, 2, 4, 3)).astype(np.float32)
    train_both(host, dev, x, np.array([2, 1]), nc.losses.CrossEntropyLoss, "sgd")


def test_conv1d_and_adaptive_pool_layers():
    nc.manual_seed(4)
    host = nn.Sequential(nn.Conv1d(2, 2, 3, padding=1), nn.ReLU())
    dev = ncu.to_device(nn.Sequential(nn.Conv1d(2, 2, 3, padding=1), nn.ReLU()))
    dev.load_state_dict(host.state_dict())
    x = rng(53).standard_normal((2, 2, 5))
    # A float64 batch is cast to the float32 model's dtype on either side, with one warning.
    with pytest.warns(UserWarning, match="cast to float32"):
        y_dev = dev(ncu.to_device(x))
    with pytest.warns(UserWarning, match="cast to float32"):
        y_host = host(x)
    close(y_dev, y_host, "conv1d")
    dy = rng(54).standard_normal((2, 2, 5)).astype(np.float32)
    close(dev.backward(ncu.to_device(dy)), host.backward(dy), "conv1d dx")
    check_params(host, dev)
    pool = nn.AdaptiveAvgPool2d(2)
    x4 = rng(55).standard_normal((1, 2, 5, 4))
    y = pool(ncu.to_device(x4))
    close(y, nn.AdaptiveAvgPool2d(2)(x4), "adaptive pool")
    assert ncu.to_host(pool.backward(ncu.to_device(np.ones((1, 2, 2, 2))))).shape == x4.shape


def test_to_host_round_trip_and_zero_grad():
    host, dev = twins(lenet_like, np.float32)
    x = rng(56).standard_normal((1, 1, 8, 8)).astype(np.float32)
    dev(ncu.to_device(x))
    assert dev.backward(ncu.to_device(np.ones((1, 3), np.float32)), need_dx=False) is None
    assert any(np.any(ncu.to_host(p.grad)) for p in dev.parameters())
    dev.zero_grad()
    for p in dev.parameters():
        assert ncu.is_device_array(p.grad) and not np.any(ncu.to_host(p.grad))
    assert ncu.to_host(dev) is dev
    for p in dev.parameters():
        assert type(p.data) is np.ndarray and type(p.grad) is np.ndarray
    for k, v in dev.state_dict().items():
        np.testing.assert_array_equal(v, host.state_dict()[k])
    np.testing.assert_allclose(dev(x), host(x), rtol=1e-6)
    wide = ncu.to_device(dev).astype(np.float64)  # astype works on the device too
    for p in wide.parameters():
        assert ncu.is_device_array(p.data) and p.data.dtype == np.float64
        assert ncu.is_device_array(p.grad) and p.grad.dtype == np.float64
    close(wide(ncu.to_device(x.astype(np.float64))), host.astype(np.float64)(x.astype(np.float64)),
          "float64 copy")


def test_save_and_load_a_model_on_the_device(tmp_path):
    host, dev = twins(norm_model, np.float32)
    r = rng(57)
    x, t = r.standard_normal((2, 2, 4, 4)).astype(np.float32), r.random((2, 2)).astype(np.float32)
    _, opt = train_both(host, dev, x, t, nc.losses.MSELoss, "sgd", steps=1)
    path = tmp_path / "dev.h5"
    nc.save(dev, path, optimizer=opt)  # no explicit to_host: state dicts are host copies
    loaded, opt_state, _ = nc.io.load_state(path)
    for k, v in dev.state_dict().items():
        np.testing.assert_array_equal(loaded.state_dict()[k], v)
    # loading onto a device model: weights and optimizer state land on the device
    fresh = ncu.to_device(norm_model())
    fresh.load_weights(path)
    for k, v in dev.state_dict().items():
        np.testing.assert_array_equal(fresh.state_dict()[k], v)
    assert all(ncu.is_device_array(p.data) for p in fresh.parameters())
    opt2 = nc.optim.SGD(fresh.parameters(), lr=0.1, momentum=0.9, nesterov=True,
                        weight_decay=1e-2)
    opt2.load_state_dict(opt_state)
    assert all(ncu.is_device_array(v) for st in opt2.state for v in st.values())
    for m in (dev, fresh):
        m.eval()
    with nc.no_grad():
        xd = ncu.to_device(x)
        np.testing.assert_array_equal(ncu.to_host(fresh(xd)), ncu.to_host(dev(xd)))


def test_optimizer_state_follows_the_model_between_host_and_device():
    host, dev = twins(lenet_like, np.float64)
    ncu.to_host(dev)  # start both on the host, step once, then move one to the device
    x = rng(58).standard_normal((2, 1, 8, 8))
    t = np.array([1, 0])
    oh, od = make_optimizers("adam", host, dev)
    crit = nc.losses.CrossEntropyLoss()
    for step in range(2):
        for m, o in ((host, oh), (dev, od)):
            o.zero_grad()
            xb, tb = (ncu.to_device(x), ncu.to_device(t)) if m is dev and step else (x, t)
            crit(m(xb), tb)
            m.backward(crit.backward())
            o.step()
        if step == 0:
            ncu.to_device(dev)
    check_params(host, dev)
    assert all(ncu.is_device_array(v) for st in od.state for v in st.values())


def test_losses_on_device():
    r = rng(59)
    logits = r.standard_normal((4, 3)).astype(np.float32)
    labels = np.array([0, 2, 1, 2], np.int32)
    for reduction in ("mean", "sum"):
        ch = nc.losses.CrossEntropyLoss(reduction=reduction)
        cd = nc.losses.CrossEntropyLoss(reduction=reduction)
        lh = ch(logits, labels)
        ld = cd(ncu.to_device(logits), ncu.to_device(labels))
        np.testing.assert_allclose(ld, lh, rtol=1e-6)
        close(cd.backward(), ch.backward(), "cross-entropy gradient")
    with pytest.raises(ValueError, match="labels outside"):
        nc.losses.CrossEntropyLoss()(ncu.to_device(logits), ncu.to_device(labels + 1))
    with pytest.raises(ValueError, match="integer labels"):
        nc.losses.CrossEntropyLoss()(ncu.to_device(logits), ncu.to_device(logits[:, 0]))
    pred = r.standard_normal((2, 5))
    target = pred.copy()
    target[0, :2] += 1.0  # some zero differences: L1's gradient is 0 there
    for cls in (nc.losses.MSELoss, nc.losses.L1Loss):
        for reduction in ("mean", "sum"):
            ch, cd = cls(reduction=reduction), cls(reduction=reduction)
            lh = ch(pred, target)
            ld = cd(ncu.to_device(pred), ncu.to_device(target))
            np.testing.assert_allclose(ld, lh, rtol=1e-12)
            close(cd.backward(), ch.backward(), cls.__name__)


def test_mixing_host_and_device_raises_type_error():
    dev = ncu.to_device(lenet_like())
    x = np.zeros((1, 1, 8, 8), np.float32)
    with pytest.raises(TypeError, match="argument 'x' is a host array"):
        dev(x)
    with pytest.raises(TypeError, match="argument 'x' is a host array"):
        ncu.to_device(nn.Linear(3, 2))(np.zeros((1, 3), np.float32))
    with pytest.raises(TypeError, match="argument 'x' is a host array"):
        ncu.to_device(nn.BatchNorm1d(3))(np.zeros((2, 3), np.float32))
    host = lenet_like()
    with pytest.raises(TypeError, match="argument 'weight' is a host array"):
        host(ncu.to_device(x))
    g = ncu.to_device(graph_model())
    with pytest.raises(TypeError, match="host array"):
        g(np.zeros((1, 2, 4, 3), np.float32))
    d = ncu.to_device(np.zeros((1, 2, 2, 2), np.float32))
    h = np.zeros((1, 2, 2, 2), np.float32)
    with pytest.raises(TypeError, match=r"Add.forward: argument 'inputs\[1\]'"):
        nn.Add()(d, h)
    with pytest.raises(TypeError, match=r"Add.forward: argument 'inputs\[1\]'"):
        nn.Add()(h, d)
    with pytest.raises(TypeError, match=r"Concat.forward: argument 'inputs\[1\]'"):
        nn.Concat()(d, h)
    with pytest.raises(TypeError, match=r"Concat.forward: argument 'inputs\[0\]'"):
        nn.Concat()(h, d)
    with pytest.raises(TypeError, match="argument 'target' is a host array"):
        nc.losses.CrossEntropyLoss()(ncu.to_device(np.zeros((2, 3))), np.array([0, 1]))
    with pytest.raises(TypeError, match="argument 'pred' is a host array"):
        nc.losses.MSELoss()(np.zeros(3), ncu.to_device(np.zeros(3)))
    dev_lin = ncu.to_device(nn.Linear(3, 2))
    dev_lin(ncu.to_device(np.zeros((1, 3), np.float32)))
    with pytest.raises(TypeError, match="argument 'dy' is a host array"):
        dev_lin.backward(np.zeros((1, 2), np.float32))

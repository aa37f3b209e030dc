"""Optimizers on the device: parameter groups and learning rates changed by a scheduler follow
the host run; the updates without a device twin (AdamW, RMSprop, amsgrad) say so."""

import numpy as np
import pytest
from helpers import nc, ncu

nn = nc.nn


def _twins():
    nc.manual_seed(0)
    host = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).astype(np.float64)
    dev = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).astype(np.float64)
    dev.load_state_dict(host.state_dict())
    ncu.to_device(dev)
    return host, dev


@pytest.mark.parametrize("make", [
    lambda m: nc.optim.SGD([{"params": m[0].parameters(), "lr": 0.01},
                            {"params": m[2].parameters()}], lr=0.1, momentum=0.9),
    lambda m: nc.optim.Adam([{"params": m[0].parameters()},
                             {"params": m[2].parameters(), "weight_decay": 0.1}], lr=1e-2),
])
def test_groups_and_scheduler_on_the_device_follow_the_host(make):
    host, dev = _twins()
    oh, od = make(host), make(dev)
    sh = nc.optim.lr_scheduler.StepLR(oh, 1, 0.5)
    sd = nc.optim.lr_scheduler.StepLR(od, 1, 0.5)
    rng = np.random.default_rng(0)
    for _ in range(3):
        grads = [rng.standard_normal(p.shape) for p in host.parameters()]
        for p, q, g in zip(host.parameters(), dev.parameters(), grads):
            p.grad[...] = g
            q.grad = ncu.to_device(g)
        oh.step()
        od.step()
        sh.step()
        sd.step()
    for p, q in zip(host.parameters(), dev.parameters()):
        np.testing.assert_allclose(ncu.to_host(q.data), p.data, rtol=1e-10, atol=1e-12)
    assert all(ncu.is_device_array(v) for st in od.state for v in st.values())


@pytest.mark.parametrize("make", [lambda p: nc.optim.AdamW(p), lambda p: nc.optim.RMSprop(p),
                                  lambda p: nc.optim.Adam(p, amsgrad=True)])
def test_updates_without_a_device_twin_raise_type_error(make):
    _, dev = _twins()
    opt = make(dev.parameters())
    with pytest.raises(TypeError, match="no CUDA twin"):
        opt.step()

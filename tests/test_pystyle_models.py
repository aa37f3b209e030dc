"""The PyTorch-style forms of resnet18 and googlenet (benchmarks/pystyle_models.py, timed by
bench_models.py) are the builders' networks: same parameter shapes in the same order, and with
the builder's weights the same logits, and in float64 the same loss and parameter gradients
through the recorded backward as through the builder's explicit one.  (nbconv against itself:
this proves the two forms consistent, not either one right; bench_models.py checks the
builders against PyTorch.)"""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import nbconv as nc
from nbconv import models, nn

_PATH = Path(__file__).resolve().parent.parent / "benchmarks" / "pystyle_models.py"
_spec = importlib.util.spec_from_file_location("pystyle_models", _PATH)
pm = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pm)

NAMES = ["resnet18", "googlenet"]


def _pair(name, width_mult, dtype=np.float32):
    nc.manual_seed(0)
    net = getattr(models, name)(in_channels=3, width_mult=width_mult)
    pnet = pm.PYSTYLE[name](in_channels=3, width_mult=width_mult)
    pm.copy_builder_weights(net, pnet)
    net.astype(dtype)
    pnet.astype(dtype)
    return net, pnet


@pytest.mark.parametrize("name", NAMES)
def test_same_parameters_and_buffers_at_full_width(name):
    nc.manual_seed(0)
    s = getattr(models, name)(in_channels=3).state_dict()
    d = pm.PYSTYLE[name](in_channels=3).state_dict()
    assert [(k.rsplit(".", 1)[-1], v.shape) for k, v in s.items()] == \
           [(k.rsplit(".", 1)[-1], v.shape) for k, v in d.items()]


@pytest.mark.parametrize("name", NAMES)
def test_subclasses_have_no_backward(name):
    """The blocks and the model are recorded (no hand-written backward anywhere)."""
    pnet = pm.PYSTYLE[name](in_channels=3, width_mult=0.125)
    own = {type(m) for _, m in pnet.named_modules() if type(m).__module__ == pm.__name__}
    assert len(own) == 2
    assert all("backward" not in c.__dict__ for c in own)


@pytest.mark.parametrize("name", NAMES)
def test_one_training_step_matches_the_builder_in_float64(name):
    net, pnet = _pair(name, 0.125, np.float64)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 32, 32))
    t = rng.integers(0, 10, 2)
    crit = nc.losses.CrossEntropyLoss()
    net.train()
    pnet.train()
    loss = crit.forward(net.forward(x), t)
    net.backward(crit.backward(), need_dx=False)
    ploss = crit(pnet(x), t)
    ploss.backward()
    assert ploss.item() == pytest.approx(loss, rel=1e-13)
    pairs = list(zip(net.named_parameters(), pnet.named_parameters()))
    assert len(pairs) == len(list(net.parameters())) > 0
    reached = 0
    for (k, p), (_, q) in pairs:
        scale = float(np.max(np.abs(p.grad)))
        assert float(np.max(np.abs(q.grad - p.grad))) <= 1e-12 * scale, k
        reached += scale > 0
    # the gradient reaches the first layer, and all but a few (dead ReLUs at this width)
    assert np.max(np.abs(pairs[0][1][1].grad)) > 0 and reached >= 0.9 * len(pairs)
    # the batch norms' running statistics moved alike
    for (k, v), (_, w) in zip(net.state_dict().items(), pnet.state_dict().items()):
        if "running" in k:
            np.testing.assert_allclose(w, v, rtol=1e-13, atol=1e-15, err_msg=k)


@pytest.mark.parametrize("name", NAMES)
def test_inference_matches_the_builder(name):
    net, pnet = _pair(name, 0.125)
    net.eval()
    pnet.eval()
    x = np.random.default_rng(2).standard_normal((3, 3, 32, 32), dtype=np.float32)
    with nc.no_grad():
        a, b = net.forward(x), pnet(x)
    assert b.dtype == np.float32 and type(b) is np.ndarray
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)


def test_copy_builder_weights_refuses_another_model():
    with pytest.raises(ValueError, match="entries|does not match"):
        pm.copy_builder_weights(models.resnet18(in_channels=3, width_mult=0.125),
                                pm.GoogLeNet(in_channels=3, width_mult=0.125))


class _Block(nn.Module):  # no backward: recorded
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3, padding=1)

    def forward(self, x):
        return nc.relu(self.conv(x))


class _Top(nn.Module):  # no backward: recorded
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(2, 2, 3, padding=1)
        self.stage = nn.Sequential(_Block())  # hand-written backward around a recorded block

    def forward(self, x):
        return self.stage(self.stem(x))


def test_sequential_of_recorded_blocks_inside_a_recorded_forward():
    top = _Top()
    x = np.random.default_rng(0).standard_normal((1, 2, 4, 4), dtype=np.float32)
    y = top(x)
    y.backward(np.ones_like(y))
    assert float(np.max(np.abs(top.stem.weight.grad))) > 0

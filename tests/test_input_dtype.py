"""An input of another dtype than the model's is cast once, at the model call, with a warning.

The reference is the same model run on the input cast by hand (``x.astype(np.float32)``):
outputs and parameter gradients must be identical (bit for bit, one cast is one rounding) and
in the model's dtype, and exactly one ``UserWarning`` is emitted per call, not one per layer.
"""

import warnings

import numpy as np
import pytest

import nbconv as nc
import nbconv.nn as nn


def _net(dtype=np.float32):
    nc.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 3 * 3, 5)).astype(dtype)


class _Block(nn.Module):
    """PyTorch-style (no hand-written backward): each layer is called from ``forward``."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3)
        self.fc = nn.Linear(3 * 4 * 4, 2)

    def forward(self, x):
        return self.fc(nc.relu(self.conv(x)).reshape(len(x), -1))


def _run(model, x, call=None):
    """Output and parameter gradients of ``sum(model(x) * g)``, with the warnings raised."""
    model.zero_grad()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        y = (call or model)(x)
    g = np.linspace(-1, 1, y.size).reshape(y.shape).astype(y.dtype)
    model.backward(g)
    grads = [p.grad.copy() for p in model.parameters()]
    return y, grads, [w for w in caught if issubclass(w.category, UserWarning)]


def _x(dtype, shape=(3, 2, 6, 6)):
    rng = np.random.default_rng(1)
    if np.dtype(dtype).kind == "u":
        return rng.integers(0, 256, size=shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def _block():
    nc.manual_seed(0)
    return _Block()


@pytest.mark.parametrize("make", [_net, _block], ids=["Sequential", "pystyle"])
@pytest.mark.parametrize("in_dtype", [np.float64, np.uint8, np.int32, np.float16])
def test_cast_to_model_dtype_once(make, in_dtype):
    model = make()
    x = _x(in_dtype)
    y_ref, g_ref, w_ref = _run(make(), x.astype(np.float32))
    assert not w_ref  # a float32 input to a float32 model: silence
    y, grads, caught = _run(model, x)
    assert y.dtype == np.float32 and np.array_equal(y, y_ref)
    for g, r in zip(grads, g_ref):
        assert g.dtype == np.float32 and np.array_equal(g, r)
    assert len(caught) == 1  # once per call, not per layer
    msg = str(caught[0].message)
    assert np.dtype(in_dtype).name in msg and "float32" in msg
    assert "x.astype(np.float32)" in msg
    assert caught[0].filename == __file__  # it points at the call, not into nbconv


def test_every_call_warns_and_forward_too():
    model = _net()
    x = _x(np.float64)
    for call in (model, model.forward):
        _, _, caught = _run(model, x, call)
        assert len(caught) == 1
    with nc.no_grad(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        y = model(x)
        y2 = model(x)
    assert y.dtype == np.float32 and np.array_equal(y, y2)
    assert len(caught) == 2


def test_float64_model_float32_input():
    model = _net(np.float64)
    x = _x(np.float32)
    y_ref, g_ref, _ = _run(_net(np.float64), x.astype(np.float64))
    y, grads, caught = _run(model, x)
    assert y.dtype == np.float64 and np.array_equal(y, y_ref)
    assert all(g.dtype == np.float64 and np.array_equal(g, r) for g, r in zip(grads, g_ref))
    assert len(caught) == 1 and "float32" in str(caught[0].message)


def test_inner_layers_see_the_model_dtype():
    """A layer called on its own is a model of its own: its input is cast to its dtype, and
    inside the model no layer sees the float64 array."""
    seen = []

    class Spy(nn.Module):
        def forward(self, x):
            seen.append(x.dtype)
            return x

    model = nn.Sequential(nn.Linear(4, 4), Spy(), nn.Linear(4, 2))
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        model(_x(np.float64, (2, 4)))
    assert seen == [np.float32]


def test_not_cast():
    """A module without parameters keeps the input's dtype (the functional ops' rule); a
    later integer argument (class indices) is not the data and is left alone."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert nn.ReLU()(_x(np.float64)).dtype == np.float64

    class TwoInputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x, idx):
            assert idx.dtype == np.int64
            return self.fc(x)[np.arange(len(x)), idx]

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = TwoInputs()(_x(np.float32, (2, 4)), np.array([0, 2]))
    assert y.dtype == np.float32

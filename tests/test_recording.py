"""Issue 25: PyTorch-style models whose forward is recorded as it runs (``loss.backward()``).

Every architecture in ``CASES`` is written as a PyTorch user writes it (no ``backward``):
PyTorch's CIFAR-10 tutorial net (one pool used twice; ``nc.relu`` or one ``nn.ReLU`` used
four times), a ResNet BasicBlock with downsample in training mode (``out = out + identity``
and ``out += identity``), an Inception block (``np.concatenate`` and ``nc.cat``), weight
tying, ``0.5 * conv(x) + x``, parameters in NumPy arithmetic, slices/stack/transpose/sum,
and recorded sub-modules (Sequential, ModuleList, Graph, a block used twice) inside a
recorded model.  Each is checked twice, independently of nbconv's own output:

* against its PyTorch twin in float64 (same weights copied over): the loss, every parameter
  gradient, the input gradient and batch norm's running statistics agree to float64
  rounding (relative error <= 1e-10, the error measured against the largest entry of the
  reference tensor);
* against float64 central finite differences (no torch needed): ``nbconv.testing.gradcheck``
  of ``model.backward(dy)``, and a directional check of ``loss.backward()`` per parameter.

Then the edges of recording (errors, ``no_grad``, ``retain_graph``, losses as floats,
hand-written backward passes that reuse a layer), ``fit`` with a subclassed model against
the same architecture as ``Sequential``, and ``fit(distributed=True)`` under ``mpiexec``.
"""

from __future__ import annotations

import json
import math
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

import nbconv as nc
from nbconv import data, losses, nn, optim
from nbconv.recording import SecondBackwardError
from nbconv.testing import gradcheck
from nbconv.train import fit

sys.path.insert(0, str(Path(__file__).resolve().parent))  # test_distributed, mpi_worker

F64 = np.float64
RTOL_TORCH = 1e-10   # nbconv vs PyTorch, both float64: rounding only
RTOL_FD = 1e-6       # float64 central differences (SPEC section 2)


def _rng(seed=0):
    return np.random.default_rng(seed)


def _rel(a, b) -> float:
    """max |a - b| / max |b| (b the reference); 0 when both are zero."""
    a, b = np.asarray(a, F64), np.asarray(b, F64)
    assert a.shape == b.shape, (a.shape, b.shape)
    scale = np.max(np.abs(b)) if b.size else 0.0
    err = np.max(np.abs(a - b)) if b.size else 0.0
    return 0.0 if err == 0 else err / scale if scale > 0 else math.inf


def _assert_rel(a, b, tol, what):
    r = _rel(a, b)
    assert r <= tol, f"{what}: relative error {r:.3e} > {tol:.0e}"


def _randomize_norms(model, seed=1):
    """Batch norm's weight and bias away from 1 and 0 (so that a wrong gradient shows)."""
    rng = _rng(seed)
    for _, m in model.named_modules():
        if isinstance(m, nn.BatchNorm2d) and m.weight is not None:
            m.weight.data[...] = rng.uniform(0.5, 1.5, m.weight.data.shape)
            m.bias.data[...] = rng.uniform(-0.5, 0.5, m.bias.data.shape)
    return model


# =========================================================================== the models
# Written as in PyTorch: no backward anywhere.

class TutorialNet(nn.Module):
    """PyTorch's CIFAR-10 tutorial net ("Training a classifier"): one pool used twice."""

    def __init__(self, relu_module=False):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5, dtype=F64)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5, dtype=F64)
        self.fc1 = nn.Linear(16 * 5 * 5, 120, dtype=F64)
        self.fc2 = nn.Linear(120, 84, dtype=F64)
        self.fc3 = nn.Linear(84, 10, dtype=F64)
        self.act = nn.ReLU() if relu_module else nc.relu

    def forward(self, x):
        x = self.pool(self.act(self.conv1(x)))
        x = self.pool(self.act(self.conv2(x)))
        x = x.reshape(x.shape[0], -1)
        x = self.act(self.fc1(x))
        x = self.act(self.fc2(x))
        return self.fc3(x)


class TutorialNetReLU(TutorialNet):
    """The same with one ``self.relu = nn.ReLU()`` used four times."""

    def __init__(self):
        super().__init__(relu_module=True)


class BasicBlockAdd(nn.Module):
    """torchvision's ResNet BasicBlock with a downsample, ``out = out + identity``."""

    def __init__(self, inplanes=3, planes=4, stride=2):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False, dtype=F64)
        self.bn1 = nn.BatchNorm2d(planes, dtype=F64)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False, dtype=F64)
        self.bn2 = nn.BatchNorm2d(planes, dtype=F64)
        self.downsample = nn.Sequential(
            nn.Conv2d(inplanes, planes, 1, stride, bias=False, dtype=F64),
            nn.BatchNorm2d(planes, dtype=F64))

    def forward(self, x):
        identity = x
        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)
        out = self.conv2(out)
        out = self.bn2(out)
        identity = self.downsample(x)
        out = out + identity
        out = self.relu(out)
        return out


class BasicBlockIAdd(BasicBlockAdd):
    """The same written ``out += identity``, as torchvision does."""

    def forward(self, x):
        identity = x
        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)
        out = self.conv2(out)
        out = self.bn2(out)
        identity = self.downsample(x)
        out += identity
        out = self.relu(out)
        return out


class Inception(nn.Module):
    """A GoogLeNet-style block (1x1 | 1x1-3x3 | 1x1-5x5 | pool-1x1), joined along channels by
    ``np.concatenate`` (or ``nc.cat``), then a mean over the image and a classifier."""

    def __init__(self, cin=3, join="concatenate"):
        super().__init__()
        self.join = join
        self.b1 = nn.Conv2d(cin, 4, 1, dtype=F64)
        self.b2a = nn.Conv2d(cin, 3, 1, dtype=F64)
        self.b2b = nn.Conv2d(3, 5, 3, padding=1, dtype=F64)
        self.b3a = nn.Conv2d(cin, 2, 1, dtype=F64)
        self.b3b = nn.Conv2d(2, 3, 5, padding=2, dtype=F64)
        self.pool = nn.MaxPool2d(3, stride=1, padding=1)
        self.b4 = nn.Conv2d(cin, 2, 1, dtype=F64)
        self.fc = nn.Linear(14, 5, dtype=F64)

    def forward(self, x):
        b1 = nc.relu(self.b1(x))
        b2 = nc.relu(self.b2b(nc.relu(self.b2a(x))))
        b3 = nc.relu(self.b3b(nc.relu(self.b3a(x))))
        b4 = nc.relu(self.b4(self.pool(x)))
        if self.join == "cat":
            out = nc.cat([b1, b2, b3, b4], 1)
        else:
            out = np.concatenate([b1, b2, b3, b4], axis=1)
        return self.fc(out.mean(axis=(2, 3)))


class InceptionCat(Inception):
    def __init__(self):
        super().__init__(join="cat")


class Tied(nn.Module):
    """One Linear applied twice (weight tying), then its weight used as an array again."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 6, dtype=F64)
        self.out = nn.Linear(6, 4, dtype=F64)

    def forward(self, x):
        h = nc.tanh(self.fc(x))
        h = nc.tanh(self.fc(h))
        h = nc.linear(h, self.fc.weight)  # the parameter as an array: a third use
        return self.out(h)


class HalfResidual(nn.Module):
    """``0.5 * self.conv(x) + x``: a scaled branch plus the input itself."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1, dtype=F64)

    def forward(self, x):
        return 0.5 * self.conv(x) + x


class ParameterArithmetic(nn.Module):
    """Parameters used as arrays in NumPy arithmetic: ``self.conv(x) * self.scale``, ``-``,
    ``/`` (a per-channel scale and shift, broadcast over the image)."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(_rng(5).uniform(0.5, 2.0, (3, 1, 1)))
        self.shift = nn.Parameter(_rng(6).standard_normal((3, 1, 1)))
        self.conv = nn.Conv2d(2, 3, 3, dtype=F64)

    def forward(self, x):
        y = self.conv(x) * self.scale
        return (y - self.shift) / (1.0 + self.scale)


class ShapeOps(nn.Module):
    """Channel slices, ``np.stack``, ``transpose``, ``reshape``, ``sum`` and ``*`` of two
    recorded arrays."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 8, dtype=F64)
        self.out = nn.Linear(8, 3, dtype=F64)

    def forward(self, x):
        h = self.fc(x)
        a, b = h[:, :4], h[:, 4:]
        s = np.stack([a * b, a - b], axis=1)               # (N, 2, 4)
        t = s.transpose(0, 2, 1).reshape(x.shape[0], -1)   # (N, 8)
        return self.out(t) + t.sum(axis=1, keepdims=True) / 8


class ResidualUnit(nn.Module):
    """A PyTorch-style block (no backward) used as a sub-module, shape preserving."""

    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1, bias=False, dtype=F64)
        self.bn = nn.BatchNorm2d(c, dtype=F64)

    def forward(self, x):
        return nc.relu(self.bn(self.conv(x)) + x)


class Composite(nn.Module):
    """Recorded modules inside a recorded module: a Sequential, a ModuleList of blocks, one
    block applied twice, a Graph; then matmul with a parameter, transposes, unary minus,
    division by a recorded array, expand_dims/squeeze."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(_rng(7).standard_normal((4, 4)))
        self.stem = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1, dtype=F64), nn.ReLU())
        self.blocks = nn.ModuleList([ResidualUnit(3), ResidualUnit(3)])
        self.shared = ResidualUnit(3)
        self.g = nn.Graph()
        self.g.add("c", nn.Conv2d(3, 3, 1, dtype=F64), "input")
        self.g.add("s", nn.Add(), "input", "c")
        self.fc = nn.Linear(3, 4, dtype=F64)

    def forward(self, x):
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        x = self.shared(self.shared(x))
        x = self.g(x)
        h = self.fc(np.mean(x, axis=(2, 3)))
        h = (self.w @ h.T).T
        h = -h / (1.0 + h * h)
        return np.squeeze(np.expand_dims(h, 1), 1)


# name: (model class, input shape, loss, output classes for CE or None for MSE)
CASES = {
    "tutorial": (TutorialNet, (3, 3, 32, 32), "ce", 10),
    "tutorial_relu_module": (TutorialNetReLU, (3, 3, 32, 32), "ce", 10),
    "basicblock_add": (BasicBlockAdd, (4, 3, 8, 8), "mse", None),
    "basicblock_iadd": (BasicBlockIAdd, (4, 3, 8, 8), "mse", None),
    "inception_concatenate": (Inception, (2, 3, 7, 7), "ce", 5),
    "inception_cat": (InceptionCat, (2, 3, 7, 7), "ce", 5),
    "tied_linear": (Tied, (5, 6), "ce", 4),
    "half_residual": (HalfResidual, (2, 3, 6, 6), "mse", None),
    "parameter_arithmetic": (ParameterArithmetic, (2, 2, 5, 5), "mse", None),
    "shape_ops": (ShapeOps, (4, 6), "ce", 3),
    "composite": (Composite, (3, 2, 5, 5), "ce", 4),
}


def _case(name, seed=0):
    """``(model, x, target, criterion)`` of a case, float64, seeded."""
    cls, shape, kind, classes = CASES[name]
    nc.manual_seed(seed)
    model = _randomize_norms(cls())
    rng = _rng(seed + 10)
    x = rng.standard_normal(shape)
    if kind == "ce":
        return model, x, rng.integers(0, classes, shape[0]), losses.CrossEntropyLoss()
    model.eval()  # (no running statistics move)
    with nc.no_grad():
        out_shape = model(x).shape
    model.train()
    return model, x, rng.standard_normal(out_shape), losses.MSELoss()


# =========================================================================== PyTorch twins

def _torch_twin(name):
    torch = pytest.importorskip("torch")
    tnn, tF = torch.nn, torch.nn.functional

    class TTutorial(tnn.Module):
        def __init__(self, relu_module):
            super().__init__()
            self.conv1 = tnn.Conv2d(3, 6, 5)
            self.pool = tnn.MaxPool2d(2, 2)
            self.conv2 = tnn.Conv2d(6, 16, 5)
            self.fc1 = tnn.Linear(16 * 5 * 5, 120)
            self.fc2 = tnn.Linear(120, 84)
            self.fc3 = tnn.Linear(84, 10)
            self.act = tnn.ReLU() if relu_module else tF.relu

        def forward(self, x):
            x = self.pool(self.act(self.conv1(x)))
            x = self.pool(self.act(self.conv2(x)))
            x = torch.flatten(x, 1)
            x = self.act(self.fc1(x))
            x = self.act(self.fc2(x))
            return self.fc3(x)

    class TBasicBlock(tnn.Module):
        def __init__(self, inplanes=3, planes=4, stride=2):
            super().__init__()
            self.conv1 = tnn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
            self.bn1 = tnn.BatchNorm2d(planes)
            self.relu = tnn.ReLU()
            self.conv2 = tnn.Conv2d(planes, planes, 3, 1, 1, bias=False)
            self.bn2 = tnn.BatchNorm2d(planes)
            self.downsample = tnn.Sequential(tnn.Conv2d(inplanes, planes, 1, stride, bias=False),
                                             tnn.BatchNorm2d(planes))

        def forward(self, x):
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            return self.relu(out + self.downsample(x))

    class TInception(tnn.Module):
        def __init__(self, cin=3):
            super().__init__()
            self.b1 = tnn.Conv2d(cin, 4, 1)
            self.b2a = tnn.Conv2d(cin, 3, 1)
            self.b2b = tnn.Conv2d(3, 5, 3, padding=1)
            self.b3a = tnn.Conv2d(cin, 2, 1)
            self.b3b = tnn.Conv2d(2, 3, 5, padding=2)
            self.pool = tnn.MaxPool2d(3, stride=1, padding=1)
            self.b4 = tnn.Conv2d(cin, 2, 1)
            self.fc = tnn.Linear(14, 5)

        def forward(self, x):
            out = torch.cat([tF.relu(self.b1(x)), tF.relu(self.b2b(tF.relu(self.b2a(x)))),
                             tF.relu(self.b3b(tF.relu(self.b3a(x)))),
                             tF.relu(self.b4(self.pool(x)))], 1)
            return self.fc(out.mean(dim=(2, 3)))

    class TTied(tnn.Module):
        def __init__(self):
            super().__init__()
            self.fc = tnn.Linear(6, 6)
            self.out = tnn.Linear(6, 4)

        def forward(self, x):
            h = torch.tanh(self.fc(torch.tanh(self.fc(x))))
            return self.out(tF.linear(h, self.fc.weight))

    class THalfResidual(tnn.Module):
        def __init__(self):
            super().__init__()
            self.conv = tnn.Conv2d(3, 3, 3, padding=1)

        def forward(self, x):
            return 0.5 * self.conv(x) + x

    class TParameterArithmetic(tnn.Module):
        def __init__(self):
            super().__init__()
            self.scale = tnn.Parameter(torch.ones(3, 1, 1))
            self.shift = tnn.Parameter(torch.zeros(3, 1, 1))
            self.conv = tnn.Conv2d(2, 3, 3)

        def forward(self, x):
            return (self.conv(x) * self.scale - self.shift) / (1.0 + self.scale)

    class TShapeOps(tnn.Module):
        def __init__(self):
            super().__init__()
            self.fc = tnn.Linear(6, 8)
            self.out = tnn.Linear(8, 3)

        def forward(self, x):
            h = self.fc(x)
            a, b = h[:, :4], h[:, 4:]
            t = torch.stack([a * b, a - b], 1).permute(0, 2, 1).reshape(x.shape[0], -1)
            return self.out(t) + t.sum(1, keepdim=True) / 8

    class TResidualUnit(tnn.Module):
        def __init__(self, c):
            super().__init__()
            self.conv = tnn.Conv2d(c, c, 3, padding=1, bias=False)
            self.bn = tnn.BatchNorm2d(c)

        def forward(self, x):
            return tF.relu(self.bn(self.conv(x)) + x)

    class TGraph(tnn.Module):
        def __init__(self):
            super().__init__()
            self.c = tnn.Conv2d(3, 3, 1)

        def forward(self, x):
            return x + self.c(x)

    class TComposite(tnn.Module):
        def __init__(self):
            super().__init__()
            self.w = tnn.Parameter(torch.zeros(4, 4))
            self.stem = tnn.Sequential(tnn.Conv2d(2, 3, 3, padding=1), tnn.ReLU())
            self.blocks = tnn.ModuleList([TResidualUnit(3), TResidualUnit(3)])
            self.shared = TResidualUnit(3)
            self.g = TGraph()
            self.fc = tnn.Linear(3, 4)

        def forward(self, x):
            x = self.stem(x)
            for block in self.blocks:
                x = block(x)
            x = self.g(self.shared(self.shared(x)))
            h = self.fc(x.mean((2, 3))) @ self.w.T
            return -h / (1.0 + h * h)

    twins = {
        "tutorial": lambda: TTutorial(False), "tutorial_relu_module": lambda: TTutorial(True),
        "basicblock_add": TBasicBlock, "basicblock_iadd": TBasicBlock,
        "inception_concatenate": TInception, "inception_cat": TInception,
        "tied_linear": TTied, "half_residual": THalfResidual,
        "parameter_arithmetic": TParameterArithmetic, "shape_ops": TShapeOps,
        "composite": TComposite,
    }
    return twins[name]().double()


def _copy_to_torch(model, twin):
    """``model``'s weights and buffers into ``twin`` (the same keys, as SPEC's habits ask)."""
    import torch

    ours = model.state_dict()
    theirs = twin.state_dict()
    assert list(ours) == list(theirs)
    twin.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in ours.items()})


def _torch_run(twin, x, target, crit):
    """Loss, {name: grad}, dx and state dict of one forward/backward of the twin."""
    import torch

    tF = torch.nn.functional
    xt = torch.tensor(x, requires_grad=True)
    out = twin(xt)
    if isinstance(crit, losses.CrossEntropyLoss):
        loss = tF.cross_entropy(out, torch.tensor(target))
    else:
        loss = tF.mse_loss(out, torch.tensor(target))
    loss.backward()
    grads = {k: p.grad.numpy() for k, p in twin.named_parameters()}
    state = {k: v.numpy() for k, v in twin.state_dict().items()}
    return loss.item(), grads, xt.grad.numpy(), out.detach().numpy(), state


@pytest.mark.parametrize("name", list(CASES))
def test_gradients_equal_pytorch_in_float64(name):
    torch = pytest.importorskip("torch")
    model, x, target, crit = _case(name)
    twin = _torch_twin(name)
    _copy_to_torch(model, twin)
    t_loss, t_grads, t_dx, t_out, t_state = _torch_run(twin, x, target, crit)

    # PyTorch's loop: out = model(x); loss = crit(out, y); loss.backward()
    out = model(x)
    assert isinstance(out, np.ndarray) and out.dtype == F64
    loss = crit(out, target)
    assert isinstance(loss, float)
    loss.backward()
    _assert_rel(out, t_out, RTOL_TORCH, "output")
    _assert_rel(float(loss), t_loss, RTOL_TORCH, "loss")
    ours = dict(model.named_parameters())
    assert set(ours) == set(t_grads)
    for k, g in t_grads.items():
        _assert_rel(ours[k].grad, g, RTOL_TORCH, f"gradient of {k}")
    # batch norm's running statistics after one training-mode forward pass
    for k, v in model.state_dict().items():
        if "running" in k or "num_batches" in k:
            _assert_rel(v, t_state[k], RTOL_TORCH, k)

    # the explicit form on the same model: model.backward(dy) walks the recorded forward
    # and returns dx (the new forward pass has its own records)
    model.zero_grad()
    with torch.no_grad():  # the twin's running statistics move on the same way
        twin(torch.tensor(x))
    out = model(x)
    crit.forward(out, target)
    dx = model.backward(crit.backward())
    assert type(dx) is np.ndarray and dx.dtype == F64
    _assert_rel(dx, t_dx, RTOL_TORCH, "dx")
    for k, g in t_grads.items():
        _assert_rel(ours[k].grad, g, RTOL_TORCH, f"gradient of {k} (model.backward)")
    t_state = {k: v.numpy() for k, v in twin.state_dict().items()}
    for k, v in model.state_dict().items():
        _assert_rel(v, t_state[k], RTOL_TORCH, f"{k} after two passes")


# =========================================================================== finite differences
# The same cases without torch: float64 central differences along random directions.  The
# step is small (1e-7) because ReLU and max pooling have kinks: a larger step across one of
# them (the tutorial net has thousands) changes the difference quotient by ~1e-3.  With the
# seeds fixed here no kink lies within a step; rounding stays below 1e-8.

def _loss_at(model, x, target, crit) -> float:
    with nc.no_grad():
        return float(crit.forward(model(x), target))


def _directional_check(model, x, target, crit, seed=3, eps=1e-7):
    """``loss.backward()``'s gradient of every parameter (and ``model.backward``'s dx),
    each along one random direction, against central differences of the loss."""
    rng = _rng(seed)
    model.zero_grad()
    loss = crit(model(x), target)
    loss.backward()
    grads = {k: np.array(p.grad) for k, p in model.named_parameters()}
    assert grads
    failures = []

    def compare(what, analytic, numeric):
        err = abs(analytic - numeric)
        if not err <= 1e-8 + RTOL_FD * max(abs(analytic), abs(numeric)):
            failures.append(f"{what}: backward {analytic:.10g}, differences {numeric:.10g}")

    for k, p in model.named_parameters():
        v = rng.standard_normal(p.data.shape)
        keep = p.data.copy()
        values = []
        for h in (eps, -eps):
            p.data[...] = keep + h * v
            values.append(_loss_at(model, x, target, crit))
        p.data[...] = keep
        compare(k, float(np.sum(grads[k] * v)), (values[0] - values[1]) / (2 * eps))
    out = model(x)
    crit.forward(out, target)
    dx = model.backward(crit.backward())
    v = rng.standard_normal(x.shape)
    numeric = (_loss_at(model, x + eps * v, target, crit)
               - _loss_at(model, x - eps * v, target, crit)) / (2 * eps)
    compare("dx", float(np.sum(dx * v)), numeric)
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("name", list(CASES))
def test_loss_backward_matches_finite_differences(name):
    model, x, target, crit = _case(name, seed=1)
    _directional_check(model, x, target, crit)


@pytest.mark.parametrize("name", list(CASES))
def test_gradcheck_of_model_backward(name):
    # nbconv.testing.gradcheck: forward, then model.backward(dy) (the recorded walk), for
    # the input and every parameter, and that a second pass adds to the gradients
    model, x, _, _ = _case(name, seed=2)
    assert gradcheck(model, x, eps=1e-7, rtol=RTOL_FD)


# =========================================================================== errors and edges

class SmallNet(nn.Module):
    """conv - relu - pool - flatten - linear, PyTorch-style (also trained by fit below)."""

    def __init__(self, dtype=F64):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, dtype=dtype)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(4 * 3 * 3, 3, dtype=dtype)

    def forward(self, x):
        x = self.pool(nc.relu(self.conv(x)))
        return self.fc(x.reshape(x.shape[0], -1))


def _small(seed=0, n=4):
    nc.manual_seed(seed)
    rng = _rng(seed)
    return SmallNet(), rng.standard_normal((n, 1, 8, 8)), rng.integers(0, 3, n)


def _grads(model):
    return {k: np.array(p.grad) for k, p in model.named_parameters()}


@pytest.mark.parametrize("op, shown", [("sin", "sin"), ("cos", "cos"), ("log1p", "log1p"),
                                        ("arctan", "arctan"), ("maximum", "maximum")])
def test_an_unrecorded_numpy_op_inside_forward_raises_naming_it(op, shown):
    class Unsupported(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 3, dtype=F64)

        def forward(self, x):
            h = self.fc(x)
            return np.maximum(h, 0.0) if op == "maximum" else getattr(np, op)(h)

    with pytest.raises(TypeError, match=rf"np\.{shown}\b.*does not record"):
        Unsupported()(_rng().standard_normal((2, 3)))


def test_an_unrecorded_op_outside_forward_raises_where_a_gradient_is_needed():
    model, x, y = _small()
    out = model(x)
    shown = float(np.abs(np.sin(out)).max())  # printing such a value is fine
    assert shown == pytest.approx(float(np.abs(np.sin(np.asarray(out))).max()))
    with pytest.raises(TypeError, match=r"np\.sin"):
        losses.CrossEntropyLoss()(np.sin(out), y)
    with pytest.raises(TypeError, match=r"np\.sin"):
        np.sin(out).backward(np.ones(out.shape))
    with pytest.raises(TypeError, match=r"np\.sin"):
        nn.Linear(3, 2, dtype=F64)(np.sin(out))


def test_a_second_backward_raises_and_leaves_the_gradients():
    model, x, y = _small()
    loss = losses.CrossEntropyLoss()(model(x), y)
    loss.backward()
    first = _grads(model)
    with pytest.raises(SecondBackwardError, match="second time"):
        loss.backward()
    assert issubclass(SecondBackwardError, RuntimeError)
    with pytest.raises(RuntimeError):
        loss.backward()
    for k, g in _grads(model).items():
        np.testing.assert_array_equal(g, first[k], err_msg=k)
    # a new forward pass may go back again, and adds to the gradients
    losses.CrossEntropyLoss()(model(x), y).backward()
    for k, g in _grads(model).items():
        np.testing.assert_array_equal(g, 2 * first[k], err_msg=k)


def test_retain_graph_allows_a_second_backward_that_doubles_the_gradients():
    model, x, y = _small()
    loss = losses.CrossEntropyLoss()(model(x), y)
    loss.backward(retain_graph=True)
    first = _grads(model)
    assert all(np.any(g != 0) for g in first.values())
    loss.backward()
    for k, g in _grads(model).items():
        np.testing.assert_array_equal(g, 2 * first[k], err_msg=k)
    with pytest.raises(SecondBackwardError):  # the second one did not retain it
        loss.backward()


def test_no_grad_records_nothing():
    model, x, y = _small()
    crit = losses.CrossEntropyLoss()
    with nc.no_grad():
        out = model(x)
        h = model.conv(x)
        s = out * 2 + out[:, :1]
        loss = crit(out, y)
    assert type(out) is np.ndarray and type(h) is np.ndarray and type(s) is np.ndarray
    assert isinstance(loss, float) and not loss.recorded
    with pytest.raises(RuntimeError, match="nothing was recorded"):
        loss.backward()
    assert all(not np.any(g) for g in _grads(model).values())
    # the same numbers as with recording
    np.testing.assert_array_equal(out, np.asarray(model(x)))
    assert float(loss) == float(crit(model(x), y))


def test_a_recorded_output_is_an_ndarray_and_asarray_detaches_it():
    model, x, y = _small()
    out = model(x)
    assert isinstance(out, np.ndarray) and type(out) is not np.ndarray
    assert out.shape == (4, 3) and out.dtype == F64
    plain = np.asarray(out)
    assert type(plain) is np.ndarray
    assert np.shares_memory(plain, out)
    np.testing.assert_array_equal(plain, out)
    # what is computed from the plain array is plain, and carries no gradient
    assert type(plain * 2 + 1) is np.ndarray and type(np.sin(plain)) is np.ndarray
    loss = losses.CrossEntropyLoss()(plain, y)
    with pytest.raises(RuntimeError, match="nothing was recorded"):
        loss.backward()
    assert type(np.array(out)) is np.ndarray
    assert type(out.detach()) is np.ndarray


def test_assigning_into_a_recorded_array_raises():
    model, x, _ = _small()
    out = model(x)
    before = np.array(out)
    with pytest.raises(TypeError, match="assigning into a recorded array"):
        out[0] = 0.0
    with pytest.raises(TypeError, match="assigning into a recorded array"):
        out[:, 1:] = np.ones((4, 2))
    with pytest.raises(TypeError, match="in place"):
        np.add(out, 1.0, out=out)
    with pytest.raises(TypeError, match="fill"):
        out.fill(0.0)
    np.testing.assert_array_equal(out, before)
    # += rebinds to a new recorded array and leaves the old one as it was
    alias = out
    out += 1.0
    assert out is not alias
    np.testing.assert_array_equal(alias, before)
    np.testing.assert_array_equal(out, before + 1.0)


def test_loss_value_behaves_as_a_float():
    model, x, y = _small()
    loss = losses.CrossEntropyLoss()(model(x), y)
    value = losses.CrossEntropyLoss().forward(np.asarray(model(x)), y)
    assert isinstance(loss, float)
    assert type(loss.item()) is float and type(float(loss)) is float
    assert float(loss) == loss.item() == value
    assert loss == value and loss <= value and not loss < value and loss > value - 1e-3
    assert f"{loss:.4f}" == f"{value:.4f}" and f"{loss:g}" == f"{value:g}"
    assert f"{loss:>12.3e}" == f"{value:>12.3e}" and f"{loss:.2%}" == f"{value:.2%}"
    assert "%.3e, %f" % (loss, loss) == "%.3e, %f" % (value, value)  # noqa: UP031
    assert format(loss, ".5g") == format(value, ".5g")
    assert round(loss, 3) == round(value, 3) and math.isfinite(loss)
    assert json.dumps({"loss": loss}) == json.dumps({"loss": value})
    assert type(pickle.loads(pickle.dumps(loss))) is float
    assert np.float64(loss) == value and np.asarray([loss]).dtype == F64
    assert sum([loss, loss]) == 2 * value and loss * 2 == 2 * value and loss / 2 == value / 2
    assert -loss == -value and 1 - loss == 1 - value


def test_loss_value_prints_as_a_float():
    model, x, y = _small()
    loss = losses.CrossEntropyLoss()(model(x), y)
    value = float(loss)
    assert f"{loss}" == f"{value}"
    assert str(loss) == str(value) and format(loss, "") == str(value)
    assert "%s" % loss == str(value)  # noqa: UP031


def test_a_sum_of_losses_sends_both_back():
    # crit(model(x1), y1) + 0.5 * crit(model(x2), y2): two forward passes of one model,
    # each with its own records, against the sum of the two gradients computed apart
    model, x1, y1 = _small(n=4)
    x2, y2 = _rng(9).standard_normal((3, 1, 8, 8)), _rng(9).integers(0, 3, 3)
    ce, mse = losses.CrossEntropyLoss(), losses.MSELoss()
    t = _rng(10).standard_normal((4, 3))
    total = ce(model(x1), y1) + 0.5 * ce(model(x2), y2) - mse(model(x1), t) / 4
    assert isinstance(total, float)
    total.backward()
    combined = _grads(model)
    parts = []
    for xb, tb, crit, w in ((x1, y1, ce, 1.0), (x2, y2, ce, 0.5), (x1, t, mse, -0.25)):
        model.zero_grad()
        out = model(xb)
        crit.forward(out, tb)
        model.backward(crit.backward() * w)
        parts.append(_grads(model))
    for k, g in combined.items():
        np.testing.assert_allclose(g, sum(p[k] for p in parts), rtol=1e-12, atol=1e-15,
                                   err_msg=k)
    # and against finite differences of the combined loss
    rng = _rng(11)
    for k, p in model.named_parameters():
        v = rng.standard_normal(p.data.shape)
        keep = p.data.copy()
        vals = []
        for h in (1e-7, -1e-7):
            p.data[...] = keep + h * v
            with nc.no_grad():
                vals.append(float(ce.forward(model(x1), y1) + 0.5 * ce.forward(model(x2), y2)
                                  - mse.forward(model(x1), t) / 4))
        p.data[...] = keep
        numeric = (vals[0] - vals[1]) / 2e-7
        assert abs(np.sum(combined[k] * v) - numeric) <= 1e-8 + RTOL_FD * abs(numeric), k


def test_a_sum_of_losses_matches_pytorch():
    torch = pytest.importorskip("torch")
    model, x, target, crit = _case("tied_linear")
    twin = _torch_twin("tied_linear")
    _copy_to_torch(model, twin)
    t = _rng(4).standard_normal((5, 4))
    out = model(x)
    loss = crit(out, target) + 0.5 * losses.MSELoss()(out, t)
    loss.backward()
    tout = twin(torch.tensor(x))
    tloss = (torch.nn.functional.cross_entropy(tout, torch.tensor(target))
             + 0.5 * torch.nn.functional.mse_loss(tout, torch.tensor(t)))
    tloss.backward()
    _assert_rel(float(loss), tloss.item(), RTOL_TORCH, "loss")
    for k, p in twin.named_parameters():
        _assert_rel(dict(model.named_parameters())[k].grad, p.grad.numpy(), RTOL_TORCH, k)


@pytest.mark.parametrize("name", ["basicblock_iadd", "inception_cat", "shape_ops"])
def test_backward_of_a_non_scalar_output(name):
    # out.backward(dy): d(sum(out * dy)) against finite differences (and dy's shape checked)
    model, x, _, _ = _case(name)
    out = model(x)
    dy = _rng(7).standard_normal(out.shape)
    with pytest.raises(ValueError, match="gradient"):
        out.backward()  # several elements: the gradient is needed
    with pytest.raises(ValueError, match="shape"):
        out.backward(np.ones((1,) + out.shape))
    out.backward(dy)
    grads = _grads(model)
    rng = _rng(8)
    for k, p in model.named_parameters():
        v = rng.standard_normal(p.data.shape)
        keep = p.data.copy()
        vals = []
        for h in (1e-7, -1e-7):
            p.data[...] = keep + h * v
            with nc.no_grad():
                vals.append(float(np.sum(model(x) * dy)))
        p.data[...] = keep
        numeric = (vals[0] - vals[1]) / 2e-7
        assert abs(np.sum(grads[k] * v) - numeric) <= 1e-8 + RTOL_FD * abs(numeric), k


def test_backward_of_a_non_scalar_output_matches_pytorch():
    torch = pytest.importorskip("torch")
    model, x, _, _ = _case("basicblock_add")
    twin = _torch_twin("basicblock_add")
    _copy_to_torch(model, twin)
    out = model(x)
    dy = _rng(7).standard_normal(out.shape)
    out.backward(dy)
    twin(torch.tensor(x)).backward(torch.tensor(dy))
    for k, p in twin.named_parameters():
        _assert_rel(dict(model.named_parameters())[k].grad, p.grad.numpy(), RTOL_TORCH, k)


def test_a_second_explicit_backward_of_a_sequential_raises_instead_of_doubling():
    nc.manual_seed(0)
    seq = nn.Sequential(nn.Conv2d(1, 2, 3, dtype=F64), nn.ReLU(), nn.Flatten(),
                        nn.Linear(2 * 6 * 6, 3, dtype=F64))
    x = _rng().standard_normal((2, 1, 8, 8))
    dy = _rng(1).standard_normal((2, 3))
    seq.forward(x)
    seq.backward(dy)
    first = _grads(seq)
    with pytest.raises(RuntimeError, match="second time"):
        seq.backward(dy)
    for k, g in _grads(seq).items():
        np.testing.assert_array_equal(g, first[k], err_msg=k)
    seq.forward(x)  # a new forward: the next backward adds
    seq.backward(dy)
    for k, g in _grads(seq).items():
        np.testing.assert_array_equal(g, 2 * first[k], err_msg=k)


def test_a_sequential_used_pytorch_style_gives_the_explicit_gradients():
    nc.manual_seed(0)
    seq = nn.Sequential(nn.Conv2d(1, 2, 3, dtype=F64), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Flatten(), nn.Linear(2 * 3 * 3, 3, dtype=F64))
    x, y = _rng().standard_normal((3, 1, 8, 8)), np.array([0, 2, 1])
    crit = losses.CrossEntropyLoss()
    crit(seq(x), y).backward()
    recorded = _grads(seq)
    seq.zero_grad()
    crit.forward(seq.forward(x), y)
    seq.backward(crit.backward())
    for k, g in _grads(seq).items():
        np.testing.assert_array_equal(recorded[k], g, err_msg=k)


# -- hand-written backward passes --------------------------------------------------------

class TutorialNetByHand(nn.Module):
    """The README's way before recording: the tutorial net with its own backward, which
    calls the reused pool's (and ReLU's) backward once per forward use, in reverse order."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5, dtype=F64)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5, dtype=F64)
        self.fc1 = nn.Linear(16 * 5 * 5, 120, dtype=F64)
        self.fc2 = nn.Linear(120, 84, dtype=F64)
        self.fc3 = nn.Linear(84, 10, dtype=F64)
        self.act = nn.ReLU()
        self.flatten = nn.Flatten()

    def forward(self, x):
        x = self.pool(self.act(self.conv1(x)))
        x = self.pool(self.act(self.conv2(x)))
        x = self.flatten(x)
        x = self.act(self.fc1(x))
        x = self.act(self.fc2(x))
        return self.fc3(x)

    def backward(self, dy):
        dy = self.fc3.backward(dy)
        dy = self.fc2.backward(self.act.backward(dy))
        dy = self.fc1.backward(self.act.backward(dy))
        dy = self.flatten.backward(dy)
        dy = self.conv2.backward(self.act.backward(self.pool.backward(dy)))
        return self.conv1.backward(self.act.backward(self.pool.backward(dy)))


def _tutorial_by_hand(seed=0):
    nc.manual_seed(seed)
    model = TutorialNetByHand()
    rng = _rng(seed + 10)
    return model, rng.standard_normal((3, 3, 32, 32)), rng.integers(0, 10, 3)


def test_hand_written_backward_with_a_reused_layer_matches_pytorch():
    pytest.importorskip("torch")
    model, x, y = _tutorial_by_hand()
    twin = _torch_twin("tutorial_relu_module")
    _copy_to_torch(model, twin)
    t_loss, t_grads, t_dx, _, _ = _torch_run(twin, x, y, losses.CrossEntropyLoss())
    crit = losses.CrossEntropyLoss()
    # explicit: forward, loss, model.backward
    out = model.forward(x)
    assert _rel(crit.forward(out, y), t_loss) <= RTOL_TORCH
    dx = model.backward(crit.backward())
    _assert_rel(dx, t_dx, RTOL_TORCH, "dx")
    for k, g in t_grads.items():
        _assert_rel(dict(model.named_parameters())[k].grad, g, RTOL_TORCH, k)
    # PyTorch-style: the module is one record whose backward is its own
    model.zero_grad()
    crit(model(x), y).backward()
    for k, g in t_grads.items():
        _assert_rel(dict(model.named_parameters())[k].grad, g, RTOL_TORCH, f"{k} (record)")


def test_hand_written_backward_with_a_reused_layer_passes_gradcheck():
    model, x, _ = _tutorial_by_hand(seed=1)
    assert gradcheck(model, x, eps=1e-7, rtol=RTOL_FD)


class Square(nn.Module):
    """A custom op with its own backward that reads the context its forward kept."""

    calls = 0

    def forward(self, x):
        self.x = x
        return x * x

    def backward(self, dy):
        Square.calls += 1
        return 2 * self.x * dy


class RoundSTE(nn.Module):
    """Rounding with a straight-through backward: its gradient is *not* the derivative of
    its forward (zero almost everywhere), so only its own backward gives these numbers."""

    def forward(self, x):
        return np.round(x * 4) / 4

    def backward(self, dy):
        return dy


class UsesCustomOps(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(5, 6, dtype=F64)
        self.sq = Square()
        self.q = RoundSTE()
        self.fc2 = nn.Linear(6, 3, dtype=F64)

    def forward(self, x):
        h = self.sq(self.fc1(x))            # first use of sq
        h = self.q(h) + 0.1 * self.sq(h)    # second use, another input
        return self.fc2(h)


def _uses_custom_ops():
    nc.manual_seed(3)
    model = UsesCustomOps()
    rng = _rng(3)
    return model, rng.standard_normal((4, 5)), rng.integers(0, 3, 4)


def test_a_custom_backward_is_its_records_backward_in_a_recorded_parent():
    model, x, y = _uses_custom_ops()
    Square.calls = 0
    crit = losses.CrossEntropyLoss()
    crit(model(x), y).backward()
    assert Square.calls == 2   # once per call, each with its own saved input
    # reference by hand: straight-through rounding, chain rule written out
    W1, b1 = model.fc1.weight.data, model.fc1.bias.data
    W2 = model.fc2.weight.data
    a = x @ W1.T + b1
    s1 = a * a
    h = np.round(s1 * 4) / 4 + 0.1 * s1 * s1
    z = h @ W2.T + model.fc2.bias.data
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    dz = (p - np.eye(3)[y]) / len(y)
    dh = dz @ W2
    ds1 = dh + 0.1 * 2 * s1 * dh
    da = 2 * a * ds1
    np.testing.assert_allclose(model.fc2.weight.grad, dz.T @ h, rtol=1e-12)
    np.testing.assert_allclose(model.fc1.weight.grad, da.T @ x, rtol=1e-12)
    np.testing.assert_allclose(model.fc1.bias.grad, da.sum(0), rtol=1e-12)


def test_a_custom_backward_in_a_recorded_parent_matches_pytorch():
    torch = pytest.importorskip("torch")
    model, x, y = _uses_custom_ops()

    class TUses(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = torch.nn.Linear(5, 6)
            self.fc2 = torch.nn.Linear(6, 3)

        def forward(self, x):
            h = self.fc1(x) ** 2
            q = h + (torch.round(h * 4) / 4 - h).detach()   # straight-through
            return self.fc2(q + 0.1 * h * h)

    twin = TUses().double()
    _copy_to_torch(model, twin)
    losses.CrossEntropyLoss()(model(x), y).backward()
    t_loss, t_grads, _, _, _ = _torch_run(twin, x, y, losses.CrossEntropyLoss())
    for k, g in t_grads.items():
        _assert_rel(dict(model.named_parameters())[k].grad, g, RTOL_TORCH, k)


def test_the_functional_api_on_plain_arrays_returns_plain_arrays():
    rng = _rng()
    x = rng.standard_normal((2, 3, 8, 8))
    w = rng.standard_normal((4, 3, 3, 3))
    results = {
        "conv2d": nc.conv2d(x, w, np.zeros(4), padding=1),
        "relu": nc.relu(x), "sigmoid": nc.sigmoid(x), "tanh": nc.tanh(x),
        "softmax": nc.softmax(x, axis=1), "log_softmax": nc.log_softmax(x, axis=1),
        "max_pool2d": nc.max_pool2d(x, 2), "avg_pool2d": nc.avg_pool2d(x, 2),
        "linear": nc.linear(x.reshape(2, -1), rng.standard_normal((5, 192))),
        "cat": nc.cat([x, x], 1), "flatten": nc.flatten(x, 1),
        "batch_norm": nc.batch_norm(x, np.zeros(3), np.ones(3), training=True),
        "dropout": nc.dropout(x, 0.5, rng=np.random.default_rng(0)),
        "conv2d_backward": nc.conv2d_backward(np.ones((2, 4, 6, 6)), x, w)[1],
    }
    for name, r in results.items():
        assert type(r) is np.ndarray, name
    mp = nc.max_pool2d(x, 2, return_indices=True)
    assert all(type(a) is np.ndarray for a in mp)
    np.testing.assert_array_equal(results["cat"], np.concatenate([x, x], 1))
    np.testing.assert_array_equal(results["flatten"], x.reshape(2, -1))


class DropTwice(nn.Module):
    """One Dropout module used twice on the same input: two different masks."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(5, 5, dtype=F64)
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        h = self.fc(x)
        self.a = self.drop(h)
        self.b = self.drop(h)
        return 2 * self.a + 3 * self.b


def test_a_reused_dropout_keeps_each_calls_mask():
    nc.manual_seed(4)
    model = DropTwice()
    x, dy = _rng(4).standard_normal((6, 5)), _rng(5).standard_normal((6, 5))
    model(x)
    dx = model.backward(dy)
    keep_a, keep_b = np.asarray(model.a) != 0, np.asarray(model.b) != 0
    assert np.any(keep_a != keep_b)  # the two masks differ
    dh = (2 * keep_a + 3 * keep_b) / 0.5 * dy
    np.testing.assert_allclose(dx, dh @ model.fc.weight.data, rtol=1e-12)
    np.testing.assert_allclose(model.fc.weight.grad, dh.T @ x, rtol=1e-12)


class TanhUnit(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(5, 5, dtype=F64)

    def forward(self, x):
        return nc.tanh(self.fc(x)) * 2


class ExplicitOuter(nn.Module):
    """A hand-written backward calling the backward of a recorded sub-module used twice."""

    def __init__(self):
        super().__init__()
        self.inner = TanhUnit()
        self.fc = nn.Linear(5, 3, dtype=F64)

    def forward(self, x):
        return self.fc(self.inner(self.inner(x)))

    def backward(self, dy):
        return self.inner.backward(self.inner.backward(self.fc.backward(dy)))


def test_a_recorded_sub_module_reused_under_a_hand_written_backward():
    nc.manual_seed(5)
    x = _rng(5).standard_normal((4, 5))
    assert gradcheck(ExplicitOuter(), x, eps=1e-7, rtol=RTOL_FD)
    # and the module as one record in a PyTorch-style loop gives the explicit gradients
    model, y, crit = ExplicitOuter(), np.array([0, 1, 2, 0]), losses.CrossEntropyLoss()
    crit(model(x), y).backward()
    recorded = _grads(model)
    model.zero_grad()
    crit.forward(model.forward(x), y)
    model.backward(crit.backward())
    for k, g in _grads(model).items():
        np.testing.assert_array_equal(recorded[k], g, err_msg=k)


def test_a_second_model_backward_of_a_recorded_model_raises():
    model, x, _ = _small()
    dy = _rng(3).standard_normal((4, 3))
    model(x)
    model.backward(dy)
    first = _grads(model)
    with pytest.raises(SecondBackwardError):
        model.backward(dy)
    for k, g in _grads(model).items():
        np.testing.assert_array_equal(g, first[k], err_msg=k)


def test_model_backward_without_a_recorded_forward_raises():
    model, x, _ = _small()
    with nc.no_grad():
        model(x)
    with pytest.raises(RuntimeError, match="no recorded forward pass"):
        model.backward(np.ones((4, 3)))


def test_model_backward_after_a_no_grad_forward_does_not_use_an_older_forward():
    model, x1, _ = _small()
    x2 = _rng(12).standard_normal(x1.shape)
    dy = _rng(3).standard_normal((4, 3))
    layer = nn.Linear(3, 2, dtype=F64)
    layer.forward(x1[:, 0, 0, :3])
    with nc.no_grad():
        layer.forward(x2[:, 0, 0, :3])
    with pytest.raises(RuntimeError):  # what a built-in layer does
        layer.backward(np.ones((4, 2)))
    model(x1)
    with nc.no_grad():
        model(x2)  # the last forward pass: nothing recorded, nothing kept
    with pytest.raises(RuntimeError):
        model.backward(dy)  # gives the gradients of the pass on x1 instead


class _OneRank:
    """A World of one rank (reductions leave their buffer as it is), as in
    tests/test_distributed.py."""

    size, rank = 1, 0

    def allreduce_(self, buf, op="sum", what=""):
        return buf


class ConvBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, dtype=F64)
        self.bn = nn.BatchNorm2d(4, dtype=F64)
        self.fc = nn.Linear(4 * 6 * 6, 3, dtype=F64)

    def forward(self, x):
        x = nc.relu(self.bn(self.conv(x)))
        return self.fc(x.reshape(x.shape[0], -1))


def test_sync_batch_norm_in_a_recorded_model_keeps_the_gradients():
    from nbconv import distributed

    x, y = _rng(6).standard_normal((4, 1, 8, 8)), np.array([0, 1, 2, 0])
    nc.manual_seed(6)
    plain = ConvBN()
    nc.manual_seed(6)
    synced = ConvBN()
    losses.CrossEntropyLoss()(plain(x), y).backward()
    with distributed.sync_batch_norm(synced, _OneRank()):
        losses.CrossEntropyLoss()(synced(x), y).backward()
    for (k, p), q in zip(plain.named_parameters(), synced.parameters()):
        np.testing.assert_allclose(q.grad, p.grad, rtol=1e-9, atol=1e-12, err_msg=k)


# -- more PyTorch idioms, each against a reference written out by hand or differences -----

def _fd_params(model, loss_fn, seed=0, eps=1e-7):
    """Check ``loss_fn().backward()`` of every parameter against central differences."""
    rng = _rng(seed)
    model.zero_grad()
    loss_fn().backward()
    grads = _grads(model)
    for k, p in model.named_parameters():
        v = rng.standard_normal(p.data.shape)
        keep = p.data.copy()
        vals = []
        for h in (eps, -eps):
            p.data[...] = keep + h * v
            with nc.no_grad():
                vals.append(float(loss_fn()))
        p.data[...] = keep
        numeric = (vals[0] - vals[1]) / (2 * eps)
        analytic = float(np.sum(grads[k] * v))
        assert abs(analytic - numeric) <= 1e-8 + RTOL_FD * abs(numeric), (k, analytic, numeric)
    return grads


def test_a_loss_plus_a_penalty_on_a_parameter():
    # loss + 1e-2 * (w * w).sum(): a recorded 0-d array added to a loss value
    model, x, y = _small()
    crit = losses.CrossEntropyLoss()
    w = model.fc.weight

    def total():
        return crit(model(x), y) + 1e-2 * (w * w).sum()

    grads = _fd_params(model, total)
    model.zero_grad()
    crit(model(x), y).backward()
    np.testing.assert_allclose(grads["fc.weight"] - model.fc.weight.grad, 2e-2 * w.data,
                               rtol=1e-10, atol=1e-14)
    # the penalty first, then the loss
    model.zero_grad()
    (1e-2 * (w * w).sum() + crit(model(x), y)).backward()
    for k, g in _grads(model).items():
        np.testing.assert_allclose(g, grads[k], rtol=1e-12, atol=1e-15, err_msg=k)


def test_a_regression_target_made_by_another_model_gets_its_gradient():
    # MSELoss(a(x), b(x)): both models are trained (the target is recorded too)
    nc.manual_seed(8)
    a, b = nn.Linear(4, 3, dtype=F64), nn.Linear(4, 3, dtype=F64)
    x = _rng(8).standard_normal((6, 4))

    class Pair(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = a, b

    for crit in (losses.MSELoss(), losses.L1Loss()):
        grads = _fd_params(Pair(), lambda crit=crit: crit(a(x), b(x)))
        np.testing.assert_allclose(grads["a.bias"], -grads["b.bias"], rtol=1e-12)


def test_two_outputs_and_two_inputs():
    class TwoHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 5, dtype=F64)
            self.h1 = nn.Linear(5, 3, dtype=F64)
            self.h2 = nn.Linear(5, 2, dtype=F64)

        def forward(self, a, b):
            h = nc.relu(self.fc(a)) * b
            return self.h1(h), self.h2(h)

    nc.manual_seed(9)
    model = TwoHeads()
    rng = _rng(9)
    a, b = rng.standard_normal((6, 4)), rng.standard_normal((6, 5))
    y, t = rng.integers(0, 3, 6), rng.standard_normal((6, 2))

    def total():
        o1, o2 = model(a, b)
        return losses.CrossEntropyLoss()(o1, y) + losses.MSELoss()(o2, t)

    _fd_params(model, total)
    # model.backward takes one gradient per output (None: no gradient) and returns one per input
    o1, o2 = model(a, b)
    dy2 = rng.standard_normal((6, 2))
    da, db = model.backward((None, dy2))
    h = nc.relu(np.asarray(model.fc(a)))
    np.testing.assert_allclose(db, (dy2 @ model.h2.weight.data) * h, rtol=1e-12)
    np.testing.assert_allclose(da, ((dy2 @ model.h2.weight.data) * b * (h > 0))
                               @ model.fc.weight.data, rtol=1e-12)


def test_python_sum_and_fancy_indexing():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fcs = nn.ModuleList([nn.Linear(4, 3, dtype=F64) for _ in range(3)])

        def forward(self, x):
            h = sum(fc(x) for fc in self.fcs)     # 0 + a + b + c
            return h[:, [0, 0, 2]]                # column 0 twice: its gradients add up

    nc.manual_seed(10)
    model = Net()
    x, dy = _rng(10).standard_normal((5, 4)), _rng(11).standard_normal((5, 3))
    model(x).backward(dy)
    dh = np.stack([dy[:, 0] + dy[:, 1], np.zeros(5), dy[:, 2]], axis=1)
    for fc in model.fcs:
        np.testing.assert_allclose(fc.weight.grad, dh.T @ x, rtol=1e-12)
        np.testing.assert_allclose(fc.bias.grad, dh.sum(0), rtol=1e-12)


def test_accumulating_a_recorded_array_into_a_plain_one_raises():
    class Accumulates(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 3, dtype=F64)

        def forward(self, x):
            acc = np.zeros((len(x), 3))
            acc += self.fc(x)  # in place into a plain array: the gradient would be lost
            return acc

    with pytest.raises(TypeError, match="acc = acc \\+ y"):
        Accumulates()(np.ones((2, 3)))


def test_chained_models_send_gradients_through_both():
    model, x, y = _small()
    head = nn.Linear(3, 2, dtype=F64)

    class Chain(nn.Module):
        def __init__(self):
            super().__init__()
            self.model, self.head = model, head

    _fd_params(Chain(), lambda: losses.CrossEntropyLoss()(head(nc.tanh(model(x))), y % 2))


def test_a_model_deep_copied_after_a_forward_pass_is_independent():
    import copy

    model, x, y = _small()
    crit = losses.CrossEntropyLoss()
    out = model(x)
    best = copy.deepcopy(model)   # the "keep the best model" idiom, mid-step
    crit(out, y).backward()
    assert all(not np.any(g) for g in _grads(best).values())
    crit(best(x), y).backward()   # the copy records its own forward passes
    for k, g in _grads(best).items():
        np.testing.assert_array_equal(g, _grads(model)[k], err_msg=k)


def test_a_frozen_parameter_is_not_trained():
    model, x, y = _small()
    model.conv.weight.requires_grad = False
    before = model.conv.weight.data.copy()
    opt = optim.SGD(model.parameters(), lr=0.1)
    losses.CrossEntropyLoss()(model(x), y).backward()
    opt.step()
    np.testing.assert_array_equal(model.conv.weight.data, before)
    assert np.any(model.fc.weight.grad)


# =========================================================================== fit

def _fit_problem(seed=0, n=96):
    """The 3-class 8x8 problem of tests/test_train.py: a bright bar whose row is the class."""
    rng = _rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.standard_normal((n, 1, 8, 8)).astype(np.float32) * 0.5
    for k in range(3):
        x[y == k, 0, 2 * k:2 * k + 3, 2:6] += 2.0
    return x, y


class FitNet(nn.Module):
    """conv - batch norm - relu - pool - dropout - linear, PyTorch-style (float32)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.pool = nn.MaxPool2d(2)
        self.drop = nn.Dropout(0.2)
        self.fc = nn.Linear(4 * 3 * 3, 3)

    def forward(self, x):
        x = self.drop(self.pool(nc.relu(self.bn(self.conv(x)))))
        return self.fc(x.reshape(x.shape[0], -1))


def _fit(kind, epochs, seed=0):
    nc.manual_seed(seed)
    model = FitNet()
    if kind == "sequential":
        seq = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                            nn.Dropout(0.2), nn.Flatten(), nn.Linear(4 * 3 * 3, 3))
        ours, theirs = model.state_dict(), seq.state_dict()
        assert [v.shape for v in ours.values()] == [v.shape for v in theirs.values()]
        seq.load_state_dict(dict(zip(theirs, ours.values())))
        model = seq
    nc.manual_seed(seed + 1)  # the same dropout masks for both
    x, y = _fit_problem()
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    hist = fit(model, losses.CrossEntropyLoss(), opt, data.DataLoader(x, y, 16, seed=seed),
               epochs, val_loader=data.DataLoader(x, y, 32, shuffle=False), progress=False)
    return model, hist


def test_fit_trains_a_recorded_model():
    model, hist = _fit("recorded", 4)
    assert hist["loss"][-1] < 0.5 * hist["loss"][0]
    assert hist["val_accuracy"][-1] >= 0.9
    assert model.training


def test_fit_of_a_recorded_model_equals_fit_of_its_sequential():
    # One epoch from the same initial weights and dropout draws: the recorded walk calls
    # the same layer backward passes in the same order as Sequential, so the training loss
    # and the weights are bit-identical (float32, fit's default dtype), running statistics
    # included.  The validation loss only to float32 rounding: in eval mode under no_grad
    # Sequential folds the batch norm into the convolution (Conv2d._forward_through).
    recorded, h1 = _fit("recorded", 1)
    sequential, h2 = _fit("sequential", 1)
    assert h1["loss"] == h2["loss"] and h1["accuracy"] == h2["accuracy"]
    np.testing.assert_allclose(h1["val_loss"], h2["val_loss"], rtol=1e-6)
    for (k, a), b in zip(recorded.state_dict().items(), sequential.state_dict().values()):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b, err_msg=k)


# =========================================================================== MPI

def _mpi():
    import test_distributed as td

    td._mpiexec()  # skips without mpi4py or mpiexec
    return td


def test_distributed_fit_of_a_recorded_model(tmp_path):
    td = _mpi()
    proc, _ = td._launch(2, tmp_path, "--model", "recorded", "--n", 22, "--batch", 4,
                         "--epochs", 2, "--shift", 2)
    td._ok(proc)
    td._assert_ranks_identical(tmp_path, 2)
    ref, ref_hist = td._single_process("recorded", 22, 8, 2, shift=2)
    td._assert_close(td._weights(tmp_path, 0), ref)
    hist = json.loads((tmp_path / "history.json").read_text())
    np.testing.assert_allclose(hist["loss"], ref_hist["loss"], rtol=1e-5)


def test_distributed_fit_of_a_recorded_model_with_batch_norm_equals_its_sequential(tmp_path):
    # per-rank batch statistics (no sync): the PyTorch-style model and the Sequential "bn"
    # built from the same seed end with the same weights and running statistics
    td = _mpi()
    runs = {}
    for kind in ("recorded_bn", "bn"):
        out = tmp_path / kind
        proc, _ = td._launch(2, out, "--model", kind, "--n", 22, "--batch", 4, "--epochs", 2)
        td._ok(proc)
        td._assert_ranks_identical(out, 2)
        runs[kind] = td._weights(out, 0)
    seq = runs["bn"]
    assert len(runs["recorded_bn"]) == len(seq)
    for (k, a), (k2, b) in zip(runs["recorded_bn"].items(), seq.items()):
        assert k.split(".")[-1] == k2.split(".")[-1]
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=k)


def test_distributed_fit_of_a_recorded_model_with_synchronised_batch_norm(tmp_path):
    td = _mpi()
    proc, _ = td._launch(2, tmp_path, "--model", "recorded_bn", "--sync-bn", "--n", 22,
                         "--batch", 4, "--epochs", 2)
    td._ok(proc)
    td._assert_ranks_identical(tmp_path, 2)
    ref, _ = td._single_process("recorded_bn", 22, 8, 2)
    td._assert_close(td._weights(tmp_path, 0), ref)


def _elementwise_model():
    class Elementwise(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 4, dtype=F64)

        def forward(self, x):
            h = self.fc(x)
            return (0.1 * np.exp(h) + np.log(h * h + 1) + np.sqrt(np.abs(h) + 1)
                    + np.square(h) + h ** 3 + np.tanh(h) - (h ** 2).sum())

    return Elementwise()


def test_recorded_numpy_elementwise_ops_match_finite_differences():
    assert gradcheck(_elementwise_model(), _rng(2).standard_normal((5, 3)))


def test_recorded_numpy_elementwise_ops_match_pytorch():
    torch = pytest.importorskip("torch")
    model = _elementwise_model()
    x = _rng(2).standard_normal((5, 3))
    out = model(x)
    dy = _rng(3).standard_normal(out.shape)
    model.zero_grad()
    out.backward(dy)
    w = torch.tensor(model.fc.weight.data, requires_grad=True)
    b = torch.tensor(model.fc.bias.data, requires_grad=True)
    h = torch.tensor(x) @ w.T + b
    t = (0.1 * torch.exp(h) + torch.log(h * h + 1) + torch.sqrt(torch.abs(h) + 1)
         + torch.square(h) + h ** 3 + torch.tanh(h) - (h ** 2).sum())
    t.backward(torch.tensor(dy))
    _assert_rel(np.asarray(out), t.detach().numpy(), 1e-12, "output")
    _assert_rel(model.fc.weight.grad, w.grad.numpy(), 1e-10, "fc.weight grad")
    _assert_rel(model.fc.bias.grad, b.grad.numpy(), 1e-10, "fc.bias grad")


def test_rounding_a_recorded_array_gives_a_constant():
    out = nn.ReLU()(np.array([[1.2345, -3.0]]))
    for r in (out.round(2), np.round(out, 2), np.around(out, 2)):
        assert type(r) is np.ndarray
        np.testing.assert_array_equal(r, [[1.23, 0.0]])

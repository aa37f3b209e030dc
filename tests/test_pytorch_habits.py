"""Issue 15: what a PyTorch user expects in the first hour, each habit against torch or an
explicit reference (attribute registration, traversal, containers, unbatched inputs, summary,
gradcheck, pooling's ceil_mode, model files of custom classes, the auto rule's docs).  The
killed-save test is in test_io.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import nbconv as nc
from nbconv import nn
from nbconv._checks.conv import geometry as _geometry
from nbconv.conv import plan as _plan
from nbconv.testing import GradcheckError, gradcheck

torch = pytest.importorskip("torch")
tnn = torch.nn


# --------------------------------------------------------------------------- a PyTorch-style class

@nn.register
class LeNetLike(nn.Module):
    """The README's custom-module example: attribute registration plus a manual backward."""

    def __init__(self, num_classes=10, width=6):
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 5)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(width * 4 * 4, num_classes)

    def forward(self, x):
        return self.fc(self.flatten(self.pool(self.relu(self.conv1(x)))))

    def backward(self, dy):
        dy = self.flatten.backward(self.fc.backward(dy))
        return self.conv1.backward(self.relu.backward(self.pool.backward(dy)))


class TorchLeNetLike(tnn.Module):
    def __init__(self, num_classes=10, width=6):
        super().__init__()
        self.conv1 = tnn.Conv2d(1, width, 5)
        self.relu = tnn.ReLU()
        self.pool = tnn.MaxPool2d(2)
        self.flatten = tnn.Flatten()
        self.fc = tnn.Linear(width * 4 * 4, num_classes)

    def forward(self, x):
        return self.fc(self.flatten(self.pool(self.relu(self.conv1(x)))))


def _same_weights(ours, theirs):
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})


def test_attribute_registration_matches_torch_keys_outputs_and_gradients():
    torch.manual_seed(0)
    ref = TorchLeNetLike(num_classes=4).double()
    net = LeNetLike(num_classes=4).astype(np.float64)
    assert list(net.state_dict()) == list(ref.state_dict())  # conv1.weight, ... in order
    assert [(k, p.data.shape) for k, p in net.named_parameters()] == [
        (k, tuple(p.shape)) for k, p in ref.named_parameters()]
    assert len(net.parameters()) == 4 and net.num_parameters() == sum(
        p.numel() for p in ref.parameters())
    _same_weights(net, ref)
    x = np.random.default_rng(0).standard_normal((3, 1, 12, 12))
    xt = torch.tensor(x, requires_grad=True)
    yt = ref(xt)
    y = net(x)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-10, atol=1e-12)
    dy = np.random.default_rng(1).standard_normal(y.shape)
    yt.backward(torch.tensor(dy))
    dx = net.backward(dy)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-9, atol=1e-12)
    for k, p in net.named_parameters():
        np.testing.assert_allclose(p.grad, dict(ref.named_parameters())[k].grad.numpy(),
                                   rtol=1e-9, atol=1e-12, err_msg=k)


def test_custom_class_trains_and_round_trips_through_a_model_file(tmp_path):
    nc.manual_seed(0)
    net = LeNetLike(num_classes=3, width=4)
    assert net._config == {"num_classes": 3, "width": 4}
    x = np.random.default_rng(0).standard_normal((8, 1, 12, 12)).astype(np.float32)
    labels = np.arange(8) % 3
    crit, opt = nn.CrossEntropyLoss(), nc.optim.SGD(net.parameters(), lr=0.1)
    before = net.conv1.weight.data.copy()
    losses = []
    for _ in range(5):
        opt.zero_grad()
        losses.append(crit.forward(net(x), labels))
        net.backward(crit.backward())
        opt.step()
    assert not np.array_equal(before, net.conv1.weight.data)  # the optimizer saw it
    assert losses[-1] < losses[0]
    nc.save(net, tmp_path / "net.h5")
    back = nc.load(tmp_path / "net.h5")
    assert type(back) is LeNetLike and back._config == net._config
    assert back.fc.weight.data.shape == (3, 64)
    np.testing.assert_array_equal(back(x), net(x))


def test_model_file_errors_name_what_to_do(tmp_path):
    class Unregistered(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 2)

    with pytest.raises(TypeError, match="nbconv.nn.register"):
        nc.save(Unregistered(), tmp_path / "u.h5")

    @nn.register
    class TakesArray(nn.Module):
        def __init__(self, scale):
            super().__init__()
            self.scale = scale

    with pytest.raises(TypeError, match=r"\['scale'\] are not JSON data"):
        nc.save(TakesArray(np.ones(3)), tmp_path / "a.h5")
    assert not (tmp_path / "a.h5").exists()
    with pytest.raises(ValueError, match="built-in"):
        nn.register(type("Conv2d", (nn.Module,), {}))


def test_loading_an_unregistered_class_names_the_module_to_import(tmp_path):
    # a class registered in the saving process only: the loading process is told where it is
    path = tmp_path / "block.h5"
    nc.save(LeNetLike(num_classes=3), path)
    code = f"import nbconv as nc; nc.load({str(path)!r})"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=tmp_path)
    assert proc.returncode != 0
    assert "'LeNetLike' is not registered" in proc.stderr
    assert f"import the module that defines it ({__name__})" in proc.stderr


def test_sequential_with_a_reused_layer_keeps_each_use_apart():
    relu = nn.ReLU()  # one module instance at two places, as PyTorch code often does
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 1, 9, 8))
    net = nn.Sequential(nn.Conv2d(1, 3, 3), relu, nn.Conv2d(3, 2, 3), relu).astype(np.float64)
    assert gradcheck(net, x)
    twin = tnn.Sequential(tnn.Conv2d(1, 3, 3), tnn.ReLU(), tnn.Conv2d(3, 2, 3), tnn.ReLU())
    twin = twin.double()
    net.load_state_dict({k: v.detach().numpy() for k, v in twin.state_dict().items()})
    net.zero_grad()
    dy = rng.standard_normal(net(x).shape)
    dx = net.backward(dy)
    xt = torch.tensor(x, requires_grad=True)
    twin(xt).backward(torch.tensor(dy))
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    for k, p in net.named_parameters():
        np.testing.assert_allclose(p.grad, dict(twin.named_parameters())[k].grad.numpy(),
                                   rtol=1e-10, atol=1e-12)


def test_missing_backward_is_recorded_and_early_assignment_says_what_to_do():
    class NoBackward(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 2)

        def forward(self, x):
            return self.fc(x)

    m = NoBackward()
    dy = np.array([[1.0, -2.0]], np.float32)
    m(np.ones((1, 2), np.float32))
    # no backward written: the forward was recorded, and backward walks it (dx = dy @ W)
    np.testing.assert_allclose(m.backward(dy), dy @ m.fc.weight.data, rtol=1e-6)
    np.testing.assert_allclose(m.fc.weight.grad, dy.T @ np.ones((1, 2)), rtol=1e-6)

    class TooEarly(nn.Module):
        def __init__(self):
            self.fc = nn.Linear(2, 2)
            super().__init__()

    with pytest.raises(AttributeError, match="super\\(\\).__init__\\(\\) first"):
        TooEarly()
    with pytest.raises(TypeError, match="assign to self.weight.data"):
        nn.Linear(2, 2).weight = np.zeros((2, 2))


def test_traversal_matches_torch():
    class Ours(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU())
            self.blocks = nn.ModuleList([nn.Linear(4, 4), nn.Identity(), nn.Linear(4, 4)])
            self.shared = self.blocks[0]  # registered twice: yielded once, as in torch
            self.register_buffer("scale", np.ones(3))
            self.head = None

    class Theirs(tnn.Module):
        def __init__(self):
            super().__init__()
            self.stem = tnn.Sequential(tnn.Conv2d(1, 2, 3), tnn.ReLU())
            self.blocks = tnn.ModuleList([tnn.Linear(4, 4), tnn.Identity(), tnn.Linear(4, 4)])
            self.shared = self.blocks[0]
            self.register_buffer("scale", torch.ones(3))
            self.head = None

    def kind(m):
        return "root" if type(m) in (Ours, Theirs) else type(m).__name__

    ours, theirs = Ours(), Theirs()
    assert [n for n, _ in ours.named_modules()] == [n for n, _ in theirs.named_modules()]
    assert [kind(m) for m in ours.modules()] == [kind(m) for m in theirs.modules()]
    assert [n for n, _ in ours.named_children()] == [n for n, _ in theirs.named_children()]
    assert [type(m).__name__ for m in ours.children()] == [
        type(m).__name__ for m in theirs.children()]
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    assert [n for n, _ in ours.named_buffers()] == [n for n, _ in theirs.named_buffers()]
    np.testing.assert_array_equal(ours.scale, np.ones(3))
    assert ours.num_parameters() == sum(p.numel() for p in theirs.parameters())
    visited = []
    ours.apply(lambda m: visited.append(kind(m)))
    tvisited = []
    theirs.apply(lambda m: tvisited.append(kind(m)))
    assert visited == tvisited
    # ModuleList edits renumber the keys as torch's do
    ours.blocks.insert(1, nn.Linear(4, 4))
    theirs.blocks.insert(1, tnn.Linear(4, 4))
    del ours.blocks[0]
    del theirs.blocks[0]
    assert [n for n, _ in ours.blocks.named_parameters()] == [
        n for n, _ in theirs.blocks.named_parameters()]
    del ours.shared
    assert "shared" not in dict(ours.named_children())


def test_identity_and_losses_from_nn():
    x = np.arange(6.0).reshape(2, 3)
    ident = nn.Identity(54, unused_argument=0.1)  # torch accepts and ignores arguments too
    np.testing.assert_array_equal(ident(x), x)
    np.testing.assert_array_equal(ident.backward(x), x)
    assert nn.CrossEntropyLoss is nc.losses.CrossEntropyLoss
    assert nn.MSELoss is nc.losses.MSELoss and nn.L1Loss is nc.losses.L1Loss
    net = nn.Sequential(nn.Linear(3, 2), nn.Identity())
    assert nc.nn.from_config(nc.nn.to_config(net))[1].__class__ is nn.Identity


# --------------------------------------------------------------------------- unbatched inputs
def test_unbatched_functional_ops_match_torch():
    F = torch.nn.functional
    rng = np.random.default_rng(0)
    x, w, b = (rng.standard_normal(s) for s in ((3, 9, 8), (4, 3, 3, 2), (4,)))
    y = nc.conv2d(x, w, b, stride=(2, 1), padding=1, dilation=(1, 2))
    yt = F.conv2d(*map(torch.tensor, (x, w, b)), stride=(2, 1), padding=1, dilation=(1, 2))
    assert y.shape == tuple(yt.shape) == (4, 5, 8)
    np.testing.assert_allclose(y, yt.numpy(), rtol=1e-10, atol=1e-12)
    dx, dw, db = nc.conv2d_backward(np.ones_like(y), x, w, stride=(2, 1), padding=1,
                                    dilation=(1, 2))
    assert dx.shape == x.shape and dw.shape == w.shape and db.shape == (4,)
    x1, w1 = rng.standard_normal((3, 10)), rng.standard_normal((2, 3, 4))
    np.testing.assert_allclose(nc.conv1d(x1, w1, stride=2, padding=1),
                               F.conv1d(torch.tensor(x1), torch.tensor(w1), stride=2,
                                        padding=1).numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(nc.max_pool2d(x, 2, ceil_mode=True),
                                  F.max_pool2d(torch.tensor(x), 2, ceil_mode=True).numpy())
    np.testing.assert_allclose(nc.avg_pool2d(x, 3, 2, 1),
                               F.avg_pool2d(torch.tensor(x), 3, 2, 1).numpy(), rtol=1e-12)
    with pytest.raises(ValueError, match=r"'x' must be 4-D \(N, C, H, W\) or unbatched"):
        nc.conv2d(np.ones((5, 5)), w)
    with pytest.raises(ValueError, match=r"'dy' must be 3-D \(F, OH, OW\)"):
        nc.conv2d_backward(np.ones((1, 4, 5, 8)), x, w, stride=(2, 1), padding=1)


def test_unbatched_layers_match_torch_autograd():
    torch.manual_seed(0)
    ref = tnn.Sequential(tnn.Conv2d(2, 3, 3, padding=1), tnn.ReLU(), tnn.MaxPool2d(2),
                         tnn.AvgPool2d(2), tnn.Flatten(0), tnn.Linear(3 * 2 * 2, 5)).double()
    net = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.AvgPool2d(2), nn.Flatten(0), nn.Linear(3 * 2 * 2, 5))
    net.astype("float64")
    _same_weights(net, ref)
    x = np.random.default_rng(2).standard_normal((2, 9, 8))  # (C, H, W)
    xt = torch.tensor(x, requires_grad=True)
    yt = ref(xt)
    np.testing.assert_allclose(net(x), yt.detach().numpy(), rtol=1e-10, atol=1e-12)
    dy = np.arange(5.0)
    yt.backward(torch.tensor(dy))
    np.testing.assert_allclose(net.backward(dy), xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(net[0].weight.grad, ref[0].weight.grad.numpy(), rtol=1e-10)
    conv1 = nn.Conv1d(3, 2, 3, padding=1).astype("float64")
    assert gradcheck(conv1, np.random.default_rng(3).standard_normal((3, 7)))


# --------------------------------------------------------------------------- summary
def test_summary_shapes_and_counts_match_torch_hooks():
    net = LeNetLike(num_classes=10)
    ref = TorchLeNetLike(num_classes=10)
    shapes = {}
    def hook(name):
        def record(module, inputs, output):
            shapes.setdefault(name, tuple(output.shape))  # returns None: output unchanged
        return record

    for name, m in ref.named_modules():
        m.register_forward_hook(hook(name))
    ref(torch.zeros(2, 1, 12, 12))
    bn = nn.BatchNorm2d(1)
    model = nn.Sequential(bn, net)  # training mode: summary must not touch the statistics
    s = nn.summary(model, (2, 1, 12, 12))
    rows = {r["name"]: r for r in s.rows}
    for name, shape in shapes.items():
        key = f"1.{name}" if name else "1"
        assert rows[key]["output_shape"] == shape, name
        assert rows[key]["params"] == sum(
            p.numel() for p in dict(ref.named_modules())[name].parameters())
    assert s.total_params == sum(p.numel() for p in ref.parameters()) + 2
    assert model.training and bn.training and net.conv1.training
    np.testing.assert_array_equal(bn.running_mean, 0.0)
    assert int(bn.num_batches_tracked) == 0
    text = str(s)
    assert "conv1 (Conv2d)" in text and "(2, 6, 8, 8)" in text
    assert f"Total params: {s.total_params:,}" in text
    assert net.summary().rows[0]["output_shape"] is None  # without an input size: counts only
    assert "forward" not in net.__dict__  # the recording wrappers are gone


# --------------------------------------------------------------------------- gradcheck
class _Scale(nn.Module):
    """y = x * w (w per feature); ``mode`` plants one kind of bug."""

    def __init__(self, mode="ok"):
        super().__init__()
        self.w = nn.Parameter(np.linspace(0.5, 1.5, 4))
        self.mode = mode

    def forward(self, x):
        self._x = x
        return x * self.w.data

    def backward(self, dy):
        dw = (dy * self._x).sum(axis=0)
        if self.mode == "overwrite":
            self.w.grad = dw
        else:
            self.w.grad += dw * (1.1 if self.mode == "wrong_dw" else 1.0)
        if self.mode == "in_place":
            dy *= self.w.data
            return dy
        return dy * self.w.data * (0.9 if self.mode == "wrong_dx" else 1.0)


@pytest.mark.parametrize("mode, message", [
    ("wrong_dx", r"input 0 \(shape \(5, 4\)\): backward gives"),
    ("wrong_dw", r"parameter 'w' \(shape \(4,\)\): backward gives"),
    ("overwrite", r"parameter 'w': a second backward pass did not add"),
    ("in_place", r"modified its argument dy in place"),
])
def test_gradcheck_catches_each_kind_of_bug(mode, message):
    x = np.random.default_rng(0).standard_normal((5, 4))
    assert gradcheck(_Scale(), x)
    with pytest.raises(GradcheckError, match=message):
        gradcheck(_Scale(mode), x)
    assert gradcheck(_Scale(mode), x, raise_exception=False) is False


def test_gradcheck_layers_functions_and_nondeterminism():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 6, 5)).astype(np.float32)  # checked in float64 anyway
    layer = nn.Conv2d(3, 2, 3, stride=2, padding=1)
    before = layer.weight.data.copy()
    assert gradcheck(layer, x)
    np.testing.assert_array_equal(layer.weight.data, before)  # the layer is not modified
    assert layer.weight.data.dtype == np.float32 and not layer.weight.grad.any()
    w = rng.standard_normal((2, 3, 3, 3))
    assert gradcheck(nc.conv2d, (x, w, None, 2),
                     lambda dy, x, w, b, s: nc.conv2d_backward(dy, x, w, s, bias=False)[:2])
    with pytest.raises(GradcheckError, match="input 1"):
        gradcheck(nc.conv2d, (x, w), lambda dy, x, w: (nc.conv2d_backward(dy, x, w)[0], w))
    with pytest.raises(GradcheckError, match="not deterministic"):
        gradcheck(nn.Dropout(0.5), x)
    assert gradcheck(nn.Dropout(0.5).eval(), x)
    with pytest.raises(TypeError, match="backward"):
        gradcheck(nc.relu, x)


# --------------------------------------------------------------------------- pooling, messages
def test_max_pool2d_ceil_mode_partial_dilated_window_follows_torch():
    F = torch.nn.functional
    x = np.arange(16.0).reshape(1, 2, 2, 4)  # the case
    y, idx = nc.max_pool2d(x, (2, 1), dilation=(2, 1), ceil_mode=True, return_indices=True)
    yt, it = F.max_pool2d(torch.tensor(x), (2, 1), dilation=(2, 1), ceil_mode=True,
                          return_indices=True)
    assert y.shape == tuple(yt.shape) == (1, 2, 1, 4)
    np.testing.assert_array_equal(y, yt.numpy())
    np.testing.assert_array_equal(idx, it.numpy())
    layer = nn.MaxPool2d((2, 1), dilation=(2, 1), ceil_mode=True)
    assert gradcheck(layer, x + np.random.default_rng(0).standard_normal(x.shape) * 0.01)
    with pytest.raises(ValueError, match="output size would be"):  # really empty: SPEC §2
        nc.max_pool2d(x, (2, 1), dilation=(2, 1), ceil_mode=False)
    assert nc.conv_output_size(2, 2, 2, dilation=2, ceil_mode=True) == 1


def test_pool_output_sizes_follow_torch_on_a_sweep():
    F = torch.nn.functional
    rng = np.random.default_rng(0)
    checked = 0
    for H, k, s, p, d in np.ndindex(5, 4, 3, 2, 3):
        H, k, s, d = H + 1, k + 1, s + 1, d + 1
        if p > k // 2:
            continue
        x = rng.standard_normal((1, 1, H, 3))
        for ceil in (False, True):
            try:
                yt = F.max_pool2d(torch.tensor(x), (k, 1), (s, 1), (p, 0), (d, 1), ceil)
            except RuntimeError:
                with pytest.raises(ValueError):
                    nc.max_pool2d(x, (k, 1), (s, 1), (p, 0), (d, 1), ceil)
                continue
            np.testing.assert_array_equal(nc.max_pool2d(x, (k, 1), (s, 1), (p, 0), (d, 1), ceil),
                                          yt.numpy())
            if d == 1:
                np.testing.assert_allclose(
                    nc.avg_pool2d(x, (k, 1), (s, 1), (p, 0), ceil),
                    F.avg_pool2d(torch.tensor(x), (k, 1), (s, 1), (p, 0), ceil).numpy(),
                    rtol=1e-12)
            checked += 1
    assert checked > 200


def test_correlate2d_fillvalue_message_is_plain():
    signal = pytest.importorskip("scipy.signal")
    a, k = np.ones((3, 3)), np.ones((2, 2))
    for bad, got in (([], "an empty array"), ([1, 2], "2 values")):
        with pytest.raises(ValueError) as ours:
            nc.correlate2d(a, k, fillvalue=bad)
        assert "'fillvalue' must be one number" in str(ours.value) and got in str(ours.value)
        with pytest.raises(ValueError):  # SciPy refuses it too
            signal.correlate2d(a, k, fillvalue=bad)


# --------------------------------------------------------------------------- the auto rule
def _auto(C, F, k, s, p, H, groups=1, backward=False):
    g = _geometry("t", (1, C, H, H), (F, C // groups, k, k), s, p, 1, groups, "zeros", "")
    return _plan.choose_algorithm("t", "auto", C, k, k, g, F, backward=backward)


def test_auto_rule_docstring_is_the_table_and_its_claims_hold():
    import re


    doc = " ".join(nc.conv2d.__doc__.split())
    for rule in _plan.AUTO_RULES:
        text = rule.text.replace("`Case.small_maps`", "``Case.small_maps``")
        assert f'* ``{rule.name}``: {text}: ``"{rule.algorithm}"``' in doc
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert _plan.auto_rule_text("", code="`") in readme, "regenerate the README's auto list"
    # the case: a stride-1 1x1 forward pass with C=4 runs im2col (strided-or-pointwise)
    assert _auto(4, 8, 1, 1, 0, 16) == "im2col"
    assert _auto(4, 8, 1, 1, 0, 16, backward=True) == "direct"  # pointwise-else
    assert _auto(512, 512, 3, 1, 1, 7, backward=True) == "tapgemm"  # small-maps (ResNet's last)
    assert _auto(512, 512, 3, 1, 1, 14, backward=True) == "tapgemm"  # small-maps up to 16x16
    assert _auto(512, 512, 3, 1, 1, 28, backward=True) == "winograd"
    # the README's benchmark table names the auto choice of each layer: check every row
    readme = open(os.path.join(os.path.dirname(__file__), "..", "README.md"),
                  encoding="utf-8").read()
    rows = re.findall(r"^\| [^|]*\((\d+), (\d+)(?:→(\d+))?(?:, groups (\d+))?, (\d+)"
                      r"(?:, (\d+), (\d+), (\d+))?\) \| ([a-z0-9/ ]+) \|", readme, re.M)
    assert len(rows) == 12
    for _, C, F, groups, H, k, s, p, algos in rows:
        C, H = int(C), int(H)
        F, groups = int(F or C), int(groups or 1)
        k, s, p = (int(k), int(s), int(p)) if k else (3, 1, 1)
        fwd, _, bwd = algos.partition(" / ")
        assert _auto(C, F, k, s, p, H, groups) == fwd, (C, F, k, s, H)
        assert _auto(C, F, k, s, p, H, groups, backward=True) == (bwd or fwd), (C, F, k, s, H)


# --------------------------------------------------------------------------- README snippets
def test_readme_training_snippet_runs_without_fashion_mnist(tmp_path, monkeypatch):
    import re

    readme = open(os.path.join(os.path.dirname(__file__), "..", "README.md"),
                  encoding="utf-8").read()
    section = readme[readme.index("## Training"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert "epochs=10" in code and "load_digits" in code

    def absent(*args, **kwargs):
        raise FileNotFoundError("no Fashion-MNIST here")

    monkeypatch.setattr(nc.data, "load_fashion_mnist", absent)
    monkeypatch.chdir(tmp_path)
    scope = {}
    exec(compile(code.replace("epochs=10", "epochs=1"), "README.md", "exec"), scope)
    assert len(scope["x"]) == len(nc.data.load_digits("train")[0])  # the fallback was taken
    assert (tmp_path / "lenet5.h5").exists() and (tmp_path / "curves.png").exists()
    assert type(nc.load(tmp_path / "lenet5.h5")).__name__ == "Sequential"


def test_maxpool2d_takes_torch_arguments_in_torch_order():
    # torch.nn.MaxPool2d(kernel_size, stride, padding, dilation, return_indices, ceil_mode)
    x = np.random.default_rng(0).standard_normal((2, 3, 7, 7))
    ours = nn.MaxPool2d(3, 2, 1, 1, True, True)
    theirs = tnn.MaxPool2d(3, 2, 1, 1, True, True)
    y, idx = ours(x)
    ty, tidx = theirs(torch.tensor(x))
    np.testing.assert_array_equal(y, ty.numpy())
    np.testing.assert_array_equal(idx, tidx.numpy())


def test_dropout_backward_after_a_no_grad_training_forward_raises():
    drop = nn.Dropout(0.5, rng=0)
    with nc.no_grad():
        drop(np.ones((4, 4)))
    with pytest.raises(RuntimeError, match="without a cached forward pass"):
        drop.backward(np.ones((4, 4)))
    drop.eval()
    drop(np.ones((4, 4)))
    np.testing.assert_array_equal(drop.backward(np.full((4, 4), 2.0)), np.full((4, 4), 2.0))


def test_sequential_slicing_append_extend_insert_follow_torch():
    ours = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    theirs = tnn.Sequential(tnn.Linear(2, 3), tnn.ReLU(), tnn.Linear(3, 1))
    assert type(ours[1:3]) is nn.Sequential
    assert list(ours[1:3]._children) == list(theirs[1:3]._modules) == ["1", "2"]
    for seq, lib in ((ours, nn), (theirs, tnn)):
        seq.append(lib.ReLU())
        seq.insert(-1, lib.Identity())
        seq.insert(0, lib.Identity())
        seq.extend([lib.Tanh()])
    assert [type(m).__name__ for m in ours] == [type(m).__name__ for m in theirs]
    assert list(ours._children) == list(theirs._modules)
    with pytest.raises(IndexError, match="index"):
        ours.insert(99, nn.ReLU())


def test_no_grad_and_enable_grad_decorate_with_or_without_parentheses():
    @nc.no_grad
    def bare():
        return nc.nn.is_grad_enabled()

    @nc.no_grad()
    def called():
        return nc.nn.is_grad_enabled()

    @nc.enable_grad
    def back_on():
        return nc.nn.is_grad_enabled()

    assert bare() is False and called() is False and nc.nn.is_grad_enabled() is True
    with nc.no_grad():
        assert back_on() is True and nc.nn.is_grad_enabled() is False
    with pytest.raises(TypeError, match="function to decorate"):
        nc.no_grad(3)


def test_a_one_input_add_is_refused():
    with pytest.raises(ValueError, match="at least 2 inputs"):
        nn.Add()(np.ones(3))


def test_a_layer_error_says_which_sub_module_raised_it():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(4, 3)
            self.block = nn.Sequential(nn.Linear(3, 2), nn.Linear(5, 1))

        def forward(self, x):
            return self.block(self.fc1(x))

    with pytest.raises(ValueError, match="in_features=4") as e:
        Net()(np.ones((2, 5), np.float32))
    assert e.value.__notes__ == ["(in Net.fc1, a Linear)"]
    with pytest.raises(ValueError, match="in_features=5") as e:
        Net()(np.ones((2, 4), np.float32))
    assert e.value.__notes__ == ["(in Net.block.1, a Linear)"]
    with pytest.raises(ValueError) as e:  # called on its own: the message is enough
        nn.Linear(4, 3)(np.ones((2, 5), np.float32))
    assert not getattr(e.value, "__notes__", [])

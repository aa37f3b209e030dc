"""The model zoo: layouts and parameter counts from the layer formulas, forward/backward on
28x28, 32x32 and 224x224 inputs, architecture round trips, and float64 finite-difference
checks of the Inception and ResNet blocks exactly as the models build them."""

import json

import numpy as np
import pytest
from gradcheck import directional_check

import nbconv as nc
from nbconv import models, nn


@pytest.fixture(autouse=True)
def _seed():
    nn.manual_seed(1234)


def conv_params(cin, cout, k, bias=True):
    return cout * cin * k * k + (cout if bias else 0)


def fc_params(i, o):
    return i * o + o


def bn_params(c):
    return 2 * c


def n_params(model):
    return sum(p.data.size for p in model.parameters())


def types(seq):
    return [type(m).__name__ for m in seq]


# -- LeNet ----------------------------------------------------------------------------------------
LENET_ACTS = {"sigmoid": "Sigmoid", "relu": "ReLU", "tanh": "Tanh", "leaky_relu": "LeakyReLU"}


@pytest.mark.parametrize("activation", sorted(LENET_ACTS))
@pytest.mark.parametrize("pool", ["max", "avg"])
def test_lenet5_layout(activation, pool):
    net = models.lenet5(activation=activation, pool=pool)
    a = LENET_ACTS[activation]
    p = "MaxPool2d" if pool == "max" else "AvgPool2d"
    assert types(net) == ["Conv2d", a, p, "Conv2d", a, p, "Flatten",
                          "Linear", a, "Linear", a, "Linear"]
    assert net[2]._config["kernel_size"] == 2 and net[2]._config["stride"] == 2
    if activation == "leaky_relu":
        assert net[1]._config["negative_slope"] == pytest.approx(0.01)


@pytest.mark.parametrize("padding, flat", [(0, 16 * 4 * 4), (2, 16 * 5 * 5)])
def test_lenet5_parameters(padding, flat):
    # conv: 28 + 2p - 4 -> pool /2 -> conv -4 -> pool /2: p=0: 24,12,8,4; p=2: 28,14,10,5
    side = ((28 + 2 * padding - 4) // 2 - 4) // 2
    assert 16 * side * side == flat
    net = models.lenet5(padding=padding)
    expected = (conv_params(1, 6, 5) + conv_params(6, 16, 5) + fc_params(flat, 120)
                + fc_params(120, 84) + fc_params(84, 10))
    assert n_params(net) == expected
    if padding == 0:
        assert expected == 44426  # the figure quoted for the seeds' LeNet
    sd = net.state_dict()
    assert list(sd) == ["0.weight", "0.bias", "3.weight", "3.bias", "7.weight", "7.bias",
                        "9.weight", "9.bias", "11.weight", "11.bias"]
    shapes = {k: v.shape for k, v in sd.items()}
    assert shapes["0.weight"] == (6, 1, 5, 5) and shapes["3.weight"] == (16, 6, 5, 5)
    assert shapes["7.weight"] == (120, flat) and shapes["9.weight"] == (84, 120)
    assert shapes["11.weight"] == (10, 84) and shapes["11.bias"] == (10,)
    assert net[0]._config["padding"] == padding


def test_lenet5_options():
    net = models.lenet5(num_classes=3, in_channels=2)
    assert net[0].weight.data.shape == (6, 2, 5, 5) and net[11].weight.data.shape == (3, 84)
    assert models.lenet5(input_size=32)[7].weight.data.shape == (120, 400)


@pytest.mark.parametrize("bad", ["softmax", "ReLU", None, 3])
def test_lenet5_bad_activation(bad):
    with pytest.raises(ValueError, match="'activation'"):
        models.lenet5(activation=bad)


def test_lenet5_bad_arguments():
    with pytest.raises(ValueError, match="'pool'"):
        models.lenet5(pool="min")
    with pytest.raises(ValueError, match="'input_size'"):
        models.lenet5(input_size=12)
    with pytest.raises(ValueError, match="'num_classes'"):
        models.lenet5(num_classes=0)


@pytest.mark.parametrize("padding", [0, 2])
def test_lenet5_forward_backward(padding):
    net = models.lenet5(padding=padding, activation="relu", pool="avg")
    x = np.random.default_rng(0).standard_normal((3, 1, 28, 28)).astype(np.float32)
    y = net(x)
    assert y.shape == (3, 10) and y.dtype == np.float32
    dx = net.backward(np.ones_like(y))
    assert dx.shape == x.shape and dx.dtype == np.float32
    assert all(np.any(p.grad) for p in net.parameters())


@pytest.mark.parametrize("activation, pool, padding", [("sigmoid", "max", 0), ("tanh", "avg", 2)])
def test_lenet5_matches_torch(activation, pool, padding):
    """Same state dict in an equivalent torch.nn.Sequential: same logits and gradients (float32,
    so the float64 compile set stays small; the blocks below are checked in float64)."""
    torch = pytest.importorskip("torch")
    tnn = torch.nn
    flat = 400 if padding else 256
    nc.manual_seed(0)  # weights independent of which tests ran before in this process
    net = models.lenet5(activation=activation, pool=pool, padding=padding)
    act = {"sigmoid": tnn.Sigmoid, "tanh": tnn.Tanh}[activation]
    tp = tnn.MaxPool2d if pool == "max" else tnn.AvgPool2d
    ref = tnn.Sequential(
        tnn.Conv2d(1, 6, 5, padding=padding), act(), tp(2, 2), tnn.Conv2d(6, 16, 5), act(),
        tp(2, 2), tnn.Flatten(), tnn.Linear(flat, 120), act(), tnn.Linear(120, 84), act(),
        tnn.Linear(84, 10))
    ref.load_state_dict({k: torch.from_numpy(v) for k, v in net.state_dict().items()})
    x = np.random.default_rng(1).standard_normal((2, 1, 28, 28)).astype(np.float32)
    xt = torch.from_numpy(x).requires_grad_()
    yt = ref(xt)
    dy = np.random.default_rng(2).standard_normal((2, 10)).astype(np.float32)
    yt.backward(torch.from_numpy(dy))
    want = yt.detach().numpy()  # float32 sums over 400 terms: errors relative to the logits
    np.testing.assert_allclose(net(x), want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    dx = net.backward(dy)
    scale = np.abs(xt.grad.numpy()).max()
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-4, atol=1e-5 * scale)
    gw = ref[7].weight.grad.numpy()
    np.testing.assert_allclose(net[7].weight.grad, gw, rtol=1e-4, atol=1e-5 * np.abs(gw).max())


# -- SimpleConvNet -------------------------------------------------------------------------------
def test_simple_convnet_defaults():
    net = models.simple_convnet(rng=0)
    assert types(net) == ["Conv2d", "ReLU", "MaxPool2d", "Flatten", "Linear", "ReLU", "Linear"]
    # DLFS: conv_output = (28 - 5 + 0) / 1 + 1 = 24; pool -> 12; 30 * 12 * 12
    assert net[0].weight.data.shape == (30, 1, 5, 5)
    assert net[4].weight.data.shape == (100, 30 * 12 * 12)
    assert net[6].weight.data.shape == (10, 100)
    assert net[2]._config["kernel_size"] == 2 and net[2]._config["stride"] == 2
    y = net(np.random.default_rng(0).random((2, 1, 28, 28), dtype=np.float32))
    assert y.shape == (2, 10) and y.dtype == np.float32


def test_simple_convnet_conv_param():
    net = models.simple_convnet(input_dim=(3, 16, 21), conv_param=dict(
        filter_num=8, filter_size=3, stride=2, pad=1), hidden_size=7, output_size=4, rng=1)
    oh, ow = (16 + 2 - 3) // 2 + 1, (21 + 2 - 3) // 2 + 1  # 8, 11 -> pooled 4, 5
    assert net[0].weight.data.shape == (8, 3, 3, 3)
    assert net[0]._config["stride"] == 2 and net[0]._config["padding"] == 1
    assert net[4].weight.data.shape == (7, 8 * (oh // 2) * (ow // 2))
    x = np.random.default_rng(0).random((2, 3, 16, 21), dtype=np.float32)
    y = net(x)
    assert y.shape == (2, 4)
    assert net.backward(np.ones_like(y)).shape == x.shape
    # a partial conv_param keeps the other defaults
    assert models.simple_convnet(conv_param={"filter_num": 5}, rng=0)[4].weight.data.shape == (
        100, 5 * 12 * 12)


def test_simple_convnet_init_statistics():
    std = 0.05
    net = models.simple_convnet(weight_init_std=std, rng=3)
    w = net[4].weight.data.astype(np.float64)  # 432,000 draws
    assert abs(w.mean()) < 4 * std / np.sqrt(w.size)
    assert w.std() == pytest.approx(std, rel=0.01)
    for layer in (net[0], net[6]):
        assert layer.weight.data.std() == pytest.approx(std, rel=0.15)
    for layer in (net[0], net[4], net[6]):
        assert not np.any(layer.bias.data)
    # reproducible from the rng argument and from the library seed
    again = models.simple_convnet(weight_init_std=std, rng=3)
    np.testing.assert_array_equal(again[4].weight.data, net[4].weight.data)
    assert not np.array_equal(models.simple_convnet(rng=4)[0].weight.data,
                              models.simple_convnet(rng=5)[0].weight.data)
    nn.manual_seed(7)
    a = models.simple_convnet()
    nn.manual_seed(7)
    b = models.simple_convnet()
    np.testing.assert_array_equal(a[0].weight.data, b[0].weight.data)


def test_simple_convnet_bad_arguments():
    with pytest.raises(ValueError, match="conv_param"):
        models.simple_convnet(conv_param={"filters": 3})
    with pytest.raises(ValueError, match="input_dim"):
        models.simple_convnet(input_dim=(1, 4, 4))
    with pytest.raises(ValueError, match="input_dim"):
        models.simple_convnet(input_dim=(28, 28))


# -- the zoo ---------------------------------------------------------------------------------------
W = 1 / 16
ZOO = {
    "alexnet": lambda: models.alexnet(num_classes=7, in_channels=3, width_mult=W),
    "vgg11": lambda: models.vgg11(num_classes=7, in_channels=3, width_mult=W),
    "nin": lambda: models.nin(num_classes=7, in_channels=3, width_mult=W),
    "googlenet": lambda: models.googlenet(num_classes=7, in_channels=3, width_mult=W),
    "resnet18": lambda: models.resnet18(num_classes=7, in_channels=3, width_mult=W),
}


@pytest.mark.parametrize("name", sorted(ZOO))
@pytest.mark.parametrize("size", [28, 32])
def test_zoo_forward_backward(name, size):
    net = ZOO[name]()
    x = np.random.default_rng(size).standard_normal((2, 3, size, size)).astype(np.float32)
    y = net(x)
    assert y.shape == (2, 7) and y.dtype == np.float32 and np.all(np.isfinite(y))
    net.zero_grad()
    dx = net.backward(np.random.default_rng(0).standard_normal(y.shape).astype(np.float32))
    assert dx.shape == x.shape and dx.dtype == np.float32 and np.any(dx)
    params = dict(net.named_parameters())
    assert all(np.all(np.isfinite(p.grad)) for p in params.values())
    nonzero = {k for k, p in params.items() if np.any(p.grad)}
    first, last = next(iter(params)), list(params)[-1]
    assert {first, last} <= nonzero
    if name == "googlenet":
        # At width 1/16 some Inception branches have a single channel after a ReLU, which can
        # be dead for the whole batch: their gradients are then exactly zero.
        assert len(nonzero) >= 0.75 * len(params)
    else:
        assert nonzero == set(params)


def test_zoo_224_input():
    net = models.alexnet(num_classes=5, width_mult=W)
    y = net(np.random.default_rng(0).standard_normal((1, 1, 224, 224)).astype(np.float32))
    assert y.shape == (1, 5)
    assert net.backward(np.ones_like(y)).shape == (1, 1, 224, 224)


ROUND_TRIP = {
    **ZOO,
    "alexnet_lrn": lambda: models.alexnet(num_classes=7, in_channels=3, lrn=True, width_mult=W),
    "lenet5": lambda: models.lenet5(in_channels=3, activation="leaky_relu"),
    "simple_convnet": lambda: models.simple_convnet(input_dim=(3, 28, 28), rng=0),
}


@pytest.mark.parametrize("name", sorted(ROUND_TRIP))
def test_config_round_trip(name):
    net = ROUND_TRIP[name]()
    cfg = nn.to_config(net)
    rebuilt = nn.from_config(json.loads(json.dumps(cfg)))
    a, b = net.state_dict(), rebuilt.state_dict()
    assert list(a) == list(b)
    assert {k: v.shape for k, v in a.items()} == {k: v.shape for k, v in b.items()}
    assert nn.to_config(rebuilt) == cfg
    if name == "alexnet_lrn":
        return  # no forward: keeps the local-response-norm kernels out of this file's compiles
    rebuilt.load_state_dict(a)
    net.eval()
    rebuilt.eval()
    x = np.random.default_rng(0).standard_normal((1, 3, 28, 28)).astype(np.float32)
    with nn.no_grad():
        np.testing.assert_array_equal(net(x), rebuilt(x))  # consistency, nbconv vs nbconv


def test_zoo_eval_is_deterministic():
    net = models.alexnet(width_mult=W).eval()  # dropout off
    x = np.random.default_rng(0).standard_normal((2, 1, 32, 32)).astype(np.float32)
    with nn.no_grad():
        np.testing.assert_array_equal(net(x), net(x))


def test_alexnet_layout():
    net = models.alexnet(width_mult=W, lrn=True)
    t = types(net)
    assert t[:4] == ["Conv2d", "ReLU", "LocalResponseNorm", "MaxPool2d"]
    assert t[4:8] == ["Conv2d", "ReLU", "LocalResponseNorm", "MaxPool2d"]
    assert t[-10:] == ["MaxPool2d", "AdaptiveAvgPool2d", "Flatten", "Linear", "ReLU", "Dropout",
                       "Linear", "ReLU", "Dropout", "Linear"]
    assert net[-9]._config["output_size"] == [5, 5]
    assert t.count("Conv2d") == 5 and t.count("Linear") == 3 and t.count("Dropout") == 2
    assert "LocalResponseNorm" not in types(models.alexnet(width_mult=W))
    c = [6, 16, 24, 24, 16]  # round(96/16), round(256/16), ...
    expected = (conv_params(1, c[0], 11) + conv_params(c[0], c[1], 5) + conv_params(c[1], c[2], 3)
                + conv_params(c[2], c[3], 3) + conv_params(c[3], c[4], 3)
                + fc_params(c[4] * 5 * 5, 256) + fc_params(256, 256) + fc_params(256, 10))
    assert n_params(net) == expected


def test_vgg11_layout():
    net = models.vgg11(width_mult=W)
    blocks = list(net)[:5]
    assert [types(b).count("Conv2d") for b in blocks] == [1, 1, 2, 2, 2]
    assert all(types(b)[-1] == "MaxPool2d" for b in blocks)
    chans = [4, 8, 16, 16, 32, 32, 32, 32]  # VGG-11's 8 convs at 1/16 width
    ins = [1] + chans[:-1]
    expected = sum(conv_params(i, o, 3) for i, o in zip(ins, chans))
    expected += fc_params(32 * 7 * 7, 256) + fc_params(256, 256) + fc_params(256, 10)
    assert n_params(net) == expected


def test_nin_layout():
    net = models.nin(num_classes=10, width_mult=W)
    assert types(net) == ["Sequential", "MaxPool2d", "Sequential", "MaxPool2d", "Sequential",
                          "MaxPool2d", "Dropout", "Sequential", "AdaptiveAvgPool2d", "Flatten"]
    assert net[7][4].weight.data.shape == (10, 10, 1, 1)
    assert sum("Linear" in k for k in types(net)) == 0


def test_googlenet_full_channels():
    """The Inception input channels and classifier width are d2l's (full width)."""
    net = models.googlenet(num_classes=10)
    incs = [m for b in list(net)[2:5] for m in b if isinstance(m, nn.Graph)]
    ins = [dict(blk.named_parameters())["p1_1.weight"].data.shape[1] for blk in incs]
    assert ins == [192, 256, 480, 512, 512, 512, 528, 832, 832]
    assert net[5].weight.data.shape == (10, 1024)


def test_resnet18_matches_torchvision_parameter_count():
    # torchvision.models.resnet18() (3 input channels, 1000 classes) has 11,689,512 parameters
    net = models.resnet18(num_classes=1000, in_channels=3)
    assert n_params(net) == 11_689_512
    c = [64, 128, 256, 512]
    expected = conv_params(3, 64, 7, bias=False) + bn_params(64)
    cin = 64
    for i, co in enumerate(c):
        for j in range(2):
            ci = cin if j == 0 else co
            expected += conv_params(ci, co, 3, False) + conv_params(co, co, 3, False)
            expected += 2 * bn_params(co)
            if j == 0 and i > 0:
                expected += conv_params(ci, co, 1, False) + bn_params(co)
        cin = co
    expected += fc_params(512, 1000)
    assert n_params(net) == expected
    assert "1.0.conv1.weight" in net.state_dict() and "2.0.downsample.1.running_var" in \
        net.state_dict()


@pytest.mark.parametrize("factory, bad", [(models.alexnet, dict(width_mult=0)),
                                          (models.vgg11, dict(width_mult=-1.0)),
                                          (models.resnet18, dict(num_classes=0)),
                                          (models.googlenet, dict(in_channels=0))])
def test_zoo_bad_arguments(factory, bad):
    with pytest.raises(ValueError, match=f"'{next(iter(bad))}'"):
        factory(**bad)


# -- blocks: float64 finite differences ------------------------------------------------------------
def _block_gradcheck(block, x_shape, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape)
    y = block(x)
    dy = rng.standard_normal(y.shape)
    block.zero_grad()
    dx = block.backward(dy)
    assert dx.shape == x.shape
    p = block.parameters()[0]  # the first convolution's weight
    gp, w0 = p.grad.copy(), p.data.copy()

    def f(xv, wv):
        p.data[...] = wv
        return block(xv)

    directional_check(f, [x, w0], dy, [dx, gp])
    p.data[...] = w0


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("cin, cout, stride", [(3, 3, 1), (2, 4, 2)])
def test_basic_block_gradcheck(cin, cout, stride, train):
    block = models.basic_block(cin, cout, stride=stride).astype(np.float64)
    rng = np.random.default_rng(5)
    for _, m in block.named_modules():  # non-trivial affine parameters and running stats
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data[...] = rng.uniform(0.5, 1.5, m.weight.data.shape)
            m.bias.data[...] = rng.uniform(-0.5, 0.5, m.bias.data.shape)
            m._buffers["running_mean"][...] = rng.uniform(-0.3, 0.3, cout)
            m._buffers["running_var"][...] = rng.uniform(0.5, 2.0, cout)
    # training mode normalises with batch statistics (the running-stat updates of the extra
    # forward passes do not change the output); eval mode with the running statistics
    block.train(train)
    assert {n for n, _, _ in block.nodes} >= {"conv1", "bn1", "conv2", "bn2", "add"}
    assert ("downsample" in {n for n, _, _ in block.nodes}) == (stride != 1 or cin != cout)
    _block_gradcheck(block, (2, cin, 7, 6), seed=stride)


def test_inception_block_gradcheck():
    block = models.inception_block(3, 2, (2, 3), (2, 2), 2).astype(np.float64)
    _block_gradcheck(block, (2, 3, 6, 5), seed=3)
    assert block(np.zeros((1, 3, 6, 5))).shape == (1, 2 + 3 + 2 + 2, 6, 5)


def test_blocks_match_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 6, 7))
    xt = torch.from_numpy(x)

    blk = models.inception_block(3, 2, (2, 3), (1, 2), 2).astype(np.float64)
    w = {k: torch.from_numpy(v) for k, v in blk.state_dict().items()}

    def conv(name, t, pad=0):
        return F.conv2d(t, w[f"{name}.weight"], w[f"{name}.bias"], padding=pad)

    p1 = F.relu(conv("p1_1", xt))
    p2 = F.relu(conv("p2_2", F.relu(conv("p2_1", xt)), 1))
    p3 = F.relu(conv("p3_2", F.relu(conv("p3_1", xt)), 2))
    p4 = F.relu(conv("p4_2", F.max_pool2d(xt, 3, 1, 1)))
    np.testing.assert_allclose(blk(x), torch.cat([p1, p2, p3, p4], 1).numpy(),
                               rtol=1e-10, atol=1e-12)

    res = models.basic_block(3, 4, stride=2).astype(np.float64)
    w = {k: torch.from_numpy(v) for k, v in res.state_dict().items()}

    def bn(name, t):
        return F.batch_norm(t, w[f"{name}.running_mean"].clone(), w[f"{name}.running_var"].clone(),
                            w[f"{name}.weight"], w[f"{name}.bias"], training=True)

    h = F.relu(bn("bn1", F.conv2d(xt, w["conv1.weight"], stride=2, padding=1)))
    h = bn("bn2", F.conv2d(h, w["conv2.weight"], padding=1))
    s = bn("downsample.1", F.conv2d(xt, w["downsample.0.weight"], stride=2))
    np.testing.assert_allclose(res(x), F.relu(h + s).numpy(), rtol=1e-9, atol=1e-12)


def test_basic_block_identity_requires_matching_shapes():
    with pytest.raises(ValueError, match="use_1x1conv"):
        models.basic_block(2, 4, stride=1, use_1x1conv=False)
    blk = models.basic_block(2, 2, use_1x1conv=True)
    assert "downsample" in {n for n, _, _ in blk.nodes}


# -- the seeds' Net and ZFNet ----------------------------------------------------------------------
def test_seed_net_matches_torch():
    """The seed-004 ``Net`` written out in PyTorch takes our state dict as it is (same keys)
    and gives the same logits, input gradient and weight gradient."""
    torch = pytest.importorskip("torch")
    tnn = torch.nn

    class Net(tnn.Module):  # seed 004, verbatim up to formatting
        def __init__(self):
            super().__init__()
            self.conv1 = tnn.Sequential(tnn.Conv2d(1, 10, kernel_size=5), tnn.ReLU(),
                                        tnn.MaxPool2d(kernel_size=2))
            self.conv2 = tnn.Sequential(tnn.Conv2d(10, 20, kernel_size=5), tnn.ReLU(),
                                        tnn.MaxPool2d(kernel_size=2))
            self.fc = tnn.Sequential(tnn.Linear(320, 50), tnn.Linear(50, 10))

        def forward(self, x):
            x = self.conv2(self.conv1(x))
            return self.fc(x.view(x.size(0), -1))

    ref = Net()
    net = models.seed_net()
    sd = net.state_dict()
    assert list(sd) == list(ref.state_dict())
    assert n_params(net) == conv_params(1, 10, 5) + conv_params(10, 20, 5) + fc_params(
        320, 50) + fc_params(50, 10) == sum(p.numel() for p in ref.parameters())
    ref.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})
    x = np.random.default_rng(3).standard_normal((3, 1, 28, 28)).astype(np.float32)
    dy = np.random.default_rng(4).standard_normal((3, 10)).astype(np.float32)
    xt = torch.from_numpy(x).requires_grad_()
    yt = ref(xt)
    yt.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(net(x), yt.detach().numpy(), rtol=1e-5, atol=1e-5)
    dx = net.backward(dy)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-4,
                               atol=1e-5 * np.abs(xt.grad.numpy()).max())
    gw = ref.conv1[0].weight.grad.numpy()
    np.testing.assert_allclose(dict(net.named_parameters())["conv1.0.weight"].grad, gw,
                               rtol=1e-4, atol=1e-5 * np.abs(gw).max())


def test_seed_net_options():
    net = models.seed_net(num_classes=4, in_channels=3, hidden_activation="relu")
    assert list(net.state_dict())[-4:] == ["fc.0.weight", "fc.0.bias", "fc.2.weight",
                                           "fc.2.bias"]
    assert net.state_dict()["conv1.0.weight"].shape == (10, 3, 5, 5)
    x = np.random.default_rng(0).standard_normal((2, 3, 28, 28)).astype(np.float32)
    y = net(x)
    assert y.shape == (2, 4)
    assert net.backward(np.ones_like(y)).shape == x.shape
    with pytest.raises(ValueError, match="'hidden_activation'"):
        models.seed_net(hidden_activation="softmax")
    with pytest.raises(ValueError, match="'num_classes'"):
        models.seed_net(num_classes=0)


def test_zfnet_layout_and_paper_map_sizes():
    net = models.zfnet(width_mult=W, lrn=True)
    t = types(net)
    assert t[:4] == ["Conv2d", "ReLU", "LocalResponseNorm", "MaxPool2d"]
    assert t.count("Conv2d") == 5 and t.count("Linear") == 3 and t.count("Dropout") == 2
    c = [6, 16, 24, 24, 16]  # round(96/16), round(256/16), round(384/16), ...
    expected = (conv_params(1, c[0], 7) + conv_params(c[0], c[1], 5) + conv_params(c[1], c[2], 3)
                + conv_params(c[2], c[3], 3) + conv_params(c[3], c[4], 3)
                + fc_params(c[4] * 6 * 6, 256) + fc_params(256, 256) + fc_params(256, 10))
    assert n_params(net) == expected
    # Zeiler & Fergus, Fig. 3: 224 -> 110 (conv1) -> 55 (pool1) -> 26 (conv2) -> 13 (pool2,
    # conv3..5); then 6x6x256 into the first fully connected layer.
    net = models.zfnet(num_classes=5, width_mult=W).eval()
    x = np.random.default_rng(0).standard_normal((1, 1, 224, 224)).astype(np.float32)
    sizes = {}
    with nn.no_grad():
        for i, layer in enumerate(net):
            x = layer(x)
            sizes[i] = x.shape
    assert [sizes[i][-1] for i in (0, 2, 3, 5, 6, 8, 10)] == [110, 55, 26, 13, 13, 13, 13]
    assert sizes[13] == (1, 16, 6, 6) and sizes[21] == (1, 5)


@pytest.mark.parametrize("size", [21, 28, 32])
def test_zfnet_forward_backward(size):
    net = models.zfnet(num_classes=7, in_channels=3, width_mult=W)
    x = np.random.default_rng(size).standard_normal((2, 3, size, size)).astype(np.float32)
    y = net(x)
    assert y.shape == (2, 7) and y.dtype == np.float32 and np.all(np.isfinite(y))
    dx = net.backward(np.random.default_rng(1).standard_normal(y.shape).astype(np.float32))
    assert dx.shape == x.shape and np.any(dx)
    assert all(np.any(p.grad) for p in net.parameters())
    with pytest.raises(ValueError):
        models.zfnet(width_mult=W)(np.zeros((1, 1, 20, 20), np.float32))  # below 21x21


@pytest.mark.parametrize("name", ["seed_net", "zfnet"])
def test_seed_models_save_load(name, tmp_path):
    import nbconv as nc

    net = (models.seed_net() if name == "seed_net"
           else models.zfnet(num_classes=3, width_mult=W, lrn=True))
    path = tmp_path / f"{name}.h5"
    nc.save(net, path)
    back = nc.load(path)
    assert type(back) is type(net) and nn.to_config(back) == nn.to_config(net)
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(back.state_dict()[k], v)
    if name == "seed_net":  # (no forward for zfnet: keeps the LRN kernels out of this file)
        x = np.random.default_rng(0).standard_normal((2, 1, 28, 28)).astype(np.float32)
        with nn.no_grad():
            np.testing.assert_array_equal(back.eval()(x), net.eval()(x))

"""The classic CNNs of the seeds, as pure compositions of :mod:`nbconv.nn` layers.

Every model is built only from ``Sequential``, ``Graph`` and registered layers, so
:func:`nbconv.nn.to_config` describes it and a model file rebuilds it without running any code
from the file.  State-dict keys are the ones PyTorch gives the same ``nn.Sequential`` nesting
(``"0.weight"``, ``"1.0.conv1.weight"``, ...).

============================  =====================================================  ==========
model                         follows                                                input H, W
============================  =====================================================  ==========
:func:`lenet5`                the seeds' LeNet (d2l), 28x28                          28 (fixed)
:func:`simple_convnet`        DLFS ``SimpleConvNet`` (seed 003)                      ``input_dim``
:func:`seed_net`              the seeds' small ``Net`` (seed 004), keys as PyTorch's  28 (fixed)
:func:`alexnet`               d2l AlexNet, padded pools, ``AdaptiveAvgPool2d(5)``    >= 9
:func:`zfnet`                 Zeiler & Fergus 2013: AlexNet with a 7x7 stride-2 stem >= 21
:func:`vgg11`                 d2l VGG-11, ``ceil_mode`` pools, ``AdaptiveAvgPool2d(7)``  >= 17
:func:`nin`                   d2l NiN, padded pools                                  >= 11
:func:`googlenet`             d2l GoogLeNet (Inception v1 blocks as ``Graph``)       >= 1
:func:`resnet18`              d2l ResNet-18 (basic blocks as ``Graph``)              >= 1
============================  =====================================================  ==========

The zoo models (``alexnet``, ``zfnet`` ... ``resnet18``) end in an adaptive or global average
pool and a ``Flatten``, so their classifier does not depend on the input size: one model runs
on 28x28 (MNIST), 32x32 (CIFAR-10) and 224x224 (ImageNet) inputs.  Each takes ``width_mult``
(default 1, the real sizes) that scales every channel count and hidden fully-connected size,
rounded, at least 1 -- small values give fast toy versions of the same architecture.
"""

from __future__ import annotations

import math

import numpy as np

from . import nn

__all__ = [
    "lenet5", "seed_net", "simple_convnet", "alexnet", "zfnet", "vgg11", "nin", "googlenet",
    "resnet18",
    "vgg_block", "nin_block", "inception_block", "basic_block",
]

_ACTIVATIONS = {
    "sigmoid": nn.Sigmoid,
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "leaky_relu": nn.LeakyReLU,
}


# -- argument checks ----------------------------------------------------------------------------
def _pos_int(op: str, name: str, v, minimum: int = 1) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"{op}: argument '{name}' must be an int, got {v!r} ({type(v).__name__})")
    if v < minimum:
        raise ValueError(f"{op}: argument '{name}' must be >= {minimum}, got {v}")
    return int(v)


def _width(op: str, width_mult) -> float:
    try:
        w = float(width_mult)
    except (TypeError, ValueError):
        raise TypeError(
            f"{op}: argument 'width_mult' must be a number, got {width_mult!r}"
        ) from None
    if not (w > 0 and math.isfinite(w)):
        raise ValueError(
            f"{op}: argument 'width_mult' must be a positive number, got {width_mult!r}"
        )
    return w


def _ch(c: int, w: float) -> int:
    """Scaled channel count: ``round(c * w)``, at least 1."""
    return max(1, int(round(c * w)))


def _dropout_p(op: str, p) -> float:
    p = float(p)
    if not 0.0 <= p < 1.0:
        raise ValueError(f"{op}: argument 'dropout' must be in [0, 1), got {p!r}")
    return p


def _activation(op: str, activation):
    if not isinstance(activation, str) or activation not in _ACTIVATIONS:
        raise ValueError(
            f"{op}: argument 'activation' must be one of {sorted(_ACTIVATIONS)}, got {activation!r}"
        )
    return _ACTIVATIONS[activation]


# -- LeNet --------------------------------------------------------------------------------------
def lenet5(num_classes=10, activation="sigmoid", pool="max", padding=0, in_channels=1,
           input_size=28):
    """LeNet-5 as in the seeds (d2l / PyTorch ``nn.Sequential``), for 28x28 inputs.

    Layout (index: layer), with the feature-map size for a 28x28 input and ``padding=0``::

        0  Conv2d(in_channels, 6, 5, padding=padding)    (N, 6, 24, 24)
        1  act
        2  MaxPool2d(2, 2)  or AvgPool2d(2, 2)           (N, 6, 12, 12)
        3  Conv2d(6, 16, 5)                              (N, 16, 8, 8)
        4  act
        5  pool                                          (N, 16, 4, 4)
        6  Flatten                                       (N, 256)
        7  Linear(256, 120)        (400 with padding=2: 16*5*5, the classic layout)
        8  act
        9  Linear(120, 84)
        10 act
        11 Linear(84, num_classes)                       (N, num_classes) logits

    The ``padding=0`` model with 10 classes has 44,426 parameters (61,706 with ``padding=2``).

    Parameters
    ----------
    num_classes : int, default 10
    activation : {"sigmoid", "relu", "tanh", "leaky_relu"}, default "sigmoid"
        The seeds use sigmoid (LeCun's original used a scaled tanh); ``"leaky_relu"`` has slope
        0.01.
    pool : {"max", "avg"}, default "max"
        ``"avg"`` is the original subsampling layer (without its trainable scale and bias).
    padding : int, default 0
        Zero padding of the first convolution; 2 keeps the 28x28 map size (the classic
        32x32-equivalent layout with a 400-input first fully-connected layer).
    in_channels : int, default 1
    input_size : int, default 28
        Height and width of the (square) input; only sets the first Linear's input size
        (``16 * s * s`` with ``s = ((input_size + 2*padding - 4) // 2 - 4) // 2``).

    Returns
    -------
    nbconv.nn.Sequential
        Input (N, in_channels, input_size, input_size) -> logits (N, num_classes).

    Raises
    ------
    ValueError
        On an unknown ``activation`` or ``pool``, or sizes that leave no feature map.

    Examples
    --------
    >>> from nbconv.models import lenet5
    >>> net = lenet5()
    >>> [type(m).__name__ for m in net][:3], len(net)
    (['Conv2d', 'Sigmoid', 'MaxPool2d'], 12)
    >>> sum(p.data.size for p in net.parameters())
    44426
    >>> net[7].weight.data.shape, lenet5(padding=2)[7].weight.data.shape
    ((120, 256), (120, 400))
    """
    op = "lenet5"
    act = _activation(op, activation)
    if not isinstance(pool, str) or pool not in ("max", "avg"):
        raise ValueError(f"{op}: argument 'pool' must be 'max' or 'avg', got {pool!r}")
    num_classes = _pos_int(op, "num_classes", num_classes)
    in_channels = _pos_int(op, "in_channels", in_channels)
    padding = _pos_int(op, "padding", padding, 0)
    input_size = _pos_int(op, "input_size", input_size)
    s = ((input_size + 2 * padding - 4) // 2 - 4) // 2
    if s < 1:
        raise ValueError(
            f"{op}: argument 'input_size' {input_size} with padding={padding} is too small: the "
            f"feature map after the second pool would be {s}x{s}"
        )
    pool_cls = nn.MaxPool2d if pool == "max" else nn.AvgPool2d
    return nn.Sequential(
        nn.Conv2d(in_channels, 6, 5, padding=padding), act(), pool_cls(2, 2),
        nn.Conv2d(6, 16, 5), act(), pool_cls(2, 2),
        nn.Flatten(),
        nn.Linear(16 * s * s, 120), act(),
        nn.Linear(120, 84), act(),
        nn.Linear(84, num_classes),
    )


# -- the seeds' small Net -----------------------------------------------------------------------
def seed_net(num_classes=10, in_channels=1, hidden_activation=None):
    """The small ``Net`` of seed 004 (the PyTorch MNIST tutorial model), for 28x28 inputs.

    A :class:`nbconv.nn.Graph` whose nodes carry the seed's attribute names, so its state-dict
    keys are exactly those of the seed's ``torch.nn.Module`` (``conv1.0.weight``,
    ``conv2.0.bias``, ``fc.0.weight``, ``fc.1.weight``, ...) and a PyTorch state dict (as
    NumPy arrays) loads as it is::

        conv1    Sequential(Conv2d(in_channels, 10, 5), ReLU, MaxPool2d(2))   (N, 10, 12, 12)
        conv2    Sequential(Conv2d(10, 20, 5), ReLU, MaxPool2d(2))            (N, 20, 4, 4)
        flatten  Flatten                                                      (N, 320)
        fc       Sequential(Linear(320, 50), Linear(50, num_classes))         (N, num_classes)

    As in the seed there is no activation between the two Linear layers (``fc`` is then one
    linear map of rank <= 50); ``hidden_activation="relu"`` inserts one (key ``fc.1``, the
    last Linear becomes ``fc.2``).  21,840 parameters with the defaults.

    Parameters
    ----------
    num_classes : int, default 10
    in_channels : int, default 1
    hidden_activation : {None, "relu", "sigmoid", "tanh", "leaky_relu"}, default None

    Returns
    -------
    nbconv.nn.Graph
        Input (N, in_channels, 28, 28) -> logits (N, num_classes).

    Examples
    --------
    >>> from nbconv.models import seed_net
    >>> net = seed_net()
    >>> list(net.state_dict())[:3], sum(p.data.size for p in net.parameters())
    (['conv1.0.weight', 'conv1.0.bias', 'conv2.0.weight'], 21840)
    """
    op = "seed_net"
    num_classes = _pos_int(op, "num_classes", num_classes)
    in_channels = _pos_int(op, "in_channels", in_channels)
    if hidden_activation is not None and hidden_activation not in _ACTIVATIONS:
        raise ValueError(
            f"{op}: argument 'hidden_activation' must be None or one of {sorted(_ACTIVATIONS)}, "
            f"got {hidden_activation!r}")
    hidden = [] if hidden_activation is None else [_ACTIVATIONS[hidden_activation]()]
    g = nn.Graph()
    g.add("conv1", nn.Sequential(nn.Conv2d(in_channels, 10, 5), nn.ReLU(), nn.MaxPool2d(2)),
          "input")
    g.add("conv2", nn.Sequential(nn.Conv2d(10, 20, 5), nn.ReLU(), nn.MaxPool2d(2)), "conv1")
    g.add("flatten", nn.Flatten(), "conv2")
    g.add("fc", nn.Sequential(nn.Linear(320, 50), *hidden, nn.Linear(50, num_classes)),
          "flatten")
    return g


# -- DLFS SimpleConvNet -------------------------------------------------------------------------
def simple_convnet(input_dim=(1, 28, 28), conv_param=None, hidden_size=100, output_size=10,
                   weight_init_std=0.01, rng=None):
    """The one-convolution network of seed 003 ("Deep Learning from Scratch" ``SimpleConvNet``).

    Layout::

        0  Conv2d(C, filter_num, filter_size, stride, pad)   (N, FN, OH, OW)
        1  ReLU
        2  MaxPool2d(2, 2)                                   (N, FN, OH//2, OW//2)
        3  Flatten                                           (N, FN*(OH//2)*(OW//2))
        4  Linear(FN*(OH//2)*(OW//2), hidden_size)
        5  ReLU
        6  Linear(hidden_size, output_size)                  (N, output_size) scores

    with ``OH = (H + 2*pad - filter_size) // stride + 1`` (likewise OW).  For the defaults
    (28x28, 30 filters of 5x5) the flattened size is 30*12*12 = 4320.

    Initialisation is DLFS's, not PyTorch's: every weight is ``weight_init_std`` times a
    standard normal draw and every bias is zero.  The draws come in DLFS's order (conv weight
    ``W1``, then ``W2`` of shape (in, hidden), then ``W3`` of shape (hidden, out)); the Linear
    layers store the transposes, ``weight = W.T``.

    Parameters
    ----------
    input_dim : (int, int, int), default (1, 28, 28)
        ``(C, H, W)`` of one input.
    conv_param : dict, optional
        Keys ``filter_num`` (30), ``filter_size`` (5), ``stride`` (1), ``pad`` (0); missing
        keys take those defaults, unknown keys raise ValueError.
    hidden_size, output_size : int, default 100, 10
    weight_init_std : float, default 0.01
    rng : numpy.random.Generator or int, optional
        Source of the weights; defaults to the library generator (:func:`nbconv.manual_seed`).

    Returns
    -------
    nbconv.nn.Sequential

    Examples
    --------
    >>> from nbconv.models import simple_convnet
    >>> net = simple_convnet(rng=0)
    >>> net[0].weight.data.shape, net[4].weight.data.shape, net[6].weight.data.shape
    ((30, 1, 5, 5), (100, 4320), (10, 100))
    >>> float(abs(net[4].bias.data).max())
    0.0
    """
    op = "simple_convnet"
    try:
        C, H, W = (int(v) for v in input_dim)
    except (TypeError, ValueError):
        raise ValueError(
            f"{op}: argument 'input_dim' must be (C, H, W), got {input_dim!r}"
        ) from None
    for name, v in (("input_dim[0]", C), ("input_dim[1]", H), ("input_dim[2]", W)):
        _pos_int(op, name, v)
    cp = {"filter_num": 30, "filter_size": 5, "stride": 1, "pad": 0}
    if conv_param is not None:
        unknown = sorted(set(conv_param) - set(cp))
        if unknown:
            raise ValueError(
                f"{op}: argument 'conv_param' has unknown keys {unknown} (known: {sorted(cp)})"
            )
        cp.update(conv_param)
    fn = _pos_int(op, "conv_param['filter_num']", cp["filter_num"])
    fs = _pos_int(op, "conv_param['filter_size']", cp["filter_size"])
    st = _pos_int(op, "conv_param['stride']", cp["stride"])
    pad = _pos_int(op, "conv_param['pad']", cp["pad"], 0)
    hidden_size = _pos_int(op, "hidden_size", hidden_size)
    output_size = _pos_int(op, "output_size", output_size)
    std = float(weight_init_std)
    oh = (H + 2 * pad - fs) // st + 1
    ow = (W + 2 * pad - fs) // st + 1
    if oh < 2 or ow < 2:
        raise ValueError(
            f"{op}: argument 'input_dim' {(C, H, W)} is too small for conv_param {cp}: the "
            f"convolution output {(oh, ow)} must be at least 2x2 for the 2x2 pool"
        )
    flat = fn * (oh // 2) * (ow // 2)
    gen = nn.default_rng() if rng is None else np.random.default_rng(rng)
    init = np.random.default_rng(0)  # placeholder draws, overwritten below
    conv = nn.Conv2d(C, fn, fs, stride=st, padding=pad, rng=init)
    fc1 = nn.Linear(flat, hidden_size, rng=init)
    fc2 = nn.Linear(hidden_size, output_size, rng=init)
    conv.weight.data[...] = std * gen.standard_normal((fn, C, fs, fs))
    fc1.weight.data[...] = (std * gen.standard_normal((flat, hidden_size))).T
    fc2.weight.data[...] = (std * gen.standard_normal((hidden_size, output_size))).T
    for layer in (conv, fc1, fc2):
        layer.bias.data[...] = 0
    return nn.Sequential(conv, nn.ReLU(), nn.MaxPool2d(2, 2), nn.Flatten(),
                         fc1, nn.ReLU(), fc2)


# -- AlexNet ------------------------------------------------------------------------------------
def alexnet(num_classes=10, in_channels=1, lrn=False, dropout=0.5, width_mult=1.0):
    """AlexNet after d2l (seed 000 quotes the same layers), for any input of at least 9x9.

    Layout (``c = width_mult`` scaling; sizes for 224 / 32 / 28 inputs)::

        0  Conv2d(in_channels, 96c, 11, stride=4, padding=1)   54 / 6 / 5
        1  ReLU                        [+ LocalResponseNorm with lrn=True]
        2  MaxPool2d(3, 2, padding=1)                          27 / 3 / 3
        3  Conv2d(96c, 256c, 5, padding=2)
        4  ReLU                        [+ LocalResponseNorm with lrn=True]
        5  MaxPool2d(3, 2, padding=1)                          14 / 2 / 2
        6  Conv2d(256c, 384c, 3, padding=1), 7 ReLU
        8  Conv2d(384c, 384c, 3, padding=1), 9 ReLU
        10 Conv2d(384c, 256c, 3, padding=1), 11 ReLU
        12 MaxPool2d(3, 2, padding=1)                          7 / 1 / 1
        13 AdaptiveAvgPool2d((5, 5))                           5 / 5 / 5
        14 Flatten                                             256c*25 (6400 for c=1)
        15 Linear(6400c, 4096c), 16 ReLU, 17 Dropout(dropout)
        18 Linear(4096c, 4096c), 19 ReLU, 20 Dropout(dropout)
        21 Linear(4096c, num_classes)

    Differences from d2l, both so that one model runs on 28x28 as well as 224x224: the max
    pools have ``padding=1`` (d2l's unpadded 3x3 pools cannot run on the 2x2 maps a 28x28
    input leaves), and ``AdaptiveAvgPool2d((5, 5))`` (as torchvision's ``(6, 6)``) fixes the
    classifier input at d2l's 256*5*5 = 6400 for every input size (small maps are replicated).
    The smallest input is 9x9 (the first convolution's 11x11 kernel with padding 1).

    Parameters
    ----------
    num_classes : int, default 10
    in_channels : int, default 1
    lrn : bool, default False
        Insert ``LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2)`` after the first two
        ReLUs, as in the original paper (its alpha=1e-4 is PyTorch's 5e-4: PyTorch divides
        alpha by the window size).  Shifts the later layer indices by one and two.
    dropout : float, default 0.5
    width_mult : float, default 1.0

    Returns
    -------
    nbconv.nn.Sequential

    Examples
    --------
    >>> from nbconv.models import alexnet
    >>> net = alexnet(width_mult=1 / 16)
    >>> net[0].weight.data.shape, net[15].weight.data.shape
    ((6, 1, 11, 11), (256, 400))
    """
    return _alexnet_family("alexnet", num_classes, in_channels, lrn, dropout, width_mult,
                           conv1=dict(kernel_size=11, stride=4, padding=1),
                           conv2=dict(kernel_size=5, padding=2), pooled=5)


def _alexnet_family(op, num_classes, in_channels, lrn, dropout, width_mult, conv1, conv2,
                    pooled):
    """AlexNet's layout with the first two convolutions' ``kernel_size``/``stride``/``padding``
    given (``conv1``, ``conv2``) and the classifier fed ``pooled x pooled`` maps: AlexNet and
    ZFNet differ in nothing else."""
    num_classes = _pos_int(op, "num_classes", num_classes)
    in_channels = _pos_int(op, "in_channels", in_channels)
    w = _width(op, width_mult)
    p = _dropout_p(op, dropout)
    c1, c2, c3, c4, c5, h = (_ch(c, w) for c in (96, 256, 384, 384, 256, 4096))

    def norm():
        return [nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0)] if lrn else []

    return nn.Sequential(
        nn.Conv2d(in_channels, c1, **conv1), nn.ReLU(), *norm(),
        nn.MaxPool2d(3, 2, padding=1),
        nn.Conv2d(c1, c2, **conv2), nn.ReLU(), *norm(),
        nn.MaxPool2d(3, 2, padding=1),
        nn.Conv2d(c2, c3, 3, padding=1), nn.ReLU(),
        nn.Conv2d(c3, c4, 3, padding=1), nn.ReLU(),
        nn.Conv2d(c4, c5, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(3, 2, padding=1),
        nn.AdaptiveAvgPool2d((pooled, pooled)), nn.Flatten(),
        nn.Linear(c5 * pooled * pooled, h), nn.ReLU(), nn.Dropout(p),
        nn.Linear(h, h), nn.ReLU(), nn.Dropout(p),
        nn.Linear(h, num_classes),
    )


# -- ZFNet --------------------------------------------------------------------------------------
def zfnet(num_classes=10, in_channels=1, lrn=False, dropout=0.5, width_mult=1.0):
    """ZFNet (Zeiler & Fergus 2013): AlexNet with a 7x7 stride-2 first layer and a stride-2
    second layer, for any input of at least 21x21.

    Layout (``c = width_mult``; map sizes for 224 / 32 / 28 inputs)::

        0  Conv2d(in_channels, 96c, 7, stride=2, padding=1)   110 / 14 / 12
        1  ReLU                        [+ LocalResponseNorm with lrn=True]
        2  MaxPool2d(3, 2, padding=1)                          55 /  7 /  6
        3  Conv2d(96c, 256c, 5, stride=2)                      26 /  2 /  1
        4  ReLU                        [+ LocalResponseNorm with lrn=True]
        5  MaxPool2d(3, 2, padding=1)                          13 /  1 /  1
        6  Conv2d(256c, 384c, 3, padding=1), 7 ReLU
        8  Conv2d(384c, 384c, 3, padding=1), 9 ReLU
        10 Conv2d(384c, 256c, 3, padding=1), 11 ReLU           13 /  1 /  1
        12 MaxPool2d(3, 2, padding=1)                           7 /  1 /  1
        13 AdaptiveAvgPool2d((6, 6))                            6 /  6 /  6
        14 Flatten                                             256c*36 (9216 for c=1)
        15 Linear(9216c, 4096c), 16 ReLU, 17 Dropout(dropout)
        18 Linear(4096c, 4096c), 19 ReLU, 20 Dropout(dropout)
        21 Linear(4096c, num_classes)

    The channel counts are the paper's (96, 256, 384, 384, 256; its Fig. 3) and so are the
    maps of a 224x224 input up to the last pool (110, 55, 26, 13).  As in :func:`alexnet`,
    every max pool is padded so that 28x28 and 32x32 inputs survive, and an adaptive average
    pool fixes the classifier input at the paper's 256*6*6 = 9216 for every input size (at
    224x224 the padded last pool gives 7x7, which it averages to 6x6; the paper's unpadded
    pool gives 6x6 directly).  The unpadded stride-2 5x5 second convolution sets the smallest
    input, 21x21.  The paper's "contrast normalisation" is approximated by the optional
    ``LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2)`` of :func:`alexnet`.

    Parameters
    ----------
    num_classes : int, default 10
    in_channels : int, default 1
    lrn : bool, default False
        Insert the local response norms after the first two ReLUs (shifts the later indices
        by one and two).
    dropout : float, default 0.5
    width_mult : float, default 1.0

    Returns
    -------
    nbconv.nn.Sequential

    Examples
    --------
    >>> from nbconv.models import zfnet
    >>> net = zfnet(width_mult=1 / 16)
    >>> net[0].weight.data.shape, net[3]._config["stride"], net[15].weight.data.shape
    ((6, 1, 7, 7), 2, (256, 576))
    """
    return _alexnet_family("zfnet", num_classes, in_channels, lrn, dropout, width_mult,
                           conv1=dict(kernel_size=7, stride=2, padding=1),
                           conv2=dict(kernel_size=5, stride=2), pooled=6)


# -- VGG ----------------------------------------------------------------------------------------
def vgg_block(num_convs, in_channels, out_channels):
    """d2l's VGG block: ``num_convs`` x (3x3 conv, padding 1, ReLU), then a 2x2 max pool.

    The pool has ``ceil_mode=True`` (d2l: False; identical on even sizes), so odd maps such as
    7x7 halve to 4x4 instead of 3x3 and a 28x28 input survives VGG-11's five pools.

    Returns
    -------
    nbconv.nn.Sequential
        (N, in_channels, H, W) -> (N, out_channels, ceil(H/2), ceil(W/2)).
    """
    layers = []
    for _ in range(num_convs):
        layers += [nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.ReLU()]
        in_channels = out_channels
    layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
    return nn.Sequential(*layers)


def vgg11(num_classes=10, in_channels=1, dropout=0.5, width_mult=1.0):
    """VGG-11 after d2l: ``conv_arch = ((1, 64), (1, 128), (2, 256), (2, 512), (2, 512))``.

    Layout (``c = width_mult``; map sizes for 224 / 32 / 28 inputs)::

        0..4  vgg_block(n, ., ch) for (n, ch) in conv_arch*c   7 / 1 / 1
        5     AdaptiveAvgPool2d((7, 7))                        7 / 7 / 7
        6     Flatten                                          512c*49 (25088 for c=1)
        7     Linear(25088c, 4096c), 8 ReLU, 9 Dropout(dropout)
        10    Linear(4096c, 4096c), 11 ReLU, 12 Dropout(dropout)
        13    Linear(4096c, num_classes)

    The pools use ``ceil_mode=True`` (see :func:`vgg_block`) and the adaptive pool (as in
    torchvision) keeps d2l's 512*7*7 classifier input for every input size; inputs of at least
    17x17 work (28x28 halves to 14, 7, 4, 2, 1).  At 224x224 the model equals d2l's.

    Parameters
    ----------
    num_classes : int, default 10
    in_channels : int, default 1
    dropout : float, default 0.5
    width_mult : float, default 1.0

    Returns
    -------
    nbconv.nn.Sequential

    Examples
    --------
    >>> from nbconv.models import vgg11
    >>> net = vgg11(width_mult=1 / 16)
    >>> [len(b) for b in list(net)[:5]], net[7].weight.data.shape
    ([3, 3, 5, 5, 5], (256, 1568))
    """
    op = "vgg11"
    num_classes = _pos_int(op, "num_classes", num_classes)
    in_channels = _pos_int(op, "in_channels", in_channels)
    w = _width(op, width_mult)
    p = _dropout_p(op, dropout)
    blocks = []
    c = in_channels
    for n, out in ((1, 64), (1, 128), (2, 256), (2, 512), (2, 512)):
        blocks.append(vgg_block(n, c, _ch(out, w)))
        c = _ch(out, w)
    h = _ch(4096, w)
    return nn.Sequential(
        *blocks,
        nn.AdaptiveAvgPool2d((7, 7)), nn.Flatten(),
        nn.Linear(c * 49, h), nn.ReLU(), nn.Dropout(p),
        nn.Linear(h, h), nn.ReLU(), nn.Dropout(p),
        nn.Linear(h, num_classes),
    )


# -- NiN ----------------------------------------------------------------------------------------
def nin_block(in_channels, out_channels, kernel_size, stride, padding):
    """d2l's NiN block: a conv, then two 1x1 convs ("mlpconv"), each followed by ReLU.

    Returns
    -------
    nbconv.nn.Sequential
        Keys ``0`` (the k x k conv), ``2`` and ``4`` (the 1x1 convs).
    """
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding),
        nn.ReLU(),
        nn.Conv2d(out_channels, out_channels, 1), nn.ReLU(),
        nn.Conv2d(out_channels, out_channels, 1), nn.ReLU(),
    )


def nin(num_classes=10, in_channels=1, dropout=0.5, width_mult=1.0):
    """Network in Network after d2l: NiN blocks, no fully-connected layer, global average pool.

    Layout (``c = width_mult``; map sizes for 224 / 32 / 28 inputs)::

        0 nin_block(in_channels, 96c, 11, stride 4, padding 0)     54 / 6 / 5
        1 MaxPool2d(3, 2, padding=1)                               27 / 3 / 3
        2 nin_block(96c, 256c, 5, 1, 2)
        3 MaxPool2d(3, 2, padding=1)                               14 / 2 / 2
        4 nin_block(256c, 384c, 3, 1, 1)
        5 MaxPool2d(3, 2, padding=1)                                7 / 1 / 1
        6 Dropout(dropout)
        7 nin_block(384c, num_classes, 3, 1, 1)   (its last ReLU included, as in d2l)
        8 AdaptiveAvgPool2d((1, 1))
        9 Flatten                                                  (N, num_classes)

    The pools have ``padding=1`` (d2l: 0) so that 28x28 inputs work; the smallest input is
    11x11.  Note the outputs are averages of ReLU outputs, so the logits are >= 0 (as in d2l).

    Parameters
    ----------
    num_classes : int, default 10
    in_channels : int, default 1
    dropout : float, default 0.5
    width_mult : float, default 1.0
        Scales the hidden channel counts (never ``num_classes``).

    Returns
    -------
    nbconv.nn.Sequential
    """
    op = "nin"
    num_classes = _pos_int(op, "num_classes", num_classes)
    in_channels = _pos_int(op, "in_channels", in_channels)
    w = _width(op, width_mult)
    p = _dropout_p(op, dropout)
    c1, c2, c3 = (_ch(c, w) for c in (96, 256, 384))
    return nn.Sequential(
        nin_block(in_channels, c1, 11, 4, 0), nn.MaxPool2d(3, 2, padding=1),
        nin_block(c1, c2, 5, 1, 2), nn.MaxPool2d(3, 2, padding=1),
        nin_block(c2, c3, 3, 1, 1), nn.MaxPool2d(3, 2, padding=1),
        nn.Dropout(p),
        nin_block(c3, num_classes, 3, 1, 1),
        nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(),
    )


# -- GoogLeNet ----------------------------------------------------------------------------------
def inception_block(in_channels, c1, c2, c3, c4):
    """Inception v1 block (d2l's ``Inception``) as a :class:`nbconv.nn.Graph`.

    Four branches on the same input, concatenated along the channels::

        p1: Conv2d(in, c1, 1), ReLU
        p2: Conv2d(in, c2[0], 1), ReLU, Conv2d(c2[0], c2[1], 3, padding=1), ReLU
        p3: Conv2d(in, c3[0], 1), ReLU, Conv2d(c3[0], c3[1], 5, padding=2), ReLU
        p4: MaxPool2d(3, 1, padding=1), Conv2d(in, c4, 1), ReLU
        out = Concat(axis=1)(p1, p2, p3, p4)

    Parameter keys follow d2l's attribute names (``p1_1.weight``, ``p2_2.bias``, ...).

    Returns
    -------
    nbconv.nn.Graph
        (N, in_channels, H, W) -> (N, c1 + c2[1] + c3[1] + c4, H, W).

    Examples
    --------
    >>> import numpy as np
    >>> from nbconv.models import inception_block
    >>> blk = inception_block(3, 2, (2, 3), (1, 2), 2)
    >>> blk(np.ones((1, 3, 5, 5), np.float32)).shape
    (1, 9, 5, 5)
    """
    g = nn.Graph()
    g.add("p1_1", nn.Conv2d(in_channels, c1, 1), "input")
    g.add("p1_relu", nn.ReLU(), "p1_1")
    g.add("p2_1", nn.Conv2d(in_channels, c2[0], 1), "input")
    g.add("p2_relu1", nn.ReLU(), "p2_1")
    g.add("p2_2", nn.Conv2d(c2[0], c2[1], 3, padding=1), "p2_relu1")
    g.add("p2_relu2", nn.ReLU(), "p2_2")
    g.add("p3_1", nn.Conv2d(in_channels, c3[0], 1), "input")
    g.add("p3_relu1", nn.ReLU(), "p3_1")
    g.add("p3_2", nn.Conv2d(c3[0], c3[1], 5, padding=2), "p3_relu1")
    g.add("p3_relu2", nn.ReLU(), "p3_2")
    g.add("p4_1", nn.MaxPool2d(3, 1, padding=1), "input")
    g.add("p4_2", nn.Conv2d(in_channels, c4, 1), "p4_1")
    g.add("p4_relu", nn.ReLU(), "p4_2")
    g.add("concat", nn.Concat(axis=1), "p1_relu", "p2_relu2", "p3_relu2", "p4_relu")
    return g


# d2l's (c1, (c2a, c2b), (c3a, c3b), c4) per Inception block; "M" is MaxPool2d(3, 2, padding=1).
_GOOGLENET_B3 = ((64, (96, 128), (16, 32), 32), (128, (128, 192), (32, 96), 64))
_GOOGLENET_B4 = ((192, (96, 208), (16, 48), 64), (160, (112, 224), (24, 64), 64),
                 (128, (128, 256), (24, 64), 64), (112, (144, 288), (32, 64), 64),
                 (256, (160, 320), (32, 128), 128))
_GOOGLENET_B5 = ((256, (160, 320), (32, 128), 128), (384, (192, 384), (48, 128), 128))


def googlenet(num_classes=10, in_channels=1, width_mult=1.0):
    """GoogLeNet (Inception v1) after d2l: five stages, Inception blocks as ``Graph``.

    Layout (``c = width_mult``; map sizes for 224 / 32 / 28 inputs)::

        0 b1: Conv2d(in_channels, 64c, 7, stride 2, padding 3), ReLU,
              MaxPool2d(3, 2, padding=1)                              56 / 8 / 7
        1 b2: Conv2d(64c, 64c, 1), ReLU, Conv2d(64c, 192c, 3, padding 1), ReLU,
              MaxPool2d(3, 2, padding=1)                              28 / 4 / 4
        2 b3: Inception x2 (-> 256c, 480c), MaxPool2d(3, 2, padding=1) 14 / 2 / 2
        3 b4: Inception x5 (-> 512c, 512c, 512c, 528c, 832c), pool     7 / 1 / 1
        4 b5: Inception x2 (-> 832c, 1024c), AdaptiveAvgPool2d((1, 1)), Flatten
        5 Linear(1024c, num_classes)

    Every pool is padded (as in d2l), so any input of at least 1x1 runs.  The Inception
    channel counts are d2l's, each scaled by ``width_mult`` and rounded.

    Parameters
    ----------
    num_classes : int, default 10
    in_channels : int, default 1
    width_mult : float, default 1.0

    Returns
    -------
    nbconv.nn.Sequential
    """
    op = "googlenet"
    num_classes = _pos_int(op, "num_classes", num_classes)
    in_channels = _pos_int(op, "in_channels", in_channels)
    w = _width(op, width_mult)

    def pool():
        return nn.MaxPool2d(3, 2, padding=1)

    c64, c192 = _ch(64, w), _ch(192, w)
    b1 = nn.Sequential(nn.Conv2d(in_channels, c64, 7, stride=2, padding=3), nn.ReLU(), pool())
    b2 = nn.Sequential(nn.Conv2d(c64, c64, 1), nn.ReLU(),
                       nn.Conv2d(c64, c192, 3, padding=1), nn.ReLU(), pool())
    c = c192
    stages = []
    for spec, tail in ((_GOOGLENET_B3, "pool"), (_GOOGLENET_B4, "pool"), (_GOOGLENET_B5, "gap")):
        layers = []
        for c1, (c2a, c2b), (c3a, c3b), c4 in spec:
            c1, c2a, c2b, c3a, c3b, c4 = (_ch(v, w) for v in (c1, c2a, c2b, c3a, c3b, c4))
            layers.append(inception_block(c, c1, (c2a, c2b), (c3a, c3b), c4))
            c = c1 + c2b + c3b + c4
        layers += [pool()] if tail == "pool" else [nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten()]
        stages.append(nn.Sequential(*layers))
    return nn.Sequential(b1, b2, *stages, nn.Linear(c, num_classes))


# -- ResNet -------------------------------------------------------------------------------------
def basic_block(in_channels, out_channels, stride=1, use_1x1conv=None):
    """ResNet basic block (d2l's ``Residual``) as a :class:`nbconv.nn.Graph`::

        conv1: Conv2d(in, out, 3, stride, padding=1, bias=False), bn1: BatchNorm2d(out), ReLU
        conv2: Conv2d(out, out, 3, padding=1, bias=False),        bn2: BatchNorm2d(out)
        shortcut: identity, or downsample = Sequential(Conv2d(in, out, 1, stride, bias=False),
                                                       BatchNorm2d(out))
        out = ReLU(bn2 + shortcut)

    Differences from d2l (which follows the paper's option B differently): the convolutions
    feeding a batch norm have no bias (it would be cancelled by the normalisation, and its
    gradient is zero in training mode), and the 1x1 projection is followed by a batch norm as in
    torchvision; the keys match torchvision's ``BasicBlock`` (``conv1.weight``, ``bn1.weight``,
    ``downsample.0.weight``, ``downsample.1.running_mean``, ...).

    Parameters
    ----------
    in_channels, out_channels : int
    stride : int, default 1
    use_1x1conv : bool, optional
        Project the shortcut with a 1x1 conv; default: only when the shape changes
        (``stride != 1`` or ``in_channels != out_channels``).

    Returns
    -------
    nbconv.nn.Graph
        (N, in, H, W) -> (N, out, ceil(H/stride), ceil(W/stride)).

    Examples
    --------
    >>> import numpy as np
    >>> from nbconv.models import basic_block
    >>> blk = basic_block(2, 4, stride=2)
    >>> blk(np.ones((2, 2, 5, 5), np.float32)).shape
    (2, 4, 3, 3)
    """
    if use_1x1conv is None:
        use_1x1conv = stride != 1 or in_channels != out_channels
    if not use_1x1conv and (stride != 1 or in_channels != out_channels):
        raise ValueError(
            f"basic_block: argument 'use_1x1conv' is False but the identity shortcut cannot "
            f"map {in_channels} channels at stride {stride} to {out_channels} channels"
        )
    g = nn.Graph()
    g.add("conv1", nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1,
                             bias=False), "input")
    g.add("bn1", nn.BatchNorm2d(out_channels), "conv1")
    g.add("relu1", nn.ReLU(), "bn1")
    g.add("conv2", nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False), "relu1")
    g.add("bn2", nn.BatchNorm2d(out_channels), "conv2")
    shortcut = "input"
    if use_1x1conv:
        g.add("downsample", nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
            nn.BatchNorm2d(out_channels)), "input")
        shortcut = "downsample"
    g.add("add", nn.Add(), "bn2", shortcut)
    g.add("relu2", nn.ReLU(), "add")
    return g


def resnet18(num_classes=10, in_channels=1, width_mult=1.0):
    """ResNet-18 after d2l: a 7x7 stem, four stages of two basic blocks, global average pool.

    Layout (``c = width_mult``; map sizes for 224 / 32 / 28 inputs)::

        0 b1: Conv2d(in_channels, 64c, 7, stride 2, padding 3, bias=False), BatchNorm2d,
              ReLU, MaxPool2d(3, 2, padding=1)                    56 / 8 / 7
        1 b2: basic_block(64c, 64c) x2                            56 / 8 / 7
        2 b3: basic_block(64c, 128c, stride 2), basic_block       28 / 4 / 4
        3 b4: basic_block(128c, 256c, stride 2), basic_block      14 / 2 / 2
        4 b5: basic_block(256c, 512c, stride 2), basic_block       7 / 1 / 1
        5 AdaptiveAvgPool2d((1, 1)), 6 Flatten, 7 Linear(512c, num_classes)

    Any input of at least 1x1 runs.  The batch norms need more than one value per channel in
    training mode: at 28x28 or 32x32 the last stage is 1x1, so train with batches of two or
    more (PyTorch refuses the same case).  See :func:`basic_block` for the block details.

    Parameters
    ----------
    num_classes : int, default 10
    in_channels : int, default 1
    width_mult : float, default 1.0

    Returns
    -------
    nbconv.nn.Sequential
    """
    op = "resnet18"
    num_classes = _pos_int(op, "num_classes", num_classes)
    in_channels = _pos_int(op, "in_channels", in_channels)
    w = _width(op, width_mult)
    c64 = _ch(64, w)
    b1 = nn.Sequential(nn.Conv2d(in_channels, c64, 7, stride=2, padding=3, bias=False),
                       nn.BatchNorm2d(c64), nn.ReLU(), nn.MaxPool2d(3, 2, padding=1))
    stages = [b1]
    c = c64
    for out, first in ((64, True), (128, False), (256, False), (512, False)):
        out = _ch(out, w)
        stride = 1 if first else 2
        stages.append(nn.Sequential(basic_block(c, out, stride=stride), basic_block(out, out)))
        c = out
    return nn.Sequential(*stages, nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(),
                         nn.Linear(c, num_classes))

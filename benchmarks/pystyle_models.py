"""``resnet18`` and ``googlenet`` written the PyTorch way: ``nn.Module`` subclasses with a
``forward`` and no ``backward``, so that nbconv records their forward pass as it runs.

They are the networks of :func:`nbconv.models.resnet18` and :func:`nbconv.models.googlenet`
written as d2l writes them (the builders follow d2l): the stems are ``nn.Sequential`` of
built-in layers (one record each), the blocks are classes whose ``forward`` calls layers and
functional ops -- ``nc.relu(self.bn1(self.conv1(x)))``, ``out += identity``,
``np.concatenate([...], axis=1)`` -- and the top-level model calls them in order.

The stages of blocks are ``nn.Sequential`` of those classes, as in d2l and torchvision.  Same
layers, same order, same parameter and buffer shapes as the builders, so that
:func:`copy_builder_weights` makes the two forms the same network (the state-dict keys differ
at the top level: ``layer1.0.conv1.weight`` here for the builder's ``1.0.conv1.weight``).

``bench_models.py`` times them next to their builders (``--models resnet18_pystyle``); the
SPEC asks for them to be within 3% of the ``Sequential``/``Graph`` form.
"""

from __future__ import annotations

import numpy as np

import nbconv as nc
from nbconv import nn

__all__ = ["BasicBlock", "ResNet18", "Inception", "GoogLeNet", "PYSTYLE",
           "copy_builder_weights"]


def _ch(c: int, w: float) -> int:
    """``round(c * w)``, at least 1 (the builders' channel scaling)."""
    return max(1, int(round(c * w)))


# --------------------------------------------------------------------------- ResNet-18

class BasicBlock(nn.Module):
    """torchvision's ``BasicBlock``: ``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``,
    the shortcut a 1x1 conv + batch norm when the shape changes (as
    :func:`nbconv.models.basic_block`, with the same keys)."""

    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1,
                               bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = nc.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return nc.relu(out)


class ResNet18(nn.Module):
    """ResNet-18 as :func:`nbconv.models.resnet18`: stem, four stages of two
    :class:`BasicBlock`, global average pool, fully-connected classifier."""

    def __init__(self, num_classes=10, in_channels=1, width_mult=1.0):
        super().__init__()
        c = _ch(64, width_mult)
        self.stem = nn.Sequential(nn.Conv2d(in_channels, c, 7, stride=2, padding=3, bias=False),
                                  nn.BatchNorm2d(c), nn.ReLU(), nn.MaxPool2d(3, 2, padding=1))
        stages = []
        for out, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            out = _ch(out, width_mult)
            stages.append(nn.Sequential(BasicBlock(c, out, stride), BasicBlock(out, out)))
            c = out
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x):
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))
        return self.fc(nc.flatten(self.avgpool(x), 1))


# --------------------------------------------------------------------------- GoogLeNet

class Inception(nn.Module):
    """d2l's ``Inception``: four branches on the same input joined along the channels (as
    :func:`nbconv.models.inception_block`, with the same keys)."""

    def __init__(self, in_channels, c1, c2, c3, c4):
        super().__init__()
        self.p1_1 = nn.Conv2d(in_channels, c1, 1)
        self.p2_1 = nn.Conv2d(in_channels, c2[0], 1)
        self.p2_2 = nn.Conv2d(c2[0], c2[1], 3, padding=1)
        self.p3_1 = nn.Conv2d(in_channels, c3[0], 1)
        self.p3_2 = nn.Conv2d(c3[0], c3[1], 5, padding=2)
        self.p4_1 = nn.MaxPool2d(3, 1, padding=1)
        self.p4_2 = nn.Conv2d(in_channels, c4, 1)

    def forward(self, x):
        p1 = nc.relu(self.p1_1(x))
        p2 = nc.relu(self.p2_2(nc.relu(self.p2_1(x))))
        p3 = nc.relu(self.p3_2(nc.relu(self.p3_1(x))))
        p4 = nc.relu(self.p4_2(self.p4_1(x)))
        return np.concatenate([p1, p2, p3, p4], axis=1)


# d2l's (c1, (c2a, c2b), (c3a, c3b), c4) per Inception block, stage by stage
_B3 = ((64, (96, 128), (16, 32), 32), (128, (128, 192), (32, 96), 64))
_B4 = ((192, (96, 208), (16, 48), 64), (160, (112, 224), (24, 64), 64),
       (128, (128, 256), (24, 64), 64), (112, (144, 288), (32, 64), 64),
       (256, (160, 320), (32, 128), 128))
_B5 = ((256, (160, 320), (32, 128), 128), (384, (192, 384), (48, 128), 128))


class GoogLeNet(nn.Module):
    """GoogLeNet as :func:`nbconv.models.googlenet`: two convolution stages, three stages of
    :class:`Inception` blocks, global average pool, fully-connected classifier."""

    def __init__(self, num_classes=10, in_channels=1, width_mult=1.0):
        super().__init__()
        c64, c192 = _ch(64, width_mult), _ch(192, width_mult)
        self.b1 = nn.Sequential(nn.Conv2d(in_channels, c64, 7, stride=2, padding=3), nn.ReLU(),
                                nn.MaxPool2d(3, 2, padding=1))
        self.b2 = nn.Sequential(nn.Conv2d(c64, c64, 1), nn.ReLU(),
                                nn.Conv2d(c64, c192, 3, padding=1), nn.ReLU(),
                                nn.MaxPool2d(3, 2, padding=1))
        c = c192
        stages = []
        for spec in (_B3, _B4, _B5):
            blocks = []
            for c1, (c2a, c2b), (c3a, c3b), c4 in spec:
                c1, c2a, c2b, c3a, c3b, c4 = (_ch(v, width_mult)
                                              for v in (c1, c2a, c2b, c3a, c3b, c4))
                blocks.append(Inception(c, c1, (c2a, c2b), (c3a, c3b), c4))
                c = c1 + c2b + c3b + c4
            stages.append(blocks)
        self.b3 = nn.Sequential(*stages[0], nn.MaxPool2d(3, 2, padding=1))
        self.b4 = nn.Sequential(*stages[1], nn.MaxPool2d(3, 2, padding=1))
        self.b5 = nn.Sequential(*stages[2])
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x):
        x = self.b5(self.b4(self.b3(self.b2(self.b1(x)))))
        return self.fc(nc.flatten(self.avgpool(x), 1))


#: builder name -> PyTorch-style class (same constructor arguments as the builder)
PYSTYLE = {"resnet18": ResNet18, "googlenet": GoogLeNet}


def copy_builder_weights(src, dst) -> None:
    """Load ``src``'s state (a builder's model) into ``dst`` (its PyTorch-style form), key by
    key in order: the two list the same parameters and buffers in the same order with the same
    shapes, only the names differ at the top level (checked; ValueError otherwise)."""
    s, d = src.state_dict(), dst.state_dict()
    if len(s) != len(d):
        raise ValueError(f"copy_builder_weights: {len(s)} entries in the source, {len(d)} in "
                         "the destination")
    state = {}
    for (ks, v), (kd, w) in zip(s.items(), d.items()):
        if np.shape(v) != np.shape(w) or ks.rsplit(".", 1)[-1] != kd.rsplit(".", 1)[-1]:
            raise ValueError(f"copy_builder_weights: {ks} {np.shape(v)} does not match {kd} "
                             f"{np.shape(w)}")
        state[kd] = np.array(v, copy=True)
    dst.load_state_dict(state)

"""What the lesson scripts share: choosing a data set, and a trained LeNet-5 to look into.

Not a script of its own.  The examples import it by name (``python examples/x.py`` puts this
folder first on ``sys.path``).  Data sets, in the order ``--dataset auto`` tries them:

1. MNIST, when its four IDX files lie under ``--data-dir`` or ``~/.cache/nbconv/mnist``
   (where ``examples/train_lenet.py --download`` puts them);
2. Fashion-MNIST from Debian's package (``apt-get install dataset-fashion-mnist``, read from
   ``/usr/share/datasets/fashion-mnist``) or under ``--data-dir``;
3. scikit-learn's bundled 8x8 digits, resized to 28x28 (always there; 1437 / 360 images).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

import nbconv as nc
from nbconv import data, losses, models, optim
from nbconv.train import fit

CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "nbconv" / "mnist"
DATASETS = ("auto", "mnist", "fashion-mnist", "digits")


def add_data_arguments(parser, train_size=None):
    """Add ``--dataset``, ``--data-dir``, ``--train-size``, ``--test-size`` to ``parser``."""
    parser.add_argument("--dataset", default="auto", choices=DATASETS,
                        help="auto: MNIST if found, else Fashion-MNIST, else the bundled digits")
    parser.add_argument("--data-dir", default=None, help="folder with the IDX files")
    parser.add_argument("--train-size", type=int, default=train_size,
                        help="use only this many training images (default: all)")
    parser.add_argument("--test-size", type=int, default=None,
                        help="use only this many test images (default: all)")


def _subset(x, y, n, seed):
    """``n`` images drawn without replacement (all of them, in order, when ``n`` is None)."""
    if n is None or n >= len(x):
        return x, y
    if n < 1:
        raise SystemExit(f"--train-size/--test-size must be >= 1, got {n}")
    keep = np.sort(np.random.default_rng(seed).permutation(len(x))[:n])
    return x[keep], y[keep]


def load_dataset(args):
    """Return ``(name, (x_train, y_train), (x_test, y_test))`` as ``args`` asks.

    Images are float32 in [0, 1], shape (N, 1, 28, 28); labels int64 in 0..9.
    """
    name, train, test = _find(args)
    train = _subset(*train, args.train_size, seed=1)
    test = _subset(*test, args.test_size, seed=2)
    return name, train, test


def _find(args):
    roots = [Path(p) for p in (args.data_dir, CACHE_DIR) if p is not None]
    if args.dataset in ("auto", "mnist"):
        for root in roots:
            found = data.find_mnist(root)
            if found is not None:
                return (f"MNIST ({found})", data.load_mnist(found, "train"),
                        data.load_mnist(found, "test"))
        if args.dataset == "mnist":
            raise SystemExit(f"MNIST IDX files not found under {[str(r) for r in roots]}; "
                             "pass --data-dir (examples/train_lenet.py --download fetches them)")
    if args.dataset in ("auto", "fashion-mnist"):
        found = (data.find_fashion_mnist(args.data_dir) if args.data_dir else None) or \
            data.find_fashion_mnist()
        if found is not None:
            return (f"Fashion-MNIST ({found})", data.load_fashion_mnist(found, "train"),
                    data.load_fashion_mnist(found, "test"))
        if args.dataset == "fashion-mnist":
            raise SystemExit("Fashion-MNIST not found: apt-get install dataset-fashion-mnist, "
                             "or pass --data-dir")
    return ("scikit-learn digits (8x8 resized to 28x28, 80/20 split)",
            data.load_digits("train"), data.load_digits("test"))


def train_classifier(model, train, test, epochs, batch_size=64, lr=1e-3, seed=0,
                     progress=True, mean=None, std=None):
    """Train ``model`` with Adam on ``train`` and return its test accuracy after each epoch.

    Inputs are normalised with ``mean``/``std`` (default: the training set's).
    """
    (x, y), (xt, yt) = train, test
    mean = float(x.mean()) if mean is None else mean
    std = float(x.std()) if std is None else std
    norm = data.transforms.normalize(mean, std)
    hist = fit(model, losses.CrossEntropyLoss(), optim.Adam(model.parameters(), lr=lr),
               data.DataLoader(x, y, batch_size, shuffle=True, seed=seed, transform=norm),
               epochs, val_loader=data.DataLoader(xt, yt, 500, shuffle=False, transform=norm),
               progress=progress)
    return hist["val_accuracy"]


def load_or_train_lenet(path, args, epochs=2, progress=True):
    """A trained LeNet-5 and the ``(mean, std)`` its inputs are normalised with.

    Reads the model file ``path`` (as ``examples/train_lenet.py`` writes it, normalisation in
    its metadata).  When there is none, trains a ReLU LeNet-5 for ``epochs`` epochs on the data
    set ``args`` chooses and saves it there, so that every lesson runs on a fresh clone.
    """
    path = Path(path)
    if path.is_file():
        model, _, meta = nc.load_state(path)
        mean, std = float(meta.get("mean", 0.0)), float(meta.get("std", 1.0))
        print(f"model: {path} (trained on {meta.get('dataset', 'an unrecorded data set')})",
              flush=True)
        return model.eval(), mean, std
    name, train, test = load_dataset(args)
    print(f"model: no file {path}; training LeNet-5 (ReLU) for {epochs} epochs on {name} first "
          "(examples/train_lenet.py trains a better one)", flush=True)
    nc.manual_seed(0)
    model = models.lenet5(activation="relu")
    mean, std = float(train[0].mean()), float(train[0].std())
    acc = train_classifier(model, train, test, epochs, progress=progress, mean=mean, std=std)
    print(f"LeNet-5 test accuracy {acc[-1]:.4f}; saved to {path}", flush=True)
    nc.save(model, path, metadata={"dataset": name, "mean": mean, "std": std,
                                   "epochs": epochs, "activation": "relu",
                                   "preprocessing": "x / 255, then (x - mean) / std"})
    return model.eval(), mean, std

"""MNIST and Fashion-MNIST from their standard IDX files.

File names (each may also end in ``.gz``; compression is detected from the content)::

    train-images-idx3-ubyte  train-labels-idx1-ubyte  t10k-images-idx3-ubyte  t10k-labels-idx1-ubyte

The dotted variant ``train-images.idx3-ubyte`` (as some mirrors name them) is accepted too.

Directories searched, in this order, below the ``root`` you give (the first one holding both the
images and the labels of the split wins):

- MNIST: ``root``, ``root/MNIST/raw`` (torchvision's layout), ``root/MNIST``, ``root/mnist``
- Fashion-MNIST: ``root``, ``root/FashionMNIST/raw`` (torchvision), ``root/FashionMNIST``,
  ``root/fashion-mnist``, ``root/fashion_mnist``

Debian's ``dataset-fashion-mnist`` package (``apt-get install dataset-fashion-mnist``) installs the
four gzip files under ``/usr/share/datasets/fashion-mnist/``; ``load_fashion_mnist()`` with no
root reads them from there.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .idx import load_idx

__all__ = [
    "DEBIAN_FASHION_MNIST_DIR",
    "find_fashion_mnist",
    "find_mnist",
    "load_fashion_mnist",
    "load_mnist",
]

#: Where Debian's ``dataset-fashion-mnist`` package installs the (gzip) IDX files.
DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")

_PREFIX = {"train": "train", "test": "t10k"}
_MNIST_SUBDIRS = ("", "MNIST/raw", "MNIST", "mnist")
_FASHION_SUBDIRS = ("", "FashionMNIST/raw", "FashionMNIST", "fashion-mnist", "fashion_mnist")


def _names(split: str, kind: str) -> list[str]:
    """Candidate file names for ``kind`` in ("images", "labels") of a split."""
    n = 3 if kind == "images" else 1
    p = _PREFIX[split]
    bases = [f"{p}-{kind}-idx{n}-ubyte", f"{p}-{kind}.idx{n}-ubyte"]
    return [b + ext for b in bases for ext in ("", ".gz")]


def _check_split(op: str, split) -> str:
    if split not in _PREFIX:
        raise ValueError(f"{op}: argument 'split' must be 'train' or 'test', got {split!r}")
    return split


def _find_split(root, subdirs, split: str):
    """Return ``(images_path, labels_path, looked_for)``; paths are None when not found."""
    looked = []
    for sub in subdirs:
        d = Path(root) / sub if sub else Path(root)
        found = {}
        for kind in ("images", "labels"):
            for name in _names(split, kind):
                looked.append(str(d / name))
                if (d / name).is_file():
                    found[kind] = d / name
                    break
        if len(found) == 2:
            return found["images"], found["labels"], looked
    return None, None, looked


def _find_dir(root, subdirs) -> Path | None:
    if root is None:
        return None
    for sub in subdirs:
        d = Path(root) / sub if sub else Path(root)
        if all(any((d / n).is_file() for n in _names(s, k))
               for s in _PREFIX for k in ("images", "labels")):
            return d
    return None


def find_mnist(root) -> Path | None:
    """Return the directory below ``root`` that holds all four MNIST IDX files, or None.

    Parameters
    ----------
    root : str, os.PathLike or None
        Where to look: ``root`` itself, then ``root/MNIST/raw``, ``root/MNIST``, ``root/mnist``.
        None gives None.

    Returns
    -------
    pathlib.Path or None
        A directory that ``load_mnist`` can read both splits from.

    Examples
    --------
    >>> from nbconv.data import find_mnist
    >>> find_mnist("/nonexistent") is None
    True
    """
    return _find_dir(root, _MNIST_SUBDIRS)


def find_fashion_mnist(root=None) -> Path | None:
    """Return the directory holding all four Fashion-MNIST IDX files, or None.

    Parameters
    ----------
    root : str, os.PathLike or None
        Where to look: ``root``, ``root/FashionMNIST/raw``, ``root/FashionMNIST``,
        ``root/fashion-mnist``, ``root/fashion_mnist``. None means Debian's package location,
        ``/usr/share/datasets/fashion-mnist``.

    Returns
    -------
    pathlib.Path or None
    """
    return _find_dir(DEBIAN_FASHION_MNIST_DIR if root is None else root, _FASHION_SUBDIRS)


def _load(op: str, root, split: str, subdirs) -> tuple[np.ndarray, np.ndarray]:
    split = _check_split(op, split)
    if root is None:
        raise ValueError(f"{op}: argument 'root' is required")
    img_path, lab_path, looked = _find_split(root, subdirs, split)
    if img_path is None:
        raise FileNotFoundError(
            f"{op}: no {split} images+labels found under {os.fspath(root)!r}; looked for: "
            + ", ".join(looked))
    images = load_idx(img_path)
    labels = load_idx(lab_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(f"{op}: {img_path} should hold uint8 images of shape (N, H, W), got "
                         f"{images.dtype} {images.shape}")
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise ValueError(f"{op}: {lab_path} should hold uint8 labels of shape (N,), got "
                         f"{labels.dtype} {labels.shape}")
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{op}: {img_path} has {images.shape[0]} images but {lab_path} has "
                         f"{labels.shape[0]} labels")
    if labels.size and labels.max() > 9:
        raise ValueError(f"{op}: {lab_path} has labels outside 0..9 (max {int(labels.max())})")
    x = images.astype(np.float32)
    x /= np.float32(255)
    return x.reshape(images.shape[0], 1, *images.shape[1:]), labels.astype(np.int64)


def load_mnist(root, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Load MNIST from its standard IDX files.

    Parameters
    ----------
    root : str or os.PathLike
        A directory holding ``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`` (dotted
        ``train-images.idx3-ubyte`` names also work), or one of its parents: ``root/MNIST/raw``,
        ``root/MNIST`` and ``root/mnist`` are searched too.
    split : {"train", "test"}
        ``"train"`` reads the ``train-*`` files (60000 images), ``"test"`` the ``t10k-*`` files
        (10000 images).

    Returns
    -------
    X : ndarray of float32, shape (N, 1, 28, 28)
        Pixels divided by 255, in [0, 1]. (H, W come from the file; 28x28 for MNIST.)
    y : ndarray of int64, shape (N,)
        Labels in 0..9.

    Raises
    ------
    ValueError
        ``split`` is not "train"/"test"; image and label counts differ; a label is > 9; the
        files are not uint8 images / labels. `IDXFormatError` (a ValueError) for a malformed file.
    FileNotFoundError
        No directory holds both files of the split; the message lists every path tried.
    """
    return _load("load_mnist", root, split, _MNIST_SUBDIRS)


def load_fashion_mnist(root=None, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Load Fashion-MNIST (Zalando's clothing images, MNIST's format and file names).

    Parameters
    ----------
    root : str, os.PathLike or None
        A directory with the four IDX files (optionally ``.gz``), or a parent of
        ``FashionMNIST/raw``, ``FashionMNIST``, ``fashion-mnist`` or ``fashion_mnist``. None reads
        Debian's ``dataset-fashion-mnist`` package: ``/usr/share/datasets/fashion-mnist``.
    split : {"train", "test"}
        60000 training or 10000 test images.

    Returns
    -------
    X : ndarray of float32, shape (N, 1, 28, 28)
        Pixels divided by 255, in [0, 1].
    y : ndarray of int64, shape (N,)
        Labels 0..9 (T-shirt/top, Trouser, Pullover, Dress, Coat, Sandal, Shirt, Sneaker, Bag,
        Ankle boot).

    Raises
    ------
    ValueError, FileNotFoundError
        As `load_mnist`. With ``root=None`` and the package not installed, the FileNotFoundError
        suggests ``apt-get install dataset-fashion-mnist``.
    """
    if root is None:
        try:
            return _load("load_fashion_mnist", DEBIAN_FASHION_MNIST_DIR, split, _FASHION_SUBDIRS)
        except FileNotFoundError as e:
            raise FileNotFoundError(
                f"{e} (install Debian's package with 'apt-get install dataset-fashion-mnist' or "
                "pass root=)") from None
    return _load("load_fashion_mnist", root, split, _FASHION_SUBDIRS)

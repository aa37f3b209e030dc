"""Data sets and mini-batch loading: IDX/MNIST/Fashion-MNIST, CIFAR-10, scikit-learn's digits,
`DataLoader` and batch `transforms`. NumPy only (scikit-learn is imported by `load_digits`).

>>> import numpy as np, nbconv.data as nd
>>> loader = nd.DataLoader(np.zeros((5, 1, 4, 4)), np.zeros(5, np.int64), batch_size=2, seed=1)
>>> [xb.shape for xb, yb in loader]
[(2, 1, 4, 4), (2, 1, 4, 4), (1, 1, 4, 4)]
"""

from . import transforms
from .cifar import CIFAR10_CLASSES, load_cifar10
from .digits import load_digits
from .idx import IDXFormatError, load_idx
from .loader import DataLoader
from .mnist import (
    DEBIAN_FASHION_MNIST_DIR,
    find_fashion_mnist,
    find_mnist,
    load_fashion_mnist,
    load_mnist,
)

__all__ = [
    "CIFAR10_CLASSES",
    "DEBIAN_FASHION_MNIST_DIR",
    "DataLoader",
    "IDXFormatError",
    "find_fashion_mnist",
    "find_mnist",
    "load_cifar10",
    "load_digits",
    "load_fashion_mnist",
    "load_idx",
    "load_mnist",
    "transforms",
]

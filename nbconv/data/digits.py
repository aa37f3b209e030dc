"""scikit-learn's bundled 8x8 handwritten digits, framed like MNIST (offline, no download)."""

from __future__ import annotations

import numpy as np

__all__ = ["load_digits"]


def load_digits(split=None, test_fraction: float = 0.2,
                seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Load the 1797 8x8 digits shipped with scikit-learn, resized to 28x28 like MNIST.

    Each 8x8 image (grey levels 0..16) is upsampled bilinearly to 20x20
    (``scipy.ndimage.zoom(order=1, grid_mode=True, mode="nearest")``: pixels are treated as
    squares of area, so the 20x20 image covers the same extent) and placed in the centre of a
    28x28 zero canvas (4 pixels of margin), which is how MNIST frames its 20x20 digits. Values
    are divided by 16 and clipped to [0, 1]. The result is deterministic.

    Parameters
    ----------
    split : {None, "train", "test"}, default None
        None returns all 1797 images in scikit-learn's order. ``"train"`` / ``"test"`` return a
        fixed stratified split: within each class, ``round(test_fraction * n_class)`` images,
        chosen by ``numpy.random.default_rng(seed)``, go to the test set; both parts keep
        scikit-learn's order. The same ``(test_fraction, seed)`` always gives the same split and
        the two parts are disjoint and cover the whole set.
    test_fraction : float in (0, 1), default 0.2
        Fraction of each class held out for ``"test"``.
    seed : int, default 0
        Seed of the split.

    Returns
    -------
    X : ndarray of float32, shape (N, 1, 28, 28)
        In [0, 1]; N = 1797 for ``split=None`` (about 1437 / 360 for the default split).
    y : ndarray of int64, shape (N,)
        Labels 0..9.

    Raises
    ------
    ImportError
        scikit-learn is not installed (``pip install nbconv[data]`` or ``pip install
        scikit-learn``).
    ValueError
        Bad ``split`` or ``test_fraction``.

    Examples
    --------
    >>> from nbconv.data import load_digits
    >>> X, y = load_digits()
    >>> X.shape, X.dtype, y.dtype
    ((1797, 1, 28, 28), dtype('float32'), dtype('int64'))
    >>> float(X.min()), float(X.max())
    (0.0, 1.0)
    """
    op = "load_digits"
    if split not in (None, "train", "test"):
        raise ValueError(f"{op}: argument 'split' must be None, 'train' or 'test', got {split!r}")
    if not isinstance(test_fraction, (int, float, np.floating)) or not 0 < test_fraction < 1:
        raise ValueError(f"{op}: argument 'test_fraction' must be in (0, 1), got {test_fraction!r}")
    try:
        from sklearn.datasets import load_digits as _sk_load_digits
    except ImportError as e:
        raise ImportError(
            f"{op} needs scikit-learn, which ships the digits data set: "
            "pip install nbconv[data]  (or: pip install scikit-learn)") from e
    from scipy.ndimage import zoom

    d = _sk_load_digits()
    images = np.asarray(d.images, dtype=np.float64)  # (1797, 8, 8), values 0..16
    y = np.asarray(d.target, dtype=np.int64)
    small = zoom(images, (1, 2.5, 2.5), order=1, grid_mode=True, mode="nearest")  # (N, 20, 20)
    X = np.zeros((images.shape[0], 1, 28, 28), dtype=np.float32)
    X[:, 0, 4:24, 4:24] = np.clip(small / 16.0, 0.0, 1.0)
    if split is None:
        return X, y
    rng = np.random.default_rng(seed)
    test = np.zeros(y.shape[0], dtype=bool)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        k = int(round(test_fraction * idx.size))
        test[rng.permutation(idx)[:k]] = True
    keep = test if split == "test" else ~test
    return X[keep], y[keep]

"""Mini-batch iteration with reproducible, resumable shuffling and augmentation."""

from __future__ import annotations

import numbers

import numpy as np

__all__ = ["DataLoader"]


def _check_int(name: str, v, minimum: int) -> int:
    if not isinstance(v, (numbers.Integral, np.integer)) or isinstance(v, (bool, np.bool_)):
        raise TypeError(f"DataLoader: argument '{name}' must be an int, got {v!r}")
    if v < minimum:
        raise ValueError(f"DataLoader: argument '{name}' must be >= {minimum}, got {v}")
    return int(v)


class DataLoader:
    """Iterate over ``(xb, yb)`` mini-batches of an in-memory data set.

    The order of epoch ``e`` is a function of ``(seed, e)`` only: the permutation comes from
    ``numpy.random.default_rng(SeedSequence(seed, spawn_key=(e, 0)))`` and the random generator
    handed to ``transform`` for batch ``b`` from ``SeedSequence(seed, spawn_key=(e, 1, b))``.
    The epoch counter starts at 0 and is advanced by one each time an iteration runs to the end
    (an iteration abandoned with ``break`` does not count); `set_epoch` jumps to any epoch. So a
    training run resumed at epoch ``e`` with the same seed sees exactly the batches, and the
    augmentations, that an uninterrupted run would have seen.

    Parameters
    ----------
    X : array_like, shape (N, ...)
        Inputs, e.g. (N, C, H, W) images. Kept by reference (not copied).
    y : array_like, shape (N, ...)
        Targets, e.g. (N,) int64 labels.
    batch_size : int >= 1
    shuffle : bool, default True
        Shuffle every epoch; False iterates in the stored order (transforms still get their
        per-batch generator).
    seed : int >= 0 or None, default None
        None draws a random seed once, at construction (readable as ``loader.seed``, so it can
        be recorded and reused to reproduce the run).
    transform : callable or None
        ``transform(xb, rng) -> xb`` applied to each input batch, see `nbconv.data.transforms`.
    drop_last : bool, default False
        Drop the last batch when it has fewer than ``batch_size`` samples.

    Yields
    ------
    xb : ndarray, shape (B, ...)
        A new C-contiguous array (a copy; modifying it does not touch ``X``), B <= batch_size.
    yb : ndarray, shape (B, ...)
        A copy of the matching targets.

    Raises
    ------
    ValueError
        ``len(X) != len(y)``, ``batch_size < 1``, ``seed < 0``, X a 0-d array.
    TypeError
        Non-int ``batch_size``/``seed``, non-callable ``transform``.

    Examples
    --------
    >>> import numpy as np
    >>> from nbconv.data import DataLoader
    >>> X = np.arange(10 * 2, dtype=np.float32).reshape(10, 2)
    >>> y = np.arange(10)
    >>> loader = DataLoader(X, y, batch_size=4, seed=0)
    >>> len(loader)
    3
    >>> [yb.shape[0] for xb, yb in loader]
    [4, 4, 2]
    >>> loader.epoch
    1
    >>> first = [yb.tolist() for _, yb in loader]         # epoch 1
    >>> loader.set_epoch(1)
    >>> [yb.tolist() for _, yb in loader] == first          # replaying epoch 1
    True
    >>> sorted(sum(first, []))
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    """

    def __init__(self, X, y, batch_size, shuffle=True, seed=None, transform=None,
                 drop_last=False):
        X = np.asarray(X)
        y = np.asarray(y)
        if X.ndim == 0 or y.ndim == 0:
            raise ValueError(f"DataLoader: arguments 'X' and 'y' must have a leading sample "
                             f"axis, got shapes {X.shape} and {y.shape}")
        if X.shape[0] != y.shape[0]:
            raise ValueError(f"DataLoader: arguments 'X' and 'y' have different lengths "
                             f"(X shape {X.shape}, y shape {y.shape})")
        self.batch_size = _check_int("batch_size", batch_size, 1)
        if seed is None:
            seed = int(np.random.SeedSequence().entropy)
        self.seed = _check_int("seed", seed, 0)
        if transform is not None and not callable(transform):
            raise TypeError(f"DataLoader: argument 'transform' must be callable or None, got "
                            f"{type(transform).__name__}")
        self.X, self.y = X, y
        self.shuffle = bool(shuffle)
        self.transform = transform
        self.drop_last = bool(drop_last)
        self.epoch = 0

    def __len__(self) -> int:
        """Number of batches per epoch."""
        n = self.X.shape[0]
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration produce epoch ``epoch`` (an int >= 0)."""
        self.epoch = _check_int("epoch", epoch, 0)

    def order(self, epoch: int | None = None) -> np.ndarray:
        """The sample indices of ``epoch`` (default: the next one), int64 of shape (N,)."""
        e = self.epoch if epoch is None else _check_int("epoch", epoch, 0)
        n = self.X.shape[0]
        if not self.shuffle:
            return np.arange(n, dtype=np.int64)
        rng = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(e, 0)))
        return rng.permutation(n).astype(np.int64, copy=False)

    def batch_rng(self, epoch: int, index: int) -> np.random.Generator:
        """The random generator handed to ``transform`` for batch ``index`` of ``epoch``
        (also used by `nbconv.distributed.ShardedLoader`, which transforms whole global
        batches so that every rank sees the augmentation a single process would)."""
        return np.random.default_rng(
            np.random.SeedSequence(self.seed, spawn_key=(epoch, 1, index)))

    def state_dict(self) -> dict:
        """``{"seed": int, "epoch": int}``: all that is needed to resume the iteration."""
        return {"seed": self.seed, "epoch": self.epoch}

    def load_state_dict(self, state: dict) -> None:
        """Restore ``seed`` and ``epoch`` saved by `state_dict`."""
        self.seed = _check_int("seed", state["seed"], 0)
        self.set_epoch(state["epoch"])

    def __iter__(self):
        e = self.epoch
        idx = self.order(e)
        bs = self.batch_size
        for b in range(len(self)):
            sel = idx[b * bs:(b + 1) * bs]
            xb = np.ascontiguousarray(self.X[sel])
            yb = self.y[sel]
            if self.transform is not None:
                xb = np.ascontiguousarray(self.transform(xb, self.batch_rng(e, b)))
            yield xb, yb
        self.epoch = e + 1

    def __repr__(self) -> str:
        return (f"DataLoader(n={self.X.shape[0]}, batch_size={self.batch_size}, "
                f"shuffle={self.shuffle}, seed={self.seed}, drop_last={self.drop_last}, "
                f"epoch={self.epoch})")

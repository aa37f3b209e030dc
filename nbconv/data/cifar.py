"""CIFAR-10 from the binary batches (``cifar-10-batches-bin``).

Each ``.bin`` file is a sequence of 3073-byte records: one label byte (0..9), then 3072 pixel
bytes, the 1024 red, 1024 green and 1024 blue values of a 32x32 image in row-major order. The
training split is ``data_batch_1.bin`` .. ``data_batch_5.bin`` (in that order), the test split
``test_batch.bin``.

The python version (``cifar-10-batches-py``: pickled dicts) is read only with
``allow_pickle=True``, because unpickling a file can execute arbitrary code.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np

__all__ = ["load_cifar10", "CIFAR10_CLASSES"]

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")

_RECORD = 1 + 3 * 32 * 32
_FILES = {
    "train": [f"data_batch_{i}" for i in range(1, 6)],
    "test": ["test_batch"],
}


def _bin_dir(root: Path) -> Path | None:
    for d in (root, root / "cifar-10-batches-bin"):
        if any((d / f"{n}.bin").is_file() for s in _FILES.values() for n in s):
            return d
    return None


def _py_dir(root: Path) -> Path | None:
    for d in (root, root / "cifar-10-batches-py"):
        if any((d / n).is_file() for s in _FILES.values() for n in s):
            return d
    return None


def _read_bin(path: Path) -> tuple[np.ndarray, np.ndarray]:
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % _RECORD:
        raise ValueError(f"load_cifar10: {path} has {raw.size} bytes, which is not a positive "
                         f"multiple of the {_RECORD}-byte record (1 label byte + 3072 pixels)")
    rec = raw.reshape(-1, _RECORD)
    return rec[:, 1:].reshape(-1, 3, 32, 32), rec[:, 0].astype(np.int64)


def _read_pickle(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            d = pickle.load(f, encoding="bytes")  # only reached with allow_pickle=True
    except (OSError, MemoryError):
        raise
    except Exception as e:  # truncated or corrupted: EOFError, UnpicklingError, ...
        raise ValueError(f"load_cifar10: {path} is not a readable CIFAR-10 pickle (truncated "
                         f"or corrupted: {type(e).__name__}: {e})") from e
    if not isinstance(d, dict):
        raise ValueError(f"load_cifar10: {path} does not hold a dict (got {type(d).__name__})")
    d = {(k.decode() if isinstance(k, bytes) else k): v for k, v in d.items()}
    if "data" not in d or "labels" not in d:
        raise ValueError(f"load_cifar10: {path} lacks the 'data'/'labels' entries "
                         f"(keys: {sorted(map(str, d))})")
    data = np.asarray(d["data"])
    labels = np.asarray(d["labels"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != _RECORD - 1:
        raise ValueError(f"load_cifar10: {path}: 'data' should be uint8 of shape (N, 3072), got "
                         f"{data.dtype} {data.shape}")
    if labels.shape != (data.shape[0],) or labels.dtype.kind not in "iu":
        raise ValueError(f"load_cifar10: {path}: 'labels' should be {data.shape[0]} integers, got "
                         f"{labels.dtype} {labels.shape}")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def load_cifar10(root, split: str = "train",
                 allow_pickle: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Load CIFAR-10 (60000 32x32 colour images in 10 classes).

    Parameters
    ----------
    root : str or os.PathLike
        The ``cifar-10-batches-bin`` folder or its parent (likewise ``cifar-10-batches-py``).
    split : {"train", "test"}
        ``"train"``: ``data_batch_1..5`` (50000 images, concatenated in order); ``"test"``:
        ``test_batch`` (10000 images).
    allow_pickle : bool, default False
        When only the python version is present, read its pickles (``encoding="bytes"``).
        Unpickling can run arbitrary code: enable it only for files you trust. The binary
        version is always preferred when present.

    Returns
    -------
    X : ndarray of float32, shape (N, 3, 32, 32)
        RGB pixels divided by 255, in [0, 1].
    y : ndarray of int64, shape (N,)
        Labels in 0..9, names in ``CIFAR10_CLASSES``.

    Raises
    ------
    ValueError
        Bad ``split``; a ``.bin`` file whose size is not a multiple of 3073 bytes; a label
        > 9; only pickled batches present and ``allow_pickle`` is False; a malformed,
        truncated or corrupted pickle.
    FileNotFoundError
        Neither version found, or a batch of the split is missing (the message lists it).
    """
    op = "load_cifar10"
    if split not in _FILES:
        raise ValueError(f"{op}: argument 'split' must be 'train' or 'test', got {split!r}")
    root = Path(os.fspath(root))
    names = _FILES[split]
    bdir = _bin_dir(root)
    if bdir is not None:
        paths, reader = [bdir / f"{n}.bin" for n in names], _read_bin
    else:
        pdir = _py_dir(root)
        if pdir is None:
            raise FileNotFoundError(
                f"{op}: no CIFAR-10 batches under {str(root)!r}: looked for "
                f"{root}/[cifar-10-batches-bin/]{{data_batch_1..5,test_batch}}.bin and the "
                "python version cifar-10-batches-py")
        if not allow_pickle:
            raise ValueError(
                f"{op}: only the python (pickle) version of CIFAR-10 was found in {pdir}; "
                "unpickling can execute arbitrary code, so it is refused by default. Use the "
                "binary version (cifar-10-binary.tar.gz -> cifar-10-batches-bin) or pass "
                "allow_pickle=True if you trust the files")
        paths, reader = [pdir / n for n in names], _read_pickle
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{op}: missing {split} batch file(s): {', '.join(missing)}")
    xs, ys = zip(*(reader(p) for p in paths))
    y = np.concatenate(ys)
    if y.size and (y.min() < 0 or y.max() > 9):
        raise ValueError(f"{op}: labels outside 0..9 in {', '.join(map(str, paths))} "
                         f"(min {int(y.min())}, max {int(y.max())})")
    x = np.concatenate(xs).astype(np.float32)
    x /= np.float32(255)
    return x, y

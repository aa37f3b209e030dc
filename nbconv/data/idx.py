"""Reader for the IDX file format (MNIST, Fashion-MNIST, EMNIST, KMNIST ...).

An IDX file is a 4-byte magic number, ``ndim`` big-endian uint32 dimension sizes and the data in
C order, big-endian::

    byte 0-1   0x00 0x00
    byte 2     element type: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32,
               0x0E float64
    byte 3     ndim
    4*ndim     the dimensions, each a big-endian uint32
    ...        prod(dims) * itemsize bytes of data, nothing after them

Files may be gzip-compressed; compression is recognised by the gzip magic bytes ``1f 8b``, not
by the file name.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib

import numpy as np

__all__ = ["IDXFormatError", "load_idx", "IDX_DTYPES", "MAX_NDIM"]

#: IDX type code -> big-endian NumPy dtype of the stored elements.
IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

#: Largest number of dimensions accepted in a header; anything above is treated as corruption.
MAX_NDIM = 16

_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 24  # read gzip streams in 16 MiB pieces so that a bogus header cannot allocate


class IDXFormatError(ValueError):
    """A file is not a well-formed IDX file.

    Attributes
    ----------
    path : str
        The file that was read.
    reason : str
        What is wrong with it.
    """

    def __init__(self, path, reason: str):
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: not a valid IDX file: {reason}")


def _read_upto(f, n: int) -> bytes:
    """Read at most ``n`` bytes (fewer only at end of file), in bounded chunks."""
    parts = []
    left = n
    while left > 0:
        b = f.read(min(left, _CHUNK))
        if not b:
            break
        parts.append(b)
        left -= len(b)
    return b"".join(parts)


def load_idx(path) -> np.ndarray:
    """Read an IDX file (plain or gzip-compressed) into an array.

    Parameters
    ----------
    path : str or os.PathLike
        The file. Gzip compression is detected from the first two bytes (``1f 8b``), so
        ``train-images-idx3-ubyte`` may be compressed and ``x.gz`` may be plain.

    Returns
    -------
    ndarray, shape given by the header's dimensions
        A new, writable, native-byte-order array of the header's element type: uint8 (0x08),
        int8 (0x09), int16 (0x0B), int32 (0x0C), float32 (0x0D) or float64 (0x0E). MNIST images
        come back as uint8 of shape (N, 28, 28), labels as uint8 of shape (N,).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    IDXFormatError
        (a ``ValueError``) with the path and the reason, if the magic number's first two bytes
        are not zero, the type code is unknown, ``ndim`` is 0 or larger than ``MAX_NDIM`` (16),
        the file ends inside the header or before ``prod(dims)`` elements, bytes follow the data,
        or a gzip stream is corrupt.

    Examples
    --------
    >>> import gzip, os, tempfile
    >>> import numpy as np
    >>> from nbconv.data import load_idx
    >>> raw = bytes([0, 0, 0x08, 2, 0, 0, 0, 2, 0, 0, 0, 3]) + bytes(range(6))
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = os.path.join(d, "tiny-idx2-ubyte")
    ...     with gzip.open(p, "wb") as f:
    ...         _ = f.write(raw)
    ...     a = load_idx(p)
    >>> a.dtype, a.shape
    (dtype('uint8'), (2, 3))
    >>> a.tolist()
    [[0, 1, 2], [3, 4, 5]]
    """
    spath = os.fspath(path)
    if not os.path.exists(spath):
        raise FileNotFoundError(f"IDX file not found: {spath}")
    with open(spath, "rb") as raw:
        compressed = raw.read(2) == _GZIP_MAGIC
    try:
        if compressed:
            with gzip.open(spath, "rb") as f:
                return _parse(f, spath, size=None)
        with open(spath, "rb") as f:
            return _parse(f, spath, size=os.fstat(f.fileno()).st_size)
    except (EOFError, OSError, zlib.error) as e:
        if isinstance(e, FileNotFoundError) or not compressed:
            raise
        # gzip.BadGzipFile is an OSError; a truncated stream gives EOFError.
        raise IDXFormatError(spath, f"corrupt gzip stream ({type(e).__name__}: {e})") from e


def _parse(f, path: str, size: int | None) -> np.ndarray:
    """Parse an open IDX stream; ``size`` is the file length when known (plain files)."""
    magic = _read_upto(f, 4)
    if len(magic) < 4:
        raise IDXFormatError(path, f"file is {len(magic)} bytes long, shorter than the 4-byte "
                             "magic number")
    if magic[0] != 0 or magic[1] != 0:
        raise IDXFormatError(path, f"bad magic number {magic.hex()} (the first two bytes must "
                             "be 00 00)")
    code, ndim = magic[2], magic[3]
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise IDXFormatError(path, f"unknown element type code 0x{code:02X} (known: {known})")
    if ndim == 0 or ndim > MAX_NDIM:
        raise IDXFormatError(path, f"number of dimensions is {ndim}, expected 1..{MAX_NDIM}")
    header = _read_upto(f, 4 * ndim)
    if len(header) < 4 * ndim:
        raise IDXFormatError(path, f"file ends inside the header ({4 + len(header)} bytes, "
                             f"header of {ndim} dimensions needs {4 + 4 * ndim})")
    dims = tuple(int(d) for d in np.frombuffer(header, dtype=">u4"))
    dtype = IDX_DTYPES[code]
    nbytes = math.prod(dims) * dtype.itemsize
    hlen = 4 + 4 * ndim
    if size is not None and size != hlen + nbytes:
        what = "short" if size < hlen + nbytes else "has trailing bytes"
        raise IDXFormatError(path, f"file {what}: dims {dims} of {dtype.name} need {hlen + nbytes}"
                             f" bytes, the file has {size}")
    data = _read_upto(f, nbytes)
    if len(data) < nbytes:
        raise IDXFormatError(path, f"file short: dims {dims} of {dtype.name} need {nbytes} data "
                             f"bytes, only {len(data)} present")
    extra = _read_upto(f, 1)
    if extra:
        raise IDXFormatError(path, f"file has trailing bytes after the {nbytes} data bytes of "
                             f"dims {dims}")
    out = np.frombuffer(data, dtype=dtype).reshape(dims)
    return out.astype(dtype.newbyteorder("="))  # copy: writable, native byte order

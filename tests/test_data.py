"""Tests for nbconv.data: IDX/MNIST/CIFAR readers, digits, DataLoader and transforms.

Every data file is built here in ``tmp_path`` with an independent writer (struct + gzip), so the
suite needs no downloads. The Debian Fashion-MNIST check runs only where the package is installed.
"""

import gzip
import pickle
import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import nbconv.data as nd
from nbconv.data import transforms as T

# --------------------------------------------------------------------------------------------
# independent writers

_CODES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D,
          np.float64: 0x0E}


def idx_bytes(a, code=None, ndim=None, dims=None):
    a = np.asarray(a)
    code = _CODES[a.dtype.type] if code is None else code
    dims = a.shape if dims is None else dims
    ndim = len(dims) if ndim is None else ndim
    head = bytes([0, 0, code, ndim]) + b"".join(struct.pack(">I", d) for d in dims)
    return head + a.astype(a.dtype.newbyteorder(">")).tobytes()


def write(path, data, gz=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def write_mnist(d, n_train=7, n_test=4, gz=False, dotted=False, seed=0, h=28, w=28):
    """Write a tiny MNIST-like set into directory d; return the arrays written."""
    rng = np.random.default_rng(seed)
    out = {}
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        img = rng.integers(0, 256, size=(n, h, w), dtype=np.uint8)
        lab = rng.integers(0, 10, size=n, dtype=np.uint8)
        sep = "." if dotted else "-"
        ext = ".gz" if gz else ""
        write(d / f"{prefix}-images{sep}idx3-ubyte{ext}", idx_bytes(img), gz)
        write(d / f"{prefix}-labels{sep}idx1-ubyte{ext}", idx_bytes(lab), gz)
        out[split] = (img, lab)
    return out


# --------------------------------------------------------------------------------------------
# load_idx

_dtypes = st.sampled_from([np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])


@given(dtype=_dtypes, shape=st.lists(st.integers(0, 5), min_size=1, max_size=4),
       gz=st.booleans(), seed=st.integers(0, 2**16))
def test_idx_round_trip(tmp_path_factory, dtype, shape, gz, seed):
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        a = rng.standard_normal(shape).astype(dtype)
    else:
        info = np.iinfo(dtype)
        a = rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)
    p = write(tmp_path_factory.mktemp("idx") / "f-idx", idx_bytes(a), gz)
    b = nd.load_idx(p)
    assert b.dtype == np.dtype(dtype) and b.dtype.isnative
    assert b.shape == tuple(shape)
    np.testing.assert_array_equal(b, a)
    assert b.flags.writeable and b.flags.c_contiguous


def test_idx_gzip_detected_by_content_not_name(tmp_path):
    a = np.arange(12, dtype=np.int16).reshape(3, 4) - 6
    p1 = write(tmp_path / "plain.gz", idx_bytes(a))            # named .gz, not compressed
    p2 = write(tmp_path / "compressed-idx2", idx_bytes(a), gz=True)  # compressed, no .gz
    np.testing.assert_array_equal(nd.load_idx(p1), a)
    np.testing.assert_array_equal(nd.load_idx(str(p2)), a)


def test_idx_big_endian_decoding(tmp_path):
    # hand-written bytes: int32 0x01020304 and float64 1.5, both big-endian
    p = write(tmp_path / "i4", bytes([0, 0, 0x0C, 1, 0, 0, 0, 1, 1, 2, 3, 4]))
    assert nd.load_idx(p).tolist() == [0x01020304]
    p = write(tmp_path / "f8", bytes([0, 0, 0x0E, 1, 0, 0, 0, 1]) + struct.pack(">d", 1.5))
    assert nd.load_idx(p).tolist() == [1.5]


_GOOD = idx_bytes(np.arange(6, dtype=np.uint8).reshape(2, 3))


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("data, reason", [
    (b"\x01\x00" + _GOOD[2:], "magic"),
    (b"\x00\x01" + _GOOD[2:], "magic"),
    (_GOOD[:2] + b"\x07" + _GOOD[3:], "type code 0x07"),
    (_GOOD[:2] + b"\x0a" + _GOOD[3:], "type code 0x0A"),
    (_GOOD[:3] + b"\x00", "dimensions is 0"),
    (_GOOD[:3] + b"\xc8" + _GOOD[4:], "dimensions is 200"),
    (b"", "shorter than the 4-byte"),
    (b"\x00\x00", "shorter than the 4-byte"),
    (_GOOD[:10], "inside the header"),
    (_GOOD[:-1], "short"),
    (_GOOD[:12], "short"),
    (_GOOD + b"\x00", "trailing"),
    (_GOOD + b"garbage!", "trailing"),
    (idx_bytes(np.zeros(3, np.float32), dims=(4,)), "short"),
    (idx_bytes(np.zeros(3, np.float32), dims=(2,)), "trailing"),
    (idx_bytes(np.zeros(1, np.uint8), dims=(2**31, 2**31)), "short"),
])
def test_idx_format_errors(tmp_path, data, reason, gz):
    p = write(tmp_path / "bad-idx", data, gz)
    with pytest.raises(nd.IDXFormatError, match=reason) as ei:
        nd.load_idx(p)
    assert isinstance(ei.value, ValueError)
    assert str(p) in str(ei.value) and ei.value.path == str(p)


def test_idx_corrupt_gzip(tmp_path):
    blob = gzip.compress(_GOOD)
    p = write(tmp_path / "trunc.gz", blob[: len(blob) // 2])
    with pytest.raises(nd.IDXFormatError, match="gzip"):
        nd.load_idx(p)
    p = write(tmp_path / "flipped.gz", blob[:12] + bytes([blob[12] ^ 0xFF]) + blob[13:])
    with pytest.raises(nd.IDXFormatError):
        nd.load_idx(p)


def test_idx_missing_file(tmp_path):
    p = tmp_path / "nope-idx3-ubyte"
    with pytest.raises(FileNotFoundError, match="nope-idx3-ubyte"):
        nd.load_idx(p)


# --------------------------------------------------------------------------------------------
# MNIST / Fashion-MNIST


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("dotted", [False, True])
@pytest.mark.parametrize("sub", ["", "MNIST/raw", "mnist"])
def test_load_mnist(tmp_path, gz, dotted, sub):
    ref = write_mnist(tmp_path / sub if sub else tmp_path, gz=gz, dotted=dotted)
    for split in ("train", "test"):
        X, y = nd.load_mnist(tmp_path, split=split)
        img, lab = ref[split]
        assert X.dtype == np.float32 and X.shape == (img.shape[0], 1, 28, 28)
        assert y.dtype == np.int64 and y.shape == (img.shape[0],)
        np.testing.assert_allclose(X[:, 0], img.astype(np.float64) / 255.0, rtol=1e-6, atol=0)
        assert X.min() >= 0 and X.max() <= 1
        np.testing.assert_array_equal(y, lab)
    assert nd.find_mnist(tmp_path) == (tmp_path / sub if sub else tmp_path)


def test_load_mnist_extremes_scale_to_0_and_1(tmp_path):
    img = np.array([[[0, 255], [128, 1]]], dtype=np.uint8)
    write(tmp_path / "train-images-idx3-ubyte", idx_bytes(img))
    write(tmp_path / "train-labels-idx1-ubyte", idx_bytes(np.array([9], np.uint8)))
    X, y = nd.load_mnist(tmp_path)
    assert X.shape == (1, 1, 2, 2)
    assert X[0, 0].tolist() == [[0.0, 1.0], [np.float32(128 / 255), np.float32(1 / 255)]]
    assert y.tolist() == [9]


def test_load_mnist_bad_split(tmp_path):
    write_mnist(tmp_path)
    for bad in ("val", "t10k", None, "TRAIN"):
        with pytest.raises(ValueError, match="'split'"):
            nd.load_mnist(tmp_path, split=bad)


def test_load_mnist_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError) as ei:
        nd.load_mnist(tmp_path)
    msg = str(ei.value)
    assert "train-images-idx3-ubyte" in msg and "train-labels-idx1-ubyte.gz" in msg
    assert "MNIST/raw" in msg
    # labels present but images only for the other split
    write_mnist(tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte").unlink()
    nd.load_mnist(tmp_path, "train")
    with pytest.raises(FileNotFoundError, match="t10k-images"):
        nd.load_mnist(tmp_path, "test")
    assert nd.find_mnist(tmp_path) is None
    assert nd.find_mnist(None) is None


def test_load_mnist_count_mismatch(tmp_path):
    img = np.zeros((3, 28, 28), np.uint8)
    write(tmp_path / "train-images-idx3-ubyte", idx_bytes(img))
    write(tmp_path / "train-labels-idx1-ubyte", idx_bytes(np.zeros(4, np.uint8)))
    with pytest.raises(ValueError, match="3 images.*4 labels"):
        nd.load_mnist(tmp_path)


def test_load_mnist_label_out_of_range(tmp_path):
    write(tmp_path / "train-images-idx3-ubyte", idx_bytes(np.zeros((2, 28, 28), np.uint8)))
    write(tmp_path / "train-labels-idx1-ubyte", idx_bytes(np.array([3, 10], np.uint8)))
    with pytest.raises(ValueError, match=r"0\.\.9"):
        nd.load_mnist(tmp_path)


@pytest.mark.parametrize("img, lab", [
    (np.zeros((2, 28), np.uint8), np.zeros(2, np.uint8)),          # images not 3-D
    (np.zeros((2, 28, 28), np.float32), np.zeros(2, np.uint8)),    # images not uint8
    (np.zeros((2, 28, 28), np.uint8), np.zeros((2, 1), np.uint8)),  # labels not 1-D
])
def test_load_mnist_wrong_content(tmp_path, img, lab):
    write(tmp_path / "train-images-idx3-ubyte", idx_bytes(img))
    write(tmp_path / "train-labels-idx1-ubyte", idx_bytes(lab))
    with pytest.raises(ValueError, match="should hold"):
        nd.load_mnist(tmp_path)


def test_load_mnist_corrupt_file_is_idx_error(tmp_path):
    write_mnist(tmp_path)
    p = tmp_path / "train-labels-idx1-ubyte"
    p.write_bytes(p.read_bytes() + b"\x00")
    with pytest.raises(nd.IDXFormatError, match="trailing"):
        nd.load_mnist(tmp_path)


@pytest.mark.parametrize("sub", ["", "fashion-mnist", "FashionMNIST/raw"])
def test_load_fashion_mnist(tmp_path, sub):
    d = tmp_path / sub if sub else tmp_path
    ref = write_mnist(d, gz=True, seed=3)
    X, y = nd.load_fashion_mnist(tmp_path, split="test")
    np.testing.assert_array_equal(y, ref["test"][1])
    np.testing.assert_allclose(X[:, 0] * 255, ref["test"][0], atol=1e-4)
    assert nd.find_fashion_mnist(tmp_path) == d
    with pytest.raises(ValueError, match="'split'"):
        nd.load_fashion_mnist(tmp_path, split="valid")


def test_fashion_mnist_default_root_is_debian(monkeypatch, tmp_path):
    from nbconv.data import mnist as m

    assert str(nd.DEBIAN_FASHION_MNIST_DIR) == "/usr/share/datasets/fashion-mnist"
    monkeypatch.setattr(m, "DEBIAN_FASHION_MNIST_DIR", tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        nd.load_fashion_mnist()
    assert nd.find_fashion_mnist() is None
    ref = write_mnist(tmp_path / "absent", n_test=2, gz=True)
    X, y = nd.load_fashion_mnist(split="test")
    np.testing.assert_array_equal(y, ref["test"][1])


@pytest.mark.skipif(nd.find_fashion_mnist() is None,
                    reason="Debian package dataset-fashion-mnist not installed")
def test_debian_fashion_mnist_real_files():
    X, y = nd.load_fashion_mnist(split="test")
    assert X.shape == (10000, 1, 28, 28) and X.dtype == np.float32
    assert float(X.min()) == 0.0 and float(X.max()) == 1.0
    assert np.bincount(y).tolist() == [1000] * 10


# --------------------------------------------------------------------------------------------
# CIFAR-10


def cifar_records(n, seed, label_max=9):
    rng = np.random.default_rng(seed)
    pix = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    lab = rng.integers(0, label_max + 1, size=n, dtype=np.uint8)
    return pix, lab


def write_cifar_bin(d, n=3):
    d.mkdir(parents=True, exist_ok=True)
    ref = {}
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        pix, lab = cifar_records(n + i % 2, seed=i)
        (d / f"{name}.bin").write_bytes(np.concatenate([lab[:, None], pix], axis=1).tobytes())
        ref[name] = (pix, lab)
    return ref


def write_cifar_py(d, n=3):
    d.mkdir(parents=True, exist_ok=True)
    ref = {}
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        pix, lab = cifar_records(n, seed=10 + i)
        with open(d / name, "wb") as f:
            pickle.dump({b"batch_label": b"x", b"labels": lab.tolist(), b"data": pix}, f)
        ref[name] = (pix, lab)
    return ref


@pytest.mark.parametrize("point_at_folder", [False, True])
def test_load_cifar10_binary(tmp_path, point_at_folder):
    folder = tmp_path / "cifar-10-batches-bin"
    ref = write_cifar_bin(folder)
    root = folder if point_at_folder else tmp_path
    X, y = nd.load_cifar10(root, "train")
    names = [f"data_batch_{k}" for k in range(1, 6)]
    pix = np.concatenate([ref[n][0] for n in names])
    lab = np.concatenate([ref[n][1] for n in names])
    assert X.shape == (pix.shape[0], 3, 32, 32) and X.dtype == np.float32
    assert y.dtype == np.int64
    np.testing.assert_array_equal(y, lab)
    # channel-major: first 1024 bytes are red, row-major
    np.testing.assert_allclose(X[:, 0].reshape(-1, 1024), pix[:, :1024] / 255.0, rtol=1e-6)
    np.testing.assert_allclose(X.reshape(-1, 3072), pix / 255.0, rtol=1e-6)
    Xt, yt = nd.load_cifar10(root, split="test")
    np.testing.assert_array_equal(yt, ref["test_batch"][1])
    assert Xt.shape == (ref["test_batch"][0].shape[0], 3, 32, 32)


def test_load_cifar10_record_size_mismatch(tmp_path):
    ref = write_cifar_bin(tmp_path)
    p = tmp_path / "test_batch.bin"
    p.write_bytes(p.read_bytes()[:-5])
    with pytest.raises(ValueError, match="3073"):
        nd.load_cifar10(tmp_path, "test")
    p.write_bytes(b"")
    with pytest.raises(ValueError, match="3073"):
        nd.load_cifar10(tmp_path, "test")
    assert len(ref) == 6


def test_load_cifar10_bad_label(tmp_path):
    write_cifar_bin(tmp_path)
    pix, lab = cifar_records(2, 0)
    lab[1] = 10
    (tmp_path / "test_batch.bin").write_bytes(
        np.concatenate([lab[:, None], pix], axis=1).tobytes())
    with pytest.raises(ValueError, match=r"0\.\.9"):
        nd.load_cifar10(tmp_path, "test")


def test_load_cifar10_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-bin"):
        nd.load_cifar10(tmp_path)
    write_cifar_bin(tmp_path / "cifar-10-batches-bin")
    (tmp_path / "cifar-10-batches-bin" / "data_batch_4.bin").unlink()
    nd.load_cifar10(tmp_path, "test")
    with pytest.raises(FileNotFoundError, match="data_batch_4.bin"):
        nd.load_cifar10(tmp_path, "train")
    with pytest.raises(ValueError, match="'split'"):
        nd.load_cifar10(tmp_path, "validation")


def test_load_cifar10_pickle_refused_then_allowed(tmp_path):
    ref = write_cifar_py(tmp_path / "cifar-10-batches-py")
    with pytest.raises(ValueError, match="allow_pickle"):
        nd.load_cifar10(tmp_path)
    X, y = nd.load_cifar10(tmp_path, "train", allow_pickle=True)
    names = [f"data_batch_{k}" for k in range(1, 6)]
    np.testing.assert_array_equal(y, np.concatenate([ref[n][1] for n in names]))
    np.testing.assert_allclose(X.reshape(-1, 3072) * 255,
                               np.concatenate([ref[n][0] for n in names]), atol=1e-4)
    assert X.dtype == np.float32 and y.dtype == np.int64
    Xt, yt = nd.load_cifar10(tmp_path / "cifar-10-batches-py", "test", allow_pickle=True)
    np.testing.assert_array_equal(yt, ref["test_batch"][1])


def test_load_cifar10_prefers_binary(tmp_path):
    ref = write_cifar_bin(tmp_path / "cifar-10-batches-bin")
    write_cifar_py(tmp_path / "cifar-10-batches-py")
    X, y = nd.load_cifar10(tmp_path, "test")  # no pickle needed
    np.testing.assert_array_equal(y, ref["test_batch"][1])


def test_load_cifar10_malformed_pickle(tmp_path):
    write_cifar_py(tmp_path)
    with open(tmp_path / "test_batch", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, f)
    with pytest.raises(ValueError, match="3072"):
        nd.load_cifar10(tmp_path, "test", allow_pickle=True)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "foreign class"])
def test_load_cifar10_broken_pickle_is_a_value_error(tmp_path, damage):
    """As the docstring promises: a truncated or corrupted pickle is a ValueError naming the
    file, never pickle's own EOFError/UnpicklingError."""
    write_cifar_py(tmp_path)
    path = tmp_path / "test_batch"
    whole = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(whole[:len(whole) // 2])
    elif damage == "garbage":
        path.write_bytes(b"\x80\x04not a pickle at all")
    elif damage == "empty":
        path.write_bytes(b"")
    else:  # a global that does not exist: unpickling looks it up and fails
        path.write_bytes(b"cno_such_module_nbconv\nThing\n.")
    with pytest.raises(ValueError, match=r"test_batch.*(truncated or corrupted)"):
        nd.load_cifar10(tmp_path, "test", allow_pickle=True)
    nd.load_cifar10(tmp_path, "train", allow_pickle=True)  # the intact batches still load


# --------------------------------------------------------------------------------------------
# DataLoader


def _batches(loader):
    return [(xb.copy(), yb.copy()) for xb, yb in loader]


@given(n=st.integers(0, 23), bs=st.integers(1, 9), drop_last=st.booleans(),
       shuffle=st.booleans(), seed=st.integers(0, 2**32))
def test_loader_partition(n, bs, drop_last, shuffle, seed):
    X = np.arange(n * 3, dtype=np.float64).reshape(n, 3)
    y = np.arange(n)
    loader = nd.DataLoader(X, y, bs, shuffle=shuffle, seed=seed, drop_last=drop_last)
    batches = _batches(loader)
    expect_len = n // bs if drop_last else -(-n // bs)
    assert len(loader) == len(batches) == expect_len
    assert all(len(yb) == bs for _, yb in batches[:-1])
    seen = np.concatenate([yb for _, yb in batches]) if batches else np.zeros(0, int)
    assert len(set(seen.tolist())) == len(seen)                 # no repeats
    assert len(seen) == ((n // bs) * bs if drop_last else n)
    if not shuffle:
        np.testing.assert_array_equal(seen, np.arange(len(seen)))
    for xb, yb in batches:                                      # x and y stay aligned
        np.testing.assert_array_equal(xb, X[yb])


def test_loader_determinism_and_epochs():
    X = np.random.default_rng(0).standard_normal((50, 1, 2, 2)).astype(np.float32)
    y = np.arange(50)
    a = nd.DataLoader(X, y, 8, seed=123)
    b = nd.DataLoader(X, y, 8, seed=123)
    e0a, e1a, e2a = _batches(a), _batches(a), _batches(a)
    e0b = _batches(b)
    assert a.epoch == 3 and b.epoch == 1
    for (xa, ya), (xb, yb) in zip(e0a, e0b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    orders = [np.concatenate([yb for _, yb in e]) for e in (e0a, e1a, e2a)]
    assert not np.array_equal(orders[0], orders[1])
    assert not np.array_equal(orders[1], orders[2])
    b.set_epoch(2)                                                  # jump (resume)
    np.testing.assert_array_equal(np.concatenate([yb for _, yb in b]), orders[2])
    c = nd.DataLoader(X, y, 8, seed=124)
    assert not np.array_equal(np.concatenate([yb for _, yb in c]), orders[0])
    np.testing.assert_array_equal(a.order(1), orders[1])


def test_loader_order_depends_only_on_seed_and_epoch():
    # the permutation must not depend on batch size, drop_last or the history of the loader
    X, y = np.zeros((30, 2)), np.arange(30)
    a = nd.DataLoader(X, y, 30, seed=7)
    b = nd.DataLoader(X, y, 4, seed=7, drop_last=True)
    for _ in range(3):
        _batches(b)
    a.set_epoch(3)
    full = next(iter(a))[1]
    np.testing.assert_array_equal(np.concatenate([yb for _, yb in b]), full[:28])


def test_loader_break_does_not_advance_epoch():
    loader = nd.DataLoader(np.zeros((10, 1)), np.arange(10), 3, seed=0)
    first = next(iter(loader))[1].copy()
    assert loader.epoch == 0
    for _xb, _yb in loader:
        break
    assert loader.epoch == 0
    np.testing.assert_array_equal(next(iter(loader))[1], first)


def test_loader_state_dict_and_random_seed():
    X, y = np.zeros((20, 1)), np.arange(20)
    a = nd.DataLoader(X, y, 5)                       # seed drawn once
    assert isinstance(a.seed, int) and a.seed >= 0
    e0 = np.concatenate([yb for _, yb in a])
    e0_again = np.concatenate([yb for _, yb in nd.DataLoader(X, y, 5, seed=a.seed)])
    np.testing.assert_array_equal(e0, e0_again)
    state = a.state_dict()
    assert state == {"seed": a.seed, "epoch": 1}
    b = nd.DataLoader(X, y, 5)
    b.load_state_dict(state)
    np.testing.assert_array_equal(np.concatenate([yb for _, yb in b]),
                                  np.concatenate([yb for _, yb in a]))
    assert nd.DataLoader(X, y, 5).seed != nd.DataLoader(X, y, 5).seed


def test_loader_batches_are_contiguous_copies():
    X = np.asfortranarray(np.arange(24, dtype=np.float32).reshape(6, 4))
    X_before = X.copy()
    for shuffle in (False, True):
        for xb, _yb in nd.DataLoader(X, np.arange(6), 4, shuffle=shuffle, seed=0):
            assert xb.flags.c_contiguous
            xb[...] = -1
    np.testing.assert_array_equal(X, X_before)


def test_loader_transform_rng_is_reproducible():
    def noise(xb, rng):
        return xb + rng.random(xb.shape).astype(xb.dtype)

    X, y = np.zeros((12, 1, 2, 2), np.float32), np.arange(12)
    a = nd.DataLoader(X, y, 5, seed=3, transform=noise)
    e0, e1 = _batches(a), _batches(a)
    b = nd.DataLoader(X, y, 5, seed=3, transform=noise)
    b.set_epoch(1)
    for (xa, _), (xb, _) in zip(e1, _batches(b)):
        np.testing.assert_array_equal(xa, xb)
    assert not np.array_equal(e0[0][0], e1[0][0])
    assert not np.array_equal(e0[0][0], e0[1][0])   # batches get different draws
    np.testing.assert_array_equal(X, 0)             # input untouched


@pytest.mark.parametrize("kwargs, exc, match", [
    ({"y": np.arange(9)}, ValueError, "'X' and 'y'"),
    ({"batch_size": 0}, ValueError, "'batch_size'"),
    ({"batch_size": -3}, ValueError, "'batch_size'"),
    ({"batch_size": 2.0}, TypeError, "'batch_size'"),
    ({"batch_size": True}, TypeError, "'batch_size'"),
    ({"seed": -1}, ValueError, "'seed'"),
    ({"seed": 1.5}, TypeError, "'seed'"),
    ({"transform": 3}, TypeError, "'transform'"),
    ({"X": np.float32(1.0)}, ValueError, "'X' and 'y'"),
])
def test_loader_errors(kwargs, exc, match):
    args = {"X": np.zeros((10, 2)), "y": np.arange(10), "batch_size": 4}
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        nd.DataLoader(**args)
    loader = nd.DataLoader(np.zeros((10, 2)), np.arange(10), 4)
    with pytest.raises(ValueError, match="'epoch'"):
        loader.set_epoch(-1)


# --------------------------------------------------------------------------------------------
# transforms


def _rand_batch(seed=0, shape=(6, 3, 5, 7), dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def test_flip_twice_is_identity_and_p0_is_identity():
    xb = _rand_batch()
    before = xb.copy()
    f = T.random_horizontal_flip(p=1.0)
    once = f(xb, np.random.default_rng(1))
    np.testing.assert_array_equal(once, xb[..., ::-1])
    np.testing.assert_array_equal(f(once, np.random.default_rng(2)), xb)
    np.testing.assert_array_equal(T.random_horizontal_flip(p=0.0)(xb, np.random.default_rng(0)),
                                  xb)
    np.testing.assert_array_equal(xb, before)            # input not modified
    assert once.dtype == xb.dtype


def test_flip_is_per_image():
    xb = _rand_batch(shape=(400, 1, 1, 3), dtype=np.float64)
    out = T.random_horizontal_flip(0.5)(xb, np.random.default_rng(5))
    flipped = np.all(out == xb[..., ::-1], axis=(1, 2, 3))
    kept = np.all(out == xb, axis=(1, 2, 3))
    assert np.all(flipped | kept)
    assert 120 < flipped.sum() < 280
    u = np.random.default_rng(5).random(400)                 # documented draw
    np.testing.assert_array_equal(flipped, u < 0.5)


@pytest.mark.parametrize("padding", [0, 1, 3, (2, 0), (0, 4)])
def test_random_crop_semantics(padding):
    xb = _rand_batch(shape=(8, 2, 5, 6)) + 10.0             # nonzero everywhere
    before = xb.copy()
    out = T.random_crop(padding)(xb, np.random.default_rng(11))
    assert out.shape == xb.shape and out.dtype == xb.dtype
    np.testing.assert_array_equal(xb, before)
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    padded = np.pad(xb, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    # every output image is some window of its own padded image
    for i in range(xb.shape[0]):
        assert any(np.array_equal(out[i], padded[i, :, a:a + 5, b:b + 6])
                   for a in range(2 * ph + 1) for b in range(2 * pw + 1))
    # and the window is the documented draw
    rng = np.random.default_rng(11)
    oy = rng.integers(0, 2 * ph + 1, size=8)
    ox = rng.integers(0, 2 * pw + 1, size=8)
    for i in range(8):
        np.testing.assert_array_equal(out[i], padded[i, :, oy[i]:oy[i] + 5, ox[i]:ox[i] + 6])
    if padding == 0:
        np.testing.assert_array_equal(out, xb)


def test_random_crop_offsets_vary():
    xb = np.ones((200, 1, 4, 4), np.float32)
    out = T.random_crop(2)(xb, np.random.default_rng(0))
    zeros = (out == 0).sum(axis=(1, 2, 3))
    assert len(set(zeros.tolist())) > 3       # different shifts give different zero borders
    assert (zeros == 0).any()                  # the centred crop occurs


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_normalize(dtype):
    xb = _rand_batch(shape=(4, 3, 2, 2), dtype=dtype)
    mean, std = [0.1, -0.2, 0.3], [0.5, 2.0, 1.5]
    out = T.normalize(mean, std)(xb, None)
    assert out.dtype == dtype and out.shape == xb.shape
    for c in range(3):
        np.testing.assert_allclose(out[:, c], (xb[:, c].astype(np.float64) - mean[c]) / std[c],
                                   rtol=1e-6)
    out = T.normalize(0.5, 0.25)(xb, np.random.default_rng(0))
    np.testing.assert_allclose(out, (xb.astype(np.float64) - 0.5) / 0.25, rtol=1e-6)
    ints = T.normalize(1, 2)(np.full((1, 1, 1, 1), 5, np.uint8), None)
    assert ints.dtype == np.float32 and ints.item() == 2.0


@pytest.mark.parametrize("make, match", [
    (lambda: T.normalize([0.0, 0.0], [1.0, 1.0])(np.zeros((1, 3, 2, 2)), None), "3 channels"),
    (lambda: T.normalize(0.0, 0.0), "'std'"),
    (lambda: T.normalize(0.0, [1.0, -1.0]), "'std'"),
    (lambda: T.normalize(np.nan, 1.0), "'mean'"),
    (lambda: T.normalize(np.zeros((2, 2)), 1.0), "'mean'"),
    (lambda: T.random_crop(-1), "'padding'"),
    (lambda: T.random_crop((1, 2, 3)), "'padding'"),
    (lambda: T.random_horizontal_flip(1.5), "'p'"),
    (lambda: T.random_horizontal_flip(-0.1), "'p'"),
    (lambda: T.random_crop(1)(np.zeros((2, 3, 4)), np.random.default_rng(0)), "'xb'"),
    (lambda: T.random_horizontal_flip()(np.zeros(3), np.random.default_rng(0)), "'xb'"),
])
def test_transform_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_compose_order_and_shared_rng():
    xb = _rand_batch(shape=(5, 1, 3, 3))
    t = T.compose(T.normalize(1.0, 2.0), T.random_horizontal_flip(1.0), T.normalize(0.0, 4.0))
    out = t(xb, np.random.default_rng(0))
    np.testing.assert_allclose(out, ((xb - 1.0) / 2.0)[..., ::-1] / 4.0, rtol=1e-6)
    crop_flip = T.compose(T.random_crop(1), T.random_horizontal_flip())
    r1 = crop_flip(xb, np.random.default_rng(9))
    rng = np.random.default_rng(9)
    r2 = T.random_horizontal_flip()(T.random_crop(1)(xb, rng), rng)
    np.testing.assert_array_equal(r1, r2)
    ident = T.compose()(xb, None)
    np.testing.assert_array_equal(ident, xb)
    assert ident is not xb
    with pytest.raises(TypeError, match="callable"):
        T.compose(T.normalize(0, 1), "flip")


def test_loader_with_augmentation_pipeline():
    X = _rand_batch(shape=(10, 3, 8, 8))
    y = np.arange(10)
    t = T.compose(T.random_crop(2), T.random_horizontal_flip(), T.normalize([0, 0, 0], [1, 1, 1]))
    a = nd.DataLoader(X, y, 4, seed=5, transform=t)
    b = nd.DataLoader(X, y, 4, seed=5, transform=t)
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
        assert xa.shape[1:] == (3, 8, 8) and xa.dtype == np.float32


# --------------------------------------------------------------------------------------------
# digits


def test_load_digits():
    sk = pytest.importorskip("sklearn.datasets",
                             reason="scikit-learn not installed (pip install nbconv[data])")
    X, y = nd.load_digits()
    assert X.shape == (1797, 1, 28, 28) and X.dtype == np.float32
    assert y.shape == (1797,) and y.dtype == np.int64
    assert X.min() >= 0.0 and X.max() <= 1.0 and X.max() > 0.9
    ref = sk.load_digits()
    np.testing.assert_array_equal(y, ref.target)
    # MNIST-like framing: a 4-pixel empty margin, the digit in the central 20x20
    inner = np.zeros((28, 28), bool)
    inner[4:24, 4:24] = True
    assert np.all(X[:, 0, ~inner] == 0)
    # the content is the 8x8 image: sampling the 20x20 box back at the 8 pixel centres
    # (2.5 px per source pixel) with bilinear weights recovers it closely
    centres = (np.arange(8) + 0.5) * 2.5 - 0.5          # in 20x20 pixel coordinates
    lo = np.floor(centres).astype(int)
    fr = centres - lo
    box = X[:, 0, 4:24, 4:24].astype(np.float64)
    rows = box[:, lo, :] * (1 - fr)[None, :, None] + box[:, np.minimum(lo + 1, 19), :] * fr[
        None, :, None]
    back = rows[:, :, lo] * (1 - fr) + rows[:, :, np.minimum(lo + 1, 19)] * fr
    err = np.abs(back - ref.images / 16.0)
    assert err.mean() < 0.05
    X2, y2 = nd.load_digits()
    np.testing.assert_array_equal(X, X2)


def test_load_digits_split():
    pytest.importorskip("sklearn", reason="scikit-learn not installed (pip install nbconv[data])")
    Xall, yall = nd.load_digits()
    Xtr, ytr = nd.load_digits(split="train")
    Xte, yte = nd.load_digits(split="test")
    assert len(ytr) + len(yte) == 1797
    assert abs(len(yte) - 0.2 * 1797) <= 10
    counts_all, counts_te = np.bincount(yall), np.bincount(yte, minlength=10)
    np.testing.assert_array_equal(counts_te, np.round(0.2 * counts_all).astype(int))
    # together the two parts are exactly the full set (as a multiset of (image, label) pairs)
    def rows(X, y):
        return sorted(x.tobytes() + bytes([int(t)]) for x, t in zip(X, y))

    assert rows(np.concatenate([Xtr, Xte]), np.concatenate([ytr, yte])) == rows(Xall, yall)
    Xte2, yte2 = nd.load_digits(split="test")
    np.testing.assert_array_equal(Xte, Xte2)
    Xte3, _ = nd.load_digits(split="test", seed=1)
    assert not np.array_equal(Xte, Xte3)
    _, y30 = nd.load_digits(split="test", test_fraction=0.3)
    assert abs(len(y30) - 0.3 * 1797) <= 10
    with pytest.raises(ValueError, match="'split'"):
        nd.load_digits(split="val")
    with pytest.raises(ValueError, match="'test_fraction'"):
        nd.load_digits(split="train", test_fraction=1.0)


def test_load_digits_import_error_message(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "sklearn" or name.startswith("sklearn."):
            raise ImportError("No module named 'sklearn'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match=r"pip install nbconv\[data\]"):
        nd.load_digits()

"""examples/train_cifar10.py end to end on a tiny CIFAR-10 binary folder the test writes, and
its refusal to run without the data set."""

import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

import nbconv as nc

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples/train_cifar10.py"


def _write_cifar_bin(folder: Path, per_batch: int) -> None:
    """The six batch files of ``cifar-10-batches-bin``: records of 1 label byte + 3072 pixel
    bytes; the class shows in the mean brightness of the red channel, so it can be learnt."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]:
        labels = rng.integers(0, 10, per_batch).astype(np.uint8)
        pixels = rng.integers(0, 60, (per_batch, 3, 32, 32)).astype(np.uint8)
        pixels[:, 0] += (labels * 20)[:, None, None].astype(np.uint8)
        records = np.concatenate([labels[:, None], pixels.reshape(per_batch, -1)], axis=1)
        (folder / f"{name}.bin").write_bytes(records.tobytes())


def _write_cifar_py(folder: Path, per_batch: int) -> None:
    """The python version (``cifar-10-batches-py``): pickled dicts of the same records."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name in [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]:
        labels = rng.integers(0, 10, per_batch)
        pixels = rng.integers(0, 256, (per_batch, 3072)).astype(np.uint8)
        with open(folder / name, "wb") as f:
            pickle.dump({b"labels": labels.tolist(), b"data": pixels}, f)


def _run(*args, cwd):
    # this checkout's nbconv, not whichever one is installed
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=900, env=env)


def test_train_cifar10_end_to_end(tmp_path):
    _write_cifar_bin(tmp_path / "cifar-10-batches-bin", per_batch=40)
    model, png = tmp_path / "c.h5", tmp_path / "c.png"
    out = _run("--data-dir", tmp_path, "--model", "simple", "--epochs", "2", "--batch-size",
               "20", "--optimizer", "adam", "--lr", "3e-3", "--out", model, "--plot", png,
               "--no-progress", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0].startswith("data set: CIFAR-10") and "200 training and 40 test" in lines[0]
    assert sum(line.startswith("epoch ") for line in lines) == 2
    m = re.fullmatch(r"test accuracy: (0\.\d{4}|1\.0000)", lines[-1])
    assert m, lines[-1]
    assert png.read_bytes()[:4] == b"\x89PNG"
    net, opt_state, meta = nc.load_state(model)
    assert meta["dataset"] == "CIFAR-10" and len(meta["mean"]) == 3 and opt_state is not None
    # the reported accuracy is the saved model's on the test batch, normalised as in training
    x, y = nc.data.load_cifar10(tmp_path, "test")
    x = (x - np.array(meta["mean"], np.float32)[:, None, None]) / np.array(
        meta["std"], np.float32)[:, None, None]
    net.eval()
    with nc.no_grad():
        acc = float(np.mean(net(x).argmax(axis=1) == y))
    assert abs(acc - float(m.group(1))) < 1e-4


def test_train_cifar10_without_data_says_so(tmp_path):
    for args in ([], ["--data-dir", tmp_path]):
        out = _run(*args, "--no-progress", cwd=tmp_path)
        assert out.returncode == 2
        assert "CIFAR-10 not" in out.stderr and "nothing was trained" in out.stderr
        assert "test accuracy" not in out.stdout
    assert not list(tmp_path.glob("*.h5"))


def test_train_cifar10_pickles_refused_then_allowed(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    _write_cifar_py(folder, per_batch=8)
    out = _run("--data-dir", tmp_path, "--no-progress", cwd=tmp_path)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "CIFAR-10 refused" in out.stderr and "not found" not in out.stderr
    assert "--allow-pickle" in out.stderr and "nothing was trained" in out.stderr
    model = tmp_path / "p.h5"
    out = _run("--data-dir", tmp_path, "--allow-pickle", "--model", "simple", "--epochs", "1",
               "--batch-size", "20", "--out", model, "--plot", tmp_path / "p.png",
               "--no-progress", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "40 training and 8 test" in out.stdout
    assert re.fullmatch(r"test accuracy: \d\.\d{4}", out.stdout.strip().splitlines()[-1])
    assert model.is_file()


def test_train_cifar10_truncated_pickle(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    _write_cifar_py(folder, per_batch=8)
    batch = folder / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:100])
    out = _run("--data-dir", tmp_path, "--allow-pickle", "--no-progress", cwd=tmp_path)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "CIFAR-10 refused" in out.stderr and "data_batch_3" in out.stderr
    assert "truncated or corrupted" in out.stderr and "Traceback" not in out.stderr

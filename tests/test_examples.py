"""The two example scripts run end to end: train LeNet briefly, then classify with the file."""

import gzip
import re
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np

import nbconv as nc

ROOT = Path(__file__).resolve().parents[1]


def _run(*args, cwd):
    out = subprocess.run([sys.executable, *map(str, args)], cwd=cwd, capture_output=True,
                         text=True, timeout=900)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def _write_idx(path, arr):
    arr = np.asarray(arr, np.uint8)
    header = struct.pack(">HBB", 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.tobytes())


def test_train_then_predict(tmp_path):
    model, png = tmp_path / "m.h5", tmp_path / "curve.png"
    out = _run(ROOT / "examples/train_lenet.py", "--dataset", "digits", "--epochs", "1",
               "--out", model, "--plot", png, "--no-progress", cwd=tmp_path)
    lines = out.strip().splitlines()
    assert "data set: scikit-learn digits" in lines[0]
    assert re.fullmatch(r"test accuracy: 0\.\d{4}", lines[-1]), lines[-1]
    assert png.read_bytes()[:4] == b"\x89PNG"
    meta = nc.load_state(model)[2]
    assert {"mean", "std", "dataset"} <= set(meta)

    # Classify a few digits given as an IDX file with labels, and one as a PNG.
    x, y = nc.data.load_digits("test")
    images = np.round(x[:20, 0] * 255).astype(np.uint8)
    _write_idx(tmp_path / "img.gz", images)
    _write_idx(tmp_path / "lab.gz", y[:20])
    import matplotlib.image as mpimg

    mpimg.imsave(tmp_path / "d.png", 1.0 - x[0, 0], cmap="gray")  # dark digit on white
    out = _run(ROOT / "examples/predict.py", model, tmp_path / "img.gz",
               "--labels", tmp_path / "lab.gz", "--show", "30", cwd=tmp_path)
    assert out.count("class ") == 20
    assert re.search(r"accuracy: \d\.\d{4}", out)
    out = _run(ROOT / "examples/predict.py", model, tmp_path / "d.png", cwd=tmp_path)
    assert re.fullmatch(r".*d\.png: class \d \(p=\d\.\d{3}\)", out.strip())
    # The shipped example image (a "3" of the digits' test split) and --from-dataset.
    out = _run(ROOT / "examples/predict.py", model, ROOT / "examples/digit.png", cwd=tmp_path)
    assert re.fullmatch(r".*digit\.png: class \d \(p=\d\.\d{3}\)", out.strip())
    out = _run(ROOT / "examples/predict.py", model, "--from-dataset", "7", "42", cwd=tmp_path)
    assert re.findall(r"true class (\d)", out) == [str(y[7]), str(y[42])]

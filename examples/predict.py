"""Classify images with a model file written by ``train_lenet.py`` (or ``nbconv.save``).

    python examples/predict.py lenet5.h5 digit.png other.png
    python examples/predict.py lenet5.h5 t10k-images-idx3-ubyte.gz \
        --labels t10k-labels-idx1-ubyte.gz

Inputs are IDX image files (every image in them is classified) or PNG files (converted to grey,
resized to 28x28 and, when the background is light, inverted so the digit is light on dark
like MNIST).  Preprocessing follows the file's metadata: x / 255, then (x - mean) / std.
"""

from __future__ import annotations

import argparse

import numpy as np

import nbconv as nc
from nbconv import data


def load_png(path) -> np.ndarray:
    """A PNG as a (28, 28) float array in [0, 1], light digit on a dark background."""
    import matplotlib.image as mpimg
    from scipy import ndimage

    img = np.asarray(mpimg.imread(path), dtype=np.float64)
    if img.dtype.kind != "f" or img.max() > 1:
        img = img / 255.0
    if img.ndim == 3:
        img = img[..., :3].mean(axis=2)
    img = ndimage.zoom(img, (28 / img.shape[0], 28 / img.shape[1]), order=1)[:28, :28]
    if img.mean() > 0.5:
        img = 1.0 - img
    return np.clip(img, 0.0, 1.0)


def load_inputs(paths) -> tuple[np.ndarray, list[str]]:
    images, names = [], []
    for path in paths:
        if str(path).lower().endswith(".png"):
            images.append(load_png(path)[None])
            names.append(str(path))
        else:
            arr = data.load_idx(path)
            if arr.ndim != 3:
                raise SystemExit(f"{path}: expected an IDX file of images (N, H, W), got "
                                 f"shape {arr.shape}")
            images.extend(a[None] / 255.0 for a in arr)
            names.extend(f"{path}[{i}]" for i in range(len(arr)))
    return np.stack(images).astype(np.float32), names


def main(argv=None):
    p = argparse.ArgumentParser(description="classify images with an nbconv model file")
    p.add_argument("model", help="HDF5 model file")
    p.add_argument("images", nargs="+", help="PNG files or IDX image files")
    p.add_argument("--labels", help="IDX label file matching a single IDX image file")
    p.add_argument("--show", type=int, default=20, help="print at most this many predictions")
    args = p.parse_args(argv)

    model, _, meta = nc.io.load_state(args.model)
    model.eval()
    x, names = load_inputs(args.images)
    mean, std = float(meta.get("mean", 0.0)), float(meta.get("std", 1.0))
    x = ((x - mean) / std).astype(np.float32)
    with nc.no_grad():
        logits = np.concatenate([model.forward(x[i:i + 500]) for i in range(0, len(x), 500)])
    probs = nc.softmax(logits, axis=1)
    pred = probs.argmax(axis=1)
    for name, k, pr in list(zip(names, pred, probs.max(axis=1)))[: args.show]:
        print(f"{name}: class {k} (p={pr:.3f})")
    if args.labels:
        y = data.load_idx(args.labels).astype(np.int64)
        if len(y) != len(pred):
            raise SystemExit(f"--labels has {len(y)} labels for {len(pred)} images")
        print(f"accuracy: {np.mean(pred == y):.4f}")
    return pred


if __name__ == "__main__":
    main()

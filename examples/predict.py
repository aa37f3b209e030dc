"""Classify images with a model file written by ``train_lenet.py`` (or ``nbconv.save``).

    python examples/predict.py lenet5.h5 examples/digit.png other.png
    python examples/predict.py lenet5.h5 t10k-images-idx3-ubyte.gz \
        --labels t10k-labels-idx1-ubyte.gz
    python examples/predict.py lenet5.h5 --from-dataset 0 7 42

``examples/digit.png`` (shipped) is a "3" of scikit-learn's digits test split.
``--from-dataset INDEX ...`` classifies images of the test split of the data set the model
was trained on (named in the model file; the bundled digits when it was trained elsewhere
and that data set is not found) and prints their true labels too.

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


def dataset_images(meta, indices) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Test images ``indices`` (in [0, 1]) and labels of the data set named in ``meta``."""
    name = str(meta.get("dataset", ""))
    root = name[name.find("(") + 1:name.rfind(")")] if "(" in name else None
    if name.startswith("MNIST") and root and data.find_mnist(root):
        label, (x, y) = "MNIST", data.load_mnist(data.find_mnist(root), "test")
    elif name.startswith("Fashion-MNIST") and data.find_fashion_mnist(root):
        label, (x, y) = "Fashion-MNIST", data.load_fashion_mnist(data.find_fashion_mnist(root),
                                                                 "test")
    else:
        label, (x, y) = "digits", data.load_digits("test")
    bad = [i for i in indices if not 0 <= i < len(x)]
    if bad:
        raise SystemExit(f"--from-dataset: indices {bad} outside [0, {len(x)}) of the {label} "
                         "test split")
    x = np.asarray(x[indices], dtype=np.float32).reshape(len(indices), 1, 28, 28)
    if x.max() > 1:
        x = x / 255.0
    return x, np.asarray(y)[indices], [f"{label} test[{i}]" for i in indices]


def main(argv=None):
    p = argparse.ArgumentParser(description="classify images with an nbconv model file")
    p.add_argument("model", help="HDF5 model file")
    p.add_argument("images", nargs="*", help="PNG files or IDX image files")
    p.add_argument("--from-dataset", type=int, nargs="+", metavar="INDEX",
                   help="classify these images of the model's test split instead")
    p.add_argument("--labels", help="IDX label file matching a single IDX image file")
    p.add_argument("--show", type=int, default=20, help="print at most this many predictions")
    args = p.parse_args(argv)

    model, _, meta = nc.io.load_state(args.model)
    model.eval()
    if bool(args.images) == bool(args.from_dataset):
        p.error("give image files or --from-dataset INDEX ..., not both or neither")
    truth = None
    if args.from_dataset:
        x, truth, names = dataset_images(meta, args.from_dataset)
    else:
        x, names = load_inputs(args.images)
    mean, std = float(meta.get("mean", 0.0)), float(meta.get("std", 1.0))
    x = ((x - mean) / std).astype(np.float32)
    with nc.no_grad():
        logits = np.concatenate([model.forward(x[i:i + 500]) for i in range(0, len(x), 500)])
    probs = nc.softmax(logits, axis=1)
    pred = probs.argmax(axis=1)
    for i, (name, k, pr) in enumerate(list(zip(names, pred, probs.max(axis=1)))[: args.show]):
        print(f"{name}: class {k} (p={pr:.3f})"
              + ("" if truth is None else f", true class {truth[i]}"))
    if args.labels:
        y = data.load_idx(args.labels).astype(np.int64)
        if len(y) != len(pred):
            raise SystemExit(f"--labels has {len(y)} labels for {len(pred)} images")
        print(f"accuracy: {np.mean(pred == y):.4f}")
    return pred


if __name__ == "__main__":
    main()

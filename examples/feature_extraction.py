"""What a trained CNN has learned: its penultimate-layer features as inputs to simple models.

The seeds' lesson: the layers before a CNN's classifier turn images into feature vectors
that simple methods can use.  This script loads a trained LeNet-5 from a model file
(``--model``, by default ``lenet5.h5`` as ``examples/train_lenet.py`` writes it; when the file
does not exist it first trains one for 2 epochs and saves it there), runs every layer but the
last on the images (the 84 outputs of the second hidden layer, after its activation), and
compares, on the same images, the raw 784 pixels with these 84 features as inputs to

- a 1-nearest-neighbour classifier (Euclidean distance; ``--knn-train`` training images), and
- a linear softmax classifier (``nbconv.nn.Linear`` trained with ``fit``, inputs
  standardised),

and plots a 2-D PCA embedding (NumPy SVD, no new dependency) of pixels and of features for
``--embed`` test images, coloured by class.

What to expect: the features beat the pixels with both classifiers, the linear classifier
on the features scores about what the network itself does (its last layer is such a
classifier), and in the PCA plot the classes form separated clusters for the features but
overlapping clouds for the pixels -- the 1-nearest-neighbour accuracy inside the 2-D
embedding (printed too) makes that a number.  Measured with the defaults on Fashion-MNIST
(a LeNet-5 of 2 epochs, 86.3%): 1-NN 80.9% on pixels vs 83.5% on features, linear 84.2% vs
87.1%, 1-NN in the PCA plane 0.47 vs 0.65.  A weak network (e.g. a few epochs on the small
digits set) can give features that lose to the pixels: the features are only as good as the
training.  The table goes to ``--out`` with ``.json``; the last line is the linear
classifier's accuracy on the features.

    python examples/feature_extraction.py                 # lenet5.h5, or trains one first
    python examples/feature_extraction.py --model my.h5 --dataset fashion-mnist
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from example_data import add_data_arguments, load_dataset, load_or_train_lenet

import nbconv as nc
from nbconv import data, losses, nn, optim
from nbconv.train import evaluate, fit


def penultimate_features(model, x, mean, std, batch_size=500):
    """Outputs of every layer of ``model`` but the last, for images ``x`` (N, 1, H, W).

    ``model`` is a ``Sequential`` ending in its classifier; the images are normalised with
    ``mean``/``std`` first.  Returns (N, D) float32, D the classifier's input size (84 for
    LeNet-5).
    """
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"penultimate_features: argument 'model' must be a Sequential whose "
                        f"last layer is the classifier, got {type(model).__name__}")
    body = list(model)[:-1]
    out = []
    with nn.no_grad():
        for i in range(0, len(x), batch_size):
            h = (x[i:i + batch_size] - np.float32(mean)) / np.float32(std)
            for layer in body:
                h = layer(h)
            out.append(h.reshape(len(h), -1))
    return np.concatenate(out)


def nearest_neighbour(train, y_train, test, chunk=1000):
    """Labels of the nearest (Euclidean) training row for every test row."""
    sq = np.einsum("ij,ij->i", train, train)
    pred = np.empty(len(test), np.int64)
    for i in range(0, len(test), chunk):
        t = test[i:i + chunk]
        d = sq[None, :] - 2.0 * (t @ train.T)  # |t|^2 is the same for every candidate
        pred[i:i + chunk] = y_train[np.argmin(d, axis=1)]
    return pred


def linear_probe(f_train, y_train, f_test, y_test, epochs, seed=0, progress=False):
    """Test accuracy of a softmax classifier ``Linear(D, 10)`` trained with Adam on standardised
    inputs."""
    mu, sd = f_train.mean(0), f_train.std(0) + 1e-6
    a, b = (f_train - mu) / sd, (f_test - mu) / sd
    nc.manual_seed(seed)
    clf = nn.Linear(a.shape[1], int(max(y_train.max(), y_test.max())) + 1)
    fit(clf, losses.CrossEntropyLoss(), optim.Adam(clf.parameters(), lr=1e-3),
        data.DataLoader(a.astype(np.float32), y_train, 64, seed=seed), epochs,
        progress=progress)
    return evaluate(clf, data.DataLoader(b.astype(np.float32), y_test, 1000, shuffle=False))[1]


def pca_2d(x):
    """The first two principal components of ``x`` (N, D): ((N, 2) scores, explained ratio)."""
    c = x - x.mean(0)
    _, s, vt = np.linalg.svd(c, full_matrices=False)
    return c @ vt[:2].T, float((s[:2] ** 2).sum() / (s ** 2).sum())


FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot")


def plot(path, embeddings, y, dataset):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(embeddings), figsize=(10, 4.6), dpi=72,
                             constrained_layout=True)
    for ax, (title, (z, ratio, acc2d)) in zip(axes, embeddings.items()):
        sc = ax.scatter(z[:, 0], z[:, 1], c=y, cmap="tab10", s=4, vmin=-0.5, vmax=9.5)
        ax.set_title(f"{title}\nPCA: {100 * ratio:.0f}% of the variance, 1-NN in 2-D "
                     f"{acc2d:.2f}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    bar = fig.colorbar(sc, ax=axes, ticks=range(10), label="class", shrink=0.9)
    if dataset.startswith("Fashion-MNIST"):
        bar.set_ticklabels(FASHION_CLASSES)
    fig.suptitle(f"{len(y)} test images of {dataset.split(' (')[0]}", fontsize=10)
    fig.savefig(path)
    plt.close(fig)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", default="lenet5.h5",
                   help="trained LeNet-5 file (trained and written first when missing)")
    p.add_argument("--train-epochs", type=int, default=2,
                   help="epochs of the LeNet-5 trained when --model does not exist")
    add_data_arguments(p)
    p.add_argument("--knn-train", type=int, default=10000,
                   help="training images the nearest-neighbour classifier compares with")
    p.add_argument("--probe-epochs", type=int, default=5,
                   help="epochs of the linear classifiers")
    p.add_argument("--embed", type=int, default=2000, help="test images in the PCA plot")
    p.add_argument("--out", default="feature_extraction.png",
                   help="figure to write; the table goes to the same name with .json")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    model, mean, std = load_or_train_lenet(args.model, args, args.train_epochs,
                                           progress=not args.no_progress)
    name, (x, y), (xt, yt) = load_dataset(args)
    print(f"data set: {name}: {len(x)} training and {len(xt)} test images", flush=True)
    norm = data.transforms.normalize(mean, std)
    _, net_acc = evaluate(model, data.DataLoader(xt, yt, 500, shuffle=False, transform=norm))
    inputs = {"pixels": (x.reshape(len(x), -1), xt.reshape(len(xt), -1)),
              "features": (penultimate_features(model, x, mean, std),
                           penultimate_features(model, xt, mean, std))}
    dims = {k: v[0].shape[1] for k, v in inputs.items()}
    knn = np.random.default_rng(0).permutation(len(x))[:args.knn_train]
    table = {}
    for kind, (a, b) in inputs.items():
        nn_acc = float(np.mean(nearest_neighbour(a[knn], y[knn], b) == yt))
        lin_acc = float(linear_probe(a, y, b, yt, args.probe_epochs,
                                     progress=not args.no_progress))
        table[kind] = {"nearest_neighbour": nn_acc, "linear": lin_acc}
        print(f"{kind} ({dims[kind]}-D): 1-NN {nn_acc:.4f}, linear {lin_acc:.4f}", flush=True)

    sel = np.random.default_rng(1).permutation(len(xt))[:args.embed]
    half = len(sel) // 2
    embeddings = {}
    for kind, (_, b) in inputs.items():
        z, ratio = pca_2d(b[sel])
        # 1-NN inside the embedding: first half of the points as references, second as queries
        acc2d = float(np.mean(nearest_neighbour(z[:half], yt[sel][:half], z[half:])
                              == yt[sel][half:])) if half else float("nan")
        embeddings[f"{kind} ({dims[kind]}-D)"] = (z, ratio, acc2d)
        table[kind]["pca_2d_nearest_neighbour"] = acc2d
        table[kind]["pca_2d_explained_variance"] = ratio

    print(f"\ntest accuracy ({name}; LeNet-5 itself: {net_acc:.4f})")
    print(f"{'':32s} {'pixels':>8s} {'features':>9s}")
    for row, label in (("nearest_neighbour", f"1-nearest neighbour ({len(knn)} refs)"),
                       ("linear", "linear softmax classifier"),
                       ("pca_2d_nearest_neighbour", "1-NN in the 2-D PCA plane")):
        print(f"{label:32s} {table['pixels'][row]:8.4f} {table['features'][row]:9.4f}")
    out = Path(args.out)
    plot(out, embeddings, yt[sel], name)
    report = {"dataset": name, "model": str(args.model), "network_test_accuracy": float(net_acc),
              "dimensions": dims, "knn_train_images": int(len(knn)),
              "test_images": int(len(xt)), "test_accuracy": table}
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"figure: {out}, table: {out.with_suffix('.json')}")
    print(f"linear classifier on the features: test accuracy {table['features']['linear']:.4f}")
    return report


if __name__ == "__main__":
    main()

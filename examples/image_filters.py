"""Hand-made kernels: Sobel and Prewitt edge detection and a Gaussian blur.

Before a CNN learns its filters, people designed them by hand (seeds 001 and 003).  This
script applies three classics to greyscale images with nbconv's NumPy-like ops:

- Sobel and Prewitt: ``nbconv.correlate2d(img, k, mode="same", boundary="symm")`` with the
  3x3 derivative kernels (``SOBEL_X``, ``PREWITT_X`` and their transposes); the edge strength
  is ``hypot(gx, gy)``.
- Gaussian blur: ``nbconv.conv2d`` with a normalised sampled Gaussian (sigma 2 by default,
  radius ``int(4 * sigma + 0.5)``) as a 1-in, 1-out convolution layer with
  ``padding="same", padding_mode="reflect"``.

The images: a bundled handwritten digit and the photograph scikit-learn ships
(``china.jpg``), or the PNG/JPEG files you name (``--image a.png b.png``).

What to expect: the x-derivative lights up on vertical edges (dark-to-bright positive,
bright-to-dark negative), the y-derivative on horizontal ones, the magnitudes trace every
outline (Sobel and Prewitt look nearly alike, Sobel weighs the centre row twice), and the blur
washes out detail finer than sigma.  The script checks every output against SciPy
(``scipy.ndimage.sobel``/``prewitt`` with ``mode="reflect"``, which is ``boundary="symm"``,
and ``scipy.ndimage.gaussian_filter`` with ``mode="mirror"``, which is ``padding_mode=
"reflect"``) and prints the largest differences, about 1e-15 in float64.  The figure has one
row per image: input, Sobel x, Sobel y, Sobel and Prewitt magnitudes, blur.

    python examples/image_filters.py
    python examples/image_filters.py --image my.png --sigma 3 --out filters.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import nbconv as nc

SOBEL_X = np.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
PREWITT_X = np.array([[-1.0, 0.0, 1.0], [-1.0, 0.0, 1.0], [-1.0, 0.0, 1.0]])


def gradients(img, kernel_x):
    """x- and y-derivatives of ``img`` (H, W) by cross-correlation with ``kernel_x`` and its
    transpose, edges extended by mirror symmetry; returns ``(gx, gy)``, each (H, W)."""
    gx = nc.correlate2d(img, kernel_x, mode="same", boundary="symm")
    gy = nc.correlate2d(img, kernel_x.T, mode="same", boundary="symm")
    return gx, gy


def gaussian_kernel(sigma, truncate=4.0):
    """Normalised 2-D Gaussian, shape (2r+1, 2r+1) with ``r = int(truncate * sigma + 0.5)``."""
    r = int(truncate * sigma + 0.5)
    g = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    g /= g.sum()
    return np.outer(g, g)


def gaussian_blur(img, sigma, truncate=4.0):
    """``img`` (H, W) blurred by :func:`gaussian_kernel` through ``nbconv.conv2d`` (reflected
    edges); returns (H, W) in ``img``'s dtype."""
    k = gaussian_kernel(sigma, truncate).astype(img.dtype)
    return nc.conv2d(img[None, None], k[None, None], padding="same",
                     padding_mode="reflect")[0, 0]


def load_image(spec):
    """``"digit"``, ``"photo"`` or a file name -> (name, float64 greyscale image in [0, 1])."""
    if spec == "digit":
        x, y = nc.data.load_digits()
        return f"digit {y[0]}", x[0, 0].astype(np.float64)
    if spec == "photo":
        from sklearn.datasets import load_sample_image

        rgb = load_sample_image("china.jpg").astype(np.float64) / 255.0
        grey = rgb @ np.array([0.299, 0.587, 0.114])
        return "china.jpg (scikit-learn)", grey[::2, ::2]  # 214x320 keeps the figure small
    import matplotlib.image as mpimg

    if not Path(spec).is_file():
        raise SystemExit(f"--image {spec!r}: no such file (give 'digit', 'photo' or a PNG/JPEG)")
    img = np.asarray(mpimg.imread(spec), dtype=np.float64)
    if img.ndim == 3:
        img = img[..., :3] @ np.array([0.299, 0.587, 0.114])
    if img.max() > 1.0:  # 8-bit JPEG read through Pillow
        img = img / 255.0
    return spec, img


def check_against_scipy(img, sigma, results):
    """Largest |nbconv - SciPy| of each output."""
    from scipy import ndimage

    ref = {"sobel x": ndimage.sobel(img, axis=1, mode="reflect"),
           "sobel y": ndimage.sobel(img, axis=0, mode="reflect"),
           "prewitt x": ndimage.prewitt(img, axis=1, mode="reflect"),
           "prewitt y": ndimage.prewitt(img, axis=0, mode="reflect"),
           "blur": ndimage.gaussian_filter(img, sigma, mode="mirror", truncate=4.0)}
    return {k: float(np.abs(results[k] - v).max()) for k, v in ref.items()}


def apply_filters(img, sigma):
    """Every output of the lesson for one image, by name."""
    sx, sy = gradients(img, SOBEL_X)
    px, py = gradients(img, PREWITT_X)
    return {"sobel x": sx, "sobel y": sy, "sobel": np.hypot(sx, sy),
            "prewitt x": px, "prewitt y": py, "prewitt": np.hypot(px, py),
            "blur": gaussian_blur(img, sigma)}


def plot(path, rows, sigma):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = [("input", "gray"), ("sobel x", "RdBu_r"), ("sobel y", "RdBu_r"),
            ("sobel", "magma"), ("prewitt", "magma"), ("blur", "gray")]
    titles = {"input": "input", "sobel x": "Sobel x (d/dx)", "sobel y": "Sobel y (d/dy)",
              "sobel": "|Sobel|", "prewitt": "|Prewitt|", "blur": f"Gaussian, sigma {sigma:g}"}
    fig, axes = plt.subplots(len(rows), len(cols), figsize=(11, 2.1 * len(rows)), dpi=80,
                             squeeze=False)
    for r, (name, img, out) in enumerate(rows):
        out = {"input": img, **out}
        for c, (key, cmap) in enumerate(cols):
            ax = axes[r, c]
            v = out[key]
            if cmap == "RdBu_r":
                lim = np.abs(v).max() or 1.0
                ax.imshow(v, cmap=cmap, vmin=-lim, vmax=lim)
            else:
                ax.imshow(v, cmap=cmap)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(titles[key], fontsize=9)
        axes[r, 0].set_ylabel(name, fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--image", nargs="+", default=["digit", "photo"],
                   help="'digit' (bundled), 'photo' (scikit-learn's china.jpg) or PNG/JPEG files")
    p.add_argument("--sigma", type=float, default=2.0, help="Gaussian blur width, pixels")
    p.add_argument("--out", default="image_filters.png", help="figure to write")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if not args.sigma > 0:
        raise SystemExit(f"--sigma must be > 0, got {args.sigma}")
    rows, diffs = [], {}
    for spec in args.image:
        name, img = load_image(spec)
        out = apply_filters(img, args.sigma)
        diffs[name] = check_against_scipy(img, args.sigma, out)
        worst = max(diffs[name].values())
        print(f"{name}: {img.shape[0]}x{img.shape[1]}, largest |nbconv - scipy.ndimage| "
              f"{worst:.1e} over Sobel, Prewitt and the Gaussian blur", flush=True)
        rows.append((name, img, out))
    plot(args.out, rows, args.sigma)
    print(f"figure: {args.out}")
    return diffs


if __name__ == "__main__":
    main()

"""Train a CNN on CIFAR-10 (3x32x32 colour images, 10 classes) and report the test accuracy.

The seeds' CIFAR-10 experiment::

    python examples/train_cifar10.py --data-dir ~/data --model resnet18 --epochs 10
    python examples/train_cifar10.py --data-dir ~/data --model simple --epochs 5

``--data-dir`` is the folder holding ``cifar-10-batches-bin`` (the binary version of CIFAR-10,
``cifar-10-binary.tar.gz`` unpacked) or that folder itself; the python version
(``cifar-10-batches-py``, pickles) is read only with ``--allow-pickle``, since unpickling a file
can run code, and is otherwise refused.  Without the data set the script
says where it looked and exits with status 2: it never trains on stand-in data presented as
CIFAR.  Training uses random crops (4 pixels of zero padding) and horizontal flips, then
normalises with the per-channel mean and std of the training set (stored in the model file's
metadata).  Per epoch it prints loss, train and test accuracy, seconds and images/s, with a
progress bar; it writes the model file and the training curves, and the last line is
``test accuracy: 0.XXXX``.

What to expect (seeds, d2l): a plain CNN reaches about 60-70% in a few epochs, ResNet-18 80%+
after some tens of epochs.  The first epoch includes the one-off compilation of the kernels.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np

import nbconv as nc
from nbconv import data, losses, models, optim
from nbconv.train import evaluate, fit

#: --model name -> builder for 3-channel 32x32 input and 10 classes
BUILDERS = {
    "simple": lambda: models.simple_convnet(input_dim=(3, 32, 32), weight_init_std=0.01),
    "lenet5": lambda: models.lenet5(in_channels=3, input_size=32, activation="relu"),
    "alexnet": lambda: models.alexnet(in_channels=3),
    "vgg11": lambda: models.vgg11(in_channels=3),
    "nin": lambda: models.nin(in_channels=3),
    "googlenet": lambda: models.googlenet(in_channels=3),
    "resnet18": lambda: models.resnet18(in_channels=3),
}
if hasattr(models, "zfnet"):
    BUILDERS["zfnet"] = lambda: models.zfnet(in_channels=3)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=None,
                   help="folder with cifar-10-batches-bin (or that folder itself)")
    p.add_argument("--model", default="resnet18", choices=sorted(BUILDERS))
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=None,
                   help="initial learning rate (default 0.05 for sgd, 1e-3 for adam)")
    p.add_argument("--optimizer", default="sgd", choices=["sgd", "adam"],
                   help="sgd means SGD with Nesterov momentum 0.9 and weight decay 5e-4")
    p.add_argument("--train-size", type=int, default=None,
                   help="use only the first N training images (a quick run)")
    p.add_argument("--test-size", type=int, default=None,
                   help="use only the first N test images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="numba threads (default: all)")
    p.add_argument("--out", default="cifar10.h5", help="model file to write")
    p.add_argument("--plot", default="cifar10.png", help="training-curve PNG to write")
    p.add_argument("--allow-pickle", action="store_true",
                   help="read the python version (cifar-10-batches-py) when it is the only "
                        "one: unpickling can run code, use it only for files you trust")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    for name in ("epochs", "batch_size", "train_size", "test_size"):
        v = getattr(args, name)
        if v is not None and v < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {v}")
    return args


def load(args):
    """``(x_train, y_train), (x_test, y_test)``, or exit 2 with where it looked."""
    if args.data_dir is None:
        sys.stderr.write("CIFAR-10 not given: pass --data-dir DIR, the folder holding "
                         "cifar-10-batches-bin (https://www.cs.toronto.edu/~kriz/cifar.html, "
                         "the binary version); nothing was trained\n")
        raise SystemExit(2)
    try:
        train = data.load_cifar10(args.data_dir, "train", allow_pickle=args.allow_pickle)
        test = data.load_cifar10(args.data_dir, "test", allow_pickle=args.allow_pickle)
    except FileNotFoundError as e:
        sys.stderr.write(f"CIFAR-10 not found: {e}; nothing was trained\n")
        raise SystemExit(2) from None
    except ValueError as e:  # the pickles without --allow-pickle, or a malformed batch file
        hint = ("; --allow-pickle reads them if you trust the files"
                if "allow_pickle" in str(e) and not args.allow_pickle else "")
        sys.stderr.write(f"CIFAR-10 refused: {e}{hint}; nothing was trained\n")
        raise SystemExit(2) from None
    (xt, yt), (xv, yv) = train, test
    return (xt[:args.train_size], yt[:args.train_size]), (xv[:args.test_size],
                                                           yv[:args.test_size])


def main(argv=None) -> float:
    args = parse_args(argv)
    if args.threads:
        nc.set_num_threads(args.threads)
    (x_train, y_train), (x_test, y_test) = load(args)
    print(f"data set: CIFAR-10 ({args.data_dir}): {len(x_train)} training and {len(x_test)} "
          "test images", flush=True)
    mean = x_train.mean(axis=(0, 2, 3)).astype(np.float32)
    std = x_train.std(axis=(0, 2, 3)).astype(np.float32)
    norm = data.transforms.normalize(mean, std)
    train_tf = data.transforms.compose(data.transforms.random_crop(4),
                                       data.transforms.random_horizontal_flip(), norm)

    nc.manual_seed(args.seed)
    model = BUILDERS[args.model]()
    if args.optimizer == "sgd":
        opt = optim.SGD(model.parameters(), lr=args.lr or 0.05, momentum=0.9, nesterov=True,
                        weight_decay=5e-4)
    else:
        opt = optim.Adam(model.parameters(), lr=args.lr or 1e-3)
    train_loader = data.DataLoader(x_train, y_train, args.batch_size, shuffle=True,
                                   seed=args.seed, transform=train_tf)
    test_loader = data.DataLoader(x_test, y_test, 500, shuffle=False, transform=norm)
    print(f"{args.model} ({sum(p.data.size for p in model.parameters())} parameters), "
          f"{args.optimizer} lr={opt.lr}, batch {args.batch_size}, {args.epochs} epochs, "
          f"{nc.get_num_threads()} threads; the first epoch includes compiling the kernels",
          flush=True)
    base_lr = opt.lr

    def schedule(epoch, h):  # after epoch `epoch` (1-based): cosine decay to 0
        opt.lr = 0.5 * base_lr * (1 + math.cos(math.pi * epoch / args.epochs))

    def report(epoch, h):
        print(f"epoch {epoch:2d}/{args.epochs}  loss {h['loss'][-1]:.4f}  "
              f"train acc {h['accuracy'][-1]:.4f}  test acc {h['val_accuracy'][-1]:.4f}  "
              f"{h['seconds'][-1]:6.1f} s  {h['images_per_s'][-1]:7.0f} img/s", flush=True)

    t0 = time.perf_counter()
    fit(model, losses.CrossEntropyLoss(), opt, train_loader, args.epochs,
        # with the progress bar, fit prints each epoch's line itself
        val_loader=test_loader, callbacks=[schedule] + ([report] if args.no_progress else []),
        plot=args.plot, progress=not args.no_progress)
    metadata = {"dataset": "CIFAR-10", "model": args.model, "mean": mean.tolist(),
                "std": std.tolist(), "epochs": args.epochs, "optimizer": args.optimizer,
                "lr": base_lr, "batch_size": args.batch_size, "seed": args.seed,
                "augmentation": "random_crop(4), random_horizontal_flip()",
                "preprocessing": "x / 255, then (x - mean[c]) / std[c]"}
    nc.save(model, args.out, optimizer=opt, metadata=metadata)
    _, acc = evaluate(nc.load(args.out), test_loader)
    print(f"trained in {time.perf_counter() - t0:.1f} s; model written to {args.out}, curves "
          f"to {args.plot}", flush=True)
    print(f"test accuracy: {acc:.4f}")
    return acc


if __name__ == "__main__":
    main()

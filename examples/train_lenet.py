"""Train LeNet-5 on handwritten digits (or clothes) and report the test accuracy.

The main job of nbconv::

    python examples/train_lenet.py                      # picks a data set by itself
    python examples/train_lenet.py --dataset mnist --data-dir ~/data/mnist --epochs 10
    mpiexec -n 2 python examples/train_lenet.py --distributed   # data-parallel over MPI

``--dataset auto`` takes MNIST if its IDX files are under ``--data-dir`` or the user cache
(``~/.cache/nbconv/mnist``, where ``--download`` puts them), else Debian's Fashion-MNIST
(``apt-get install dataset-fashion-mnist``), else scikit-learn's bundled 8x8 digits.  Images
are scaled to [0, 1] and normalised with the training set's mean and std, which are stored in
the model file's metadata.  Per epoch it prints the loss, train and test accuracy, seconds and
images/s; the last line is ``test accuracy: 0.XXXX``.

With ``--distributed`` (under ``mpiexec -n N``) every rank trains on its shard of each global
batch of ``N * --batch-size`` images (``--batch-size`` is per rank, as in PyTorch) with the
gradients averaged over MPI (`nbconv.distributed`); the header shows the world size and each
rank's shard, and rank 0 alone prints, writes the model file, the PNG and ``--checkpoint``.
"""

from __future__ import annotations

import argparse
import gzip
import math
import os
import socket
import time
import urllib.request
from pathlib import Path

import nbconv as nc
from nbconv import data, losses, models, optim
from nbconv.train import evaluate, fit

CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "nbconv" / "mnist"
MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
               "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def download_mnist(dest: Path) -> Path:
    """Fetch the four MNIST files into ``dest`` (each saved only once complete)."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in MNIST_FILES:
        target = dest / f"{name}.gz"
        if target.exists():
            continue
        for mirror in MNIST_MIRRORS:
            try:
                print(f"downloading {mirror}{name}.gz", flush=True)
                with urllib.request.urlopen(f"{mirror}{name}.gz", timeout=60) as r:
                    blob = r.read()
                gzip.decompress(blob)  # refuse a truncated or non-gzip answer
                tmp = target.with_suffix(".part")
                tmp.write_bytes(blob)
                os.replace(tmp, target)
                break
            except (OSError, EOFError) as e:
                print(f"  failed: {e}", flush=True)
        else:
            raise SystemExit(f"could not download {name}: no mirror answered (offline?)")
    return dest


def choose_dataset(args):
    """Return (name, (X_train, y_train), (X_test, y_test))."""
    roots = [p for p in (args.data_dir, CACHE_DIR) if p is not None]
    if args.download and args.dataset in ("auto", "mnist"):
        download_mnist(Path(args.data_dir) if args.data_dir else CACHE_DIR)
    if args.dataset in ("auto", "mnist"):
        for root in roots:
            found = data.find_mnist(root)
            if found is not None:
                return (f"MNIST ({found})", data.load_mnist(found, "train"),
                        data.load_mnist(found, "test"))
        if args.dataset == "mnist":
            raise SystemExit(f"MNIST IDX files not found under {[str(r) for r in roots]}; "
                             "pass --data-dir or --download")
    if args.dataset in ("auto", "fashion-mnist"):
        found = data.find_fashion_mnist(args.data_dir) if args.data_dir else None
        found = found or data.find_fashion_mnist()
        if found is not None:
            return (f"Fashion-MNIST ({found})", data.load_fashion_mnist(found, "train"),
                    data.load_fashion_mnist(found, "test"))
        if args.dataset == "fashion-mnist":
            raise SystemExit("Fashion-MNIST not found: apt-get install dataset-fashion-mnist "
                             "or pass --data-dir")
    return ("scikit-learn digits (8x8 resized to 28x28, 80/20 split)",
            data.load_digits("train"), data.load_digits("test"))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="auto", choices=["auto", "mnist", "fashion-mnist",
                                                         "digits"])
    p.add_argument("--data-dir", default=None, help="folder with the IDX files")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=None,
                   help="initial learning rate (default 3e-3 for adam, 0.02 for sgd)")
    p.add_argument("--optimizer", default="adam", choices=["adam", "sgd"],
                   help="sgd means SGD with Nesterov momentum 0.9")
    p.add_argument("--schedule", default="cosine", choices=["cosine", "constant"],
                   help="learning rate per epoch: cosine decay to 0, or constant")
    p.add_argument("--shift", type=int, default=2,
                   help="augmentation: random shifts of up to this many pixels (0: none)")
    p.add_argument("--activation", default="relu",
                   choices=["relu", "sigmoid", "tanh", "leaky_relu"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="numba threads (default: all)")
    p.add_argument("--out", default="lenet5.h5", help="model file to write")
    p.add_argument("--plot", default="lenet5.png", help="training-curve PNG to write")
    p.add_argument("--download", action="store_true", help="fetch MNIST first (needs internet)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--checkpoint", default=None,
                   help="HDF5 checkpoint rewritten after every epoch (to --resume from)")
    p.add_argument("--resume", default=None, help="continue from this checkpoint")
    p.add_argument("--distributed", action="store_true",
                   help="data-parallel over MPI: run under mpiexec -n N (needs nbconv[mpi]); "
                        "--batch-size is per rank")
    return p.parse_args(argv)


def start_mpi(args):
    """The run's `nbconv.distributed.World`, or exit with the reason when MPI is missing."""
    from nbconv import distributed

    try:
        world = distributed.init()
    except ImportError as e:
        raise SystemExit(f"--distributed: {e}") from None
    if not args.threads:
        # the ranks on one machine share its cores
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
        args.threads = max(1, (cores or os.cpu_count() or 1) // world.local_size())
    return world


def describe_world(world, train_loader, say):
    """The header lines of a distributed run: world size, then each rank's host and shard."""
    from nbconv.distributed import ShardedLoader, launched_by_mpiexec

    shard = ShardedLoader(train_loader, world.rank, world.size)
    lines = world.gather(f"  {shard.describe()} on {socket.gethostname()} (pid {os.getpid()})")
    launched = "" if launched_by_mpiexec() else " (not started by mpiexec)"
    say(f"distributed: world size {world.size}{launched}, global batch "
        f"{shard.global_batch_size} = {world.size} x {shard.batch_size}")
    for line in lines or ():
        say(line)


def main(argv=None) -> float | None:
    args = parse_args(argv)
    world = start_mpi(args) if args.distributed else None
    main_rank = world is None or world.is_main

    def say(*a, **k):
        if main_rank:
            print(*a, **k, flush=True)

    if args.threads:
        nc.set_num_threads(args.threads)
    name, (x_train, y_train), (x_test, y_test) = choose_dataset(args)
    say(f"data set: {name}: {len(x_train)} training and {len(x_test)} test images")

    mean, std = float(x_train.mean()), float(x_train.std())
    norm = data.transforms.normalize(mean, std)
    # Shifts happen on the [0, 1] images, so the zeros they bring in are background.
    train_tf = (data.transforms.compose(data.transforms.random_crop(args.shift), norm)
                if args.shift else norm)

    nc.manual_seed(args.seed)
    model = models.lenet5(num_classes=10, activation=args.activation)
    if args.optimizer == "sgd":
        opt = optim.SGD(model.parameters(), lr=args.lr or 0.02, momentum=0.9, nesterov=True)
    else:
        opt = optim.Adam(model.parameters(), lr=args.lr or 3e-3)
    crit = losses.CrossEntropyLoss()
    train_loader = data.DataLoader(x_train, y_train, args.batch_size, shuffle=True,
                                   seed=args.seed, transform=train_tf)
    test_loader = data.DataLoader(x_test, y_test, 500, shuffle=False, transform=norm)
    per_rank = " per rank" if world is not None else ""
    say(f"LeNet-5 ({args.activation}, {sum(p.data.size for p in model.parameters())} "
        f"parameters), {args.optimizer} lr={opt.lr}, batch {args.batch_size}{per_rank}, "
        f"{args.epochs} epochs, {nc.get_num_threads()} threads{per_rank}")
    if world is not None:
        describe_world(world, train_loader, say)

    base_lr = opt.lr

    def schedule(epoch, h):
        # Called after `epoch` (1-based) finishes: set the rate of the next one.
        if args.schedule == "cosine":
            opt.lr = 0.5 * base_lr * (1 + math.cos(math.pi * epoch / args.epochs))

    def report(epoch, h):
        say(f"epoch {epoch:2d}/{args.epochs}  loss {h['loss'][-1]:.4f}  "
            f"train acc {h['accuracy'][-1]:.4f}  test acc {h['val_accuracy'][-1]:.4f}  "
            f"{h['seconds'][-1]:6.1f} s  {h['images_per_s'][-1]:7.0f} img/s")

    metadata = {"dataset": name, "mean": mean, "std": std, "epochs": args.epochs,
                "activation": args.activation, "optimizer": args.optimizer, "lr": base_lr,
                "schedule": args.schedule, "shift": args.shift,
                "batch_size": args.batch_size, "seed": args.seed,
                "world_size": 1 if world is None else world.size,
                "preprocessing": "x / 255, then (x - mean) / std"}
    t0 = time.perf_counter()
    fit(model, crit, opt, train_loader, args.epochs, val_loader=test_loader,
        # with the progress bar, fit prints each epoch's line itself
        callbacks=[schedule] + ([report] if args.no_progress else []), plot=args.plot,
        progress=not args.no_progress,
        checkpoint=args.checkpoint, resume=args.resume, metadata=metadata,
        distributed=world if world is not None else False)
    if not main_rank:
        return None  # rank 0 writes the model file and reports
    nc.save(model, args.out, optimizer=opt, metadata=metadata)
    _, acc = evaluate(nc.load(args.out), test_loader)
    print(f"trained in {time.perf_counter() - t0:.1f} s; model written to {args.out} "
          f"(reloaded: same accuracy {acc:.4f}), curves to {args.plot}", flush=True)
    print(f"test accuracy: {acc:.4f}")
    return acc


if __name__ == "__main__":
    main()

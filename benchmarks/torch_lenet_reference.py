"""The LeNet-5 recipe of examples/train_lenet.py, in PyTorch, for an accuracy and speed baseline.

Same data (nbconv.data loaders), same preprocessing (x/255, normalised by the training mean/std,
random shifts of up to ``--shift`` pixels), same architecture (seed layout, ReLU), Adam with a
per-epoch cosine schedule, same batch size and epochs.  Prints per-epoch test accuracy, seconds
and images/s, and the final line ``test accuracy: 0.XXXX``.

    python benchmarks/torch_lenet_reference.py --dataset fashion-mnist --threads 2
"""

from __future__ import annotations

import argparse
import math
import time

try:
    # before nbconv, whose import starts numba's OpenMP threads (that slowed PyTorch by ~30%)
    import torch
except ImportError:
    torch = None

from nbconv import data  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="fashion-mnist", choices=["fashion-mnist", "digits"])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--shift", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    if torch is None:
        raise SystemExit("torch not installed: pip install torch==2.13.0 (CPU build)")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    if args.dataset == "digits":
        (xt, yt), (xv, yv) = data.load_digits("train"), data.load_digits("test")
    else:
        xt, yt = data.load_fashion_mnist(None, "train")
        xv, yv = data.load_fashion_mnist(None, "test")
    mean, std = float(xt.mean()), float(xt.std())
    norm = data.transforms.normalize(mean, std)
    tf = data.transforms.compose(data.transforms.random_crop(args.shift), norm) if args.shift \
        else norm
    train = data.DataLoader(xt, yt, args.batch_size, shuffle=True, seed=args.seed, transform=tf)
    test = data.DataLoader(xv, yv, 500, shuffle=False, transform=norm)
    nn = torch.nn
    model = nn.Sequential(nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5),
                          nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(256, 120),
                          nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    acc = 0.0
    for epoch in range(args.epochs):
        model.train()
        t0 = time.perf_counter()
        n = 0
        for xb, yb in train:
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(torch.from_numpy(xb)),
                                                     torch.from_numpy(yb))
            loss.backward()
            opt.step()
            n += len(xb)
        secs = time.perf_counter() - t0
        for g in opt.param_groups:
            g["lr"] = 0.5 * args.lr * (1 + math.cos(math.pi * (epoch + 1) / args.epochs))
        model.eval()
        correct = 0
        with torch.no_grad():
            for xb, yb in test:
                correct += int((model(torch.from_numpy(xb)).argmax(1).numpy() == yb).sum())
        acc = correct / len(yv)
        print(f"epoch {epoch + 1:2d}/{args.epochs}  test acc {acc:.4f}  {secs:6.1f} s  "
              f"{n / secs:7.0f} img/s", flush=True)
    print(f"test accuracy: {acc:.4f}")
    return acc


if __name__ == "__main__":
    main()

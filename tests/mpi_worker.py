"""One rank of the distributed tests, launched by tests/test_distributed.py as
``mpiexec -n N python tests/mpi_worker.py OUT [options]``.

Every rank trains a tiny model with ``fit(..., distributed=True)`` and writes its final weights
to ``OUT/weights_rank<r>.npz`` (rank 0 also ``OUT/history.json``); ``--fail`` makes one rank
die, raise or hang mid-epoch.  The single-process references live in the test file, which
builds the same problem with the functions below.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import time

import numpy as np


def problem(n, seed=0):
    """``n`` 28x28 one-channel images of 3 classes (a bright bar whose position is the class)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n).astype(np.int64)
    x = rng.standard_normal((n, 1, 28, 28)).astype(np.float32) * 0.3
    for k in range(3):
        x[y == k, 0, 4 + 7 * k:9 + 7 * k, 6:22] += 1.5
    return x, y


_RECORDED = {}


def recorded_class(bn):
    """The network ``bn`` (``bn=True``) or the same without its batch norm, written
    PyTorch-style: a ``forward`` and no ``backward`` (recorded as it runs).  Layers are built
    in the order of ``bn``'s, so that a seed gives the same initial weights (keys
    ``conv.weight``, ...)."""
    if bn not in _RECORDED:
        import nbconv as nc
        from nbconv import nn

        class Recorded(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(1, 4, 3)
                if bn:
                    self.bn = nn.BatchNorm2d(4)
                self.pool = nn.MaxPool2d(2)
                self.fc = nn.Linear(4 * 13 * 13, 3)

            def forward(self, x):
                x = self.conv(x)
                if bn:
                    x = self.bn(x)
                x = self.pool(nc.relu(x))
                return self.fc(x.reshape(x.shape[0], -1))

        Recorded.__name__ = Recorded.__qualname__ = "RecordedBN" if bn else "Recorded"
        _RECORDED[bn] = nn.register(Recorded)
    return _RECORDED[bn]


def build(kind, seed):
    """``lenet`` (nbconv.models.lenet5, ReLU), ``bn`` (conv, batch norm, ReLU, pool, fc), or
    ``recorded``/``recorded_bn``: PyTorch-style subclasses (see :func:`recorded_class`)."""
    import nbconv as nc
    from nbconv import models, nn

    nc.manual_seed(seed)
    if kind == "lenet":
        return models.lenet5(num_classes=3, activation="relu")
    if kind in ("recorded", "recorded_bn"):
        return recorded_class(kind == "recorded_bn")()
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(4 * 13 * 13, 3))


def loaders(n, batch, shift):
    from nbconv import data

    x, y = problem(n)
    tf = data.transforms.random_crop(shift) if shift else None
    train = data.DataLoader(x, y, batch, shuffle=True, seed=3, transform=tf)
    val = data.DataLoader(x, y, 7, shuffle=False)
    return train, val


def optimizer(model):
    from nbconv import optim

    return optim.SGD(model.parameters(), lr=0.05, momentum=0.9)


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--model", default="lenet", choices=["lenet", "bn", "recorded", "recorded_bn"])
    p.add_argument("--n", type=int, default=22)
    p.add_argument("--batch", type=int, default=4, help="per rank")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--shift", type=int, default=0)
    p.add_argument("--sync-bn", action="store_true")
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--rank-files", action="store_true",
                   help="checkpoint and plot named after the rank (only rank 0's may appear)")
    p.add_argument("--keep-epoch", type=int, default=None,
                   help="rank 0 copies the checkpoint after this epoch to CHECKPOINT.epK")
    p.add_argument("--resume", default=None)
    p.add_argument("--fail", default=None, choices=["kill", "raise", "hang"])
    p.add_argument("--fail-rank", type=int, default=1)
    p.add_argument("--fail-step", type=int, default=3)
    p.add_argument("--timeout", type=float, default=None)
    p.add_argument("--stop-rank", type=int, default=None,
                   help="a callback asks to stop after --stop-epoch on this rank only")
    p.add_argument("--stop-epoch", type=int, default=1)
    args = p.parse_args(argv)

    from nbconv import distributed, losses
    from nbconv.train import fit

    world = distributed.init()
    # A different initialisation on every rank: the broadcast from rank 0 must fix it.
    model = build(args.model, seed=world.rank)
    opt = optimizer(model)
    train, val = loaders(args.n, args.batch, args.shift)

    if args.fail:
        forward, calls = model.forward, [0]

        def failing_forward(x):
            calls[0] += 1
            if calls[0] == args.fail_step - 1 and args.timeout is not None:
                # short only now: the first steps compile the kernels, at different speeds
                world.timeout = args.timeout
            if calls[0] == args.fail_step and world.rank == args.fail_rank:
                sys.stderr.write(f"worker: rank {world.rank} fails ({args.fail}) at "
                                 f"{time.time():.3f}\n")
                sys.stderr.flush()
                if args.fail == "kill":
                    os.kill(os.getpid(), signal.SIGKILL)
                elif args.fail == "raise":
                    raise RuntimeError("injected failure")
                else:
                    time.sleep(3600)
            return forward(x)

        model.forward = failing_forward

    callbacks = []
    checkpoint = args.checkpoint
    plot = None
    if args.rank_files:
        checkpoint = os.path.join(args.out, f"ckpt_rank{world.rank}.h5")
        plot = os.path.join(args.out, f"plot_rank{world.rank}.png")
    if args.keep_epoch is not None:
        def keep(epoch, history):
            if epoch == args.keep_epoch and world.rank == 0:
                shutil.copyfile(checkpoint, f"{checkpoint}.ep{epoch}")
        callbacks.append(keep)

    if args.stop_rank is not None:
        callbacks.append(lambda epoch, history: not (world.rank == args.stop_rank
                                                     and epoch == args.stop_epoch))

    hist = fit(model, losses.CrossEntropyLoss(), opt, train, args.epochs, val_loader=val,
               callbacks=callbacks, checkpoint=checkpoint, resume=args.resume, plot=plot,
               progress=False, distributed=world, sync_batch_norm=args.sync_bn)
    np.savez(os.path.join(args.out, f"weights_rank{world.rank}.npz"), **model.state_dict())
    if world.rank == 0:
        with open(os.path.join(args.out, "history.json"), "w") as f:
            json.dump(hist, f)


if __name__ == "__main__":
    main()

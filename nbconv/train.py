"""``fit``: the training loop with a progress bar, history, checkpoints, resume and plots."""

from __future__ import annotations

import json
import os
import sys
import time
from contextlib import nullcontext

import numpy as np

from . import _dispatch
from ._dispatch import is_device_array
from .losses import CrossEntropyLoss
from .nn.module import _rng, no_grad

__all__ = ["fit", "evaluate", "History", "plot_history"]


class History(dict):
    """Per-epoch records: ``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``, ``seconds``,
    ``images_per_s``, ``lr`` (lists, one entry per finished epoch; accuracies are None when the
    loss is not a classification loss; ``lr`` is the first parameter group's learning rate at
    the start of the epoch, None in epochs recorded by an older nbconv)."""

    KEYS = ("loss", "accuracy", "val_loss", "val_accuracy", "seconds", "images_per_s", "lr")

    def __init__(self, data=None):
        super().__init__({k: [] for k in self.KEYS})
        if data:
            for k in self.KEYS:
                self[k] = list(data.get(k, []))
            n = len(self["loss"])
            self["lr"] = [None] * (n - len(self["lr"])) + self["lr"]

    @property
    def epochs(self) -> int:
        return len(self["loss"])



def _to_device(a):
    """``nbconv.cuda.to_device(a)``, through the dispatch table (train needs no GPU code)."""
    return _dispatch.device.to_device(a)


def _to_host(a):
    return _dispatch.device.to_host(a)

def _batch_accuracy(logits, y) -> int:
    return int(np.count_nonzero(np.argmax(logits, axis=1) == y))


def _on_device(model, op) -> bool:
    """True if ``model``'s parameters are CUDA device arrays, False if they are host arrays.

    Decided once per call of ``fit``/``evaluate`` so that the host loop pays one boolean test
    per batch.  A model without parameters counts as a host model (its batches stay as given).
    """
    where = {is_device_array(p.data) for p in model.parameters()}
    if len(where) > 1:
        raise ValueError(
            f"{op}: argument 'model' has parameters both on the host and on the device; move "
            f"all of them with nbconv.cuda.to_device(model) or nbconv.cuda.to_host(model)")
    return where == {True}


def _device_batch(xb, yb):
    """``(n, x, y, host labels)`` of a batch for a device model.

    ``x`` and ``y`` are device copies (device arrays pass through unchanged); the host labels
    are kept for the accuracy, which is counted on the host from a copy of the logits (labels
    a loader already yields on the device are copied back once for that).
    """
    if not is_device_array(xb):
        xb = np.asarray(xb)
    y_host = _to_host(yb) if is_device_array(yb) else np.asarray(yb)
    return int(xb.shape[0]), _to_device(xb), _to_device(yb), y_host


def evaluate(model, loader, loss=None):
    """Mean loss and accuracy of ``model`` over ``loader`` in eval mode, without caching.

    Parameters
    ----------
    model : nbconv.nn.Module
        On the host or on the device (``nbconv.cuda.to_device(model)``); for a device model
        each batch is copied to the device and the accuracy is counted from a host copy of
        the logits.
    loader : iterable of (x, y) batches, e.g. ``nbconv.data.DataLoader``
    loss : nbconv.losses loss, optional

    Returns
    -------
    (float or None, float or None)
        Mean loss (None without ``loss``) and accuracy (None unless ``loss`` is a
        ``CrossEntropyLoss`` or omitted with integer labels).
    """
    return _means(*_evaluate_sums(model, loader, loss), loss)


def _means(loss_sum, correct, total, classify, loss):
    if total == 0:
        return None, None
    return (loss_sum / total if loss is not None else None,
            correct / total if classify else None)


def _evaluate_sums(model, loader, loss):
    """``(loss_sum, correct, total, classify)`` of ``model`` over ``loader`` (see evaluate)."""
    was_training = model.training
    model.eval()
    total = correct = 0
    loss_sum = 0.0
    classify = loss is None or isinstance(loss, CrossEntropyLoss)
    device = _on_device(model, "evaluate")
    try:
        with no_grad():
            for xb, yb in loader:
                if device:
                    n, xb, yb, y_host = _device_batch(xb, yb)
                else:
                    n, y_host = len(xb), yb
                if n == 0:
                    continue  # an empty shard of a distributed evaluation
                out = model.forward(xb)
                if loss is not None:
                    loss_sum += loss.forward(out, yb) * n
                if classify and np.ndim(out) == 2 and np.asarray(y_host).dtype.kind in "iu":
                    correct += _batch_accuracy(_to_host(out) if device else out, y_host)
                total += n
    finally:
        model.train(was_training)
    return loss_sum, correct, total, classify


def _rng_state() -> str:
    return json.dumps(_rng[0].bit_generator.state)


def _set_rng_state(text: str) -> None:
    state = json.loads(text)
    bitgen = getattr(np.random, state["bit_generator"])()
    bitgen.state = state
    _rng[0] = np.random.Generator(bitgen)


def fit(model, loss, optimizer, train_loader, epochs, val_loader=None, callbacks=(),
        checkpoint=None, resume=None, plot=None, progress=True, metadata=None,
        distributed=False, sync_batch_norm=False, scheduler=None, scheduler_interval="epoch"):
    """Train ``model`` for ``epochs`` epochs and return the :class:`History`.

    Parameters
    ----------
    model : nbconv.nn.Module
        On the host, or on a CUDA device (``nbconv.cuda.to_device(model)``, decided once from
        where its parameters live).  For a device model every batch (inputs and labels) is
        copied to the device with ``nbconv.cuda.to_device`` (batches already there are used
        as they are), forward, backward and the optimizer step run there, and the accuracy is
        counted from a host copy of the logits; the history and checkpoints are the same as
        on the host.
    loss : nbconv.losses loss, e.g. ``CrossEntropyLoss()``
    optimizer : nbconv.optim optimizer over ``model.parameters()``
    train_loader : iterable of (x, y) batches, e.g. ``nbconv.data.DataLoader``
        Its ``set_epoch(e)`` is called before epoch ``e`` when it exists, so that shuffling is
        a function of (seed, epoch) and a resumed run sees the same batches.
    epochs : int
        Total number of epochs (a resumed run continues up to this number).
    val_loader : iterable of (x, y), optional
        Evaluated after every epoch (``val_loss``, ``val_accuracy``).
    callbacks : sequence of callables
        ``cb(epoch, history)`` after every epoch (``epoch`` counts from 1); returning ``False``
        stops training.
    checkpoint : str or path, optional
        HDF5 model file written (crash-safe) after every epoch, with the optimizer state
        (parameter groups and learning rates included), the scheduler's state, the history,
        the epoch and the random-generator state for an exact resume.
    resume : str or path, optional
        A checkpoint written by ``fit``: weights, optimizer and scheduler state, history and
        generator state are restored (onto the device for a device model) and training
        continues after its last epoch; with the same seeds the final weights are
        bit-identical to an uninterrupted run.  Build the optimizer and the scheduler as for
        the first run before resuming.
    plot : str or path, optional
        Training-curve PNG (loss and accuracy per epoch) rewritten after every epoch.
    progress : bool
        Show a tqdm progress bar (on stderr, on rank 0) with the running loss and accuracy
        during each epoch, and print one line per epoch on stdout with its figures, e.g.
        ``epoch 3/10  loss 0.4120  acc 0.8710  val_loss 0.4550  val_acc 0.8620  12.3 s  950
        img/s`` (``acc`` for a classification loss, ``val_*`` with ``val_loader``).
    metadata : dict, optional
        Extra JSON-able values stored in every checkpoint (e.g. normalisation ``mean``/``std``).
    distributed : bool or nbconv.distributed.World, default False
        Data-parallel training over MPI (run the script with ``mpiexec -n N``; see
        :mod:`nbconv.distributed`).  ``train_loader`` (a ``DataLoader``) is sharded: each rank
        takes ``batch_size`` samples of every global batch of ``N * batch_size``, and the
        gradients are averaged over the global batch with one ``Allreduce`` per step, so the
        weights follow those of one process at batch ``N * batch_size`` (to float rounding).
        Rank 0's initial (or resumed) state is broadcast; a ``DataLoader`` ``val_loader`` is
        sharded too; the history holds the sums over all ranks; rank 0 alone writes
        ``checkpoint`` and ``plot`` and shows the progress bar; callbacks run on every rank
        and training stops when one returns ``False`` on any rank.  A checkpoint resumes on
        any number of ranks, or without ``distributed``.  An exception on one rank aborts all.
    sync_batch_norm : bool, default False
        With ``distributed``: batch-norm layers normalise with the global batch's statistics
        (:class:`nbconv.distributed.sync_batch_norm`) instead of their rank's, whose running
        statistics are otherwise averaged over the ranks after every epoch.
    scheduler : nbconv.optim.lr_scheduler scheduler, optional
        Built on ``optimizer``; stepped after every epoch (after the validation) or after
        every ``optimizer.step()``, as ``scheduler_interval`` says.  A ``ReduceLROnPlateau``
        is stepped with the epoch's validation loss (the training loss without
        ``val_loader``).  Its state is saved in ``checkpoint`` and restored by ``resume``.
    scheduler_interval : {"epoch", "batch"}, default "epoch"
        ``"batch"`` for schedules counted in optimizer steps (``OneCycleLR``).

    Returns
    -------
    History
        Losses and accuracies are Python floats (JSON-able), on the host for both kinds of
        model.  A distributed run adds ``allreduce_seconds`` (this rank's time in the
        gradient reductions per epoch).

    Raises
    ------
    ValueError
        ``epochs`` < 0, or a ``model`` with parameters both on the host and on the device,
        or ``distributed`` with a device model; a ``scheduler`` of another optimizer, a bad
        ``scheduler_interval``, ``ReduceLROnPlateau`` per batch; ``resume`` with a
        ``scheduler`` from a checkpoint saved without one (or with another kind).
    TypeError
        ``distributed`` with a ``train_loader`` that is not a ``DataLoader``; a ``scheduler``
        that is not an nbconv scheduler.
    ImportError
        ``distributed`` without mpi4py or an MPI library.
    """
    epochs = int(epochs)
    if epochs < 0:
        raise ValueError(f"fit: argument 'epochs' must be >= 0, got {epochs}")
    if getattr(loss, "reduction", "mean") not in ("mean", "sum", "batchmean"):
        raise ValueError(f"fit: argument 'loss' must reduce to one number per batch; "
                         f"{type(loss).__name__}(reduction={loss.reduction!r}) gives one per "
                         "element: use reduction='mean' or 'sum'")
    sched = _check_scheduler(scheduler, scheduler_interval, optimizer)
    device = _on_device(model, "fit")
    world = _world(distributed)
    if world is None:
        return _fit(model, loss, optimizer, train_loader, epochs, val_loader, callbacks,
                    checkpoint, resume, plot, progress, metadata, device, None, False, sched)
    if device:
        raise ValueError("fit: distributed=True trains host models only; move the model back "
                         "with nbconv.cuda.to_host(model)")
    from . import distributed as dist

    train_loader = _shard(train_loader, world, "train_loader")
    if val_loader is not None and hasattr(val_loader, "order"):
        val_loader = _shard(val_loader, world, "val_loader")
    if sync_batch_norm and dist._bn_layers(model):
        small = [m for m in train_loader.global_batch_sizes() if m < world.size]
        if small:
            raise ValueError(
                f"fit: sync_batch_norm needs every rank to get samples of every batch, but the "
                f"last global batch has {small[0]} samples for {world.size} ranks; use "
                f"drop_last=True or another batch size")
    try:
        with (dist.sync_batch_norm(model, world) if sync_batch_norm else nullcontext()):
            return _fit(model, loss, optimizer, train_loader, epochs, val_loader, callbacks,
                        checkpoint, resume, plot, progress, metadata, False, world,
                        bool(sync_batch_norm), sched)
    except BaseException as e:  # any failure on one rank must end all ranks
        world.abort_on_error(e)
        raise


def _check_scheduler(scheduler, interval, optimizer):
    """``(scheduler, per_batch, needs_metric)`` or None, after checking the arguments."""
    if interval not in ("epoch", "batch"):
        raise ValueError(f"fit: argument 'scheduler_interval' must be 'epoch' or 'batch', got "
                         f"{interval!r}")
    if scheduler is None:
        return None
    from .optim.lr_scheduler import LRScheduler, ReduceLROnPlateau

    if not isinstance(scheduler, LRScheduler):
        raise TypeError(f"fit: argument 'scheduler' must be an nbconv.optim.lr_scheduler "
                        f"scheduler, got {type(scheduler).__name__}")
    if scheduler.optimizer is not optimizer:
        raise ValueError("fit: argument 'scheduler' was built on another optimizer than "
                         "'optimizer'")
    plateau = isinstance(scheduler, ReduceLROnPlateau)
    if plateau and interval == "batch":
        raise ValueError("fit: ReduceLROnPlateau steps on an epoch's metric; use "
                         "scheduler_interval='epoch'")
    return scheduler, interval == "batch", plateau


def _restore_scheduler(sched, meta):
    """Load the scheduler state of checkpoint metadata ``meta`` into ``sched``."""
    scheduler = sched[0]
    saved = meta.get("scheduler") if meta else None
    name = type(scheduler).__name__
    if not isinstance(saved, dict) or "state" not in saved:
        raise ValueError(f"fit: argument 'resume' names a checkpoint without scheduler state, "
                         f"but a {name} was given (resume without scheduler=, or from a "
                         "checkpoint written with one)")
    if saved.get("type") != name:
        raise ValueError(f"fit: the checkpoint holds the state of a {saved.get('type')!r}, "
                         f"but a {name} was given")
    scheduler.load_state_dict(saved["state"])


def _world(distributed):
    if distributed is False or distributed is None:
        return None
    from . import distributed as dist

    if distributed is True:
        return dist.init()
    if isinstance(distributed, dist.World):
        return distributed
    raise TypeError(f"fit: argument 'distributed' must be a bool or a "
                    f"nbconv.distributed.World, got {type(distributed).__name__}")


def _shard(loader, world, name):
    from . import distributed as dist

    if isinstance(loader, dist.ShardedLoader):
        if (loader.rank, loader.world_size) != (world.rank, world.size):
            raise ValueError(f"fit: argument '{name}' is sharded for rank {loader.rank} of "
                             f"{loader.world_size}, this is rank {world.rank} of {world.size}")
        return loader
    if not hasattr(loader, "order"):
        raise TypeError(f"fit: distributed training needs a nbconv.data.DataLoader as "
                        f"'{name}' (to shard it), got {type(loader).__name__}")
    return dist.ShardedLoader(loader, world.rank, world.size)


def _load_resume(io, resume, world):
    """``(state_dict, optimizer_state, metadata)`` of checkpoint ``resume``; in a distributed
    run rank 0 reads the file and broadcasts it (other machines need no copy)."""
    loaded = None
    if world is None or world.is_main:
        state_model, opt_state, meta = io.load_state(resume)
        loaded = (state_model.state_dict(), opt_state, meta)
    return loaded if world is None else world.bcast(loaded)


def _set_rank_rngs(world, meta):
    """Per-rank generators: rank 0's from the checkpoint (or as it is), the others' from the
    checkpoint when it was written by as many ranks, else derived from rank 0's."""
    from . import distributed as dist

    states = json.loads(meta["rng_states"]) if meta and "rng_states" in meta else None
    if states is not None and len(states) == world.size:
        _set_rng_state(states[world.rank])
        return
    if meta and "rng_state" in meta and world.rank == 0:
        _set_rng_state(meta["rng_state"])
    root_state = world.bcast(_rng_state() if world.rank == 0 else None)
    if world.rank > 0:
        _rng[0] = dist.rank_rng(root_state, world.rank)


def _fit(model, loss, optimizer, train_loader, epochs, val_loader, callbacks, checkpoint,
         resume, plot, progress, metadata, device, world, synced_bn, sched=None):
    from . import io

    history = History()
    start = 0
    meta = None
    if resume is not None:
        state, opt_state, meta = _load_resume(io, resume, world)
        model.load_state_dict(state)
        if opt_state is not None:
            optimizer.load_state_dict(opt_state)
        if sched is not None:
            _restore_scheduler(sched, meta)
        recorded = json.loads(meta.get("history", "{}"))
        history = History(recorded)
        start = int(meta.get("epoch", history.epochs))
        if world is None and "rng_state" in meta:
            _set_rng_state(meta["rng_state"])
    main = world is None or world.is_main
    reduce_grads = None
    if world is not None:
        from . import distributed as dist

        _set_rank_rngs(world, meta)
        dist.broadcast_state(model, optimizer, world)
        reduce_grads = dist.GradientAllreduce(model.parameters(), world)
        history["allreduce_seconds"] = list(recorded.get("allreduce_seconds", [])
                                            if resume is not None else [])
    classify = isinstance(loss, CrossEntropyLoss)

    for epoch in range(start, epochs):
        if hasattr(train_loader, "set_epoch"):
            train_loader.set_epoch(epoch)
        model.train()
        t0 = time.perf_counter()
        comm0 = reduce_grads.seconds if reduce_grads is not None else 0.0
        seen = correct = 0
        loss_sum = 0.0
        lr = optimizer.param_groups[0].get("lr") if hasattr(optimizer, "param_groups") else None
        bar = _progress(train_loader, epoch, epochs, progress and main)
        for xb, yb in bar:
            if device:
                n, xb, yb, y_host = _device_batch(xb, yb)
            optimizer.zero_grad()
            if world is None or len(xb):  # a rank may get no sample of the last batch
                out = model.forward(xb)
                value = loss.forward(out, yb)
                dout = loss.backward()
                if world is not None and len(xb) != train_loader.global_n:
                    # this rank's share of the mean loss over the global batch
                    dout = dout * dout.dtype.type(len(xb) / train_loader.global_n)
                if getattr(model, "_supports_need_dx", False):
                    model.backward(dout, need_dx=False)  # nobody needs d(loss)/d(images)
                else:
                    model.backward(dout)
            if reduce_grads is not None:
                reduce_grads()
            optimizer.step()
            if sched is not None and sched[1]:
                sched[0].step()
            if world is not None and not len(xb):
                continue
            if device:
                value = float(value)
                if classify:
                    correct += _batch_accuracy(_to_host(out), y_host)
            else:
                n = len(xb)
                if classify:
                    correct += _batch_accuracy(out, yb)
            seen += n
            loss_sum += value * n
            if progress and main and hasattr(bar, "set_postfix"):
                post = {"loss": f"{loss_sum / seen:.4f}"}
                if classify:
                    post["acc"] = f"{correct / seen:.4f}"
                bar.set_postfix(post, refresh=False)
        if world is not None:
            loss_sum, correct, seen = dist.reduce_sums([loss_sum, correct, seen], world)
            seen, correct = int(seen), int(correct)
            if not synced_bn:
                dist.average_batch_norm_stats(model, world)
            history["allreduce_seconds"].append(reduce_grads.seconds - comm0)
        seconds = time.perf_counter() - t0
        history["loss"].append(loss_sum / max(seen, 1))
        history["accuracy"].append(correct / max(seen, 1) if classify else None)
        history["seconds"].append(seconds)
        history["images_per_s"].append(seen / seconds if seconds > 0 else None)
        history["lr"].append(None if lr is None else float(lr))
        if val_loader is not None:
            sums = _evaluate_sums(model, val_loader, loss)
            if world is not None and hasattr(val_loader, "global_n"):
                sums = (*dist.reduce_sums(sums[:3], world), sums[3])
            vl, va = _means(*sums, loss)
        else:
            vl = va = None
        history["val_loss"].append(vl)
        history["val_accuracy"].append(va)
        if progress and main:  # the bar is cleared: one line per epoch stays on screen
            _say(_epoch_line(epoch + 1, epochs, history))
        if sched is not None and not sched[1]:
            if sched[2]:  # ReduceLROnPlateau
                sched[0].step(vl if vl is not None else history["loss"][-1])
            else:
                sched[0].step()
        # every rank takes part, also where only rank 0 was given a checkpoint path
        states = world.gather(_rng_state()) if world is not None else None
        if checkpoint is not None and main:
            meta = dict(metadata or {})
            meta.update(epoch=epoch + 1, history=json.dumps(history), rng_state=_rng_state())
            if sched is not None:
                meta["scheduler"] = {"type": type(sched[0]).__name__,
                                     "state": sched[0].state_dict()}
            if world is not None:
                meta.update(rng_states=json.dumps(states), world_size=world.size,
                            global_batch_size=train_loader.global_batch_size)
            io.save(model, checkpoint, optimizer=optimizer, metadata=meta)
        if plot is not None and main:
            plot_history(history, plot)
        stop = any(cb(epoch + 1, history) is False for cb in callbacks)
        if world is not None:
            stop = dist.agree(stop, world)
        if stop:
            break
    return history


def _epoch_line(epoch, epochs, history) -> str:
    """``epoch 3/10  loss 0.4120  acc 0.8710  val_loss 0.4550  val_acc 0.8620  12.3 s  950
    img/s``: the figures of the epoch just finished (those it has)."""
    parts = [f"epoch {epoch}/{epochs}"]
    for key, label in (("loss", "loss"), ("accuracy", "acc"), ("val_loss", "val_loss"),
                       ("val_accuracy", "val_acc")):
        v = history[key][-1]
        if v is not None:
            parts.append(f"{label} {v:.4f}")
    parts.append(f"{history['seconds'][-1]:.1f} s")
    if history["images_per_s"][-1] is not None:
        parts.append(f"{history['images_per_s'][-1]:.0f} img/s")
    return "  ".join(parts)


def _say(line: str) -> None:
    """Print ``line`` on stdout, above any progress bar still shown (the user's own)."""
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        print(line, flush=True)
        return
    tqdm.write(line, file=sys.stdout)
    sys.stdout.flush()


def _progress(loader, epoch, epochs, enabled):
    if not enabled:
        return loader
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return loader
    return tqdm(loader, desc=f"epoch {epoch + 1}/{epochs}", leave=False,
                total=len(loader) if hasattr(loader, "__len__") else None, unit="batch")


def plot_history(history, path) -> None:
    """Write a PNG of the loss and accuracy curves (train and validation) per epoch."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    epochs = np.arange(1, len(history["loss"]) + 1)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(epochs, history["loss"], "o-", label="train")
    if any(v is not None for v in history["val_loss"]):
        ax1.plot(epochs, [np.nan if v is None else v for v in history["val_loss"]], "s-",
                 label="test")
    ax1.set(xlabel="epoch", ylabel="loss", title="loss")
    ax1.legend()
    for key, label, marker in (("accuracy", "train", "o-"), ("val_accuracy", "test", "s-")):
        vals = history[key]
        if any(v is not None for v in vals):
            ax2.plot(epochs, [np.nan if v is None else v for v in vals], marker, label=label)
    ax2.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    ax2.legend()
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = f"{os.fspath(path)}.tmp.png"
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)

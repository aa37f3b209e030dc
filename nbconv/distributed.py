"""Data-parallel training over MPI (mpi4py): one model replica per rank, gradients summed
with one ``Allreduce`` per step.

Launch any script that calls ``nbconv.train.fit(..., distributed=True)`` with ``mpiexec``::

    mpiexec -n 2 python examples/train_lenet.py --distributed

How a run is split (every rank runs the same script on the whole data set):

* **Data.** `ShardedLoader` cuts each epoch's shuffled order (the same seed on every rank) into
  *global* batches of ``world_size * batch_size`` samples and gives rank ``r`` the ``r``-th
  contiguous slice of each; the last, shorter global batch is split as evenly as possible
  (``numpy.array_split``; a rank may get no sample of it and then only joins the reductions).
  Every rank therefore runs the same number of steps, and the shards of a step together are
  exactly the batch a single process with ``batch_size * world_size`` would see, augmentation
  included (the transform runs on the whole global batch; it is cheap beside the model).
* **Gradients.** Each rank scales its loss gradient by ``n_rank / n_global`` and the gradients
  are *summed* over ranks (`GradientAllreduce`: every parameter gradient packed into one
  contiguous buffer per dtype, one ``Allreduce`` per step), which is the gradient of the mean
  loss over the global batch, also for uneven shards.
* **State.** Rank 0's weights, buffers and optimizer state are broadcast before training
  (`broadcast_state`), so every replica starts, and stays, identical. Batch-norm layers use
  their rank's batch statistics in the forward pass (as PyTorch's DDP does without
  ``SyncBatchNorm``), and their running statistics are averaged over ranks at the end of each
  epoch (`average_batch_norm_stats`, before validation and checkpointing); with
  ``sync_batch_norm=True`` the batch statistics are those of the global batch instead
  (`sync_batch_norm`, two small ``Allreduce`` calls per layer and step), which makes a run
  match a single process at the global batch size.
* **Files and output.** Rank 0 alone writes checkpoints, the model file and the PNG and shows
  the progress bar (its own shard's running loss); the history is reduced over all ranks.
* **Stopping.** A callback that returns ``False`` on any rank stops every rank after that epoch
  (`agree`).
* **Failures.** A Python exception on a rank inside ``fit`` prints the rank and the error and
  calls ``MPI_Abort``, which ends every rank; a rank killed by a signal makes ``mpiexec`` end
  the others; a rank that stops taking part (hangs, or leaves the loop) makes the others give up
  after ``timeout`` seconds in a reduction (``NBCONV_MPI_TIMEOUT``, default 300) and abort with a
  message saying so.

mpi4py is imported here only, when `init` is first called.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
import traceback

import numpy as np

__all__ = ["init", "World", "ShardedLoader", "GradientAllreduce", "broadcast_state",
           "average_batch_norm_stats", "sync_batch_norm", "agree", "reduce_sums", "rank_rng",
           "launched_by_mpiexec", "INSTALL_HINT"]

INSTALL_HINT = ("nbconv.distributed needs mpi4py and an MPI library: pip install 'nbconv[mpi]' "
                "(mpi4py and the mpich wheel, which brings mpiexec), or mpi4py built against "
                "your cluster's MPI")

#: environment variables that MPI launchers (MPICH/Intel MPI's hydra, Open MPI, PMIx, Slurm)
#: set in the processes they start
_LAUNCHER_VARS = ("PMI_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS")

_world: list[World | None] = [None]
_yield = getattr(os, "sched_yield", lambda: None)


def launched_by_mpiexec() -> bool:
    """Whether this process was started by an MPI launcher (checked without importing MPI)."""
    return any(v in os.environ for v in _LAUNCHER_VARS)


def _mpi():
    try:
        from mpi4py import MPI
    except (ImportError, RuntimeError, OSError) as e:  # no mpi4py, or no libmpi behind it
        raise ImportError(f"{INSTALL_HINT} ({type(e).__name__}: {e})") from e
    return MPI


def _default_timeout() -> float:
    text = os.environ.get("NBCONV_MPI_TIMEOUT", "300")
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"NBCONV_MPI_TIMEOUT must be a number of seconds, got {text!r}") from None
    if not value > 0:
        raise ValueError(f"NBCONV_MPI_TIMEOUT must be > 0 seconds, got {text!r}")
    return value


class World:
    """The ranks of one run: an MPI communicator with timed reductions and an abort path.

    Attributes
    ----------
    comm : mpi4py.MPI.Comm
    rank, size : int
        This process's rank and the number of ranks.
    timeout : float
        Seconds a reduction may wait for the other ranks before the run is aborted.
    """

    def __init__(self, comm, timeout=None):
        self.MPI = _mpi()
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self.timeout = _default_timeout() if timeout is None else float(timeout)
        if not self.timeout > 0:
            raise ValueError(f"World: argument 'timeout' must be > 0 seconds, got {timeout!r}")

    @property
    def is_main(self) -> bool:
        """True on rank 0, the rank that writes files and shows progress."""
        return self.rank == 0

    def local_size(self) -> int:
        """How many ranks of this run share this machine (to split its cores between them)."""
        node = self.comm.Split_type(self.MPI.COMM_TYPE_SHARED)
        try:
            return node.Get_size()
        finally:
            node.Free()

    def allreduce_(self, buf: np.ndarray, op: str = "sum", what: str = "Allreduce"):
        """Reduce the contiguous ndarray ``buf`` over all ranks, in place (``op``: "sum" or
        "max"), waiting at most ``timeout`` seconds for the others (then abort)."""
        mpi_op = {"sum": self.MPI.SUM, "max": self.MPI.MAX}[op]
        if self.size == 1:
            return buf
        req = self.comm.Iallreduce(self.MPI.IN_PLACE, buf, op=mpi_op)
        deadline = time.monotonic() + self.timeout
        # Polling Test() costs what a blocking Allreduce costs (both spin) but can give up;
        # sched_yield hands the core to another runnable process (a rank that shares it).
        while not req.Test():
            _yield()
            if time.monotonic() > deadline:
                self.abort(f"rank {self.rank} of {self.size} waited {self.timeout:g} s in "
                           f"{what}: another rank died, hangs or left the training loop")
        return buf

    def bcast(self, obj, root: int = 0):
        """``obj`` of rank ``root`` on every rank (pickled; for start-up state, not per step)."""
        return obj if self.size == 1 else self.comm.bcast(obj, root=root)

    def gather(self, obj, root: int = 0):
        """List of every rank's ``obj`` on ``root`` (None elsewhere)."""
        return [obj] if self.size == 1 else self.comm.gather(obj, root=root)

    def abort(self, message: str, code: int = 1):
        """Print ``message`` to stderr and end every rank of the run (``MPI_Abort``)."""
        sys.stderr.write(f"nbconv.distributed: {message}; aborting all {self.size} ranks\n")
        sys.stderr.flush()
        # The launcher tears its output forwarding down on MPI_Abort; give it a moment to pass
        # on what this rank has just written (else the reason can be lost).
        time.sleep(0.5)
        self.comm.Abort(code)
        os._exit(code)  # MPICH's MPI_Abort can return to the caller before the launcher acts

    def abort_on_error(self, exc: BaseException):
        """The failure path of a rank: print the traceback and the rank, then abort the run
        (with one rank, re-raise instead)."""
        if self.size == 1:
            raise exc
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
        self.abort(f"rank {self.rank} of {self.size} failed with {type(exc).__name__}: {exc}")

    def __repr__(self) -> str:
        return f"World(rank={self.rank}, size={self.size}, timeout={self.timeout:g})"


def init(comm=None, timeout=None) -> World:
    """Start (or join) MPI and return this run's `World`.

    Parameters
    ----------
    comm : mpi4py.MPI.Comm, optional
        Default ``MPI.COMM_WORLD``.  The first call fixes the world; later calls without
        arguments return it.
    timeout : float, optional
        Seconds a reduction waits for the other ranks (default ``NBCONV_MPI_TIMEOUT`` or 300).

    Also installs an exception hook that aborts the whole run when an uncaught exception
    reaches the top of a rank with more than one rank (otherwise the others would wait
    forever in their next reduction).

    Raises
    ------
    ImportError
        mpi4py or an MPI library is missing (with the install hint).
    """
    if _world[0] is not None and comm is None:
        if timeout is not None:
            _world[0].timeout = float(timeout)
        return _world[0]
    MPI = _mpi()
    world = World(MPI.COMM_WORLD if comm is None else comm, timeout)
    if _world[0] is None and world.size > 1:
        previous = sys.excepthook

        def _abort_hook(kind, exc, tb):
            previous(kind, exc, tb)
            world.abort(f"uncaught {kind.__name__} on rank {world.rank} of {world.size}")

        sys.excepthook = _abort_hook
    _world[0] = world
    return world


def _shard_bounds(n: int, rank: int, size: int) -> tuple[int, int]:
    """``[lo, hi)`` of rank ``rank`` in a global batch of ``n`` samples (numpy.array_split)."""
    q, r = divmod(n, size)
    lo = rank * q + min(rank, r)
    return lo, lo + q + (1 if rank < r else 0)


class ShardedLoader:
    """Rank ``rank``'s share of a `nbconv.data.DataLoader`: ``loader.batch_size`` samples of
    each global batch of ``world_size * loader.batch_size``.

    The epoch's order is ``loader.order(epoch)`` (the same seed gives the same order on every
    rank); global batch ``k`` is ``order[k*G:(k+1)*G]`` with ``G = world_size * batch_size``,
    and this rank takes its slice ``[lo, hi)`` of it (`bounds`).  The last global batch, when
    shorter, is split as ``numpy.array_split`` splits it; with ``loader.drop_last`` it is
    dropped.  A ``loader.transform`` runs on the whole global batch with the generator a
    single process with batch ``G`` would use, and this rank keeps its rows, so the union of
    the shards of a step is bit for bit that process's batch.  Needs no MPI.

    Parameters
    ----------
    loader : nbconv.data.DataLoader
    rank, world_size : int
        0 <= rank < world_size.

    Attributes
    ----------
    global_batch_size : int
        ``world_size * loader.batch_size``.
    global_n : int
        The size of the global batch of the step just yielded.

    Examples
    --------
    >>> import numpy as np
    >>> from nbconv.data import DataLoader
    >>> loader = DataLoader(np.zeros((10, 1)), np.arange(10), batch_size=2, shuffle=False)
    >>> [yb.tolist() for _, yb in ShardedLoader(loader, rank=1, world_size=2)]
    [[2, 3], [6, 7], [9]]
    """

    def __init__(self, loader, rank: int, world_size: int):
        for attr in ("order", "batch_size", "X", "y"):
            if not hasattr(loader, attr):
                raise TypeError(f"ShardedLoader: argument 'loader' must be a "
                                f"nbconv.data.DataLoader (no {attr!r}), got "
                                f"{type(loader).__name__}")
        rank, world_size = int(rank), int(world_size)
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"ShardedLoader: need 0 <= rank < world_size, got rank {rank}, "
                             f"world_size {world_size}")
        self.loader, self.rank, self.world_size = loader, rank, world_size
        self.batch_size = loader.batch_size
        self.global_batch_size = world_size * loader.batch_size
        self.global_n = 0

    def __len__(self) -> int:
        """Steps per epoch, the same on every rank."""
        n, g = self.loader.X.shape[0], self.global_batch_size
        return n // g if self.loader.drop_last else -(-n // g)

    @property
    def epoch(self) -> int:
        return self.loader.epoch

    def set_epoch(self, epoch: int) -> None:
        self.loader.set_epoch(epoch)

    def bounds(self, n: int) -> tuple[int, int]:
        """This rank's rows ``[lo, hi)`` of a global batch of ``n`` samples."""
        return _shard_bounds(n, self.rank, self.world_size)

    def global_batch_sizes(self) -> list[int]:
        """The sizes of this epoch's global batches."""
        n, g = self.loader.X.shape[0], self.global_batch_size
        return [min(g, n - k * g) for k in range(len(self))]

    def describe(self) -> str:
        """One line: this rank's share of each global batch and of an epoch."""
        n = self.loader.X.shape[0]
        sizes = self.global_batch_sizes()
        mine = sum(hi - lo for lo, hi in map(self.bounds, sizes))
        lo, hi = self.bounds(self.global_batch_size)
        return (f"rank {self.rank}/{self.world_size}: rows {lo}-{hi - 1} of each global batch "
                f"of {self.global_batch_size}, {mine} of {n} samples per epoch")

    def __iter__(self):
        ld = self.loader
        e = ld.epoch
        idx = ld.order(e)
        g = self.global_batch_size
        for k in range(len(self)):
            sel = idx[k * g:(k + 1) * g]
            lo, hi = self.bounds(len(sel))
            if ld.transform is not None:
                full = ld.transform(np.ascontiguousarray(ld.X[sel]), ld.batch_rng(e, k))
                xb = np.ascontiguousarray(full[lo:hi])
            else:
                xb = np.ascontiguousarray(ld.X[sel[lo:hi]])
            yb = ld.y[sel[lo:hi]]
            self.global_n = len(sel)
            yield xb, yb
        ld.set_epoch(e + 1)

    def __repr__(self) -> str:
        return (f"ShardedLoader(rank={self.rank}, world_size={self.world_size}, "
                f"batch_size={self.batch_size}, global_batch_size={self.global_batch_size})")


class _Packed:
    """Arrays of one dtype packed into one contiguous buffer (for one reduction call)."""

    def __init__(self, arrays):
        self.arrays = arrays
        self.buf = np.empty(sum(a.size for a in arrays), arrays[0].dtype)
        self.offsets = np.cumsum([0] + [a.size for a in arrays])

    def pack(self) -> np.ndarray:
        for a, o, e in zip(self.arrays, self.offsets[:-1], self.offsets[1:]):
            self.buf[o:e] = a.reshape(-1)
        return self.buf

    def unpack(self, scale=None) -> None:
        if scale is not None:
            self.buf *= scale
        for a, o, e in zip(self.arrays, self.offsets[:-1], self.offsets[1:]):
            a[...] = self.buf[o:e].reshape(a.shape)


def _by_dtype(arrays):
    groups: dict = {}
    for a in arrays:
        groups.setdefault(a.dtype, []).append(a)
    return [_Packed(g) for g in groups.values()]


class GradientAllreduce:
    """Sum every parameter gradient over the ranks: one contiguous buffer (per dtype) and one
    ``Allreduce`` per call, instead of one call per parameter.

    Parameters
    ----------
    params : list of nbconv.nn.Parameter
        Host parameters; their ``.grad`` arrays are packed, reduced and written back in place.
    world : World

    Attributes
    ----------
    seconds : float
        Time spent inside the reductions so far (waiting for slower ranks included).
    calls : int
    nbytes : int
        Bytes reduced per call.
    """

    def __init__(self, params, world: World):
        grads = [p.grad for p in params]
        if any(type(g) is not np.ndarray for g in grads):
            raise TypeError("GradientAllreduce: distributed training runs on host parameters; "
                            "move the model back with nbconv.cuda.to_host(model)")
        self.params, self.world = list(params), world
        self._packs = _by_dtype(grads) if grads else []
        self.nbytes = sum(p.buf.nbytes for p in self._packs)
        self.seconds = 0.0
        self.calls = 0

    def __call__(self) -> None:
        for pk in self._packs:
            pk.arrays = [p.grad for p in self.params if p.grad.dtype == pk.buf.dtype]
            pk.pack()
            t0 = time.perf_counter()
            self.world.allreduce_(pk.buf, what="the gradient Allreduce")
            self.seconds += time.perf_counter() - t0
            pk.unpack()
        self.calls += 1


def broadcast_state(model, optimizer=None, world: World | None = None, root: int = 0) -> None:
    """Copy rank ``root``'s weights, buffers and optimizer state (moments, step count, learning
    rate) to every rank, in place."""
    world = world or init()
    if world.size == 1:
        return
    state = world.bcast(model.state_dict() if world.rank == root else None, root)
    if world.rank != root:
        model.load_state_dict(state)
    if optimizer is not None:
        opt = world.bcast(optimizer.state_dict() if world.rank == root else None, root)
        if world.rank != root:
            optimizer.load_state_dict(opt)


def _running_stats(model):
    return [m._buffers[k] for _, m in model.named_modules() for k in ("running_mean",
                                                                       "running_var")
            if k in m._buffers]


def average_batch_norm_stats(model, world: World | None = None) -> None:
    """Replace every ``running_mean``/``running_var`` buffer by its mean over the ranks.

    Each rank's running statistics follow its own shards; their mean is the estimate of the
    whole data set that the model keeps (``running_var`` is the mean of the ranks' variance
    estimates, which leaves out the spread of the ranks' means: small when shards are random
    draws of one data set).  ``fit`` calls this at the end of every epoch; a no-op without
    batch-norm layers or with one rank.
    """
    world = world or init()
    bufs = _running_stats(model)
    if world.size == 1 or not bufs:
        return
    for pk in _by_dtype(bufs):
        world.allreduce_(pk.pack(), what="the batch-norm statistics Allreduce")
        pk.unpack(scale=pk.buf.dtype.type(1.0 / world.size))


def agree(flag: bool, world: World | None = None) -> bool:
    """True on every rank when ``flag`` is true on any rank (e.g. "stop training")."""
    world = world or init()
    if world.size == 1:
        return bool(flag)
    return bool(world.allreduce_(np.array([int(bool(flag))], np.int64), op="max",
                                 what="the stopping vote")[0])


def reduce_sums(values, world: World | None = None) -> np.ndarray:
    """Element-wise sums over the ranks of a few float64 ``values`` (e.g. loss sums, counts)."""
    world = world or init()
    return world.allreduce_(np.array(values, np.float64), what="the statistics Allreduce")


def rank_rng(state_json: str, rank: int) -> np.random.Generator:
    """A generator for rank ``rank`` > 0 derived from rank 0's generator state (so that dropout
    masks differ between ranks yet a run is reproducible)."""
    entropy = int.from_bytes(hashlib.sha256(state_json.encode()).digest()[:16], "little")
    return np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=(rank,)))


# -- synchronised batch norm --------------------------------------------------------------
def _bn_layers(model):
    from .nn.layers import _BatchNorm

    return [m for _, m in model.named_modules() if isinstance(m, _BatchNorm)]


def _sync_forward(layer, world):
    from . import functional as F
    from .nn import _arrays

    def forward(x):
        if not (layer.training or not layer._config["track_running_stats"]):
            return type(layer).forward(layer, x)  # eval mode: running statistics, no sync
        x = np.asarray(x)
        if x.ndim not in layer._ndims:
            return type(layer).forward(layer, x)  # raises the layer's own error
        cfg = layer._config
        x3 = x.reshape(x.shape[0], x.shape[1], -1)
        c = x.shape[1]
        sums = np.empty(2 * c + 1)
        sums[:c] = x3.sum(axis=(0, 2), dtype=np.float64)
        sums[c:2 * c] = np.square(x3, dtype=np.float64).sum(axis=(0, 2))
        sums[-1] = x3.shape[0] * x3.shape[2]
        world.allreduce_(sums, what="the batch-norm statistics Allreduce")
        cnt = sums[-1]
        if cnt <= 1:
            raise ValueError(f"{type(layer).__name__}: expected more than 1 value per channel "
                             f"over all ranks when training, got {int(cnt)}")
        mean = sums[:c] / cnt
        var = np.maximum(sums[c:2 * c] / cnt - mean * mean, 0.0)
        y, mean_x, invstd_x = F.batch_norm(
            x, mean, var, None if layer.weight is None else layer.weight.data,
            None if layer.bias is None else layer.bias.data, training=False, eps=cfg["eps"],
            return_stats=True)
        if cfg["track_running_stats"]:
            m = cfg["momentum"]
            rm, rv = layer._buffers["running_mean"], layer._buffers["running_var"]
            rm[...] = (1.0 - m) * rm + m * mean
            rv[...] = (1.0 - m) * rv + m * var * (cnt / (cnt - 1))
            _arrays.increment(layer._buffers["num_batches_tracked"])
        layer._cache = (x, mean_x, invstd_x, "sync", cnt) if layer._keep() else None
        return y

    return forward


def _sync_backward(layer, world):
    from .nn import _arrays

    def backward(dy):
        cache = layer._cache
        if cache is None or len(cache) != 5:
            return type(layer).backward(layer, dy)
        x, mean, invstd, _, cnt = cache
        dy = np.asarray(dy, dtype=x.dtype)
        c = x.shape[1]
        x3 = x.reshape(x.shape[0], c, -1)
        dy3 = dy.reshape(x3.shape)
        xhat = (x3 - mean[None, :, None]) * invstd[None, :, None]
        sums = np.empty(2 * c)
        sums[:c] = dy3.sum(axis=(0, 2), dtype=np.float64)
        sums[c:] = (dy3 * xhat).sum(axis=(0, 2), dtype=np.float64)
        local = sums.copy()
        world.allreduce_(sums, what="the batch-norm gradient Allreduce")
        k = invstd.astype(np.float64)
        if layer.weight is not None:
            k = k * layer.weight.data
            # the local parts: GradientAllreduce sums them over the ranks afterwards
            _arrays.accumulate(layer.weight.grad, local[c:].astype(x.dtype))
            _arrays.accumulate(layer.bias.grad, local[:c].astype(x.dtype))
        dx = (k[None, :, None] * (dy3 - sums[None, :c, None] / cnt
                                  - xhat * (sums[None, c:, None] / cnt)))
        return dx.astype(x.dtype, copy=False).reshape(x.shape)

    return backward


class sync_batch_norm:
    """Context manager: inside it, the batch-norm layers of ``model`` normalise with the
    statistics of the global batch (all ranks' shards) and their backward pass reduces
    ``sum(dy)`` and ``sum(dy * xhat)`` over the ranks, as PyTorch's ``SyncBatchNorm`` does.

    Every rank then computes what one process would compute on the global batch (to float
    rounding: the sums are float64 ``E[x]`` and ``E[x**2]``) and the running statistics are
    the same on every rank.  Each rank must forward a non-empty shard, so the last global
    batch must hold at least ``world_size`` samples (else ``drop_last=True``).  Host models
    only.
    """

    def __init__(self, model, world: World | None = None):
        self.layers = _bn_layers(model)
        self.world = world or init()

    def __enter__(self):
        from .nn import _recorded

        for layer in self.layers:
            # recorded like the layer's own forward (inside a PyTorch-style model too)
            layer.forward = _recorded.instance_forward(layer, _sync_forward(layer, self.world))
            layer.backward = _sync_backward(layer, self.world)
        return self

    def __exit__(self, *exc):
        for layer in self.layers:
            for name in ("forward", "backward"):
                layer.__dict__.pop(name, None)
            if layer._cache is not None and len(layer._cache) == 5:
                layer._cache = None
        return False

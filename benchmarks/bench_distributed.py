"""Data-parallel LeNet-5 training over MPI against one process with more threads.

Times the training step of ``nbconv.train.fit(..., distributed=True)`` (forward, backward,
the one-buffer gradient ``Allreduce``, SGD step) at one global batch size in three set-ups on
this machine, each in fresh processes:

* 1 process x 1 thread (the baseline of the scaling efficiency),
* 1 process x ``--ranks`` threads (numba's threads: the alternative on one machine),
* ``mpiexec -n --ranks`` ranks x 1 thread, each rank a ``1/ranks`` share of the batch.

For the MPI run it reports the time per step spent in the gradient ``Allreduce`` (as ``fit``
does it, so waiting for a slower rank is included) and the bare ``Allreduce`` of the same
buffer after a barrier (the communication cost alone), the communication share of a step and
the scaling efficiency ``images/s(N ranks) / (N * images/s(1 x 1))``.  Prints a table and
writes JSON (``results/distributed.json``)::

    python benchmarks/bench_distributed.py            # --ranks 2 --batch 64
    python benchmarks/bench_distributed.py --quick    # a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def worker(args) -> None:
    """One process (or one rank) of a set-up: print ``RESULT {json}`` on rank 0."""
    import numpy as np

    import nbconv as nc
    from nbconv import losses, models, optim

    nc.set_num_threads(args.threads)
    world = None
    rank, size = 0, 1
    if args.mpi:
        from nbconv import distributed

        world = distributed.init()
        rank, size = world.rank, world.size
    if args.batch % size:
        raise SystemExit(f"--batch {args.batch} is not divisible by {size} ranks")
    b = args.batch // size
    rng = np.random.default_rng(rank)
    x = rng.standard_normal((b, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, b)
    nc.manual_seed(0)
    net = models.lenet5(activation="relu")
    opt = optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    crit = losses.CrossEntropyLoss()
    reduce = None
    if world is not None:
        distributed.broadcast_state(net, opt, world)
        reduce = distributed.GradientAllreduce(net.parameters(), world)

    def step():
        opt.zero_grad()
        crit.forward(net.forward(x), y)
        net.backward(crit.backward(), need_dx=False)
        if reduce is not None:
            reduce()
        opt.step()

    for _ in range(args.warmup):
        step()
    step_s, comm_s = [], []
    for _ in range(args.rounds):
        if world is not None:
            world.comm.Barrier()
        c0 = reduce.seconds if reduce is not None else 0.0
        t0 = time.perf_counter()
        for _ in range(args.steps):
            step()
        step_s.append((time.perf_counter() - t0) / args.steps)
        if reduce is not None:
            comm_s.append((reduce.seconds - c0) / args.steps)
    out = {"ranks": size, "threads": args.threads, "batch_per_rank": b,
           "step_s": statistics.median(step_s), "step_s_rounds": step_s,
           "images_per_s": args.batch / statistics.median(step_s)}
    if world is not None:
        bare = []
        buf = np.zeros(sum(p.data.size for p in net.parameters()), np.float32)
        for _ in range(args.rounds * args.steps):
            world.comm.Barrier()
            t0 = time.perf_counter()
            world.allreduce_(buf)
            bare.append(time.perf_counter() - t0)
        # the slowest rank's view of a step is the one that bounds the run
        comm = world.comm.allreduce(statistics.median(comm_s), op=world.MPI.MAX)
        bare_s = world.comm.allreduce(statistics.median(bare), op=world.MPI.MAX)
        out.update(allreduce_in_step_s=comm, allreduce_bare_s=bare_s,
                   allreduce_bytes=reduce.nbytes, comm_share=comm / out["step_s"],
                   bare_share=bare_s / out["step_s"])
    if rank == 0:
        print("RESULT " + json.dumps(out), flush=True)


def _mpiexec() -> list[str]:
    exe = Path(sys.executable).parent / "mpiexec"
    exe = str(exe) if exe.exists() else shutil.which("mpiexec")
    if exe is None:
        raise SystemExit("no mpiexec: pip install 'nbconv[mpi]' (mpi4py and the mpich wheel)")
    version = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30,
                             stdin=subprocess.DEVNULL)
    if "Open MPI" in version.stdout + version.stderr:
        return [exe, "--allow-run-as-root", "--oversubscribe"]
    return [exe]


def run_setup(args, ranks: int, threads: int) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--threads", str(threads),
           "--batch", str(args.batch), "--steps", str(args.steps), "--rounds",
           str(args.rounds), "--warmup", str(args.warmup)]
    if ranks > 1:
        cmd = [*_mpiexec(), "-n", str(ranks), *cmd, "--mpi"]
    env = dict(os.environ, NUMBA_NUM_THREADS=str(threads), OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, env=env,
                          stdin=subprocess.DEVNULL)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise SystemExit(f"set-up {ranks} x {threads} failed:\n{proc.stdout}\n{proc.stderr}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ranks", type=int, default=2, help="MPI ranks (and threads) to compare")
    ap.add_argument("--batch", type=int, default=64, help="global batch size (64)")
    ap.add_argument("--steps", type=int, default=None, help="steps per round (default 100)")
    ap.add_argument("--rounds", type=int, default=None, help="rounds (default 5; median)")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=None,
                    help="runs of each set-up, taking turns (default 3, 1 with --quick)")
    ap.add_argument("--quick", action="store_true", help="smoke run: few steps")
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--json", default=str(RESULTS_DIR / "distributed.json"))
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--mpi", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.steps = args.steps or (5 if args.quick else 100)
    args.rounds = args.rounds or (2 if args.quick else 5)
    args.repeats = args.repeats or (1 if args.quick else 3)
    if args.quick:
        args.warmup = min(args.warmup, 2)
    if args.worker:
        worker(args)
        return 0

    import _common

    info = _common.machine_info(None)
    _common.print_machine(info)
    n = args.ranks
    setups = {"1 process x 1 thread": (1, 1), f"1 process x {n} threads": (1, n),
              f"{n} ranks x 1 thread (MPI)": (n, 1)}
    # The set-ups take turns (fresh processes each time) and each keeps its median run, so
    # that a noisy minute on a shared machine does not fall on one set-up only.
    runs = {name: [] for name in setups}
    for i in range(args.repeats):
        for name, (ranks, threads) in setups.items():
            print(f"run {i + 1}/{args.repeats}: {name} ...", flush=True)
            runs[name].append(run_setup(args, ranks, threads))
    results = {}
    for name, rs in runs.items():
        rs = sorted(rs, key=lambda r: r["images_per_s"])
        results[name] = dict(rs[len(rs) // 2],
                             images_per_s_runs=[r["images_per_s"] for r in runs[name]])
    base = results["1 process x 1 thread"]["images_per_s"]
    threaded = results[f"1 process x {n} threads"]
    mpi = results[f"{n} ranks x 1 thread (MPI)"]
    summary = {
        "global_batch": args.batch,
        "mpi_scaling_efficiency": mpi["images_per_s"] / (n * base),
        "threads_scaling_efficiency": threaded["images_per_s"] / (n * base),
        "mpi_vs_threads": mpi["images_per_s"] / threaded["images_per_s"],
        "allreduce_in_step_ms": mpi["allreduce_in_step_s"] * 1e3,
        "allreduce_bare_ms": mpi["allreduce_bare_s"] * 1e3,
        "comm_share": mpi["comm_share"],
        "bare_share": mpi["bare_share"],
        "allreduce_bytes": mpi["allreduce_bytes"],
    }
    print(f"\nLeNet-5 training step, global batch {args.batch}, float32")
    print("| set-up | batch per rank | step (ms) | images/s (median run) | runs | vs 1 x 1 |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        spread = ", ".join(f"{v:,.0f}" for v in r["images_per_s_runs"])
        print(f"| {name} | {r['batch_per_rank']} | {r['step_s'] * 1e3:.2f} | "
              f"{r['images_per_s']:,.0f} | {spread} | {r['images_per_s'] / base:.2f}x |")
    print(f"\ngradient Allreduce ({mpi['allreduce_bytes'] / 1024:.0f} KiB, one buffer): "
          f"{summary['allreduce_in_step_ms']:.3f} ms per step inside the step "
          f"({summary['comm_share']:.1%} of it, waiting included), "
          f"{summary['allreduce_bare_ms']:.3f} ms bare after a barrier "
          f"({summary['bare_share']:.1%})")
    print(f"scaling efficiency: MPI {summary['mpi_scaling_efficiency']:.2f}, "
          f"threads {summary['threads_scaling_efficiency']:.2f}; MPI / threads "
          f"{summary['mpi_vs_threads']:.2f}x")
    out = {"benchmark": "distributed", "machine": info, "quick": args.quick,
           "protocol": {"steps": args.steps, "rounds": args.rounds, "warmup": args.warmup,
                        "repeats": args.repeats,
                        "statistic": "median of rounds within a run, median run of repeats"},
           "setups": results, "summary": summary}
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
